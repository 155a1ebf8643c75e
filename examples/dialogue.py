"""A dialogue in one call: a script of turns, each in its own voice, with each turn's timing.

    python examples/dialogue.py Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice --out dialogue.wav
"""

import argparse
import sys

import soundfile as sf

import mlx_qwen3_tts as qt

SCRIPT = """\
Host: Welcome back to the show. Today we talk about speech synthesis on a laptop.
Guest: Thanks for having me. It runs entirely on the device, which still surprises people.
Host: And how fast is it?
Guest: Faster than real time, and the first words arrive in a fraction of a second.
"""
# What each name of the script stands for: a CustomVoice speaker here (a Base model would take
# saved voices, a VoiceDesign model descriptions).
CAST = {"Host": "ryan", "Guest": "serena"}


def main() -> None:
    parser = argparse.ArgumentParser(description="Speak a two-person script into one audio file.")
    parser.add_argument("model", nargs="?", default="Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice",
                        help="CustomVoice checkpoint folder or Hugging Face repo id.")
    parser.add_argument("--out", default="dialogue.wav", help="Output audio file.")
    parser.add_argument("--pause", type=float, default=0.4, help="Seconds between turns.")
    parser.add_argument("--seed", type=int, default=0, help="The dialogue's seed (each turn's is derived).")
    parser.add_argument("--max-frames", type=int, default=None, help="Cap each turn (12.5 frames/s).")
    args = parser.parse_args()

    tts = qt.load(args.model)
    result = tts.generate_dialogue(SCRIPT, voices=CAST, pause=args.pause, seed=args.seed,
                                   language="english", max_frames=args.max_frames)
    sf.write(args.out, result.audio, result.sample_rate)
    for turn in result.turns:  # who speaks when, e.g. for subtitles
        print(f"{turn.start:6.2f}-{turn.end:6.2f} s  {turn.speaker}: {turn.text}  (seed {turn.seed})")
    print(f"{args.out}: {result.seconds:.2f} s")


if __name__ == "__main__":
    try:
        main()
    except qt.Qwen3TTSError as e:  # a bad checkpoint, argument or file: one line, as the CLI says it
        sys.exit(f"error: {e}")
