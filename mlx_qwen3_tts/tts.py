"""`Qwen3TTS`: a loaded checkpoint with everything synthesis needs, the library's main object."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .models.qwen3_tts import Model, Qwen3TTSConfig
from .speech_tokenizer import SpeechTokenizer
from .text_tokenizer import TextTokenizer


@dataclass
class Qwen3TTS:
    """A Qwen3-TTS checkpoint loaded into MLX.

    Attributes:
        model: talker, code predictor and (Base models) speaker encoder.
        text_tokenizer: the Qwen2 BPE of the checkpoint.
        speech_tokenizer: the 12 Hz codec (codes <-> 24 kHz audio).
        generation_defaults: the checkpoint's `generation_config.json` (sampling defaults).
        path: the local folder it was loaded from.
    """

    model: Model
    text_tokenizer: TextTokenizer
    speech_tokenizer: SpeechTokenizer
    generation_defaults: dict[str, Any]
    path: Path

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
