"""Speed benchmark: mlx_qwen3_tts vs mlx-audio's Qwen3-TTS vs the official qwen-tts, same files.

Writes (once, then reuses) random-weight full-size checkpoints in the released layout with the
EOS row of the codec head zeroed, so every run makes exactly the frames asked for. Each system
runs in its own virtualenv and process (`bench/runners/*.py`), one process per repetition, with
the same thread count. A precision is a weight format plus an activation dtype:

    bf16      bfloat16 weights, bfloat16 activations (the released files as they are)
    fp32      the same file cast to float32 at load
    q8-bf16   8-bit weights (each system's own converter), bfloat16 activations
    q4-bf16   4-bit weights, bfloat16 activations
    q8-fp32   8-bit weights, float32 activations (scales cast at load)
    q4-fp32   4-bit weights, float32 activations
    defaults  the bf16 file as each system loads it with no dtype argument and (for MLX) no
              LD_PRELOAD: what a new user gets after `pip install`

On Linux, MLX's CPU wheel links a slow reference BLAS, and MLX calls only `cblas_sgemm`
(also for a one-row matrix-vector product), so the BLAS decides the speed of every float32
step. --blas mkl (`mkl`, a dependency of ours on Linux x86-64) starts the MLX runners with
LD_PRELOAD=<venv>/lib/libmkl_rt.so.3: MKL's sgemm streams a 1 x K by K x N product at memory
speed, where OpenBLAS 0.3.21 first packs the weight (~3x slower). --blas openblas
(`apt-get install -y libopenblas0-pthread`) preloads
<dpkg -L libopenblas0-pthread>/openblas-pthread/libblas.so.3. auto takes MKL, else OpenBLAS.
Both MLX systems always get the same library. PyTorch uses its own MKL either way. Every runner
reports the BLAS libraries mapped into it (/proc/self/maps).

    python bench/benchmark.py --quick                     # 0.6b, fp32+bf16, 1 rep, 16 frames
    python bench/benchmark.py --sizes 0.6b --precisions fp32,bf16,q8-fp32 --reps 3
    python bench/benchmark.py --help

See bench/README.md for what every column means.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RUNNERS = HERE / "runners"
DEFAULT_CACHE = Path(os.environ.get("MLX_QWEN3_TTS_BENCH_DIR", "/tmp/mlx_qwen3_tts_bench"))
FRAME_RATE = 12.5
TEXT = ("The quick brown fox jumps over the lazy dog, then it runs far away into the quiet "
        "green forest behind the old stone house.")
SPEAKER, LANGUAGE = "vivian", "english"
REF_TEXT = "This is a short recording of my own voice, made for the benchmark."
LONG_SENTENCES = [
    "The morning train left the station a little after seven, half empty and very quiet.",
    "A woman in a green coat read the same page of her book three times without noticing.",
    "Outside, the fields were still white with frost, and the river moved slowly under the ice.",
    "Nobody spoke until the conductor came through, asking for tickets in a tired, friendly voice.",
    "By nine the sun had climbed over the hills, and the whole valley seemed to wake at once.",
]


@dataclass(frozen=True)
class Precision:
    name: str
    bits: int | None  # None: float weights (the bf16 file)
    activation: str | None  # "bfloat16", "float32", or None: the system's default, no BLAS preload

    @property
    def label(self) -> str:
        if self.activation is None:
            return "defaults"
        act = "bf16" if self.activation == "bfloat16" else "fp32"
        return act if self.bits is None else f"{self.bits}-bit/{act}"


PRECISIONS = {p.name: p for p in [
    Precision("bf16", None, "bfloat16"), Precision("fp32", None, "float32"),
    Precision("q8-bf16", 8, "bfloat16"), Precision("q4-bf16", 4, "bfloat16"),
    Precision("q8-fp32", 8, "float32"), Precision("q4-fp32", 4, "float32"),
    Precision("defaults", None, None),
]}
SYSTEMS = {
    # name: (runner script, import check, default venv python)
    "ours": ("ours.py", "import mlx_qwen3_tts", "/work/venv/bin/python"),
    "mlx-audio": ("mlxaudio.py", "import mlx_audio.tts, mlx_audio.tts.models.qwen3_tts",
                  "/work/mlxaudio-venv/bin/python"),
    "official": ("official.py", "import importlib.util as u; assert u.find_spec('qwen_tts') and "
                 "u.find_spec('torch')", "/work/refvenv/bin/python"),
}
MLX_SYSTEMS = ("ours", "mlx-audio")
# Disk needed per folder (GB), checked before writing: checkpoint / converted quantized folder.
CHECKPOINT_GB = {"0.6b": 2.5, "1.7b": 4.6}
QUANTIZED_GB = {"0.6b": 1.8, "1.7b": 3.0}
DISK_MARGIN_GB = 2.0


def log(*args) -> None:
    print("[INFO]", *args, flush=True)


# --------------------------------------------------------------------------- environment


def mkl_path(python: str) -> str | None:
    """`libmkl_rt.so.*` of the `mkl` wheel installed in the venv of `python`, if any."""
    lib = Path(python).parent.parent / "lib"
    found = sorted(lib.glob("libmkl_rt.so*")) if lib.is_dir() else []
    return str(found[-1]) if found else None


def blas_label(args) -> str:
    """The BLAS the MLX runners get, as the log and the report name it."""
    if not args.blas_path:
        return "bundled reference BLAS"
    return f"{getattr(args, 'blas_name', 'openblas')} via LD_PRELOAD={args.blas_path}"


def openblas_path() -> str | None:
    """`openblas-pthread/libblas.so.3` of the Debian package libopenblas0-pthread, if installed."""
    try:
        out = subprocess.run(["dpkg", "-L", "libopenblas0-pthread"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    found = [line for line in out.splitlines() if line.endswith("openblas-pthread/libblas.so.3")]
    default = "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3"
    return found[0] if found else (default if Path(default).exists() else None)


def machine_info() -> dict:
    info = {"platform": platform.platform(), "nproc": os.cpu_count(),
            "loadavg_start": os.getloadavg(), "started": time.strftime("%Y-%m-%d %H:%M")}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=30).stdout
        info["lscpu_head"] = lscpu.splitlines()[:10]
        info["cpu"] = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                            if line.startswith("Model name")), "?")
    except (OSError, subprocess.TimeoutExpired):
        info["cpu"] = platform.processor()
    try:
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        info["mem_gb"] = int(mem) * 1024 / 1e9
    except (OSError, IndexError, ValueError):
        pass
    return info


def read_bandwidth(threads: int, gib: float = 1.0, repeats: int = 5) -> dict:
    """Streaming-read bandwidth: numpy `max` over a float32 array larger than any cache, best run.

    `max` is a vectorised pure read; `sum` is not (its pairwise summation ran at about half
    the speed of `max` and of a BLAS gemv here). With several threads each reads its own slice
    (numpy releases the GIL in reductions).
    """
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    a = np.ones(int(gib * 2**30) // 4, dtype=np.float32)
    parts = np.array_split(a, threads)
    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(repeats):
            start = time.perf_counter()
            list(pool.map(np.max, parts))
            best = min(best, time.perf_counter() - start)
    return {"gb_per_s": a.nbytes / best / 1e9, "threads": threads, "bytes": a.nbytes,
            "method": f"numpy float32 max over {gib:g} GiB, {threads} thread(s), best of {repeats}"}


def available(system: str, python: str, env: dict | None = None) -> str | None:
    """None if `python` can import the system (in `env`, default this process's), else why not."""
    if not Path(python).exists() and not shutil.which(python):
        return f"{python} not found"
    check = SYSTEMS[system][1]
    try:
        r = subprocess.run([python, "-c", check], capture_output=True, text=True, timeout=300,
                           env={**(env or os.environ), "HF_HUB_OFFLINE": "1"})
    except subprocess.TimeoutExpired:
        return "import check timed out"
    return None if r.returncode == 0 else (r.stderr.strip().splitlines() or ["import failed"])[-1]


def free_gb(path: Path) -> float:
    path.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(path).free / 1e9


def need_disk(path: Path, gb: float, what: str) -> None:
    free = free_gb(path)
    if free < gb + DISK_MARGIN_GB:
        raise SystemExit(f"Not enough disk for {what}: {free:.1f} GB free under {path}, need "
                         f"{gb + DISK_MARGIN_GB:.1f} GB. Free space or pass --cache-dir elsewhere.")


def run_cmd(cmd: list[str], log_path: Path, timeout: float, env: dict | None = None) -> tuple[int, float]:
    """Run `cmd` in its own process group, output to `log_path`; kill the group on timeout.

    Returns (exit code or -9 on timeout, seconds).
    """
    start = time.perf_counter()
    with open(log_path, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                env=env or os.environ.copy(), start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = -9
    return code, time.perf_counter() - start


def base_env(threads: int) -> dict:
    env = os.environ.copy()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
        env[var] = str(threads)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONUNBUFFERED="1", TQDM_DISABLE="1")
    env.pop("LD_PRELOAD", None)
    return env


def prepend_pythonpath(env: dict, folder: str | None) -> dict:
    """`env` with `folder` first on PYTHONPATH: a system's own packages that must not shadow the
    others' (mlx-audio's on the GPU machine, where every system shares one python)."""
    if folder:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (folder, env.get("PYTHONPATH")) if p)
    return env


