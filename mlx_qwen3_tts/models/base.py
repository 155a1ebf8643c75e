"""Config parsing shared by every component, and the Qwen3 decoder stack of talker and predictor.

`BaseConfig.from_dict` checks every field a config declares against its annotation (`int`,
`float`, `bool`, `str`, `list[int]`, `dict[str, int]`, `dict[str, Any]`, nested configs, each
optionally `| None`) and against the class's `BOUNDS`, before any value is used: a wrong type,
a zero or an absurd size in a checkpoint's JSON is a `ModelLoadError` naming the file and the
field, not a TypeError, ZeroDivisionError or minutes spent building a million layers.
"""

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models.base import create_attention_mask, scaled_dot_product_attention
from mlx_lm.models.qwen3 import ModelArgs, TransformerBlock

from ..audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from ..errors import ModelLoadError

# Upper bounds of sizes and depths: far above every released Qwen3-TTS (widths up to 6144, 28
# layers, 16 heads of 128, 151,936 text tokens, 2048-entry codebooks), low enough that a crafted
# config fails here instead of building a million layers or asking MLX for terabytes.
MAX_WIDTH = 1 << 16
MAX_LAYERS = 256
MAX_HEADS = 1024
MAX_HEAD_DIM = 1024
MAX_VOCAB = 1 << 20
MAX_POSITIONS = 1 << 24
MAX_KERNEL = 1024
MAX_QUANTIZERS = 64
MAX_LIST = 64  # entries of a list field (strides, channels, kernel sizes)
MAX_STRIDE = 64
MAX_NESTING = 16  # levels of a free-form JSON field (rope_scaling, quantization)
FIX = "fix the file or download the checkpoint again"


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric field, or of each entry of a list field."""

    low: float
    high: float
    low_open: bool = False  # e.g. an epsilon must be > 0

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        return above and value <= self.high

    def __str__(self) -> str:
        return f"{'(' if self.low_open else '['}{_number(self.low)}, {_number(self.high)}]"


def _show(value: Any) -> str:
    """A short, never-failing description of a JSON value for a message."""
    if isinstance(value, (dict, list)):
        kind, n = "JSON object" if isinstance(value, dict) else "list", len(value)
        return f"a {kind} of {n} entr{'y' if n == 1 else 'ies'}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**18:
        return "an integer of 19 digits or more"  # no str() past 4300 digits
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _nesting(value: Any, limit: int) -> int:
    """Levels of lists / objects around the deepest value, counted without recursion; stops
    counting past `limit`."""
    depth, level = 0, [value]
    while depth <= limit:
        containers = [v for v in level if isinstance(v, (dict, list))]
        if not containers:
            return depth
        depth += 1
        level = [c for v in containers for c in (v.values() if isinstance(v, dict) else v)]
    return depth


SCALARS: dict[type, tuple[str, typing.Callable[[Any], bool]]] = {
    bool: ("true or false", lambda v: isinstance(v, bool)),
    int: ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    # JSON writes 1000000.0 as 1000000: ints are floats too. NaN and Infinity are not.
    float: ("a finite number", lambda v: not isinstance(v, bool) and (
        isinstance(v, int) or isinstance(v, float) and math.isfinite(v))),
    str: ("a string", lambda v: isinstance(v, str)),
}


def _type_error(source: str, name: str, expected: str, value: Any) -> ModelLoadError:
    return ModelLoadError(f"{source}: `{name}` must be {expected}, got {_show(value)}; {FIX}.")


def check_value(value: Any, hint: Any, source: str, name: str) -> None:
    """Raise `ModelLoadError` unless the JSON `value` fits the field annotation `hint`."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # `X | None`
        if value is None and type(None) in args:
            return
        hint = next(a for a in args if a is not type(None))
        args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if hint is Any:
        if _nesting(value, MAX_NESTING) > MAX_NESTING:
            raise ModelLoadError(f"{source}: `{name}` is nested more than {MAX_NESTING} levels deep; {FIX}.")
    elif hint in SCALARS:
        expected, fits = SCALARS[hint]
        if not fits(value):
            raise _type_error(source, name, expected, value)
    elif origin is list:
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_LIST:
            raise _type_error(source, name, f"a list of 1 to {MAX_LIST} entries", value)
        for i, item in enumerate(value):
            check_value(item, args[0], source, f"{name}[{i}]")
    elif origin is dict:
        if not isinstance(value, dict):
            raise _type_error(source, name, "a JSON object", value)
        for key, item in value.items():
            check_value(item, args[1], source, f"{name}[{key!r}]")
    elif isinstance(hint, type) and issubclass(hint, BaseConfig):
        if not isinstance(value, dict):  # parsed by the owner's `_nested`, with its own source
            raise _type_error(source, name, "a JSON object", value)
    else:  # a field type this function does not know: a programming error, not a bad file
        raise TypeError(f"{name}: unsupported config annotation {hint!r}")


