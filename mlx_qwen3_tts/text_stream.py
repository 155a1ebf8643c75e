"""Text streamed in, audio streamed out: speech for text that is still being written (an LLM).

Uses the reference's streaming-text prompt layout (§3.4 A), where text tokens enter one per frame:
the prefill needs only the first token, and frame `s` feeds back token `s + 1`. The session keeps
`lookahead` tokens ahead of the frame loop and waits (rather than padding) while the text runs
short, so speech never ends early. Only whole pre-tokens are committed: the BPE ids of a word
that is still arriving can change, those of the words before it cannot. Each `feed` tokenizes
only the text after the last committed pre-token, so a long stream of small feeds stays linear.

    with tts.open_stream(speaker="ryan", language="english") as s:
        for piece in pieces_of_text:    # e.g. an LLM's output as it arrives
            s.feed(piece)
            for chunk in s.audio():   # whatever audio is ready, never blocking on more text
                handle(chunk.audio)
        for chunk in s.finish():      # the rest
            handle(chunk.audio)
"""

import time
from collections.abc import Iterator
from typing import Any

import mlx.core as mx

from .errors import EmptyTextError, ModeError, SynthesisError
from .generate import FrameLoop
from .request import SAMPLING_ARGUMENTS, Job, check_seed, check_str, make_guard
from .runtime import ModelThread
from .synthesis import CHUNK_FRAMES, FIRST_CHUNK_FRAMES, AudioChunk, Engine, JobStream, check_chunk_sizes
from .text_split import has_words
from .timescale import check_speed


class StreamedText:
    """The text source of a session: committed tokens, fed back one per frame (`TextSource`)."""

    def __init__(self, engine: Engine):
        self.embedder = engine.embedder
        self.ids: list[int] = []
        self.finished = False  # all text is in: after the last token come tts_eos, then tts_pad

    @property
    def tokens(self) -> int:
        return len(self.ids)

    def embedding(self, step: int) -> mx.array:
        i = step + 1  # frame `step` feeds back token `step + 1` (token 0 is in the prefill)
        if i < len(self.ids):
            return self.embedder.text(self.ids[i : i + 1])
        return self.embedder.tts_eos if i == len(self.ids) else self.embedder.tts_pad

    def ready(self, step: int) -> bool:
        return self.finished or step + 1 < len(self.ids)


class TextStream:
    """A synthesis session fed text piece by piece (see `Qwen3TTS.open_stream`)."""

    def __init__(
        self,
        engine: Engine,
        thread: ModelThread,
        lookahead: int = 2,
        chunk_frames: int = CHUNK_FRAMES,
        first_chunk_frames: int = FIRST_CHUNK_FRAMES,
        runaway_guard: Any = True,
        **kwargs: Any,
    ):
        if isinstance(lookahead, bool) or not isinstance(lookahead, int) or lookahead < 0:
            raise SynthesisError(f"`lookahead` must be an integer >= 0, got {lookahead!r}.", "lookahead")
        self.sizes = check_chunk_sizes(first_chunk_frames, chunk_frames)
        if kwargs.get("non_streaming_mode"):
            raise ModeError("Text streamed in needs the streaming-text layout; leave out "
                            "`non_streaming_mode`.", "non_streaming_mode")
        kwargs["non_streaming_mode"] = False
        self.engine, self.thread, self.lookahead = engine, thread, lookahead
        builder = engine.builder
        self.seed = check_seed(kwargs.pop("seed", None))
        self.speed = check_speed(kwargs.pop("speed", 1.0))
        self.guard = make_guard(runaway_guard)
        sampling = {k: kwargs.pop(k) for k in list(kwargs) if k in SAMPLING_ARGUMENTS}
        self.config, _ = builder.sampling(**sampling)
        self.voice = thread.run(builder.voice, **kwargs)
        if self.voice.ref_codes is not None:
            raise ModeError(
                "In-context voice clones need the whole text before the prefill; stream with an "
                "x-vector voice (create_voice_prompt(ref_audio) without `ref_text`) instead.", "ref_text")
        self.text = StreamedText(engine)
        self.tail = ""  # text after the last committed pre-token
        self.words = False  # a letter or digit was fed: `generate` refuses text without any
        self.loop: FrameLoop | None = None
        self.last: AudioChunk | None = None  # the final chunk, kept for finish()
        self.done = False
        self.start = time.perf_counter()

    def __enter__(self) -> "TextStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop generating: the frame loop is dropped."""
        self.loop = None
        self.done = True

    @property
    def finished(self) -> bool:
        """`finish()` was called: all text is in."""
        return self.text.finished

    def feed(self, text: str) -> None:
        """Add text; tokens are committed up to the last complete pre-token."""
        if self.finished:
            raise SynthesisError("feed() after finish(); open a new stream.")
        text = check_str(text, "text")
        self.words = self.words or has_words(text)
        ids, self.tail = self.engine.text_tokenizer.encode_stable(self.tail + text)
        self.text.ids += ids

    def audio(self) -> Iterator[AudioChunk]:
        """Audio chunks ready with the text fed so far; returns when more text is needed."""
        return self.thread.iterate(lambda: self._steps(final=False))

    def finish(self) -> Iterator[AudioChunk]:
        """Commit the rest of the text and generate to the end; the last chunk is final."""
        if not self.finished:
            if not self.words:
                self.close()
                raise EmptyTextError("The streamed text has no letters or digits, so nothing to speak.",
                                     "text")
            self.text.ids += self.engine.text_tokenizer.encode_literal(self.tail)
            self.text.finished = True
            self.tail = ""
        return self.thread.iterate(lambda: self._steps(final=True))

    # ----------------------------------------------------------------------- internals

    def _ready(self) -> bool:
        """Enough text committed for the next frame: producing frame s reads token s + 1."""
        produced = self.out.total if self.loop is not None else 0
        return self.finished or self.text.tokens > produced + 1 + self.lookahead

    def _start(self) -> None:
        if not self.text.ids:
            raise EmptyTextError("The streamed text has no tokens to speak; feed() some text first.")
        engine = self.engine
        # The prompt holds the first token only; the rest is fed back by `StreamedText`.
        request = engine.builder.request(self.text.ids[:1], self.voice, self.config, self.seed, self.guard)
        self.out = JobStream(engine, Job([request], speed=self.speed), *self.sizes)
        self.out.start = self.start  # chunks' `elapsed` counts from open_stream
        request = self.out.next_request()
        self.loop = FrameLoop(engine.model.talker, engine.embedder.tts_pad)
        self.row = self.loop.add(request, text=self.text, prefix=engine.prefix(request))

    def _steps(self, final: bool) -> Iterator[AudioChunk]:
        if self.done:  # closed, failed, or its final chunk given (a second finish() gives nothing)
            return
        if self.loop is None:
            if not self._ready():
                return
            self._start()
        # `close()` may come from another thread while this generator waits at a yield: it drops
        # the loop, so each step starts by checking it is still there.
        while self.last is None and self._ready():
            for _, codes in self.loop.step():
                chunk = self.out.frame(codes)
                if chunk is not None:
                    yield chunk
            if self.loop is None:
                return
            if self.row.error is not None:
                self.done = True
                raise self.row.error
            if self.row.done:
                self.last = self.out.end_piece(self.row.reason)
        if final and self.last is not None:  # the final chunk comes from finish() only
            self.done = True
            yield self.last
