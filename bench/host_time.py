"""Host time and host syncs per frame, ours and mlx-audio 0.6.2 side by side, on a tiny checkpoint.

On a Metal or CUDA GPU a 0.6B frame is milliseconds of device work, so the host's share of a
frame (Python, graph building, dispatch, waiting) decides frames/s. A tiny random checkpoint
(`tiny-0.6b` CustomVoice, EOS row zeroed so every run makes the frames asked for) makes device
work negligible, so what is left is the host's. Each system runs in its own venv and process
(`bench/runners/{ours,mlxaudio}.py`, mode "host_time"): a warm-up run, then one run of
`--frames` frames, with its syncs counted and timed (`bench/runners/_syncs.py` says how).

Per frame (medians over the intervals between consecutive frames, prefill excluded):

    wall ms          one frame's wall time
    in syncs ms      time inside calls that wait for MLX results (mx.eval, .item(), np.array(x), ...)
    wall - syncs ms  the host's own time by the issue's definition
    host CPU ms      the frame loop thread's CPU time: graph building, dispatch and Python, whatever
                     waits (MLX computes on its own threads); unlike wall - syncs, it leaves out
                     time the thread was descheduled and counts the dispatch that mx.eval does
    syncs/frame      calls that wait for MLX results, and which ones
    async_eval/frame dispatches that do not wait

    python bench/host_time.py                       # both systems, 48 frames, float32 (< 1 min)
    python bench/host_time.py --systems ours --frames 96 --dtype bfloat16
"""

import argparse
import json
import sys
import time
from pathlib import Path

from benchmark import (
    DEFAULT_CACHE,
    LANGUAGE,
    SPEAKER,
    SYSTEMS,
    TEXT,
    available,
    base_env,
    checkpoint,
    log,
    prepend_pythonpath,
    run_one,
)

SIZE, VARIANT = "tiny-0.6b", "custom_voice"
HOST_SYSTEMS = ("ours", "mlx-audio")


def system_env(system: str, args) -> dict:
    """The runner's environment; mlx-audio's own packages go first on its PYTHONPATH only."""
    return prepend_pythonpath(base_env(args.threads), args.mlx_audio_path if system == "mlx-audio" else None)


def host_spec(system: str, model: Path, args) -> dict:
    return {"system": system, "mode": "host_time", "model": str(model), "device": args.device,
            "dtype": None if args.dtype == "default" else args.dtype, "text": TEXT, "speaker": SPEAKER,
            "language": LANGUAGE, "seed": 0, "greedy": args.greedy, "threads": args.threads,
            "frames": args.frames, "warmup_frames": args.warmup_frames}


def table(results: list[dict]) -> str:
    head = ("| system | dtype | frames timed | wall ms/frame | in syncs ms/frame | wall − syncs ms/frame | "
            "host CPU ms/frame | syncs/frame | syncs by kind | async_eval/frame |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        h = r.get("host") or {}
        if r.get("skipped") or r.get("error") or "error" in h:
            why = r.get("skipped") or r.get("error") or h["error"]
            lines.append(f"| {r['system']} | {why} |" + " |" * 8)
            continue
        kinds = ", ".join(f"{k} {v:g}" for k, v in h["by_kind"].items())
        lines.append(f"| {r['system']} | {r.get('talker_dtype', '?').removeprefix('mlx.core.')} | "
                     f"{h['frames']} | {h['wall_ms']:.2f} | {h['blocked_ms']:.2f} | {h['host_ms']:.2f} | "
                     f"{h['cpu_ms']:.2f} | {h['syncs']:g} | {kinds} | {h['async_evals']:.2f} |")
    return "\n".join(lines)


def report(args, results: list[dict]) -> str:
    versions = "; ".join(f"{r['system']}: {r['versions']}" for r in results if r.get("versions"))
    return "\n".join([
        f"## Host time per frame, {SIZE} {VARIANT} ({time.strftime('%Y-%m-%d %H:%M')})",
        "",
        f"- device {args.device}, {args.threads} thread(s), "
        f"{'greedy' if args.greedy else 'sampling with the checkpoint defaults'}, {args.frames} frames "
        f"after a {args.warmup_frames}-frame warm-up; medians over the intervals between frames",
        f"- versions: {versions}",
        "- method: bench/runners/_syncs.py (wrapped mx.eval, mx.array reads, numpy conversions of MLX "
        "arrays; thread CPU time of the thread running the loop)",
        "",
        table(results),
    ])


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--systems", default=",".join(HOST_SYSTEMS), help="comma list of %(default)s")
    p.add_argument("--frames", type=int, default=48, help="frames of the measured run (default %(default)s)")
    p.add_argument("--warmup-frames", type=int, default=8, help="frames of the warm-up run first")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "default"],
                   help="talker dtype of both systems ('default': as each loads it without one)")
    p.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    p.add_argument("--greedy", action="store_true", help="argmax instead of the default sampling")
    p.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads (default %(default)s)")
    p.add_argument("--timeout", type=float, default=300, help="seconds per system (default %(default)s)")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="checkpoint and results folder")
    p.add_argument("--out", type=Path, default=None,
                   help="markdown file (default <cache>/results/host-time-<time>.md; JSON beside it)")
    p.add_argument("--ours-python", default=sys.executable, help="python of our venv (default: this one)")
    p.add_argument("--mlx-audio-python", default=SYSTEMS["mlx-audio"][2], help="python of the mlx-audio venv")
    p.add_argument("--mlx-audio-path", default=None,
                   help="folder put first on mlx-audio's PYTHONPATH only (the GPU machine: /tmp/site-ma)")
    args = p.parse_args(argv)
    args.systems = [s for s in args.systems.split(",") if s]
    bad = [s for s in args.systems if s not in HOST_SYSTEMS]
    if bad:
        p.error(f"--systems: unknown {bad}; choose from {', '.join(HOST_SYSTEMS)}")
    # run_one's view of the options
    args.python = {s: getattr(args, f"{s.replace('-', '_')}_python") for s in HOST_SYSTEMS}
    args.timeouts = {s: args.timeout for s in HOST_SYSTEMS}
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    logs = args.cache_dir / "results" / f"logs-host-{stamp}"
    logs.mkdir(parents=True, exist_ok=True)
    model = checkpoint(args.cache_dir, SIZE, VARIANT, args.python["ours"], logs)
    results = []
    for system in args.systems:
        env = system_env(system, args)
        why = available(system, args.python[system], env)
        if why:
            log(f"{system}: not installed ({why}); skipped")
            results.append({"system": system, "skipped": f"skipped: {why}"[:100]})
            continue
        spec = host_spec(system, model, args)
        r = run_one(system, spec, args, f"host-{system}", logs, env)
        results.append(r)
        log(f"{system}: {r.get('error') or r['host']}")
    text = report(args, results)
    print("\n" + text + "\n", flush=True)
    out = args.out or args.cache_dir / "results" / f"host-time-{stamp}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    out.with_suffix(".json").write_text(json.dumps({"args": vars(args), "results": results}, indent=1,
                                                   default=str))
    log(f"wrote {out} (runner logs in {logs})")


if __name__ == "__main__":
    main()
