"""`Qwen3TTSForConditionalGeneration` without its generation code: talker + speaker encoder.

The speech tokenizer lives in its own folder and module (`models/codec`); the frame loop lives in
`generate.py`. This file owns the top-level config and the weight mapping of `model.safetensors`.
"""

from dataclasses import dataclass
from typing import Any, ClassVar

import mlx.core as mx
import mlx.nn as nn

from ..errors import ModelLoadError
from .base import FIX, BaseConfig, check_id
from .speaker_encoder import SpeakerEncoder, SpeakerEncoderConfig
from .talker import Talker, TalkerConfig

MODEL_TYPES = ("custom_voice", "voice_design", "base")
# What MLX's affine quantization takes; loading builds quantized layers from these.
QUANT_BITS = (2, 3, 4, 5, 6, 8)
QUANT_GROUP_SIZES = (32, 64, 128)


@dataclass
class Qwen3TTSConfig(BaseConfig):
    tts_model_type: str
    tts_model_size: str
    tts_pad_token_id: int
    tts_bos_token_id: int
    tts_eos_token_id: int
    talker_config: TalkerConfig
    speaker_encoder_config: SpeakerEncoderConfig | None = None
    model_type: str = "qwen3_tts"
    tokenizer_type: str = "qwen3_tts_tokenizer_12hz"
    quantization: dict[str, Any] | None = None

    TEXT_IDS: ClassVar[tuple[str, ...]] = ("tts_pad_token_id", "tts_bos_token_id", "tts_eos_token_id")

    @classmethod
    def _validate(cls, params, source):
        if params.get("model_type", "qwen3_tts") != "qwen3_tts":
            raise ModelLoadError(
                f"{source}: model_type is {params['model_type']!r}, not 'qwen3_tts'; "
                "this is not a Qwen3-TTS checkpoint."
            )
        if params.get("tokenizer_type", "qwen3_tts_tokenizer_12hz") != "qwen3_tts_tokenizer_12hz":
            raise ModelLoadError(
                f"{source}: tokenizer_type {params['tokenizer_type']!r} is not supported; only the "
                "released 12 Hz checkpoints are (the 25 Hz ones were never released)."
            )

    @classmethod
    def _nested(cls, kwargs, source):
        if kwargs["tts_model_type"] not in MODEL_TYPES:
            raise ModelLoadError(
                f"{source}: tts_model_type {kwargs['tts_model_type']!r} is not one of {MODEL_TYPES}."
            )
        talker = TalkerConfig.from_dict(kwargs["talker_config"], f"{source} (talker_config)")
        talker.check(f"{source} (talker_config)")
        speaker = None
        if kwargs["tts_model_type"] == "base":
            if kwargs.get("speaker_encoder_config") is None:
                raise ModelLoadError(f"{source} lacks required field speaker_encoder_config (Base model).")
            speaker = SpeakerEncoderConfig.from_dict(
                kwargs["speaker_encoder_config"], f"{source} (speaker_encoder_config)"
            )
            if speaker.enc_dim != talker.hidden_size:
                # The x-vector is used as a codec-side embedding, so widths must agree.
                raise ModelLoadError(
                    f"{source}: speaker_encoder_config.enc_dim {speaker.enc_dim} != talker "
                    f"hidden_size {talker.hidden_size}."
                )
        return {**kwargs, "talker_config": talker, "speaker_encoder_config": speaker}

    def _check(self, source: str) -> None:
        text_vocab = self.talker_config.text_vocab_size
        for name in self.TEXT_IDS:
            check_id(getattr(self, name), text_vocab, source, name,
                     "text vocabulary (`talker_config.text_vocab_size`)")
        if self.quantization is not None:
            _check_quantization(self.quantization, source)

    @property
    def instruct_supported(self) -> bool:
        # The reference drops `instruct` for 0.6B CustomVoice via `size in "0b6"` (dossier §6.3).
        return not (self.tts_model_type == "custom_voice" and self.tts_model_size in "0b6")


def _check_quantization(block: dict[str, Any], source: str) -> None:
    """The defaults and each per-layer entry of a `quantization` block take MLX's settings."""
    entries = {"quantization": block}
    entries.update({f"quantization[{k!r}]": v for k, v in block.items() if isinstance(v, dict)})
    allowed = {"bits": QUANT_BITS, "group_size": QUANT_GROUP_SIZES, "mode": ("affine",)}
    for name, entry in entries.items():
        for key, values in allowed.items():
            value = entry.get(key, values[0])
            if isinstance(value, bool) or value not in values:
                raise ModelLoadError(
                    f"{source}: `{name}['{key}']` must be one of {', '.join(map(str, values))}, got "
                    f"{value!r:.40}; {FIX}."
                )


class Model(nn.Module):
    def __init__(self, config: Qwen3TTSConfig):
        super().__init__()
        self.config = config
        self.talker = Talker(config.talker_config)
        if config.speaker_encoder_config is not None:
            self.speaker_encoder = SpeakerEncoder(config.speaker_encoder_config)

    def sanitize(self, weights: dict[str, mx.array]) -> dict[str, mx.array]:
        """Checkpoint weights -> this module's layout. Pure and idempotent.

        Talker keys already match; speaker-encoder convolutions move to channels-last.
        """
        prefix = "speaker_encoder."
        out = {k: v for k, v in weights.items() if not k.startswith(prefix)}
        if "speaker_encoder" in self:
            speaker = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
            out.update({prefix + k: v for k, v in self.speaker_encoder.sanitize(speaker).items()})
        return out
