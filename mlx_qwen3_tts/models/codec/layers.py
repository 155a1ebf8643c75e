"""Causal convolutions, SnakeBeta and the streaming buffers of the 12 Hz codec (dossier §2.6.1).

Everything is channels-last (`[B, L, C]`). Every conv of the decoder is causal, so a stream of
frames decoded piece by piece gives the single-pass result when each conv keeps the last
`k_eff - 1` inputs it saw (`ConvState`) and each transposed conv carries the overlapping tail of
its output into the next piece (`TailState`).

Every codec convolution goes through `conv1d` / `conv_transpose1d`, computed as the module's
`impl` says (set per model by the compute policy): MLX's own kernels on a GPU, matmuls on the
CPU, where MLX runs dilated, grouped and transposed convs as a naive loop, one to two orders of
magnitude slower than the same products as BLAS matmuls (`bench/codec_speed.py` measures both).
"""

import functools
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, get_args

import mlx.core as mx
import mlx.nn as nn
import numpy as np

ConvImpl = Literal["native", "matmul", "taps", "im2col"]
CONV_IMPLS: tuple[str, ...] = get_args(ConvImpl)
SnakeImpl = Literal["sin", "numpy"]
# Largest im2col patch matrix (elements, 16 MiB in float32) that "matmul" builds. Patches grow as
# k * L * C, far larger than the output at the decoder's last stage of a long decode; past this
# size the tap sum, whose temporaries are output-sized, is as fast.
IM2COL_MAX_ELEMENTS = 1 << 22


def _check(impl: str) -> str:
    if impl not in CONV_IMPLS:
        raise ValueError(f"conv impl must be one of {CONV_IMPLS}, not {impl!r}.")
    return impl


def conv1d(
    x: mx.array,
    w: mx.array,
    stride: int = 1,
    dilation: int = 1,
    groups: int = 1,
    impl: ConvImpl = "native",
) -> mx.array:
    """`mx.conv1d(x, w, stride, 0, dilation, groups)`: no padding, `x` `[B, L, C_in]`, `w`
    `[C_out, k, C_in / groups]`, computed as `impl` says:

    * "native": `mx.conv1d` (MLX's kernels; what a GPU runs best);
    * "taps": BLAS products (what the CPU runs best), one per kernel tap, summed; for weights
      laid out tap by tap (`tap_major`), whose taps go to BLAS without a copy;
    * "matmul": BLAS products over weights as the checkpoint lays them out: all taps' inputs
      side by side in one product (im2col) while that patch matrix is small
      (`IM2COL_MAX_ELEMENTS`), else the tap sum;
    * "im2col": always im2col (tests and benchmarks).
    Depthwise and grouped convs are a tap sum in every BLAS formulation.
    """
    impl = _check(impl)
    if impl == "native":
        return mx.conv1d(x, w, stride=stride, dilation=dilation, groups=groups)
    taps = _tap_inputs(x, w.shape[1], stride, dilation)
    if groups > 1:
        depthwise = groups == x.shape[-1] == w.shape[0]
        return _depthwise(taps, w) if depthwise else _grouped_tap_sum(taps, w, groups)
    small = taps[0].size * len(taps) <= IM2COL_MAX_ELEMENTS
    if impl == "im2col" or (impl == "matmul" and small):
        return _im2col(taps, w)
    return _tap_sum(taps, w)


def tap_major(w: mx.array) -> mx.array:
    """`w` `[C_out, k, C_in]` as it is (same shape, same values), stored tap by tap as
    `[k, C_in, C_out]`: each tap's `w[:, j].T` is then contiguous, and the tap sum multiplies it
    as it lies. In the checkpoint's layout a tap's slice is strided, and MLX copies it (into
    this same layout, so the products are the same bit for bit) before every product.
    Idempotent."""
    return mx.contiguous(w.transpose(1, 2, 0)).transpose(2, 0, 1)


