"""THE frame loop (dossier §3.5). One-shot, streaming and batched synthesis are thin layers over
`generate_step`; every mode differs only in the `Prompt` it is given.
"""

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import mlx.core as mx
import numpy as np
from mlx_lm.models.cache import BatchKVCache, KVCache

from .errors import SynthesisError
from .models.talker import Talker
from .prompt import Prompt
from .sampling import SamplerSettings, process_talker_logits, sample, talker_ban_mask


@dataclass(frozen=True)
class GenerationConfig:
    """Sampling settings of one call; defaults come from the checkpoint (§3.7).

    `max_frames` bounds the frames returned: the reference's `max_new_tokens` is
    `max_frames + 1`, because it returns one frame fewer than the tokens it samples.
    """

    talker: SamplerSettings
    code_predictor: SamplerSettings
    repetition_penalty: float
    max_frames: int

    def __post_init__(self):
        if not self.repetition_penalty > 0:
            raise SynthesisError(
                f"repetition_penalty must be > 0 (1.0 = off), got {self.repetition_penalty}."
            )
        if not (isinstance(self.max_frames, int) and self.max_frames > 0):
            raise SynthesisError(f"max_frames must be a positive integer, got {self.max_frames!r}.")

    @classmethod
    def from_checkpoint(cls, defaults: dict[str, Any]) -> "GenerationConfig":
        """From `generation_config.json`, falling back to the reference wrapper's values."""
        def settings(prefix: str) -> SamplerSettings:
            greedy = not defaults.get(f"{prefix}do_sample" if prefix else "do_sample", True)
            return SamplerSettings(
                temperature=0.0 if greedy else float(defaults.get(f"{prefix}temperature", 0.9)),
                top_k=int(defaults.get(f"{prefix}top_k", 50)),
                top_p=float(defaults.get(f"{prefix}top_p", 1.0)),
            )

        return cls(
            talker=settings(""),
            code_predictor=settings("subtalker_"),
            repetition_penalty=float(defaults.get("repetition_penalty", 1.05)),
            max_frames=int(defaults.get("max_new_tokens", 2048)) - 1,
        )

    def override(self, **kwargs: Any) -> "GenerationConfig":
        """Replace the settings given (None = keep), e.g. `temperature=0`, `subtalker_top_k=10`."""
        talker = {k: v for k, v in kwargs.items() if k in ("temperature", "top_k", "top_p")}
        sub = {k[len("subtalker_"):]: v for k, v in kwargs.items() if k.startswith("subtalker_")}
        rest = {k: v for k, v in kwargs.items() if k in ("repetition_penalty", "max_frames")}
        drop_none = lambda d: {k: v for k, v in d.items() if v is not None}  # noqa: E731
        return replace(
            self,
            talker=replace(self.talker, **drop_none(talker)),
            code_predictor=replace(self.code_predictor, **drop_none(sub)),
            **drop_none(rest),
        )


def _left_pad(prompts: list[Prompt], pad: mx.array) -> tuple[mx.array, mx.array, list[int]]:
    """Stack prefills with left zero padding and trailing text with right `tts_pad` padding."""
    longest = max(p.prefill.shape[0] for p in prompts)
    most = max(p.trailing.shape[0] for p in prompts)
    prefill, trailing, left = [], [], []
    for p in prompts:
        n = longest - p.prefill.shape[0]
        left.append(n)
        prefill.append(mx.pad(p.prefill, [(n, 0), (0, 0)]))
        fill = mx.repeat(pad, most - p.trailing.shape[0], axis=0)
        trailing.append(mx.concatenate([p.trailing, fill]))
    return mx.stack(prefill), mx.stack(trailing), left


def predict_codes(
    talker: Talker, hidden: mx.array, c0: mx.array, settings: SamplerSettings, keys: mx.array
) -> mx.array:
    """Codebooks 1..15 of a frame: 2-position prefill, then 14 cached steps (§2.3).

    Returns `[B, 16]`, c0 first.
    """
    cp = talker.code_predictor
    cache = cp.make_cache()
    h = cp(mx.stack([hidden, talker.embed_codec(c0)], axis=1), cache)
    codes = [c0]
    for j, head in enumerate(cp.lm_head):
        codes.append(sample(head(h[:, -1]), settings, keys[j]))
        if j + 1 < len(cp.lm_head):
            h = cp(cp.model.codec_embedding[j](codes[-1])[:, None], cache)
    return mx.stack(codes, axis=1)


