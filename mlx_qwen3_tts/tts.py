"""`Qwen3TTS`: a loaded checkpoint with everything synthesis needs, the library's main object.

It turns user arguments into a `Prompt` (checking them against the checkpoint's mode first),
runs the one frame loop of `generate.py`, and decodes frames to audio with the speech tokenizer.
"""

import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

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
from .generate import GenerationConfig, generate_codes, generate_step
from .models.qwen3_tts import Model, Qwen3TTSConfig
from .prompt import Prompt, PromptEmbedder, icl_prompt, text_prompt
from .speech_tokenizer import SpeechTokenizer
from .text_tokenizer import TextTokenizer
from .voice_prompt import VoicePrompt
from .voices import Language

AudioInput = str | os.PathLike | tuple[np.ndarray, int]


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
    ):
        self.model = model
        self.text_tokenizer = text_tokenizer
        self.speech_tokenizer = speech_tokenizer
        self.generation_defaults = generation_defaults
        self.path = path
        self.default_config = GenerationConfig.from_checkpoint(generation_defaults)

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

    def generate(self, text: str, *, decode_mode: str = "exact", **kwargs: Any) -> GenerationResult:
        """Synthesize one utterance.

        Args:
            text: what to say.
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
            max_frames: most frames to return (12.5 per second of audio).
            decode_mode: "exact" (single pass, what streaming reproduces) or "reference" (the
                official 300-frame chunked decode).

        Returns:
            GenerationResult.

        Raises:
            SynthesisError (or a subclass) for arguments the checkpoint cannot use, AudioError
            for unusable reference audio.
        """
        start = time.perf_counter()
        mx.reset_peak_memory()
        request = self._request(text, **kwargs)
        (codes, reason), = generate_codes(
            self.model.talker, [request.prompt], self.embedder.tts_pad, request.config,
            mx.random.key(request.seed),
        )
        audio = self._decode(codes, request.prompt.ref_codes, decode_mode)
        return GenerationResult(
            audio, self.sample_rate, codes, reason, request.seed, time.perf_counter() - start,
            mx.get_peak_memory() / 1e9,
        )

    def generate_batch(self, texts: list[str], **kwargs: Any) -> list[GenerationResult]:
        """Synthesize several texts in one batched frame loop (same voice and settings).

        Rows are left-padded and stop independently; `seed` seeds the whole batch. Keyword
        arguments are those of `generate`.
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
            requests[0].config, mx.random.key(seed),
        )
        results = []
        for request, (codes, reason) in zip(requests, rows):
            audio = self._decode(codes, request.prompt.ref_codes, decode_mode)
            results.append(GenerationResult(
                audio, self.sample_rate, codes, reason, seed, time.perf_counter() - start,
                mx.get_peak_memory() / 1e9,
            ))
        return results

    def stream_generate(
        self, text: str, *, chunk_frames: int = 12, first_chunk_frames: int = 2, **kwargs: Any
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
        request = self._request(text, **kwargs)
        decoder = self.speech_tokenizer.stream_decoder()
        if request.prompt.ref_codes is not None:
            # In-context clones decode their reference first, so the first chunk is seamless.
            decoder.decode_step(np.array(request.prompt.ref_codes))
        pending: list[np.ndarray] = []
        total = 0
        steps = generate_step(
            self.model.talker, [request.prompt], self.embedder.tts_pad, request.config,
            mx.random.key(request.seed),
        )
        for codes, finished in steps:
            if bool(finished[0]):
                break
            pending.append(np.array(codes[0]))
            total += 1
            if len(pending) >= (first_chunk_frames if total == len(pending) else chunk_frames):
                yield self._chunk(decoder, pending, total, start, False)
                pending = []
        reason = "length" if total >= request.config.max_frames else "eos"
        final = self._chunk(decoder, pending, total, start, True)
        final.finish_reason, final.seed = reason, request.seed
        yield final

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
        embedding = self.model.speaker_encoder.embed(wav24)
        codes = self.speech_tokenizer.encode(wav24, self.speech_tokenizer.input_sample_rate)
        return VoicePrompt(
            speaker_embedding=np.array(embedding.astype(mx.float32)),
            ref_codes=codes.astype(np.int32) if ref_text is not None else None,
            ref_text=ref_text,
        )

    # ----------------------------------------------------------------------- internals

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
        **sampling: Any,
    ) -> _Request:
        """Check every argument against the checkpoint, then build the prompt."""
        unknown = set(sampling) - {
            "temperature", "top_k", "top_p", "repetition_penalty", "max_frames",
            "subtalker_temperature", "subtalker_top_k", "subtalker_top_p",
        }
        if unknown:
            raise SynthesisError(f"Unknown argument(s) {sorted(unknown)} for generate.")
        config = self.default_config.override(**sampling)
        text_ids = self._text_ids(text)
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
        if not isinstance(text, str):
            raise SynthesisError(f"text must be a str, got {type(text).__name__}.")
        if not text.strip():
            raise EmptyTextError("text is empty; pass something to say.")
        ids = self.embedder.target_ids(text)
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
            if not isinstance(voice, VoicePrompt):
                voice = VoicePrompt.load(voice)
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
            return self.speech_tokenizer.decode(codes, mode=mode)
        # In-context clones decode reference + output together and cut the reference off (§3.8).
        ref = np.array(ref_codes)
        wav = self.speech_tokenizer.decode(np.concatenate([ref, codes]), mode=mode)
        if mode == "reference":
            cut = int(ref.shape[0] / (ref.shape[0] + codes.shape[0]) * wav.shape[0])
        else:
            cut = ref.shape[0] * self.speech_tokenizer.samples_per_frame
        return wav[cut:]

    def _chunk(self, decoder, frames: list[np.ndarray], total: int, start: float,
               final: bool) -> AudioChunk:
        if frames:
            wav = decoder.decode_step(np.stack(frames).astype(np.int32))
        else:
            wav = np.zeros(0, np.float32)
        return AudioChunk(wav, self.sample_rate, len(frames), total, final,
                          time.perf_counter() - start)
