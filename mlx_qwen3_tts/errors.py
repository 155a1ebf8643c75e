"""One error hierarchy for the whole library: catch ``Qwen3TTSError`` to catch them all."""


class Qwen3TTSError(Exception):
    """Base class of every error this library raises on purpose."""


class ModelLoadError(Qwen3TTSError):
    """A checkpoint folder or repo id cannot be loaded: missing file, field or tensor."""


class AudioError(Qwen3TTSError, ValueError):
    """Audio or codec codes given to the library cannot be used."""


class SynthesisError(Qwen3TTSError, ValueError):
    """A synthesis request is invalid: unknown speaker or language, bad sampling parameter."""