class _CompiledPredictors:
    """`predict_codes` compiled into one graph per sampler setting, kept on the talker.

    The 15 code-predictor steps of a frame are sequential and tiny, so their cost is dispatch:
    compiling the whole loop, sampling included, runs it as one fused graph (the weights are
    captured as constants, so one compiled function serves every frame of a model).
    """

    def __init__(self, talker: Talker):
        self.talker = talker
        self.fns: dict[SamplerSettings, Callable] = {}
        self.lock = threading.Lock()

    def __call__(self, settings: SamplerSettings) -> Callable:
        with self.lock:
            if settings not in self.fns:
                fn = partial(predict_codes, self.talker, settings=settings)
                self.fns[settings] = mx.compile(fn)
            return self.fns[settings]


def compiled_predictor(talker: Talker, settings: SamplerSettings) -> Callable:
    """`(hidden [B, H], c0 [B], keys [15, 2]) -> codes [B, 16]` for this talker and sampler."""
    store = talker.__dict__.get("_compiled_predictors")
    if store is None:
        # A plain attribute (not an array, dict or list), so it is not a model parameter.
        store = talker._compiled_predictors = _CompiledPredictors(talker)
    return store(settings)


@dataclass(frozen=True)
class RunawayGuard:
    """Ends generation that runs away instead of stopping (on by default, see `generate`).

    A row is stopped, flagged "runaway", once it has produced `base_frames + frames_per_token *
    text_tokens` frames (6 s plus 1 s per text token: several times any speaking rate), or when
    its last `repeat_window` codebook-0 codes (8 s) take at most `min_distinct` values, the
    signature of a silence or repetition loop. Frames already produced are kept.
    """

    base_frames: int = 75
    frames_per_token: float = 12.5
    repeat_window: int = 100
    min_distinct: int = 3

    def frame_cap(self, text_tokens: int) -> int:
        return int(self.base_frames + self.frames_per_token * text_tokens)

    def looping(self, history: list[int]) -> bool:
        recent = history[-self.repeat_window:]
        return len(recent) == self.repeat_window and len(set(recent)) <= self.min_distinct


@dataclass
class PrefixCache:
    """The talker's KV cache after a prompt's voice-only prefix (`Prompt.prefix_len`)."""

    length: int
    states: list[tuple[mx.array, mx.array]]

    @classmethod
    def compute(cls, talker: Talker, prefix: mx.array) -> "PrefixCache":
        cache = talker.make_cache()
        talker.model(prefix[None], cache)
        states = [(c.keys[..., : c.offset, :], c.values[..., : c.offset, :]) for c in cache]
        mx.eval(states)
        return cls(prefix.shape[0], states)

    def restore(self) -> list[KVCache]:
        caches = []
        for keys, values in self.states:
            c = KVCache()
            # New writes go to a grown copy (update_and_fetch concatenates), never into these.
            c.keys, c.values, c.offset = keys, values, self.length
            caches.append(c)
        return caches


@dataclass
class Frame:
    """One step of the frame loop for a batch.

    Attributes:
        codes: `[B, 16]` codes of this frame for every row.
        active: `[B]` rows this frame belongs to (rows that have stopped keep running, fed EOS
            as in the reference, and their frames are to be ignored).
        reasons: per row, why it stopped ("eos", "runaway") or None while it runs; rows still
            running when the loop ends reached `max_frames` ("length").
    """

    codes: mx.array
    active: np.ndarray
    reasons: list[str | None]


