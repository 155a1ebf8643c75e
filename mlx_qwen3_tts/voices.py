"""Languages and speakers of the released checkpoints (dossier §4.4), parsed from strings.

The enums are conveniences over the released names. For speakers a checkpoint's own config is
the authority (fine-tuned CustomVoice models add speakers), so the model accepts any speaker its
config knows; languages are the released set (`Language`), each only if the config has it.
"""

from enum import Enum

from .errors import UnknownSpeakerError, UnsupportedLanguageError


class _Named(str, Enum):
    """A string enum parsed case-insensitively, printed as its canonical name."""

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: "str | _Named"):
        if isinstance(value, cls):
            return value
        key = str(value).strip().lower().replace(" ", "_").replace("-", "_")
        for member in cls:
            if member.value == key:
                return member
        raise cls._error(value)

    @classmethod
    def names(cls) -> list[str]:
        return [m.value for m in cls]


class Language(_Named):
    AUTO = "auto"
    CHINESE = "chinese"
    ENGLISH = "english"
    GERMAN = "german"
    ITALIAN = "italian"
    PORTUGUESE = "portuguese"
    SPANISH = "spanish"
    JAPANESE = "japanese"
    KOREAN = "korean"
    FRENCH = "french"
    RUSSIAN = "russian"

    @classmethod
    def _error(cls, value) -> Exception:
        return UnsupportedLanguageError(
            f"Unsupported language {value!r}. Supported: {', '.join(cls.names())} "
            "(dialects come with the speakers dylan and eric).", "language"
        )


class Speaker(_Named):
    VIVIAN = "vivian"
    SERENA = "serena"
    UNCLE_FU = "uncle_fu"
    DYLAN = "dylan"
    ERIC = "eric"
    RYAN = "ryan"
    AIDEN = "aiden"
    ONO_ANNA = "ono_anna"
    SOHEE = "sohee"

    @classmethod
    def _error(cls, value) -> Exception:
        return UnknownSpeakerError(f"Unknown speaker {value!r}. Released speakers: {', '.join(cls.names())}.",
                                   "speaker")
