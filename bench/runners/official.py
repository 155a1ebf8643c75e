"""Benchmark runner for the official `qwen-tts` 0.1.1 (PyTorch, CPU), run with its venv's python.

One `generate_custom_voice` call per measurement, timed from inside: `model.generate` (prompt,
prefill and the Hugging Face frame loop), `talker.forward` minus the `code_predictor.generate`
it calls (talker step vs code predictor), and `speech_tokenizer.decode` (the codec); then the
codec alone on the spec's `decode_frames`, best of `decode_repeats`, as ours is timed. PyTorch on
CPU is synchronous, so wall-clock times of these calls are exact. The package has no streaming
API, so there is no time to first audio.
"""

import functools
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent / "tools"))
from _common import SAMPLE_RATE, main, weight_bytes_per_frame  # noqa: E402


def timed(obj, name: str, log: list):
    """Replace `obj.name` by a wrapper appending `(start, seconds)` of every call to `log`."""
    fn = getattr(obj, name)

    @functools.wraps(fn)  # Hugging Face's generate inspects forward's signature
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        log.append((start, time.perf_counter() - start))
        return out

    setattr(obj, name, wrapper)


def check_weights(model, folder: Path) -> None:
    """`from_pretrained` only warns about missing weights (parity-notes.md): fail instead."""
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        stored = set(f.keys())
    loaded = set(model.model.state_dict())
    if stored != loaded:
        diff = sorted(stored ^ loaded)[:8]
        raise RuntimeError(f"official model's weights differ from {folder}: {diff}")


def decode_seconds(tts, spec) -> dict:
    """The codec alone on `decode_frames` frames, best of `decode_repeats`, as ours is timed (the
    one decode inside `generate` is of its own length, once): codes are random, speed does not
    depend on them."""
    import numpy as np
    import torch

    n = spec["decode_frames"]
    codes = np.random.default_rng(0).integers(0, 2048, (n, 16))
    times = []
    for _ in range(spec.get("decode_repeats", 1)):
        start = time.perf_counter()
        with torch.inference_mode():
            wavs, _ = tts.model.speech_tokenizer.decode([{"audio_codes": codes}])
        times.append(time.perf_counter() - start)
    return {"frames": n, "seconds": min(times), "audio_s": len(wavs[0]) / SAMPLE_RATE}


def run(spec, result):
    from _reference import import_qwen_tts

    import_qwen_tts()  # stubs the 25 Hz tokenizer's imports
    from importlib.metadata import version

    import torch
    from qwen_tts import Qwen3TTSModel

    torch.set_num_threads(spec["threads"])
    result["versions"] = {"torch": torch.__version__, "qwen_tts": version("qwen-tts"),
                          "transformers": version("transformers")}
    result["torch_threads"] = torch.get_num_threads()
    config = torch.__config__.show().replace(",", " ").split()
    blas = next((p.split("=")[1] for p in config if p.startswith("BLAS_INFO=")), "?")
    result["blas"] = f"PyTorch's own {blas} (statically linked; not preloaded)"
    # No dtype in the spec (the "defaults" row): what `from_pretrained` gives without one.
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16}
    options = {"dtype": dtypes[spec["dtype"]]} if spec.get("dtype") else {}
    folder = Path(spec["model"])
    start = time.perf_counter()
    tts = Qwen3TTSModel.from_pretrained(str(folder), attn_implementation="eager", **options)
    result["load_s"] = time.perf_counter() - start
    check_weights(tts, folder)
    talker = tts.model.talker
    result["talker_dtype"] = str(next(talker.parameters()).dtype)
    result["weights"] = weight_bytes_per_frame(
        (n, p.numel() * p.element_size()) for n, p in tts.model.named_parameters())

    logs = {k: [] for k in ("generate", "forward", "predictor", "decode")}
    timed(tts.model, "generate", logs["generate"])
    timed(talker, "forward", logs["forward"])
    timed(talker.code_predictor, "generate", logs["predictor"])
    timed(tts.model.speech_tokenizer, "decode", logs["decode"])

    def synthesize(frames: int):
        for log in logs.values():
            log.clear()
        torch.manual_seed(spec["seed"])
        kwargs = dict(do_sample=False, subtalker_dosample=False) if spec.get("greedy") else {}
        with torch.inference_mode():
            wavs, sr = tts.generate_custom_voice(spec["text"], speaker=spec["speaker"],
                                                 language=spec["language"],
                                                 max_new_tokens=frames + 1, **kwargs)
        return wavs[0]

    synthesize(spec["warmup_frames"])
    start = time.perf_counter()
    wav = synthesize(spec["frames"])
    total = time.perf_counter() - start
    frames = len(wav) // 1920
    loop_s = logs["generate"][0][1]
    decode_s = logs["decode"][0][1]
    result["loop"] = {"frames": frames, "seconds": loop_s,
                      "finish_reason": "length" if frames == spec["frames"] else "eos"}
    result["decode"] = decode_seconds(tts, spec) if spec.get("decode_frames") else {
        "frames": frames, "seconds": decode_s, "audio_s": len(wav) / SAMPLE_RATE}
    result["e2e"] = {"seconds": total, "audio_s": len(wav) / SAMPLE_RATE}

    # Talker steps are the forward calls that run the predictor; the first call is the prefill.
    predictor = logs["predictor"]
    steps = [(s, d) for s, d in logs["forward"][1:]]
    inner = [sum(pd for ps, pd in predictor if s <= ps < s + d) for s, d in steps]
    n = len(predictor)
    talker_s = sum(d - i for (_, d), i in zip(steps, inner))
    cp_s = sum(d for _, d in predictor)
    # Prefill: from generate's start (prompt embeddings) to the end of the first forward call.
    (gen_start, _), (fwd_start, fwd_s) = logs["generate"][0], logs["forward"][0]
    prefill = fwd_start + fwd_s - gen_start
    result["split"] = {"frames": n, "seconds": loop_s, "prefill_s": prefill,
                       "talker_ms": 1000 * talker_s / max(len(steps), 1),
                       "code_predictor_ms": 1000 * cp_s / max(n, 1),
                       "other_ms": 1000 * (loop_s - prefill - talker_s - cp_s) / max(frames, 1),
                       "note": "from the timed loop itself; other = Hugging Face generate overhead"}


if __name__ == "__main__":
    main(run)
