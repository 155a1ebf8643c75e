"""The speaker encoder: x-vectors of reference audio for Base voice cloning (dossier §2.5).

An ECAPA-TDNN: TDNN, three SE-Res2Net blocks, multi-layer feature aggregation, attentive
statistics pooling and a 1x1 conv to the talker width. Its log-mel front-end is the reference's
`mel_spectrogram` with the call-site settings of `extract_speaker_embedding`. Channels-last
(`[B, T, C]`) throughout; conv weights are stored `[out, k, in]`.
"""

import math
from dataclasses import dataclass, field
from typing import ClassVar

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from ..audio import check_reference_audio
from ..errors import AudioError, ModelLoadError
from .base import FIX, MAX_HEADS, MAX_KERNEL, MAX_WIDTH, SAMPLE_RATES, BaseConfig, Range, conv_weight_to_mlx

# Literals of the reference's `extract_speaker_embedding`; they are not in any config file.
N_FFT = 1024
HOP_LENGTH = 256
WIN_LENGTH = 1024
FMIN = 0.0
FMAX = 12000.0
MAG_EPS = 1e-9
LOG_FLOOR = 1e-5
STATS_EPS = 1e-12


@dataclass
class SpeakerEncoderConfig(BaseConfig):
    # The released config.json carries only enc_dim and sample_rate; the rest are class defaults.
    enc_dim: int
    mel_dim: int = 128
    enc_channels: list[int] = field(default_factory=lambda: [512, 512, 512, 512, 1536])
    enc_kernel_sizes: list[int] = field(default_factory=lambda: [5, 3, 3, 3, 1])
    enc_dilations: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 1])
    enc_attention_channels: int = 128
    enc_res2net_scale: int = 8
    enc_se_channels: int = 128
    sample_rate: int = 24000

    BOUNDS: ClassVar[dict[str, Range]] = {
        "enc_dim": Range(1, MAX_WIDTH),
        "mel_dim": Range(1, 1024),  # the filterbank is built eagerly, [mel_dim, 513]
        "enc_channels": Range(1, MAX_WIDTH),
        "enc_kernel_sizes": Range(1, MAX_KERNEL),
        "enc_dilations": Range(1, MAX_KERNEL),
        "enc_attention_channels": Range(1, MAX_WIDTH),
        "enc_res2net_scale": Range(1, MAX_HEADS),
        "enc_se_channels": Range(1, MAX_WIDTH),
        "sample_rate": SAMPLE_RATES,
    }

    def _check(self, source: str) -> None:
        ch, scale = self.enc_channels, self.enc_res2net_scale
        if not len(self.enc_kernel_sizes) == len(self.enc_dilations) == len(ch):
            raise ModelLoadError(
                f"{source}: `enc_channels`, `enc_kernel_sizes` and `enc_dilations` must have the same "
                f"length; {FIX}."
            )
        # One TDNN, at least one SE-Res2Net block, and the aggregation over the blocks' outputs.
        if len(ch) < 3 or sum(ch[1:-1]) != ch[-1]:
            raise ModelLoadError(
                f"{source}: `enc_channels` {ch} must have 3 or more entries, the last the sum of "
                f"those between the first and the last; {FIX}."
            )
        if any(c % scale for c in ch[1:-1]):
            raise ModelLoadError(
                f"{source}: `enc_res2net_scale` {scale} must divide the block widths {ch[1:-1]}; {FIX}."
            )


# --------------------------------------------------------------------------- mel front-end


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above (librosa, htk=False)."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, math.log(6.4) / 27.0
    mel = hz / f_sp
    log_part = min_log_hz / f_sp + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep
    return np.where(hz >= min_log_hz, log_part, mel)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    log_part = min_log_hz * np.exp(logstep * (np.maximum(mel, min_log_mel) - min_log_mel))
    return np.where(mel >= min_log_mel, log_part, f_sp * mel)


def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """`librosa.filters.mel` with its defaults (Slaney scale and area norm): `[n_mels, n_fft//2+1]`."""
    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    return weights.astype(np.float32)


