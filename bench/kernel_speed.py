"""MLX CPU kernels behind the frame loop and the codec, one table (issue #8's profile).

Talker-sized Linears (the 7 projections of a 0.6B layer, 5 layers: 35 matrices, 77 M weights,
what one code-predictor step reads), one row (a decode step) and 32 rows (a prompt), in every
weight format the benchmark compares: float32, bfloat16, 8 and 4 bits, with MLX's own kernels
and with the float32 products of `mlx_qwen3_tts.models.cpu_matmul` (for float32 weights: its
one-row products as two rows and on two streams); then SnakeBeta over one
second of the codec's last stage (24,000 x 96) with MLX's sin and with NumPy's (ours on the CPU).

    python bench/kernel_speed.py

The BLAS is what `import mlx_qwen3_tts` loads (MKL on Linux x86-64; `MLX_QWEN3_TTS_MKL=0` keeps
MLX's bundled one, LD_PRELOAD another);
`--formats`, `--rows` and `--reps` choose the weight formats, shapes and repetitions.
"""

import argparse
import os
import time

# isort: off
import mlx_qwen3_tts  # noqa: F401  (first: it loads MKL under MLX)
import mlx.core as mx
# isort: on
import mlx.nn as nn

from mlx_qwen3_tts import blas
from mlx_qwen3_tts.models.codec import layers
from mlx_qwen3_tts.models.cpu_matmul import use_float32_matmuls, use_threaded_matvecs

LAYER = [(2048, 1024), (1024, 1024), (1024, 1024), (1024, 2048), (3072, 1024), (3072, 1024), (1024, 3072)]


def linears(fmt: str) -> list[nn.Module]:
    out = []
    for i, (n_out, n_in) in enumerate(LAYER * 5):
        mx.random.seed(i)
        layer = nn.Linear(n_in, n_out, bias=False)
        if fmt != "fp32":
            layer.set_dtype(mx.bfloat16)
        if fmt in ("q8", "q4"):
            layer = nn.QuantizedLinear.from_linear(layer, group_size=64, bits=int(fmt[1]))
        out.append(layer)
    mx.eval([m.parameters() for m in out])
    return out


def seconds(reps: int, fn, *args) -> float:
    mx.eval(fn(*args))
    start = time.perf_counter()
    for _ in range(reps):
        mx.eval(fn(*args))
    return (time.perf_counter() - start) / reps


def forward(mods: list[nn.Module], xs: dict[int, mx.array]) -> list[mx.array]:
    return [m(xs[n_in]) for m, (_, n_in) in zip(mods, LAYER * 5)]


def matmul_rows(formats: list[str], rows: list[int], reps: int) -> list[str]:
    lines = []
    for fmt in formats:
        mods = linears(fmt)
        dtype = mx.float32 if fmt == "fp32" else mx.bfloat16
        n_weights = sum(n_out * n_in for n_out, n_in in LAYER * 5)
        ours = ("two_rows", "two_streams") if fmt == "fp32" else ("float32 products",)
        for how in ("MLX", *ours):
            for m in mods:
                if how == "float32 products":
                    use_float32_matmuls(m)
                elif how != "MLX":
                    use_threaded_matvecs(m, how)
            for m_rows in rows:
                xs = {k: mx.random.normal((1, m_rows, k)).astype(dtype) for k in (1024, 2048, 3072)}
                s = seconds(reps, forward, mods, xs)
                lines.append(f"| {fmt} | {how} | {m_rows} | {1e3 * s:.1f} | {n_weights / s / 1e9:.2f} |")
    return lines


def snake_rows(reps: int) -> list[str]:
    x = 3 * mx.random.normal((1, 24000, 96))
    alpha, beta = 0.3 * mx.random.normal((96,)), 0.3 * mx.random.normal((96,))
    lines = []
    for name, fn in (("mx.sin", layers._snake_beta), ("compiled mx.sin", layers._snake_beta_fused),
                     ("NumPy sin in blocks on threads (ours, CPU)", layers._snake_beta_cpu)):
        s = seconds(reps, fn, x, alpha, beta)
        lines.append(f"| {name} | {1e3 * s:.1f} |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default="1,8,32", help="rows per product (comma list)")
    p.add_argument("--formats", default="fp32,bf16,q8,q4", help="weight formats (comma list)")
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args()
    mx.set_default_device(mx.cpu)
    threads = {v: os.environ.get(v) for v in ("MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    print(f"mlx {mx.__version__}, BLAS: {blas.blas()}, {threads}")
    print("\n| weights | kernel | rows | ms for 35 Linears | G weights/s |\n|---|---|---|---|---|")
    rows = [int(r) for r in args.rows.split(",")]
    print("\n".join(matmul_rows(args.formats.split(","), rows, args.reps)))
    print("\n| SnakeBeta, 24,000 x 96 float32 | ms |\n|---|---|")
    print("\n".join(snake_rows(args.reps)))


if __name__ == "__main__":
    main()
