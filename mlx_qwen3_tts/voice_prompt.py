"""`VoicePrompt`: what a Base model needs to clone a voice, reusable across runs and processes.

A saved voice is found by one rule (`is_voice_path`), the same for the Python API, the command
line and the server: a value ending in `.safetensors` or holding a path separator is a file path;
anything else is the name of a voice saved with `save_as` in the voices folder, and is never
looked up in the working directory, so a file or folder there cannot hide a saved voice.
"""

import json
import math
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import MAX_REFERENCE_SECONDS
from .errors import AudioError
from .tokens import CODEBOOK_SIZE, FRAME_RATE, NUM_CODE_GROUPS

FORMAT = "mlx_qwen3_tts.voice_prompt/1"
SUFFIX = ".safetensors"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
NAME_RULE = "1-64 letters, digits, '_', '-' or '.', starting with a letter or digit"
# A voice's reference is capped like reference audio, so a crafted file cannot make every prompt
# minutes long: 60 s at 12.5 frames/s is 750 frames.
MAX_REFERENCE_FRAMES = math.ceil(MAX_REFERENCE_SECONDS * FRAME_RATE)
# 60 s of the fastest speech is ~1,200 characters; the cap only stops texts no reference can have.
MAX_REF_TEXT_CHARS = 50 * MAX_REFERENCE_SECONDS
# A real voice file is under 100 KB (x-vector, 750 x 16 codes, the transcript).
MAX_FILE_BYTES = 8 << 20
TENSORS = ("speaker_embedding", "ref_codes")


