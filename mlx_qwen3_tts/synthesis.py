"""From validated requests to audio: the frame loop, the codec, chunks and joined pieces.

`Engine` is what every synthesis path runs on (`Qwen3TTS`, `TextStream`, the server): the model,
its request builder, the voice prefixes' KV caches and the speech tokenizer. Audio is assembled
in one way for every path: frames are grouped into chunks (`Chunker`), decoded by a streaming
decoder, and the pieces of a split text are crossfaded (`Joiner`); one-shot calls decode each
piece at once, which the streaming decoder reproduces chunk by chunk to float32 rounding.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import mlx.core as mx
import numpy as np

from .audio import MAX_REFERENCE_SECONDS, prepare_audio, read_audio
from .errors import AudioError, RunawayWarning, SynthesisError, warn
from .generate import Frame, FrameLoop, PrefixCache, PrefixStore, Row, generate_codes, generate_step
from .models.qwen3_tts import Model
from .prompt import PromptEmbedder
from .request import GenerationConfig, Job, Request, RequestBuilder
from .runtime import check_abandoned
from .speech_tokenizer import SpeechTokenizer, StreamingDecoder
from .text_tokenizer import TextTokenizer
from .timescale import TimeStretcher, time_stretch
from .tokens import NUM_CODE_GROUPS
from .voice_prompt import MAX_REF_TEXT_CHARS, VoicePrompt

CHUNK_FRAMES = 12  # frames per streamed chunk after the first (0.96 s)
FIRST_CHUNK_FRAMES = 2  # a short first chunk: audio starts after 2 frames
CROSSFADE_SECONDS = 0.02  # the join between the pieces of a split text
SILENCE_PEAK = 1e-4  # a reference whose peak is below this (-80 dBFS) is treated as silent


@dataclass
class GenerationResult:
    """One synthesized utterance.

    Attributes:
        audio: float32 mono waveform at `sample_rate` (24 kHz).
        codes: `[frames, 16]` codec codes.
        finish_reason: "eos" (the model stopped), "length" (`max_frames` was reached) or
            "runaway" (the runaway guard stopped it).
        seed: the seed that reproduces this result.
        generation_time: seconds from the call to the decoded audio.
        peak_memory_gb: MLX peak memory during the call.
    """

    audio: np.ndarray
    sample_rate: int
    codes: np.ndarray
    finish_reason: str
    seed: int
    generation_time: float
    peak_memory_gb: float

    @property
    def frames(self) -> int:
        return int(self.codes.shape[0])

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.sample_rate

    @property
    def rtf(self) -> float:
        """Real-time factor: generation time / audio duration (below 1 is faster than real time)."""
        return self.generation_time / self.seconds if self.seconds else float("inf")


@dataclass
class AudioChunk:
    """A piece of streamed audio. Concatenating every chunk's `audio` gives the utterance.

    `finish_reason` and `seed` come with the last chunk of an utterance (of each turn, in a
    dialogue, whose chunks say their `turn`).
    """

    audio: np.ndarray
    sample_rate: int
    frames: int
    total_frames: int
    is_final: bool
    elapsed: float
    finish_reason: str | None = None
    seed: int | None = None
    turn: int | None = None


def check_chunk_sizes(first_chunk_frames: Any, chunk_frames: Any) -> tuple[int, int]:
    for name, value in (("first_chunk_frames", first_chunk_frames), ("chunk_frames", chunk_frames)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SynthesisError(f"`{name}` must be an integer >= 1, got {value!r}.", name)
    return first_chunk_frames, chunk_frames


def finish_reason(reasons: list[str]) -> str:
    """The finish reason of a split text: the most severe of its pieces'."""
    for reason in ("runaway", "length"):
        if reason in reasons:
            return reason
    return "eos"


