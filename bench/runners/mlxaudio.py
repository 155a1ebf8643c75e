"""Benchmark runner for mlx-audio's Qwen3-TTS (0.6.2), run with the mlx-audio venv's python.

(Not named `mlx_audio.py`: the script's folder comes first on sys.path and would shadow the
package.) Everything timed is mlx-audio's own code: `Model.generate` for the frame loop (its
final codec decode stubbed out and timed separately on fewer frames, being slow on CPU),
`talker(...)` and `_predict_code_tokens(...)` for the split, `speech_tokenizer.decode` for the
codec, and `generate(stream=True)` for the time to first audio. Mode "host_time" (for
`bench/host_time.py`) counts host syncs per frame in the same `Model.generate` loop.
"""

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SAMPLE_RATE, main, matmul_gflops, weight_bytes_per_frame  # noqa: E402


def sampling(spec, model) -> dict:
    options = model._resolve_generation_options(None, None, None, None, None)
    options.pop("max_tokens")
    if spec.get("greedy"):
        options["temperature"] = 0.0  # mlx-audio uses one temperature for talker and predictor
    return options


def load(spec, result):
    from importlib.metadata import version

    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_audio.tts.utils import load as load_model

    result["versions"] = {"mlx": mx.__version__, "mlx_audio": version("mlx-audio")}
    if spec.get("device"):
        mx.set_default_device(getattr(mx, spec["device"]))
    result["device"] = str(mx.default_device())
    result["gemm_gflops_fp32"] = matmul_gflops(mx)
    start = time.perf_counter()
    model = load_model(Path(spec["model"]))
    # Activation dtype: mlx-audio runs in the stored dtype (its defaults: no dtype in the spec);
    # else cast the talker (and predictor) like our `load(dtype=...)` does. Quantized layers keep
    # their packed weights; scales follow.
    dtype = getattr(mx, spec["dtype"]) if spec.get("dtype") else None
    if dtype is not None and model.talker.model.norm.weight.dtype != dtype:
        model.talker.set_dtype(dtype)
        mx.eval(model.talker.parameters())
    result["load_s"] = time.perf_counter() - start
    result["talker_dtype"] = str(model.talker.model.norm.weight.dtype)
    talker = tree_flatten(model.talker.parameters())
    result["weights"] = weight_bytes_per_frame((f"talker.{k}", v.nbytes) for k, v in talker)
    return model


def frame_loop(model, spec, frames):
    """`Model.generate` with the final codec decode replaced by a stub that records the codes."""
    import mlx.core as mx

    seen = {}
    decode = model.speech_tokenizer.decode

    def stub(codes):
        seen["codes"] = codes
        n = codes.shape[1] * model.speech_tokenizer.decode_upsample_rate
        return mx.zeros((1, n)), mx.array([n])

    model.speech_tokenizer.decode = stub
    mx.random.seed(spec["seed"])
    try:
        for _ in model.generate(text=spec["text"], voice=spec["speaker"], lang_code=spec["language"],
                                max_tokens=frames, **sampling(spec, model)):
            pass
    finally:
        model.speech_tokenizer.decode = decode
    return seen["codes"]


def split_loop(model, spec, frames):
    """mlx-audio's talker step and its code predictor (`_predict_code_tokens`), timed apart."""
    import mlx.core as mx

    options = sampling(spec, model)
    config = model.config.talker_config
    suppress = model._suppress_codec_tokens(config.codec_eos_token_id)
    mx.random.seed(spec["seed"])
    start = time.perf_counter()  # like the other systems' loops, the prefill counts as "other"
    embeds, trailing, pad = model._prepare_generation_inputs(
        spec["text"], language=spec["language"], speaker=spec["speaker"])
    cache, code_cache = model.talker.make_cache(), model.talker.code_predictor.make_cache()
    logits, hidden = model.talker(embeds, cache=cache)
    mx.eval(logits, hidden)
    prefill = time.perf_counter() - start
    history = []

    def sample(logits):
        token = model._sample_token(logits, temperature=options["temperature"], top_k=options["top_k"],
                                    top_p=options["top_p"], repetition_penalty=options["repetition_penalty"],
                                    generated_tokens=history or None, suppress_tokens=suppress)
        mx.eval(token)
        history.append(int(token[0, 0]))
        return token

    token = sample(logits)
    talker_s = cp_s = 0.0
    for step in range(frames):
        t0 = time.perf_counter()
        tokens, codes = model._predict_code_tokens(
            token, hidden, temperature=options["temperature"], top_k=options["top_k"],
            top_p=options["top_p"], code_cache=code_cache)
        mx.eval(codes)
        t1 = time.perf_counter()
        text = trailing[:, step:step + 1] if step < trailing.shape[1] else pad
        logits, hidden = model.talker(text + model._codec_embeds_for_tokens(tokens), cache=cache)
        mx.eval(logits, hidden)
        t2 = time.perf_counter()
        token = sample(logits)
        cp_s, talker_s = cp_s + t1 - t0, talker_s + t2 - t1
    total = time.perf_counter() - start
    return {"frames": frames, "seconds": total, "prefill_s": prefill,
            "talker_ms": 1000 * talker_s / frames, "code_predictor_ms": 1000 * cp_s / frames,
            "other_ms": 1000 * (total - prefill - talker_s - cp_s) / frames}