# --------------------------------------------------------------------------- model files


def checkpoint(cache: Path, size: str, variant: str, python: str, logs: Path) -> Path:
    """The random checkpoint of `size` (a full size or a tiny one; EOS row zeroed), written once
    under `cache`."""
    path = cache / "checkpoints" / f"{size}-{variant}-seed0-eos0"
    if (path / "speech_tokenizer" / "model.safetensors").is_file():
        return path
    need_disk(cache, CHECKPOINT_GB.get(size, 0.0), f"the {size} {variant} checkpoint")
    tmp = path.with_name(path.name + f".partial-{os.getpid()}")
    log(f"writing a random {size} {variant} checkpoint to {path} (once; a minute or more)")
    code = (
        "from mlx_qwen3_tts.testing import write_checkpoint; import sys; "
        "write_checkpoint(sys.argv[1], size=sys.argv[2], variant=sys.argv[3], seed=0, eos_scale=0.0)"
    )
    rc, _ = run_cmd([python, "-c", code, str(tmp), size, variant], logs / f"write-{size}-{variant}.log", 3600)
    if rc != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SystemExit(f"writing {path} failed; see {logs / f'write-{size}-{variant}.log'}")
    tmp.rename(path)
    return path


def quantized(cache: Path, system: str, size: str, bits: int, source: Path, python: str,
              logs: Path, env: dict | None = None) -> tuple[Path | None, str | None]:
    """A `bits`-bit folder made by `system`'s own converter from `source`: (path, None) or (None, why).

    `env`: the converter's environment (default: `base_env(2)`).
    """
    path = cache / system / f"{size}-custom_voice-q{bits}"
    if (path / "config.json").is_file():
        return path, None
    need_disk(cache, QUANTIZED_GB.get(size, 0.1), f"the {system} {bits}-bit {size} folder")
    tmp = path.with_name(path.name + f".partial-{os.getpid()}")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    if system == "ours":
        cmd = [python, str(ROOT / "convert.py"), "--hf-path", str(source), "--mlx-path", str(tmp),
               "-q", "--q-bits", str(bits)]
    else:  # mlx-audio; without --model-domain it asks the network what the model is
        cmd = [python, "-m", "mlx_audio.convert", "--hf-path", str(source), "--mlx-path", str(tmp),
               "--model-domain", "tts", "-q", "--q-bits", str(bits)]
    log(f"converting {size} to {bits} bits with {system}'s converter -> {path}")
    name = f"convert-{system}-{size}-q{bits}.log"
    rc, _ = run_cmd(cmd, logs / name, 3600, env or base_env(2))
    if rc != 0 or not (tmp / "config.json").is_file():
        shutil.rmtree(tmp, ignore_errors=True)
        return None, f"n/a ({system}'s converter failed, see {name})"
    tmp.rename(path)
    return path, None


