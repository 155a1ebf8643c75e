"""The 12 Hz speech tokenizer model (`Qwen3TTSTokenizerV2Model`): config, modules, `sanitize`.

Module attribute paths equal the checkpoint's keys (`encoder.*`, `decoder.*`), except that the
EMA codebooks become one derived `...codebook.embedding` table each (dossier §2.6.1 item 1).
"""

import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from ...errors import ModelLoadError
from ..base import MAX_QUANTIZERS, SAMPLE_RATES, BaseConfig, Range, conv_weight_to_mlx
from .decoder import Decoder, DecoderConfig
from .encoder import Encoder, EncoderConfig

MODEL_TYPE = "qwen3_tts_tokenizer_12hz"
CODEBOOK_EPS = 1e-5  # EuclideanCodebook's clamp of cluster_usage

# `<prefix>.{_codebook|codebook}.{embedding_sum|embed_sum|cluster_usage}`: decoder and Mimi names.
_CODEBOOK_KEY = re.compile(r"^(.*)\.(?:_codebook|codebook)\.(embedding_sum|embed_sum|cluster_usage)$")
_ACOUSTIC_LAYER = re.compile(r"^encoder\.quantizer\.acoustic_residual_vector_quantizer\.layers\.(\d+)\.")
_UNUSED_KEYS = (
    re.compile(r"^decoder\.quantizer\.rvq_(first|rest)\.input_proj\."),  # encoding-side projection
    re.compile(r"^encoder\.quantizer\.\w+_residual_vector_quantizer\.output_proj\."),  # decode side
    re.compile(r"\.initialized$"),  # Mimi's EMA bookkeeping flag
)


@dataclass
class SpeechTokenizerConfig(BaseConfig):
    encoder_config: EncoderConfig
    decoder_config: DecoderConfig
    encoder_valid_num_quantizers: int
    input_sample_rate: int
    output_sample_rate: int
    encode_downsample_rate: int
    decode_upsample_rate: int
    model_type: str = MODEL_TYPE

    BOUNDS: ClassVar[dict[str, Range]] = {
        "encoder_valid_num_quantizers": Range(1, MAX_QUANTIZERS),
        "input_sample_rate": SAMPLE_RATES,
        "output_sample_rate": SAMPLE_RATES,
        "encode_downsample_rate": Range(1, 1 << 20),
        "decode_upsample_rate": Range(1, 1 << 20),
    }

    @classmethod
    def _validate(cls, params: dict[str, Any], source: str) -> None:
        if params.get("model_type", MODEL_TYPE) != MODEL_TYPE:
            raise ModelLoadError(
                f"{source}: model_type {params['model_type']!r} is not supported; only the 12 Hz "
                f"speech tokenizer ({MODEL_TYPE!r}) is."
            )

    @classmethod
    def _nested(cls, kwargs: dict[str, Any], source: str) -> dict[str, Any]:
        enc = EncoderConfig.from_dict(kwargs["encoder_config"], f"{source} (encoder_config)")
        dec = DecoderConfig.from_dict(kwargs["decoder_config"], f"{source} (decoder_config)")
        if dec.samples_per_frame != kwargs["decode_upsample_rate"]:
            raise ModelLoadError(f"{source}: decoder strides do not multiply to decode_upsample_rate.")
        if math.prod(enc.upsampling_ratios) * 2 != kwargs["encode_downsample_rate"]:
            raise ModelLoadError(f"{source}: encoder strides do not multiply to encode_downsample_rate.")
        if not enc.num_semantic_quantizers < kwargs["encoder_valid_num_quantizers"] <= min(
            enc.num_quantizers, dec.num_quantizers
        ):
            raise ModelLoadError(f"{source}: encoder_valid_num_quantizers is out of range.")
        return {**kwargs, "encoder_config": enc, "decoder_config": dec}


class SpeechTokenizerModel(nn.Module):
    def __init__(self, config: SpeechTokenizerConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config.encoder_config, config.encoder_valid_num_quantizers)
        self.decoder = Decoder(config.decoder_config)

    def _is_unused(self, key: str) -> bool:
        if any(p.search(key) for p in _UNUSED_KEYS):
            return True
        # Mimi has 31 acoustic codebooks; the tokenizer returns only the first 15 (dossier §2.6.2).
        m = _ACOUSTIC_LAYER.match(key)
        kept = len(self.encoder.quantizer.acoustic_residual_vector_quantizer.layers)
        return m is not None and int(m.group(1)) >= kept

    def sanitize(self, weights: dict[str, mx.array]) -> dict[str, mx.array]:
        """Checkpoint tensors -> this model's parameters. Pure and idempotent.

        Drops tensors unused for inference, folds each EMA codebook into its table
        `embedding_sum / clamp(cluster_usage, 1e-5)`, and moves conv weights to MLX layout, choosing
        Conv1d or ConvTranspose1d by the module that owns the key, never by the tensor's shape.
        """
        out: dict[str, mx.array] = {}
        codebooks: dict[str, dict[str, mx.array]] = {}
        for key, w in weights.items():
            if self._is_unused(key):
                continue
            if m := _CODEBOOK_KEY.match(key):
                codebooks.setdefault(m.group(1), {})[m.group(2)] = w
            else:
                out[key] = w
        for prefix, parts in codebooks.items():
            out[f"{prefix}.codebook.embedding"] = _fold_codebook(prefix, parts)
        shapes = {k: v.shape for k, v in tree_flatten(self.parameters())}
        for prefix, module in self.named_modules():
            if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)) and f"{prefix}.weight" in out:
                key = f"{prefix}.weight"
                out[key] = conv_weight_to_mlx(
                    key, out[key], shapes[key], transposed=isinstance(module, nn.ConvTranspose1d)
                )
        return out


def _fold_codebook(prefix: str, parts: dict[str, mx.array]) -> mx.array:
    usage = parts.get("cluster_usage")
    total = parts.get("embedding_sum", parts.get("embed_sum"))
    if usage is None or total is None:
        have = ", ".join(sorted(parts))
        raise ModelLoadError(
            f"{prefix}: codebook has only {have}; both its sum and cluster_usage are needed."
        )
    usage = mx.maximum(usage.astype(mx.float32), CODEBOOK_EPS)
    return total.astype(mx.float32) / usage[:, None]
