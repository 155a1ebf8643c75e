"""Design a voice from a description with a VoiceDesign checkpoint, and keep the seed of each take.

    python examples/voice_design.py Qwen/Qwen3-TTS-12Hz-1.7B-VoiceDesign
"""

import argparse
import sys
from pathlib import Path

import soundfile as sf

import mlx_qwen3_tts as qt

TEXT = "The library opens at nine, and the reading room stays quiet until noon."
VOICES = {
    "narrator": "A calm, deep male voice, speaking slowly like a documentary narrator.",
    "cheerful": "A bright, cheerful young woman, fast and full of energy.",
}


def main() -> None:
    parser = argparse.ArgumentParser(description="Speak one text in voices described in words.")
    parser.add_argument("model", nargs="?", default="Qwen/Qwen3-TTS-12Hz-1.7B-VoiceDesign",
                        help="Checkpoint folder or Hugging Face repo id.")
    parser.add_argument("--out-dir", default=".", help="Folder for the .wav files.")
    parser.add_argument("--max-frames", type=int, default=None, help="Cap each take (12.5 frames/s).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the first take (take i: seed + i).")
    args = parser.parse_args()

    tts = qt.load(args.model)
    for i, (name, description) in enumerate(VOICES.items()):
        result = tts.generate(TEXT, instruct=description, language="english", max_frames=args.max_frames,
                              seed=args.seed + i)
        path = Path(args.out_dir) / f"voice_design_{name}.wav"
        sf.write(path, result.audio, result.sample_rate)
        # Sampling is random: generate(..., seed=result.seed) brings this exact take back.
        print(f"{path}: {result.seconds:.2f} s, seed {result.seed}")


if __name__ == "__main__":
    try:
        main()
    except qt.Qwen3TTSError as e:  # a bad checkpoint, argument or file: one line, as the CLI says it
        sys.exit(f"error: {e}")