def hann_window(n: int) -> np.ndarray:
    """Periodic Hann window, as `torch.hann_window(n)`."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)


def reflect_pad(x: mx.array, left: int, right: int) -> mx.array:
    """Reflect-pad axis 1 without repeating the edge sample (PyTorch `mode="reflect"`).

    Callers guarantee `left, right < x.shape[1]`, as PyTorch requires.
    """
    T = x.shape[1]
    parts = [x[:, 1 : left + 1][:, ::-1]] if left else []
    parts.append(x)
    if right:
        parts.append(x[:, T - 1 - right : T - 1][:, ::-1])
    return mx.concatenate(parts, axis=1) if len(parts) > 1 else x


def min_audio_samples(frames: int = 1) -> int:
    """Fewest samples that give `frames` STFT frames and that PyTorch can reflect-pad."""
    pad = (N_FFT - HOP_LENGTH) // 2
    return max(pad + 1, N_FFT - 2 * pad + HOP_LENGTH * (frames - 1))


# --------------------------------------------------------------------------- modules


class ReflectConv1d(nn.Conv1d):
    """PyTorch's `Conv1d(..., padding="same", padding_mode="reflect")`.

    PyTorch splits an odd total padding with the extra sample on the right.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation)
        total = dilation * (kernel_size - 1)
        self.pad_left = total // 2
        self.pad_right = total - total // 2

    def __call__(self, x: mx.array) -> mx.array:
        return super().__call__(reflect_pad(x, self.pad_left, self.pad_right))


class TimeDelayNetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int):
        super().__init__()
        self.conv = ReflectConv1d(in_channels, out_channels, kernel_size, dilation)

    def __call__(self, x: mx.array) -> mx.array:
        return nn.relu(self.conv(x))


class Res2NetBlock(nn.Module):
    """Channel groups y0 = x0, y1 = B0(x1), yi = B(i-1)(xi + y(i-1)), concatenated."""

    def __init__(self, channels: int, scale: int, kernel_size: int, dilation: int):
        super().__init__()
        width = channels // scale
        self.blocks = [
            TimeDelayNetBlock(width, width, kernel_size, dilation) for _ in range(scale - 1)
        ]

    def __call__(self, x: mx.array) -> mx.array:
        parts = mx.split(x, len(self.blocks) + 1, axis=-1)
        outputs = [parts[0]]
        for i, (block, part) in enumerate(zip(self.blocks, parts[1:])):
            outputs.append(block(part if i == 0 else part + outputs[-1]))
        return mx.concatenate(outputs, axis=-1)


class SqueezeExcitationBlock(nn.Module):
    def __init__(self, channels: int, se_channels: int):
        super().__init__()
        self.conv1 = ReflectConv1d(channels, se_channels, 1)
        self.conv2 = ReflectConv1d(se_channels, channels, 1)

    def __call__(self, x: mx.array) -> mx.array:
        s = x.mean(axis=1, keepdims=True)
        return x * mx.sigmoid(self.conv2(nn.relu(self.conv1(s))))


class SqueezeExcitationRes2NetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, scale: int, se_channels: int,
                 kernel_size: int, dilation: int):
        super().__init__()
        self.tdnn1 = TimeDelayNetBlock(in_channels, out_channels, 1, 1)
        self.res2net_block = Res2NetBlock(out_channels, scale, kernel_size, dilation)
        self.tdnn2 = TimeDelayNetBlock(out_channels, out_channels, 1, 1)
        self.se_block = SqueezeExcitationBlock(out_channels, se_channels)

    def __call__(self, x: mx.array) -> mx.array:
        h = self.tdnn2(self.res2net_block(self.tdnn1(x)))
        return self.se_block(h) + x


def _weighted_stats(x: mx.array, w: mx.array | float) -> tuple[mx.array, mx.array]:
    """Mean and std over time under weights `w` that sum to 1 over axis 1: `[B, C]` each."""
    mean = (w * x).sum(axis=1)
    var = (w * (x - mean[:, None]) ** 2).sum(axis=1)
    return mean, mx.sqrt(mx.maximum(var, STATS_EPS))


class AttentiveStatisticsPooling(nn.Module):
    def __init__(self, channels: int, attention_channels: int):
        super().__init__()
        self.tdnn = TimeDelayNetBlock(channels * 3, attention_channels, 1, 1)
        self.conv = ReflectConv1d(attention_channels, channels, 1)

    def __call__(self, x: mx.array) -> mx.array:
        """`[B, T, C]` -> `[B, 2C]`: attention-weighted mean and std."""
        B, T, C = x.shape
        # The reference's length mask is all ones (dossier §6.20), so the context is unweighted.
        mean, std = _weighted_stats(x, 1.0 / T)
        context = [mx.broadcast_to(s[:, None], (B, T, C)) for s in (mean, std)]
        a = self.conv(mx.tanh(self.tdnn(mx.concatenate([x, *context], axis=-1))))
        mean, std = _weighted_stats(x, mx.softmax(a, axis=1, precise=True))
        return mx.concatenate([mean, std], axis=-1)


