"""Convert a Qwen3-TTS checkpoint to an MLX folder: `python convert.py --help`.

The same as `python -m mlx_qwen3_tts.convert` and the `mlx-qwen3-tts-convert` console script.
"""

import sys

from mlx_qwen3_tts.convert import main

if __name__ == "__main__":
    sys.exit(main())
