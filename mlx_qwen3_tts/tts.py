"""`Qwen3TTS`: a loaded checkpoint with everything synthesis needs, the library's main object.

It turns user arguments into a `Prompt` (checking them against the checkpoint's mode first),
runs the one frame loop of `generate.py`, and decodes frames to audio with the speech tokenizer.
"""

import functools
import hashlib
import os
import secrets
import time
import unicodedata
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlx.core as mx
import numpy as np

from . import audio as audio_io
from .errors import (
    AudioError,
    EmptyTextError,
    InstructUnsupportedError,
    ModeError,
    SynthesisError,
    UnknownSpeakerError,
    UnsupportedLanguageError,
    VoiceCloneUnsupportedError,
)
from .generate import GenerationConfig, PrefixCache, RunawayGuard, generate_codes, generate_step
from .models.qwen3_tts import Model, Qwen3TTSConfig
from .prompt import Prompt, PromptEmbedder, icl_prompt, text_prompt
from .speech_tokenizer import SpeechTokenizer
from .text_split import CROSSFADE_SECONDS, crossfade, split_text
from .text_tokenizer import TextTokenizer
from .voice_prompt import VoicePrompt
from .voices import Language

if TYPE_CHECKING:
    from .text_stream import TextStream

AudioInput = str | os.PathLike | tuple[np.ndarray, int]
MAX_REFERENCE_SECONDS = 60
PREFIX_CACHE_SIZE = 8
SILENCE_PEAK = 1e-4  # a reference whose peak is below this (-80 dBFS) is treated as silent


@dataclass
class GenerationResult:
    """One synthesized utterance.

    Attributes:
        audio: float32 mono waveform at `sample_rate` (24 kHz).
        codes: `[frames, 16]` codec codes.
        finish_reason: "eos" (the model stopped) or "length" (`max_frames` was reached).
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
    """A piece of streamed audio. Concatenating every chunk's `audio` gives the utterance."""

    audio: np.ndarray
    sample_rate: int
    frames: int
    total_frames: int
    is_final: bool
    elapsed: float
    finish_reason: str | None = None
    seed: int | None = None


def _on_device(method):
    """Run a method's MLX work on the model's device (`load(..., device=...)`)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with mx.stream(self.device):
            return method(self, *args, **kwargs)

    return wrapper


def _on_device_stream(method):
    """`_on_device` for generator methods: the device holds while the stream is consumed."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with mx.stream(self.device):
            yield from method(self, *args, **kwargs)

    return wrapper


@dataclass
class _Request:
    prompt: Prompt
    config: GenerationConfig
    seed: int


