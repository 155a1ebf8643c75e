"""Config parsing shared by every component, and the Qwen3 decoder stack of talker and predictor."""

import dataclasses
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models.base import create_attention_mask
from mlx_lm.models.qwen3 import ModelArgs, TransformerBlock

from ..errors import ModelLoadError


@dataclass
class BaseConfig:
    """A dataclass built from a checkpoint's JSON with `from_dict`.

    Fields without a default are required: a missing one raises `ModelLoadError` naming the file
    and the field. Unknown keys are ignored (checkpoints carry many unused ones).
    """

    @classmethod
    def from_dict(cls, params: dict[str, Any], source: str = "config.json"):
        if not isinstance(params, dict):
            raise ModelLoadError(f"{source}: expected a JSON object, got {type(params).__name__}.")
        cls._validate(params, source)
        fields = dataclasses.fields(cls)
        missing = [
            f.name
            for f in fields
            if f.init
            and f.name not in params
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise ModelLoadError(
                f"{source} lacks required field(s) {', '.join(missing)}; "
                "is this a complete Qwen3-TTS 12 Hz checkpoint?"
            )
        names = {f.name for f in fields if f.init}
        kwargs = {k: v for k, v in params.items() if k in names}
        return cls(**cls._nested(kwargs, source))

    @classmethod
    def _validate(cls, params: dict[str, Any], source: str) -> None:
        """Hook for checks that must come before the required-field check (e.g. model type)."""

    @classmethod
    def _nested(cls, kwargs: dict[str, Any], source: str) -> dict[str, Any]:
        """Hook for configs that hold sub-configs: parse them here."""
        return kwargs

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(kw_only=True)
class Qwen3StackConfig(BaseConfig):
    """What the talker and the code predictor share: a stack of Qwen3 decoder blocks."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    rms_norm_eps: float
    rope_theta: float
    vocab_size: int
    num_code_groups: int
    head_dim: int | None = None  # the reference falls back to hidden/heads
    max_position_embeddings: int = 32768
    hidden_act: str = "silu"
    attention_bias: bool = False
    use_sliding_window: bool = False
    rope_scaling: dict[str, Any] | None = None

    def __post_init__(self):
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads

    def check(self, source: str) -> None:
        """Reject settings the port does not implement instead of running them wrongly."""
        if self.hidden_act != "silu":
            raise ModelLoadError(f"{source}: hidden_act {self.hidden_act!r} is not supported (silu).")
        if self.attention_bias:
            raise ModelLoadError(f"{source}: attention_bias=true is not supported.")
        if self.use_sliding_window:
            raise ModelLoadError(f"{source}: use_sliding_window=true is not supported.")
        rope_type = (self.rope_scaling or {}).get("rope_type", "default")
        if rope_type != "default":
            raise ModelLoadError(f"{source}: rope_scaling type {rope_type!r} is not supported.")


def qwen3_block_args(cfg: Qwen3StackConfig) -> ModelArgs:
    """mlx-lm's Qwen3 block arguments for a talker-like config.

    Talker and code predictor are the same Qwen3 decoder block (q/k RMSNorm, GQA, SwiGLU,
    rotate-half RoPE), so both reuse `mlx_lm.models.qwen3.TransformerBlock`. The talker's
    mrope settings reduce to plain 1-D RoPE because its three position streams are identical
    (dossier §2.2, §6.7), so no rope scaling is passed on.
    """
    return ModelArgs(
        model_type="qwen3",
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        intermediate_size=cfg.intermediate_size,
        num_attention_heads=cfg.num_attention_heads,
        rms_norm_eps=cfg.rms_norm_eps,
        vocab_size=cfg.vocab_size,
        num_key_value_heads=cfg.num_key_value_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        head_dim=cfg.head_dim,
        tie_word_embeddings=False,
        rope_theta=cfg.rope_theta,
    )


class Qwen3Stack(nn.Module):
    """Qwen3 decoder blocks and the final RMSNorm over input embeddings: the `model` of both the
    talker and the code predictor (mlx-lm's `Qwen3Model` without its token embedding)."""

    def __init__(self, config: Qwen3StackConfig):
        super().__init__()
        args = qwen3_block_args(config)
        self.layers = [TransformerBlock(args) for _ in range(config.num_hidden_layers)]
        self.norm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def __call__(self, inputs_embeds: mx.array, cache: list[Any] | None = None, mask: Any = None) -> mx.array:
        """Post-norm hidden states `[B, L, H]`; `cache` holds one KV cache per layer."""
        h = inputs_embeds
        if cache is None:
            cache = [None] * len(self.layers)
        if mask is None:
            mask = create_attention_mask(h, cache[0])
        for layer, c in zip(self.layers, cache):
            h = layer(h, mask, c)
        return self.norm(h)


def conv_weight_to_mlx(key: str, w, expected: tuple[int, ...], transposed: bool = False):
    """A PyTorch conv weight in MLX layout `[out, k, in]`, or `w` itself if already there.

    PyTorch stores Conv1d as `[out, in, k]` and ConvTranspose1d as `[in, out, k]`. The layout is
    told apart by shape against the module's own parameter, which keeps `sanitize` idempotent;
    a shape that fits both layouts (in == k) cannot be told apart and is refused.
    """
    moved = w.transpose(1, 2, 0) if transposed else w.transpose(0, 2, 1)
    fits_mlx, fits_torch = tuple(w.shape) == tuple(expected), tuple(moved.shape) == tuple(expected)
    if fits_mlx and fits_torch:  # in == k: both layouts have this shape
        raise ModelLoadError(f"{key}: shape {tuple(w.shape)} is ambiguous between layouts.")
    if fits_mlx:
        return w
    if fits_torch:
        return moved
    raise ModelLoadError(
        f"{key}: shape {tuple(w.shape)} does not match the model's {tuple(expected)} "
        "in either PyTorch or MLX layout; the checkpoint does not fit its config."
    )
