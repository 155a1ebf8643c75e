"""GPU check (issue #20 item 5): parity, bf16 agreement, speed and the server, on one device.

Made to spend a short GPU lease (MLX's CUDA build on an NVIDIA machine) on one prepared command,
and to run here on the CPU as a test of itself:

    python bench/gpu_check.py --device cpu --quick --out /tmp/gpu-check     # tiny checkpoints, < 30 s
    python bench/gpu_check.py --device gpu --out $OUT --max-minutes 6        # on the GPU: bench/gpu_run.sh

Stages, each optional (--skip-parity, --skip-agreement, --skip-timing, --skip-server):

a. parity: every `tests/fixtures/generate_*.npz` (found by glob) on --device in float32 with TF32
   off, greedy; codes must equal the official model's (tools/parity_cases.py sets each case up,
   as tests/test_generate.py does);
b. agreement: bf16 against float32 on --device, greedy: frames until the first differing code
   and the cosine of the prefill's last logits (0.6B and 1.7B CustomVoice; --quick: tiny);
c. timing: 0.6B and 1.7B CustomVoice, bf16 and 8-bit (each system's own converter): frames/s,
   frame loop alone, time to first audio, peak memory, for ours and, when --mlx-audio-python
   can import it, mlx-audio 0.6.2 (bench/runners, one process per row, as bench/benchmark.py);
d. server: one streamed request through the real server (`server.build_app` under uvicorn, the
   model loaded on --device, generation on the server's worker thread): time to first audio byte.

Random full-size checkpoints (EOS row zeroed, so every run makes the frames asked for) are written
by the script itself under --work; --quick uses tiny ones only. `MLX_ENABLE_TF32` defaults to 0
here (set before MLX is first imported, and inherited by every runner): MLX otherwise lets float32 matrix
products run as TF32 on CUDA and Apple M5-class GPUs (~1e-3 relative error), and parity cannot
hold. A stage or row that would start after --max-minutes is marked skipped. Writes
<out>/gpu_check.md (the tables, also printed), gpu_check.json (raw) and gpu_check.log (progress).
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tools"))
import benchmark as bench  # noqa: E402  (bench/ and tools/ are folders, not packages)
import parity_cases  # noqa: E402

# Failures a stage reports in its table instead of ending the run (no blanket catch); the
# library's own errors are added once it is imported (after MLX_ENABLE_TF32 is set).
STAGE_ERRORS = (RuntimeError, ValueError, TypeError, AttributeError, OSError, ImportError, LookupError,
                AssertionError, subprocess.SubprocessError)
FULL_SIZES = ("0.6b", "1.7b")
TIMED_PRECISIONS = ("bf16", "q8-bf16")
QUICK_TIMING = {"bf16": "tiny-0.6b", "q8-bf16": "tiny-q"}  # tiny-q: widths that 8 bits can group
SAMPLE_RATE = 24000
# Defaults of the frame counts: --quick (the CPU test) and a GPU run.
QUICK = {"frames": 6, "split_frames": 0, "decode_frames": 4, "agreement_frames": 8, "server_frames": 12}
FULL = {"frames": 128, "split_frames": 16, "decode_frames": 25, "agreement_frames": 32, "server_frames": 50}


# --------------------------------------------------------------------------- running state


@dataclass
class Check:
    """What every stage shares: options, the clock, the work folder, the log and the results."""

    args: argparse.Namespace
    start: float = field(default_factory=time.perf_counter)
    results: dict[str, Any] = field(default_factory=dict)
    failed: bool = False

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.args.max_minutes * 60 - self.elapsed()

    def progress(self, message: str) -> None:
        line = f"[gpu_check +{self.elapsed():5.1f}s] {message}"
        print(line, flush=True)
        with open(self.args.out / "gpu_check.log", "a") as f:
            f.write(line + "\n")

    def out_of_time(self, need_s: float, what: str) -> dict | None:
        """A skipped row if fewer than `need_s` seconds of the budget are left, else None."""
        if self.left() >= need_s:
            return None
        self.progress(f"skipped {what}: {self.left():.0f} s of the budget left")
        return {"skipped": f"skipped (time budget: {self.args.max_minutes:g} min)"}


def artifacts(check: Check, size: str) -> Path:
    """Where a size's checkpoints and conversions live under --work: tiny ones are rewritten on
    every run (cheap, and a changed writer must leave no stale bytes), full-size ones are kept."""
    return check.args.work / ("tiny" if size.startswith("tiny") else "full")


def checkpoint(check: Check, size: str, variant: str = "custom_voice", **writer_kwargs) -> Path:
    """A seed-0 random checkpoint, written once (whole folders only)."""
    from mlx_qwen3_tts.testing import write_checkpoint

    tag = "".join(f"-{k}{v:g}" for k, v in sorted(writer_kwargs.items()))
    path = artifacts(check, size) / "checkpoints" / f"{size}-{variant}-seed0{tag}"
    if not (path / "speech_tokenizer" / "model.safetensors").is_file():
        check.progress(f"writing a random {size} {variant} checkpoint{tag} to {path}")
        tmp = path.with_name(path.name + f".partial-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        write_checkpoint(tmp, size, variant, seed=0, **writer_kwargs)
        tmp.rename(path)
    return path


def load(folder: Path, device: str, dtype: str | None = None):
    """`qt.load` on `device`; no dtype argument when none is given (the default policy)."""
    import mlx_qwen3_tts as qt

    return qt.load(folder, device=device, **({"dtype": dtype} if dtype else {}))


def stage_errors() -> tuple[type[BaseException], ...]:
    from mlx_qwen3_tts import Qwen3TTSError

    return (*STAGE_ERRORS, Qwen3TTSError)


def run_stage(check: Check, name: str, stage: Callable[[Check], list[dict]]) -> None:
    """Run one stage; an error becomes its table's only row (and a failed check)."""
    check.progress(f"stage {name}")
    try:
        check.results[name] = stage(check)
    except stage_errors() as e:
        check.failed = True
        check.progress(f"stage {name} failed:\n{traceback.format_exc()}")
        check.results[name] = [{"error": f"{type(e).__name__}: {e}"[:300]}]


