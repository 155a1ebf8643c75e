"""How far quantized conversions drift from float, and what they weigh on disk.

For each setting: convert a random-weight checkpoint (released layout), load the result and
compare against the original loaded in float32 on one CustomVoice prompt:

* c0 cos / top1: cosine and argmax agreement of the first-step talker logits;
* cp cos (min): cosine of the 15 code-predictor heads' logits, teacher-forced with the float
  model's first frame (mean over heads, and the worst head);
* folder: the converted folder on disk; talker: its model*.safetensors alone;
* step ms: one talker decode step on this machine (the codec and code predictor excluded).

Random weights say nothing about audio quality; they do show the rounding error each setting adds.

    python bench/quantization_agreement.py --size 0.6b --work /tmp/qbench
    python bench/quantization_agreement.py --size 1.7b --work /tmp/qbench --sizes-only
"""

import argparse
import shutil
import time
from pathlib import Path

import mlx.core as mx
import numpy as np

import mlx_qwen3_tts as qt
from mlx_qwen3_tts.convert import convert, folder_size
from mlx_qwen3_tts.testing import teacher_forced_logits, write_checkpoint

TEXT = "Hello world, this is a quantization test of the talker."
# (name, dtype, bits, group size, load dtype): None bits = a float conversion.
SETTINGS = [
    ("bf16", None, None, None, None),
    ("8-bit g64", None, 8, 64, None),
    ("8-bit g64 f32 scales", "float32", 8, 64, None),
    ("6-bit g64", None, 6, 64, None),
    ("4-bit g64", None, 4, 64, None),
    ("4-bit g32", None, 4, 32, None),
    ("4-bit g128", None, 4, 128, None),
    ("8-bit g64, bf16 activations", None, 8, 64, "bfloat16"),
]


def first_step(tts, codes: np.ndarray | None = None):
    """c0 logits of the first frame and, given a frame's codes, the predictor's 15 logit rows."""
    prompt = tts._request(TEXT, speaker="vivian").prompt
    talker = tts.model.talker
    logits, hidden = talker(prompt.prefill[None])
    c0 = logits[0, -1].astype(mx.float32)
    if codes is None:
        return c0, None
    c = mx.array(codes[None].astype(np.int32))
    cp = teacher_forced_logits(talker.code_predictor, hidden[:, -1], talker.embed_codec(c[:, 0]), c[:, 1:])
    return c0, cp[0].astype(mx.float32)


def cosine(a: mx.array, b: mx.array) -> np.ndarray:
    a, b = np.array(a, np.float64), np.array(b, np.float64)
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def talker_step_ms(tts, steps: int) -> float:
    """One talker decode step (28 layers + c0 head) after the prompt, in milliseconds."""
    talker = tts.model.talker
    prefill = tts._request(TEXT, speaker="vivian").prompt.prefill[None]
    cache = talker.make_cache()
    mx.eval(talker(prefill, cache)[0])
    x = prefill[:, -1:]
    mx.eval(talker(x, cache)[0])  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        mx.eval(talker(x, cache)[0])
    return (time.perf_counter() - start) * 1000 / steps


def talker_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.glob("model*.safetensors"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="0.6b", help="testing.TOPOLOGIES name, e.g. tiny-q, 0.6b, 1.7b")
    parser.add_argument("--work", type=Path, default=Path("/tmp/qbench"))
    parser.add_argument("--steps", type=int, default=8, help="talker steps timed per setting (0: skip)")
    parser.add_argument("--sizes-only", action="store_true", help="convert and weigh, no logits")
    parser.add_argument("--keep", action="store_true", help="keep the checkpoint and the outputs")
    args = parser.parse_args()

    source = args.work / f"src-{args.size}"
    if not (source / "config.json").is_file():
        print(f"[INFO] writing a random {args.size} checkpoint to {source}")
        write_checkpoint(source, args.size, "custom_voice")
    print(f"[INFO] original folder: {folder_size(source) / 1e9:.3f} GB")

    ref_c0 = ref_cp = codes = None
    if not args.sizes_only:
        ref = qt.load(source, dtype="float32")
        codes = ref.generate(TEXT, speaker="vivian", temperature=0, subtalker_temperature=0,
                             max_frames=1).codes[0]
        ref_c0, ref_cp = first_step(ref, codes)
        del ref

    rows = []
    for name, dtype, bits, group, load_dtype in SETTINGS:
        out = args.work / f"out-{args.size}-{name.split(',')[0].replace(' ', '-')}"
        if not out.exists():
            convert(str(source), out, dtype=dtype, quantize=bits is not None, q_bits=bits,
                    q_group_size=group)
        row = [name, folder_size(out) / 1e9, talker_bytes(out) / 1e9]
        if not args.sizes_only:
            tts = qt.load(out, dtype=load_dtype)
            c0, cp = first_step(tts, codes)
            cp_cos = cosine(cp, ref_cp)
            top1 = float(np.argmax(np.array(c0)) == np.argmax(np.array(ref_c0)))
            row += [float(cosine(c0, ref_c0)), top1, float(cp_cos.mean()), float(cp_cos.min())]
            row.append(talker_step_ms(tts, args.steps) if args.steps else float("nan"))
            del tts
        rows.append(row)
        print("[INFO]", row)

    header = "| setting | folder GB | talker GB |"
    header += "" if args.sizes_only else " c0 cos | c0 top1 | cp cos mean | cp cos min | step ms |"
    print(f"\n{args.size}, random weights, mlx {mx.__version__}, {mx.default_device()}\n")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for row in rows:
        cells = [row[0]] + [f"{row[1]:.3f}", f"{row[2]:.3f}"]
        if not args.sizes_only:
            cells += [f"{row[3]:.6f}", f"{row[4]:.0f}", f"{row[5]:.6f}", f"{row[6]:.6f}", f"{row[7]:.1f}"]
        print("| " + " | ".join(cells) + " |")
    if not args.keep:
        for out in [*args.work.glob(f"out-{args.size}-*"), source]:
            shutil.rmtree(out)


if __name__ == "__main__":
    main()
