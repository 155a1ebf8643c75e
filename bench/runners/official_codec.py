"""The official codec's decode, timed, for `bench/codec_speed.py` (run with the official venv).

    <venv>/bin/python bench/runners/official_codec.py FOLDER THREADS

Loads the 12 Hz tokenizer in FOLDER with `qwen_tts.Qwen3TTSTokenizer` (float32, PyTorch on the
CPU with THREADS threads), prints `ready`, then for each line `CODES.npy` read from stdin decodes
those `[frames, 16]` codes and answers `SECONDS SAMPLES`. PyTorch on the CPU is synchronous, so
the wall-clock time of the call is the decode's.
"""

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from _reference import import_qwen_tts  # noqa: E402


def main() -> None:
    folder, threads = sys.argv[1], int(sys.argv[2])
    answers, sys.stdout = sys.stdout, sys.stderr  # notices printed at import: to stderr
    import_qwen_tts()  # stubs the 25 Hz tokenizer's imports
    import torch
    from qwen_tts import Qwen3TTSTokenizer

    torch.set_num_threads(threads)
    tokenizer = Qwen3TTSTokenizer.from_pretrained(folder)
    print("ready", file=answers, flush=True)
    for line in sys.stdin:
        codes = np.load(line.strip())
        start = time.perf_counter()
        with torch.inference_mode():
            wavs, _ = tokenizer.decode([{"audio_codes": codes}])
        print(f"{time.perf_counter() - start} {len(wavs[0])}", file=answers, flush=True)


if __name__ == "__main__":
    main()