def model_for(system: str, size: str, precision: Precision, files: dict) -> tuple[Path | None, str | None]:
    if precision.bits is None:
        return files[("ckpt", size)], None
    if system == "official":
        return None, "n/a (qwen-tts has no quantized path)"
    return files.get((system, size, precision.bits), (None, "n/a (not available)"))


# --------------------------------------------------------------------------- running


def run_one(system: str, spec: dict, args, tag: str, logs: Path, env: dict) -> dict:
    """One runner process; returns its result (or an error record)."""
    spec_path = logs / f"{tag}.spec.json"
    out_path = logs / f"{tag}.result.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    out_path.unlink(missing_ok=True)
    cmd = [args.python[system], str(RUNNERS / SYSTEMS[system][0]), "--spec", str(spec_path),
           "--out", str(out_path)]
    rc, wall = run_cmd(cmd, logs / f"{tag}.log", args.timeouts[system], env)
    result = json.loads(out_path.read_text()) if out_path.is_file() else {}
    result.update(system=system, tag=tag, wall_s=wall, returncode=rc, requested_frames=spec.get("frames"))
    if rc == -9:
        result["error"] = f"timeout (> {args.timeouts[system]:.0f} s)"
    elif rc != 0 and "error" not in result:
        result["error"] = f"exit code {rc}, see {logs / (tag + '.log')}"
    return result


def speed_spec(system: str, size: str, precision: Precision, model: Path, args) -> dict:
    frames = args.official_frames if system == "official" else args.frames
    decode = args.mlx_audio_decode_frames if system == "mlx-audio" else args.decode_frames
    repeats = 1 if system == "mlx-audio" else args.decode_repeats  # mlx-audio: ~1 min per decode
    return {"system": system, "mode": "speed", "size": size, "precision": precision.name,
            "model": str(model), "dtype": precision.activation, "text": TEXT, "speaker": SPEAKER,
            "language": LANGUAGE, "seed": 0, "greedy": args.greedy, "threads": args.threads,
            "frames": frames, "warmup_frames": 2, "split_frames": min(args.split_frames, frames),
            "decode_frames": decode, "decode_repeats": repeats, "ttfa": not args.no_ttfa,
            "first_chunk_frames": 2}


def runner_env(system: str, args, precision: Precision | None = None) -> dict:
    """The runner's environment: thread limits, and the BLAS preload for MLX systems, except in
    the defaults row (a new user sets no LD_PRELOAD)."""
    env = base_env(args.threads)
    defaults = precision is not None and precision.activation is None
    if system in MLX_SYSTEMS and args.blas_path and not defaults:
        env["LD_PRELOAD"] = args.blas_path
    if system == "ours" and not defaults and getattr(args, "blas_name", "") != "mkl":
        # Ours loads MKL itself (mlx_qwen3_tts/blas.py); another BLAS asked for must stay.
        env["MLX_QWEN3_TTS_MKL"] = "0"
    return env


def long_text(chars: int) -> str:
    text, i = "", 0
    while len(text) < chars:
        text += ("" if not text else " ") + LONG_SENTENCES[i % len(LONG_SENTENCES)]
        i += 1
    return text[: chars - 1].rstrip(" ,.") + "."


def run_speed(args, files: dict, logs: Path, results: list[dict], save) -> None:
    """Every speed run, appended to `results`; `save()` after each keeps a partial record."""
    dead = {}
    for rep in range(args.reps):
        for size in args.sizes:
            for pname in args.precisions:
                precision = PRECISIONS[pname]
                for system in args.systems:
                    key = (size, pname, system)
                    model, why = model_for(system, size, precision, files)
                    if model is None or key in dead:
                        if rep == 0 and model is None:
                            results.append({"system": system, "size": size, "precision": pname,
                                            "rep": rep, "skipped": why})
                        continue
                    tag = f"{system}-{size}-{pname}-rep{rep}"
                    spec = speed_spec(system, size, precision, model, args)
                    r = run_one(system, spec, args, tag, logs, runner_env(system, args, precision))
                    r.update(size=size, precision=pname, rep=rep)
                    results.append(r)
                    save()
                    status = r.get("error") or f"{fps(r):.3f} frames/s, {r['wall_s']:.0f} s"
                    log(f"rep {rep + 1}/{args.reps} {size} {precision.label:<10} {system:<9} {status}")
                    if r.get("error", "").startswith("timeout"):
                        dead[key] = True  # later repetitions would time out too


def run_extras(args, files: dict, logs: Path, results: list[dict], save) -> None:
    """Ours only: voice-clone prefill with/without the cached voice prefix; long-text memory."""
    env = runner_env("ours", args)
    common = {"system": "ours", "dtype": args.extras_dtype, "speaker": SPEAKER, "language": LANGUAGE,
              "seed": 0, "greedy": args.greedy, "threads": args.threads}
    if ("base", "0.6b") in files:
        spec = {**common, "mode": "clone_prefix", "model": str(files[("base", "0.6b")]), "text": TEXT,
                "speaker": None, "ref_text": REF_TEXT, "ref_seconds": 5.0, "repeats": args.reps}
        r = run_one("ours", spec, args, "ours-0.6b-clone-prefix", logs, env)
        results.append(r)
        save()
        log("clone prefix:", r.get("error") or r["clone_prefix"])
    if args.utterance_seconds:
        frames = round(args.utterance_seconds * FRAME_RATE)
        spec = {**common, "mode": "utterance", "model": str(files[("ckpt", "0.6b")]), "text": TEXT,
                "frames": frames}
        r = run_one("ours", spec, args, f"ours-0.6b-utterance-{frames}", logs, env)
        results.append(r)
        save()
        log("utterance:", r.get("error") or r["utterance"])
    for chars in args.long_text_chars:
        spec = {**common, "mode": "long_text", "model": str(files[("ckpt", "0.6b")]),
                "long_text": long_text(chars), "max_frames": args.long_text_frames}
        r = run_one("ours", spec, args, f"ours-0.6b-long-{chars}", logs, env)
        results.append(r)
        save()
        log(f"long text {chars} chars:", r.get("error") or r["long_text"])


