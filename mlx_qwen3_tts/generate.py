"""THE frame loop (dossier §3.5). One-shot, streaming, batched and continuously batched synthesis
are thin layers over `FrameLoop`; every mode differs only in the `Request`s it is given.

The loop never waits on the host before queueing work: frame n + 1's whole graph (the code
predictor of frame n + 1, the talker step after it and its sampled token) is built and queued
with `mx.async_eval` before frame n is read, so the device computes while Python builds and
while the caller decodes. Reading a frame is the one host sync per frame: its codes, whose first
codebook carries what the host needs (EOS, the runaway guard) one frame late. Everything a
frame's graph needs from earlier frames stays on the device: which rows are done (fed EOS, as
the reference feeds finished rows its pad = EOS id), the repetition history, each row's keys.
No frame past a row's EOS, frame limit or runaway cut is ever handed out.
"""

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache, partial

import mlx.core as mx
import numpy as np
from mlx_lm.models.cache import BatchKVCache, KVCache

from .errors import SynthesisError
from .models.talker import Talker
from .prompt import FixedText, Prompt, TextSource
from .request import Request
from .runtime import check_abandoned
from .sampling import RowSettings, process_talker_logits, sample, talker_ban_mask
from .tokens import NUM_CODE_GROUPS

CLEAR_CACHE_EVERY = 256  # frames between `mx.clear_cache()` calls (as mlx-lm's generate_step)
BAD = -1  # the code a frame reads back for a row whose logits were not finite


# --------------------------------------------------------------------------- code predictor


def predict_codes(talker: Talker, hidden: mx.array, c0: mx.array, keys: mx.array, *sampling: mx.array,
                  flags: tuple[bool, bool, bool]) -> mx.array:
    """Codebooks 1..15 of a frame: 2-position prefill, then 14 cached steps (§2.3).

    `keys` is `[B, 15, 2]`: row b draws codebook j + 1 with `keys[b, j]`; `sampling` are a
    `RowSettings`' arrays and `flags` its `(sampled, uses_top_k, uses_top_p)`. Returns `[B, 16]`,
    c0 first.
    """
    settings = RowSettings(*sampling, *flags)
    cp = talker.code_predictor
    cache = cp.make_cache()
    h = cp.decode(mx.stack([hidden, talker.embed_codec(c0)], axis=1), cache)
    codes = [c0]
    for j, head in enumerate(cp.lm_head):
        codes.append(sample(head(h[:, -1]), settings, keys[:, j]))
        if j + 1 < len(cp.lm_head):
            h = cp.decode(cp.model.codec_embedding[j](codes[-1])[:, None], cache)
    return mx.stack(codes, axis=1)


def compiled_predictor(talker: Talker, flags: tuple[bool, bool, bool]) -> Callable:
    """`predict_codes` compiled into one graph (the 15 tiny sequential steps cost dispatch).

    The weights it reads are the compiled function's inputs, not constants captured at the first
    call, so a model whose weights change (`load_weights`) predicts with the new ones. One
    compiled function per `flags` (which filters the batch needs), kept on the talker.
    """
    store = talker.__dict__.setdefault("_compiled_predictors", {})  # plain attribute: no parameter
    if flags not in store:
        weights = [talker.code_predictor, talker.model.codec_embedding]
        store[flags] = mx.compile(partial(predict_codes, talker, flags=flags), inputs=weights)
    return store[flags]


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


# --------------------------------------------------------------------------- rows


@dataclass(eq=False)
class Row:
    """One request in the loop: its host-side bookkeeping.

    Attributes:
        request: what it says and how it samples.
        text: the text fed back with its frames.
        frames: frames handed out so far.
        reason: why it stopped ("eos", "runaway", "length", "dropped", "error"), None while it
            runs.
        error: for "error", what went wrong (the other rows of a batch run on).
        history: its codebook-0 tokens (the runaway guard reads them).
        built: frames whose graphs were built (handed out, in flight, or read and dropped).
    """

    request: Request
    text: TextSource
    frames: int = 0
    reason: str | None = None
    history: list[int] = field(default_factory=list)
    built: int = 0
    error: SynthesisError | None = None

    @property
    def done(self) -> bool:
        return self.reason is not None

    @property
    def limit(self) -> int:
        return self.request.config.max_frames

    def wants_frame(self, index: int) -> bool:
        """Whether frame `index` could still be handed out (before EOS, inside the limits)."""
        return not self.done and index < self.limit

    def finish(self, reason: str) -> None:
        self.reason = self.reason or reason


