"""Benchmark runner for `mlx_qwen3_tts` (this repository), run with its venv's python.

Modes (spec["mode"]):
* speed: load, frame loop, talker / code-predictor split, codec decode, time to first audio.
* clone_prefix: prefill of a voice-clone prompt with and without the cached voice prefix.
* long_text: peak memory of one `generate` call on a long text, split into pieces.
* utterance: peak memory of one long utterance against the weights.
* host_time: host time and host syncs per frame (`bench/host_time.py`).
* batch_loop: the continuous batch's frame loop alone for C rows, and the parts of a lone
  request's time to first audio (`bench/serve_batch.py`).

Only the public surface is used: `tts.job(...)` for requests, `tts.engine` (model, prompt
embedder, voice prefixes, speech tokenizer, stream decoders) and `generate.generate_step` (or the
`generate.FrameLoop` it and the server's continuous batch run). Every loaded model does
its MLX work on its own thread, so anything that touches `tts.engine` runs through
`tts.thread.run` (arrays made on that thread cannot be evaluated on another).
"""

from __future__ import annotations  # the annotations name types the runner imports lazily

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlx_qwen3_tts  # noqa: F401  (before any mlx import: it loads MKL under MLX, blas.py)

if TYPE_CHECKING:
    import numpy as np

    from mlx_qwen3_tts import Qwen3TTS
    from mlx_qwen3_tts.request import Request

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SAMPLE_RATE, main, matmul_gflops, peak_rss_gb, stats, weight_bytes_per_frame  # noqa: E402

SPLIT_ERRORS = (AttributeError, TypeError, ValueError, RuntimeError)  # the loop changed under the wrappers


def sampling_kwargs(spec: dict) -> dict[str, Any]:
    kwargs = dict(speaker=spec["speaker"], language=spec["language"], seed=spec["seed"])
    if spec.get("greedy"):
        kwargs.update(temperature=0.0, subtalker_temperature=0.0)
    return kwargs


