"""Qwen3-TTS on MLX: every released 12 Hz checkpoint, on-device."""

from .errors import AudioError, ModelLoadError, Qwen3TTSError, SynthesisError
from .loading import load
from .speech_tokenizer import SpeechTokenizer
from .tts import Qwen3TTS

__version__ = "0.1.0"

__all__ = [
    "AudioError",
    "ModelLoadError",
    "Qwen3TTS",
    "Qwen3TTSError",
    "SpeechTokenizer",
    "SynthesisError",
    "__version__",
    "load",
]
