"""Continuous batching in the server: frames/s delivered to C concurrent clients, the frame loop's
alone, and time to first audio, ours beside mlx-audio 0.6.2's server on the same requests.

For each client count C (`--clients`, default 1,2,4,8) each system gets a fresh server process
with a batch of C, a warm-up round of C requests, then C clients (threads, raw HTTP on 127.0.0.1)
that POST at once, each with its own text (similar lengths) and seed, and read the body as it
arrives:

    ours       `python -m mlx_qwen3_tts serve --max-batch C --max-frames F --first-chunk-frames 2
               --chunk-frames 12`, streaming `response_format=pcm` requests
    mlx-audio  its own server app (`bench/runners/mlxaudio_server.py`), MLX_AUDIO_TTS_MAX_BATCH_SIZE=C,
               non-streaming pcm requests with max_tokens=F (its server batches no streaming request)

The random checkpoint's EOS row is zero (`testing.write_checkpoint(..., eos_scale=0.0)`), so every
request makes exactly F frames (`--frames`, default 48). Also measured, in a runner process of
ours (`bench/runners/ours.py`, mode batch_loop): the frame loop alone for C rows (no decode, no
HTTP), and the parts of a lone request's time to first audio that bound a new request's time to
first audio while `--load-clients` (3) others are speaking. See bench/README.md for every column.

    python bench/serve_batch.py --size 0.6b --threads 2                 # the README row (~1 h: mlx-audio)
    python bench/serve_batch.py --size 0.6b --threads 2 --systems ours  # ours only (~15 min)
    python bench/serve_batch.py --size tiny-0.6b --frames 6 --clients 1,2 --systems ours   # a smoke test
"""

import argparse
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark import (
    DEFAULT_CACHE,
    LANGUAGE,
    RUNNERS,
    SPEAKER,
    base_env,
    checkpoint,
    log,
    machine_info,
    mkl_path,
    run_one,
)

sys.path.insert(0, str(RUNNERS))
from _common import BLAS_NAME  # noqa: E402

SAMPLE_RATE, FRAME_RATE = 24000, 12.5
BYTES_PER_FRAME = 2 * int(SAMPLE_RATE / FRAME_RATE)  # 16-bit mono pcm, 1920 samples a frame
SIZES = ("tiny-0.6b", "0.6b", "1.7b")
SERVER_SYSTEMS = ("ours", "mlx-audio")
# One text per client, of similar lengths (83-88 characters, one piece each): C clients ask for
# C different texts, as real clients would, without one long prompt skewing the batch.
TEXTS = [
    "The morning train left the station a little after seven, half empty and very quiet.",
    "A woman in a green coat read the same page of her book three times without noticing.",
    "Outside, the fields were still white with frost, and the river moved slowly under ice.",
    "Nobody spoke until the conductor came through, asking for tickets in a friendly voice.",
    "By nine the sun had climbed over the hills, and the whole valley seemed to wake at once.",
    "At the second stop a boy climbed aboard with a kite folded carefully under one arm.",
    "The old man by the window pointed out every farm he had worked on as a young fellow.",
    "When the city finally came into view, the carriage had filled with warm, tired voices.",
]
WARMUP_SEED = 1000
RE_PORT = {"ours": re.compile(r"Serving .* at http://127\.0\.0\.1:(\d+)/v1"),
           "mlx-audio": re.compile(r"^PORT (\d+)")}
RE_DTYPE = re.compile(r"^TALKER_DTYPE (\S+)")  # bench/runners/mlxaudio_server.py, once it loaded the model
RE_ERROR = re.compile(r"^\w*(Error|Exception)\b.*")  # a traceback's last line
HEALTH = {"ours": "/health", "mlx-audio": "/"}


# --------------------------------------------------------------------------- one client


@dataclass
class Client:
    """One request and what its client saw; times are `time.perf_counter()` readings."""

    index: int
    text: str
    seed: int
    status: int | None = None
    start: float | None = None
    first: float | None = None  # the first audio byte
    end: float | None = None  # the last byte
    bytes: int = 0
    error: str | None = None

    @property
    def ttfa_s(self) -> float | None:
        return None if self.first is None else self.first - self.start

    @property
    def total_s(self) -> float | None:
        return None if self.end is None else self.end - self.start

    @property
    def frames(self) -> float:
        return self.bytes / BYTES_PER_FRAME

    def record(self) -> dict[str, Any]:
        return {"client": self.index, "seed": self.seed, "chars": len(self.text), "status": self.status,
                "ttfa_s": self.ttfa_s, "total_s": self.total_s, "bytes": self.bytes, "frames": self.frames,
                "error": self.error}