@dataclass
class _State:
    """The rows' device state, aligned with `FrameLoop.rows`: what the next frame's graph reads."""

    c0: mx.array  # [B] the token sampled for the next frame
    hidden: mx.array  # [B, H] the talker's post-norm hidden state that sampled it
    bad: mx.array  # [B] its logits were not finite
    done: mx.array  # [B] bool: the row sampled EOS or was stopped (it is fed EOS)
    seen: mx.array  # [B, V] bool: tokens fed so far (the repetition penalty's history)
    generated: mx.array  # [B, 1] tokens sampled so far (min-new-tokens)
    keys: mx.array  # [B, 2] each row's key after this frame's
    frame_keys: mx.array  # [B, 16, 2] this frame's draw keys (c0 used the first)
    cache: list  # per talker layer: a KVCache (one row) or a BatchKVCache

    @staticmethod
    def concat(a: "_State", b: "_State") -> "_State":
        joined = {name: mx.concatenate([getattr(a, name), getattr(b, name)])
                  for name in ("c0", "hidden", "bad", "done", "seen", "generated", "keys", "frame_keys")}
        return _State(**joined, cache=[_merge(x, y) for x, y in zip(a.cache, b.cache)])

    def take(self, keep: list[int]) -> "_State":
        index = mx.array(keep)
        kept = {name: getattr(self, name)[index]
                for name in ("c0", "hidden", "bad", "done", "seen", "generated", "keys", "frame_keys")}
        return _State(**kept, cache=[_filter(c, keep) for c in self.cache])


def _merge(a, b) -> BatchKVCache:
    """One layer's cache for the rows of `a` then those of `b`, right-aligned (left padding)."""
    if isinstance(a, KVCache):
        a = BatchKVCache.merge([a])
    a.extend(b if isinstance(b, BatchKVCache) else BatchKVCache.merge([b]))
    return a


def _filter(cache, keep: list[int]):
    """One layer's cache for the rows `keep`; a single row goes back to a plain `KVCache`."""
    if len(keep) == 1 and isinstance(cache, BatchKVCache):
        return cache.extract(keep[0])
    if isinstance(cache, BatchKVCache):
        cache.filter(mx.array(keep))
    return cache


@lru_cache
def _key_splitter(groups: int) -> Callable:
    def row_keys(key: mx.array) -> tuple[mx.array, mx.array]:
        key, step_key = mx.random.split(key)
        return key, mx.random.split(step_key, groups)

    return mx.vmap(row_keys)


def _next_keys(keys: mx.array, groups: int) -> tuple[mx.array, mx.array]:
    """Each row's next key and its `groups` draw keys for one frame: `([B, 2], [B, groups, 2])`,
    the keys the row would get alone, built as one graph whatever the batch size."""
    return _key_splitter(groups)(keys)


@dataclass
class _Built:
    """A frame's graph, queued: the rows it was built for and the codes to read back."""

    rows: list[Row]
    packed: mx.array  # [B, 16] int32 codes, BAD in the first column for non-finite logits
    index: list[int]  # each row's frame index


# --------------------------------------------------------------------------- the loop