def warn_runaway(reason: str | None) -> None:
    if reason == "runaway":
        warn("Generation did not stop by itself and the runaway guard ended it (finish_reason "
             "'runaway'); turn the guard off (`runaway_guard`) to let it run to the frame limit.",
             RunawayWarning, "runaway_guard", stacklevel=2)


def check_audio(audio: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(audio)):
        raise SynthesisError("The speech tokenizer decoded non-finite audio: its weights are broken "
                             "(NaN or inf); reconvert or re-download the checkpoint.")
    return audio


class Chunker:
    """Groups a piece's frames into chunks: `first` frames, then `every` frames each."""

    def __init__(self, first: int, every: int):
        self.first, self.every = first, every
        self.pending: list[np.ndarray] = []
        self.emitted = 0

    @property
    def due(self) -> bool:
        """Whether the next frame completes a chunk."""
        return len(self.pending) + 1 >= (self.first if self.emitted == 0 else self.every)

    def add(self, codes: np.ndarray) -> np.ndarray | None:
        """Add one frame's `[16]` codes; a full chunk `[n, 16]` when one is complete."""
        due = self.due
        self.pending.append(codes)
        return self.take() if due else None

    def take(self) -> np.ndarray:
        """The frames not yet emitted (possibly none) as `[n, 16]` int32."""
        chunk = np.stack(self.pending) if self.pending else np.zeros((0, NUM_CODE_GROUPS), np.int32)
        chunk = chunk.astype(np.int32)
        self.emitted += len(self.pending)
        self.pending = []
        return chunk