def check_range(value: Any, bound: Range, source: str, name: str, derived: bool = False) -> None:
    """Raise `ModelLoadError` unless `value` (each entry of a list) lies in `bound`."""
    for i, item in enumerate(value) if isinstance(value, list) else [(None, value)]:
        if item not in bound:
            where = name if i is None else f"{name}[{i}]"
            origin = " (derived from the other fields)" if derived else ""
            raise ModelLoadError(f"{source}: `{where}` is {_show(item)}{origin}, outside {bound}; {FIX}.")


def check_id(value: int, size: int, source: str, name: str, table: str) -> None:
    """Raise `ModelLoadError` unless the token id `value` indexes a `size`-row embedding."""
    if not 0 <= value < size:
        raise ModelLoadError(
            f"{source}: `{name}` is {_show(value)}, outside the {table} [0, {size}); {FIX}."
        )


@dataclass
class BaseConfig:
    """A dataclass built from a checkpoint's JSON with `from_dict`.

    Fields without a default are required: a missing one raises `ModelLoadError` naming the file
    and the field. Unknown keys are ignored (checkpoints carry many unused ones). Every known
    field is checked against its annotation and `BOUNDS` before the dataclass is built, and
    derived fields and relations between fields by `_check` after.
    """

    BOUNDS: ClassVar[dict[str, Range]] = {}

    @classmethod
    def from_dict(cls, params: dict[str, Any], source: str = "config.json"):
        if not isinstance(params, dict):
            raise ModelLoadError(f"{source}: expected a JSON object, got {_show(params)}; {FIX}.")
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
        cls._check_fields(kwargs, source)
        config = cls(**cls._nested(kwargs, source))
        config._check_derived({k for k, v in kwargs.items() if v is not None}, source)
        config._check(source)
        return config

    @classmethod
    def _check_fields(cls, kwargs: dict[str, Any], source: str) -> None:
        hints = typing.get_type_hints(cls)
        for name, value in kwargs.items():
            check_value(value, hints[name], source, name)
            if name in cls.BOUNDS and value is not None:
                check_range(value, cls.BOUNDS[name], source, name)

    def _check_derived(self, given: set[str], source: str) -> None:
        """Bounds of the fields `__post_init__` filled in (e.g. head_dim = hidden / heads)."""
        for name, bound in self.BOUNDS.items():
            value = getattr(self, name, None)
            if name not in given and value is not None:
                check_range(value, bound, source, name, derived=True)

    @classmethod
    def _validate(cls, params: dict[str, Any], source: str) -> None:
        """Hook for checks that must come before the required-field check (e.g. model type)."""

    @classmethod
    def _nested(cls, kwargs: dict[str, Any], source: str) -> dict[str, Any]:
        """Hook for configs that hold sub-configs: parse them here."""
        return kwargs

    def _check(self, source: str) -> None:
        """Hook for relations between fields, checked once the config is built."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_heads(config: Any, source: str) -> None:
    """Grouped-query attention needs whole groups: heads a multiple of key/value heads."""
    if config.num_attention_heads % config.num_key_value_heads:
        raise ModelLoadError(
            f"{source}: `num_attention_heads` {config.num_attention_heads} is not a multiple of "
            f"`num_key_value_heads` {config.num_key_value_heads}; {FIX}."
        )


# Sample rates a config may name: those reference audio may have (`audio.py`).
SAMPLE_RATES = Range(MIN_SAMPLE_RATE, MAX_SAMPLE_RATE)

# What a Qwen3 stack (talker, code predictor) and the codec's transformers share.
TRANSFORMER_BOUNDS = {
    "hidden_size": Range(1, MAX_WIDTH),
    "intermediate_size": Range(1, MAX_WIDTH),
    "num_hidden_layers": Range(1, MAX_LAYERS),
    "num_attention_heads": Range(1, MAX_HEADS),
    "num_key_value_heads": Range(1, MAX_HEADS),
    "head_dim": Range(1, MAX_HEAD_DIM),
    "rope_theta": Range(0, 1e12, low_open=True),
    "rms_norm_eps": Range(0, 1, low_open=True),
    "max_position_embeddings": Range(1, MAX_POSITIONS),
    "vocab_size": Range(1, MAX_VOCAB),
}


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

    BOUNDS: ClassVar[dict[str, Range]] = {**TRANSFORMER_BOUNDS, "num_code_groups": Range(1, MAX_QUANTIZERS)}

    def __post_init__(self):
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads

    def _check(self, source: str) -> None:
        check_heads(self, source)

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

    rope_rows = False  # `decode`'s RoPE: each block's `mx.fast.rope`, or `rope_rows` once per step

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

    def decode(self, inputs_embeds: mx.array, cache: list[Any]) -> mx.array:
        """`__call__` for the new positions of a cached step (`[B, L, H]`, L = 1 in a frame's
        talker step), with each block's two halves compiled.

        A block is mlx-lm's `TransformerBlock` taken apart at its KV cache: the cache grows every
        step and would retrace a compiled whole, so the cache update and the attention run as
        they are, and the rest of the block (norms, projections, RoPE at the cache's offset given
        as an array, MLP, residuals) runs compiled, once traced per input shape. The weights are
        the compiled functions' inputs, not constants (`load_weights` takes effect). On a GPU this
        cuts the Python a step builds; on the CPU it also fuses the elementwise ops.

        With `rope_rows` set (the CPU policy, `use_rope_rows`) the step computes RoPE's cos and
        sin once for all its blocks instead of each block's `mx.fast.rope` computing them twice:
        on the CPU that is not a kernel but 29 MLX primitives.
        """
        halves = self.__dict__.get("_compiled_halves")  # plain attribute: no parameter
        if halves is None:
            halves = [(mx.compile(partial(_attention_inputs, layer), inputs=layer),
                       mx.compile(partial(_block_output, layer), inputs=layer)) for layer in self.layers]
            self.__dict__["_compiled_halves"] = halves
        h = inputs_embeds
        # Every layer's cache is at the same position: one mask and one offset, as mlx-lm does.
        mask = create_attention_mask(h, cache[0])
        # An int offset (KVCache) would be a constant of the trace: as an array it is an input.
        offset = cache[0].offset
        offset = offset if isinstance(offset, mx.array) else mx.array(offset)
        factors = rope_factors(self.layers[0].self_attn.rope, offset, h.shape[1]) if self.rope_rows else ()
        for layer, c, (qkv, output) in zip(self.layers, cache, halves):
            q, k, v = qkv(h, offset, *factors)
            # As mlx_lm.models.qwen3.Attention does it between its RoPE and o_proj.
            k, v = c.update_and_fetch(k, v)
            scale = layer.self_attn.scale
            h = output(h, scaled_dot_product_attention(q, k, v, cache=c, scale=scale, mask=mask))
        return self.norm(h)


def use_rope_rows(model: nn.Module) -> int:
    """Make every `Qwen3Stack` of `model` compute RoPE's cos and sin once per `decode` step
    (`rope_rows`), in place: the CPU's choice. Returns how many changed."""
    stacks = [m for _, m in model.named_modules() if isinstance(m, Qwen3Stack) and _rotates_whole_heads(m)]
    for stack in stacks:
        stack.rope_rows = True
    return len(stacks)