# --------------------------------------------------------------------------- summarising


def fps(r: dict) -> float:
    loop = r.get("loop") or {}
    return loop["frames"] / loop["seconds"] if loop.get("seconds") else float("nan")


def loop_rate(r: dict) -> float | None:
    """Frames/s of the frame loop alone, prefill excluded.

    Ours reports it (from the first frame handed out to the last); for the others it is the timed
    loop minus the split's prefill (the official runner times both inside the same call;
    mlx-audio's prefill comes from its separate, synchronised split loop).
    """
    loop = r.get("loop") or {}
    if loop.get("frame_loop_s"):
        return loop["frame_loop_frames"] / loop["frame_loop_s"]
    prefill = (r.get("split") or {}).get("prefill_s")
    if prefill is not None and loop.get("seconds", 0) > prefill:
        return loop["frames"] / (loop["seconds"] - prefill)
    return None


def decode_rate(r: dict) -> float | None:
    d = r.get("decode")
    return d["seconds"] / d["audio_s"] if d and d.get("audio_s") else None


def metrics(r: dict) -> dict[str, float]:
    """Per-repetition numbers of one speed result (absent ones left out)."""
    m = {"load_s": r.get("load_s"), "fps": fps(r) if r.get("loop") else None, "loop_fps": loop_rate(r),
         "decode_per_audio_s": decode_rate(r), "peak_mlx_gb": r.get("peak_mlx_gb"),
         "peak_rss_gb": r.get("peak_rss_gb"), "ttfa_s": (r.get("ttfa") or {}).get("seconds")}
    split = r.get("split") or {}
    for k in ("prefill_s", "talker_ms", "code_predictor_ms", "other_ms"):
        m[k] = split.get(k)
    if m["fps"] and m["decode_per_audio_s"] is not None:
        m["rtf"] = FRAME_RATE / m["fps"] + m["decode_per_audio_s"]
    if None not in (m["talker_ms"], m["code_predictor_ms"], m["other_ms"]):
        m["frame_ms"] = m["talker_ms"] + m["code_predictor_ms"] + m["other_ms"]
    parts = (r.get("ttfa_prefill_s"), m.get("frame_ms"), r.get("first_chunk_decode_s"))
    if None not in parts:
        # Issue #8's bound: 1.5 x (prefill + 2 frame times + one decode step), each timed apart,
        # the prefill in the TTFA's own (streaming-text) layout.
        prefill, frame_ms, decode_step = parts
        m["ttfa_bound_s"] = 1.5 * (prefill + 2 * frame_ms / 1000 + decode_step)
    return {k: v for k, v in m.items() if v is not None}


HIGHER_IS_BETTER = {"fps", "loop_fps"}


def summarise(results: list[dict], bandwidth: float) -> dict:
    """{(size, precision, system): {"n", metric: {"median", "best"}, "roofline": ..., "errors"}}."""
    groups: dict[tuple, dict] = {}
    for r in results:
        if r.get("mode", "speed") != "speed" or "size" not in r:
            continue
        g = groups.setdefault((r["size"], r["precision"], r["system"]), {"reps": [], "errors": []})
        if r.get("skipped"):
            g["skipped"] = r["skipped"]
        elif r.get("error"):
            g["errors"].append(r["error"])
        else:
            g["reps"].append(r)
    summary = {}
    for key, g in groups.items():
        s = {"n": len(g["reps"]), "errors": g["errors"], "skipped": g.get("skipped")}
        per_rep = [metrics(r) for r in g["reps"]]
        for name in {k for m in per_rep for k in m}:
            values = [m[name] for m in per_rep if name in m]
            best = max(values) if name in HIGHER_IS_BETTER else min(values)
            s[name] = {"median": statistics.median(values), "best": best, "values": values}
        if g["reps"]:
            first = g["reps"][0]
            s["frames"] = first["loop"]["frames"]
            s["short_runs"] = sum(r["loop"]["frames"] < r["requested_frames"] for r in g["reps"])
            s["split_error"] = (first.get("split") or {}).get("error")
            bpf = first.get("weights", {}).get("bytes_per_frame")
            if bpf and "fps" in s:
                roof = bandwidth * 1e9 / bpf
                s["roofline"] = {"bytes_per_frame": bpf, "frames_per_s": roof,
                                 "fraction": s["fps"]["median"] / roof}
                if "loop_fps" in s:
                    s["roofline"]["loop_fraction"] = s["loop_fps"]["median"] / roof
            s["blas"] = first.get("blas")
            s["talker_dtype"] = first.get("talker_dtype")
            s["gemm_gflops_fp32"] = first.get("gemm_gflops_fp32")
            s["versions"] = first.get("versions")
        summary[key] = s
    return summary


def cell(s: dict, name: str, fmt: str = "{:.2f}") -> str:
    v = s.get(name)
    if not v:
        return "–"
    med, best = fmt.format(v["median"]), fmt.format(v["best"])
    return med if s["n"] == 1 or med == best else f"{med} [{best}]"


def speed_table(summary: dict, args) -> str:
    head = ("| size | precision | system | load s | frames/s | loop frames/s (prefill excl.) | prefill s | "
            "talker ms/step | code pred. ms/frame | other ms/frame | decode s per audio s | RTF | TTFA s | "
            "peak MLX GB | max RSS GB | weights MB/frame | roofline frames/s | % of roofline | "
            "% of roofline (loop) |")
    columns = head.count("|") - 1
    lines = [head, "|" + "---|" * columns]
    for size in args.sizes:
        for pname in args.precisions:
            for system in args.systems:
                s = summary.get((size, pname, system))
                if s is None:
                    continue
                label = PRECISIONS[pname].label
                if s.get("skipped") or not s["n"]:
                    why = s.get("skipped") or ("error: " + "; ".join(sorted(set(s["errors"])))[:120])
                    lines.append(f"| {size} | {label} | {system} | {why} |" + " |" * (columns - 4))
                    continue
                roof = s.get("roofline") or {}
                split = [cell(s, "prefill_s")] + [cell(s, k, "{:.0f}")
                                                  for k in ("talker_ms", "code_predictor_ms", "other_ms")]
                if s.get("split_error"):
                    split = ["n/a"] * 4
                lines.append("| " + " | ".join([
                    size, label, system, cell(s, "load_s", "{:.1f}"), cell(s, "fps", "{:.3f}"),
                    cell(s, "loop_fps", "{:.3f}"), *split,
                    cell(s, "decode_per_audio_s"), cell(s, "rtf", "{:.1f}"), cell(s, "ttfa_s"),
                    cell(s, "peak_mlx_gb"), cell(s, "peak_rss_gb"),
                    f"{roof['bytes_per_frame'] / 1e6:.0f}" if roof else "–",
                    f"{roof['frames_per_s']:.2f}" if roof else "–",
                    f"{100 * roof['fraction']:.0f} %" if roof else "–",
                    f"{100 * roof['loop_fraction']:.0f} %" if "loop_fraction" in roof else "–",
                ]) + " |")
    return "\n".join(lines)


