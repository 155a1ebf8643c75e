"""Qwen3-TTS on MLX: every released 12 Hz checkpoint, on-device."""

# First, before anything imports mlx.core: MLX binds the BLAS it finds then (see blas.py).
from .blas import load_mkl

load_mkl()

# ruff: noqa: E402

from .audio import can_write
from .dialogue import DialogueResult, Timeline, Turn, TurnTiming, parse_script
from .errors import (
    AudioError,
    EmptyTextError,
    InstructUnsupportedError,
    ModeError,
    ModelLoadError,
    Qwen3TTSError,
    Qwen3TTSWarning,
    RunawayWarning,
    SynthesisError,
    TextTooLongError,
    UnknownSpeakerError,
    UnsupportedLanguageError,
    VoiceCloneUnsupportedError,
)
from .loading import load
from .policy import ComputePolicy
from .request import Capabilities, RunawayGuard, new_seed
from .speech_tokenizer import SpeechTokenizer
from .synthesis import AudioChunk, GenerationResult
from .text_stream import TextStream
from .tts import Qwen3TTS, StreamingBatch
from .voice_prompt import VoicePrompt, check_voice_name, is_voice_path, list_voices, voice_path, voices_dir
from .voices import Language, Speaker

__version__ = "0.1.0"

__all__ = [
    "AudioChunk",
    "AudioError",
    "Capabilities",
    "DialogueResult",
    "ComputePolicy",
    "EmptyTextError",
    "GenerationResult",
    "InstructUnsupportedError",
    "Language",
    "ModeError",
    "ModelLoadError",
    "Qwen3TTS",
    "Qwen3TTSError",
    "Qwen3TTSWarning",
    "RunawayGuard",
    "RunawayWarning",
    "SpeechTokenizer",
    "Speaker",
    "StreamingBatch",
    "SynthesisError",
    "TextStream",
    "TextTooLongError",
    "Timeline",
    "Turn",
    "TurnTiming",
    "UnknownSpeakerError",
    "UnsupportedLanguageError",
    "VoiceCloneUnsupportedError",
    "VoicePrompt",
    "__version__",
    "can_write",
    "check_voice_name",
    "is_voice_path",
    "list_voices",
    "load",
    "new_seed",
    "parse_script",
    "voice_path",
    "voices_dir",
]