def load(spec: dict, result: dict) -> Qwen3TTS:
    """`qt.load` as the spec asks; no dtype (or device) argument at all when it names none."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    import mlx_qwen3_tts as qt

    result["versions"] = {"mlx": mx.__version__, "mlx_qwen3_tts": qt.__version__}
    result["gemm_gflops_fp32"] = matmul_gflops(mx)
    options = {k: spec[k] for k in ("dtype", "device") if spec.get(k)}
    start = time.perf_counter()
    tts = qt.load(spec["model"], **options)
    result["load_s"] = time.perf_counter() - start
    params = tree_flatten(tts.model.parameters())
    result["weights"] = weight_bytes_per_frame((k, v.nbytes) for k, v in params)
    result["talker_dtype"] = str(tts.model.talker.model.norm.weight.dtype)
    result["device"] = str(tts.device)
    result["compute"] = tts.compute
    return tts


def request_for(tts: Qwen3TTS, text: str, **kwargs: Any) -> Request:
    """The one request `tts.generate(text, **kwargs)` would run (texts here are one piece)."""
    job = tts.job(text, **kwargs)
    assert len(job.requests) == 1, f"the benchmark text became {len(job.requests)} pieces"
    return job.requests[0]


def speed_request(tts: Qwen3TTS, spec: dict, frames: int) -> Request:
    # No runaway guard: the benchmark asks for exactly `frames` frames (EOS cannot win).
    return request_for(tts, spec["text"], max_frames=frames, runaway_guard=False, **sampling_kwargs(spec))


def frames_of(tts: Qwen3TTS, request: Request) -> Iterator[np.ndarray]:
    """`request`'s frames as `generate_codes` consumes them, `[16]` codes each; call on the
    model's thread. `generate_step` without a voice prefix: the whole prompt is prefilled, as in
    the other systems. With one request, every frame the loop yields is one of its frames (the
    loop returns at EOS)."""
    import numpy as np

    from mlx_qwen3_tts.generate import generate_step

    engine = tts.engine
    for frame in generate_step(engine.model.talker, [request], engine.embedder.tts_pad):
        yield np.asarray(frame.codes)[0]


def frame_times(tts: Qwen3TTS, request: Request) -> tuple[np.ndarray, list[float]]:
    """`(codes [frames, 16], seconds from the call to each frame reaching the caller)`.

    The frame loop alone (prefill and the first frame excluded) is `times[-1] - times[0]` for
    `len(times) - 1` frames.
    """
    import numpy as np

    def run():
        start, rows, times = time.perf_counter(), [], []
        for codes in frames_of(tts, request):
            rows.append(codes)
            times.append(time.perf_counter() - start)
        return np.stack(rows).astype(np.int32), times

    return tts.thread.run(run)


def frame_loop(tts: Qwen3TTS, spec: dict, frames: int) -> tuple[np.ndarray, str, list[float]]:
    """Prompt building, prefill and the frame loop: `(codes, finish reason, frame times)`."""
    start = time.perf_counter()
    request = speed_request(tts, spec, frames)
    build = time.perf_counter() - start
    codes, times = frame_times(tts, request)
    reason = "length" if len(codes) == frames else "eos"
    return codes, reason, [build + t for t in times]


def split_loop(tts: Qwen3TTS, spec: dict, frames: int) -> dict[str, Any]:
    """The same loop with the talker and the code predictor timed (and synchronised) one by one.

    Wraps `Talker.__call__` (the prefill), `Talker.decode` (the steps, where it exists) and the
    code predictor calls: the callable that
    `generate.compiled_predictor` returns, or `generate.predict_codes` where that does not
    exist. The wrappers run where the loop runs (the model's thread). If the loop no longer
    makes these calls (counts differ), the split is reported missing rather than wrong.
    """
    import mlx.core as mx

    from mlx_qwen3_tts import generate as gen
    from mlx_qwen3_tts.models.talker import Talker

    talker_times, cp_times, prefill_end = [], [], []

    def timed(fn, times):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            mx.eval(out)
            times.append(time.perf_counter() - start)
            return out
        return wrapper

    def timed_talker(self, inputs_embeds, *args, **kwargs):
        if inputs_embeds.shape[1] == 1:  # a decode step
            return timed(saved["call"], talker_times)(self, inputs_embeds, *args, **kwargs)
        out = saved["call"](self, inputs_embeds, *args, **kwargs)
        mx.eval(out)
        prefill_end.append(time.perf_counter())
        return out

    saved = {"call": Talker.__call__}
    Talker.__call__ = timed_talker
    if hasattr(Talker, "decode"):  # the decode step's own entry (compiled block halves)
        saved["decode"] = Talker.decode
        Talker.decode = lambda self, *a, **k: timed(saved["decode"], talker_times)(self, *a, **k)
    if hasattr(gen, "compiled_predictor"):
        saved["compiled_predictor"] = gen.compiled_predictor
        gen.compiled_predictor = lambda *a, **k: timed(saved["compiled_predictor"](*a, **k), cp_times)
    else:
        saved["predict_codes"] = gen.predict_codes
        gen.predict_codes = timed(saved["predict_codes"], cp_times)
    try:
        start = time.perf_counter()
        codes, _, _ = frame_loop(tts, spec, frames)
        total = time.perf_counter() - start
    finally:
        Talker.__call__ = saved.pop("call")
        if "decode" in saved:
            Talker.decode = saved.pop("decode")
        for name, fn in saved.items():
            setattr(gen, name, fn)
    n = codes.shape[0]
    # The last sampled token may or may not get a talker step (or a predictor call), depending
    # on how far ahead the loop's version builds.
    if len(cp_times) not in (n, n + 1) or len(talker_times) not in (n - 1, n) or len(prefill_end) != 1:
        return {"error": f"instrumentation saw {len(prefill_end)} prefills, {len(talker_times)} talker "
                         f"steps and {len(cp_times)} code-predictor calls for {n} frames "
                         "(generate.py changed?)"}
    prefill = prefill_end[0] - start
    rest = total - prefill - sum(talker_times) - sum(cp_times)
    return {"frames": n, "seconds": total, "prefill_s": prefill,
            "talker_ms": 1000 * sum(talker_times) / max(len(talker_times), 1),
            "code_predictor_ms": 1000 * sum(cp_times) / n, "other_ms": 1000 * rest / n}


def decode_seconds(tts: Qwen3TTS, codes: np.ndarray, repeats: int = 1) -> tuple[float, np.ndarray]:
    """`(best seconds, audio)` of the one-shot codec decode, after a 2-frame warm-up."""
    def run():
        tts.speech_tokenizer.decode(codes[:2])
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            wav = tts.speech_tokenizer.decode(codes)
            times.append(time.perf_counter() - start)
        return min(times), wav

    return tts.thread.run(run)


def prefill_seconds(tts: Qwen3TTS, request: Request) -> float:
    """The prompt's forward pass alone (warm), evaluated."""
    import mlx.core as mx

    def run():
        start = time.perf_counter()
        mx.eval(tts.engine.model.talker(request.prompt.prefill[None]))
        return time.perf_counter() - start

    return tts.thread.run(run)


def first_chunk_decode_seconds(tts: Qwen3TTS, codes: np.ndarray) -> float:
    """A fresh stream decoder's first step on `codes`."""
    def run():
        decoder = tts.speech_tokenizer.stream_decoder()
        start = time.perf_counter()
        decoder.decode_step(codes)
        return time.perf_counter() - start

    return tts.thread.run(run)


def time_to_first_audio(tts: Qwen3TTS, spec: dict, codes: np.ndarray, result: dict) -> None:
    """Streaming text (non_streaming_mode=False), the layout mlx-audio streams with: the prompt
    holds the first text token, the rest comes in with the frames."""
    first_chunk = spec["first_chunk_frames"]
    request_kwargs = dict(max_frames=spec["frames"], non_streaming_mode=False, **sampling_kwargs(spec))
    kwargs = dict(request_kwargs, runaway_guard=False, first_chunk_frames=first_chunk)
    warm = tts.stream_generate(spec["text"], **kwargs)
    next(warm)
    warm.close()
    # The bound's parts, each timed alone (warm): this layout's prefill, the first decode step.
    request = request_for(tts, spec["text"], **request_kwargs)
    result["ttfa_prefill_s"] = prefill_seconds(tts, request)
    result["first_chunk_decode_s"] = first_chunk_decode_seconds(tts, codes[:first_chunk])
    tts.thread.run(tts.engine.prefixes.clear)  # a first request for this voice
    start = time.perf_counter()
    stream = tts.stream_generate(spec["text"], **kwargs)
    chunk = next(stream)
    result["ttfa"] = {"seconds": time.perf_counter() - start, "elapsed_reported": chunk.elapsed,
                      "first_chunk_frames": chunk.frames,
                      "prefill_positions": int(request.prompt.prefill.shape[0])}
    stream.close()


def run_speed(spec: dict, result: dict) -> None:
    import mlx.core as mx
    import numpy as np

    tts = load(spec, result)
    mx.reset_peak_memory()
    frame_loop(tts, spec, spec["warmup_frames"])

    start = time.perf_counter()
    codes, reason, times = frame_loop(tts, spec, spec["frames"])
    result["loop"] = {"frames": int(codes.shape[0]), "seconds": time.perf_counter() - start,
                      "finish_reason": reason, "first_frame_s": times[0]}
    if len(times) > 1:  # the frame loop alone: from the first frame handed out to the last
        result["loop"].update(frame_loop_s=times[-1] - times[0], frame_loop_frames=len(times) - 1)

    if spec["split_frames"]:
        try:
            result["split"] = split_loop(tts, spec, spec["split_frames"])
        except SPLIT_ERRORS as e:  # e.g. the loop became a compiled graph: report, keep measuring
            result["split"] = {"error": f"{type(e).__name__}: {e}"}

    if spec["decode_frames"]:
        n = spec["decode_frames"]
        dec = np.resize(codes, (n, codes.shape[1])).astype(np.int32)  # tiles if the loop was shorter
        seconds, wav = decode_seconds(tts, dec, spec.get("decode_repeats", 1))
        result["decode"] = {"frames": n, "seconds": seconds, "audio_s": len(wav) / SAMPLE_RATE}

    if spec["ttfa"]:
        time_to_first_audio(tts, spec, codes, result)
    result["peak_mlx_gb"] = mx.get_peak_memory() / 1e9


def reference_voice(seconds: float, seed: int = 0):
    """A voiced-sounding synthetic reference: a gliding harmonic tone with noise, 24 kHz."""
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    wav = sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2)
    wav = 0.3 * wav / np.abs(wav).max() + 0.01 * rng.standard_normal(len(t))
    return wav.astype(np.float32), SAMPLE_RATE


