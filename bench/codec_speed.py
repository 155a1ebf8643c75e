"""Full-size codec speed per convolution formulation: seconds of compute per second of audio.

    python bench/codec_speed.py                       # native, taps, im2col, matmul; 12 frames
    python bench/codec_speed.py --impls matmul --frames 300 --repeat 1   # a 24 s exact decode
    python bench/codec_speed.py --impls matmul --ops stream --step 4     # streaming, 4-frame steps

The codec is the full-size 12 Hz tokenizer with random weights (`write_speech_tokenizer(..., "0.6b")`);
speed does not depend on the weights. On Linux, MLX's CPU wheel calls its bundled reference BLAS
unless another is preloaded, e.g.

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 python bench/codec_speed.py

so the BLAS the run used is printed first. Rows give min and median over `--repeat` runs, taken in
turn per formulation after an untimed two-frame warm-up, and MLX's peak memory over those runs.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import mlx.core as mx
import numpy as np

from mlx_qwen3_tts.models.codec.layers import CONV_IMPLS, set_conv_impl
from mlx_qwen3_tts.speech_tokenizer import SpeechTokenizer
from mlx_qwen3_tts.testing import write_speech_tokenizer


def blas_in_use() -> str:
    """Which BLAS MLX's matmuls call: a preloaded one interposes the wheel's bundled library."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "Accelerate (macOS)" if sys.platform == "darwin" else "unknown (no /proc/self/maps)"
    loaded = {line.split()[-1] for line in maps.splitlines() if line.count("/") and "blas" in line.lower()}
    preloaded = [p for p in os.environ.get("LD_PRELOAD", "").replace(":", " ").split() if "blas" in p]
    for path in preloaded:
        real = os.path.realpath(path)
        if real in loaded or path in loaded:
            kind = "OpenBLAS" if "openblas" in real.lower() else "BLAS"
            threads = os.environ.get("OPENBLAS_NUM_THREADS", "default")
            return f"{kind}, preloaded ({path} -> {real}; OPENBLAS_NUM_THREADS={threads})"
    bundled = sorted(p for p in loaded if "mlx" in p)
    if bundled:
        return f"MLX wheel's bundled reference BLAS ({Path(bundled[0]).name})"
    return "unknown: " + (", ".join(sorted(loaded)) or "no BLAS library mapped")


def workloads(tok: SpeechTokenizer, args: argparse.Namespace) -> dict[str, Callable[[], object]]:
    """The timed calls, by op name, on `args.frames` frames (and as many seconds of audio)."""
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 2048, (args.frames, 16))
    audio = (0.3 * rng.standard_normal(args.frames * tok.samples_per_frame)).astype(np.float32)
    calls = {
        "decode": lambda: tok.decode(codes),
        "encode": lambda: tok.encode(audio, tok.sample_rate),
        f"stream{args.step}": lambda: stream(tok, codes, args.step),
    }
    return {op: call for op, call in calls.items() if op.rstrip("0123456789") in args.ops.split(",")}


def run_interleaved(tok: SpeechTokenizer, impls: list[str], args: argparse.Namespace) -> dict:
    """`{(impl, op): (times, peak bytes)}`. Repeats cycle through the impls, so a shared machine's
    load drifting over the run biases no formulation."""
    calls = workloads(tok, args)
    warm_up = np.random.default_rng(1).integers(0, 2048, (2, 16))
    for impl in impls:
        set_conv_impl(impl)
        tok.decode(warm_up)  # compiled kernels, allocator pools
    results: dict[tuple[str, str], tuple[list[float], int]] = {}
    for _ in range(args.repeat):
        for impl in impls:
            set_conv_impl(impl)
            for op, call in calls.items():
                mx.reset_peak_memory()
                start = time.perf_counter()
                call()
                elapsed = time.perf_counter() - start
                times, peak = results.get((impl, op), ([], 0))
                results[(impl, op)] = (times + [elapsed], max(peak, mx.get_peak_memory()))
    return results


def stream(tok: SpeechTokenizer, codes: np.ndarray, step: int) -> None:
    decoder = tok.stream_decoder()
    for start in range(0, len(codes), step):
        decoder.decode_step(codes[start : start + step])


def print_row(impl: str, op: str, seconds: float, times: list[float], peak: int) -> None:
    best, median = min(times), statistics.median(times)
    print(f"| {impl:7s} | {op:8s} | {seconds:7.2f} | {best:8.2f} | {median:8.2f} | {median / seconds:10.3f} "
          f"| {best / seconds:10.3f} | {peak / 2**20:8.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--impls", default="native,taps,im2col,matmul",
                        help=f"comma-separated, from {', '.join(CONV_IMPLS)}")
    parser.add_argument("--frames", type=int, default=12, help="12.5 frames = 1 s of audio")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ops", default="decode,encode", help="from decode, encode, stream")
    parser.add_argument("--step", type=int, default=4, help="frames per streaming step")
    args = parser.parse_args()
    impls = args.impls.split(",")
    if unknown := set(impls) - set(CONV_IMPLS):
        parser.error(f"unknown --impls {sorted(unknown)}")
    print(f"MLX {mx.__version__}, device {mx.default_device()}, {os.cpu_count()} CPUs")
    print(f"BLAS: {blas_in_use()}")
    with tempfile.TemporaryDirectory() as tmp:
        tok = SpeechTokenizer.from_pretrained(write_speech_tokenizer(tmp, "0.6b", seed=0))
    print(f"full-size codec, {mx.get_active_memory() / 2**20:.0f} MB of weights, {args.frames} frames")
    print(f"{args.repeat} timed runs per row; peak MB includes the weights\n")
    print("| impl    | op       | audio s |    min s | median s | median s/s |    min s/s |  peak MB |")
    print("|---------|----------|---------|----------|----------|------------|------------|----------|")
    seconds = args.frames * tok.samples_per_frame / tok.sample_rate
    for (impl, op), (times, peak) in run_interleaved(tok, impls, args).items():
        print_row(impl, op, seconds, times, peak)


if __name__ == "__main__":
    main()
