"""Full-size codec speed per convolution formulation, and against the official codec: seconds of
compute per second of audio.

    python bench/codec_speed.py                       # native, taps, im2col, matmul; 12 frames
    python bench/codec_speed.py --impls matmul --frames 300 --repeat 1   # a 24 s exact decode
    python bench/codec_speed.py --impls matmul --ops stream --step 4     # streaming, 4-frame steps
    python bench/codec_speed.py --impls matmul --ops decode --frames 32 --repeat 7 \
        --official-python <venv with qwen-tts>/bin/python                # ours vs official decode

The codec is the full-size 12 Hz tokenizer with random weights (`write_speech_tokenizer(..., "0.6b")`);
speed does not depend on the weights. It computes as the CPU's compute policy says (SnakeBeta,
buffer cache), with each `--impls` convolution formulation in turn; `import mlx_qwen3_tts` loads
MKL on Linux x86-64, so the BLAS the run used is printed first. With `--official-python` the
official `qwen-tts` codec decodes the same codes in a second process (PyTorch, `--threads`), its
runs taken in turn with ours. Rows give min and median over `--repeat` runs, taken in turn per
formulation after an untimed two-frame warm-up, and MLX's peak memory over those runs.
"""

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# isort: off
import mlx_qwen3_tts  # noqa: F401  (first: it loads MKL under MLX)
import mlx.core as mx
# isort: on
import numpy as np

from mlx_qwen3_tts.blas import blas
from mlx_qwen3_tts.models.codec.layers import CONV_IMPLS, use_impls
from mlx_qwen3_tts.speech_tokenizer import SpeechTokenizer
from mlx_qwen3_tts.testing import write_speech_tokenizer

RUNNER = Path(__file__).resolve().parent / "runners" / "official_codec.py"


def workloads(tok: SpeechTokenizer, codes: np.ndarray,
              args: argparse.Namespace) -> dict[str, Callable[[], object]]:
    """The timed calls, by op name, on `args.frames` frames (and as many seconds of audio)."""
    rng = np.random.default_rng(0)
    audio = (0.3 * rng.standard_normal(args.frames * tok.samples_per_frame)).astype(np.float32)
    calls = {
        "decode": lambda: tok.decode(codes),
        "encode": lambda: tok.encode(audio, tok.sample_rate),
        f"stream{args.step}": lambda: stream(tok, codes, args.step),
    }
    return {op: call for op, call in calls.items() if op.rstrip("0123456789") in args.ops.split(",")}


class OfficialCodec:
    """The official codec in its own process (`runners/official_codec.py`), one decode per call."""

    def __init__(self, python: str, folder: Path, threads: int, codes: np.ndarray, tmp: str):
        self.codes_file = Path(tmp) / "codes.npy"
        np.save(self.codes_file, codes)
        self.process = subprocess.Popen([python, str(RUNNER), str(folder), str(threads)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.process.stdout.readline().strip() != "ready":
            raise SystemExit(f"the official codec did not start ({python} {RUNNER}); see its stderr")

    def decode(self) -> float:
        self.process.stdin.write(f"{self.codes_file}\n")
        self.process.stdin.flush()
        seconds, _ = self.process.stdout.readline().split()
        return float(seconds)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def run_interleaved(tok: SpeechTokenizer, impls: list[str], codes: np.ndarray, args: argparse.Namespace,
                    official: OfficialCodec | None) -> dict:
    """`{(system, op): (times, peak bytes)}`. Repeats cycle through the formulations (and the
    official codec), so a shared machine's load drifting over the run biases none of them."""
    calls = workloads(tok, codes, args)
    warm_up = np.random.default_rng(1).integers(0, 2048, (2, 16))
    for impl in impls:
        use_impls(tok.model, impl, tok.policy.snake)
        tok.decode(warm_up)  # compiled kernels, allocator pools
    if official is not None:
        official.decode()
    results: dict[tuple[str, str], tuple[list[float], int | None]] = {}
    for _ in range(args.repeat):
        for impl in impls:
            use_impls(tok.model, impl, tok.policy.snake)
            for op, call in calls.items():
                mx.reset_peak_memory()
                start = time.perf_counter()
                call()
                elapsed = time.perf_counter() - start
                times, peak = results.get((impl, op), ([], 0))
                results[(impl, op)] = (times + [elapsed], max(peak, mx.get_peak_memory()))
        if official is not None:
            times, _ = results.get(("official", "decode"), ([], 0))
            results[("official", "decode")] = (times + [official.decode()], None)
    return results


def stream(tok: SpeechTokenizer, codes: np.ndarray, step: int) -> None:
    decoder = tok.stream_decoder()
    for start in range(0, len(codes), step):
        decoder.decode_step(codes[start : start + step])


def print_row(impl: str, op: str, seconds: float, times: list[float], peak: int | None) -> None:
    best, median = min(times), statistics.median(times)
    peak_mb = "–" if peak is None else f"{peak / 2**20:.0f}"  # the official codec's: not MLX memory
    print(f"| {impl:7s} | {op:8s} | {seconds:7.2f} | {best:8.2f} | {median:8.2f} | {median / seconds:10.3f} "
          f"| {best / seconds:10.3f} | {peak_mb:>8s} |")


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
    parser.add_argument("--size", default="0.6b", help="codec of this testing.py size (default 0.6b: full)")
    parser.add_argument("--official-python", help="python of a venv with qwen-tts 0.1.1: its decode too")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="the official codec's torch threads (default: every CPU)")
    args = parser.parse_args()
    impls = args.impls.split(",")
    if unknown := set(impls) - set(CONV_IMPLS):
        parser.error(f"unknown --impls {sorted(unknown)}")
    print(f"MLX {mx.__version__}, device {mx.default_device()}, {os.cpu_count()} CPUs")
    print(f"BLAS: {blas()}")
    codes = np.random.default_rng(0).integers(0, 2048, (args.frames, 16))
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_speech_tokenizer(tmp, args.size, seed=0)
        tok = SpeechTokenizer.from_pretrained(folder, device="cpu")
        official = None
        if args.official_python:
            official = OfficialCodec(args.official_python, folder, args.threads, codes, tmp)
        print(f"{args.size} codec, {mx.get_active_memory() / 2**20:.0f} MB of weights, {args.frames} frames, "
              f"SnakeBeta: {tok.policy.snake}")
        print(f"{args.repeat} timed runs per row; peak MB includes the weights\n")
        print("| impl    | op       | audio s |    min s | median s | median s/s |    min s/s |  peak MB |")
        print("|---------|----------|---------|----------|----------|------------|------------|----------|")
        seconds = args.frames * tok.samples_per_frame / tok.sample_rate
        try:
            for (impl, op), (times, peak) in run_interleaved(tok, impls, codes, args, official).items():
                print_row(impl, op, seconds, times, peak)
        finally:
            if official is not None:
                official.close()


if __name__ == "__main__":
    main()