def first_frame_seconds(tts: Qwen3TTS, spec: dict, voice: Any) -> tuple[float, Any]:
    """`(seconds, prompt)` from building a voice-clone request to its first frame, through the
    engine's frame loop, which reuses the voice prefix's KV cache when it holds one."""
    import numpy as np

    def run():
        start = time.perf_counter()
        request = request_for(tts, spec["text"], voice=voice, max_frames=4, seed=spec["seed"])
        steps = tts.engine.frames([request])
        np.asarray(next(steps).codes)
        steps.close()
        return time.perf_counter() - start, request.prompt

    return tts.thread.run(run)


def run_clone_prefix(spec: dict, result: dict) -> None:
    """Time to the first frame of a voice-clone prompt: cold (prefix computed) vs cached."""
    tts = load(spec, result)
    start = time.perf_counter()
    voice = tts.create_voice_prompt(reference_voice(spec["ref_seconds"]), spec["ref_text"])
    result["create_voice_prompt_s"] = time.perf_counter() - start

    first_frame_seconds(tts, spec, voice)  # warm-up
    cold, cached = [], []
    for _ in range(spec["repeats"]):
        tts.thread.run(tts.engine.prefixes.clear)
        seconds, prompt = first_frame_seconds(tts, spec, voice)
        cold.append(seconds)
        cached.append(first_frame_seconds(tts, spec, voice)[0])
    result["clone_prefix"] = {
        "prefill_positions": int(prompt.prefill.shape[0]), "prefix_positions": int(prompt.prefix_len),
        "ref_frames": int(voice.ref_codes.shape[0]) if voice.ref_codes is not None else 0,
        "cold_s": stats(cold), "cached_s": stats(cached),
    }


