"""One error hierarchy for the whole library: catch ``Qwen3TTSError`` to catch them all.

Messages are one line that says what is wrong and what to do. They name the arguments of the
Python API in backticks (`` `instruct` ``); front ends show their own names instead through
`Qwen3TTSError.render` (the command line says ``--instruct``, the server ``'instructions'``), so a
rule and its message are written once, here and in the request path, for every front end.
"""

import re
import warnings
from collections.abc import Callable

_ARGUMENT = re.compile(r"`([a-z_]+)`")


class _Rendered:
    """Messages whose `` `argument` `` names a front end shows in its own words."""

    param: str | None

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param

    def render(self, name: Callable[[str], str | None]) -> str:
        """The message with each `` `argument` `` replaced by `name(argument)` (kept if None)."""

        def replace(m: re.Match) -> str:
            shown = name(m.group(1))
            return m.group(0) if shown is None else shown

        return _ARGUMENT.sub(replace, str(self))


class Qwen3TTSError(_Rendered, Exception):
    """Base class of every error this library raises on purpose.

    Attributes:
        param: the argument the error is about (a Python API name such as ``"speaker"``), or None.
    """


class ModelLoadError(Qwen3TTSError):
    """A checkpoint folder or repo id cannot be loaded: missing file, field or tensor."""


class AudioError(Qwen3TTSError, ValueError):
    """Audio or codec codes given to the library cannot be used."""


class SynthesisError(Qwen3TTSError, ValueError):
    """A synthesis request is invalid: unknown speaker or language, bad sampling parameter."""


class EmptyTextError(SynthesisError):
    """The text to speak is empty or has nothing speakable in it."""


class TextTooLongError(SynthesisError):
    """The prompt (instruction + reference transcript + text) has more tokens than the model takes."""


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


class Qwen3TTSWarning(_Rendered, UserWarning):
    """A warning of this library; `param` names the argument it is about, if any."""


class RunawayWarning(Qwen3TTSWarning, RuntimeWarning):
    """Generation did not stop by itself and the runaway guard ended it."""


def warn(message: str, category: type[Qwen3TTSWarning] = Qwen3TTSWarning, param: str | None = None,
         stacklevel: int = 3) -> None:
    """Issue a library warning (front ends render its argument names as they do errors')."""
    warnings.warn(category(message, param), stacklevel=stacklevel)
