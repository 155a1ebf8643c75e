"""Read a long text file: split it into sentences, speak each, join them into one file.

    python examples/long_text.py Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice chapter.txt --out chapter.wav
"""

import argparse
import re
from pathlib import Path

import numpy as np
import soundfile as sf

import mlx_qwen3_tts as qt

# End of a sentence: . ! ? and a space, their CJK forms (no space needed), or a line break.
SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])\s*|\n+")


def split_sentences(text: str, max_chars: int = 300) -> list[str]:
    """Sentences, with overlong ones cut at commas so no piece runs for minutes."""
    pieces = []
    for sentence in SENTENCE_END.split(text):
        sentence = sentence.strip()
        while len(sentence) > max_chars:
            cut = sentence.rfind(",", 0, max_chars) + 1 or max_chars
            pieces.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if sentence:
            pieces.append(sentence)
    return pieces


def main() -> None:
    parser = argparse.ArgumentParser(description="Speak a long text file into one audio file.")
    parser.add_argument("model", help="CustomVoice checkpoint folder or Hugging Face repo id.")
    parser.add_argument("text_file", help="UTF-8 text file.")
    parser.add_argument("--speaker", default="vivian", help="One of the model's speakers.")
    parser.add_argument("--out", default="long_text.wav", help="Output audio file.")
    parser.add_argument("--pause", type=float, default=0.3, help="Silence between sentences, seconds.")
    parser.add_argument("--max-frames", type=int, default=None, help="Cap each sentence (12.5 frames/s).")
    args = parser.parse_args()

    sentences = split_sentences(Path(args.text_file).read_text(encoding="utf-8"))
    tts = qt.load(args.model)
    pause = np.zeros(int(args.pause * tts.sample_rate), np.float32)
    pieces = []
    for i, sentence in enumerate(sentences, 1):
        result = tts.generate(sentence, speaker=args.speaker, max_frames=args.max_frames)
        pieces += [result.audio, pause]
        print(f"[{i}/{len(sentences)}] {result.seconds:5.2f} s  {sentence[:60]}")
    audio = np.concatenate(pieces[:-1])
    sf.write(args.out, audio, tts.sample_rate)
    print(f"{args.out}: {len(audio) / tts.sample_rate:.1f} s from {len(sentences)} sentences")


if __name__ == "__main__":
    main()