def _rotates_whole_heads(stack: Qwen3Stack) -> bool:
    """Whether `stack`'s RoPE is what `rotate` computes: rotate-half over the whole head (as in
    every Qwen3 block; anything else keeps `mx.fast.rope`)."""
    attn = stack.layers[0].self_attn
    rope = attn.rope
    head_dim = attn.q_proj.weight.shape[0] // attn.n_heads
    return type(rope) is nn.RoPE and not rope.traditional and rope.dims == head_dim


def rope_factors(rope: nn.RoPE, offset: mx.array, length: int) -> tuple[mx.array, mx.array]:
    """RoPE's factors at positions `offset .. offset + length - 1` for `rotate`: `[cos, cos]` and
    `[-sin, sin]` stacked on a new axis, `[L, 2, dims / 2]`, or `[B, 1, L, 2, dims / 2]` for one
    offset per row (`[B]`). cos and sin are computed as `mx.fast.rope` computes them on the CPU
    (same ops, same order): bit for bit the same values."""
    half = rope.dims // 2
    inv_freqs = mx.exp(mx.arange(0, -half, -1, dtype=mx.float32) * (math.log(rope.base) / half))
    positions = mx.arange(length, dtype=mx.float32)
    if offset.ndim:  # one per row: [B, 1, L] broadcasts over the heads
        positions = positions + offset.astype(mx.float32)[:, None, None]
    else:
        positions = positions + offset.astype(mx.float32)
    theta = (positions * rope.scale)[..., None] * inv_freqs
    cos, sin = mx.cos(theta), mx.sin(theta)
    return mx.stack([cos, cos], axis=-2), mx.stack([-sin, sin], axis=-2)