def crossfade(a: np.ndarray, b: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Overlap the last `n` samples of `a` with the first `n` of `b` (equal-gain linear fade).

    Returns `(a without its tail, b with the blended head)`, so streams can emit `a` at once.
    """
    n = min(n, len(a), len(b))
    if n == 0:
        return a, b
    ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
    head = a[-n:] * (1 - ramp) + b[:n] * ramp
    return a[:-n], np.concatenate([head, b[n:]])


class Joiner:
    """Joins the audio of a split text's pieces with an equal-gain linear crossfade of `fade`
    samples, as a stream: all but the last piece's tail goes out at once, and that tail is held
    back to blend with the next piece's head."""

    def __init__(self, fade: int):
        self.fade = fade
        self.carry = np.zeros(0, np.float32)
        self.blend = False  # the next audio starts a new piece, to be blended with `carry`

    def next_piece(self) -> None:
        self.blend = self.carry.size > 0

    def push(self, audio: np.ndarray, last_piece: bool) -> np.ndarray:
        """The audio that can go out now, given the next part of the current piece."""
        if self.blend and audio.size:
            self.carry, audio = crossfade(self.carry, audio, self.fade)
            self.blend = False
        out = np.concatenate([self.carry, audio]) if self.carry.size else audio
        keep = 0 if last_piece else min(self.fade, len(out))
        self.carry = out[len(out) - keep:]
        return out[: len(out) - keep]

    def flush(self) -> np.ndarray:
        out, self.carry = self.carry, np.zeros(0, np.float32)
        return out


class Engine:
    """A loaded checkpoint's synthesis machinery, shared by every front end.

    Args:
        model: talker (+ speaker encoder).
        text_tokenizer, speech_tokenizer: the checkpoint's tokenizers.
        generation_defaults: `generation_config.json` (sampling defaults).
    """

    def __init__(
        self,
        model: Model,
        text_tokenizer: TextTokenizer,
        speech_tokenizer: SpeechTokenizer,
        generation_defaults: dict[str, Any],
    ):
        self.model = model
        self.text_tokenizer = text_tokenizer
        self.speech_tokenizer = speech_tokenizer
        self.embedder = PromptEmbedder(model, text_tokenizer)
        self.builder = RequestBuilder(model.config, self.embedder,
                                      GenerationConfig.from_checkpoint(generation_defaults),
                                      self.create_voice_prompt)
        self.prefixes = PrefixStore()
        self.sample_rate = speech_tokenizer.sample_rate

    # ------------------------------------------------------------------- voices

    def create_voice_prompt(self, ref_audio: Any, ref_text: str | None = None) -> VoicePrompt:
        """Encode a reference voice (see `Qwen3TTS.create_voice_prompt`)."""
        if ref_text is not None and not (isinstance(ref_text, str) and ref_text.strip()):
            raise SynthesisError(
                "`ref_text` is empty; pass the transcript of the reference audio, or leave it out "
                "to clone from the speaker embedding only.", "ref_text")
        if ref_text is not None and len(ref_text) > MAX_REF_TEXT_CHARS:  # before any encoding
            raise SynthesisError(f"`ref_text` is {len(ref_text)} characters long; a transcript of at "
                                 f"most {MAX_REFERENCE_SECONDS} s of speech has at most "
                                 f"{MAX_REF_TEXT_CHARS}.", "ref_text")
        wav, sr = _read_reference(ref_audio)
        tok = self.speech_tokenizer
        wav24 = prepare_audio(wav, sr, tok.input_sample_rate)  # checks rate and length first
        if np.max(np.abs(wav24)) < SILENCE_PEAK:
            raise AudioError("Reference audio is silent; pass a recording of the voice to clone.",
                             "ref_audio")
        embedding = self.model.speaker_encoder.embed(wav24)
        codes = tok.encode(wav24, tok.input_sample_rate)
        return VoicePrompt(
            speaker_embedding=np.array(embedding.astype(mx.float32)),
            ref_codes=codes.astype(np.int32) if ref_text is not None else None,
            ref_text=ref_text,
        )

    # ------------------------------------------------------------------- frames

    def frames(self, requests: list[Request]) -> Iterator[Frame]:
        """`generate_step` over these requests, each reusing its voice prefix."""
        return generate_step(self.model.talker, requests, self.embedder.tts_pad,
                             [self.prefix(r) for r in requests])

    def prefix(self, request: Request) -> PrefixCache | None:
        """The request's voice prefix KV cache (computed once per voice, `PrefixStore`)."""
        return self.prefixes.get(self.model.talker, request.prompt)

    def stream_decoder(self, request: Request) -> StreamingDecoder:
        decoder = self.speech_tokenizer.stream_decoder()
        if request.prompt.ref_codes is not None:
            # In-context clones decode their reference first, so the first chunk is seamless.
            decoder.decode_step(np.array(request.prompt.ref_codes))
        return decoder

    def decode(self, codes: np.ndarray, request: Request, mode: str) -> np.ndarray:
        """One piece's audio decoded at once (`mode` "exact" or the official "reference")."""
        if codes.shape[0] == 0:
            return np.zeros(0, np.float32)
        if request.prompt.ref_codes is None:
            return check_audio(self.speech_tokenizer.decode(codes, mode=mode))
        # In-context clones decode reference + output together and cut the reference off (§3.8).
        ref = np.array(request.prompt.ref_codes)
        wav = self.speech_tokenizer.decode(np.concatenate([ref, codes]), mode=mode)
        if mode == "reference":
            cut = int(ref.shape[0] / (ref.shape[0] + codes.shape[0]) * wav.shape[0])
        else:
            cut = ref.shape[0] * self.speech_tokenizer.samples_per_frame
        return check_audio(wav[cut:])

    def codes(self, requests: list[Request]) -> list[tuple[np.ndarray, str]]:
        """All frames of every row: `(codes [frames, 16], finish_reason)` per request."""
        return generate_codes(self.model.talker, requests, self.embedder.tts_pad,
                              [self.prefix(r) for r in requests])

    # ------------------------------------------------------------------- whole calls

    def generate(self, job: Job) -> GenerationResult:
        """A job's audio, each piece decoded at once (`job.decode_mode`) and joined."""
        start = time.perf_counter()
        mx.reset_peak_memory()
        budget = _Budget(job.max_frames)
        joiner = Joiner(self.fade)
        audio, codes, reasons = [], [], []
        for i, request in enumerate(job.requests):
            request = budget.limit(request)
            if request is None:
                break
            (piece, reason), = self.codes([request])
            budget.spend(len(piece))
            warn_runaway(reason)
            joiner.next_piece()
            audio.append(joiner.push(self.decode(piece, request, job.decode_mode),
                                     i == len(job.requests) - 1))
            check_abandoned()  # a long text's next piece is not wanted either
            codes.append(piece)
            reasons.append(reason)
            mx.clear_cache()
        audio.append(joiner.flush())
        audio = np.concatenate(audio)
        if job.speed != 1.0:  # the same samples as a stream's chunk by chunk (timescale.py)
            audio = time_stretch(audio, job.speed, self.sample_rate)
        return GenerationResult(
            audio, self.sample_rate, np.concatenate(codes), finish_reason(reasons),
            job.seed, time.perf_counter() - start, mx.get_peak_memory() / 1e9,
        )

    def generate_batch(self, job: Job) -> list[GenerationResult]:
        """Each request of `job` as its own utterance, generated as rows of one batch."""
        start = time.perf_counter()
        mx.reset_peak_memory()
        results = []
        for request, (codes, reason) in zip(job.requests, self.codes(job.requests)):
            check_abandoned()  # between the rows' decodes
            warn_runaway(reason)
            audio = self.decode(codes, request, job.decode_mode)
            if job.speed != 1.0:
                audio = time_stretch(audio, job.speed, self.sample_rate)
            results.append(GenerationResult(audio, self.sample_rate, codes, reason, request.seed,
                                            time.perf_counter() - start, mx.get_peak_memory() / 1e9))
        return results

    def stream(self, job: Job, first_chunk_frames: int = FIRST_CHUNK_FRAMES,
               chunk_frames: int = CHUNK_FRAMES) -> Iterator[AudioChunk]:
        """A job's audio as chunks decoded while it generates: a `StreamBatch` of one.

        The concatenated chunks equal `generate(job)` with `decode_mode="exact"`.
        """
        batch = StreamBatch(self, max_batch=1)
        batch.add(job, first_chunk_frames, chunk_frames)
        while batch.active:
            for _, chunk in batch.step():
                if isinstance(chunk, Exception):
                    raise chunk
                yield chunk

    @property
    def fade(self) -> int:
        return int(CROSSFADE_SECONDS * self.sample_rate)

    def decode_chunk(self, decoder: StreamingDecoder, codes: np.ndarray) -> np.ndarray:
        """The next `[n, 16]` frames of a stream as audio (none for no frames)."""
        return check_audio(decoder.decode_step(codes)) if len(codes) else np.zeros(0, np.float32)


class JobStream:
    """One job's pieces as they run in a frame loop, and their audio as chunks: frames grouped
    into chunks (`Chunker`), decoded by a streaming decoder, pieces crossfaded (`Joiner`), the
    speaking rate applied (`TimeStretcher`), the call's frame budget kept.

    Every stream goes through here, alone (`Engine.stream`, `TextStream`) or with others in one
    batch (`StreamBatch`, the server). Runs on the model's thread.
    """

    def __init__(self, engine: Engine, job: Job, first_chunk_frames: int, chunk_frames: int):
        self.engine, self.job = engine, job
        self.sizes = (first_chunk_frames, chunk_frames)
        self.budget = _Budget(job.max_frames)
        self.joiner = Joiner(engine.fade)
        self.stretcher = TimeStretcher(job.speed, engine.sample_rate) if job.speed != 1.0 else None
        self.piece, self.total, self.reasons = -1, 0, []
        self.started = False  # a chunk of audio went out
        self.done = False
        self.start = time.perf_counter()

    def next_request(self) -> Request | None:
        """The next piece's request, its frame limit cut to the call's budget; None at the end."""
        self.piece += 1
        if self.piece >= len(self.job.requests):
            return None
        request = self.budget.limit(self.job.requests[self.piece])
        if request is None:
            return None
        self.decoder = self.engine.stream_decoder(request)
        self.chunker = Chunker(self.sizes[0] if self.piece == 0 else self.sizes[1], self.sizes[1])
        self.joiner.next_piece()
        return request

    def frame(self, codes: np.ndarray) -> AudioChunk | None:
        """Take one frame's codes; a chunk of audio once enough frames are in."""
        self.total += 1
        chunk = self.chunker.add(codes)
        return None if chunk is None else self._chunk(chunk, False)

    def end_piece(self, reason: str | None) -> AudioChunk:
        """The current piece stopped (`reason`): its last audio, final if the job ends with it."""
        rest = self.chunker.take()
        self.budget.spend(self.chunker.emitted)
        self.reasons.append(reason or "length")
        warn_runaway(self.reasons[-1])
        self.done = self.piece == len(self.job.requests) - 1 or self.budget.spent()
        return self._chunk(rest, self.done)

    def _chunk(self, codes: np.ndarray, final: bool) -> AudioChunk:
        last_piece = self.piece == len(self.job.requests) - 1
        audio = self.joiner.push(self.engine.decode_chunk(self.decoder, codes), last_piece)
        if final:
            audio = np.concatenate([audio, self.joiner.flush()])
        if self.stretcher is not None:
            audio = self.stretcher.process(audio)
            if final:
                audio = np.concatenate([audio, self.stretcher.flush()])
        self.started = True
        chunk = AudioChunk(audio, self.engine.sample_rate, len(codes), self.total, final,
                           time.perf_counter() - self.start)
        if final:
            chunk.finish_reason, chunk.seed = finish_reason(self.reasons), self.job.seed
        return chunk


class StreamBatch:
    """Streams that share one frame loop (continuous batching): a stream joins at the next
    frame, streams its own chunks as its frames arrive, and leaves at its end; a cancelled one
    leaves at once. Each stream's audio is what it would be alone (each row samples with its
    own settings and keys). Runs on the model's thread (`Qwen3TTS.thread`).

    A new stream runs first, alone (with any others as new): from its prefill until its first
    audio is out, the streams already speaking wait, then it joins them. Its time to first
    audio is then nearly what it is alone, where frames of the whole batch (each costs more than
    one row's on a CPU) and the others' chunk decodes would come between its frames; the
    others lose that time once per newcomer. And the frame that completes a new stream's first
    chunk has no frame queued after it, so that the chunk's decode has the machine to itself. On
    a CPU the batch queues no frame ahead while a stream could still join, so that a newcomer
    does not wait behind one (`_queue_ahead`).

    Args:
        engine: the model's engine.
        max_batch: most streams in the loop at once; more wait their turn (`add` still takes them).
    """

    def __init__(self, engine: Engine, max_batch: int = 8):
        self.engine = engine
        self.max_batch = max_batch
        self.loop = FrameLoop(engine.model.talker, engine.embedder.tts_pad)  # streams speaking
        self.fresh = FrameLoop(engine.model.talker, engine.embedder.tts_pad)  # until first audio
        self.waiting: list[JobStream] = []
        self.rows: dict[int, tuple[Row, JobStream]] = {}  # id(row) -> its stream, either loop

    @property
    def active(self) -> bool:
        return bool(self.rows or self.waiting)

    @property
    def running(self) -> int:
        return len(self.rows)

    def add(self, job: Job, first_chunk_frames: int = FIRST_CHUNK_FRAMES,
            chunk_frames: int = CHUNK_FRAMES) -> JobStream:
        """Queue a job; it joins at the next `step` with room for it."""
        stream = JobStream(self.engine, job, first_chunk_frames, chunk_frames)
        self.waiting.append(stream)
        return stream

    def cancel(self, stream: JobStream) -> None:
        """Stop a stream now (its client left); it yields nothing more."""
        stream.done = True
        if stream in self.waiting:
            self.waiting.remove(stream)
        for row, owner in list(self.rows.values()):
            if owner is stream:
                row.finish("dropped")
                del self.rows[id(row)]
        for loop in (self.loop, self.fresh):
            loop.release_stopped()  # the batch may be idle now: no step would free its state

    def step(self) -> list[tuple[JobStream, AudioChunk | SynthesisError]]:
        """Admit waiting streams, run one frame (of the new streams while there are any, else
        of every stream), and return the chunks it made.

        A stream whose row fails (non-finite logits) gets its error instead of a chunk and
        leaves; the others go on.
        """
        self._admit()
        new = [self.rows[id(row)][1] for row in self.fresh.members if not row.done]
        if not new:
            frames = self.loop.step(ahead=self._queue_ahead())
        elif all(stream.started for stream in new):
            frames = self.fresh.hand_over(self.loop)  # every new stream has spoken
        else:
            frames = self.fresh.step(ahead=not any(stream.chunker.due for stream in new))
        out: list[tuple[JobStream, AudioChunk | SynthesisError]] = []
        for row, codes in frames:
            stream = self.rows[id(row)][1]
            chunk = stream.frame(codes)
            if chunk is not None:
                out.append((stream, chunk))
        for key, (row, stream) in list(self.rows.items()):
            if row.error is not None:
                del self.rows[key]
                stream.done = True
                out.append((stream, row.error))
            elif row.done:
                del self.rows[key]
                out.append((stream, stream.end_piece(row.reason)))
                if not stream.done:
                    self._join(stream)  # the next piece of its text
        return out

    def _queue_ahead(self) -> bool:
        # A queued frame hides the host's work on the next one: what decides frames/s on a GPU,
        # a few percent on a CPU (bench/host_time.py: ~15 ms of host time against 0.4-0.7 s
        # frames of 1-4 rows at 0.6B). But a request that comes in waits for it too, and on a
        # CPU that is a whole frame of the batch. So on a CPU the batch queues no frame while a
        # new stream could still join it.
        return self.engine.speech_tokenizer.policy.on_gpu or len(self.rows) >= self.max_batch

    def _admit(self) -> None:
        while self.waiting and len(self.rows) < self.max_batch:
            self._join(self.waiting.pop(0))

    def _join(self, stream: JobStream) -> None:
        request = stream.next_request()
        if request is None:
            stream.done = True
            return
        loop = self.loop if stream.started else self.fresh
        row = loop.add(request, prefix=self.engine.prefix(request))
        self.rows[id(row)] = (row, stream)


class _Budget:
    """What is left of a call's frame budget (`max_frames` for the whole call; None: no cap)."""

    def __init__(self, max_frames: int | None):
        self.left = max_frames

    def limit(self, request: Request) -> Request | None:
        """`request` with its frame limit cut to the budget; None once the budget is spent."""
        if self.left is None:
            return request
        if self.left <= 0:
            return None
        config = request.config
        return replace(request, config=replace(config, max_frames=min(config.max_frames, self.left)))

    def spend(self, frames: int) -> None:
        if self.left is not None:
            self.left -= frames

    def spent(self) -> bool:
        return self.left is not None and self.left <= 0


def _read_reference(ref_audio: Any) -> tuple[np.ndarray, float]:
    import os

    if isinstance(ref_audio, (str, os.PathLike)):
        return read_audio(ref_audio)
    if isinstance(ref_audio, tuple) and len(ref_audio) == 2:
        return np.asarray(ref_audio[0]), ref_audio[1]
    raise AudioError(
        "`ref_audio` must be a file path or a (waveform, sample_rate) tuple; "
        f"got {type(ref_audio).__name__}.", "ref_audio")
