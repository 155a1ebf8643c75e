"""`Qwen3TTS`: a loaded checkpoint with everything synthesis needs, the library's main object.

A thin facade: arguments become a `Job` through the one request path (`request.py`), and the
`Engine` (`synthesis.py`) turns it into audio, on the model's own MLX thread (`runtime.py`)
whichever thread calls.
"""

import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

from .dialogue import DEFAULT_PAUSE, Dialogue, DialogueResult, collect
from .errors import SynthesisError, VoiceCloneUnsupportedError
from .models.qwen3_tts import Model, Qwen3TTSConfig
from .policy import ComputePolicy
from .request import Capabilities, Job
from .runtime import ModelThread
from .speech_tokenizer import SpeechTokenizer
from .synthesis import (
    CHUNK_FRAMES,
    FIRST_CHUNK_FRAMES,
    AudioChunk,
    Engine,
    GenerationResult,
    JobStream,
    StreamBatch,
    check_chunk_sizes,
)
from .text_stream import TextStream
from .text_tokenizer import TextTokenizer
from .voice_prompt import VoicePrompt

AudioInput = str | os.PathLike | tuple[np.ndarray, int]


class Qwen3TTS:
    """A Qwen3-TTS checkpoint loaded into MLX (see `mlx_qwen3_tts.load`)."""

    def __init__(self, engine: Engine, path: Path, thread: ModelThread, policy: ComputePolicy):
        self.engine = engine
        self.path = path
        self.thread = thread
        self.policy = policy

    @classmethod
    def build(
        cls,
        model: Model,
        text_tokenizer: TextTokenizer,
        speech_tokenizer: SpeechTokenizer,
        generation_defaults: dict[str, Any],
        path: Path,
        thread: ModelThread,
        policy: ComputePolicy,
    ) -> "Qwen3TTS":
        engine = thread.run(Engine, model, text_tokenizer, speech_tokenizer, generation_defaults)
        return cls(engine, path, thread, policy)

    def __repr__(self) -> str:
        return f"Qwen3TTS({self.model_type}, size={self.config.tts_model_size}, path={self.path})"

    def close(self) -> None:
        """Stop the model's MLX thread (also done at exit); the model cannot be used afterwards."""
        self.thread.stop()

    # ----------------------------------------------------------------------- what it is

    @property
    def model(self) -> Model:
        return self.engine.model

    @property
    def config(self) -> Qwen3TTSConfig:
        return self.engine.model.config

    @property
    def device(self):
        return self.thread.device

    @property
    def compute(self) -> str:
        """How this model computes, in one line: device, dtypes and (on the CPU) the BLAS."""
        return self.policy.describe(self.model.stored_dtype)

    @property
    def text_tokenizer(self) -> TextTokenizer:
        return self.engine.text_tokenizer

    @property
    def speech_tokenizer(self) -> SpeechTokenizer:
        return self.engine.speech_tokenizer

    @property
    def capabilities(self) -> Capabilities:
        """What this checkpoint can do: mode, speakers, languages, instruct and clone support."""
        return self.engine.builder.caps

    @property
    def model_type(self) -> str:
        """`custom_voice`, `voice_design` or `base`."""
        return self.capabilities.model_type

    @property
    def sample_rate(self) -> int:
        return self.engine.sample_rate

    @property
    def speakers(self) -> list[str]:
        """Named speakers of a CustomVoice checkpoint (fine-tunes add their own), sorted."""
        return list(self.capabilities.speakers)

    @property
    def languages(self) -> list[str]:
        """`auto` plus the languages the checkpoint names; dialects come only with a speaker."""
        return list(self.capabilities.languages)

    # ----------------------------------------------------------------------- synthesis

    def job(self, text: str, **kwargs: Any) -> Job:
        """The validated requests `generate(text, **kwargs)` would run, one per piece of text.

        For inspection and benchmarks: `job.requests[i].prompt.prefill` is piece i's prompt.
        """
        return self.thread.run(self._job, text, kwargs)

    def _job(self, text: str, kwargs: dict[str, Any]) -> Job:
        job = self.engine.builder.job(text, **kwargs)
        # Arrays leave this thread computed: another thread cannot evaluate this one's graphs.
        mx.eval([(r.prompt.prefill, r.prompt.trailing) for r in job.requests])
        return job

    def generate(self, text: str, **kwargs: Any) -> GenerationResult:
        """Synthesize one utterance.

        Args:
            text: what to say. Texts longer than `text_split.SPLIT_CHARS` (300) characters are
                split at sentence boundaries and their audio joined with a 20 ms crossfade
                (piece i is sampled with seed + i); shorter texts are never split.
            speaker: a CustomVoice speaker name (`tts.speakers`).
            language: "auto" (default) or one of `tts.languages`, case-insensitive.
            instruct: a style instruction (1.7B CustomVoice) or the voice description
                (VoiceDesign).
            ref_audio: Base models: a file path or `(waveform, sample_rate)` to clone.
            ref_text: transcript of `ref_audio`; None clones from the x-vector only.
            voice: a `VoicePrompt`, a path to a saved one, or a saved voice's name, instead of
                `ref_audio`.
            seed: random seed (default: a fresh one, reported in the result).
            temperature, top_k, top_p, repetition_penalty: talker sampling (0 = greedy).
            subtalker_temperature, subtalker_top_k, subtalker_top_p: code predictor sampling.
            non_streaming_mode: prompt layout; None = the official default of the mode.
            max_frames: most frames of the whole call, split text included (12.5 per second of
                audio). Default: no cap beyond the checkpoint's limit per piece.
            decode_mode: "exact" (single pass, what streaming reproduces) or "reference" (the
                official 300-frame chunked decode).
            split: split long texts (see `text`); False speaks the text in one piece.
            runaway_guard: stop generation that never ends (`RunawayGuard`); the result then
                has `finish_reason == "runaway"` and a `RunawayWarning` is issued.
            speed: speaking rate, 0.5 to 2.0 (1.0: the model's own): the audio is time-scaled
                with its pitch kept (`timescale.py`); codes are unchanged.

        Returns:
            GenerationResult.

        Raises:
            SynthesisError (or a subclass) for arguments the checkpoint cannot use, AudioError
            for unusable reference audio or voice files. Both come before any generation.
        """
        return self.thread.run(self._generate, text, kwargs)

    def _generate(self, text: str, kwargs: dict[str, Any]) -> GenerationResult:
        return self.engine.generate(self.engine.builder.job(text, **kwargs))

    def generate_batch(self, texts: list[str], **kwargs: Any) -> list[GenerationResult]:
        """Synthesize several texts in one batched frame loop (same voice and settings).

        Text i is sampled with seed + i, as its result's `seed` says; each row draws from its own
        keys, so `generate(texts[i], seed=results[i].seed)` gives the same codes. Each text is
        spoken in one piece. Keyword arguments are those of `generate` (but `split`).
        """
        return self.thread.run(self._generate_batch, texts, kwargs)

    def _generate_batch(self, texts: list[str], kwargs: dict[str, Any]) -> list[GenerationResult]:
        return self.engine.generate_batch(self.engine.builder.batch(texts, **kwargs))

    def stream_generate(
        self,
        text: str,
        *,
        chunk_frames: int = CHUNK_FRAMES,
        first_chunk_frames: int = FIRST_CHUNK_FRAMES,
        **kwargs: Any,
    ) -> Iterator[AudioChunk]:
        """Synthesize one utterance as a stream of audio chunks, decoded while generating.

        The first chunk holds `first_chunk_frames` frames (short time to first audio), the
        following ones `chunk_frames` (80 ms a frame: the default 12 is 0.96 s). The
        concatenated chunks equal `generate(..., decode_mode="exact")` for the same arguments and
        seed, to float32 rounding (see the README's "Decoding"). Keyword arguments
        are those of `generate`; argument errors are raised here, before the first chunk.
        """
        first_chunk_frames, chunk_frames = check_chunk_sizes(first_chunk_frames, chunk_frames)
        job = self.job(text, **kwargs)
        return self.thread.iterate(lambda: self.engine.stream(job, first_chunk_frames, chunk_frames))

    def stream_dialogue(
        self,
        script: Any,
        *,
        voices: Mapping[str, Any] | None = None,
        pause: float = DEFAULT_PAUSE,
        seed: int | None = None,
        chunk_frames: int = CHUNK_FRAMES,
        first_chunk_frames: int = FIRST_CHUNK_FRAMES,
        **kwargs: Any,
    ) -> Iterator[AudioChunk]:
        """A dialogue as a stream, turn by turn (see `generate_dialogue`); each chunk says its
        `turn`, and a turn's last chunk carries its `finish_reason` and `seed`. Every turn is
        checked before the first chunk."""
        first_chunk_frames, chunk_frames = check_chunk_sizes(first_chunk_frames, chunk_frames)
        dialogue = self.thread.run(Dialogue, self.engine, script, voices, pause, seed, kwargs)
        return self.thread.iterate(lambda: dialogue.stream(first_chunk_frames, chunk_frames))

    def generate_dialogue(
        self,
        script: Any,
        *,
        voices: Mapping[str, Any] | None = None,
        pause: float = DEFAULT_PAUSE,
        seed: int | None = None,
        **kwargs: Any,
    ) -> DialogueResult:
        """Speak a script of turns, each in its own voice, in one call.

        Args:
            script: `Name: text` lines (see `dialogue.py`), or a list of `(name, text)` pairs.
            voices: what each name stands for: a CustomVoice speaker, a Base model's saved voice
                (name, path or `VoicePrompt`), a VoiceDesign description, or a dict of `generate`
                arguments. Default: the name itself.
            pause: seconds of silence between turns. Default: 0.4.
            seed: turn i is sampled with `dialogue.turn_seed(seed, i)`, reported in its timing.
            **kwargs: `generate`'s language and sampling arguments, for every turn (`max_frames`
                caps each turn).

        Returns:
            DialogueResult: the audio and, per turn, its speaker, start and end (seconds), seed.

        Raises:
            SynthesisError (or a subclass) naming the script line of an unknown speaker or a bad
            turn, before anything is generated.
        """
        started = time.perf_counter()
        dialogue = self.thread.run(Dialogue, self.engine, script, voices, pause, seed, kwargs)
        stream = self.thread.iterate(lambda: dialogue.stream(FIRST_CHUNK_FRAMES, CHUNK_FRAMES))
        return collect(dialogue, stream, started)

    def open_batch(self, max_batch: int = 8) -> "StreamingBatch":
        """A continuous batch: streams that join one running frame loop at frame boundaries.

        For serving many clients at once (the server uses it): each stream's audio is what it
        would be alone, B rows cost little more than one (a frame reads the weights once), and
        a stream that ends or is cancelled frees its row at once. See `StreamingBatch`.
        """
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise SynthesisError(f"`max_batch` must be an integer >= 1, got {max_batch!r}.", "max_batch")
        return StreamingBatch(self, max_batch)

    def open_stream(self, **kwargs: Any) -> TextStream:
        """A session that takes text as it arrives and yields audio while it still arrives.

        Args:
            lookahead: text tokens kept ahead of the frame loop (default 2).
            chunk_frames, first_chunk_frames, runaway_guard: as in `stream_generate`.
            **kwargs: voice and sampling arguments of `generate` (speaker, language, instruct,
                voice / ref_audio without ref_text, seed, temperature, ...).

        With all text fed up front, the audio equals `stream_generate(text,
        non_streaming_mode=False, ...)` with the same seed. See `text_stream.py`.
        """
        return TextStream(self.engine, self.thread, **kwargs)

    def create_voice_prompt(self, ref_audio: AudioInput, ref_text: str | None = None) -> VoicePrompt:
        """Encode a reference voice once, to clone it in any number of `generate` calls.

        Args:
            ref_audio: a file path or `(waveform, sample_rate)`; any rate, mono or stereo.
            ref_text: its transcript for in-context cloning (closest to the reference), or None
                for x-vector-only cloning.

        Raises:
            VoiceCloneUnsupportedError: the checkpoint is not a Base model.
            AudioError: the audio cannot be read or used.
            SynthesisError: `ref_text` is empty.
        """
        if not self.capabilities.supports_clone:
            raise VoiceCloneUnsupportedError(
                "Voice cloning needs a Base checkpoint (e.g. Qwen/Qwen3-TTS-12Hz-0.6B-Base); "
                f"this one is {self.model_type}.", "ref_audio")
        return self.thread.run(self.engine.create_voice_prompt, ref_audio, ref_text)


