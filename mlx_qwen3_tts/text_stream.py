"""Text streamed in, audio streamed out: speech for text that is still being written (an LLM).

Uses the reference's streaming-text prompt layout (§3.4 A), where text tokens enter one per frame:
the prefill needs only the first token, and frame `s` feeds back token `s + 1`. The session keeps
`lookahead` tokens ahead of the frame loop and waits (rather than padding) while the text runs
short, so speech never ends early. Only whole pre-tokens are committed: the BPE ids of a word
that is still arriving can change, those of the words before it cannot.

    with tts.open_stream(speaker="ryan", language="english") as s:
        for piece in llm_pieces:
            s.feed(piece)
            for chunk in s.audio():   # whatever audio is ready, never blocking on more text
                play(chunk.audio)
        for chunk in s.finish():      # the rest
            play(chunk.audio)
"""

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import mlx.core as mx
import numpy as np

from .errors import EmptyTextError, ModeError, SynthesisError
from .generate import Frame, RunawayGuard, generate_step
from .prompt import Prompt

if TYPE_CHECKING:
    from .tts import AudioChunk, Qwen3TTS


class TextStream:
    """A synthesis session fed text piece by piece (see `Qwen3TTS.open_stream`)."""

    def __init__(
        self,
        tts: "Qwen3TTS",
        lookahead: int = 2,
        chunk_frames: int = 12,
        first_chunk_frames: int = 2,
        runaway_guard: bool | RunawayGuard = True,
        **kwargs: Any,
    ):
        if lookahead < 0 or chunk_frames < 1 or first_chunk_frames < 1:
            raise SynthesisError("lookahead must be >= 0 and chunk sizes >= 1.")
        if kwargs.get("non_streaming_mode"):
            raise ModeError("Text streamed in needs the streaming-text layout (non_streaming_mode=False).")
        self.tts = tts
        self.lookahead = lookahead
        self.sizes = (first_chunk_frames, chunk_frames)
        self.kwargs = {**kwargs, "non_streaming_mode": False}
        self.guard = RunawayGuard() if runaway_guard is True else (runaway_guard or None)
        self.seed = tts._seed(self.kwargs.pop("seed", None))
        self.text = ""
        self.tokens: list[int] = []
        self.finished = False
        self.prompt: Prompt | None = None
        self.frames: Iterator[Frame] | None = None
        self.produced = 0
        self.pending: list[np.ndarray] = []
        self.reasons: list[str | None] = [None]
        self.done = False
        self.start = time.perf_counter()

    def __enter__(self) -> "TextStream":
        return self

    def __exit__(self, *exc) -> None:
        self.frames = None

    def feed(self, text: str) -> None:
        """Add text; tokens are committed up to the last complete pre-token."""
        if self.finished:
            raise SynthesisError("feed() after finish(); open a new stream.")
        if not isinstance(text, str):
            raise SynthesisError(f"feed() takes str, got {type(text).__name__}.")
        self.text += text
        self._commit(final=False)

    def audio(self) -> Iterator["AudioChunk"]:
        """Audio chunks ready with the text fed so far; returns when more text is needed."""
        yield from self._run(final=False)

    def finish(self) -> Iterator["AudioChunk"]:
        """Commit the rest of the text and generate to the end; the last chunk is final."""
        self.finished = True
        self._commit(final=True)
        yield from self._run(final=True)

    # ----------------------------------------------------------------------- internals

    def _commit(self, final: bool) -> None:
        tok = self.tts.text_tokenizer
        pieces = tok.pre_tokens(self.text)
        self.tokens = tok.encode_pre_tokens(pieces if final else pieces[:-1])
        if self.prompt is not None:
            self.prompt.text_tokens = len(self.tokens)

    def _ready(self) -> bool:
        """Enough text committed for the next frame: producing frame s reads token s + 1."""
        return self.finished or len(self.tokens) > self.produced + 1 + self.lookahead

    def _start(self) -> None:
        if not self.tokens:
            raise EmptyTextError("The streamed text has no tokens to speak; feed() some text first.")
        # Build the prompt from the first token only; the rest is fed by `_text_at`.
        request = self.tts._request(self.text, seed=self.seed, text_ids=self.tokens[:1], **self.kwargs)
        if request.prompt.ref_codes is not None:
            raise ModeError(
                "In-context voice clones need the whole text before the prefill; stream with an "
                "x-vector voice (create_voice_prompt(ref_audio) without ref_text) instead."
            )
        self.prompt = request.prompt
        self.prompt.text_tokens = len(self.tokens)
        self.decoder = self.tts.speech_tokenizer.stream_decoder()
        self.frames = generate_step(
            self.tts.model.talker, [self.prompt], self.tts.embedder.tts_pad, request.config,
            mx.random.key(self.seed), self.guard, self._text_at, self.tts._prefix(self.prompt),
        )

    def _text_at(self, step: int) -> mx.array:
        e = self.tts.embedder
        i = step + 1
        if i < len(self.tokens):
            return e.text(self.tokens[i : i + 1])
        return e.tts_eos if i == len(self.tokens) else e.tts_pad

    def _run(self, final: bool) -> Iterator["AudioChunk"]:
        with mx.stream(self.tts.device):
            yield from self._steps(final)

    def _steps(self, final: bool) -> Iterator["AudioChunk"]:
        if self.frames is None:
            if self.done or not self._ready():
                return
            self._start()
        while not self.done and self._ready():
            frame = next(self.frames, None)
            if frame is None:
                self.done = True
                break
            self.reasons = frame.reasons
            self.pending.append(np.array(frame.codes[0]))
            self.produced += 1
            size = self.sizes[0] if self.produced == len(self.pending) else self.sizes[1]
            if len(self.pending) >= size:
                yield self._chunk(False)
        if final:
            yield self._chunk(True)

    def _chunk(self, final: bool) -> "AudioChunk":
        from .tts import AudioChunk, _warn_runaway

        wav = self.tts._decode_stream(self.decoder, self.pending) if self.pending else np.zeros(0, np.float32)
        n, self.pending = len(self.pending), []
        chunk = AudioChunk(wav, self.tts.sample_rate, n, self.produced, final,
                           time.perf_counter() - self.start)
        if final:
            chunk.finish_reason, chunk.seed = self.reasons[0] or "length", self.seed
            _warn_runaway([chunk.finish_reason])
        return chunk