class SpeakerEncoder(nn.Module):
    def __init__(self, config: SpeakerEncoderConfig):
        super().__init__()
        self.config = config
        ch, ks, dil = config.enc_channels, config.enc_kernel_sizes, config.enc_dilations
        self.blocks = [TimeDelayNetBlock(config.mel_dim, ch[0], ks[0], dil[0])]
        self.blocks += [
            SqueezeExcitationRes2NetBlock(ch[i - 1], ch[i], config.enc_res2net_scale,
                                          config.enc_se_channels, ks[i], dil[i])
            for i in range(1, len(ch) - 1)
        ]
        self.mfa = TimeDelayNetBlock(ch[-1], ch[-1], ks[-1], dil[-1])
        self.asp = AttentiveStatisticsPooling(ch[-1], config.enc_attention_channels)
        self.fc = ReflectConv1d(ch[-1] * 2, config.enc_dim, 1)
        # Underscored, so not parameters: fixed front-end tensors, built once and kept fp32.
        filters = mel_filterbank(config.sample_rate, N_FFT, config.mel_dim, FMIN, FMAX)
        self._mel_filters = mx.array(filters.T)
        self._window = mx.array(hann_window(WIN_LENGTH))
        # Reflect padding must be shorter than its input, in PyTorch as here.
        convs = [m for _, m in self.named_modules() if isinstance(m, ReflectConv1d)]
        self.min_frames = 1 + max(m.pad_right for m in convs)

    def __call__(self, mels: mx.array) -> mx.array:
        """x-vectors `[B, enc_dim]` of log-mels `[B, T, mel_dim]`."""
        if mels.shape[1] < self.min_frames:
            raise AudioError(
                f"the speaker encoder needs at least {self.min_frames} mel frames, got {mels.shape[1]}."
            )
        h = mels
        hidden = []
        for block in self.blocks:
            h = block(h)
            hidden.append(h)
        h = self.mfa(mx.concatenate(hidden[1:], axis=-1))
        return self.fc(self.asp(h)[:, None])[:, 0]

    def mel_spectrogram(self, audio: mx.array) -> mx.array:
        """Log-mel features `[B, frames, mel_dim]` (fp32) of 24 kHz audio `[B, N]` or `[N]`."""
        x = (audio if audio.ndim == 2 else audio[None]).astype(mx.float32)
        if x.shape[1] < min_audio_samples():
            raise AudioError(f"audio of {x.shape[1]} samples is shorter than one STFT frame.")
        pad = (N_FFT - HOP_LENGTH) // 2
        x = reflect_pad(x, pad, pad)
        n_frames = 1 + (x.shape[1] - N_FFT) // HOP_LENGTH
        idx = mx.arange(n_frames)[:, None] * HOP_LENGTH + mx.arange(N_FFT)[None]
        spec = mx.fft.rfft(x[:, idx] * self._window, axis=-1)
        mag = mx.sqrt(spec.real**2 + spec.imag**2 + MAG_EPS)
        return mx.log(mx.maximum(mag @ self._mel_filters, LOG_FLOOR))

    def embed(self, audio: np.ndarray) -> mx.array:
        """The x-vector `[enc_dim]` of one mono 24 kHz float waveform (reference: one at a time)."""
        # User-facing checks (shape, dtype, length in seconds) are the audio module's.
        audio = check_reference_audio(audio, self.config.sample_rate, min_audio_samples(self.min_frames))
        mels = self.mel_spectrogram(mx.array(audio))
        # The reference casts the fp32 mels to the model dtype before the encoder.
        return self(mels.astype(self.fc.weight.dtype))[0]

    def sanitize(self, weights: dict[str, mx.array]) -> dict[str, mx.array]:
        """PyTorch conv weights to MLX layout; keys are relative to `speaker_encoder.`."""
        shapes = {k: v.shape for k, v in tree_flatten(self.parameters())}
        return {
            k: conv_weight_to_mlx(k, w, shapes[k]) if k in shapes and w.ndim == 3 else w
            for k, w in weights.items()
        }

