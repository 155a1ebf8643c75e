"""Causal convolutions, SnakeBeta and the streaming buffers of the 12 Hz codec (dossier §2.6.1).

Everything is channels-last (`[B, L, C]`). Every conv of the decoder is causal, so a stream of
frames decoded piece by piece gives the single-pass result when each conv keeps the last
`k_eff - 1` inputs it saw (`ConvState`) and each transposed conv carries the overlapping tail of
its output into the next piece (`TailState`).
"""

from collections.abc import Sequence
from typing import Any

import mlx.core as mx
import mlx.nn as nn


class ConvState:
    """Left context of one stride-1 causal conv: its last `size` inputs (zeros before the start)."""

    def __init__(self, size: int):
        self.size = size
        self.buffer: mx.array | None = None

    def update(self, x: mx.array) -> mx.array:
        """`x` with the remembered left context prepended; remembers the new context."""
        if self.size == 0:
            return x
        if self.buffer is None:
            self.buffer = mx.zeros((x.shape[0], self.size, x.shape[2]), dtype=x.dtype)
        x = mx.concatenate([self.buffer, x], axis=1)
        self.buffer = x[:, x.shape[1] - self.size :]
        return x

    @property
    def state(self) -> list[mx.array]:
        return [] if self.buffer is None else [self.buffer]


class TailState:
    """The last `k - stride` samples of a transposed conv's output, which the next input overlaps."""

    def __init__(self, size: int):
        self.size = size
        self.tail: mx.array | None = None

    def overlap_add(self, y: mx.array) -> mx.array:
        """Adds the carried tail to `y`'s head, emits all but `y`'s own tail and carries that."""
        if self.size == 0:
            return y
        if self.tail is not None:
            y = mx.concatenate([y[:, : self.size] + self.tail, y[:, self.size :]], axis=1)
        emitted = y.shape[1] - self.size
        self.tail = y[:, emitted:]
        return y[:, :emitted]

    @property
    def state(self) -> list[mx.array]:
        return [] if self.tail is None else [self.tail]


def state_arrays(tree: Any) -> list[mx.array]:
    """Every array held by a (nested list / dict of) streaming state object(s)."""
    if tree is None:
        return []
    if isinstance(tree, dict):
        tree = list(tree.values())
    if isinstance(tree, (list, tuple)):
        return [a for t in tree for a in state_arrays(t)]
    return tree.state


def make_states(layers: Sequence[nn.Module]) -> list[Any]:
    """The streaming state of each layer; None for stateless (pointwise) layers."""
    return [layer.make_state() if hasattr(layer, "make_state") else None for layer in layers]


def run_layers(layers: Sequence[nn.Module], x: mx.array, states: list[Any] | None = None) -> mx.array:
    """Applies `layers` in order; stateful layers get their state when streaming."""
    if states is None:
        states = [None] * len(layers)
    for layer, state in zip(layers, states):
        x = layer(x) if state is None else layer(x, state)
    return x


class CausalConv1d(nn.Module):
    """`Qwen3TTSTokenizerV2CausalConvNet` / `MimiConv1d` with `use_causal_conv`.

    Left pad `k_eff - stride`, right pad to make the output `ceil(L / stride)` long (dossier
    §2.6.1 item 7). Mimi's downsampling conv pads by replication (`pad_mode="edge"`, §2.6.2).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
        pad_mode: str = "constant",
    ):
        super().__init__()
        self.conv = nn.Conv1d(
            in_channels, out_channels, kernel_size, stride=stride, dilation=dilation,
            groups=groups, bias=bias,
        )
        self.stride = stride
        self.padding = (kernel_size - 1) * dilation + 1 - stride
        self.pad_mode = pad_mode

    def make_state(self) -> ConvState:
        # Only the decoder streams, and all its convs have stride 1 and zero padding.
        assert self.stride == 1 and self.pad_mode == "constant"
        return ConvState(self.padding)

    def __call__(self, x: mx.array, state: ConvState | None = None) -> mx.array:
        if state is not None:
            return self.conv(state.update(x))
        extra = -x.shape[1] % self.stride
        if self.padding or extra:
            x = mx.pad(x, [(0, 0), (self.padding, extra), (0, 0)], mode=self.pad_mode)
        return self.conv(x)


class CausalConvTranspose1d(nn.Module):
    """`Qwen3TTSTokenizerV2CausalTransConvNet`: a plain transposed conv minus its last `k - stride`
    samples, so `L` inputs give exactly `L * stride` outputs (dossier §2.6.1 item 7)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int):
        super().__init__()
        self.conv = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride=stride)
        self.stride = stride
        self.trim = kernel_size - stride

    def make_state(self) -> TailState:
        return TailState(self.trim)

    def __call__(self, x: mx.array, state: TailState | None = None) -> mx.array:
        # The bias is added after the overlap-add, so a carried tail holds it only once.
        y = mx.conv_transpose1d(x, self.conv.weight, stride=self.stride)
        if state is not None:
            y = state.overlap_add(y)
        elif self.trim:
            y = y[:, : y.shape[1] - self.trim]
        return y + self.conv.bias


@mx.compile
def _snake_beta(x: mx.array, alpha: mx.array, beta: mx.array) -> mx.array:
    return x + (1.0 / (mx.exp(beta) + 1e-9)) * mx.power(mx.sin(x * mx.exp(alpha)), 2)


class SnakeBeta(nn.Module):
    """`x + 1/(exp(beta) + 1e-9) * sin^2(exp(alpha) x)`, alpha and beta stored as logs (§2.6.1)."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = mx.zeros((channels,))
        self.beta = mx.zeros((channels,))

    def __call__(self, x: mx.array) -> mx.array:
        return _snake_beta(x, self.alpha, self.beta)


class ELU(nn.Module):
    """ELU(alpha=1) with `expm1`, as torch computes it (SEANet encoder activations)."""

    def __call__(self, x: mx.array) -> mx.array:
        return mx.where(x > 0, x, mx.expm1(x))
