"""Benchmark runner for `mlx_qwen3_tts` (this repository), run with its venv's python.

Modes (spec["mode"]):
* speed: load, frame loop, talker / code-predictor split, codec decode, time to first audio.
* clone_prefix: prefill of a voice-clone prompt with and without the cached voice prefix.
* long_text: peak memory of one `generate` call on a long text, split into pieces.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SAMPLE_RATE, main, matmul_gflops, peak_rss_gb, stats, weight_bytes_per_frame  # noqa: E402


def sampling_kwargs(spec):
    kwargs = dict(speaker=spec["speaker"], language=spec["language"], seed=spec["seed"])
    if spec.get("greedy"):
        kwargs.update(temperature=0.0, subtalker_temperature=0.0)
    return kwargs


def load(spec, result):
    import mlx.core as mx
    from mlx.utils import tree_flatten

    import mlx_qwen3_tts as qt

    result["versions"] = {"mlx": mx.__version__, "mlx_qwen3_tts": qt.__version__}
    result["gemm_gflops_fp32"] = matmul_gflops(mx)
    start = time.perf_counter()
    tts = qt.load(spec["model"], dtype=spec["dtype"])
    result["load_s"] = time.perf_counter() - start
    params = tree_flatten(tts.model.parameters())
    result["weights"] = weight_bytes_per_frame((k, v.nbytes) for k, v in params)
    result["talker_dtype"] = str(tts.model.talker.model.norm.weight.dtype)
    return tts


def frame_loop(tts, spec, frames):
    """`generate_codes` for `frames` frames: prompt building, prefill and the frame loop."""
    import mlx.core as mx

    from mlx_qwen3_tts import generate as gen

    request = tts._request(spec["text"], max_frames=frames, **sampling_kwargs(spec))
    (codes, reason), = gen.generate_codes(
        tts.model.talker, [request.prompt], tts.embedder.tts_pad, request.config,
        mx.random.key(request.seed),
    )
    return codes, reason


def split_loop(tts, spec, frames):
    """The same loop with the talker and the code predictor timed (and synchronised) one by one.

    Wraps `Talker.__call__` and the code predictor `generate_step` calls: the callable that
    `generate.compiled_predictor` returns, or `generate.predict_codes` where that does not
    exist. If the loop no longer makes these calls (counts differ), the split is reported
    missing rather than wrong.
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
    if hasattr(gen, "compiled_predictor"):
        saved["compiled_predictor"] = gen.compiled_predictor
        gen.compiled_predictor = lambda *a, **k: timed(saved["compiled_predictor"](*a, **k), cp_times)
    else:
        saved["predict_codes"] = gen.predict_codes
        gen.predict_codes = timed(saved["predict_codes"], cp_times)
    try:
        start = time.perf_counter()
        codes, _ = frame_loop(tts, spec, frames)
        total = time.perf_counter() - start
    finally:
        Talker.__call__ = saved.pop("call")
        for name, fn in saved.items():
            setattr(gen, name, fn)
    n = codes.shape[0]
    # The last sampled token may or may not get a talker step, depending on the loop's version.
    if len(cp_times) != n or len(talker_times) not in (n - 1, n) or len(prefill_end) != 1:
        return {"error": f"instrumentation saw {len(prefill_end)} prefills, {len(talker_times)} talker "
                         f"steps and {len(cp_times)} code-predictor calls for {n} frames "
                         "(generate.py changed?)"}
    prefill = prefill_end[0] - start
    rest = total - prefill - sum(talker_times) - sum(cp_times)
    return {"frames": n, "seconds": total, "prefill_s": prefill,
            "talker_ms": 1000 * sum(talker_times) / max(len(talker_times), 1),
            "code_predictor_ms": 1000 * sum(cp_times) / n, "other_ms": 1000 * rest / n}