def _show(value: object, limit: int = 60) -> str:
    """`repr(value)`, cut short: names and paths in messages can be thousands of characters long."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(str(value))} characters)"


def voices_dir() -> Path:
    """Where named voices live: `$MLX_QWEN3_TTS_VOICES`, else `~/.cache/mlx_qwen3_tts/voices`."""
    default = Path.home() / ".cache" / "mlx_qwen3_tts" / "voices"
    return Path(os.environ.get("MLX_QWEN3_TTS_VOICES", default)).expanduser()


def is_voice_path(value: str | os.PathLike) -> bool:
    """The one rule: is `value` a file path (True) or the name of a saved voice (False)?

    A string ending in `.safetensors` or containing a path separator is a path; any other string
    is a name. A `Path` (any `os.PathLike`) is always a path.
    """
    if not isinstance(value, str):
        return True
    separators = {"/", os.sep, os.altsep} - {None}
    return value.lower().endswith(SUFFIX) or any(s in value for s in separators)


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise AudioError(
            f"Voice name {_show(name)} is not valid: it must be {NAME_RULE}; to use a file instead, "
            f"pass a path ending in {SUFFIX}."
        )
    return name


def check_voice_name(name: object) -> str:
    """`name` if it is a bare saved-voice name; for callers that must not open arbitrary files.

    Raises:
        AudioError: `name` is not a string, is path-like (see `is_voice_path`), or is not a valid
            voice name.
    """
    if not isinstance(name, str):
        raise AudioError(f"`voice` must be the name of a saved voice, got {type(name).__name__}.")
    if is_voice_path(name):
        raise AudioError(
            f"`voice` {_show(name)} is a file path; only names of saved voices are accepted here "
            f"({NAME_RULE})."
        )
    return _check_name(name)


def voice_path(name: str, folder: str | Path | None = None) -> Path:
    """The file of the saved voice `name` in `folder` (default: `voices_dir()`)."""
    return Path(folder or voices_dir()) / f"{_check_name(name)}{SUFFIX}"


def list_voices(folder: str | Path | None = None) -> list[str]:
    """Names of the voices saved with `VoicePrompt.save_as`: files whose stem is a valid name and
    whose header says they are voice prompts (a folder, a device or another file is no voice)."""
    folder = Path(folder or voices_dir())
    if not folder.is_dir():
        return []
    files = folder.glob(f"*{SUFFIX}")
    return sorted(p.stem for p in files if NAME_PATTERN.fullmatch(p.stem) and _is_voice(p))


def _is_voice(path: Path) -> bool:
    """Whether `path` is a regular file whose safetensors header names our format (the header
    only: the tensors are checked when the voice is loaded)."""
    from safetensors import SafetensorError, safe_open

    try:
        _stat_file(path)
        with safe_open(str(path), framework="numpy") as f:
            return (f.metadata() or {}).get("format") == FORMAT
    except (AudioError, SafetensorError, OSError, ValueError, TypeError):
        return False


# --------------------------------------------------------------------------- validation


def _check_embedding(embedding: object, where: str) -> None:
    e = np.asarray(embedding)
    if e.ndim != 1 or e.size == 0 or not np.issubdtype(e.dtype, np.floating):
        raise AudioError(
            f"{where}: `speaker_embedding` must be a non-empty 1-D float vector, got shape {e.shape} "
            f"{e.dtype}; create the voice again with create_voice_prompt."
        )
    if not np.all(np.isfinite(e)):
        raise AudioError(f"{where}: `speaker_embedding` has NaN or inf values; create the voice again.")


def _check_codes(codes: object, where: str) -> None:
    c = np.asarray(codes)
    if c.ndim != 2 or c.shape[1] != NUM_CODE_GROUPS or not np.issubdtype(c.dtype, np.integer):
        raise AudioError(
            f"{where}: `ref_codes` must be integer codes of shape [frames, {NUM_CODE_GROUPS}], got shape "
            f"{c.shape} {c.dtype}; create the voice again with create_voice_prompt."
        )
    frames = c.shape[0]
    if not 1 <= frames <= MAX_REFERENCE_FRAMES:
        raise AudioError(
            f"{where}: `ref_codes` has {frames} frames ({frames / FRAME_RATE:.1f} s); 1 to "
            f"{MAX_REFERENCE_FRAMES} ({MAX_REFERENCE_SECONDS} s) are accepted. Clone the voice again "
            "from a shorter reference."
        )
    # Out-of-range codes index past the codec's tables (a crash, not an error, in MLX).
    if c.min() < 0 or c.max() >= CODEBOOK_SIZE:
        raise AudioError(
            f"{where}: `ref_codes` must lie in [0, {CODEBOOK_SIZE}), got values in [{c.min()}, {c.max()}]; "
            "create the voice again with create_voice_prompt."
        )


def _check_text(text: object, where: str) -> None:
    if not isinstance(text, str) or not text.strip():
        raise AudioError(
            f"{where}: `ref_text` must be the reference's transcript, got {_show(text)}; create the "
            "voice again with a transcript, or without `ref_codes` for timbre-only cloning."
        )
    if len(text) > MAX_REF_TEXT_CHARS:
        raise AudioError(
            f"{where}: `ref_text` is {len(text)} characters long; at most {MAX_REF_TEXT_CHARS} are "
            f"accepted (the transcript of at most {MAX_REFERENCE_SECONDS} s of speech)."
        )


def check_voice_fields(
    speaker_embedding: object, ref_codes: object, ref_text: object, where: str = "voice prompt"
) -> None:
    """Everything a voice must be for a Base model to use it safely; AudioError naming `where`."""
    _check_embedding(speaker_embedding, where)
    if (ref_codes is None) != (ref_text is None):
        has, lacks = ("ref_codes", "ref_text") if ref_text is None else ("ref_text", "ref_codes")
        raise AudioError(
            f"{where}: has `{has}` but no `{lacks}`; in-context cloning needs both, timbre-only "
            "cloning neither. Create the voice again with create_voice_prompt."
        )
    if ref_codes is not None:
        _check_codes(ref_codes, where)
        _check_text(ref_text, where)


# --------------------------------------------------------------------------- files


def _file_where(path: Path) -> str:
    return f"Voice file {_show(str(path), 200)}"


def _stat_file(path: Path) -> None:
    where = _file_where(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise AudioError(f"{where} does not exist; check the path.") from None
    except OSError as e:  # permission, a name too long, a loop of links
        raise AudioError(f"{where} cannot be read ({e.strerror or e}); check the path.") from e
    if not stat.S_ISREG(info.st_mode):
        raise AudioError(f"{where} is not a file (a folder or device); pass a {SUFFIX} voice file.")
    if info.st_size > MAX_FILE_BYTES:
        raise AudioError(
            f"{where} is {info.st_size / 2**20:.0f} MiB; a voice file is under {MAX_FILE_BYTES >> 20} "
            "MiB, so this is not one. Save the voice again with VoicePrompt.save."
        )


def _read_file(path: Path) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    from safetensors import SafetensorError, safe_open

    _stat_file(path)
    try:
        with safe_open(str(path), framework="numpy") as f:
            return f.metadata() or {}, {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        raise AudioError(
            f"{_file_where(path)} is not a readable voice prompt file ({' '.join(str(e).split())}); "
            "save the voice again with VoicePrompt.save."
        ) from e


def _parse_text(meta: dict[str, str], where: str) -> str | None:
    try:
        text = json.loads(meta.get("ref_text", "null"))
    except (ValueError, RecursionError) as e:  # malformed JSON, too deeply nested
        raise AudioError(
            f"{where}: its `ref_text` metadata is not valid JSON ({_show(str(e))}); save the voice again."
        ) from e
    if text is not None and not isinstance(text, str):
        raise AudioError(
            f"{where}: its `ref_text` metadata must be a JSON string or null, got "
            f"{type(text).__name__}; save the voice again."
        )
    return text


@dataclass
class VoicePrompt:
    """A cloned voice: the reference's x-vector and, for in-context cloning, its codes and text.

    Attributes:
        speaker_embedding: `[H]` float32 x-vector from the speaker encoder.
        ref_codes: `[F, 16]` codec codes of the reference audio (in-context cloning), or None
            for x-vector-only cloning; at most `MAX_REFERENCE_FRAMES` (60 s).
        ref_text: transcript of the reference audio (in-context cloning), or None.

    Raises:
        AudioError: on construction, fields a Base model cannot use (`check_voice_fields`).
    """

    speaker_embedding: np.ndarray
    ref_codes: np.ndarray | None = None
    ref_text: str | None = None

    def __post_init__(self):
        check_voice_fields(self.speaker_embedding, self.ref_codes, self.ref_text)

    @property
    def in_context(self) -> bool:
        return self.ref_codes is not None

    def save(self, path: str | os.PathLike) -> Path:
        """Write the prompt to a `.safetensors` file (plain tensors + JSON metadata)."""
        from safetensors import SafetensorError
        from safetensors.numpy import save_file

        check_voice_fields(self.speaker_embedding, self.ref_codes, self.ref_text)  # fields may have changed
        path = Path(path)
        tensors = {"speaker_embedding": np.asarray(self.speaker_embedding, np.float32)}
        if self.ref_codes is not None:
            tensors["ref_codes"] = np.asarray(self.ref_codes, np.int32)
        meta = {"format": FORMAT, "ref_text": json.dumps(self.ref_text)}
        try:
            save_file(tensors, str(path), metadata=meta)
        except (SafetensorError, OSError) as e:
            raise AudioError(
                f"Cannot write the voice file {_show(str(path), 200)} ({' '.join(str(e).split())}); "
                "check that its folder exists and is writable."
            ) from e
        return path

    def save_as(self, name: str, folder: str | Path | None = None) -> Path:
        """Store the voice under a name in the voices folder (`voices_dir()` by default)."""
        path = voice_path(name, folder)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise AudioError(
                f"Cannot create the voices folder {_show(str(path.parent), 200)} ({e.strerror or e}); "
                "set MLX_QWEN3_TTS_VOICES to a writable folder."
            ) from e
        return self.save(path)

    def save_to(self, value: str | os.PathLike, folder: str | Path | None = None) -> str:
        """Save by the one rule (`is_voice_path`): to the path `value`, or as the name `value`.

        What the command line's `--save-voice VALUE` does.

        Returns:
            What finds the voice again as `voice=` / `--voice`: the name, or the path (with `./`
            in front when the path alone would read as a name).
        """
        if not is_voice_path(value):
            self.save_as(value, folder)
            return value
        path = os.fspath(self.save(value))
        return path if is_voice_path(path) else os.path.join(".", path)

    @classmethod
    def named(cls, name: str, folder: str | Path | None = None) -> "VoicePrompt":
        """A voice saved with `save_as`."""
        path = voice_path(name, folder)
        if not path.exists():
            known = ", ".join(list_voices(folder)) or "none"
            raise AudioError(
                f"No saved voice named {name!r} in {path.parent} (saved: {known}); save it first with "
                "VoicePrompt.save_as."
            )
        return cls._load_file(path)

    @classmethod
    def resolve(
        cls, voice: "VoicePrompt | str | os.PathLike", folder: str | Path | None = None
    ) -> "VoicePrompt":
        """A `VoicePrompt` as it is, else `load(voice, folder)`."""
        return voice if isinstance(voice, VoicePrompt) else cls.load(voice, folder)

    @classmethod
    def load(cls, voice: str | os.PathLike, folder: str | Path | None = None) -> "VoicePrompt":
        """A voice file, or a saved voice's name, told apart by `is_voice_path`.

        Raises:
            AudioError: a missing, unreadable, oversized or invalid file (named in the message),
                or an unknown or invalid name.
        """
        if not isinstance(voice, (str, os.PathLike)):
            raise AudioError(
                f"`voice` must be a VoicePrompt, a saved voice's name or a path to a {SUFFIX} file, "
                f"got {type(voice).__name__}."
            )
        if not is_voice_path(voice):
            return cls.named(voice, folder)
        return cls._load_file(Path(voice))

    @classmethod
    def _load_file(cls, path: Path) -> "VoicePrompt":
        meta, tensors = _read_file(path)
        where = _file_where(path)
        if meta.get("format") != FORMAT or "speaker_embedding" not in tensors:
            raise AudioError(
                f"{where} is not a voice prompt saved by mlx_qwen3_tts (VoicePrompt.save); pass one "
                "that is, or create the voice again with create_voice_prompt."
            )
        unknown = sorted(set(tensors) - set(TENSORS))
        if unknown:
            raise AudioError(f"{where} has unexpected tensors {', '.join(unknown)}; save the voice again.")
        text = _parse_text(meta, where)
        check_voice_fields(tensors["speaker_embedding"], tensors.get("ref_codes"), text, where)
        return cls(tensors["speaker_embedding"], tensors.get("ref_codes"), text)
