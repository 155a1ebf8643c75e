"""THE frame loop (dossier §3.5). One-shot, streaming and batched synthesis are thin layers over
`generate_step`; every mode differs only in the `Request`s it is given.
"""

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import mlx.core as mx
import numpy as np
from mlx_lm.models.cache import BatchKVCache, KVCache

from .errors import SynthesisError
from .models.talker import Talker
from .prompt import FixedText, Prompt, TextSource
from .request import Request, RunawayGuard
from .sampling import SamplerSettings, process_talker_logits, sample, talker_ban_mask
from .tokens import NUM_CODE_GROUPS


def predict_codes(
    talker: Talker, hidden: mx.array, c0: mx.array, settings: SamplerSettings, keys: mx.array
) -> mx.array:
    """Codebooks 1..15 of a frame: 2-position prefill, then 14 cached steps (§2.3).

    `keys` is `[B, 15, 2]`: row b draws codebook j + 1 with `keys[b, j]`. Returns `[B, 16]`, c0 first.
    """
    cp = talker.code_predictor
    cache = cp.make_cache()
    h = cp(mx.stack([hidden, talker.embed_codec(c0)], axis=1), cache)
    codes = [c0]
    for j, head in enumerate(cp.lm_head):
        codes.append(sample(head(h[:, -1]), settings, keys[:, j]))
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
    """`(hidden [B, H], c0 [B], keys [B, 15, 2]) -> codes [B, 16]` for this talker and sampler."""
    store = talker.__dict__.get("_compiled_predictors")
    if store is None:
        # A plain attribute (not an array, dict or list), so it is not a model parameter.
        store = talker._compiled_predictors = _CompiledPredictors(talker)
    return store(settings)


# --------------------------------------------------------------------------- voice prefixes


@dataclass
class PrefixCache:
    """The talker's KV cache after a prompt's voice-only prefix (`Prompt.prefix_len`)."""

    length: int
    states: list[tuple[mx.array, mx.array]]

    @classmethod
    def compute(cls, talker: Talker, prefix: mx.array) -> "PrefixCache":
        cache = talker.make_cache()
        talker.model(prefix[None], cache)
        states = []
        for c in cache:
            keys, values, offset = c.state
            states.append((keys[..., :offset, :], values[..., :offset, :]))
        mx.eval(states)
        return cls(prefix.shape[0], states)

    def restore(self) -> list[KVCache]:
        caches = []
        for keys, values in self.states:
            c = KVCache()
            # New writes go to a grown copy (update_and_fetch concatenates), never into these.
            c.state = (keys, values, self.length)
            caches.append(c)
        return caches


class PrefixStore:
    """The voice prefixes' KV caches, computed once per voice and kept for the last `size` voices.

    Keyed by the prefix embeddings' bytes, so two prompts share an entry exactly when their
    voice-only positions are identical (speaker, language, instruction, clone).
    """

    def __init__(self, size: int = 8):
        self.size = size
        self.entries: OrderedDict[str, PrefixCache] = OrderedDict()

    def __len__(self) -> int:
        return len(self.entries)

    def clear(self) -> None:
        self.entries.clear()

    def get(self, talker: Talker, prompt: Prompt) -> PrefixCache | None:
        if prompt.prefix_len == 0:
            return None
        prefix = prompt.prefill[: prompt.prefix_len]
        key = hashlib.sha1(np.array(prefix.astype(mx.float32)).tobytes()).hexdigest()
        cache = self.entries.pop(key, None) or PrefixCache.compute(talker, prefix)
        self.entries[key] = cache
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return cache


# --------------------------------------------------------------------------- the loop


@dataclass
class Frame:
    """One step of the frame loop for a batch.

    Attributes:
        codes: `[B, 16]` codes of this frame for every row, on the host.
        active: `[B]` rows this frame belongs to (rows that have stopped keep running, fed EOS
            as in the reference, and their frames are to be ignored).
        reasons: per row, why it stopped ("eos", "runaway") or None while it runs; rows still
            running when the loop ends reached their frame limit ("length").
    """

    codes: np.ndarray
    active: np.ndarray
    reasons: list[str | None]


def _left_pad(prompts: list[Prompt]) -> tuple[mx.array, list[int]]:
    """Stack prefills with left zero padding."""
    longest = max(p.prefill.shape[0] for p in prompts)
    left = [longest - p.prefill.shape[0] for p in prompts]
    return mx.stack([mx.pad(p.prefill, [(n, 0), (0, 0)]) for p, n in zip(prompts, left)]), left


def _frame_keys(keys: list[mx.array], groups: int) -> tuple[list[mx.array], mx.array]:
    """Each row's next key and its `groups` draw keys for one frame: `([key], [B, groups, 2])`."""
    nexts, draws = [], []
    for key in keys:
        key, step_key = mx.random.split(key)
        nexts.append(key)
        draws.append(mx.random.split(step_key, groups))
    return nexts, mx.stack(draws)


