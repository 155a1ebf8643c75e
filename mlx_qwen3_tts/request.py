"""The one request path: user arguments -> a validated `Job` of `Request`s for the frame loop.

Every front end goes through here (`Qwen3TTS`, `TextStream`, the command line, the server), so a
mode rule, a default or a limit is written once. `Capabilities` says what the loaded checkpoint
can do; `RequestBuilder` checks arguments against it, resolves the voice once per call and builds
one `Request` (prompt, sampling, seed, limits) per piece of text.
"""

import math
import secrets
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, replace
from numbers import Integral, Real
from typing import Any

import mlx.core as mx
import numpy as np

from .errors import (
    AudioError,
    EmptyTextError,
    InstructUnsupportedError,
    ModeError,
    ModelLoadError,
    SynthesisError,
    TextTooLongError,
    UnknownSpeakerError,
    UnsupportedLanguageError,
    VoiceCloneUnsupportedError,
    warn,
)
from .models.qwen3_tts import Qwen3TTSConfig
from .prompt import Prompt, PromptEmbedder, icl_prompt, text_prompt
from .sampling import SamplerSettings, check_scale
from .speech_tokenizer import DECODE_MODES
from .text_split import has_words, split_text
from .timescale import check_speed
from .voice_prompt import VoicePrompt
from .voices import Language

# Only 0.6B CustomVoice drops instructions; the reference tests `size in "0b6"` (dossier §6.3).
INSTRUCT_DROPPED = frozenset({("custom_voice", "0b6")})
# The speaker a CustomVoice checkpoint speaks with when none is named (front ends announce it).
PREFERRED_SPEAKER = "vivian"
# The whole prompt's text tokens (instruction + reference transcript + text): far above any
# real prompt, low enough that one request cannot hold the model for minutes.
MAX_PROMPT_TOKENS = 8192
# The most tokens of one piece of a split text: at least what any text short enough never to be
# split (`SPLIT_CHARS`, 300) can have, so those stay one piece as in the official model. NFC can
# make one character three code points of 4 bytes, and byte-level BPE spends at most a token per
# byte: 300 x 12 = 3600.
MAX_PIECE_TOKENS = 3600
SEED_LIMIT = 2**64  # MLX keys are 64-bit
SAMPLING_ARGUMENTS = ("temperature", "top_k", "top_p", "repetition_penalty", "max_frames",
                      "subtalker_temperature", "subtalker_top_k", "subtalker_top_p")


# --------------------------------------------------------------------------- capabilities


@dataclass(frozen=True)
class Capabilities:
    """What a loaded checkpoint can do, read from its config once.

    Attributes:
        model_type: "custom_voice", "voice_design" or "base".
        speakers: named speakers (CustomVoice; fine-tunes add their own), sorted.
        languages: "auto" plus the languages the checkpoint names; dialects come with speakers.
        dialects: speaker -> the dialect it speaks when the language is chinese or auto.
        supports_instruct: takes a style instruction or voice description.
        supports_clone: clones a voice from reference audio (Base).
        default_speaker: the speaker used when none is named (CustomVoice), else None.
    """

    model_type: str
    speakers: tuple[str, ...]
    languages: tuple[str, ...]
    dialects: dict[str, str]
    supports_instruct: bool
    supports_clone: bool
    default_speaker: str | None

    @classmethod
    def from_config(cls, config: Qwen3TTSConfig) -> "Capabilities":
        talker = config.talker_config
        speakers = tuple(sorted(talker.spk_id))
        kind = config.tts_model_type
        return cls(
            model_type=kind,
            speakers=speakers,
            languages=("auto", *sorted(n for n in talker.codec_language_id if "dialect" not in n)),
            dialects={s: d for s, d in talker.spk_is_dialect.items() if isinstance(d, str) and d},
            supports_instruct=kind != "base" and (kind, config.tts_model_size) not in INSTRUCT_DROPPED,
            supports_clone=kind == "base",
            default_speaker=(PREFERRED_SPEAKER if PREFERRED_SPEAKER in speakers else speakers[0])
            if kind == "custom_voice" and speakers else None,
        )


