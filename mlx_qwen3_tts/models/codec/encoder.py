"""Codec encoder (Mimi, `transformers.MimiModel.encode`): 24 kHz audio -> 16-codebook frames.

Dossier §2.6.2: SEANet conv encoder (causal, zero padded) to 25 Hz, a full-causal transformer
(the configured sliding window is not applied by the reference, §6.10), a stride-2 downsampling
conv with replicate padding to 12.5 Hz, then split RVQ of which the first 16 codebooks are kept.
"""

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import mlx.core as mx
import mlx.nn as nn

from ...errors import ModelLoadError
from ..base import (
    FIX,
    MAX_KERNEL,
    MAX_QUANTIZERS,
    MAX_STRIDE,
    MAX_WIDTH,
    SAMPLE_RATES,
    TRANSFORMER_BOUNDS,
    BaseConfig,
    Range,
    check_heads,
    check_range,
)
from .layers import ELU, CausalConv1d, run_layers
from .quantizer import EncoderSplitRVQ
from .transformer import EncoderTransformer


@dataclass
class EncoderConfig(BaseConfig):
    sampling_rate: int
    audio_channels: int
    num_filters: int
    kernel_size: int
    last_kernel_size: int
    residual_kernel_size: int
    num_residual_layers: int
    dilation_growth_rate: int
    compress: int
    upsampling_ratios: list[int]
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    norm_eps: float
    rope_theta: float
    num_quantizers: int
    num_semantic_quantizers: int
    codebook_size: int
    codebook_dim: int
    vector_quantization_hidden_dimension: int
    head_dim: int | None = None  # MimiConfig falls back to hidden / heads
    frame_rate: float | None = None  # MimiConfig derives it from the strides when absent
    hidden_act: str = "gelu"
    use_causal_conv: bool = True
    pad_mode: str = "constant"
    use_conv_shortcut: bool = False
    attention_bias: bool = False

    BOUNDS: ClassVar[dict[str, Range]] = {
        **{k: TRANSFORMER_BOUNDS[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                               "num_attention_heads", "num_key_value_heads", "head_dim",
                                               "rope_theta")},
        "sampling_rate": SAMPLE_RATES,
        "audio_channels": Range(1, 1),
        "num_filters": Range(1, MAX_WIDTH),
        "kernel_size": Range(1, MAX_KERNEL),
        "last_kernel_size": Range(1, MAX_KERNEL),
        "residual_kernel_size": Range(1, MAX_KERNEL),
        "num_residual_layers": Range(0, 16),
        "dilation_growth_rate": Range(1, 16),
        "compress": Range(1, MAX_WIDTH),
        "upsampling_ratios": Range(1, MAX_STRIDE),
        "norm_eps": Range(0, 1, low_open=True),
        "num_quantizers": Range(1, MAX_QUANTIZERS),
        "num_semantic_quantizers": Range(0, MAX_QUANTIZERS),
        "codebook_size": Range(1, MAX_WIDTH),
        "codebook_dim": Range(1, MAX_WIDTH),
        "vector_quantization_hidden_dimension": Range(1, MAX_WIDTH),
        "frame_rate": Range(0, 1000, low_open=True),
    }

    def _check(self, source: str) -> None:
        check_heads(self, source)
        # SEANet doubles the channels at every stride and divides them by `compress` inside.
        widest = self.num_filters * 2 ** len(self.upsampling_ratios)
        check_range(widest, Range(1, MAX_WIDTH), source, "num_filters * 2^len(upsampling_ratios)")
        check_range(self.num_filters // self.compress, Range(1, MAX_WIDTH), source, "num_filters // compress")
        check_range(self.downsample_kernel, Range(1, MAX_KERNEL), source, "downsample kernel from frame_rate")
        if self.num_semantic_quantizers > self.num_quantizers:
            raise ModelLoadError(f"{source}: `num_semantic_quantizers` exceeds `num_quantizers`; {FIX}.")

    @classmethod
    def from_dict(cls, params: dict[str, Any], source: str = "config.json"):
        if isinstance(params, dict) and "frame_rate" not in params and "_frame_rate" in params:
            params = {**params, "frame_rate": params["_frame_rate"]}  # MimiConfig.to_dict's name
        return super().from_dict(params, source)

    @classmethod
    def _nested(cls, kwargs: dict[str, Any], source: str) -> dict[str, Any]:
        supported = dict(hidden_act="gelu", use_causal_conv=True, pad_mode="constant",
                         use_conv_shortcut=False, attention_bias=False)
        for name, value in supported.items():
            if kwargs.get(name, value) != value:
                raise ModelLoadError(f"{source}: {name}={kwargs[name]!r} is not supported ({value!r}).")
        if kwargs["codebook_dim"] != kwargs["vector_quantization_hidden_dimension"]:
            raise ModelLoadError(f"{source}: codebook_dim must equal the quantizer's hidden dimension.")
        return kwargs

    def __post_init__(self):
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.frame_rate is None:
            self.frame_rate = self.sampling_rate / (math.prod(self.upsampling_ratios) * 2)

    @property
    def downsample_kernel(self) -> int:
        """`MimiModel`: 2 * int(encodec_frame_rate / frame_rate), with stride 2."""
        encodec_frame_rate = math.ceil(self.sampling_rate / math.prod(self.upsampling_ratios))
        return 2 * int(encodec_frame_rate / self.frame_rate)


class ResnetBlock(nn.Module):
    """SEANet residual block: x + conv_k1(elu(conv_k(elu(x)))), identity shortcut."""

    def __init__(self, dim: int, cfg: EncoderConfig, dilation: int):
        super().__init__()
        hidden = dim // cfg.compress
        self.block = [
            ELU(), CausalConv1d(dim, hidden, cfg.residual_kernel_size, dilation=dilation),
            ELU(), CausalConv1d(hidden, dim, 1),
        ]

    def __call__(self, x: mx.array) -> mx.array:
        return x + run_layers(self.block, x)


class SeanetEncoder(nn.Module):
    """`encoder.encoder`: the layer list keeps MimiEncoder's indices (ELUs have no weights)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        ch = cfg.num_filters
        self.layers = [CausalConv1d(cfg.audio_channels, ch, cfg.kernel_size)]
        for ratio in reversed(cfg.upsampling_ratios):
            self.layers += [ResnetBlock(ch, cfg, cfg.dilation_growth_rate**j)
                            for j in range(cfg.num_residual_layers)]
            self.layers += [ELU(), CausalConv1d(ch, 2 * ch, 2 * ratio, stride=ratio)]
            ch *= 2
        self.layers += [ELU(), CausalConv1d(ch, cfg.hidden_size, cfg.last_kernel_size)]

    def __call__(self, x: mx.array) -> mx.array:
        return run_layers(self.layers, x)


class Encoder(nn.Module):
    """`encoder.*` of the checkpoint: audio `[B, N]` at 24 kHz -> codes `[B, ceil(N / 1920), Q]`."""

    def __init__(self, cfg: EncoderConfig, num_valid_quantizers: int):
        super().__init__()
        h = cfg.hidden_size
        self.encoder = SeanetEncoder(cfg)
        self.encoder_transformer = EncoderTransformer(cfg)
        self.downsample = CausalConv1d(h, h, cfg.downsample_kernel, stride=2, bias=False,
                                       pad_mode="edge")
        self.quantizer = EncoderSplitRVQ(
            cfg.num_semantic_quantizers, num_valid_quantizers - cfg.num_semantic_quantizers,
            cfg.codebook_size, cfg.codebook_dim, h,
        )

    def embed(self, audio: mx.array) -> mx.array:
        """The quantizer's input `[B, frames, hidden]` for audio `[B, N]`."""
        return self.downsample(self.encoder_transformer(self.encoder(audio[..., None])))

    def __call__(self, audio: mx.array) -> mx.array:
        return self.quantizer.encode(self.embed(audio))
