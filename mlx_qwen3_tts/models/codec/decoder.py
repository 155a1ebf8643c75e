"""Codec decoder: 16-codebook frames -> 24 kHz waveform, in one pass or streamed (dossier §2.6.1).

`Decoder.__call__(codes, state)` is one causal pass; with a state from `make_state()` it continues
a stream, and the pieces concatenate to the single-pass audio. Two whole-utterance decodes:

* `chunked_decode` is the reference's `chunked_decode` (300-frame chunks, 25 frames of left
  context, positions restarting per chunk, dossier §2.6.3). Past 300 frames it differs from a
  single pass, because the 25-frame context is shorter than the transformer's window (§6.11).
* `streamed_decode` is the single pass with the sliding window applied, computed 75 frames at a
  time through the streaming state, so memory stays bounded for any length (the last stage's
  activations grow with the piece: gigabytes for a 300-frame piece at full size).
"""

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import mlx.core as mx
import mlx.nn as nn

from ...errors import ModelLoadError
from ..base import (
    MAX_POSITIONS,
    MAX_QUANTIZERS,
    MAX_STRIDE,
    MAX_WIDTH,
    TRANSFORMER_BOUNDS,
    BaseConfig,
    Range,
    check_heads,
    check_range,
)
from .layers import (
    CausalConv1d,
    CausalConvTranspose1d,
    SnakeBeta,
    make_states,
    run_layers,
    state_arrays,
)
from .quantizer import SplitResidualVectorQuantizer
from .transformer import DecoderTransformer

REFERENCE_CHUNK_SIZE = 300
EXACT_CHUNK_SIZE = 75  # any size gives the same audio; this bounds peak memory
REFERENCE_LEFT_CONTEXT = 25