RATIO_METRICS = [
    ("fps", "frames/s"), ("loop_fps", "loop frames/s"), ("prefill_s", "prefill"), ("talker_ms", "talker ms"),
    ("code_predictor_ms", "code pred. ms"), ("decode_per_audio_s", "decode s/audio s"), ("rtf", "RTF"),
    ("ttfa_s", "TTFA"), ("load_s", "load s"), ("peak_rss_gb", "max RSS"),
]


def ratio_table(summary: dict, args) -> str:
    others = [s for s in args.systems if s != "ours"]
    if "ours" not in args.systems or not others:
        return ""
    head = "| size | precision | ours / | " + " | ".join(label for _, label in RATIO_METRICS) + " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for size in args.sizes:
        for pname in args.precisions:
            ours = summary.get((size, pname, "ours"))
            for other in others:
                theirs = summary.get((size, pname, other))
                if not ours or not theirs or not ours["n"] or not theirs["n"]:
                    continue
                cells = []
                for name, _ in RATIO_METRICS:
                    a, b = ours.get(name), theirs.get(name)
                    ok = a and b and b["median"] and not (
                        name in ("prefill_s", "talker_ms", "code_predictor_ms")
                        and (ours.get("split_error") or theirs.get("split_error")))
                    cells.append(f"{a['median'] / b['median']:.2f}" if ok else "–")
                lines.append(f"| {size} | {PRECISIONS[pname].label} | {other} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets_table(summary: dict, args) -> str:
    """Issues #8's and #20's speed targets, checked on this run's medians."""
    lines = []

    def med(size, pname, system, metric):
        v = (summary.get((size, pname, system)) or {}).get(metric)
        return v["median"] if v else None

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    for size in args.sizes:
        for pname in ("bf16", "q8-bf16"):
            ours_rtf, theirs_rtf = med(size, pname, "ours", "rtf"), med(size, pname, "mlx-audio", "rtf")
            # The frame loop alone: talker step + code predictor + rest of a frame, no prefill
            # (mlx-audio's prompt layout is shorter than ours and the official one).
            ours_ms, theirs_ms = (med(size, pname, s, "frame_ms") for s in ("ours", "mlx-audio"))
            if ours_rtf and theirs_rtf and ours_ms and theirs_ms:
                ratio = theirs_rtf / ours_rtf
                lines.append(
                    f"- {size} {pname}: end to end {ratio:.2f}x faster than mlx-audio (target 3x: "
                    f"{verdict(ratio >= 3)}); frame loop {ours_ms:.0f} vs {theirs_ms:.0f} ms per "
                    f"frame (not slower: {verdict(ours_ms <= theirs_ms)})")
        # Issue #8 compares chosen settings; the defaults row has its own target (issue #20).
        chosen = [p for p in args.precisions if p != "defaults"]
        ours = {p: med(size, p, "ours", "rtf") for p in chosen}
        official = {p: med(size, p, "official", "rtf") for p in chosen}
        ours, official = {p: v for p, v in ours.items() if v}, {p: v for p, v in official.items() if v}
        if ours and official:
            best, ref = min(ours, key=ours.get), min(official, key=official.get)
            ratio = official[ref] / ours[best]
            lines.append(
                f"- {size}: our best CPU precision ({best}, RTF {ours[best]:.2f}) vs the official "
                f"model's best ({ref}, RTF {official[ref]:.2f}): {ratio:.2f}x faster end to end "
                f"(target 1.5x: {verdict(ratio >= 1.5)})")
        for pname in args.precisions:
            ttfa, bound = med(size, pname, "ours", "ttfa_s"), med(size, pname, "ours", "ttfa_bound_s")
            theirs = med(size, pname, "mlx-audio", "ttfa_s")
            if ttfa and bound:
                text = (f"- {size} {pname}: TTFA {ttfa:.2f} s vs 1.5 x (prefill + 2 frames + first "
                        f"decode step) = {bound:.2f} s ({verdict(ttfa <= bound)})")
                if theirs:
                    text += (f"; mlx-audio's {theirs:.2f} s is {theirs / ttfa:.1f}x longer (target 10x: "
                             f"{verdict(theirs >= 10 * ttfa)})")
                lines.append(text)
        lines += issue20_targets(size, summary, med, verdict)
    return "\n".join(lines)


def issue20_targets(size: str, summary: dict, med, verdict) -> list[str]:
    """Issue #20: the defaults row against mlx-audio's defaults; at fp32 (our best CPU setting)
    the frame loop against the roofline and the codec against the official model's."""
    lines = []
    ours, theirs = med(size, "defaults", "ours", "rtf"), med(size, "defaults", "mlx-audio", "rtf")
    if ours and theirs:
        ratio = theirs / ours
        lines.append(f"- {size} defaults (no dtype argument, no LD_PRELOAD): end to end {ratio:.2f}x faster "
                     f"than mlx-audio at its defaults (RTF {ours:.1f} vs {theirs:.1f}; target 8x: "
                     f"{verdict(ratio >= 8)})")
    loop, fps_ = med(size, "fp32", "ours", "loop_fps"), med(size, "fp32", "ours", "fps")
    roof = ((summary.get((size, "fp32", "ours")) or {}).get("roofline") or {}).get("frames_per_s")
    if loop and roof:
        lines.append(f"- {size} fp32: frame loop alone {loop:.2f} frames/s = {100 * loop / roof:.0f} % of "
                     f"the bandwidth roofline {roof:.2f} (target 85 %: {verdict(loop >= 0.85 * roof)}; "
                     f"with prefill {100 * fps_ / roof:.0f} %)")
    ours, official = (med(size, "fp32", s, "decode_per_audio_s") for s in ("ours", "official"))
    if ours and official:
        lines.append(f"- {size} fp32: codec decode {ours:.2f} s per audio s vs the official model's "
                     f"{official:.2f} (not slower: {verdict(ours <= official)})")
    return lines


def extras_table(extras: list[dict]) -> str:
    lines = []
    for r in extras:
        if r.get("error"):
            lines.append(f"- {r['tag']}: {r['error']}")
        elif "clone_prefix" in r:
            c = r["clone_prefix"]
            lines.append(
                f"- voice-clone prefill to first frame (0.6B Base, ICL, {c['prefill_positions']} prompt "
                f"positions of which {c['prefix_positions']} voice prefix, {c['ref_frames']} reference "
                f"frames): fresh {c['cold_s']['median']:.2f} s [min {c['cold_s']['min']:.2f}], cached voice "
                f"prefix {c['cached_s']['median']:.2f} s [min {c['cached_s']['min']:.2f}] "
                f"(create_voice_prompt {r['create_voice_prompt_s']:.2f} s)")
        elif "utterance" in r:
            u = r["utterance"]
            lines.append(
                f"- one {u['audio_s']:.1f}-second utterance (0.6B, {u['frames']} frames, frame loop + "
                f"one-shot decode, {u['seconds']:.0f} s): peak MLX {u['peak_mlx_gb']:.2f} GB, max RSS "
                f"{u['peak_rss_gb']:.2f} GB, for {u['weights_gb']:.2f} GB of weights (model + codec): "
                f"{u['peak_mlx_gb'] / u['weights_gb']:.2f}x / {u['peak_rss_gb'] / u['weights_gb']:.2f}x")
        elif "long_text" in r:
            t = r["long_text"]
            lines.append(
                f"- long text {t['chars']} chars (0.6B, {t['pieces']} pieces, ≤{t['max_frames_per_piece']} "
                f"frames each, {t['frames']} frames, {t['seconds']:.1f} s): peak MLX "
                f"{t['peak_mlx_gb']:.2f} GB, max RSS {r['peak_rss_gb']:.2f} GB "
                f"(after load {t['peak_rss_after_load_gb']:.2f} GB)")
    return "\n".join(lines)


def defaults_lines(summary: dict) -> list[str]:
    """What each system's defaults row ran with: talker dtype and the BLAS it saw."""
    seen = [f"{k[2]} {k[0]}: talker {s.get('talker_dtype') or '?'}, {s['blas']}"
            for k, s in summary.items() if k[1] == "defaults" and s.get("blas")]
    return [f"- defaults row (no dtype argument, no LD_PRELOAD): {'; '.join(seen)}"] if seen else []


def report(args, machine: dict, bandwidth: dict, summary: dict, extras: list[dict]) -> str:
    blas = []
    for system in args.systems:
        groups = [s for k, s in summary.items() if k[2] == system and s.get("blas") and k[1] != "defaults"]
        if groups:
            gemm = sorted(s["gemm_gflops_fp32"] for s in groups if s.get("gemm_gflops_fp32"))
            rate = f" (MLX float32 512x512 matmul: {gemm[0]:.0f}-{gemm[-1]:.0f} GFLOP/s)" if gemm else ""
            blas.append(f"{system}: {groups[0]['blas']}{rate}")
    versions = sorted({f"{k[2]}: {s['versions']}" for k, s in summary.items() if s.get("versions")})
    out = [
        f"## Qwen3-TTS speed, random full-size weights ({machine.get('started', '?')})",
        "",
        f"- machine: {machine.get('cpu')}, nproc {machine['nproc']}, "
        f"{machine.get('mem_gb', 0):.0f} GB RAM, load average at start {machine['loadavg_start'][0]:.2f}, "
        f"at end {machine.get('loadavg_end', os.getloadavg())[0]:.2f}",
        f"- threads per system: {args.threads}; BLAS for MLX: {blas_label(args)}"
        + (" (not in the defaults row)" if "defaults" in args.precisions else ""),
        *[f"- BLAS seen by {b}" for b in blas],
        *defaults_lines(summary),
        *[f"- versions {v}" for v in versions],
        f"- memory bandwidth (streaming read): {bandwidth['gb_per_s']:.1f} GB/s ({bandwidth['method']})",
        f"- text: {len(TEXT)} chars, speaker {SPEAKER}, language {LANGUAGE}, "
        f"{'greedy' if args.greedy else 'sampling with the checkpoint defaults, seed 0'}; frames "
        f"{args.frames} (official {args.official_frames}), split over {args.split_frames} frames, "
        f"decode {args.decode_frames} frames, best of {args.decode_repeats} (mlx-audio "
        f"{args.mlx_audio_decode_frames}, once); {args.reps} repetition(s), one process each",
        "- cells: median [best] over repetitions; frames/s = frames / (prompt + prefill + frame loop); "
        "loop frames/s = the frame loop alone, prefill excluded (see bench/README.md); "
        "prefill and the per-frame split come from a second, synchronised loop; "
        "RTF = 12.5 / frames/s + decode s per audio s; roofline = bandwidth / weight bytes per frame",
        "",
        speed_table(summary, args) if summary else "(no speed runs)",
    ]
    ratios = ratio_table(summary, args)
    if ratios:
        out += ["", "Ratios ours / other (same run, medians): above 1 is better for frames/s, below 1 "
                    "is better for the rest.", "", ratios]
    targets = targets_table(summary, args)
    if targets:
        out += ["", "Targets of issues #8 and #20 (medians of this run):", "", targets]
    if extras:
        out += ["", "Ours only:", "", extras_table(extras)]
    short = [" ".join(k) for k, s in summary.items() if s.get("short_runs")]
    if short:
        out += ["", "Warning: fewer frames than asked (EOS won) in: " + ", ".join(short)]
    errors = [(k, e) for k, s in summary.items() for e in s["errors"]]
    if errors:
        out += ["", "Errors:", *[f"- {' '.join(k)}: {e}" for k, e in errors]]
    return "\n".join(out)


# --------------------------------------------------------------------------- main


# What --quick changes (a few minutes): defaults only, so explicit options still apply.
QUICK = dict(sizes="0.6b", precisions="fp32,bf16", reps=1, frames=16, official_frames=16, split_frames=4,
             decode_frames=8, mlx_audio_decode_frames=2, long_text_frames=2)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--quick", action="store_true",
                   help="0.6b, fp32+bf16, 1 repetition, 16 frames (4 split, 8 decode, 2 for mlx-audio), "
                        "no extras unless --extras: a few minutes")
    p.add_argument("--systems", default="ours,mlx-audio,official", help="comma list of %(default)s")
    p.add_argument("--sizes", default="0.6b,1.7b", help="comma list of 0.6b, 1.7b")
    p.add_argument("--precisions", default=",".join(PRECISIONS), help="comma list of %(default)s")
    p.add_argument("--reps", type=int, default=3, help="repetitions (one process each)")
    p.add_argument("--frames", type=int, default=128, help="frames of the timed loop (ours, mlx-audio)")
    p.add_argument("--official-frames", type=int, default=32,
                   help="frames of the official model's timed call (~1 frame/s on CPU)")
    p.add_argument("--split-frames", type=int, default=16,
                   help="frames of the separately timed talker / code-predictor loop")
    p.add_argument("--decode-frames", type=int, default=25, help="frames decoded for the codec timing")
    p.add_argument("--decode-repeats", type=int, default=3,
                   help="codec timing: best of this many decodes (ours, official)")
    p.add_argument("--mlx-audio-decode-frames", type=int, default=4,
                   help="frames decoded by mlx-audio's codec (seconds per frame on CPU)")
    p.add_argument("--no-ttfa", action="store_true", help="skip the streaming time-to-first-audio")
    p.add_argument("--greedy", action="store_true", help="argmax instead of the default sampling")
    p.add_argument("--threads", type=int, default=1, help="threads for every system (BLAS, OpenMP, torch)")
    p.add_argument("--blas", choices=["auto", "mkl", "openblas", "bundled"], default="auto",
                   help="BLAS preloaded into both MLX runners (auto: MKL from our venv if "
                        "installed, else OpenBLAS if installed, else MLX's bundled one)")
    p.add_argument("--timeout", default="1800",
                   help="seconds per runner process: one number, or per system, e.g. "
                        "'1800,official=900,mlx-audio=2400' (default %(default)s)")
    p.add_argument("--extras", action="store_true", help="run the extras also with --quick")
    p.add_argument("--no-extras", action="store_true", help="skip clone-prefix and long-text runs")
    p.add_argument("--extras-only", action="store_true", help="run only the extras (ours)")
    p.add_argument("--extras-dtype", default="float32", choices=["bfloat16", "float32"],
                   help="activation dtype of the extras (default %(default)s: bf16 prefill is "
                        "~5x slower on CPU)")
    p.add_argument("--utterance-seconds", type=float, default=30.0,
                   help="extra: peak memory of one utterance this long (0 skips)")
    p.add_argument("--long-text-chars", default="500,5000", help="comma list of text lengths")
    p.add_argument("--long-text-frames", type=int, default=4, help="max_frames per piece of long texts")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                   help="checkpoints, converted folders and results (default %(default)s, or "
                        "$MLX_QWEN3_TTS_BENCH_DIR)")
    p.add_argument("--report", type=Path, default=None, metavar="PATH",
                   help="print the report of an earlier run's JSON file, or of an interrupted "
                        "run's logs folder, and stop")
    p.add_argument("--bandwidth", type=float, default=None, metavar="GB/s",
                   help="memory bandwidth for the roofline instead of the measured one "
                        "(also with --report)")
    p.add_argument("--prepare-only", action="store_true",
                   help="write the checkpoints and quantized folders the other options need, then stop")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON file (default: <cache>/results/bench-<time>.json)")
    for system, (_, _, python) in SYSTEMS.items():
        p.add_argument(f"--{system}-python", default=python, help=f"python of the {system} venv")
    args = p.parse_args(argv)
    if args.quick:
        # --quick changes the defaults only: options given on the command line still win.
        p.set_defaults(**QUICK)
        args = p.parse_args(argv)
        args.no_extras = args.no_extras or not (args.extras or args.extras_only)
        args.utterance_seconds = min(args.utterance_seconds, 2.0)
    args.systems = [s for s in args.systems.split(",") if s]
    args.sizes = [s for s in args.sizes.split(",") if s]
    args.precisions = [s for s in args.precisions.split(",") if s]
    args.long_text_chars = [int(c) for c in args.long_text_chars.split(",") if c]
    for name, allowed in (("systems", SYSTEMS), ("sizes", CHECKPOINT_GB), ("precisions", PRECISIONS)):
        bad = [v for v in getattr(args, name) if v not in allowed]
        if bad:
            p.error(f"--{name}: unknown {bad}; choose from {', '.join(allowed)}")
    if args.extras_only and args.no_extras:
        p.error("--extras-only and --no-extras exclude each other")
    args.python = {s: getattr(args, f"{s.replace('-', '_')}_python") for s in SYSTEMS}
    args.timeouts = parse_timeouts(p, args.timeout)
    args.blas_name, args.blas_path = "bundled", None
    found = {"mkl": mkl_path(args.python["ours"]), "openblas": openblas_path()}
    if args.blas == "auto":
        args.blas_name = next((name for name, path in found.items() if path), "bundled")
    elif args.blas != "bundled":
        args.blas_name = args.blas
        if not found[args.blas]:
            p.error(f"--blas {args.blas}: not installed (" + (
                "pip install mkl, into the venv of --ours-python" if args.blas == "mkl"
                else "apt-get install -y libopenblas0-pthread") + ")")
    args.blas_path = found.get(args.blas_name)
    return args