# --------------------------------------------------------------------------- a. parity


def snr_db(ours: np.ndarray, ref: np.ndarray) -> float:
    ref = ref.astype(np.float64)
    return float(10 * np.log10(np.sum(ref**2) / max(np.sum((ours.astype(np.float64) - ref) ** 2), 1e-30)))


def prompt_of(tts, kwargs: dict):
    """The prompt `generate(**kwargs)` builds for its first piece."""
    return tts.job(**kwargs).requests[0].prompt


def parity_row(tts, case: parity_cases.Case) -> dict:
    kwargs = case.generate_kwargs(tts)
    fx = case.fixture
    prefill_diff = float(np.max(np.abs(np.array(prompt_of(tts, kwargs).prefill) - fx["prefill"])))
    start = time.perf_counter()
    result = tts.generate(**kwargs, **case.run_kwargs())
    seconds = time.perf_counter() - start
    ref, codes = fx["codes"], result.codes
    n = min(len(ref), len(codes))
    differ = np.flatnonzero((codes[:n] != ref[:n]).any(axis=1))
    first = int(differ[0]) if differ.size else (None if len(codes) == len(ref) else n)
    equal = first is None and (not case.stops_by_eos or result.finish_reason == "eos")
    # The EOS fixtures hold codes only: no audio to compare.
    same_shape = "audio" in fx and result.audio.shape == fx["audio"].shape
    return {"case": case.name, "checkpoint": case.checkpoint, "frames": len(ref), "ours_frames": len(codes),
            "equal": equal, "first_diff": first, "finish": result.finish_reason,
            "prefill_max_abs": prefill_diff, "seconds": seconds,
            "snr_db": snr_db(result.audio, fx["audio"]) if same_shape else None}


def stage_parity(check: Check) -> list[dict]:
    device, rows, models = check.args.device, [], {}

    def write(size: str, variant: str, **writer_kwargs) -> Path:
        return checkpoint(check, size, variant, **writer_kwargs)

    for path in parity_cases.fixture_paths():
        skipped = check.out_of_time(5, path.name)
        if skipped:
            rows.append({"case": path.stem.removeprefix("generate_"), **skipped})
            continue
        case = parity_cases.find_case(path, write)
        folder = write(case.size, case.variant, **case.writer_kwargs)
        if folder not in models:
            models[folder] = load(folder, device, "float32")
        row = parity_row(models[folder], case)
        check.progress(f"parity {case.name}: {'equal' if row['equal'] else 'DIFFERENT'} "
                       f"({row['frames']} frames, {row['seconds']:.1f} s)")
        check.failed |= not row["equal"]
        rows.append(row)
    for tts in models.values():
        tts.close()
    return rows


