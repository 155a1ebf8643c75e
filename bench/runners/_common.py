"""Helpers shared by the per-system runners (standard library only: every venv imports this).

A runner is started by `bench/benchmark.py` as

    <venv>/bin/python bench/runners/<system>.py --spec spec.json --out result.json

and always writes `result.json`, also when it fails (then with `error` and `traceback`), so the
driver can report what was measured before the failure.
"""

import argparse
import json
import os
import re
import resource
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from typing import Any

SAMPLE_RATE = 24000
FRAME_RATE = 12.5  # codec frames per second of audio
CODE_PREDICTOR_STEPS = 15  # codebooks 1..15, one code-predictor forward each


BLAS_NAME = re.compile(r"lib(scipy_)?(open)?blas|liblapack|libmkl|libdnnl|libgomp|libiomp", re.I)


def blas_libraries() -> list[str]:
    """Paths of the BLAS/LAPACK libraries mapped into this process (read from /proc/self/maps)."""
    try:
        with open("/proc/self/maps") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    names = {line.split()[-1] for line in lines if len(line.split()) >= 6}
    return sorted(n for n in names if BLAS_NAME.match(os.path.basename(n)))


def blas_summary(libraries: list[str]) -> str:
    """Which BLAS serves `cblas_*` calls: an LD_PRELOADed library wins symbol lookup."""
    preload = [p for p in os.environ.get("LD_PRELOAD", "").split() if p]
    if preload:
        mapped = [p for p in preload if any(os.path.realpath(p) == os.path.realpath(m) for m in libraries)]
        if mapped:
            return "preloaded " + ", ".join(mapped)
    mkl = [m for m in libraries if os.path.basename(m).startswith("libmkl_rt")]
    if mkl:  # loaded into the global scope before MLX (mlx_qwen3_tts/blas.py): its cblas_* win
        return "MKL loaded before MLX: " + os.path.basename(mkl[0])
    bundled = [m for m in libraries if "mlx_cpu.libs" in m]  # the MLX wheel's reference BLAS/LAPACK
    shown = bundled or libraries
    return ("MLX wheel's bundled " if bundled else "as linked: ") + (
        ", ".join(os.path.basename(m) for m in shown) or "none found")


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def set_thread_env(threads: int) -> None:
    """Thread limits for every BLAS/OpenMP runtime; the driver sets them too, before start-up."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[var] = str(threads)


def weight_bytes_per_frame(named_nbytes: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Weight bytes one frame reads, from `(parameter name, bytes)` pairs of a loaded model.

    Per frame the talker runs once (its decoder layers, final norm and codec head) and the code
    predictor runs 15 times (its layers, final norm and, for 1.7B, the projection from talker
    width); each of the 15 predictor heads is read once. Embedding tables (text, codec) are
    only gathered a row at a time, the text projection runs on the prompt, and the speaker encoder
    and codec are outside the frame loop: none of these count. Parameter names follow the
    checkpoint (ours, mlx-audio and the official model all keep them), quantized layers count
    their packed weights, scales and biases.
    """
    talker = predictor_stack = predictor_heads = skipped = 0
    for name, nbytes in named_nbytes:
        if "speaker_encoder" in name or "speech_tokenizer" in name or "embedding" in name:
            skipped += nbytes
        elif "code_predictor" in name:
            if "lm_head" in name:
                predictor_heads += nbytes
            elif ".layers." in name or "small_to_mtp_projection" in name or ".norm." in name:
                predictor_stack += nbytes
            else:
                skipped += nbytes
        elif ".layers." in name or "codec_head" in name or name.endswith("model.norm.weight"):
            talker += nbytes
        else:
            skipped += nbytes  # text_projection and the like
    per_frame = talker + CODE_PREDICTOR_STEPS * predictor_stack + predictor_heads
    return {"talker_bytes": talker, "code_predictor_stack_bytes": predictor_stack,
            "code_predictor_head_bytes": predictor_heads, "not_read_per_frame_bytes": skipped,
            "bytes_per_frame": per_frame}


def stats(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "min": min(values), "median": statistics.median(values)}


class Clock:
    """`with clock("name"): ...` adds the block's wall time to `clock.totals["name"]`."""

    def __init__(self):
        self.totals: dict[str, float] = {}
        self._name = None

    def __call__(self, name: str) -> "Clock":
        self._name = name
        return self

    def __enter__(self):
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.totals[self._name] = self.totals.get(self._name, 0.0) + time.perf_counter() - self._start
        return False


def main(run: Callable[[dict[str, Any], dict[str, Any]], None]) -> None:
    """Parse `--spec/--out`, run `run(spec, result)` and write `result` whatever happens."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--spec", required=True, help="JSON file written by bench/benchmark.py")
    parser.add_argument("--out", required=True, help="where to write the result JSON")
    args = parser.parse_args()
    with open(args.spec) as f:
        spec = json.load(f)
    set_thread_env(spec.get("threads", 1))
    result: dict[str, Any] = {"system": spec.get("system"), "mode": spec.get("mode"),
                              "python": sys.version.split()[0], "pid": os.getpid()}
    start = time.perf_counter()
    try:
        run(spec, result)
    except BaseException as e:  # the driver reports it; the process exits non-zero below
        result["error"] = f"{type(e).__name__}: {e}"
        result["traceback"] = traceback.format_exc()
    finally:
        result["blas_libraries"] = blas_libraries()
        result.setdefault("blas", blas_summary(result["blas_libraries"]))
        result["peak_rss_gb"] = peak_rss_gb()
        result["runner_wall_s"] = time.perf_counter() - start
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=1, default=str)
        os.replace(tmp, args.out)
    if "error" in result:
        print(result["traceback"], file=sys.stderr)
        sys.exit(1)


def matmul_gflops(mx) -> float:
    """float32 GEMM throughput of MLX here: tells the bundled reference BLAS from OpenBLAS."""
    a = mx.random.normal((512, 512))
    mx.eval(a @ a)
    start, n = time.perf_counter(), 4
    for _ in range(n):
        mx.eval(a @ a)
    return n * 2 * 512**3 / (time.perf_counter() - start) / 1e9