def run_speed(spec, result):
    import mlx.core as mx
    import numpy as np

    tts = load(spec, result)
    mx.reset_peak_memory()
    with_frames = lambda n: frame_loop(tts, spec, n)  # noqa: E731
    with_frames(spec["warmup_frames"])

    start = time.perf_counter()
    codes, reason = with_frames(spec["frames"])
    result["loop"] = {"frames": int(codes.shape[0]), "seconds": time.perf_counter() - start,
                      "finish_reason": reason}

    if spec["split_frames"]:
        try:
            result["split"] = split_loop(tts, spec, spec["split_frames"])
        except Exception as e:  # e.g. the loop became a compiled graph: report, keep measuring
            result["split"] = {"error": f"{type(e).__name__}: {e}"}

    if spec["decode_frames"]:
        n = spec["decode_frames"]
        dec = np.resize(codes, (n, codes.shape[1])).astype(np.int32)  # tiles if the loop was shorter
        tts.speech_tokenizer.decode(dec[:2])  # warm-up
        times = []
        for _ in range(spec.get("decode_repeats", 1)):
            start = time.perf_counter()
            wav = tts.speech_tokenizer.decode(dec)
            times.append(time.perf_counter() - start)
        result["decode"] = {"frames": n, "seconds": min(times), "audio_s": len(wav) / SAMPLE_RATE}

    if spec["ttfa"]:
        # Streaming text (non_streaming_mode=False), the layout mlx-audio streams with: the
        # prompt holds the first text token, the rest comes in with the frames.
        first_chunk = spec["first_chunk_frames"]
        request_kwargs = dict(max_frames=spec["frames"], non_streaming_mode=False, **sampling_kwargs(spec))
        kwargs = dict(request_kwargs, runaway_guard=False, first_chunk_frames=first_chunk)
        warm = tts.stream_generate(spec["text"], **kwargs)
        next(warm)
        warm.close()
        # The bound's parts, each timed alone (warm): this layout's prefill, the first decode step.
        request = tts._request(spec["text"], **request_kwargs)
        start = time.perf_counter()
        mx.eval(tts.model.talker(request.prompt.prefill[None]))
        result["ttfa_prefill_s"] = time.perf_counter() - start
        decoder = tts.speech_tokenizer.stream_decoder()
        start = time.perf_counter()
        decoder.decode_step(codes[:first_chunk].astype(np.int32))
        result["first_chunk_decode_s"] = time.perf_counter() - start
        tts._prefixes.clear()  # a first request for this voice
        start = time.perf_counter()
        stream = tts.stream_generate(spec["text"], **kwargs)
        chunk = next(stream)
        result["ttfa"] = {"seconds": time.perf_counter() - start, "elapsed_reported": chunk.elapsed,
                          "first_chunk_frames": chunk.frames,
                          "prefill_positions": int(request.prompt.prefill.shape[0])}
        stream.close()
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


def run_clone_prefix(spec, result):
    """Time to the first frame of a voice-clone prompt: cold (prefix computed) vs cached."""
    import mlx.core as mx

    from mlx_qwen3_tts.generate import generate_step

    tts = load(spec, result)
    start = time.perf_counter()
    voice = tts.create_voice_prompt(reference_voice(spec["ref_seconds"]), spec["ref_text"])
    result["create_voice_prompt_s"] = time.perf_counter() - start

    def first_frame():
        start = time.perf_counter()
        request = tts._request(spec["text"], voice=voice, max_frames=4, seed=spec["seed"])
        prefix = tts._prefix(request.prompt)
        steps = generate_step(tts.model.talker, [request.prompt], tts.embedder.tts_pad,
                              request.config, mx.random.key(request.seed), prefix=prefix)
        frame = next(steps)
        mx.eval(frame.codes)
        steps.close()
        return time.perf_counter() - start, request.prompt

    first_frame()  # warm-up
    cold, cached = [], []
    for _ in range(spec["repeats"]):
        tts._prefixes.clear()
        seconds, prompt = first_frame()
        cold.append(seconds)
        cached.append(first_frame()[0])
    result["clone_prefix"] = {
        "prefill_positions": int(prompt.prefill.shape[0]), "prefix_positions": int(prompt.prefix_len),
        "ref_frames": int(voice.ref_codes.shape[0]) if voice.ref_codes is not None else 0,
        "cold_s": stats(cold), "cached_s": stats(cached),
    }


def run_long_text(spec, result):
    import mlx.core as mx

    from mlx_qwen3_tts.text_split import split_text

    tts = load(spec, result)
    text = spec["long_text"]
    rss_before = peak_rss_gb()
    start = time.perf_counter()
    out = tts.generate(text, max_frames=spec["max_frames"], runaway_guard=False, **sampling_kwargs(spec))
    result["long_text"] = {
        "chars": len(text), "pieces": len(split_text(text)), "frames": out.frames,
        "audio_s": out.seconds, "seconds": time.perf_counter() - start,
        "peak_mlx_gb": out.peak_memory_gb, "peak_rss_after_load_gb": rss_before,
        "max_frames_per_piece": spec["max_frames"],
    }
    result["peak_mlx_gb"] = mx.get_peak_memory() / 1e9


def run_utterance(spec, result):
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


def run(spec, result):
    modes = {"speed": run_speed, "clone_prefix": run_clone_prefix, "long_text": run_long_text,
             "utterance": run_utterance}
    modes[spec["mode"]](spec, result)


if __name__ == "__main__":
    main(run)