def rotate(x: mx.array, cos: mx.array, sin: mx.array) -> mx.array:
    """Rotate-half RoPE of `x` `[B, heads, L, D]` by `rope_factors`, in `x`'s dtype as
    `mx.fast.rope` (D = dims, as in every Qwen3 block).

    `x1 * cos - x2 * sin, x2 * cos + x1 * sin` as one elementwise expression over `x` viewed as
    `[..., 2, D / 2]` and that view with its halves swapped: no concatenation, the same values
    (negating sin is exact, and a - b is a + (-b) in IEEE arithmetic).
    """
    halves = x.reshape(*x.shape[:-1], 2, x.shape[-1] // 2)
    cos, sin = cos.astype(x.dtype), sin.astype(x.dtype)
    return (halves * cos + halves[..., ::-1, :] * sin).reshape(x.shape)


def _attention_inputs(layer: TransformerBlock, x: mx.array, offset: mx.array,
                      *factors: mx.array) -> tuple[mx.array, mx.array, mx.array]:
    """A block's queries and keys (rotated to `offset`, by `rope_factors` if given) and values,
    `[B, heads, L, head_dim]`."""
    attn = layer.self_attn
    B, L, _ = x.shape
    n = layer.input_layernorm(x)
    q = attn.q_norm(attn.q_proj(n).reshape(B, L, attn.n_heads, -1)).transpose(0, 2, 1, 3)
    k = attn.k_norm(attn.k_proj(n).reshape(B, L, attn.n_kv_heads, -1)).transpose(0, 2, 1, 3)
    v = attn.v_proj(n).reshape(B, L, attn.n_kv_heads, -1).transpose(0, 2, 1, 3)
    if factors:
        return rotate(q, *factors), rotate(k, *factors), v
    return attn.rope(q, offset=offset), attn.rope(k, offset=offset), v


def _block_output(layer: TransformerBlock, x: mx.array, attended: mx.array) -> mx.array:
    """A block's output from its input `x` and the attention's output `[B, heads, L, head_dim]`."""
    B, _, L, _ = attended.shape
    h = x + layer.self_attn.o_proj(attended.transpose(0, 2, 1, 3).reshape(B, L, -1))
    return h + layer.mlp(layer.post_attention_layernorm(h))


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