class FrameLoop:
    """The frame loop over a set of rows that may change between frames.

    `add` prefills a request on its own (with its voice prefix's cached KV, if any) and merges it
    into the running batch, which it joins at the next frame; `step` hands out the next frame of
    every row that has one, one host sync per call, with the following frame already queued;
    rows leave when they stop (`drop` removes one early, a client that went away). Each row
    samples with its own settings and its own key sequence, so its codes are those it would get
    alone (bit for bit when alone in the batch; greedy and seeded rows of a batch round their
    matrix products per batch, which can move a near-tie).

    Args:
        talker: the talker (with its code predictor).
        tts_pad: `[1, H]` text-side embedding added once a row's text has run out.
    """

    def __init__(self, talker: Talker, tts_pad: mx.array):
        self.talker = talker
        self.tts_pad = tts_pad
        cfg = talker.config
        self.eos = cfg.codec_eos_token_id
        self.vocab = cfg.vocab_size
        self.groups = cfg.num_code_groups
        self.ban = talker_ban_mask(cfg.vocab_size, self.eos)
        self.ids = mx.arange(self.vocab)
        self.rows: list[Row] = []  # in the batch, aligned with `state`
        self.state: _State | None = None
        # Prefilled (or handed over by another loop): merged at the next build.
        self.joining: list[tuple[list[Row], _State]] = []
        self.queued: _Built | None = None
        self.stepped = 0
        self._row_settings: tuple[RowSettings, RowSettings, mx.array] | None = None

    @property
    def active(self) -> bool:
        """Whether any row can still get a frame."""
        return any(not r.done for r in self.rows) or bool(self.joining)

    # ------------------------------------------------------------------- rows in and out

    def add(self, request: Request, text: TextSource | None = None,
            prefix: PrefixCache | None = None) -> Row:
        """Prefill `request` alone and queue it to join the batch at the next frame.

        Raises:
            SynthesisError: the prompt's logits are not finite (reported at its frame 0).
        """
        prompt = request.prompt
        row = Row(request, text or FixedText(prompt.trailing, self.tts_pad, prompt.text_tokens))
        x = request.prompt.prefill[None]
        if prefix is not None:
            assert request.prompt.prefix_len == prefix.length
            cache, x = prefix.restore(), x[:, prefix.length:]
        else:
            cache = self.talker.make_cache()
        logits, hidden = self.talker(x, cache)
        keys, frame_keys = _next_keys(request.key[None], self.groups)
        seen = mx.zeros((1, self.vocab), mx.bool_)
        config = request.config
        c0, bad = self._sample(logits[:, -1], seen, mx.zeros((1, 1), mx.int32),
                               RowSettings.of([config.talker], self.vocab),
                               mx.array([[config.repetition_penalty]], mx.float32), frame_keys)
        state = _State(c0, hidden[:, -1], bad, mx.zeros((1,), mx.bool_), seen, mx.ones((1, 1), mx.int32),
                       keys, frame_keys, cache)
        mx.async_eval(c0, bad)
        self.joining.append(([row], state))
        return row

    @property
    def members(self) -> list[Row]:
        """Every row of this loop, joining ones included."""
        return self.rows + [row for rows, _ in self.joining for row in rows]

    def hand_over(self, to: "FrameLoop") -> list[tuple[Row, np.ndarray]]:
        """Read the frame in flight (as `step` would, with nothing built after it), then move
        every row still running, with its device state, to `to`, which it joins at its next
        frame; this loop is left empty. Returns that frame's `(row, codes)` pairs."""
        out = self._read(self.queued) if self.queued is not None else []
        self.queued = None
        self._settle()  # the rows that stopped stay behind; joining ones go too
        if self.rows:
            to.joining.append((self.rows, self.state))
        self.rows, self.state, self._row_settings = [], None, None
        return out

    # ------------------------------------------------------------------- frames

    def step(self, ahead: bool = True) -> list[tuple[Row, np.ndarray]]:
        """The next frame of each row that has one: `(row, codes [16])` pairs.

        Rows that stop instead (EOS, the runaway guard, their frame limit, non-finite logits)
        get no pair; their `reason` (and `error`) say why. An empty list with `active` still true
        means the rows wait for text.

        `ahead=False` queues nothing after this frame (the next call builds its own): for a
        caller that will do its own work on these codes first and wants the machine for it.

        Raises:
            Abandoned: on a model thread, the caller of the call running this loop stopped waiting.
        """
        check_abandoned()
        if self.queued is None:
            self.queued = self._build()
            if self.queued is None:
                return []
        following = self._build() if ahead else None  # frame n + 1 is queued before frame n is read
        out = self._read(self.queued)
        self.queued = following
        self.stepped += 1
        if self.stepped % CLEAR_CACHE_EVERY == 0:
            mx.clear_cache()
        self.release_stopped()
        return out

    def release_stopped(self) -> None:
        """Once no row can get a frame, let go of the batch's device state (its KV caches) now,
        not at the next frame: an idle server's batch would hold them until the next request
        (at 0.6B in float32, 28 layers x 8 KV heads x 128 x 2 x 4 bytes = 224 KiB a position:
        0.85 GiB for 8 rows of 495 positions)."""
        if not self.active:
            self.rows, self.state, self.queued, self._row_settings = [], None, None, None

    def _read(self, built: _Built) -> list[tuple[Row, np.ndarray]]:
        codes = np.array(built.packed)  # the one host sync of a frame
        out = []
        for b, (row, index) in enumerate(zip(built.rows, built.index)):
            if row.done or index != row.frames:
                continue  # stopped earlier; this frame was built ahead for nothing
            token = int(codes[b, 0])
            if token == BAD:  # this row fails; the others of a batch go on
                row.error = SynthesisError(
                    f"The talker produced non-finite logits at frame {index}; the weights or the "
                    "dtype overflowed (load the model with dtype='float32').")
                row.finish("error")
                continue
            if token == self.eos:
                row.finish("eos")  # the EOS token itself gets no frame (§3.5)
                continue
            row.history.append(token)
            guard = row.request.guard
            # The cap is read every frame: streamed-in text raises a prompt's token count.
            if guard and (len(row.history) > guard.frame_cap(row.text.tokens) or guard.looping(row.history)):
                row.finish("runaway")
                continue
            row.frames += 1
            out.append((row, codes[b]))
            if row.frames >= row.limit:
                row.finish("length")
        return out

    def _build(self) -> _Built | None:
        """Queue the next frame's graph for every row that may want it; None if none can be built."""
        self._settle()
        rows = self.rows
        index = [r.built for r in rows]
        if not any(r.wants_frame(i) for r, i in zip(rows, index)):
            return None  # every row's last frame is built already
        if not all(r.text.ready(i) for r, i in zip(rows, index)):
            return None  # text streamed in has not arrived yet
        s = self.state  # rows stopped on the host left the batch in `_settle`
        done = s.done | (s.c0 == self.eos)
        # Rows that are done are fed EOS, as HF's generate feeds them its pad (= EOS) id.
        c0 = mx.where(done, self.eos, s.c0).astype(mx.uint32)
        seen = s.seen | (self.ids == c0[:, None])
        talker_settings, predictor_settings, penalty = self._settings()
        flags = (predictor_settings.sampled, predictor_settings.uses_top_k, predictor_settings.uses_top_p)
        predict = compiled_predictor(self.talker, flags)
        codes = predict(s.hidden, c0, s.frame_keys[:, 1:], *predictor_settings.arrays())
        packed = mx.where(s.bad[:, None], BAD, codes.astype(mx.int32))
        for r in rows:
            r.built += 1
        if any(r.wants_frame(r.built) for r in rows):
            text = mx.concatenate([r.text.embedding(i) for r, i in zip(rows, index)])
            logits, hidden = self.talker.decode((self.talker.embed_frame(codes) + text)[:, None], s.cache)
            keys, frame_keys = _next_keys(s.keys, self.groups)
            nxt, bad = self._sample(logits[:, -1], seen, s.generated, talker_settings, penalty, frame_keys)
            self.state = _State(nxt, hidden[:, -1], bad, done, seen, s.generated + 1, keys, frame_keys,
                                s.cache)
            mx.async_eval(packed, nxt, bad)
        else:  # the last frame of every row: no talker step after it
            mx.async_eval(packed)
        return _Built(list(rows), packed, index)

    def _sample(self, logits: mx.array, seen: mx.array, generated: mx.array, settings: RowSettings,
                penalty: mx.array, frame_keys: mx.array) -> tuple[mx.array, mx.array]:
        """Each row's next c0 from the talker's last logits, and whether those were finite."""
        scores = process_talker_logits(logits, seen, generated, penalty, self.ban, self.eos)
        return sample(scores, settings, frame_keys[:, 0]), mx.any(~mx.isfinite(logits), axis=-1)

    def _settings(self) -> tuple[RowSettings, RowSettings, mx.array]:
        """The rows' talker and code-predictor sampler settings and repetition penalties."""
        if self._row_settings is None:
            configs = [r.request.config for r in self.rows]
            self._row_settings = (
                RowSettings.of([c.talker for c in configs], self.vocab),
                RowSettings.of([c.code_predictor for c in configs],
                               self.talker.code_predictor.config.vocab_size),
                mx.array([c.repetition_penalty for c in configs], mx.float32)[:, None],
            )
        return self._row_settings

    def _settle(self) -> None:
        """Drop stopped rows from the batch and merge joining ones, before building a frame."""
        keep = [i for i, r in enumerate(self.rows) if not r.done]
        if len(keep) < len(self.rows):
            self.rows = [self.rows[i] for i in keep]
            self.state = self.state.take(keep) if keep else None
            self._row_settings = None
        for rows, state in self.joining:
            self.rows.extend(rows)
            self.state = state if self.state is None else _State.concat(self.state, state)
            self._row_settings = None
        self.joining = []


