"""The codec's two transformers, built from one attention (dossier §2.6.1 item 3, §2.6.2 item 2).

* Decoder `pre_transformer`: RMSNorm, SwiGLU, LayerScale, causal sliding-window attention
  (query i sees keys i-window < j <= i), streamed with a window-sized KV cache.
* Encoder `encoder_transformer` (Mimi): LayerNorm, GELU MLP, LayerScale, full causal attention:
  its configured 250-frame window is not applied by the reference's SDPA path (dossier §6.10).

Both use rotate-half RoPE on the full head dimension, no biases and no q/k norms.
"""

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models.base import create_causal_mask


class WindowKVCache:
    """Keys and values of the last `window - 1` positions: all the next query can still see.

    `offset` counts every position ever seen, so RoPE positions continue across steps exactly as
    in a single pass over the whole stream.
    """

    def __init__(self, window: int):
        self.window = window
        self.keys: mx.array | None = None
        self.values: mx.array | None = None
        self.offset = 0

    @property
    def size(self) -> int:
        return 0 if self.keys is None else self.keys.shape[2]

    def update_and_fetch(self, keys: mx.array, values: mx.array) -> tuple[mx.array, mx.array]:
        self.offset += keys.shape[2]
        if self.keys is not None:
            keys = mx.concatenate([self.keys, keys], axis=2)
            values = mx.concatenate([self.values, values], axis=2)
        start = max(keys.shape[2] - (self.window - 1), 0)
        self.keys, self.values = keys[:, :, start:], values[:, :, start:]
        return keys, values

    @property
    def state(self) -> list[mx.array]:
        return [] if self.keys is None else [self.keys, self.values]


class Attention(nn.Module):
    def __init__(self, hidden_size: int, n_heads: int, n_kv_heads: int, head_dim: int,
                 rope_theta: float):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
        self.scale = head_dim**-0.5
        self.q_proj = nn.Linear(hidden_size, n_heads * head_dim, bias=False)
        self.k_proj = nn.Linear(hidden_size, n_kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(hidden_size, n_kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(n_heads * head_dim, hidden_size, bias=False)
        self.rope = nn.RoPE(head_dim, traditional=False, base=rope_theta)

    def __call__(self, x: mx.array, mask, cache: WindowKVCache | None = None) -> mx.array:
        B, L, _ = x.shape
        q = self.q_proj(x).reshape(B, L, self.n_heads, -1).transpose(0, 2, 1, 3)
        k = self.k_proj(x).reshape(B, L, self.n_kv_heads, -1).transpose(0, 2, 1, 3)
        v = self.v_proj(x).reshape(B, L, self.n_kv_heads, -1).transpose(0, 2, 1, 3)
        offset = 0 if cache is None else cache.offset
        q = self.rope(q, offset=offset)
        k = self.rope(k, offset=offset)
        if cache is not None:
            k, v = cache.update_and_fetch(k, v)
        out = mx.fast.scaled_dot_product_attention(q, k, v, scale=self.scale, mask=mask)
        return self.o_proj(out.transpose(0, 2, 1, 3).reshape(B, L, -1))


class LayerScale(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.scale = mx.ones((channels,))

    def __call__(self, x: mx.array) -> mx.array:
        return self.scale * x


class SwiGLU(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def __call__(self, x: mx.array) -> mx.array:
        return self.down_proj(nn.silu(self.gate_proj(x)) * self.up_proj(x))


class GeluMLP(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.fc2 = nn.Linear(intermediate_size, hidden_size, bias=False)

    def __call__(self, x: mx.array) -> mx.array:
        return self.fc2(nn.gelu(self.fc1(x)))  # exact (erf) GELU, as configured


class TransformerLayer(nn.Module):
    """Pre-norm block with LayerScale on both residual branches; norms and MLP are injected."""

    def __init__(self, attn: Attention, mlp: nn.Module, norm1: nn.Module, norm2: nn.Module,
                 hidden_size: int):
        super().__init__()
        self.self_attn = attn
        self.mlp = mlp
        self.input_layernorm = norm1
        self.post_attention_layernorm = norm2
        self.self_attn_layer_scale = LayerScale(hidden_size)
        self.mlp_layer_scale = LayerScale(hidden_size)

    def __call__(self, x: mx.array, mask, cache: WindowKVCache | None = None) -> mx.array:
        x = x + self.self_attn_layer_scale(self.self_attn(self.input_layernorm(x), mask, cache))
        return x + self.mlp_layer_scale(self.mlp(self.post_attention_layernorm(x)))


def decoder_layer(cfg) -> TransformerLayer:
    """A `pre_transformer` layer for a `DecoderConfig`."""
    h = cfg.hidden_size
    attn = Attention(h, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim,
                     cfg.rope_theta)
    return TransformerLayer(attn, SwiGLU(h, cfg.intermediate_size),
                            nn.RMSNorm(h, eps=cfg.rms_norm_eps), nn.RMSNorm(h, eps=cfg.rms_norm_eps), h)


def encoder_layer(cfg) -> TransformerLayer:
    """An `encoder_transformer` layer for an `EncoderConfig`."""
    h = cfg.hidden_size
    attn = Attention(h, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim,
                     cfg.rope_theta)
    return TransformerLayer(attn, GeluMLP(h, cfg.intermediate_size),
                            nn.LayerNorm(h, eps=cfg.norm_eps), nn.LayerNorm(h, eps=cfg.norm_eps), h)


class DecoderTransformer(nn.Module):
    """`decoder.pre_transformer`: input_proj -> sliding-window layers -> norm -> output_proj."""

    def __init__(self, cfg):
        super().__init__()
        self.window = cfg.sliding_window
        self.input_proj = nn.Linear(cfg.latent_dim, cfg.hidden_size)
        self.layers = [decoder_layer(cfg) for _ in range(cfg.num_hidden_layers)]
        self.norm = nn.RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps)
        self.output_proj = nn.Linear(cfg.hidden_size, cfg.latent_dim)

    def make_state(self) -> list[WindowKVCache]:
        return [WindowKVCache(self.window) for _ in self.layers]

    def __call__(self, x: mx.array, cache: list[WindowKVCache] | None = None) -> mx.array:
        h = self.input_proj(x)
        cached = 0 if cache is None else cache[0].size
        # Keys are [cached window, new frames]; the same window mask in one pass or in steps.
        mask = create_causal_mask(h.shape[1], cached, window_size=self.window)
        for i, layer in enumerate(self.layers):
            h = layer(h, mask, None if cache is None else cache[i])
        return self.output_proj(self.norm(h))


class EncoderTransformer(nn.Module):
    """Mimi `encoder_transformer`, full causal attention, positions from 0 (dossier §6.10)."""

    def __init__(self, cfg):
        super().__init__()
        self.layers = [encoder_layer(cfg) for _ in range(cfg.num_hidden_layers)]

    def __call__(self, x: mx.array) -> mx.array:
        for layer in self.layers:
            x = layer(x, "causal")
        return x
