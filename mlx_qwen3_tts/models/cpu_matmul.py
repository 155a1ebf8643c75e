"""Float32 matmuls for half-precision and quantized Linears on MLX's CPU backend.

MLX's CPU backend sends float32 matmuls to BLAS (`cblas_sgemm`), but multiplies bfloat16 /
float16 matrices, and quantized matrices, in its own loops, several times slower for prompts and
for quantized weights with half-precision activations (`bench/kernel_speed.py` measures each
formulation; the README's benchmark section holds the numbers).

So on the CPU, `use_float32_matmuls` turns a model's half-precision and quantized Linears into
ones that multiply in float32 and round the result back to the activation dtype. The weights stay as
stored (bf16 or packed); inputs and outputs keep their dtype; only the product is computed
with float32 operands, which holds the same values (bf16 and fp16 embed exactly in float32) and
accumulates in float32, as MLX's half-precision kernels do. One-row products of plain half
Linears keep MLX's kernel: it reads the half weight once, where the cast reads it, writes it
twice as large and reads that again, which is no faster.

And one-row float32 products, a decode step's, use both cores (`use_threaded_matvecs`): BLAS
may compute a one-row product on one thread, which streams the weight at about two thirds of
the memory bandwidth. MKL does so on AMD CPUs but threads a two-row product, so there the row
goes in twice ("two_rows"; on Intel CPUs MKL threads the one row itself); a BLAS that threads
nothing (MLX's bundled one) gets the two halves of the output rows on two MLX streams
("two_streams"), each its own thread, and twice the work would only double its time.
`bench/kernel_speed.py` measures each formulation; `policy.py` chooses one.
"""

import threading
from typing import Literal

import mlx.core as mx
import mlx.nn as nn

HALF = (mx.bfloat16, mx.float16)


def _one_row(x: mx.array) -> bool:
    """A decode step's input: every leading dimension is 1."""
    return x.size == x.shape[-1]


class Float32MatmulLinear(nn.Linear):
    """`nn.Linear` with half weights, multiplied in float32 when more than one row comes in."""

    def __call__(self, x: mx.array) -> mx.array:
        if _one_row(x):
            return super().__call__(x)
        y = x.astype(mx.float32) @ self.weight.astype(mx.float32).T
        if "bias" in self:
            y = y + self.bias
        return y.astype(x.dtype)


class Float32MatmulQuantizedLinear(nn.QuantizedLinear):
    """`nn.QuantizedLinear` multiplied in float32: one row against the packed weight, more rows
    against the weight dequantized to float32 (one sgemm instead of MLX's per-row loop)."""

    def __call__(self, x: mx.array) -> mx.array:
        biases = self.get("biases")
        scales = self["scales"].astype(mx.float32)
        biases = None if biases is None else biases.astype(mx.float32)
        kwargs = {"group_size": self.group_size, "bits": self.bits, "mode": self.mode}
        x32 = x.astype(mx.float32)
        if _one_row(x):
            y = mx.quantized_matmul(x32, self["weight"], scales, biases, transpose=True, **kwargs)
        else:
            y = x32 @ mx.dequantize(self["weight"], scales, biases, **kwargs).T
        if "bias" in self:
            y = y + self["bias"]
        return y.astype(x.dtype)


MatvecImpl = Literal["blas", "two_rows", "two_streams"]
MATVEC_MIN_OUT = 1024  # below this a product is too small for a second thread to pay for itself


class ThreadedMatvecLinear(nn.Linear):
    """`nn.Linear` (float32) whose one-row products use both cores (`use_threaded_matvecs`)."""

    matvec: MatvecImpl
    second_stream: mx.Stream | None

    def __call__(self, x: mx.array) -> mx.array:
        if not _one_row(x):
            return super().__call__(x)
        if self.matvec == "two_rows":
            # MKL computes one row on one thread and two rows on all of them: the row twice.
            return super().__call__(mx.broadcast_to(x, (*x.shape[:-2], 2, x.shape[-1])))[..., :1, :]
        half = self.weight.shape[0] // 2
        with mx.stream(self.second_stream):
            upper = self._product(x, slice(half, None))
        return mx.concatenate([self._product(x, slice(None, half)), upper], axis=-1)

    def _product(self, x: mx.array, rows: slice) -> mx.array:
        # As nn.Linear computes it (the bias added inside the BLAS call): the same roundings.
        if "bias" in self:
            return mx.addmm(self.bias[rows], x, self.weight[rows].T)
        return x @ self.weight[rows].T


_streams = threading.local()


def _second_stream() -> mx.Stream:
    """This thread's second CPU stream, made once: MLX never ends a stream's native thread, and
    model threads are reused by the models loaded one after another."""
    if not hasattr(_streams, "cpu"):
        _streams.cpu = mx.new_stream(mx.cpu)
    return _streams.cpu


def use_threaded_matvecs(model: nn.Module, matvec: MatvecImpl) -> int:
    """Give every float32 `nn.Linear` of `model` with at least `MATVEC_MIN_OUT` outputs the
    `matvec` formulation, in place, and return how many changed. "two_streams" makes an MLX
    stream, which belongs to the thread that makes it: call this on the thread that will run
    the model (its `ModelThread`)."""
    if matvec == "blas":
        return 0
    stream = _second_stream() if matvec == "two_streams" else None
    changed = 0
    for _, module in model.named_modules():
        if (type(module) in (nn.Linear, ThreadedMatvecLinear)
                and module.weight.dtype == mx.float32 and module.weight.shape[0] >= MATVEC_MIN_OUT):
            module.__class__ = ThreadedMatvecLinear
            module.matvec = matvec
            module.second_stream = stream
            changed += 1
    return changed


def _float32_class(module: nn.Module) -> type | None:
    if type(module) is nn.QuantizedLinear:
        return Float32MatmulQuantizedLinear
    if type(module) is nn.Linear and module.weight.dtype in HALF:
        return Float32MatmulLinear
    return None


def use_float32_matmuls(model: nn.Module) -> int:
    """Give every half-precision or quantized Linear of `model` its float32-matmul class, in
    place, and return how many changed. Call it only for a model that runs on the CPU."""
    changed = 0
    for _, module in model.named_modules():
        cls = _float32_class(module)
        if cls is not None:
            # Same attributes, parameters and checkpoint keys: only the call differs, so the
            # class is swapped rather than the module rebuilt (a QuantizedLinear's constructor
            # would quantize a random weight first).
            module.__class__ = cls
            changed += 1
    return changed