class Qwen3TTS:
    """A Qwen3-TTS checkpoint loaded into MLX (see `mlx_qwen3_tts.load`)."""

    def __init__(
        self,
        model: Model,
        text_tokenizer: TextTokenizer,
        speech_tokenizer: SpeechTokenizer,
        generation_defaults: dict[str, Any],
        path: Path,
        device: mx.Device | None = None,
    ):
        self.device = device or mx.default_device()
        self.model = model
        self.text_tokenizer = text_tokenizer
        self.speech_tokenizer = speech_tokenizer
        self.generation_defaults = generation_defaults
        self.path = path
        self.default_config = GenerationConfig.from_checkpoint(generation_defaults)
        self._prefixes: OrderedDict[str, PrefixCache] = OrderedDict()

    def __repr__(self) -> str:
        return f"Qwen3TTS({self.model_type}, size={self.config.tts_model_size}, path={self.path})"

    @property
    def config(self) -> Qwen3TTSConfig:
        return self.model.config

    @property
    def model_type(self) -> str:
        """`custom_voice`, `voice_design` or `base`."""
        return self.config.tts_model_type

    @property
    def sample_rate(self) -> int:
        return self.speech_tokenizer.sample_rate

    @property
    def speakers(self) -> list[str]:
        """Named speakers of a CustomVoice checkpoint (fine-tunes add their own), sorted."""
        return sorted(self.config.talker_config.spk_id)

    @property
    def languages(self) -> list[str]:
        """`auto` plus the languages the checkpoint names; dialects come only with a speaker."""
        names = self.config.talker_config.codec_language_id
        return ["auto"] + sorted(n for n in names if "dialect" not in n)

    @cached_property
    def embedder(self) -> PromptEmbedder:
        return PromptEmbedder(self.model, self.text_tokenizer)

    # ----------------------------------------------------------------------- public API

    @_on_device
    def generate(
        self,
        text: str,
        *,
        decode_mode: str = "exact",
        split: bool = True,
        runaway_guard: bool | RunawayGuard = True,
        **kwargs: Any,
    ) -> GenerationResult:
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
            voice: a `VoicePrompt` (or a path to a saved one) instead of `ref_audio`.
            seed: random seed (default: a fresh one, reported in the result).
            temperature, top_k, top_p, repetition_penalty: talker sampling (0 = greedy).
            subtalker_temperature, subtalker_top_k, subtalker_top_p: code predictor sampling.
            non_streaming_mode: prompt layout; None = the official default of the mode.
            max_frames: most frames per piece (12.5 per second of audio).
            decode_mode: "exact" (single pass, what streaming reproduces) or "reference" (the
                official 300-frame chunked decode).
            split: split long texts (see `text`); False speaks the text in one piece.
            runaway_guard: stop generation that never ends (`generate.RunawayGuard`); the result
                then has `finish_reason == "runaway"` and a warning is issued.

        Returns:
            GenerationResult.

        Raises:
            SynthesisError (or a subclass) for arguments the checkpoint cannot use, AudioError
            for unusable reference audio.
        """
        start = time.perf_counter()
        mx.reset_peak_memory()
        requests = self._requests(text, split, kwargs)
        guard = _guard(runaway_guard)
        audio, codes, reasons = np.zeros(0, np.float32), [], []
        for request in requests:
            (piece, reason), = generate_codes(
                self.model.talker, [request.prompt], self.embedder.tts_pad, request.config,
                mx.random.key(request.seed), guard, self._prefix(request.prompt),
            )
            audio = self._join(audio, self._decode(piece, request.prompt.ref_codes, decode_mode))
            codes.append(piece)
            reasons.append(reason)
            mx.clear_cache()
        _warn_runaway(reasons)
        return GenerationResult(
            audio, self.sample_rate, np.concatenate(codes), _finish(reasons), requests[0].seed,
            time.perf_counter() - start, mx.get_peak_memory() / 1e9,
        )

    @_on_device
    def generate_batch(
        self, texts: list[str], *, runaway_guard: bool | RunawayGuard = True, **kwargs: Any
    ) -> list[GenerationResult]:
        """Synthesize several texts in one batched frame loop (same voice and settings).

        Rows are left-padded and stop independently; `seed` seeds the whole batch, and each text
        is spoken in one piece. Keyword arguments are those of `generate`.
        """
        if not texts:
            raise EmptyTextError("generate_batch needs at least one text.")
        start = time.perf_counter()
        mx.reset_peak_memory()
        decode_mode = kwargs.pop("decode_mode", "exact")
        seed = self._seed(kwargs.pop("seed", None))
        requests = [self._request(t, seed=seed, **kwargs) for t in texts]
        rows = generate_codes(
            self.model.talker, [r.prompt for r in requests], self.embedder.tts_pad,
            requests[0].config, mx.random.key(seed), _guard(runaway_guard),
        )
        results = []
        for request, (codes, reason) in zip(requests, rows):
            _warn_runaway([reason])
            audio = self._decode(codes, request.prompt.ref_codes, decode_mode)
            results.append(GenerationResult(
                audio, self.sample_rate, codes, reason, seed, time.perf_counter() - start,
                mx.get_peak_memory() / 1e9,
            ))
        return results

    @_on_device_stream
    def stream_generate(
        self,
        text: str,
        *,
        chunk_frames: int = 12,
        first_chunk_frames: int = 2,
        split: bool = True,
        runaway_guard: bool | RunawayGuard = True,
        **kwargs: Any,
    ) -> Iterator[AudioChunk]:
        """Synthesize one utterance as a stream of audio chunks, decoded while generating.

        The first chunk holds `first_chunk_frames` frames (short time to first audio), the
        following ones `chunk_frames` (80 ms each). The concatenated chunks equal
        `generate(..., decode_mode="exact")` for the same arguments and seed. Keyword arguments
        are those of `generate`.
        """
        if first_chunk_frames < 1 or chunk_frames < 1:
            raise SynthesisError("chunk_frames and first_chunk_frames must be at least 1.")
        start = time.perf_counter()
        requests = self._requests(text, split, kwargs)
        guard = _guard(runaway_guard)
        fade = int(CROSSFADE_SECONDS * self.sample_rate)
        carry = np.zeros(0, np.float32)  # held back for the crossfade into the next piece
        total, reasons = 0, []
        for i, request in enumerate(requests):
            last_piece = i == len(requests) - 1
            joined = i == 0
            pieces = self._stream_piece(
                request, guard, first_chunk_frames if i == 0 else chunk_frames, chunk_frames
            )
            for wav, frames, final, reason in pieces:
                total += frames
                if not joined and wav.size:
                    head, wav = crossfade(carry, wav, fade)
                    carry, joined = head, True
                out = np.concatenate([carry, wav])
                keep = 0 if last_piece else min(fade, len(out))
                out, carry = out[: len(out) - keep], out[len(out) - keep:]
                if final:
                    reasons.append(reason)
                if final and last_piece:
                    yield AudioChunk(out, self.sample_rate, frames, total, True,
                                     time.perf_counter() - start, _finish(reasons), requests[0].seed)
                elif out.size or frames:
                    yield AudioChunk(out, self.sample_rate, frames, total, False,
                                     time.perf_counter() - start)
            mx.clear_cache()

    def open_stream(self, **kwargs: Any) -> "TextStream":
        """A session that takes text as it arrives and yields audio while it still arrives.

        Args:
            lookahead: text tokens kept ahead of the frame loop (default 2).
            chunk_frames, first_chunk_frames, runaway_guard: as in `stream_generate`.
            **kwargs: voice and sampling arguments of `generate` (speaker, language, instruct,
                voice / ref_audio without ref_text, seed, temperature, ...).

        With all text fed up front, the audio equals `stream_generate(text,
        non_streaming_mode=False, ...)` with the same seed. See `text_stream.py`.
        """
        from .text_stream import TextStream

        return TextStream(self, **kwargs)

    @_on_device
    def create_voice_prompt(
        self, ref_audio: AudioInput, ref_text: str | None = None
    ) -> VoicePrompt:
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
        if self.model_type != "base":
            raise VoiceCloneUnsupportedError(
                f"Voice cloning needs a Base checkpoint (e.g. Qwen/Qwen3-TTS-12Hz-0.6B-Base); "
                f"this one is {self.model_type}."
            )
        if ref_text is not None and not (isinstance(ref_text, str) and ref_text.strip()):
            raise SynthesisError(
                "ref_text is empty; pass the transcript of the reference audio, or None to clone "
                "from the speaker embedding only."
            )
        wav, sr = self._read_reference(ref_audio)
        wav24 = audio_io.prepare_audio(wav, sr)
        _check_reference(wav24, self.speech_tokenizer.input_sample_rate)
        embedding = self.model.speaker_encoder.embed(wav24)
        codes = self.speech_tokenizer.encode(wav24, self.speech_tokenizer.input_sample_rate)
        return VoicePrompt(
            speaker_embedding=np.array(embedding.astype(mx.float32)),
            ref_codes=codes.astype(np.int32) if ref_text is not None else None,
            ref_text=ref_text,
        )

    # ----------------------------------------------------------------------- internals

    def _requests(self, text: str, split: bool, kwargs: dict[str, Any]) -> list[_Request]:
        """One request per piece of text; piece i is seeded with seed + i."""
        self._check_text(text)
        pieces = split_text(text) if split else [text]
        seed = self._seed(kwargs.pop("seed", None))
        return [self._request(piece, seed=seed + i, **kwargs) for i, piece in enumerate(pieces)]

    def _stream_piece(self, request: _Request, guard, first: int, every: int):
        """`(audio, frames, is_final, finish_reason)` for one piece, decoded as frames arrive."""
        decoder = self.speech_tokenizer.stream_decoder()
        if request.prompt.ref_codes is not None:
            # In-context clones decode their reference first, so the first chunk is seamless.
            decoder.decode_step(np.array(request.prompt.ref_codes))
        pending: list[np.ndarray] = []
        produced, reasons = 0, [None]
        steps = generate_step(self.model.talker, [request.prompt], self.embedder.tts_pad,
                              request.config, mx.random.key(request.seed), guard,
                              prefix=self._prefix(request.prompt))
        for frame in steps:
            reasons = frame.reasons
            pending.append(np.array(frame.codes[0]))
            produced += 1
            if len(pending) >= (first if produced == len(pending) else every):
                yield self._decode_stream(decoder, pending), len(pending), False, None
                pending = []
        reason = reasons[0] or "length"
        _warn_runaway([reason])
        yield self._decode_stream(decoder, pending), len(pending), True, reason

    def _prefix(self, prompt: Prompt) -> PrefixCache | None:
        """The voice part's KV cache, computed once per voice (speaker, clone, instruction).

        Keyed by the prefix embeddings' bytes, so two prompts share it exactly when their
        voice-only positions are identical; the last `PREFIX_CACHE_SIZE` voices are kept.
        """
        if prompt.prefix_len == 0:
            return None
        prefix = prompt.prefill[: prompt.prefix_len]
        key = hashlib.sha1(np.array(prefix.astype(mx.float32)).tobytes()).hexdigest()
        cache = self._prefixes.pop(key, None) or PrefixCache.compute(self.model.talker, prefix)
        self._prefixes[key] = cache
        while len(self._prefixes) > PREFIX_CACHE_SIZE:
            self._prefixes.popitem(last=False)
        return cache

    def _decode_stream(self, decoder, frames: list[np.ndarray]) -> np.ndarray:
        if not frames:
            return np.zeros(0, np.float32)
        return _check_audio(decoder.decode_step(np.stack(frames).astype(np.int32)))

    def _join(self, audio: np.ndarray, piece: np.ndarray) -> np.ndarray:
        if not audio.size:
            return piece
        head, piece = crossfade(audio, piece, int(CROSSFADE_SECONDS * self.sample_rate))
        return np.concatenate([head, piece])

    @staticmethod
    def _check_text(text: str) -> None:
        if not isinstance(text, str):
            raise SynthesisError(f"text must be a str, got {type(text).__name__}.")
        if not text.strip():
            raise EmptyTextError("text is empty; pass something to say.")
        if not any(unicodedata.category(c)[0] in "LN" for c in text):
            raise EmptyTextError(
                f"text {text[:40]!r} has no letters or digits, so nothing to speak."
            )

    @staticmethod
    def _seed(seed: int | None) -> int:
        if seed is None:
            return secrets.randbits(31)
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise SynthesisError(f"seed must be a non-negative integer, got {seed!r}.")
        return seed

    def _read_reference(self, ref_audio: AudioInput) -> tuple[np.ndarray, float]:
        if isinstance(ref_audio, (str, os.PathLike)):
            return audio_io.read_audio(ref_audio)
        if isinstance(ref_audio, tuple) and len(ref_audio) == 2:
            return np.asarray(ref_audio[0]), ref_audio[1]
        raise AudioError(
            "ref_audio must be a file path or a (waveform, sample_rate) tuple; "
            f"got {type(ref_audio).__name__}."
        )

    def _request(
        self,
        text: str,
        speaker: str | None = None,
        language: str | Language = "auto",
        instruct: str | None = None,
        ref_audio: AudioInput | None = None,
        ref_text: str | None = None,
        voice: VoicePrompt | str | os.PathLike | None = None,
        seed: int | None = None,
        non_streaming_mode: bool | None = None,
        text_ids: list[int] | None = None,
        **sampling: Any,
    ) -> _Request:
        """Check every argument against the checkpoint, then build the prompt.

        `text_ids`, when given, are the already tokenized text (`text_stream.py`).
        """
        unknown = set(sampling) - {
            "temperature", "top_k", "top_p", "repetition_penalty", "max_frames",
            "subtalker_temperature", "subtalker_top_k", "subtalker_top_p",
        }
        if unknown:
            raise SynthesisError(f"Unknown argument(s) {sorted(unknown)} for generate.")
        config = self.default_config.override(**sampling)
        text_ids = self._text_ids(text) if text_ids is None else text_ids
        language_id = self._language_id(language)
        instruct = instruct or None
        if self.model_type == "base":
            prompt = self._clone_prompt(text_ids, language_id, speaker, instruct, ref_audio,
                                        ref_text, voice, non_streaming_mode)
        else:
            if ref_audio is not None or voice is not None or ref_text is not None:
                raise VoiceCloneUnsupportedError(
                    f"This {self.model_type} checkpoint cannot clone voices; load a Base model "
                    "(e.g. Qwen/Qwen3-TTS-12Hz-0.6B-Base) for ref_audio / voice."
                )
            prompt = self._text_prompt(text_ids, language, language_id, speaker, instruct,
                                       non_streaming_mode)
        return _Request(prompt, config, self._seed(seed))

    def _text_ids(self, text: str) -> list[int]:
        self._check_text(text)
        ids = self.embedder.target_ids(_strip_controls(text))
        if not ids:
            raise EmptyTextError(f"text {text!r} produced no tokens.")
        return ids

    def _language_id(self, language: str | Language) -> int | None:
        lang = Language.parse(language if language is not None else "auto")
        if lang is Language.AUTO:
            return None
        ids = self.config.talker_config.codec_language_id
        if lang.value not in ids:
            raise UnsupportedLanguageError(
                f"This checkpoint has no language {lang.value!r}. Supported: {', '.join(self.languages)}."
            )
        return ids[lang.value]

    def _speaker(self, speaker: str | None, language: str | Language, language_id: int | None):
        """Speaker embedding `C(spk_id)` and the language id after the dialect rule (§3.3)."""
        cfg = self.config.talker_config
        if speaker is None or str(speaker).strip() == "":
            raise UnknownSpeakerError(
                f"A CustomVoice checkpoint needs a speaker; choose one of {', '.join(self.speakers)}."
            )
        name = str(speaker).strip().lower()
        if name not in cfg.spk_id:
            raise UnknownSpeakerError(f"Unknown speaker {speaker!r}. Supported: {', '.join(self.speakers)}.")
        dialect = cfg.spk_is_dialect.get(name, False)
        if dialect and Language.parse(language) in (Language.CHINESE, Language.AUTO):
            language_id = cfg.codec_language_id[dialect]
        return self.embedder.codec([cfg.spk_id[name]])[0], language_id

    def _text_prompt(self, text_ids, language, language_id, speaker, instruct, non_streaming):
        e = self.embedder
        if self.model_type == "custom_voice":
            spk, language_id = self._speaker(speaker, language, language_id)
            if instruct is not None and not self.config.instruct_supported:
                raise InstructUnsupportedError(
                    "The 0.6B CustomVoice checkpoint ignores instructions (the official model drops "
                    "them); use a 1.7B CustomVoice or VoiceDesign checkpoint, or pass instruct=None."
                )
        else:  # voice_design: the instruction is the voice description
            if speaker is not None:
                raise ModeError(
                    "A VoiceDesign checkpoint has no named speakers; describe the voice with "
                    "instruct=... instead."
                )
            spk = None
        instruct_ids = e.instruct_ids(instruct) if instruct is not None else None
        layout = True if non_streaming is None else bool(non_streaming)
        return text_prompt(e, text_ids, language_id, spk, instruct_ids, layout)

    def _clone_prompt(self, text_ids, language_id, speaker, instruct, ref_audio, ref_text, voice,
                      non_streaming):
        if speaker is not None:
            raise ModeError("A Base checkpoint clones a voice; pass ref_audio or voice, not speaker.")
        if instruct is not None:
            raise InstructUnsupportedError(
                "Base checkpoints do not follow instructions; use a 1.7B CustomVoice or "
                "VoiceDesign checkpoint for instruct."
            )
        if (ref_audio is None) == (voice is None):
            raise ModeError("A Base checkpoint needs exactly one of ref_audio or voice to clone.")
        if voice is not None:
            if ref_text is not None:
                raise ModeError("ref_text belongs to ref_audio; a saved voice carries its own.")
            voice = VoicePrompt.resolve(voice)
        else:
            voice = self.create_voice_prompt(ref_audio, ref_text)
        e = self.embedder
        hidden = self.config.talker_config.hidden_size
        if voice.speaker_embedding.shape != (hidden,):
            raise AudioError(
                f"The voice prompt's speaker embedding has shape {voice.speaker_embedding.shape}, "
                f"this model needs ({hidden},): it was made with another model size."
            )
        xvec = mx.array(voice.speaker_embedding)
        layout = False if non_streaming is None else bool(non_streaming)
        if not voice.in_context:
            return text_prompt(e, text_ids, language_id, xvec, None, layout)
        ref_codes = mx.array(np.asarray(voice.ref_codes, np.int32))
        return icl_prompt(e, text_ids, e.ref_ids(voice.ref_text), ref_codes, language_id, xvec,
                          layout)

    def _decode(self, codes: np.ndarray, ref_codes: mx.array | None, mode: str) -> np.ndarray:
        if codes.shape[0] == 0:
            return np.zeros(0, np.float32)
        if ref_codes is None:
            return _check_audio(self.speech_tokenizer.decode(codes, mode=mode))
        # In-context clones decode reference + output together and cut the reference off (§3.8).
        ref = np.array(ref_codes)
        wav = self.speech_tokenizer.decode(np.concatenate([ref, codes]), mode=mode)
        if mode == "reference":
            cut = int(ref.shape[0] / (ref.shape[0] + codes.shape[0]) * wav.shape[0])
        else:
            cut = ref.shape[0] * self.speech_tokenizer.samples_per_frame
        return _check_audio(wav[cut:])


def _guard(runaway_guard: bool | RunawayGuard) -> RunawayGuard | None:
    if isinstance(runaway_guard, RunawayGuard):
        return runaway_guard
    return RunawayGuard() if runaway_guard else None


def _finish(reasons: list[str]) -> str:
    """The finish reason of a split text: the most severe of its pieces'."""
    for reason in ("runaway", "length"):
        if reason in reasons:
            return reason
    return "eos"


def _warn_runaway(reasons: list[str]) -> None:
    if "runaway" in reasons:
        warnings.warn(
            "Generation did not stop by itself and was ended by the runaway guard "
            "(finish_reason='runaway'); pass runaway_guard=False to disable it.",
            RuntimeWarning, stacklevel=3,
        )


def _strip_controls(text: str) -> str:
    """Drop control characters (keeping newlines and tabs): they carry nothing to say."""
    return "".join(c for c in text if c in "\n\t" or unicodedata.category(c) != "Cc")


def _check_reference(wav24: np.ndarray, sample_rate: int) -> None:
    seconds = len(wav24) / sample_rate
    if seconds > MAX_REFERENCE_SECONDS:
        raise AudioError(
            f"Reference audio is {seconds:.1f} s long; cloning works best from 3-20 s of clean "
            f"speech and accepts at most {MAX_REFERENCE_SECONDS} s. Trim it."
        )
    if np.max(np.abs(wav24)) < SILENCE_PEAK:
        raise AudioError("Reference audio is silent; pass a recording of the voice to clone.")


def _check_audio(audio: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(audio)):
        raise SynthesisError("The speech tokenizer decoded non-finite audio; try dtype='float32'.")
    return audio