def run_long_text(spec: dict, result: dict) -> None:
    """Peak memory of one `generate` call on a long text, at most `max_frames` frames per piece.

    `max_frames` caps a whole call, so the per-piece cap is a runaway guard that stops each piece
    after that many frames (the checkpoint's EOS never wins); its warnings are expected.
    """
    import warnings

    import mlx.core as mx

    import mlx_qwen3_tts as qt

    tts = load(spec, result)
    text = spec["long_text"]
    per_piece = qt.RunawayGuard(base_frames=spec["max_frames"], frames_per_token=0.0)
    kwargs = dict(runaway_guard=per_piece, **sampling_kwargs(spec))
    pieces = len(tts.job(text, **kwargs).requests)
    rss_before = peak_rss_gb()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qt.RunawayWarning)
        out = tts.generate(text, **kwargs)
    result["long_text"] = {
        "chars": len(text), "pieces": pieces, "frames": out.frames,
        "audio_s": out.seconds, "seconds": time.perf_counter() - start,
        "peak_mlx_gb": out.peak_memory_gb, "peak_rss_after_load_gb": rss_before,
        "max_frames_per_piece": spec["max_frames"],
    }
    result["peak_mlx_gb"] = mx.get_peak_memory() / 1e9


def run_utterance(spec: dict, result: dict) -> None:
    """Peak memory of one long utterance (frame loop + one-shot decode) against the weights."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    tts = load(spec, result)
    weights = sum(v.nbytes for _, v in tree_flatten(tts.model.parameters()))
    weights += sum(v.nbytes for _, v in tree_flatten(tts.speech_tokenizer.model.parameters()))
    mx.reset_peak_memory()
    start = time.perf_counter()
    out = tts.generate(spec["text"], max_frames=spec["frames"], runaway_guard=False,
                       **sampling_kwargs(spec))
    result["peak_mlx_gb"] = mx.get_peak_memory() / 1e9
    result["utterance"] = {
        "frames": out.frames, "audio_s": out.seconds, "seconds": time.perf_counter() - start,
        "weights_gb": weights / 1e9, "peak_mlx_gb": result["peak_mlx_gb"], "peak_rss_gb": peak_rss_gb(),
    }


def marked_frames(tts: Qwen3TTS, request: Request) -> list:
    """Frame boundaries of one request's frame loop with its host syncs counted, on the model's
    thread (where the loop runs, and where the counter must be entered)."""
    from _syncs import SyncCounter

    def run():
        with SyncCounter() as syncs:
            return [syncs.mark() for _ in frames_of(tts, request)]

    return tts.thread.run(run)


def run_host_time(spec: dict, result: dict) -> None:
    """Host time and syncs per frame of the frame loop (bench/host_time.py)."""
    from _syncs import per_frame

    tts = load(spec, result)
    marked_frames(tts, speed_request(tts, spec, spec["warmup_frames"]))
    marks = marked_frames(tts, speed_request(tts, spec, spec["frames"]))
    # Boundaries are frames handed to the caller: prefill and the first frame come before the first.
    result["host"] = per_frame(marks)
    result["host"]["method"] = "intervals between frames yielded by generate.generate_step"


def batch_requests(tts: Qwen3TTS, spec: dict, count: int, first: int = 0,
                   frames: int | None = None) -> list[Request]:
    """Requests `first` .. `first + count - 1` as the server's clients send them: text i (of
    similar lengths), seed i, exactly `frames` (default spec["frames"]) frames (no runaway
    guard; EOS cannot win)."""
    texts = spec["texts"]
    return [request_for(tts, texts[i % len(texts)], speaker=spec["speaker"], language=spec["language"],
                        seed=i, max_frames=frames or spec["frames"], runaway_guard=False)
            for i in range(first, first + count)]


def step_times(tts: Qwen3TTS, requests: list[Request]) -> list[tuple[float, int]]:
    """One `FrameLoop` over `requests`, as the server's batch runs it (voice prefixes from the
    engine's store), stepped until every row is done: `(seconds since the rows were added, frames
    handed out)` after each step. Runs on the model's thread."""
    from mlx_qwen3_tts.generate import FrameLoop

    def run():
        engine = tts.engine
        loop = FrameLoop(engine.model.talker, engine.embedder.tts_pad)
        for request in requests:
            loop.add(request, prefix=engine.prefix(request))
        start, marks = time.perf_counter(), []
        while loop.active:
            out = loop.step()
            marks.append((time.perf_counter() - start, len(out)))
        return marks

    return tts.thread.run(run)


def loop_rate(marks: list[tuple[float, int]]) -> dict[str, float]:
    """Frames/s of the loop alone: frames handed out after the first step over the time since it
    (the rows' prefills and their first frames are in the first step, left out)."""
    import statistics

    frames = sum(n for _, n in marks[1:])
    seconds = marks[-1][0] - marks[0][0]
    steps = [b - a for (a, _), (b, _) in zip(marks, marks[1:])]
    return {"frames": frames, "seconds": seconds, "fps": frames / seconds if seconds > 0 else float("nan"),
            "steps": len(marks), "median_step_ms": 1000 * statistics.median(steps) if steps else float("nan")}


def lone_first_chunk(tts: Qwen3TTS, spec: dict, seed: int) -> dict[str, float]:
    """The parts of a lone request's time to first audio, each timed on its own (warm):

    prompt_s: `tts.job(...)` (tokens and prompt embeddings, evaluated);
    prefill_s: `FrameLoop.add` with the voice prefix's cached KV (the prompt's forward pass past
      it and the first token), until MLX is idle (`mx.synchronize`: `add` only queues the work);
    frame_s: one frame of a lone batch, the median step after the first two (steady state);
    decode_s: `engine.decode_chunk` of the first chunk's frames on a fresh stream decoder;
    first_chunk_s: the same request end to end in this process: job, add, the steps until the
      first chunk's frames are out, their decode (no server, no HTTP).
    """
    import mlx.core as mx
    import numpy as np

    from mlx_qwen3_tts.generate import FrameLoop

    first = spec["first_chunk_frames"]
    text = spec["texts"][seed % len(spec["texts"])]
    kwargs = dict(speaker=spec["speaker"], language=spec["language"], seed=seed, max_frames=spec["frames"],
                  runaway_guard=False)

    def run():
        engine = tts.engine
        talker = engine.model.talker
        start = time.perf_counter()
        request = request_for(tts, text, **kwargs)  # `tts.job` runs inline on the model's thread
        prompt_s = time.perf_counter() - start
        loop = FrameLoop(talker, engine.embedder.tts_pad)
        t0 = time.perf_counter()
        loop.add(request, prefix=engine.prefix(request))
        mx.synchronize()
        prefill_s = time.perf_counter() - t0
        codes, marks = [], [time.perf_counter()]
        while loop.active:
            codes += [c for _, c in loop.step()]
            marks.append(time.perf_counter())
            if len(codes) == first:
                chunk_out = marks[-1]
        steps = np.diff(marks)
        decoder = engine.stream_decoder(request)
        t1 = time.perf_counter()
        engine.decode_chunk(decoder, np.stack(codes[:first]))
        decode_s = time.perf_counter() - t1
        return {"prompt_s": prompt_s, "prefill_s": prefill_s,
                "frame_s": float(np.median(steps[2:])) if len(steps) > 2 else float(steps[-1]),
                "decode_s": decode_s,
                "first_chunk_s": prompt_s + (chunk_out - t0) + decode_s,
                "first_chunk_frames": first}

    return tts.thread.run(run)


def run_batch_loop(spec: dict, result: dict) -> None:
    """The continuous batch's frame loop alone, C rows at once for each C in `spec["clients"]`,
    `reps` times each; and the parts of a lone request's time to first audio (`lone_first_chunk`)."""
    import statistics

    tts = load(spec, result)
    lone_first_chunk(tts, spec, seed=100)  # warm-up: voice prefix store, stream decoder, one row
    result["loops"] = []
    for clients in spec["clients"]:
        # Warm-up of 4 frames: the code predictor is compiled once per batch shape.
        step_times(tts, batch_requests(tts, spec, clients, first=100, frames=4))
        runs = [loop_rate(step_times(tts, batch_requests(tts, spec, clients))) for _ in range(spec["reps"])]
        result["loops"].append({"clients": clients, "runs": runs,
                                "fps": statistics.median(r["fps"] for r in runs),
                                "best_fps": max(r["fps"] for r in runs)})
    parts = [lone_first_chunk(tts, spec, seed=spec["lone_seed"]) for _ in range(spec["reps"])]
    result["lone"] = {k: statistics.median(p[k] for p in parts) for k in parts[0]}
    result["lone"]["runs"] = parts


def run(spec: dict, result: dict) -> None:
    modes = {"speed": run_speed, "clone_prefix": run_clone_prefix, "long_text": run_long_text,
             "utterance": run_utterance, "host_time": run_host_time, "batch_loop": run_batch_loop}
    modes[spec["mode"]](spec, result)


if __name__ == "__main__":
    main(run)