def parse_timeouts(parser, text: str) -> dict[str, float]:
    timeouts, default = {}, 1800.0
    for item in (t.strip() for t in text.split(",") if t.strip()):
        name, _, value = item.rpartition("=")
        if name and name not in SYSTEMS:
            parser.error(f"--timeout: unknown system {name!r}")
        try:
            seconds = float(value)
        except ValueError:
            parser.error(f"--timeout: {item!r} is not SECONDS or SYSTEM=SECONDS")
        if name:
            timeouts[name] = seconds
        else:
            default = seconds
    return {system: timeouts.get(system, default) for system in SYSTEMS}


def prepare_files(args, logs: Path) -> dict:
    files = {}
    for size in [] if args.extras_only else args.sizes:
        files[("ckpt", size)] = checkpoint(args.cache_dir, size, "custom_voice", args.python["ours"], logs)
    for system in (s for s in MLX_SYSTEMS if s in args.systems and not args.extras_only):
        for bits in sorted({PRECISIONS[p].bits for p in args.precisions} - {None}):
            for size in args.sizes:
                path, why = quantized(args.cache_dir, system, size, bits, files[("ckpt", size)],
                                      args.python[system], logs)
                files[(system, size, bits)] = (path, why)
    if not args.no_extras and "ours" in args.systems:
        ours = args.python["ours"]
        files[("ckpt", "0.6b")] = checkpoint(args.cache_dir, "0.6b", "custom_voice", ours, logs)
        files[("base", "0.6b")] = checkpoint(args.cache_dir, "0.6b", "base", ours, logs)
    return files