# --------------------------------------------------------------------------- b. agreement


def greedy_request(tts, frames: int):
    """The benchmark text's one request, greedy, exactly `frames` frames (no runaway guard)."""
    job = tts.job(bench.TEXT, speaker=bench.SPEAKER, language=bench.LANGUAGE, seed=0, max_frames=frames,
                  runaway_guard=False, **parity_cases.GREEDY)
    return job.requests[0]


def codes_and_logits(tts, request) -> tuple[np.ndarray, np.ndarray]:
    """`(codes [frames, 16], the prefill's last talker logits [V] in float32)`, on the model's thread."""
    import mlx.core as mx

    def run():
        (codes, _), = tts.engine.codes([request])
        logits, _ = tts.engine.model.talker(request.prompt.prefill[None])
        return codes, np.array(logits[0, -1].astype(mx.float32))

    return tts.thread.run(run)


def agreement_row(check: Check, size: str, folder: Path) -> dict:
    frames = check.args.agreement_frames
    runs = {}
    for dtype in ("float32", "bfloat16"):
        tts = load(folder, check.args.device, dtype)
        runs[dtype] = codes_and_logits(tts, greedy_request(tts, frames))
        tts.close()
    (a, la), (b, lb) = runs["float32"], runs["bfloat16"]
    n = min(len(a), len(b))
    differ = np.flatnonzero((a[:n] != b[:n]).any(axis=1))
    differ_c0 = np.flatnonzero(a[:n, 0] != b[:n, 0])
    cosine = float(np.dot(la, lb) / (np.linalg.norm(la) * np.linalg.norm(lb)))
    return {"size": size, "frames": n, "first_diff": int(differ[0]) if differ.size else n,
            "first_diff_c0": int(differ_c0[0]) if differ_c0.size else n, "cosine": cosine,
            "top1_equal": bool(np.argmax(la) == np.argmax(lb)), "max_abs": float(np.max(np.abs(la - lb)))}


def stage_agreement(check: Check) -> list[dict]:
    rows = []
    for size in check.args.model_sizes:
        skipped = check.out_of_time(10 if check.args.quick else 60, f"agreement {size}")
        if skipped:
            rows.append({"size": size, **skipped})
            continue
        row = agreement_row(check, size, checkpoint(check, size, eos_scale=0.0))
        check.progress(f"agreement {size}: first differing frame {row['first_diff']} of {row['frames']}, "
                       f"logit cosine {row['cosine']:.6f}")
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- c. timing


def runner_args(check: Check) -> argparse.Namespace:
    """bench/benchmark.py's options, as its runner helpers read them."""
    a = check.args
    return argparse.Namespace(
        python={"ours": sys.executable, "mlx-audio": a.mlx_audio_python or "", "official": ""},
        timeouts={s: a.run_timeout for s in bench.SYSTEMS}, frames=a.frames, official_frames=a.frames,
        split_frames=a.split_frames, decode_frames=a.decode_frames, decode_repeats=1,
        mlx_audio_decode_frames=a.decode_frames,
        greedy=False, threads=a.threads, no_ttfa=False)


def system_env(check: Check, system: str) -> dict:
    """Each system's environment; mlx-audio's own packages go first on its PYTHONPATH only."""
    folder = check.args.mlx_audio_path if system == "mlx-audio" else None
    return bench.prepend_pythonpath(bench.base_env(check.args.threads), folder)


def timed_systems(check: Check) -> dict[str, str | None]:
    """{system: None if it can run here, else why not}."""
    systems = {"ours": None}
    python = check.args.mlx_audio_python
    systems["mlx-audio"] = (bench.available("mlx-audio", python, system_env(check, "mlx-audio"))
                            if python else "no --mlx-audio-python given")
    return systems


def timing_model(check: Check, system: str, size: str, pname: str,
                 logs: Path) -> tuple[Path | None, str | None]:
    """The folder a row runs: the float checkpoint, or `system`'s own 8-bit conversion of it."""
    source = checkpoint(check, size, eos_scale=0.0)
    bits = bench.PRECISIONS[pname].bits
    if bits is None:
        return source, None
    python = runner_args(check).python[system]
    model, why = bench.quantized(artifacts(check, size), system, size, bits, source, python, logs,
                                 system_env(check, system))
    if model is None:
        log_tail(check, logs / f"convert-{system}-{size}-q{bits}.log")
    return model, why


