"""Speak many lines in one batched call, one file per line (same voice and settings for all).

    python examples/batch.py Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice lines.txt --out-dir clips
"""

import argparse
import sys
from pathlib import Path

import soundfile as sf

import mlx_qwen3_tts as qt

DEFAULT_LINES = [
    "Welcome aboard.",
    "Please keep your seatbelt fastened while the sign is on.",
    "We will be landing shortly.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description="Synthesize a list of lines into separate files.")
    parser.add_argument("model", nargs="?", default="Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice",
                        help="CustomVoice checkpoint folder or Hugging Face repo id.")
    parser.add_argument("lines", nargs="?", default=None, help="Text file, one line per clip.")
    parser.add_argument("--speaker", default="ryan", help="One of the model's speakers.")
    parser.add_argument("--batch-size", type=int, default=8, help="Lines per batched call.")
    parser.add_argument("--out-dir", default="clips", help="Folder for line_000.wav, ...")
    parser.add_argument("--max-frames", type=int, default=None, help="Cap each line (12.5 frames/s).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the first take (take i: seed + i).")
    args = parser.parse_args()

    if args.lines is None:
        lines = DEFAULT_LINES
    else:
        lines = [line.strip() for line in Path(args.lines).read_text(encoding="utf-8").splitlines()]
        lines = [line for line in lines if line]
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    tts = qt.load(args.model)
    for start in range(0, len(lines), args.batch_size):
        group = lines[start:start + args.batch_size]
        # One frame loop for the whole group; each line stops on its own.
        results = tts.generate_batch(group, speaker=args.speaker, max_frames=args.max_frames,
                                     seed=args.seed + start)  # line i: seed + i, as alone
        for i, result in enumerate(results, start):
            path = out_dir / f"line_{i:03d}.wav"
            sf.write(path, result.audio, result.sample_rate)
            print(f"{path}: {result.seconds:.2f} s ({result.finish_reason})")
    print(f"{len(lines)} lines in {out_dir}/")


if __name__ == "__main__":
    try:
        main()
    except qt.Qwen3TTSError as e:  # a bad checkpoint, argument or file: one line, as the CLI says it
        sys.exit(f"error: {e}")
