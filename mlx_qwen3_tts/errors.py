"""One error hierarchy for the whole library: catch ``Qwen3TTSError`` to catch them all."""


class Qwen3TTSError(Exception):
    """Base class of every error this library raises on purpose."""


class ModelLoadError(Qwen3TTSError):
    """A checkpoint folder or repo id cannot be loaded: missing file, field or tensor."""


class AudioError(Qwen3TTSError, ValueError):
    """Audio or codec codes given to the library cannot be used."""


class SynthesisError(Qwen3TTSError, ValueError):
    """A synthesis request is invalid: unknown speaker or language, bad sampling parameter."""


class EmptyTextError(SynthesisError):
    """The text to speak is empty or has nothing speakable in it."""


class UnknownSpeakerError(SynthesisError):
    """The speaker is not one of the checkpoint's speakers."""


class UnsupportedLanguageError(SynthesisError):
    """The language is not `auto` or one of the checkpoint's languages."""


class VoiceCloneUnsupportedError(SynthesisError):
    """Voice cloning was asked of a checkpoint that is not a Base model."""


class InstructUnsupportedError(SynthesisError):
    """An instruction was given to a checkpoint that cannot follow one."""


class ModeError(SynthesisError):
    """The arguments ask for something the loaded checkpoint's mode cannot do."""