def log_tail(check: Check, path: Path, lines: int = 30) -> None:
    """A failed subprocess's log stays on the machine: its tail goes into gpu_check.log."""
    text = path.read_text(errors="replace").splitlines()[-lines:] if path.is_file() else ["(no log)"]
    check.progress(f"{path.name} ends:\n" + "\n".join(text))


def timing_row(check: Check, system: str, size: str, pname: str, logs: Path) -> dict:
    model, why = timing_model(check, system, size, pname, logs)
    if model is None:
        return {"skipped": why}
    rargs = runner_args(check)
    rargs.timeouts = {s: max(30.0, min(check.args.run_timeout, check.left() - 10)) for s in rargs.timeouts}
    spec = bench.speed_spec(system, size, bench.PRECISIONS[pname], model, rargs)
    spec["device"] = check.args.device
    tag = f"{system}-{size}-{pname}"
    r = bench.run_one(system, spec, rargs, tag, logs, system_env(check, system))
    if r.get("error"):
        log_tail(check, logs / f"{tag}.log")
        return {"error": r["error"][:200]}
    m = bench.metrics(r)
    return {**{k: m.get(k) for k in ("fps", "loop_fps", "ttfa_s", "decode_per_audio_s", "peak_mlx_gb",
                                    "peak_rss_gb", "load_s")}, "frames": r["loop"]["frames"],
            "talker_dtype": r.get("talker_dtype"), "device": r.get("device")}


def stage_timing(check: Check) -> list[dict]:
    logs = check.args.work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    systems, rows = timed_systems(check), []
    for size in check.args.model_sizes:
        for pname in TIMED_PRECISIONS:
            for system, why in systems.items():
                model_size = QUICK_TIMING[pname] if check.args.quick else size
                row = {"size": model_size, "precision": pname, "system": system}
                # Full size: a conversion (8 bits) and a runner process; neither stops at the budget.
                need = 10 if check.args.quick else (120 if bench.PRECISIONS[pname].bits else 60)
                done = ({"skipped": f"skipped: {why}"[:160]} if why
                        else check.out_of_time(need, f"timing {system} {model_size} {pname}")
                        or timing_row(check, system, model_size, pname, logs))
                rows.append({**row, **done})
                check.progress(f"timing {system} {model_size} {pname}: "
                               + (done.get("skipped") or done.get("error") or f"{done['fps']:.2f} frames/s"))
                check.failed |= "error" in done
    return rows


# --------------------------------------------------------------------------- d. server