def generate_step(
    talker: Talker,
    requests: list[Request],
    tts_pad: mx.array,
    prefix: PrefixCache | None = None,
    texts: list[TextSource] | None = None,
) -> Iterator[Frame]:
    """Generate frames for a batch of requests, one frame per iteration.

    Args:
        talker: the talker (with its code predictor).
        requests: one `Request` per batch row (prompt, sampling settings, seed, guard); rows
            are left-padded to a common prompt length and draw from their own keys.
        tts_pad: `[1, H]` text-side embedding added once a row's trailing text runs out.
        prefix: the KV cache of the first `prefix.length` prefill positions of a single request,
            computed earlier for the same voice; only the rest is prefilled.
        texts: per row, the text fed back with each frame; default: each prompt's trailing text
            (text streamed in while generating passes its own, `text_stream.py`).

    Yields:
        `Frame`s until every row has stopped or the frame limit is reached.

    Raises:
        SynthesisError: the talker produced non-finite logits.
    """
    cfg = talker.config
    eos = cfg.codec_eos_token_id
    config = requests[0].config
    assert all(r.config == config for r in requests), "one sampling setting per batch"
    texts = texts or [_fixed(r.prompt, tts_pad) for r in requests]
    x, left = _left_pad([r.prompt for r in requests])
    B = x.shape[0]
    if prefix is not None:
        assert B == 1 and requests[0].prompt.prefix_len == prefix.length
        cache, x = prefix.restore(), x[:, prefix.length:]
    else:
        cache = [BatchKVCache(left) if any(left) else KVCache() for _ in talker.layers]
    ban = talker_ban_mask(cfg.vocab_size, eos)
    seen = mx.zeros((B, cfg.vocab_size), mx.bool_)
    reasons: list[str | None] = [None] * B
    history: list[list[int]] = [[] for _ in range(B)]

    def next_token(logits: mx.array, step: int, keys: mx.array) -> tuple[mx.array, mx.array]:
        last = logits[:, -1]
        scores = process_talker_logits(last, seen, step, config.repetition_penalty, ban, eos)
        return sample(scores, config.talker, keys), mx.any(~mx.isfinite(last))

    def text_at(step: int) -> mx.array:
        return mx.concatenate([t.embedding(step) for t in texts])

    predict = compiled_predictor(talker, config.code_predictor)
    row_keys, keys = _frame_keys([r.key for r in requests], cfg.num_code_groups)
    logits, hidden = talker(x, cache)
    c0, bad = next_token(logits, 0, keys[:, 0])
    for step in range(config.max_frames):
        mx.eval(c0, bad)
        if bad.item():
            raise SynthesisError(
                f"The talker produced non-finite logits at frame {step}; the weights or the dtype "
                "overflowed (try dtype='float32')."
            )
        _update_reasons(reasons, history, c0.tolist(), eos, requests, texts)
        active = np.array([r is None for r in reasons])
        if not active.any():
            return  # the EOS token itself gets no frame (§3.5)
        # Rows that are done are fed EOS, as HF's generate feeds them its pad (= EOS) id.
        c0 = mx.where(mx.array(active), c0, eos)
        seen = seen | (mx.arange(cfg.vocab_size) == c0[:, None])
        codes = predict(hidden[:, -1], c0, keys=keys[:, 1:])
        if step + 1 < config.max_frames:
            # Queue the next talker step and its token before handing this frame out, so the
            # device works while the caller decodes; the host syncs once per frame (above).
            row_keys, keys = _frame_keys(row_keys, cfg.num_code_groups)
            logits, hidden = talker((talker.embed_frame(codes) + text_at(step))[:, None], cache)
            c0, bad = next_token(logits, step + 1, keys[:, 0])
            mx.async_eval(codes, c0, bad)
        yield Frame(np.array(codes), active, reasons)


def _fixed(prompt: Prompt, pad: mx.array) -> TextSource:
    return FixedText(prompt.trailing, pad, prompt.text_tokens)


def _update_reasons(reasons, history, c0: list[int], eos: int, requests: list[Request],
                    texts: list[TextSource]) -> None:
    """Mark rows that just sampled EOS, or that the runaway guard stops before this frame."""
    for b, token in enumerate(c0):
        if reasons[b] is not None:
            continue
        if token == eos:
            reasons[b] = "eos"
            continue
        history[b].append(token)
        guard: RunawayGuard | None = requests[b].guard
        # The cap is read every frame: streamed-in text raises a prompt's token count.
        if guard and (len(history[b]) > guard.frame_cap(texts[b].tokens) or guard.looping(history[b])):
            reasons[b] = "runaway"


def generate_codes(
    talker: Talker,
    requests: list[Request],
    tts_pad: mx.array,
    prefix: PrefixCache | None = None,
) -> list[tuple[np.ndarray, str]]:
    """All frames of every row: `(codes [frames, 16], finish_reason)` per request.

    `finish_reason` is "eos" (the model stopped), "runaway" (the guard stopped it) or "length"
    (the frame limit was reached).
    """
    rows: list[list[np.ndarray]] = [[] for _ in requests]
    reasons: list[str | None] = [None] * len(requests)
    for frame in generate_step(talker, requests, tts_pad, prefix):
        for b in np.flatnonzero(frame.active):
            rows[b].append(frame.codes[b])
        reasons = frame.reasons
    return [
        (np.stack(r).astype(np.int32) if r else np.zeros((0, NUM_CODE_GROUPS), np.int32), reason or "length")
        for r, reason in zip(rows, reasons)
    ]
