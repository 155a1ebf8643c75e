"""NumPy reference of the speaker encoder and its log-mel front-end (dossier §2.5), for tests.

Written for reading, not speed: float64, one utterance at a time, PyTorch layouts (activations
`[C, T]`, conv weights `[out, in, k]`), weight keys relative to `speaker_encoder.`.
"""

from collections.abc import Sequence

import numpy as np

Weights = dict[str, np.ndarray]


def log_mel(audio: np.ndarray, filters: np.ndarray, n_fft: int = 1024, hop: int = 256) -> np.ndarray:
    """Log-mel features `[frames, n_mels]` of a 1-D waveform, given the `[n_mels, n_fft//2+1]` bank."""
    pad = (n_fft - hop) // 2
    y = np.pad(np.asarray(audio, np.float64), pad, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(y, n_fft)[::hop]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    spec = np.fft.rfft(frames * window, axis=-1)
    magnitude = np.sqrt(spec.real**2 + spec.imag**2 + 1e-9)
    return np.log(np.maximum(magnitude @ np.asarray(filters, np.float64).T, 1e-5))


def conv1d(x: np.ndarray, w: np.ndarray, b: np.ndarray, dilation: int = 1) -> np.ndarray:
    """PyTorch `Conv1d(padding="same", padding_mode="reflect")` of `x [C_in, T]`."""
    T, k = x.shape[1], w.shape[2]
    total = dilation * (k - 1)
    xp = np.pad(x, ((0, 0), (total // 2, total - total // 2)), mode="reflect")
    out = sum(w[:, :, j] @ xp[:, j * dilation : j * dilation + T] for j in range(k))
    return out + b[:, None]


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def tdnn(p: Weights, name: str, x: np.ndarray, dilation: int = 1) -> np.ndarray:
    return relu(conv1d(x, p[f"{name}.conv.weight"], p[f"{name}.conv.bias"], dilation))


def se_res2net_block(p: Weights, name: str, x: np.ndarray, dilation: int, scale: int) -> np.ndarray:
    h = tdnn(p, f"{name}.tdnn1", x)
    parts = np.split(h, scale, axis=0)
    outputs = [parts[0]]
    for i in range(1, scale):
        inp = parts[i] if i == 1 else parts[i] + outputs[-1]
        outputs.append(tdnn(p, f"{name}.res2net_block.blocks.{i - 1}", inp, dilation))
    h = tdnn(p, f"{name}.tdnn2", np.concatenate(outputs, axis=0))
    s = h.mean(axis=1, keepdims=True)
    s = relu(conv1d(s, p[f"{name}.se_block.conv1.weight"], p[f"{name}.se_block.conv1.bias"]))
    gate = sigmoid(conv1d(s, p[f"{name}.se_block.conv2.weight"], p[f"{name}.se_block.conv2.bias"]))
    return h * gate + x


def weighted_stats(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std `[C]` over time of `x [C, T]` under weights `w` summing to 1 over time."""
    mean = (w * x).sum(axis=1)
    var = (w * (x - mean[:, None]) ** 2).sum(axis=1)
    return mean, np.sqrt(np.maximum(var, 1e-12))


def attentive_statistics_pooling(p: Weights, x: np.ndarray) -> np.ndarray:
    """`[C, T]` -> `[2C]`."""
    C, T = x.shape
    mean, std = weighted_stats(x, np.full((1, T), 1.0 / T))
    context = np.concatenate([x, np.repeat(mean[:, None], T, 1), np.repeat(std[:, None], T, 1)])
    a = conv1d(np.tanh(tdnn(p, "asp.tdnn", context)), p["asp.conv.weight"], p["asp.conv.bias"])
    mean, std = weighted_stats(x, softmax(a, axis=1))
    return np.concatenate([mean, std])


def speaker_embedding(
    weights: Weights, mels: np.ndarray, dilations: Sequence[int] = (1, 2, 3, 4, 1), scale: int = 8
) -> np.ndarray:
    """The x-vector `[enc_dim]` of log-mels `[T, mel_dim]`."""
    p = {k: np.asarray(v, np.float64) for k, v in weights.items()}
    n_blocks = 1 + max(int(k.split(".")[1]) for k in p if k.startswith("blocks."))
    h = tdnn(p, "blocks.0", np.asarray(mels, np.float64).T, dilations[0])
    hidden = []
    for b in range(1, n_blocks):
        h = se_res2net_block(p, f"blocks.{b}", h, dilations[b], scale)
        hidden.append(h)
    h = tdnn(p, "mfa", np.concatenate(hidden), dilations[-1])
    pooled = attentive_statistics_pooling(p, h)
    return conv1d(pooled[:, None], p["fc.weight"], p["fc.bias"])[:, 0]