def request_body(system: str, text: str, seed: int, frames: int, model: Path) -> dict[str, Any]:
    """The JSON body each server gets for the same request (its own field names)."""
    if system == "ours":  # the frame cap is the server's --max-frames
        return {"model": "tts-1", "input": text, "voice": SPEAKER, "language": LANGUAGE, "seed": seed,
                "response_format": "pcm"}
    # mlx-audio: no per-request seed in its API; max_tokens = frames; stream=False, the path it batches
    return {"model": str(model), "input": text, "voice": SPEAKER, "lang_code": LANGUAGE,
            "response_format": "pcm", "stream": False, "max_tokens": frames}


def speak(client: Client, port: int, body: dict, deadline: float, go: threading.Barrier | None = None,
          heard: threading.Event | None = None, first_only: bool = False) -> None:
    """POST `body`, read the response as it arrives; fills `client`. Never raises for network errors.

    The connection is opened before `go` (all clients start together) and before the clock: a
    loopback connect is not the server's work. `first_only`: hang up after the first audio (the
    server then drops the request at its next frame).
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=max(1.0, deadline - time.perf_counter()))
    try:
        conn.connect()
        if go is not None:
            go.wait(timeout=max(1.0, deadline - time.perf_counter()))
        client.start = time.perf_counter()
        conn.request("POST", "/v1/audio/speech", json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        client.status = response.status
        if response.status != 200:
            client.error = f"HTTP {response.status}: {response.read()[:300].decode(errors='replace')}"
            return
        while chunk := response.read1(65536):
            if client.first is None:
                client.first = time.perf_counter()
                if heard is not None:
                    heard.set()
            client.bytes += len(chunk)
            if first_only:
                return
        client.end = time.perf_counter()
    except (OSError, http.client.HTTPException, threading.BrokenBarrierError) as e:
        client.error = f"{type(e).__name__}: {e}"
        if go is not None:
            go.abort()  # the others would wait for this client at the barrier until the deadline
    finally:
        conn.close()
        if heard is not None:
            heard.set()  # also on failure: nobody waits for audio that will not come


def start_clients(clients: list[Client], system: str, port: int, args, model: Path, deadline: float,
                  heard: dict[int, threading.Event] | None = None) -> list[threading.Thread]:
    go = threading.Barrier(len(clients))
    threads = []
    for c in clients:
        body = request_body(system, c.text, c.seed, args.frames, model)
        event = heard.get(c.index) if heard else None
        t = threading.Thread(target=speak, args=(c, port, body, deadline, go, event), daemon=True)
        t.start()
        threads.append(t)
    return threads


def join(threads: list[threading.Thread], deadline: float) -> None:
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.perf_counter()))


def make_clients(count: int, first: int = 0) -> list[Client]:
    return [Client(i, TEXTS[i % len(TEXTS)], seed=i) for i in range(first, first + count)]


# --------------------------------------------------------------------------- measurements


def aggregate(clients: list[Client], expected_frames: int) -> dict[str, Any]:
    """Frames delivered to all clients over the wall time from the first request to the last byte."""
    out: dict[str, Any] = {"clients": len(clients), "per_client": [c.record() for c in clients]}
    errors = [f"client {c.index}: {c.error or 'no end'}" for c in clients if c.error or c.end is None]
    if errors:  # no rate from part of the clients: it would not be C clients' rate
        out["error"] = "; ".join(errors)[:600]
        return out
    done = clients
    wall = max(c.end for c in done) - min(c.start for c in done)
    frames = sum(c.frames for c in done)
    ttfa = [c.ttfa_s for c in done]
    total = [c.total_s for c in done]
    out.update(frames=frames, wall_s=wall, fps=frames / wall,
               ttfa_s={"median": statistics.median(ttfa), "min": min(ttfa), "max": max(ttfa)},
               total_s={"median": statistics.median(total), "min": min(total), "max": max(total)},
               frames_per_request=sorted({round(c.frames, 3) for c in done}),
               exact_frames=all(c.frames == expected_frames for c in done))
    return out


def throughput(system: str, port: int, count: int, args, model: Path, deadline: float) -> dict[str, Any]:
    """`count` clients at once; their aggregate delivered frames/s and each one's timings."""
    clients = make_clients(count)
    join(start_clients(clients, system, port, args, model, deadline), deadline)
    return aggregate(clients, args.frames)