# --------------------------------------------------------------------------- sampling and limits


def _number(name: str, value: Any, integer: bool = False) -> Any:
    """`value` if it is a real number (an integer when asked), else SynthesisError naming `name`."""
    kind = Integral if integer else Real
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
        what = "an integer" if integer else "a finite number"
        raise SynthesisError(f"`{name}` must be {what}, got {value!r}.", name)
    return int(value) if integer else float(value)


@dataclass(frozen=True)
class GenerationConfig:
    """Sampling settings of one request; defaults come from the checkpoint (§3.7).

    `max_frames` bounds the frames of the request: the reference's `max_new_tokens` is
    `max_frames + 1`, because it returns one frame fewer than the tokens it samples.
    """

    talker: SamplerSettings
    code_predictor: SamplerSettings
    repetition_penalty: float
    max_frames: int

    def __post_init__(self):
        if not self.repetition_penalty > 0:
            raise SynthesisError(
                f"`repetition_penalty` must be > 0 (1.0 = off), got {self.repetition_penalty}.",
                "repetition_penalty")
        check_scale("`repetition_penalty`", self.repetition_penalty, False, "repetition_penalty")
        if not (isinstance(self.max_frames, int) and self.max_frames > 0):
            raise SynthesisError(f"`max_frames` must be a positive integer, got {self.max_frames!r}.",
                                 "max_frames")

    @classmethod
    def from_checkpoint(cls, defaults: Any) -> "GenerationConfig":
        """From `generation_config.json`, falling back to the reference wrapper's values.

        Raises:
            ModelLoadError: the file is not a JSON object, or a field has the wrong type or an
                unusable value (named, in the file's own terms).
        """
        file = "generation_config.json"
        if not isinstance(defaults, dict):
            raise ModelLoadError(f"{file} must hold a JSON object, got {type(defaults).__name__}.")

        def field(key: str, default: Any, kind: type) -> Any:
            value = defaults.get(key, default)
            number = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
            if kind is bool and (isinstance(value, bool) or (number and value in (0, 1))):
                return bool(value)
            if kind is float and number:
                return float(value)
            if kind is int and number and float(value).is_integer():
                return int(value)
            what = {bool: "true or false", float: "a finite number", int: "an integer"}[kind]
            raise ModelLoadError(f"{file}: {key!r} must be {what}, got {value!r:.80}.")

        def settings(prefix: str) -> SamplerSettings:
            greedy = not field(f"{prefix}do_sample", True, bool)
            return SamplerSettings(
                temperature=0.0 if greedy else field(f"{prefix}temperature", 0.9, float),
                top_k=field(f"{prefix}top_k", 50, int),
                top_p=field(f"{prefix}top_p", 1.0, float),
                prefix=prefix,
            )

        max_new_tokens = field("max_new_tokens", 2048, int)
        if max_new_tokens < 2:  # the reference returns one frame fewer than it samples tokens
            raise ModelLoadError(f"{file}: 'max_new_tokens' must be at least 2, got {max_new_tokens}.")
        try:
            return cls(talker=settings(""), code_predictor=settings("subtalker_"),
                       repetition_penalty=field("repetition_penalty", 1.05, float),
                       max_frames=max_new_tokens - 1)
        except SynthesisError as e:  # a value out of range, in the words of a call's argument
            raise ModelLoadError(f"{file}: {str(e).replace('`', '')}") from e

    def override(self, **kwargs: Any) -> "GenerationConfig":
        """Replace the settings given (None = keep), e.g. `temperature=0`, `subtalker_top_k=10`."""
        given = {k: v for k, v in kwargs.items() if v is not None}
        for name, value in given.items():
            _number(name, value, integer=name.endswith(("top_k", "max_frames")))
        talker = {k: v for k, v in given.items() if k in ("temperature", "top_k", "top_p")}
        sub = {k[len("subtalker_"):]: v for k, v in given.items() if k.startswith("subtalker_")}
        rest = {k: v for k, v in given.items() if k in ("repetition_penalty", "max_frames")}
        return replace(
            self,
            talker=replace(self.talker, **talker),
            code_predictor=replace(self.code_predictor, **sub),
            **rest,
        )


