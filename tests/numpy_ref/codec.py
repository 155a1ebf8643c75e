"""NumPy reference of the codec decoder's building blocks (dossier §2.6.1), float64.

Written from the dossier, independently of the MLX modules, channels-last (`[L, C]`, one
sequence), and fed the checkpoint's PyTorch-layout weights: Conv1d `[out, in / groups, k]`,
ConvTranspose1d `[in, out, k]`, Linear `[out, in]`. Used only by tests.
"""

import numpy as np

from .transformer import linear, rms_norm, rope, silu

Weights = dict[str, np.ndarray]


def codebook_table(embedding_sum: np.ndarray, cluster_usage: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """The EMA codebook's vectors: `embedding_sum / clamp(cluster_usage, eps)`."""
    return embedding_sum / np.maximum(cluster_usage, eps)[:, None]


def rvq_dequantize(codes: np.ndarray, tables: list[np.ndarray], output_proj: np.ndarray) -> np.ndarray:
    """One quantizer group: sum of looked-up vectors `[T, D]`, then the 1x1 `output_proj`."""
    summed = sum(table[codes[:, k]] for k, table in enumerate(tables))
    return summed @ output_proj[:, :, 0].T


def snake_beta(x: np.ndarray, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """SnakeBeta with log-space parameters: `x + 1/(e^beta + 1e-9) sin^2(e^alpha x)`."""
    return x + 1.0 / (np.exp(beta) + 1e-9) * np.sin(np.exp(alpha) * x) ** 2


def causal_conv1d(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    stride: int = 1,
    dilation: int = 1,
    groups: int = 1,
    pad_mode: str = "constant",
) -> np.ndarray:
    """Causal conv: left pad `k_eff - stride`, right pad to a multiple of the stride."""
    c_out, c_in_g, k = w.shape
    k_eff = (k - 1) * dilation + 1
    xp = np.pad(x, ((k_eff - stride, -x.shape[0] % stride), (0, 0)), mode=pad_mode)
    n_out = (xp.shape[0] - k_eff) // stride + 1
    taps = np.arange(n_out)[:, None] * stride + np.arange(k)[None] * dilation
    patches = xp[taps]  # [n_out, k, C_in]
    c_out_g = c_out // groups
    y = np.concatenate([
        np.einsum("tkc,ock->to", patches[..., g * c_in_g:(g + 1) * c_in_g],
                  w[g * c_out_g:(g + 1) * c_out_g])
        for g in range(groups)
    ], axis=-1)
    return y if b is None else y + b


def causal_conv_transpose1d(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int) -> np.ndarray:
    """Transposed conv by scattering each input frame, minus the last `k - stride` samples."""
    L, k = x.shape[0], w.shape[2]
    y = np.zeros(((L - 1) * stride + k, w.shape[1]))
    for j in range(k):
        y[j : j + (L - 1) * stride + 1 : stride] += x @ w[:, :, j]
    return y[: L * stride] + b


def window_mask(L: int, window: int) -> np.ndarray:
    """Causal sliding window: query i sees keys j with i - window < j <= i."""
    i, j = np.arange(L)[:, None], np.arange(L)[None]
    return (j <= i) & (j > i - window)


def windowed_attention(x: np.ndarray, w: Weights, p: str, cfg: dict, positions: np.ndarray) -> np.ndarray:
    """The decoder transformer's attention: no q/k norm, rotate-half RoPE, sliding window."""
    L = x.shape[0]
    nh, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    q = linear(x, w[f"{p}.q_proj.weight"]).reshape(L, nh, hd).transpose(1, 0, 2)
    k = linear(x, w[f"{p}.k_proj.weight"]).reshape(L, nkv, hd).transpose(1, 0, 2)
    v = linear(x, w[f"{p}.v_proj.weight"]).reshape(L, nkv, hd).transpose(1, 0, 2)
    q, k = rope(q, positions, cfg["rope_theta"]), rope(k, positions, cfg["rope_theta"])
    k, v = np.repeat(k, nh // nkv, axis=0), np.repeat(v, nh // nkv, axis=0)
    scores = q @ k.transpose(0, 2, 1) / np.sqrt(hd)
    scores = np.where(window_mask(L, cfg["sliding_window"]), scores, -np.inf)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    return linear((probs @ v).transpose(1, 0, 2).reshape(L, nh * hd), w[f"{p}.o_proj.weight"])


def windowed_transformer_layer(
    x: np.ndarray, w: Weights, p: str, cfg: dict, positions: np.ndarray | None = None
) -> np.ndarray:
    """One `pre_transformer` layer `[L, D] -> [L, D]`: pre-RMSNorm, LayerScale, SwiGLU."""
    eps = cfg["rms_norm_eps"]
    positions = np.arange(x.shape[0], dtype=np.float64) if positions is None else positions
    h = windowed_attention(rms_norm(x, w[f"{p}.input_layernorm.weight"], eps), w, f"{p}.self_attn",
                           cfg, positions)
    x = x + w[f"{p}.self_attn_layer_scale.scale"] * h
    h = rms_norm(x, w[f"{p}.post_attention_layernorm.weight"], eps)
    gate, up = linear(h, w[f"{p}.mlp.gate_proj.weight"]), linear(h, w[f"{p}.mlp.up_proj.weight"])
    return x + w[f"{p}.mlp_layer_scale.scale"] * linear(silu(gate) * up, w[f"{p}.mlp.down_proj.weight"])