# --------------------------------------------------------------------------- fixed batches


@dataclass
class Frame:
    """One step of the frame loop for a fixed batch.

    Attributes:
        codes: `[B, 16]` codes of this frame for every row, on the host (zeros for rows
            without a frame this step).
    """

    codes: np.ndarray


def generate_step(
    talker: Talker,
    requests: list[Request],
    tts_pad: mx.array,
    prefixes: list[PrefixCache | None] | None = None,
) -> Iterator[Frame]:
    """Generate frames for a batch of requests, one frame per iteration.

    Args:
        talker: the talker (with its code predictor).
        requests: one `Request` per batch row (prompt, sampling settings, seed, guard, limit);
            each row draws from its own keys with its own settings.
        tts_pad: `[1, H]` text-side embedding added once a row's trailing text runs out.
        prefixes: per row, the KV cache of its prompt's voice prefix, computed earlier for the
            same voice (only the rest is prefilled), or None.

    Yields:
        `Frame`s until every row has stopped.

    Raises:
        SynthesisError: the talker produced non-finite logits.
    """
    loop = FrameLoop(talker, tts_pad)
    prefixes = prefixes or [None] * len(requests)
    rows = [loop.add(r, None, p) for r, p in zip(requests, prefixes)]
    where = {id(row): b for b, row in enumerate(rows)}
    while loop.active:
        out = loop.step()
        _raise_errors(rows)
        if not out:
            continue  # this step's frames all stopped; the rows left may still have frames
        codes = np.zeros((len(rows), NUM_CODE_GROUPS), np.int32)
        for row, row_codes in out:
            codes[where[id(row)]] = row_codes
        yield Frame(codes)


def _raise_errors(rows: list[Row]) -> None:
    for row in rows:
        if row.error is not None:
            raise row.error


def generate_codes(
    talker: Talker,
    requests: list[Request],
    tts_pad: mx.array,
    prefixes: list[PrefixCache | None] | None = None,
) -> list[tuple[np.ndarray, str]]:
    """All frames of every row: `(codes [frames, 16], finish_reason)` per request.

    `finish_reason` is "eos" (the model stopped), "runaway" (the guard stopped it) or "length"
    (the frame limit was reached).
    """
    loop = FrameLoop(talker, tts_pad)
    prefixes = prefixes or [None] * len(requests)
    rows = [loop.add(r, None, p) for r, p in zip(requests, prefixes)]
    frames: dict[int, list[np.ndarray]] = {id(r): [] for r in rows}
    while loop.active:
        for row, codes in loop.step():
            frames[id(row)].append(codes)
        _raise_errors(rows)
    return [(np.stack(frames[id(r)]) if frames[id(r)] else np.zeros((0, NUM_CODE_GROUPS), np.int32),
             r.reason or "length") for r in rows]
