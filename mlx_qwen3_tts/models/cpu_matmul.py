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
"""

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
