"""`python -m mlx_qwen3_tts`: the `mlx-qwen3-tts` command."""

import sys

from .cli import main

sys.exit(main())