def run_speed(spec, result):
    import mlx.core as mx
    import numpy as np

    model = load(spec, result)
    mx.reset_peak_memory()
    frame_loop(model, spec, spec["warmup_frames"])

    start = time.perf_counter()
    codes = frame_loop(model, spec, spec["frames"])
    n = int(codes.shape[1])
    result["loop"] = {"frames": n, "seconds": time.perf_counter() - start,
                      "finish_reason": "length" if n == spec["frames"] else "eos"}

    if spec["split_frames"]:
        result["split"] = split_loop(model, spec, spec["split_frames"])

    if spec["decode_frames"]:
        k = spec["decode_frames"]
        frames = np.resize(np.array(codes[0]), (k, codes.shape[2])).astype(np.int32)
        dec = mx.array(frames)[None]
        # No warm-up: repeated calls of the same shape took the same time (~6 s per frame here),
        # so there is no one-time compile cost to exclude, and a warm-up would double the cost.
        start = time.perf_counter()
        wav, lengths = model.speech_tokenizer.decode(dec)
        mx.eval(wav)
        seconds = time.perf_counter() - start
        result["decode"] = {"frames": k, "seconds": seconds, "audio_s": int(lengths[0]) / SAMPLE_RATE}

    if spec["ttfa"]:
        mx.random.seed(spec["seed"])
        interval = spec["first_chunk_frames"] / 12.5 + 1e-6  # chunk = int(interval * 12.5) frames
        start = time.perf_counter()
        stream = model.generate(text=spec["text"], voice=spec["speaker"], lang_code=spec["language"],
                                max_tokens=spec["frames"], stream=True, streaming_interval=interval,
                                **sampling(spec, model))
        chunk = next(stream)
        mx.eval(chunk.audio)
        result["ttfa"] = {"seconds": time.perf_counter() - start,
                          "first_chunk_frames": int(chunk.token_count)}
        stream.close()
    result["peak_mlx_gb"] = mx.get_peak_memory() / 1e9


@contextmanager
def talker_calls(model: Any, mark: Callable[[], Any]) -> Iterator[list]:
    """`mark()`s at every talker call, collected in the list this yields.

    mlx-audio's loop starts each step with the talker: the first call is the prefill, each later
    one begins a frame, so consecutive later marks bound one frame each.
    """
    cls = type(model.talker)
    own = "__call__" in cls.__dict__
    original = cls.__call__
    marks = []

    def wrapper(self, *args, **kwargs):
        if self is model.talker:
            marks.append(mark())
        return original(self, *args, **kwargs)

    cls.__call__ = wrapper
    try:
        yield marks
    finally:
        if own:
            cls.__call__ = original
        else:
            del cls.__call__


def run_host_time(spec: dict, result: dict) -> None:
    """Host time and syncs per frame of `Model.generate` (bench/host_time.py)."""
    from _syncs import SyncCounter, per_frame

    model = load(spec, result)
    frame_loop(model, spec, spec["warmup_frames"])
    with SyncCounter() as syncs, talker_calls(model, syncs.mark) as marks:
        frame_loop(model, spec, spec["frames"])
    result["host"] = per_frame(marks[1:])  # marks[0]: the prefill
    result["host"]["method"] = "intervals between talker decode-step calls in Model.generate"


def run(spec: dict, result: dict) -> None:
    modes = {"speed": run_speed, "host_time": run_host_time}
    modes[spec.get("mode", "speed")](spec, result)


if __name__ == "__main__":
    main(run)