def generate_step(
    talker: Talker,
    prompts: list[Prompt],
    tts_pad: mx.array,
    config: GenerationConfig,
    key: mx.array,
    guard: RunawayGuard | None = None,
    text_at: Callable[[int], mx.array] | None = None,
    prefix: PrefixCache | None = None,
) -> Iterator[Frame]:
    """Generate frames for a batch of prompts, one frame per iteration.

    Args:
        talker: the talker (with its code predictor).
        prompts: one `Prompt` per batch row; rows are left-padded to a common length.
        tts_pad: `[1, H]` text-side embedding added once a row's trailing text runs out.
        config: sampling settings and the frame limit.
        key: an MLX random key; the only source of randomness.
        guard: stops runaway rows; None disables it.
        text_at: `step -> [B, H]` text embeddings added to frame `step`'s feedback, read just
            before frame `step` is yielded; replaces the prompts' `trailing` (text streamed in
            while generating, `text_stream.py`).
        prefix: the KV cache of the first `prefix.length` prefill positions of a single prompt,
            computed earlier for the same voice; only the rest is prefilled.

    Yields:
        `Frame`s until every row has stopped or `max_frames` frames were produced.

    Raises:
        SynthesisError: the talker produced non-finite logits.
    """
    cfg = talker.config
    eos = cfg.codec_eos_token_id
    x, trailing, left = _left_pad(prompts, tts_pad)
    B = x.shape[0]
    if prefix is not None:
        assert B == 1 and prompts[0].prefix_len == prefix.length
        cache, x = prefix.restore(), x[:, prefix.length:]
    else:
        cache = [BatchKVCache(left) if any(left) else KVCache() for _ in talker.layers]
    ban = talker_ban_mask(cfg.vocab_size, eos)
    seen = mx.zeros((B, cfg.vocab_size), mx.bool_)
    reasons: list[str | None] = [None] * B
    history: list[list[int]] = [[] for _ in range(B)]
    if text_at is None:
        def text_at(step: int) -> mx.array:
            return trailing[:, step] if step < trailing.shape[1] else mx.repeat(tts_pad, B, axis=0)

    def next_token(logits: mx.array, step: int, key: mx.array) -> tuple[mx.array, mx.array]:
        last = logits[:, -1]
        scores = process_talker_logits(last, seen, step, config.repetition_penalty, ban, eos)
        return sample(scores, config.talker, key), mx.any(~mx.isfinite(last))

    predict = compiled_predictor(talker, config.code_predictor)
    key, step_key = mx.random.split(key)
    keys = mx.random.split(step_key, cfg.num_code_groups)
    logits, hidden = talker(x, cache)
    c0, bad = next_token(logits, 0, keys[0])
    for step in range(config.max_frames):
        mx.eval(c0, bad)
        if bad.item():
            raise SynthesisError(
                f"The talker produced non-finite logits at frame {step}; the weights or the dtype "
                "overflowed (try dtype='float32')."
            )
        _update_reasons(reasons, history, c0.tolist(), eos, guard, prompts)
        active = np.array([r is None for r in reasons])
        if not active.any():
            return  # the EOS token itself gets no frame (§3.5)
        # Rows that are done are fed EOS, as HF's generate feeds them its pad (= EOS) id.
        c0 = mx.where(mx.array(active), c0, eos)
        seen = seen | (mx.arange(cfg.vocab_size) == c0[:, None])
        codes = predict(hidden[:, -1], c0, keys=keys[1:])
        if step + 1 < config.max_frames:
            # Queue the next talker step and its token before handing this frame out, so the
            # device works while the caller decodes; the host syncs once per frame (above).
            key, step_key = mx.random.split(key)
            keys = mx.random.split(step_key, cfg.num_code_groups)
            logits, hidden = talker((talker.embed_frame(codes) + text_at(step))[:, None], cache)
            c0, bad = next_token(logits, step + 1, keys[0])
            mx.async_eval(codes, c0, bad)
        yield Frame(codes, active, reasons)


def _update_reasons(reasons, history, c0: list[int], eos: int, guard, prompts) -> None:
    """Mark rows that just sampled EOS, or that the runaway guard stops before this frame."""
    for b, token in enumerate(c0):
        if reasons[b] is not None:
            continue
        if token == eos:
            reasons[b] = "eos"
            continue
        history[b].append(token)
        # The cap is read every frame: streamed-in text raises a prompt's token count.
        if guard and (len(history[b]) > guard.frame_cap(prompts[b].text_tokens)
                      or guard.looping(history[b])):
            reasons[b] = "runaway"


def generate_codes(
    talker: Talker,
    prompts: list[Prompt],
    tts_pad: mx.array,
    config: GenerationConfig,
    key: mx.array,
    guard: RunawayGuard | None = None,
    prefix: PrefixCache | None = None,
) -> list[tuple[np.ndarray, str]]:
    """All frames of every row: `(codes [frames, 16], finish_reason)` per prompt.

    `finish_reason` is "eos" (the model stopped), "runaway" (the guard stopped it) or "length"
    (`max_frames` frames were produced).
    """
    rows: list[list[np.ndarray]] = [[] for _ in prompts]
    reasons: list[str | None] = [None] * len(prompts)
    for frame in generate_step(talker, prompts, tts_pad, config, key, guard, prefix=prefix):
        codes = np.array(frame.codes)
        for b in np.flatnonzero(frame.active):
            rows[b].append(codes[b])
        reasons = frame.reasons
    return [
        (np.stack(r).astype(np.int32) if r else np.zeros((0, 16), np.int32), reason or "length")
        for r, reason in zip(rows, reasons)
    ]
