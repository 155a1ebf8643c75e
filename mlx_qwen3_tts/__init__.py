"""Qwen3-TTS on MLX: every released 12 Hz checkpoint, on-device."""

from .errors import (
    AudioError,
    EmptyTextError,
    InstructUnsupportedError,
    ModeError,
    ModelLoadError,
    Qwen3TTSError,
    SynthesisError,
    UnknownSpeakerError,
    UnsupportedLanguageError,
    VoiceCloneUnsupportedError,
)
from .loading import load
from .speech_tokenizer import SpeechTokenizer
from .tts import AudioChunk, GenerationResult, Qwen3TTS
from .voice_prompt import VoicePrompt, list_voices, voices_dir
from .voices import Language, Speaker

__version__ = "0.1.0"

__all__ = [
    "AudioChunk",
    "AudioError",
    "EmptyTextError",
    "GenerationResult",
    "InstructUnsupportedError",
    "Language",
    "ModeError",
    "ModelLoadError",
    "Qwen3TTS",
    "Qwen3TTSError",
    "SpeechTokenizer",
    "Speaker",
    "SynthesisError",
    "UnknownSpeakerError",
    "UnsupportedLanguageError",
    "VoiceCloneUnsupportedError",
    "VoicePrompt",
    "__version__",
    "list_voices",
    "load",
    "voices_dir",
]