def _tap_inputs(x: mx.array, k: int, stride: int, dilation: int) -> list[mx.array]:
    """For each kernel tap j, the inputs it multiplies: `x[:, t * stride + j * dilation]`, all t."""
    n_out = max((x.shape[1] - (k - 1) * dilation - 1) // stride + 1, 0)
    span = max((n_out - 1) * stride + 1, 0)
    return [x[:, j * dilation : j * dilation + span : stride] for j in range(k)]


def _tap_sum(taps: list[mx.array], w: mx.array) -> mx.array:
    # addmm accumulates into the running sum: adding k separate products would hold them all
    # at once (several times the output's memory) and spend an extra pass over each. With
    # tap-major weights `w[:, j]` is contiguous and goes to BLAS without a copy.
    y = taps[0] @ w[:, 0].T
    for j in range(1, len(taps)):
        y = mx.addmm(y, taps[j], w[:, j].T)
    return y


def _im2col(taps: list[mx.array], w: mx.array) -> mx.array:
    # Patches are tap-major like w's `[C_out, k * C_in]` view, which needs no copy of the weight
    # in the checkpoint's layout (of a `tap_major` one it does).
    return mx.concatenate(taps, axis=-1) @ w.reshape(w.shape[0], -1).T


def _depthwise(taps: list[mx.array], w: mx.array) -> mx.array:
    y = taps[0] * w[:, 0, 0]
    for j in range(1, len(taps)):
        y = y + taps[j] * w[:, j, 0]
    return y


def _grouped_tap_sum(taps: list[mx.array], w: mx.array, groups: int) -> mx.array:
    """A tap sum of `[B, G, L, C_in / G] @ [G, C_in / G, C_out / G]` batched products."""
    B, L, C = taps[0].shape
    wg = w.reshape(groups, w.shape[0] // groups, *w.shape[1:])  # [G, C_out / G, k, C_in / G]
    y = None
    for j, xj in enumerate(taps):
        t = xj.reshape(B, L, groups, C // groups).swapaxes(1, 2) @ wg[:, :, j].swapaxes(1, 2)
        y = t if y is None else y + t
    return y.swapaxes(1, 2).reshape(B, L, -1)


def conv_transpose1d(x: mx.array, w: mx.array, stride: int, impl: ConvImpl = "native") -> mx.array:
    """`mx.conv_transpose1d(x, w, stride)`: no padding, groups 1, `(L - 1) * stride + k` outputs,
    `w` `[C_out, k, C_in]`; "native" is MLX's kernel, any other `impl` one matmul and an
    overlap-add."""
    if _check(impl) == "native":
        return mx.conv_transpose1d(x, w, stride=stride)
    return _overlap_add_matmul(x, w, stride)


def _overlap_add_matmul(x: mx.array, w: mx.array, s: int) -> mx.array:
    """Input frame t writes output samples `t * s + j` (j < k): split the taps into m blocks of s,
    then output block f is the sum over q of tap block q applied to input frame f - q."""
    c_out, k, c_in = w.shape
    m = -(-k // s)
    if k < m * s:  # zero taps complete the last block; their samples are cut off at the end
        w = mx.pad(w, [(0, 0), (0, m * s - k), (0, 0)])
    B, T, _ = x.shape
    # m - 1 zero frames each side, so each q reads one full-length slice of the products.
    xp = mx.pad(x, [(0, 0), (m - 1, m - 1), (0, 0)]) if m > 1 else x
    # `w`'s own `[C_out * k, C_in]` view (no weight copy, which would cost more than the matmul
    # for a few frames), so the products come out channel-major: `[B, T', C_out, m, s]`.
    full = (xp @ w.reshape(-1, c_in).T).reshape(B, T + 2 * (m - 1), c_out, m, s)
    y = None
    for q in range(m):
        block = full[:, m - 1 - q : m - 1 - q + T + m - 1, :, q].swapaxes(2, 3)
        y = block if y is None else y + block
    return y.reshape(B, -1, c_out)[:, : (T - 1) * s + k]


def apply_conv(conv: nn.Conv1d, x: mx.array, impl: ConvImpl) -> mx.array:
    """`conv(x)` for an unpadded `nn.Conv1d`, through `conv1d`."""
    y = conv1d(x, conv.weight, conv.stride, conv.dilation, conv.groups, impl)
    return y + conv.bias if "bias" in conv else y


def _detached(tail: mx.array) -> mx.array:
    # A slice shares its parent's buffer: a state holding a view would keep the conv's whole
    # input (hundreds of MB at the last stage of a long chunk) alive until the next chunk.
    return mx.contiguous(tail)


def _after_state(y: mx.array, state: "ConvState | TailState") -> mx.array:
    """`y`, made to depend on the state's new tail. Only the state needs that copy, so MLX would
    compute it last, keeping every conv's input alive meanwhile and raising the decode's peak."""
    return mx.depends(y, state.state) if state.state else y


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
        self.buffer = _detached(x[:, x.shape[1] - self.size :])
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
        self.tail = _detached(y[:, emitted:])
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
    `impl` is how it computes (`conv1d`), set for the device by the compute policy (`use_impls`).
    """

    impl: ConvImpl = "native"

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
            return _after_state(apply_conv(self.conv, state.update(x), self.impl), state)
        extra = -x.shape[1] % self.stride
        if self.padding or extra:
            x = mx.pad(x, [(0, 0), (self.padding, extra), (0, 0)], mode=self.pad_mode)
        return apply_conv(self.conv, x, self.impl)


class CausalConvTranspose1d(nn.Module):
    """`Qwen3TTSTokenizerV2CausalTransConvNet`: a plain transposed conv minus its last `k - stride`
    samples, so `L` inputs give exactly `L * stride` outputs (dossier §2.6.1 item 7)."""

    impl: ConvImpl = "native"

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int):
        super().__init__()
        self.conv = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride=stride)
        self.stride = stride
        self.trim = kernel_size - stride

    def make_state(self) -> TailState:
        return TailState(self.trim)

    def __call__(self, x: mx.array, state: TailState | None = None) -> mx.array:
        # The bias is added after the overlap-add, so a carried tail holds it only once.
        y = conv_transpose1d(x, self.conv.weight, self.stride, self.impl)
        if state is not None:
            return _after_state(state.overlap_add(y) + self.conv.bias, state)
        if self.trim:
            y = y[:, : y.shape[1] - self.trim]
        return y + self.conv.bias


def _snake_beta(x: mx.array, alpha: mx.array, beta: mx.array) -> mx.array:
    return x + (1.0 / (mx.exp(beta) + 1e-9)) * mx.square(mx.sin(x * mx.exp(alpha)))


# Shapeless: a stream's chunks come in many lengths, and a shape-specific trace was compiled
# again for each new one, at every decoder stage (elementwise only, so one trace fits all).
_snake_beta_fused = mx.compile(_snake_beta, shapeless=True)

# Elements of one block of SnakeBeta on the CPU (256 KiB of float32): its five passes run over a
# block while it sits in L2, and blocks are what the worker threads share out.
SNAKE_BLOCK_ELEMENTS = 1 << 16
SNAKE_THREADS = min(4, os.cpu_count() or 1)


@functools.cache
def _snake_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(SNAKE_THREADS, thread_name_prefix="snake-beta")


def _snake_rows(x: np.ndarray, scale: np.ndarray, gain: np.ndarray, out: np.ndarray,
                rows: range) -> None:
    part = slice(rows.start, rows.stop)
    y = np.multiply(x[part], scale, out=out[part])
    np.sin(y, out=y)
    np.square(y, out=y)
    y *= gain
    y += x[part]


def _snake_beta_cpu(x: mx.array, alpha: mx.array, beta: mx.array) -> mx.array:
    # SnakeBeta was most of a CPU decode. MLX's CPU sin is scalar, each of its elementwise ops
    # is one single-threaded pass over the signal, and mx.compile's CPU kernels are not
    # vectorised. NumPy's sin is SIMD, and its five passes run block by block from cache on a
    # few threads (NumPy releases the GIL): over 10x MLX's sin (bench/kernel_speed.py). The
    # price is a host sync per call, which only the CPU's decode pays.
    dtype = x.dtype
    values = np.array(x if dtype == mx.float32 else x.astype(mx.float32), copy=False)  # a sync
    flat = values.reshape(-1, values.shape[-1])
    scale = np.array(mx.exp(alpha.astype(mx.float32)))
    gain = np.array(1.0 / (mx.exp(beta.astype(mx.float32)) + 1e-9))
    out = np.empty(flat.shape, np.float32)
    step = max(1, SNAKE_BLOCK_ELEMENTS // flat.shape[1])
    blocks = [range(i, min(i + step, len(flat))) for i in range(0, len(flat), step)]
    rows = functools.partial(_snake_rows, flat, scale, gain, out)
    try:
        list(_snake_pool().map(rows, blocks) if len(blocks) > 1 else map(rows, blocks))
    except RuntimeError:  # the pool refuses work once the interpreter shuts down: on this thread
        list(map(rows, blocks))
    return mx.array(out.reshape(values.shape)).astype(dtype)


class SnakeBeta(nn.Module):
    """`x + 1/(exp(beta) + 1e-9) * sin^2(exp(alpha) x)`, alpha and beta stored as logs (§2.6.1).

    `impl`: "sin", fused with MLX's sin (a GPU's best), or "numpy", NumPy's SIMD sin on a few
    threads (the CPU's: MLX's is scalar); set for the device by the compute policy (`use_impls`).
    """

    impl: SnakeImpl = "sin"

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = mx.zeros((channels,))
        self.beta = mx.zeros((channels,))

    def __call__(self, x: mx.array) -> mx.array:
        snake = _snake_beta_fused if self.impl == "sin" else _snake_beta_cpu
        return snake(x, self.alpha, self.beta)


def use_impls(module: nn.Module, conv: ConvImpl, snake: SnakeImpl) -> None:
    """How every convolution and SnakeBeta under `module` computes: the compute policy's choice,
    held by each module (no process-wide switch: two models can compute differently).

    With "matmul" (the CPU's), a conv with a kernel > 1, not grouped, and no more output than
    input channels (the decoder's residual convs and its last) computes as "taps" over weights
    laid out tap by tap (`tap_major`: the same values and memory). A tap sum reads and writes
    the output once per tap, im2col copies the input once per tap, so convs that widen (the
    encoder's first and downsampling convs, the decoder's first two) keep "matmul" over the
    checkpoint's layout.
    """
    _check(conv)
    for _, m in module.named_modules():
        if isinstance(m, (CausalConv1d, CausalConvTranspose1d)):
            m.impl = conv
            if isinstance(m, CausalConv1d) and m.conv.groups == 1 and m.conv.weight.shape[1] > 1:
                c_out, _, c_in = m.conv.weight.shape
                m.impl = "taps" if conv == "matmul" and c_in >= c_out else conv
                m.conv.weight = tap_major(m.conv.weight) if m.impl == "taps" else mx.contiguous(m.conv.weight)
                mx.eval(m.conv.weight)  # one at a time: the old layout is freed as the new one is made
        elif isinstance(m, SnakeBeta):
            m.impl = snake


class ELU(nn.Module):
    """ELU(alpha=1) with `expm1`, as torch computes it (SEANet encoder activations)."""

    def __call__(self, x: mx.array) -> mx.array:
        return mx.where(x > 0, x, mx.expm1(x))
