"""Clone a voice with a Base checkpoint: encode the reference once, save it, reuse it.

    python examples/voice_clone.py Qwen/Qwen3-TTS-12Hz-0.6B-Base me.wav --ref-text "What I said."
"""

import argparse
import sys
from pathlib import Path

import soundfile as sf

import mlx_qwen3_tts as qt

LINES = [
    "This is my cloned voice, reading a sentence I never recorded.",
    "The voice prompt was encoded once and loaded back from a file.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description="Clone the voice of a short recording.")
    parser.add_argument("model", help="Base checkpoint folder or Hugging Face repo id.")
    parser.add_argument("ref_audio", help="A few seconds of the voice to clone (wav, flac, ...).")
    parser.add_argument("--ref-text", default=None,
                        help="Transcript of ref_audio: closer clone (without it, the timbre only).")
    parser.add_argument("--voice-file", default="my_voice.safetensors", help="Where to save the voice.")
    parser.add_argument("--out-dir", default=".", help="Folder for the .wav files.")
    parser.add_argument("--max-frames", type=int, default=None, help="Cap each line (12.5 frames/s).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the first take (take i: seed + i).")
    args = parser.parse_args()

    tts = qt.load(args.model)

    # Encoding the reference (speaker embedding + codec codes) is the slow part: do it once.
    prompt = tts.create_voice_prompt(args.ref_audio, ref_text=args.ref_text)
    prompt.save(args.voice_file)
    print(f"saved {args.voice_file} (in-context: {prompt.in_context})")

    # Later, or in another process: load the saved voice and speak with it.
    voice = qt.VoicePrompt.load(args.voice_file)
    for i, text in enumerate(LINES):
        result = tts.generate(text, voice=voice, language="english", max_frames=args.max_frames,
                              seed=args.seed + i)
        path = Path(args.out_dir) / f"voice_clone_{i}.wav"
        sf.write(path, result.audio, result.sample_rate)
        print(f"{path}: {result.seconds:.2f} s (RTF {result.rtf:.2f})")


if __name__ == "__main__":
    try:
        main()
    except qt.Qwen3TTSError as e:  # a bad checkpoint, argument or file: one line, as the CLI says it
        sys.exit(f"error: {e}")