@dataclass(frozen=True)
class RunawayGuard:
    """Ends generation that runs away instead of stopping (on by default).

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


def make_guard(runaway_guard: "bool | RunawayGuard") -> RunawayGuard | None:
    """`True` -> the default guard, `False`/None -> none, a `RunawayGuard` as given."""
    if isinstance(runaway_guard, RunawayGuard):
        return runaway_guard
    if runaway_guard in (True, False, None):
        return RunawayGuard() if runaway_guard else None
    raise SynthesisError(f"`runaway_guard` must be True, False or a RunawayGuard, got {runaway_guard!r}.",
                         "runaway_guard")


# --------------------------------------------------------------------------- requests


@dataclass
class Request:
    """One row of the frame loop: what to say, how to sample it and when to stop.

    Attributes:
        prompt: prefill embeddings and the text fed while generating.
        config: sampling settings and this request's frame limit.
        seed: seeds this row's own key sequence (a row of a batch draws what it would alone).
        guard: the runaway guard, or None.
    """

    prompt: Prompt
    config: GenerationConfig
    seed: int
    guard: RunawayGuard | None = None

    @property
    def key(self) -> mx.array:
        return mx.random.key(self.seed)


@dataclass
class Job:
    """A validated call: its pieces of text as requests, and how to turn their frames into audio.

    `max_frames` caps the frames of the whole call (all pieces), None for no cap beyond each
    request's own limit; `speed` is the speaking rate applied to the audio (1.0: the model's).
    """

    requests: list[Request]
    decode_mode: str = "exact"
    max_frames: int | None = None
    speed: float = 1.0

    @property
    def seed(self) -> int:
        return self.requests[0].seed


@dataclass(frozen=True)
class Voice:
    """Who speaks and how, resolved against the checkpoint once per call: what every piece of a
    text shares (and so the voice prefix of its prompt)."""

    language_id: int | None
    speaker: mx.array | None = None  # `[H]`: C(spk_id) or a clone's x-vector
    instruct_ids: list[int] | None = None
    ref_codes: mx.array | None = None  # in-context clone: `[F, 16]` reference codes
    ref_ids: list[int] | None = None  # in-context clone: the transcript's tokens
    non_streaming: bool = True


def check_str(text: Any, name: str) -> str:
    """`text` if it is a str of valid Unicode, control characters (but newlines, tabs) dropped."""
    if not isinstance(text, str):
        raise SynthesisError(f"`{name}` must be a str, got {type(text).__name__}.", name)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:  # a lone surrogate, e.g. from a badly decoded file
        raise SynthesisError(f"`{name}` is not valid Unicode: {e.reason} at character {e.start}.",
                             name) from e
    return "".join(c for c in text if c in "\n\t" or unicodedata.category(c) != "Cc")


def check_text(text: Any, name: str = "text") -> str:
    """`text` if it is a str with something to say, control characters dropped."""
    text = check_str(text, name)
    if not text.strip():
        raise EmptyTextError(f"`{name}` is empty; pass something to say.", name)
    if not has_words(text):
        raise EmptyTextError(f"`{name}` {text[:40]!r} has no letters or digits, so nothing to speak.",
                             name)
    return text


def new_seed() -> int:
    """A fresh random seed, 31 bits (what every caller reports back: any JSON reader takes it)."""
    return secrets.randbits(31)


def check_seed(seed: Any) -> int:
    """A fresh seed for None, else `seed` if it is an integer in [0, 2**64)."""
    if seed is None:
        return new_seed()
    if isinstance(seed, bool) or not isinstance(seed, Integral) or not 0 <= seed < SEED_LIMIT:
        raise SynthesisError(f"`seed` must be an integer in [0, 2**64), got {seed!r}.", "seed")
    return int(seed)


def check_decode_mode(mode: Any) -> str:
    if mode not in DECODE_MODES:
        raise SynthesisError(f"`decode_mode` must be one of {', '.join(DECODE_MODES)}, got {mode!r}.",
                             "decode_mode")
    return mode


class RequestBuilder:
    """Checks arguments against one checkpoint and builds its requests.

    Args:
        config: the checkpoint's config.
        embedder: the talker's embedding functions and text tokenizer.
        defaults: the checkpoint's sampling defaults.
        encode_voice: `(ref_audio, ref_text) -> VoicePrompt` (Base models), run when a call
            passes reference audio instead of a saved voice.
    """

    def __init__(
        self,
        config: Qwen3TTSConfig,
        embedder: PromptEmbedder,
        defaults: GenerationConfig,
        encode_voice: Callable[[Any, str | None], VoicePrompt] | None = None,
    ):
        self.config = config
        self.caps = Capabilities.from_config(config)
        self.embedder = embedder
        self.defaults = defaults
        self.encode_voice = encode_voice

    # ------------------------------------------------------------------- whole calls

    def job(self, text: str, *, split: bool = True, **kwargs: Any) -> Job:
        """A whole call: one request per piece of `text` (piece i is sampled with seed + i).

        Texts longer than `text_split.SPLIT_CHARS` are split when `split`; `kwargs` are those of
        `Qwen3TTS.generate`: the voice, the sampling, `seed`, `runaway_guard` and `decode_mode`.
        """
        text = check_text(text)
        if not split:
            return self._job([text], kwargs)
        return self._job(split_text(text), kwargs, cap=MAX_PIECE_TOKENS)

    def batch(self, texts: Any, **kwargs: Any) -> Job:
        """One request per text (text i is sampled with seed + i), each spoken in one piece."""
        if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
            raise SynthesisError(f"`texts` must be a list of str, got {type(texts).__name__}; "
                                 "pass [text] for one.", "texts")
        if not texts:
            raise EmptyTextError("`texts` is empty; pass at least one text.", "texts")
        return self._job([check_text(t) for t in texts], kwargs)

    def _job(self, pieces: list[str], kwargs: dict[str, Any], cap: int | None = None) -> Job:
        """Requests for `pieces` (those over `cap` tokens cut into pieces of `cap` tokens)."""
        kwargs = dict(kwargs)
        decode_mode = check_decode_mode(kwargs.pop("decode_mode", "exact"))
        speed = check_speed(kwargs.pop("speed", 1.0))
        seed = check_seed(kwargs.pop("seed", None))
        guard = make_guard(kwargs.pop("runaway_guard", True))
        sampling = {k: kwargs.pop(k) for k in list(kwargs) if k in SAMPLING_ARGUMENTS}
        config, max_frames = self.sampling(**sampling)
        voice = self.voice(**kwargs)
        ids = [self.text_ids(piece) for piece in pieces]
        if cap is not None:
            # Text with few letters can tokenize to far more tokens than characters (emoji: 4 or
            # more each); no piece may hold the model for minutes.
            ids = [piece[i : i + cap] for piece in ids for i in range(0, len(piece), cap)]
        requests = [self.request(piece, voice, config, (seed + i) % SEED_LIMIT, guard)
                    for i, piece in enumerate(ids)]
        return Job(requests, decode_mode, max_frames, speed)

    def sampling(self, **kwargs: Any) -> tuple[GenerationConfig, int | None]:
        """The checkpoint's sampling defaults with `kwargs` applied, and the call's frame cap."""
        unknown = sorted(set(kwargs) - set(SAMPLING_ARGUMENTS))
        if unknown:
            raise SynthesisError(f"Unknown argument(s) {unknown}; see `generate`'s arguments.")
        config = self.defaults.override(**kwargs)
        return config, kwargs.get("max_frames")

    def request(self, text_ids: list[int], voice: Voice, config: GenerationConfig, seed: int,
                guard: RunawayGuard | None = None) -> Request:
        """One frame-loop row for already tokenized text."""
        used = len(text_ids) + len(voice.instruct_ids or ()) + len(voice.ref_ids or ())
        if used > MAX_PROMPT_TOKENS:
            raise TextTooLongError(
                f"The prompt has {used} text tokens (instruction, reference transcript and text); "
                f"at most {MAX_PROMPT_TOKENS} fit in one request. Shorten `instruct` or `ref_text`, "
                "or let the text be split.", "text")
        return Request(self.prompt(text_ids, voice), config, seed, guard)

    def prompt(self, text_ids: list[int], voice: Voice) -> Prompt:
        e = self.embedder
        if voice.ref_codes is not None:
            return icl_prompt(e, text_ids, voice.ref_ids, voice.ref_codes, voice.language_id,
                              voice.speaker, voice.non_streaming)
        return text_prompt(e, text_ids, voice.language_id, voice.speaker, voice.instruct_ids,
                           voice.non_streaming)

    def text_ids(self, text: str) -> list[int]:
        ids = self.embedder.target_ids(check_text(text))
        if not ids:
            raise EmptyTextError(f"`text` {text[:40]!r} produced no tokens.", "text")
        return ids

    # ------------------------------------------------------------------- the voice

    def voice(
        self,
        speaker: Any = None,
        language: Any = "auto",
        instruct: Any = None,
        ref_audio: Any = None,
        ref_text: Any = None,
        voice: Any = None,
        non_streaming_mode: bool | None = None,
        **unknown: Any,
    ) -> Voice:
        """Check the voice arguments against the checkpoint's mode and resolve them (§3.3-§3.4)."""
        if unknown:
            raise SynthesisError(f"Unknown argument(s) {sorted(unknown)}; see `generate`'s arguments.")
        caps = self.caps
        if instruct is not None:
            instruct = check_str(instruct, "instruct").strip() or None
        language_id = self._language_id(language)
        if non_streaming_mode is not None and not isinstance(non_streaming_mode, bool):
            raise SynthesisError(f"`non_streaming_mode` must be True, False or None, got "
                                 f"{non_streaming_mode!r}.", "non_streaming_mode")
        if caps.supports_clone:
            return self._clone_voice(speaker, language_id, instruct, ref_audio, ref_text, voice,
                                     non_streaming_mode)
        if ref_audio is not None or voice is not None or ref_text is not None:
            param = "ref_audio" if ref_audio is not None else "voice" if voice is not None else "ref_text"
            raise VoiceCloneUnsupportedError(
                f"This {caps.model_type} checkpoint cannot clone voices; load a Base model (e.g. "
                "Qwen/Qwen3-TTS-12Hz-0.6B-Base) for `ref_audio` / `voice`.", param)
        layout = True if non_streaming_mode is None else non_streaming_mode
        if caps.model_type == "voice_design":
            if speaker is not None:
                raise ModeError("A VoiceDesign checkpoint has no named speakers; describe the voice "
                                "with `instruct` instead of `speaker`.", "speaker")
            if instruct is None:
                warn("No `instruct` given: the VoiceDesign model makes up a voice of its own; "
                     "describe the voice you want with `instruct`.", param="instruct")
            return Voice(language_id, None, self._instruct_ids(instruct), non_streaming=layout)
        if instruct is not None and not caps.supports_instruct:
            raise InstructUnsupportedError(
                "The 0.6B CustomVoice checkpoint ignores instructions (the official model drops them); "
                "use a 1.7B CustomVoice or VoiceDesign checkpoint, or leave out `instruct`.", "instruct")
        spk, language_id = self._speaker(speaker, language, language_id)
        return Voice(language_id, spk, self._instruct_ids(instruct), non_streaming=layout)

    def _instruct_ids(self, instruct: str | None) -> list[int] | None:
        return self.embedder.instruct_ids(instruct) if instruct is not None else None

    def _language_id(self, language: Any) -> int | None:
        lang = Language.parse(language if language is not None else "auto")
        if lang is Language.AUTO:
            return None
        ids = self.config.talker_config.codec_language_id
        if lang.value not in ids:
            raise UnsupportedLanguageError(
                f"This checkpoint has no language {lang.value!r}. Supported: "
                f"{', '.join(self.caps.languages)}.", "language")
        return ids[lang.value]

    def _speaker(self, speaker: Any, language: Any, language_id: int | None) -> tuple[mx.array, int | None]:
        """Speaker embedding `C(spk_id)` and the language id after the dialect rule (§3.3)."""
        cfg = self.config.talker_config
        listed = ", ".join(self.caps.speakers)
        if speaker is None or str(speaker).strip() == "":
            raise UnknownSpeakerError(f"A CustomVoice checkpoint needs a `speaker`; choose one of {listed}.",
                                      "speaker")
        name = str(speaker).strip().lower()
        if name not in cfg.spk_id:
            raise UnknownSpeakerError(f"Unknown speaker {speaker!r}. Supported: {listed}.", "speaker")
        dialect = self.caps.dialects.get(name)
        if dialect and Language.parse(language) in (Language.CHINESE, Language.AUTO):
            language_id = cfg.codec_language_id[dialect]
        return self.embedder.codec([cfg.spk_id[name]])[0], language_id

    def _clone_voice(self, speaker, language_id, instruct, ref_audio, ref_text, voice,
                     non_streaming: bool | None) -> Voice:
        if speaker is not None:
            raise ModeError("A Base checkpoint clones a voice: pass `ref_audio` or `voice`, not `speaker`.",
                            "speaker")
        if instruct is not None:
            raise InstructUnsupportedError(
                "Base checkpoints do not follow instructions; use a 1.7B CustomVoice or VoiceDesign "
                "checkpoint for `instruct`.", "instruct")
        if ref_audio is None and voice is None:
            raise ModeError(
                "A Base checkpoint clones a voice: pass `ref_audio` (and `ref_text`, its transcript, "
                "for a closer clone) or a saved `voice`.", "ref_audio")
        if ref_audio is not None and voice is not None:
            raise ModeError("Pass `ref_audio` or a saved `voice`, not both.", "voice")
        if voice is not None:
            if ref_text is not None:
                raise ModeError("`ref_text` belongs to `ref_audio`; a saved `voice` carries its own.",
                                "ref_text")
            prompt = VoicePrompt.resolve(voice)
        else:
            prompt = self.encode_voice(ref_audio, ref_text)
        hidden = self.config.talker_config.hidden_size
        embedding = np.asarray(prompt.speaker_embedding)
        if embedding.shape != (hidden,):
            raise AudioError(
                f"The voice's speaker embedding has shape {embedding.shape}; this model needs "
                f"({hidden},): it was made with another model size.", "voice")
        xvec = mx.array(embedding.astype(np.float32))
        layout = False if non_streaming is None else non_streaming
        if not prompt.in_context:
            return Voice(language_id, xvec, non_streaming=layout)
        ref_codes = mx.array(np.asarray(prompt.ref_codes, np.int32))
        ref_ids = self.embedder.ref_ids(check_text(prompt.ref_text, "ref_text"))
        return Voice(language_id, xvec, ref_codes=ref_codes, ref_ids=ref_ids, non_streaming=layout)
