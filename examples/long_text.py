"""Speak a long text file into one audio file, with memory bounded by one piece at a time.

The library splits texts over 300 characters at sentence boundaries and joins the pieces with a
short crossfade (`split=True`, the default); streaming writes each chunk as soon as it is decoded.

    python examples/long_text.py Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice chapter.txt --out chapter.wav
"""

import argparse
import sys
from pathlib import Path

import soundfile as sf

import mlx_qwen3_tts as qt


def main() -> None:
    parser = argparse.ArgumentParser(description="Speak a long text file into one audio file.")
    parser.add_argument("model", help="CustomVoice checkpoint folder or Hugging Face repo id.")
    parser.add_argument("text_file", help="UTF-8 text file.")
    parser.add_argument("--speaker", default="vivian", help="One of the model's speakers.")
    parser.add_argument("--out", default="long_text.wav", help="Output audio file.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the first piece (piece i: seed + i).")
    parser.add_argument("--max-frames", type=int, default=None, help="Cap the whole text (12.5 frames/s).")
    args = parser.parse_args()

    text = Path(args.text_file).read_text(encoding="utf-8")
    tts = qt.load(args.model)
    with sf.SoundFile(args.out, "w", samplerate=tts.sample_rate, channels=1) as out:
        for chunk in tts.stream_generate(text, speaker=args.speaker, seed=args.seed,
                                         max_frames=args.max_frames):
            out.write(chunk.audio)
    seconds = sf.info(args.out).duration
    print(f"{args.out}: {seconds:.1f} s of audio from {len(text)} characters "
          f"({chunk.total_frames} frames, stopped by {chunk.finish_reason})")


if __name__ == "__main__":
    try:
        main()
    except qt.Qwen3TTSError as e:  # a bad checkpoint, argument or file: one line, as the CLI says it
        sys.exit(f"error: {e}")