@dataclass
class DecoderConfig(BaseConfig):
    codebook_size: int
    codebook_dim: int
    num_quantizers: int
    latent_dim: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    sliding_window: int
    rope_theta: float
    rms_norm_eps: float
    upsample_rates: list[int]
    upsampling_ratios: list[int]
    decoder_dim: int
    head_dim: int | None = None  # the reference falls back to hidden / heads
    hidden_act: str = "silu"
    attention_bias: bool = False

    BOUNDS: ClassVar[dict[str, Range]] = {
        **{k: TRANSFORMER_BOUNDS[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                               "num_attention_heads", "num_key_value_heads", "head_dim",
                                               "rope_theta", "rms_norm_eps")},
        "codebook_size": Range(1, MAX_WIDTH),
        "codebook_dim": Range(1, MAX_WIDTH),
        "num_quantizers": Range(1, MAX_QUANTIZERS),
        "latent_dim": Range(1, MAX_WIDTH),
        "sliding_window": Range(1, MAX_POSITIONS),
        "upsample_rates": Range(1, MAX_STRIDE),
        "upsampling_ratios": Range(1, MAX_STRIDE),
        "decoder_dim": Range(1, MAX_WIDTH),
    }

    def __post_init__(self):
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads

    def _check(self, source: str) -> None:
        check_heads(self, source)
        # Each upsampling block halves the channels; the last must keep at least one.
        narrowest = self.decoder_dim // 2 ** len(self.upsample_rates)
        check_range(narrowest, Range(1, MAX_WIDTH), source, "decoder_dim // 2^len(upsample_rates)")

    @classmethod
    def _nested(cls, kwargs: dict[str, Any], source: str) -> dict[str, Any]:
        if kwargs.get("hidden_act", "silu") != "silu" or kwargs.get("attention_bias", False):
            raise ModelLoadError(f"{source}: only hidden_act=silu without attention bias is supported.")
        return kwargs

    @property
    def samples_per_frame(self) -> int:
        return math.prod(self.upsampling_ratios) * math.prod(self.upsample_rates)


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = CausalConv1d(dim, dim, 7, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = mx.ones((dim,))

    def make_state(self):
        return self.dwconv.make_state()

    def __call__(self, x: mx.array, state=None) -> mx.array:
        h = self.pwconv2(nn.gelu(self.pwconv1(self.norm(self.dwconv(x, state)))))
        return x + self.gamma * h


class ResidualUnit(nn.Module):
    def __init__(self, dim: int, dilation: int):
        super().__init__()
        self.act1 = SnakeBeta(dim)
        self.conv1 = CausalConv1d(dim, dim, 7, dilation=dilation)
        self.act2 = SnakeBeta(dim)
        self.conv2 = CausalConv1d(dim, dim, 1)

    def make_state(self):
        return self.conv1.make_state()  # conv2 is 1x1: no context

    def __call__(self, x: mx.array, state=None) -> mx.array:
        return x + self.conv2(self.act2(self.conv1(self.act1(x), state)))


class DecoderBlock(nn.Module):
    """SnakeBeta, causal ConvTranspose (k = 2r, stride r), residual units with dilation 1, 3, 9."""

    def __init__(self, in_dim: int, out_dim: int, rate: int):
        super().__init__()
        self.block = [SnakeBeta(in_dim), CausalConvTranspose1d(in_dim, out_dim, 2 * rate, rate)]
        self.block += [ResidualUnit(out_dim, d) for d in (1, 3, 9)]

    def make_state(self) -> list[Any]:
        return make_states(self.block)

    def __call__(self, x: mx.array, state=None) -> mx.array:
        return run_layers(self.block, x, state)


class Decoder(nn.Module):
    """`decoder.*` of the checkpoint: codes `[B, T, Q]` -> waveform `[B, T * samples_per_frame]`."""

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.samples_per_frame = cfg.samples_per_frame
        self.quantizer = SplitResidualVectorQuantizer(
            cfg.num_quantizers, cfg.codebook_size, cfg.codebook_dim
        )
        self.pre_conv = CausalConv1d(cfg.codebook_dim, cfg.latent_dim, 3)
        self.pre_transformer = DecoderTransformer(cfg)
        lat = cfg.latent_dim
        self.upsample = [
            [CausalConvTranspose1d(lat, lat, r, r), ConvNeXtBlock(lat)] for r in cfg.upsampling_ratios
        ]
        dims = [cfg.decoder_dim // 2**i for i in range(len(cfg.upsample_rates) + 1)]
        self.decoder = [CausalConv1d(lat, dims[0], 7)]
        self.decoder += [DecoderBlock(dims[i], dims[i + 1], r) for i, r in enumerate(cfg.upsample_rates)]
        self.decoder += [SnakeBeta(dims[-1]), CausalConv1d(dims[-1], 1, 7)]

    def make_state(self) -> dict[str, Any]:
        """Fresh streaming state: conv left contexts, transposed-conv tails, KV windows."""
        return {
            "pre_conv": self.pre_conv.make_state(),
            "pre_transformer": self.pre_transformer.make_state(),
            "upsample": [make_states(stage) for stage in self.upsample],
            "decoder": make_states(self.decoder),
        }

    def __call__(self, codes: mx.array, state: dict[str, Any] | None = None) -> mx.array:
        s = state or {}
        h = self.quantizer.decode(codes)
        h = self.pre_conv(h, s.get("pre_conv"))
        h = self.pre_transformer(h, s.get("pre_transformer"))
        for stage, stage_state in zip(self.upsample, s.get("upsample", [None] * len(self.upsample))):
            h = run_layers(stage, h, stage_state)
        wav = run_layers(self.decoder, h, s.get("decoder"))
        return mx.clip(wav[..., 0], -1.0, 1.0)

    def chunked_decode(
        self,
        codes: mx.array,
        chunk_size: int = REFERENCE_CHUNK_SIZE,
        left_context: int = REFERENCE_LEFT_CONTEXT,
    ) -> mx.array:
        """The reference's chunked decode, kept for parity (dossier §2.6.3, §6.11)."""
        wavs, start, T = [], 0, codes.shape[1]
        while start < T:
            end = min(start + chunk_size, T)
            # Reference quirk: the context is `start` itself only while start <= left_context.
            context = left_context if start - left_context > 0 else start
            wav = self(codes[:, start - context : end])[:, context * self.samples_per_frame :]
            mx.eval(wav)
            wavs.append(wav)
            start = end
        return mx.concatenate(wavs, axis=1) if wavs else mx.zeros((codes.shape[0], 0))

    def streamed_decode(self, codes: mx.array, chunk_size: int = EXACT_CHUNK_SIZE) -> mx.array:
        """The single-pass decode of all frames, computed `chunk_size` frames at a time."""
        state, wavs = self.make_state(), []
        for start in range(0, codes.shape[1], chunk_size):
            wav = self(codes[:, start : start + chunk_size], state)
            mx.eval(wav, state_arrays(state))
            wavs.append(wav)
        return mx.concatenate(wavs, axis=1) if wavs else mx.zeros((codes.shape[0], 0))