def median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median delivered frames/s (the lower middle one of an even count), with
    every round's rate beside it; a failed round makes the cell a failure."""
    failed = [r for r in rounds if "fps" not in r]
    if failed:
        return failed[0]
    ranked = sorted(rounds, key=lambda r: r["fps"])
    return {**ranked[(len(ranked) - 1) // 2], "rounds_fps": [r["fps"] for r in rounds]}


def pending(port: int) -> int | None:
    """Requests the server holds (streaming or queued), from its /health; None if unreadable."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/health")
        return int(json.loads(conn.getresponse().read())["pending"])
    except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError):
        return None
    finally:
        conn.close()


def under_load(port: int, args, model: Path, deadline: float, probes: int) -> dict[str, Any]:
    """New streaming requests' time to first audio while `--load-clients` others are speaking.

    The others start together; once each has its first audio, new requests come one at a time,
    each hanging up after its first audio, until `probes` have come or one of the others ended.
    The first new request arrives right after the others' first audio (the issue's scenario);
    the later ones land at later points of the others' chunk cycle (their 12-frame chunks are
    decoded on the model's thread too). Each waits until the server holds only the others again
    (its /health), so none queues behind the one before.
    """
    speaking = make_clients(args.load_clients)
    heard = {c.index: threading.Event() for c in speaking}
    threads = start_clients(speaking, "ours", port, args, model, deadline, heard)
    for event in heard.values():
        event.wait(timeout=max(0.0, deadline - time.perf_counter()))
    new: list[Client] = []
    while len(new) < probes and all(c.end is None and c.error is None for c in speaking):
        while (pending(port) or 0) > args.load_clients and time.perf_counter() < deadline:
            time.sleep(0.005)
        index = args.load_clients + len(new)
        client = Client(index, TEXTS[index % len(TEXTS)], seed=index)
        speak(client, port, request_body("ours", client.text, client.seed, args.frames, model), deadline,
              first_only=True)
        new.append(client)
    join(threads, deadline)
    out: dict[str, Any] = {"speaking": [c.record() for c in speaking], "new": []}
    for client in new:
        # The load held only if every other stream was still sending when this one's audio came.
        held = client.first is not None and all(c.end is not None and c.end > client.first for c in speaking)
        out["new"].append({**client.record(), "others_speaking": held})
    errors = [f"client {c.index}: {c.error}" for c in [*speaking, *new] if c.error]
    if errors:
        out["error"] = "; ".join(errors)[:600]
    return out


def warm_up(system: str, port: int, count: int, args, model: Path, deadline: float) -> dict[str, Any]:
    """A round of `count` clients before timing, seeds WARMUP_SEED + i: loads the model (mlx-audio
    loads on the first request) and compiles what depends on the batch size (ours compiles the
    code predictor per batch shape), so the timed round runs what it measures only.

    Ours: the server's frame cap makes them F frames. mlx-audio: `--mlx-audio-warmup-frames` (2)
    frames each, as its codec decode costs seconds per frame on a CPU and has nothing to compile.
    """
    clients = [Client(i, TEXTS[i % len(TEXTS)], WARMUP_SEED + i) for i in range(count)]
    frames = args.frames if system == "ours" else args.mlx_audio_warmup_frames
    go = threading.Barrier(count)
    threads = [threading.Thread(target=speak, daemon=True, args=(
        c, port, request_body(system, c.text, c.seed, frames, model), deadline, go)) for c in clients]
    for t in threads:
        t.start()
    join(threads, deadline)
    return aggregate(clients, frames)


# --------------------------------------------------------------------------- servers


@dataclass
class Server:
    system: str
    proc: subprocess.Popen
    log_path: Path
    port: int | None = None
    talker_dtype: str | None = None
    last_error: str | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    reader: threading.Thread | None = None


def server_command(system: str, max_batch: int, args, model: Path) -> list[str]:
    if system == "ours":
        return [args.ours_python, "-m", "mlx_qwen3_tts", "serve", "--model", str(model), "--port", "0",
                "--max-batch", str(max_batch), "--max-frames", str(args.frames),
                "--first-chunk-frames", str(args.first_chunk_frames),
                "--chunk-frames", str(args.chunk_frames), "--log-level", "warning"]
    return [args.mlx_audio_python, str(RUNNERS / "mlxaudio_server.py"), "--port", "0",
            "--dtype", args.mlx_audio_dtype]


def server_env(system: str, max_batch: int, args) -> dict[str, str]:
    """Thread limits for both; ours loads MKL itself (the package does it before MLX, no
    LD_PRELOAD); mlx-audio gets the same MKL preloaded, as benchmark.py does."""
    env = base_env(args.threads)
    if system == "mlx-audio":
        env["MLX_AUDIO_TTS_MAX_BATCH_SIZE"] = str(max_batch)
        if args.mlx_audio_blas == "mkl" and args.mkl:
            env["LD_PRELOAD"] = args.mkl
    return env


def read_output(server: Server) -> None:
    """Copy the server's output to its log, and take the port from the line announcing it."""
    with open(server.log_path, "a") as out:
        for line in server.proc.stdout:
            out.write(line)
            out.flush()
            found = RE_PORT[server.system].search(line)
            if found and server.port is None:
                server.port = int(found.group(1))
                server.ready.set()
            if dtype := RE_DTYPE.match(line):
                server.talker_dtype = dtype.group(1)
            if error := RE_ERROR.match(line):
                server.last_error = error.group(0).strip()[:300]
    server.ready.set()  # the process ended: stop waiting for a port


def healthy(port: int, path: str) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


class ServerError(Exception):
    """A server that did not come up; the message says why and where its log is."""


def wait_ready(server: Server, deadline: float) -> None:
    server.ready.wait(timeout=max(0.0, deadline - time.perf_counter()))
    while time.perf_counter() < deadline:
        if server.proc.poll() is not None:
            raise ServerError(f"{server.system} server exited ({server.proc.returncode}): "
                              f"{tail(server.log_path)}")
        if server.port is not None and healthy(server.port, HEALTH[server.system]):
            return
        time.sleep(0.2)
    raise ServerError(f"{server.system} server not ready in time: {tail(server.log_path)}")


def tail(path: Path, lines: int = 6) -> str:
    text = path.read_text(errors="replace").strip().splitlines() if path.is_file() else []
    return " | ".join(text[-lines:])[-800:] + f" (log: {path})"


def stop(server: Server) -> None:
    """SIGTERM to the server's own process group (started by us), SIGKILL if it lingers."""
    if server.proc.poll() is None:
        os.killpg(server.proc.pid, signal.SIGTERM)
        try:
            server.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait()
    if server.reader is not None:
        server.reader.join(timeout=5)


@contextmanager
def serving(system: str, max_batch: int, args, model: Path, logs: Path, deadline: float) -> Iterator[Server]:
    """A server of `system` with a batch of `max_batch` on a free 127.0.0.1 port, stopped after."""
    log_path = logs / f"{system}-batch{max_batch}.log"
    log_path.write_text(" ".join(server_command(system, max_batch, args, model)) + "\n")
    proc = subprocess.Popen(server_command(system, max_batch, args, model), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=logs, start_new_session=True,
                            env=server_env(system, max_batch, args))
    server = Server(system, proc, log_path)
    server.reader = threading.Thread(target=read_output, args=(server,), daemon=True)
    server.reader.start()
    try:
        wait_ready(server, deadline)
        yield server
    finally:
        stop(server)


def mapped_blas(pid: int) -> list[str]:
    """BLAS libraries mapped into process `pid` (as `_common.blas_libraries` does for itself)."""
    try:
        lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    except OSError:
        return []
    names = {line.split()[-1] for line in lines if len(line.split()) >= 6}
    return sorted(os.path.basename(n) for n in names if BLAS_NAME.match(os.path.basename(n)))


def blas_label(libraries: list[str]) -> str:
    if any(n.startswith("libmkl") for n in libraries):
        return "MKL"
    return "bundled reference BLAS" if any(n.startswith("libblas") for n in libraries) else "?"


# --------------------------------------------------------------------------- runs


def run_system(system: str, args, model: Path, logs: Path, record: dict, save: Callable[[], None]) -> None:
    """Every client count on a fresh server of `system`; ours also the request under load."""
    rows = record["servers"].setdefault(system, [])
    load_batch = args.load_clients + 1 if system == "ours" and args.load_clients else None
    sessions = [(c, c == load_batch) for c in args.clients]
    if load_batch and load_batch not in args.clients:
        sessions.append((load_batch, True))
    for clients, with_load in sessions:
        measure = clients in args.clients
        deadline = time.perf_counter() + args.timeouts[system]
        row: dict[str, Any] = {"system": system, "max_batch": clients}
        try:
            with serving(system, clients, args, model, logs, deadline) as server:
                row["warmup"] = warm_up(system, server.port, clients, args, model, deadline)
                row["blas"] = mapped_blas(server.proc.pid)
                if "error" in row["warmup"]:  # the timed round would fail alike, or run cold
                    row["error"] = f"warm-up: {row['warmup']['error']}"
                    measure = with_load = False
                if measure:
                    rounds = [throughput(system, server.port, clients, args, model, deadline)
                              for _ in range(args.rounds)]
                    row.update(median_round(rounds))
                if with_load:
                    # A first pass compiles the scenario's batch shapes (3 rows, 4, 3 again).
                    under_load(server.port, args, model, deadline, probes=1)
                    record["load"] = under_load(server.port, args, model, deadline, args.load_probes)
            row["talker_dtype"] = server.talker_dtype
            if "error" in row and server.last_error:  # what the client saw is rarely the cause
                row["error"] += f" (server: {server.last_error}; log: {server.log_path})"
        except ServerError as e:
            row["error"] = str(e)
        if "error" in row and with_load and "load" not in record:
            record["load"] = {"error": row["error"], "new": []}
        if clients in args.clients:
            rows.append(row)
        done = f"{row['fps']:.2f} frames/s delivered" if "fps" in row else "warm-up and load only"
        status = row.get("error") or done
        log(f"{system} batch {clients}: {status}")
        save()


def run_loops(args, model: Path, logs: Path) -> dict[str, Any]:
    """The frame loop alone and the lone request's parts, in a runner process of ours."""
    spec = {"system": "ours", "mode": "batch_loop", "model": str(model), "threads": args.threads,
            "texts": TEXTS, "speaker": SPEAKER, "language": LANGUAGE, "frames": args.frames,
            "clients": args.clients, "reps": args.reps, "first_chunk_frames": args.first_chunk_frames,
            "lone_seed": args.load_clients}
    # No preload: the runner imports mlx_qwen3_tts first, which loads MKL as in the servers.
    result = run_one("ours", spec, args, "ours-batch-loop", logs, base_env(args.threads))
    log("frame loop:", result.get("error") or {r["clients"]: round(r["fps"], 2) for r in result["loops"]})
    return result


def mlx_audio_missing(args) -> str | None:
    """None if the mlx-audio python can import its server, else why not (and how to fix it)."""
    check = "import importlib.metadata as m, mlx_audio.server, uvicorn; print(m.version('mlx-audio'))"
    try:
        r = subprocess.run([args.mlx_audio_python, "-c", check], capture_output=True, text=True, timeout=300,
                           env=base_env(1))
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{args.mlx_audio_python}: {e}"
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["import failed"])[-1]
        return f"its server does not import ({last}); pip install 'mlx-audio[server]==0.6.2' into that venv"
    args.mlx_audio_version = r.stdout.strip()
    return None


