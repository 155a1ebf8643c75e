"""Stream speech: write (and optionally play) audio chunks while the rest is still generated.

    python examples/streaming.py Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice --play
"""

import argparse
import sys

import soundfile as sf

import mlx_qwen3_tts as qt

TEXT = (
    "Streaming lets you hear the first words after a fraction of a second, "
    "long before the whole sentence has been generated."
)


def main() -> None:
    parser = argparse.ArgumentParser(description="Write audio chunks to a file as they are generated.")
    parser.add_argument("model", nargs="?", default="Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice",
                        help="CustomVoice checkpoint folder or Hugging Face repo id.")
    parser.add_argument("--speaker", default="vivian", help="One of the model's speakers.")
    parser.add_argument("--out", default="streaming.wav", help="Output .wav file.")
    parser.add_argument("--play", action="store_true", help="Also play it (pip install sounddevice).")
    parser.add_argument("--max-frames", type=int, default=None, help="Cap the length (12.5 frames/s).")
    parser.add_argument("--seed", type=int, default=0, help="Random seed (same seed, same audio).")
    args = parser.parse_args()

    tts = qt.load(args.model)
    player = None
    if args.play:
        try:
            import sounddevice  # optional dependency, only for playback
        except (ImportError, OSError):  # not installed, or no PortAudio library
            sys.exit("error: --play needs sounddevice: pip install sounddevice")

        player = sounddevice.OutputStream(samplerate=tts.sample_rate, channels=1, dtype="float32")
        player.start()

    with sf.SoundFile(args.out, "w", tts.sample_rate, 1) as out:
        # 2 frames (160 ms) first for a short wait, then 12 frames (960 ms) per chunk.
        for chunk in tts.stream_generate(TEXT, speaker=args.speaker, max_frames=args.max_frames,
                                         first_chunk_frames=2, chunk_frames=12, seed=args.seed):
            out.write(chunk.audio)
            out.flush()  # the file is playable while it grows
            if player is not None:
                player.write(chunk.audio[:, None])  # blocks while the device buffer is full
            print(f"{chunk.elapsed:6.2f} s: +{chunk.frames} frames ({chunk.total_frames} in all)")
    if player is not None:
        player.stop()
    seconds = chunk.total_frames / 12.5
    print(f"{args.out}: {seconds:.2f} s of audio, stopped by {chunk.finish_reason}, seed {chunk.seed}")


if __name__ == "__main__":
    try:
        main()
    except qt.Qwen3TTSError as e:  # a bad checkpoint, argument or file: one line, as the CLI says it
        sys.exit(f"error: {e}")