def stream_speech(url: str, text: str, timeout: float) -> dict:
    """POST one speech request (pcm, streamed) and read it as it arrives."""
    body = json.dumps({"model": "tts-1", "input": text, "voice": "alloy", "response_format": "pcm",
                       "seed": 0}).encode()
    request = urllib.request.Request(url + "/v1/audio/speech", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    start, first, chunks = time.perf_counter(), None, []
    with urllib.request.urlopen(request, timeout=timeout) as response:
        status = response.status
        while chunk := response.read1(65536):
            first = first or time.perf_counter() - start
            chunks.append(chunk)
    pcm = np.frombuffer(b"".join(chunks), "<i2")
    return {"status": status, "first_byte_s": first, "total_s": time.perf_counter() - start,
            "audio_s": len(pcm) / SAMPLE_RATE, "chunks": len(chunks),
            "peak": float(np.abs(pcm).max() / 32768) if len(pcm) else 0.0}


def stage_server(check: Check) -> list[dict]:
    from mlx_qwen3_tts import server

    size = "tiny-0.6b" if check.args.quick else check.args.model_sizes[0]
    skipped = check.out_of_time(10 if check.args.quick else 60, "server")
    if skipped:
        return [{"model": size, **skipped}]
    tts = load(checkpoint(check, size, eos_scale=0.0), check.args.device)
    app = server.build_app(tts, max_frames=check.args.server_frames)
    with server.serve_in_thread(app) as url:
        stream_speech(url, "Warm up.", 120)
        row = stream_speech(url, bench.TEXT, max(30.0, check.left()))
    dtype = str(tts.model.talker.model.norm.weight.dtype).removeprefix("mlx.core.")
    row.update(model=size, device="gpu" if "gpu" in str(tts.device) else "cpu", talker_dtype=dtype)
    tts.close()
    check.progress(f"server: HTTP {row['status']}, first audio byte after {row['first_byte_s']:.2f} s, "
                   f"{row['audio_s']:.2f} s of audio")
    check.failed |= row["status"] != 200 or row["audio_s"] <= 0
    return [row]


# --------------------------------------------------------------------------- report


def fmt(value: Any, spec: str) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    return format(value, spec) if spec else str(value)


def md_table(columns: list[tuple[str, str, str]], rows: list[dict]) -> str:
    """`columns`: (key, header, format spec); a skipped or failed row shows why after its first cell."""
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        why = row.get("skipped") or (f"error: {row['error']}" if "error" in row else None)
        if why:
            lead = [fmt(row.get(k), f) for k, _, f in columns[:3] if k in row]
            lines.append("| " + " | ".join(lead + [why] + [""] * (len(columns) - len(lead) - 1)) + " |")
        else:
            lines.append("| " + " | ".join(fmt(row.get(k), f) for k, _, f in columns) + " |")
    return "\n".join(lines)


PARITY_COLUMNS = [("case", "fixture", ""), ("checkpoint", "checkpoint", ""), ("frames", "frames", "d"),
                  ("equal", "codes equal", ""), ("first_diff", "first differing frame", ""),
                  ("finish", "finish", ""), ("prefill_max_abs", "prompt max abs diff", ".1e"),
                  ("snr_db", "audio SNR dB", ".0f"), ("seconds", "s", ".2f")]
AGREEMENT_COLUMNS = [("size", "size", ""), ("frames", "frames", "d"),
                     ("first_diff", "frames until the first differing code", ""),
                     ("first_diff_c0", "... in codebook 0", ""), ("cosine", "prefill logit cosine", ".6f"),
                     ("top1_equal", "same top-1", ""), ("max_abs", "max abs logit diff", ".3g")]
TIMING_COLUMNS = [("size", "size", ""), ("precision", "precision", ""), ("system", "system", ""),
                  ("load_s", "load s", ".1f"), ("fps", "frames/s", ".2f"),
                  ("loop_fps", "loop frames/s (prefill excl.)", ".2f"), ("ttfa_s", "TTFA s", ".3f"),
                  ("decode_per_audio_s", "decode s per audio s", ".3f"),
                  ("peak_mlx_gb", "peak MLX GB", ".2f"), ("peak_rss_gb", "max RSS GB", ".2f")]
SERVER_COLUMNS = [("model", "model", ""), ("device", "device", ""), ("talker_dtype", "talker dtype", ""),
                  ("status", "HTTP", ""), ("first_byte_s", "first audio byte s", ".3f"),
                  ("total_s", "total s", ".2f"), ("audio_s", "audio s", ".2f"), ("chunks", "chunks", ""),
                  ("peak", "peak level", ".3f")]
SECTIONS = [
    ("parity", "a. Parity: official fixtures, greedy, float32 (TF32 off)", PARITY_COLUMNS),
    ("agreement", "b. bf16 against float32, greedy", AGREEMENT_COLUMNS),
    ("timing", "c. Speed, CustomVoice, sampling", TIMING_COLUMNS),
    ("server", "d. One streamed request through the server (pcm)", SERVER_COLUMNS),
]


def environment(args) -> dict:
    import mlx.core as mx

    info = {"date": time.strftime("%Y-%m-%d %H:%M"), "device": args.device, "mlx": mx.__version__,
            "mlx_default_device": str(mx.default_device()), "quick": args.quick,
            "mlx_gpu_available": mx.is_available(mx.gpu),
            "MLX_ENABLE_TF32": os.environ.get("MLX_ENABLE_TF32"), "python": sys.version.split()[0],
            "platform": platform.platform()}
    try:
        smi = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
        info["gpu"] = smi.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["gpu"] = None
    return info


def report(check: Check, env: dict) -> str:
    a = check.args
    quick = " (--quick: tiny checkpoints)" if env["quick"] else ""
    backend = "present" if env["mlx_gpu_available"] else "ABSENT"
    out = [f"## GPU check, {env['date']}: device {env['device']}{quick}",
           "",
           f"- {env['gpu'] or env['platform']}; MLX {env['mlx']} (default device "
           f"{env['mlx_default_device']}, GPU backend {backend}), "
           f"MLX_ENABLE_TF32={env['MLX_ENABLE_TF32']}, Python {env['python']}",
           f"- random checkpoints (seed 0); timing: {a.frames} frames, decode {a.decode_frames} frames; "
           f"wall time {check.elapsed():.0f} s of a {a.max_minutes:g}-minute budget"]
    for key, title, columns in SECTIONS:
        if key in check.results:
            out += ["", f"### {title}", "", md_table(columns, check.results[key])]
    return "\n".join(out)


# --------------------------------------------------------------------------- main


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--device", default="gpu", choices=["gpu", "cpu"])
    p.add_argument("--quick", action="store_true", help="tiny checkpoints and few frames (the CPU test)")
    p.add_argument("--out", type=Path, required=True, help="folder for gpu_check.{md,json,log}")
    p.add_argument("--work", type=Path, default=Path("/tmp/mlx_qwen3_tts_gpu_check"),
                   help="checkpoints, converted folders and runner logs (default %(default)s)")
    p.add_argument("--max-minutes", type=float, default=9.0, help="time budget (default %(default)s)")
    p.add_argument("--sizes", default=",".join(FULL_SIZES),
                   help="full-size models of b-d (default %(default)s)")
    for stage in ("parity", "agreement", "timing", "server"):
        p.add_argument(f"--skip-{stage}", action="store_true", help=f"skip stage {stage}")
    p.add_argument("--frames", type=int, help="frames of a timed loop (default 128; quick 6)")
    p.add_argument("--split-frames", type=int, help="talker/predictor split frames (16; quick 0)")
    p.add_argument("--decode-frames", type=int, help="frames decoded for the codec (25; quick 4)")
    p.add_argument("--agreement-frames", type=int, help="greedy frames of b (32; quick 8)")
    p.add_argument("--server-frames", type=int, help="frame cap of the request in d (50; quick 12)")
    p.add_argument("--run-timeout", type=float, default=300, help="seconds per timing process")
    p.add_argument("--threads", type=int, default=2, help="CPU threads of the timing processes")
    p.add_argument("--mlx-audio-python", default=None,
                   help="python that imports mlx-audio 0.6.2 (GPU machine: python3); without it, "
                        "its rows are skipped")
    p.add_argument("--mlx-audio-path", default=None,
                   help="folder put first on mlx-audio's PYTHONPATH only (GPU machine: /tmp/site-ma)")
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.model_sizes = ["tiny-0.6b"] if args.quick else [s for s in args.sizes.split(",") if s]
    bad = [s for s in args.model_sizes if s not in FULL_SIZES + ("tiny-0.6b",)]
    if bad:
        p.error(f"--sizes: unknown {bad}; choose from {', '.join(FULL_SIZES)}")
    return args


def main(argv=None) -> int:
    # Before anything imports MLX (here and in the runners, which inherit it): exact float32.
    os.environ.setdefault("MLX_ENABLE_TF32", "0")
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.log").unlink(missing_ok=True)
    shutil.rmtree(args.work / "tiny", ignore_errors=True)
    check = Check(args)
    env = environment(args)
    check.progress(f"device {args.device}, MLX {env['mlx']}, MLX_ENABLE_TF32={env['MLX_ENABLE_TF32']}, "
                   f"{env['gpu'] or 'no NVIDIA GPU seen'}; budget {args.max_minutes:g} min")
    # Cheapest and most telling first: parity and the server, then agreement, then timing.
    stages = [("parity", stage_parity), ("server", stage_server), ("agreement", stage_agreement),
              ("timing", stage_timing)]
    try:
        for name, stage in stages:
            if not getattr(args, f"skip_{name}"):
                run_stage(check, name, stage)
    finally:  # whatever escaped, the tables of what ran are written
        write_report(check, env)
    return 1 if check.failed else 0


def write_report(check: Check, env: dict) -> None:
    args = check.args
    text = report(check, env)
    print("\n" + text + "\n", flush=True)
    (args.out / "gpu_check.md").write_text(text + "\n")
    record = {"environment": env, "args": {k: str(v) for k, v in vars(args).items()}, **check.results,
              "failed": check.failed}
    (args.out / "gpu_check.json").write_text(json.dumps(record, indent=1, default=str))
    check.progress(f"wrote {args.out / 'gpu_check.md'}; {'FAILED' if check.failed else 'ok'}")


if __name__ == "__main__":
    sys.exit(main())