def from_logs(logs: Path) -> dict:
    """A record rebuilt from a logs folder: `run.json` plus every runner's spec and result.

    For a benchmark that was interrupted before it wrote its JSON file.
    """
    record = json.loads((logs / "run.json").read_text())
    record["runs"], record["extras"] = [], []
    for spec_path in sorted(logs.glob("*.spec.json"), key=lambda p: p.stat().st_mtime):
        result_path = logs / spec_path.name.replace(".spec.json", ".result.json")
        if not result_path.is_file():
            continue
        spec, result = json.loads(spec_path.read_text()), json.loads(result_path.read_text())
        result.update(tag=spec_path.name.removesuffix(".spec.json"), requested_frames=spec.get("frames"))
        if spec["mode"] == "speed":
            rep = int(result["tag"].rsplit("-rep", 1)[1])
            result.update(size=spec["size"], precision=spec["precision"], rep=rep)
            record["runs"].append(result)
        else:
            record["extras"].append(result)
    return record


def rerender(path: Path, bandwidth: float | None = None) -> None:
    """Print the report of a saved JSON file, or of an interrupted run's logs folder, again."""
    record = from_logs(path) if path.is_dir() else json.loads(path.read_text())
    if bandwidth:
        record["bandwidth"] = {"gb_per_s": bandwidth, "method": f"given: --bandwidth {bandwidth:g}; "
                               f"the run measured {record['bandwidth']['gb_per_s']:.1f} GB/s "
                               f"({record['bandwidth']['method']})"}
    args = argparse.Namespace(**record["args"])
    summary = summarise(record["runs"], record["bandwidth"]["gb_per_s"])
    print(report(args, record["machine"], record["bandwidth"], summary, record["extras"]))


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.report:
        return rerender(args.report, args.bandwidth)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    logs = args.cache_dir / "results" / f"logs-{stamp}"
    logs.mkdir(parents=True, exist_ok=True)
    out = args.out or args.cache_dir / "results" / f"bench-{stamp}.json"
    machine = machine_info()
    log(f"machine: {machine.get('cpu')}, nproc {machine['nproc']}, load {machine['loadavg_start']}")
    log(f"BLAS for MLX runners: {blas_label(args)}")
    missing = {s: available(s, args.python[s]) for s in args.systems}
    for system, why in missing.items():
        if why:
            log(f"{system}: not installed ({why}); skipped")
    args.systems = [s for s in args.systems if not missing[s]]
    if not args.systems:
        raise SystemExit("No system to benchmark.")
    bandwidth = read_bandwidth(args.threads)
    if args.bandwidth:
        bandwidth.update(measured_gb_per_s=bandwidth["gb_per_s"], gb_per_s=args.bandwidth,
                         method=f"given: --bandwidth {args.bandwidth:g} (measured "
                                f"{bandwidth['gb_per_s']:.1f} GB/s, {bandwidth['method']})")
    log(f"streaming-read bandwidth: {bandwidth['gb_per_s']:.1f} GB/s ({bandwidth['method']})")
    files = prepare_files(args, logs)
    if args.prepare_only:
        for key, value in files.items():
            log(" ".join(map(str, key)), "->", value)
        return
    start = time.perf_counter()
    record = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "machine": machine, "bandwidth": bandwidth, "complete": False, "runs": [], "extras": []}

    def save() -> None:  # after every run, so an interrupted benchmark keeps what it measured
        record["wall_s"] = time.perf_counter() - start
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=1, default=str))

    (logs / "run.json").write_text(json.dumps(record, indent=1, default=str))  # for --report <logs>
    if not args.extras_only:
        run_speed(args, files, logs, record["runs"], save)
    if not args.no_extras and "ours" in args.systems:
        run_extras(args, files, logs, record["extras"], save)
    machine["loadavg_end"] = os.getloadavg()
    summary = summarise(record["runs"], bandwidth["gb_per_s"])
    text = report(args, machine, bandwidth, summary, record["extras"])
    print("\n" + text + "\n", flush=True)
    record.update(complete=True, markdown=text, summary=[
        {"size": k[0], "precision": k[1], "system": k[2], **v} for k, v in summary.items()])
    save()
    out.with_suffix(".md").write_text(text + "\n")
    log(f"wrote {out} and {out.with_suffix('.md')} (runner logs in {logs}); "
        f"--report {out} prints it again")


if __name__ == "__main__":
    main()