class StreamingBatch:
    """Streams of several requests sharing one frame loop (continuous batching), for one model.

        batch = tts.open_batch(max_batch=8)
        a = batch.add("Hello there.", speaker="ryan", seed=1)
        b = batch.add("And hello to you.", speaker="vivian", seed=2)  # joins at the next frame
        while batch.active:
            for stream, chunk in batch.step():   # chunks of whichever streams made one
                ...                              # chunk.is_final ends a stream

    `add` takes `stream_generate`'s arguments and validates them at once; a stream joins the loop
    at the next `step` with a free row (at most `max_batch` run, the others wait), samples with
    its own settings and keys, and its audio is what `stream_generate` gives for the same
    arguments. `cancel` frees a stream's row at once. Every call runs on the model's thread,
    so any thread may drive the batch (one at a time).
    """

    def __init__(self, tts: Qwen3TTS, max_batch: int):
        self.tts = tts
        self.batch: StreamBatch = tts.thread.run(StreamBatch, tts.engine, max_batch)

    @property
    def active(self) -> bool:
        """Whether any stream runs or waits."""
        return self.batch.active

    @property
    def running(self) -> int:
        """Streams in the frame loop now."""
        return self.batch.running

    def add(self, text: str, *, chunk_frames: int = CHUNK_FRAMES,
            first_chunk_frames: int = FIRST_CHUNK_FRAMES, **kwargs: Any) -> JobStream:
        """Queue a stream; returns its handle (the one `step` pairs with its chunks).

        Raises:
            SynthesisError, AudioError: as `stream_generate` would.
        """
        first_chunk_frames, chunk_frames = check_chunk_sizes(first_chunk_frames, chunk_frames)
        job = self.tts.job(text, **kwargs)
        return self.tts.thread.run(self.batch.add, job, first_chunk_frames, chunk_frames)

    def step(self) -> list[tuple[JobStream, AudioChunk | SynthesisError]]:
        """One frame of every running stream: `(stream, chunk)` for each chunk made, or
        `(stream, error)` for a stream that failed (it leaves; the others go on)."""
        return self.tts.thread.run(self.batch.step)

    def cancel(self, stream: JobStream) -> None:
        """Stop a stream now (its client left); its row is free at the next step."""
        self.tts.thread.run(self.batch.cancel, stream)
