"""Speak with a named CustomVoice speaker, in a chosen language (and, on 1.7B, a chosen style).

    python examples/custom_voice.py Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice --speaker ryan
"""

import argparse
import sys
from pathlib import Path

import soundfile as sf

import mlx_qwen3_tts as qt

LINES = [
    ("english", "Hello! This is Qwen3 text to speech, running on MLX."),
    ("chinese", "你好，今天天气很好。我们一起去公园散步吧。"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description="Speak a few lines with a CustomVoice speaker.")
    parser.add_argument("model", nargs="?", default="Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice",
                        help="Checkpoint folder or Hugging Face repo id.")
    parser.add_argument("--speaker", default="vivian", help="One of the model's speakers.")
    parser.add_argument("--instruct", default=None, help="Style instruction (1.7B CustomVoice only).")
    parser.add_argument("--out-dir", default=".", help="Folder for the .wav files.")
    parser.add_argument("--max-frames", type=int, default=None, help="Cap each line (12.5 frames/s).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the first take (take i: seed + i).")
    args = parser.parse_args()

    tts = qt.load(args.model)
    print(f"{tts!r}\nspeakers: {', '.join(tts.speakers)}\nlanguages: {', '.join(tts.languages)}")

    for i, (language, text) in enumerate(LINES):
        result = tts.generate(
            text, speaker=args.speaker, language=language, instruct=args.instruct,
            max_frames=args.max_frames, seed=args.seed + i,
        )
        path = Path(args.out_dir) / f"custom_voice_{language}.wav"
        sf.write(path, result.audio, result.sample_rate)
        print(f"{path}: {result.seconds:.2f} s in {result.generation_time:.2f} s "
              f"(RTF {result.rtf:.2f}, seed {result.seed})")


if __name__ == "__main__":
    try:
        main()
    except qt.Qwen3TTSError as e:  # a bad checkpoint, argument or file: one line, as the CLI says it
        sys.exit(f"error: {e}")
