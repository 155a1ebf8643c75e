"""NumPy reference of the talker and code predictor maths (dossier §2.2-§2.3), float64.

Written from the dossier, independently of the MLX modules, and fed PyTorch-layout weights
(`Linear.weight` is `[out, in]`). Used only by tests.
"""

import numpy as np

Weights = dict[str, np.ndarray]


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    y = x @ w.T
    return y if b is None else y + b


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def rope(x: np.ndarray, positions: np.ndarray, theta: float) -> np.ndarray:
    """Rotate-half RoPE over the last axis of `x [heads, L, hd]`."""
    hd = x.shape[-1]
    inv_freq = theta ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
    freqs = positions[:, None] * inv_freq[None]
    cos, sin = np.cos(np.concatenate([freqs, freqs], -1)), np.sin(np.concatenate([freqs, freqs], -1))
    half = hd // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


def attention(x: np.ndarray, w: Weights, p: str, cfg: dict) -> np.ndarray:
    """Qwen3 attention of one sequence `x [L, D]`: q/k RMSNorm per head, RoPE, GQA, causal."""
    L = x.shape[0]
    nh, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps = cfg["rms_norm_eps"]
    q = linear(x, w[f"{p}.q_proj.weight"]).reshape(L, nh, hd).transpose(1, 0, 2)
    k = linear(x, w[f"{p}.k_proj.weight"]).reshape(L, nkv, hd).transpose(1, 0, 2)
    v = linear(x, w[f"{p}.v_proj.weight"]).reshape(L, nkv, hd).transpose(1, 0, 2)
    q, k = rms_norm(q, w[f"{p}.q_norm.weight"], eps), rms_norm(k, w[f"{p}.k_norm.weight"], eps)
    pos = np.arange(L, dtype=np.float64)
    q, k = rope(q, pos, cfg["rope_theta"]), rope(k, pos, cfg["rope_theta"])
    k, v = np.repeat(k, nh // nkv, axis=0), np.repeat(v, nh // nkv, axis=0)
    scores = q @ k.transpose(0, 2, 1) / np.sqrt(hd)
    scores = np.where(np.tril(np.ones((L, L), bool)), scores, -np.inf)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    out = (probs @ v).transpose(1, 0, 2).reshape(L, nh * hd)
    return linear(out, w[f"{p}.o_proj.weight"])


def mlp(x: np.ndarray, w: Weights, p: str) -> np.ndarray:
    gate, up = linear(x, w[f"{p}.gate_proj.weight"]), linear(x, w[f"{p}.up_proj.weight"])
    return linear(silu(gate) * up, w[f"{p}.down_proj.weight"])


def decoder_layer(x: np.ndarray, w: Weights, p: str, cfg: dict) -> np.ndarray:
    eps = cfg["rms_norm_eps"]
    x = x + attention(rms_norm(x, w[f"{p}.input_layernorm.weight"], eps), w, f"{p}.self_attn", cfg)
    return x + mlp(rms_norm(x, w[f"{p}.post_attention_layernorm.weight"], eps), w, f"{p}.mlp")


def decoder(x: np.ndarray, w: Weights, prefix: str, cfg: dict) -> np.ndarray:
    """Layers + final norm: post-norm hidden states `[L, D]`."""
    for layer in range(cfg["num_hidden_layers"]):
        x = decoder_layer(x, w, f"{prefix}.layers.{layer}", cfg)
    return rms_norm(x, w[f"{prefix}.norm.weight"], cfg["rms_norm_eps"])


def text_embed(ids: np.ndarray, w: Weights) -> np.ndarray:
    """T(ids) = text_projection(text_embedding(ids))."""
    e = w["talker.model.text_embedding.weight"][ids]
    h = silu(linear(e, w["talker.text_projection.linear_fc1.weight"],
                    w["talker.text_projection.linear_fc1.bias"]))
    return linear(h, w["talker.text_projection.linear_fc2.weight"],
                  w["talker.text_projection.linear_fc2.bias"])


def talker(x: np.ndarray, w: Weights, cfg: dict) -> tuple[np.ndarray, np.ndarray]:
    """Talker on input embeddings `[L, H]` -> (codec logits `[L, Vc]`, hidden `[L, H]`)."""
    h = decoder(x, w, "talker.model", cfg)
    return linear(h, w["talker.codec_head.weight"]), h


def code_predictor_logits(
    past_hidden: np.ndarray, c0: int, codes: np.ndarray, w: Weights, talker_cfg: dict
) -> np.ndarray:
    """Teacher-forced logits `[15, 2048]` of every code-predictor head for one frame."""
    cfg = talker_cfg["code_predictor_config"]
    p = "talker.code_predictor"
    x = [past_hidden, w["talker.model.codec_embedding.weight"][c0]]
    x += [w[f"{p}.model.codec_embedding.{j}.weight"][codes[j]] for j in range(len(codes) - 1)]
    x = np.stack(x)
    if f"{p}.small_to_mtp_projection.weight" in w:
        x = linear(x, w[f"{p}.small_to_mtp_projection.weight"], w[f"{p}.small_to_mtp_projection.bias"])
    h = decoder(x, w, f"{p}.model", cfg)
    return np.stack([linear(h[j + 1], w[f"{p}.lm_head.{j}.weight"]) for j in range(len(codes))])