# --------------------------------------------------------------------------- report


def num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def spread(stats: dict | None, digits: int = 2) -> str:
    if not stats:
        return "–"
    return f"{stats['median']:.{digits}f} ({stats['min']:.{digits}f}–{stats['max']:.{digits}f})"


def loop_fps(record: dict) -> dict[int, float]:
    return {r["clients"]: r["fps"] for r in (record.get("loops") or {}).get("loops", [])}


def delivered_fps(record: dict, system: str) -> dict[int, float]:
    return {r["max_batch"]: r["fps"] for r in record["servers"].get(system, []) if "fps" in r}


def throughput_table(record: dict) -> str:
    head = ("| system | clients | frames delivered | wall s | delivered frames/s | × 1 client | "
            "frame loop frames/s | × 1 client | time to first audio s | request s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    loops = loop_fps(record)
    for system, rows in record["servers"].items():
        if isinstance(rows, str):  # not available: why
            lines.append(f"| {system} | n/a: {rows} |" + " |" * 8)
            continue
        delivered = delivered_fps(record, system)
        for r in rows:
            c = r["max_batch"]
            if "fps" not in r:
                lines.append(f"| {system} | {c} | n/a: {r.get('error', '?')[:300]} |" + " |" * 7)
                continue
            ratio = r["fps"] / delivered[1] if 1 in delivered else None
            loop = loops.get(c) if system == "ours" else None
            loop_ratio = loop / loops[1] if loop and 1 in loops else None
            note = "" if r["exact_frames"] else f" (per request: {r['frames_per_request']})"
            lines.append(f"| {system} | {c} | {r['frames']:.0f}{note} | {r['wall_s']:.2f} | {r['fps']:.2f} | "
                         f"{num(ratio)} | {num(loop)} | {num(loop_ratio)} | {spread(r['ttfa_s'])} | "
                         f"{spread(r['total_s'])} |")
    return "\n".join(lines)


def bound(lone: dict) -> float:
    """1.5 × (prompt + prefill + 2 frames + one chunk decode), each measured alone."""
    return 1.5 * (lone["prompt_s"] + lone["prefill_s"] + 2 * lone["frame_s"] + lone["decode_s"])


def held_ttfa(record: dict) -> list[float]:
    """Time to first audio of each new request that came while all the others were speaking."""
    return [c["ttfa_s"] for c in (record.get("load") or {}).get("new", []) if c["others_speaking"]]


def parts_line(lone: dict | None) -> str:
    if not lone:
        return "Parts of the bound: not measured."
    ms = {k: 1000 * v for k, v in lone.items() if k.endswith("_s")}
    return (f"Parts of the bound, each measured alone (ms): prompt {ms['prompt_s']:.1f} + prefill "
            f"{ms['prefill_s']:.1f} + 2 × frame {ms['frame_s']:.1f} + first chunk decode "
            f"{ms['decode_s']:.1f}; the same request's first chunk end to end in that process (no "
            f"server): {ms['first_chunk_s']:.1f}.")


def load_table(record: dict, args) -> str:
    load = record.get("load")
    lone = (record.get("loops") or {}).get("lone")
    limit = num(bound(lone), 3) if lone else "–"
    lines = ["| request | time to first audio s | others still speaking | bound s |", "|---|---|---|---|"]
    ours = [r for r in record["servers"].get("ours", []) if isinstance(r, dict)]
    alone = next((r for r in ours if r.get("max_batch") == 1 and "fps" in r), None)
    if alone:
        lines.append(f"| alone (the 1-client row) | {spread(alone['ttfa_s'], 3)} | – | {limit} |")
    if not load:
        lines.append("| new, while others speak | not measured | | |")
    elif "error" in load or not load["new"]:
        lines.append(f"| new, while others speak | n/a: {load.get('error', 'no request')[:300]} | | |")
    else:
        first, held = load["new"][0], held_ttfa(record)
        lines.append(f"| the first new one, right after the others' first audio | {first['ttfa_s']:.3f} | "
                     f"{'yes' if first['others_speaking'] else 'no'} | {limit} |")
        cell = (f"{statistics.median(held):.3f} ({min(held):.3f}–{max(held):.3f})" if held else "–")
        lines.append(f"| all {len(load['new'])} new ones, one after another | {cell} | "
                     f"{len(held)} of {len(load['new'])} | {limit} |")
    return "\n".join(lines) + "\n\n" + parts_line(lone)


def verdict(value: float | None, goal: float, below: bool = False) -> str:
    if value is None:
        return "not measured"
    return "met" if (value <= goal if below else value >= goal) else "not met"


def targets_table(record: dict, args) -> str:
    """Issue #24's three targets on this run's numbers (ours)."""
    delivered, loops = delivered_fps(record, "ours"), loop_fps(record)
    d = delivered[4] / delivered[1] if {1, 4} <= delivered.keys() else None
    lp = loops[4] / loops[1] if {1, 4} <= loops.keys() else None
    new = (record.get("load") or {}).get("new") or []
    first = new[0]["ttfa_s"] if new and new[0]["others_speaking"] else None
    held = held_ttfa(record)
    worst = max(held) if held else None
    lone = (record.get("loops") or {}).get("lone")
    limit = bound(lone) if lone else None
    goal = f"≤ {num(limit, 3)} s = 1.5 × (prompt + prefill + 2 frames + chunk decode) alone"
    rows = [
        ("delivered frames/s, 4 clients ÷ 1 client", num(d), "≥ 2.5", verdict(d, 2.5)),
        ("frame loop frames/s, 4 rows ÷ 1 row", num(lp), "≥ 3", verdict(lp, 3.0)),
        (f"time to first audio of a new request while {args.load_clients} speak: the first", num(first, 3),
         goal, verdict(first, limit, below=True) if limit else "not measured"),
        (f"the same, worst of the {len(held)} that came while all {args.load_clients} spoke", num(worst, 3),
         goal, verdict(worst, limit, below=True) if limit else "not measured"),
    ]
    lines = ["| target | measured | goal | status |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {s} |" for a, b, c, s in rows]
    return "\n".join(lines)


def per_client_table(record: dict) -> str:
    lines = ["| system | clients | client | time to first audio s | request s | frames |",
             "|---|---|---|---|---|---|"]
    for system, rows in record["servers"].items():
        for r in rows if isinstance(rows, list) else []:
            for c in r.get("per_client", []):
                cell = c["error"][:120] if c["error"] else num(c["ttfa_s"], 3)
                lines.append(f"| {system} | {r['max_batch']} | {c['client']} | {cell} | "
                             f"{num(c['total_s'])} | {c['frames']:.2f} |")
    return "\n".join(lines)


def setup_lines(record: dict, args) -> list[str]:
    """What ran, how, on what: the bullet list above the tables."""
    m = record["machine"]
    loops = record.get("loops") or {}
    servers = {s: rows for s, rows in record["servers"].items() if isinstance(rows, list)}
    blas = "; ".join(f"{s} {', '.join(sorted({blas_label(r['blas']) for r in rows if r.get('blas')})) or '?'}"
                     for s, rows in servers.items())
    lines = [
        f"- machine: {m.get('cpu', '?')}, {m['nproc']} cores, load average {m['loadavg_start'][0]:.2f} at "
        f"start, {m.get('loadavg_end', os.getloadavg())[0]:.2f} at end; {args.threads} thread(s) per process",
        f"- BLAS seen in the server processes (/proc/<pid>/maps): {blas or '–'}"
        + (f"; frame loop runner: {loops['blas']}" if "blas" in loops else ""),
    ]
    if "ours" in args.systems:
        v = loops.get("versions", {})
        lines.append(
            f"- ours {v.get('mlx_qwen3_tts', '?')} (mlx {v.get('mlx', '?')}): float32 (the CPU default: no "
            f"--dtype), `serve --max-batch C --max-frames {args.frames} --first-chunk-frames "
            f"{args.first_chunk_frames} --chunk-frames {args.chunk_frames}`, streaming pcm, client i sends "
            "seed i")
    if "mlx-audio" in args.systems:
        dtypes = sorted({r["talker_dtype"] for r in servers.get("mlx-audio", []) if r.get("talker_dtype")})
        lines.append(
            f"- mlx-audio {getattr(args, 'mlx_audio_version', '?')}: its server app "
            "(bench/runners/mlxaudio_server.py), MLX_AUDIO_TTS_MAX_BATCH_SIZE=C, talker "
            f"{args.mlx_audio_dtype} (as loaded: {', '.join(dtypes) or '?'}), MKL "
            f"{'preloaded' if args.mlx_audio_blas == 'mkl' and args.mkl else 'not preloaded'}, "
            f"non-streaming pcm (it batches no streaming request), max_tokens={args.frames}, no per-request "
            "seed in its API (it samples from MLX's global generator)")
    lines += [
        f"- the same requests: speaker {SPEAKER}, language {LANGUAGE}, client i speaks text i of "
        f"{len(TEXTS)} ({min(map(len, TEXTS))}-{max(map(len, TEXTS))} characters), the checkpoint's "
        "sampling defaults; "
        f"a fresh server per C and a warm-up round of C requests first; the median of {args.rounds} timed "
        f"round(s) per cell; frame loop: median of {args.reps} run(s)",
        "- delivered frames/s = audio frames all clients received (pcm bytes / 3840) / wall time from the "
        "first request to the last byte, decode and HTTP included; frame loop frames/s = the same C "
        "requests as rows of one `FrameLoop` in one process, no decode, the first step (prefills) left "
        "out; time to first audio = request sent to first audio byte (mlx-audio: the whole response); "
        "`median (min–max)` over the clients",
    ]
    return lines


def report(record: dict, args) -> str:
    out = [
        f"## Continuous batching in the server: {args.size} CustomVoice, {args.frames} frames a request "
        f"({record['machine']['started']})",
        "",
        *setup_lines(record, args),
        "",
        throughput_table(record),
    ]
    if "ours" in args.systems:
        if args.load_clients:
            out += [
                "",
                f"Time to first audio of a new streaming request while {args.load_clients} others speak "
                f"(ours, batch of {args.load_clients + 1}); bound = 1.5 × (prompt + prefill + 2 frames + one "
                "chunk decode), each part measured alone in the runner process:",
                "",
                load_table(record, args),
            ]
        out += ["", "Targets (issue #24):", "", targets_table(record, args)]
    out += ["", "Per client:", "", per_client_table(record)]
    return "\n".join(out)


# --------------------------------------------------------------------------- main


def parse_timeouts(parser: argparse.ArgumentParser, text: str) -> dict[str, float]:
    """`1200,mlx-audio=3600` -> seconds per server session (and the runner) for each system."""
    timeouts = {"ours": 1200.0, "mlx-audio": 3600.0}
    for item in (t.strip() for t in text.split(",") if t.strip()):
        name, _, value = item.rpartition("=")
        if name and name not in SERVER_SYSTEMS:
            parser.error(f"--timeout: unknown system {name!r}")
        try:
            seconds = float(value)
        except ValueError:
            parser.error(f"--timeout: {item!r} is not SECONDS or SYSTEM=SECONDS")
        for system in [name] if name else SERVER_SYSTEMS:
            timeouts[system] = seconds
    return timeouts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--size", default="0.6b", choices=SIZES,
                   help="random CustomVoice checkpoint (default %(default)s)")
    p.add_argument("--frames", type=int, default=48, help="frames of every request (default %(default)s)")
    p.add_argument("--clients", default="1,2,4,8", help="concurrent client counts (default %(default)s)")
    p.add_argument("--threads", type=int, default=2,
                   help="BLAS/OpenMP threads per process (default %(default)s)")
    p.add_argument("--systems", default=",".join(SERVER_SYSTEMS), help="comma list of %(default)s")
    p.add_argument("--reps", type=int, default=3, help="runs of each in-process frame loop (median)")
    p.add_argument("--rounds", type=int, default=1,
                   help="timed rounds of C clients per server, the median round reported (default 1)")
    p.add_argument("--load-clients", type=int, default=3,
                   help="streams already speaking when the new request comes (0: skip; default %(default)s)")
    p.add_argument("--load-probes", type=int, default=6,
                   help="new requests sent one after another while they speak (default %(default)s)")
    p.add_argument("--first-chunk-frames", type=int, default=2, help="ours: frames in the first chunk")
    p.add_argument("--chunk-frames", type=int, default=12, help="ours: frames per later chunk")
    p.add_argument("--timeout", default="1200,mlx-audio=3600",
                   help="seconds per server session (start, warm-up, clients) and for the runner, one "
                        "number or per system (default %(default)s)")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                   help="checkpoints (benchmark.py's cache, default %(default)s) and results")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for serve_batch.{md,json} and logs/ "
                        "(default <cache>/results/serve-batch-<time>)")
    p.add_argument("--ours-python", default=sys.executable, help="python of our venv (default: this one)")
    p.add_argument("--mlx-audio-python", default="/work/mlxaudio-venv/bin/python",
                   help="python of a venv with mlx-audio 0.6.2 and its server extra")
    p.add_argument("--mlx-audio-dtype", default="float32", choices=["float32", "bfloat16", "stored"],
                   help="mlx-audio's talker dtype (default float32, like ours on the CPU; stored: as its "
                        "server loads the bf16 file)")
    p.add_argument("--mlx-audio-blas", default="mkl", choices=["mkl", "bundled"],
                   help="preload our venv's MKL into mlx-audio's server (default) or keep its bundled BLAS")
    p.add_argument("--mlx-audio-warmup-frames", type=int, default=2,
                   help="frames of mlx-audio's warm-up request")
    args = p.parse_args(argv)
    args.clients = sorted({int(c) for c in args.clients.split(",") if c})
    args.systems = [s for s in args.systems.split(",") if s]
    bad = [s for s in args.systems if s not in SERVER_SYSTEMS]
    if bad:
        p.error(f"--systems: unknown {bad}; choose from {', '.join(SERVER_SYSTEMS)}")
    if not args.clients or min(args.clients) < 1 or min(args.reps, args.rounds, args.load_probes) < 1 \
            or args.load_clients < 0:
        p.error("--clients, --reps, --rounds and --load-probes must be >= 1, --load-clients >= 0")
    if args.frames < max(3, args.first_chunk_frames) or args.chunk_frames < 1:
        p.error("--frames must be >= 3 and >= --first-chunk-frames (the first chunk must come before "
                "the end), --chunk-frames >= 1")
    args.timeouts = parse_timeouts(p, args.timeout)
    args.python = {"ours": args.ours_python}  # run_one's view
    args.mkl = mkl_path(args.ours_python)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or args.cache_dir / "results" / f"serve-batch-{stamp}"
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    model = checkpoint(args.cache_dir, args.size, "custom_voice", args.ours_python, logs)
    options = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    record: dict[str, Any] = {"args": options, "machine": machine_info(), "model": str(model), "texts": TEXTS,
                              "complete": False, "servers": {}}

    def save() -> None:  # after every stage: an interrupted run keeps what it measured
        (out / "serve_batch.json").write_text(json.dumps(record, indent=1, default=str))

    if "ours" in args.systems:
        record["loops"] = run_loops(args, model, logs)
        save()
    for system in args.systems:
        why = mlx_audio_missing(args) if system == "mlx-audio" else None
        if why:
            log(f"{system}: n/a ({why})")
            record["servers"][system] = why
            continue
        run_system(system, args, model, logs, record, save)
    record["machine"]["loadavg_end"] = os.getloadavg()
    text = report(record, args)
    record.update(complete=True, markdown=text)
    save()
    (out / "serve_batch.md").write_text(text + "\n")
    print("\n" + text + "\n", flush=True)
    log(f"wrote {out / 'serve_batch.md'} and {out / 'serve_batch.json'} (server and runner logs in {logs})")
    ours_failed = "ours" in args.systems and (
        "error" in record.get("loops", {}) or any("error" in r for r in record["servers"].get("ours", [])))
    return 1 if ours_failed else 0


if __name__ == "__main__":
    sys.exit(main())
