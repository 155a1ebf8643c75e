"""`VoicePrompt`: what a Base model needs to clone a voice, reusable across runs and processes."""

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import AudioError

FORMAT = "mlx_qwen3_tts.voice_prompt/1"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def voices_dir() -> Path:
    """Where named voices live: `$MLX_QWEN3_TTS_VOICES`, else `~/.cache/mlx_qwen3_tts/voices`."""
    default = Path.home() / ".cache" / "mlx_qwen3_tts" / "voices"
    return Path(os.environ.get("MLX_QWEN3_TTS_VOICES", default)).expanduser()


def _named_path(name: str, folder: str | Path | None) -> Path:
    if not _NAME.match(name):
        raise AudioError(
            f"Voice name {name!r} must be 1-64 letters, digits, '_', '-' or '.', starting with a "
            "letter or digit."
        )
    return Path(folder or voices_dir()) / f"{name}.safetensors"


def list_voices(folder: str | Path | None = None) -> list[str]:
    """Names of the voices saved with `VoicePrompt.save_as`."""
    folder = Path(folder or voices_dir())
    return sorted(p.stem for p in folder.glob("*.safetensors")) if folder.is_dir() else []


@dataclass
class VoicePrompt:
    """A cloned voice: the reference's x-vector and, for in-context cloning, its codes and text.

    Attributes:
        speaker_embedding: `[H]` float32 x-vector from the speaker encoder.
        ref_codes: `[F, 16]` codec codes of the reference audio (in-context cloning), or None
            for x-vector-only cloning.
        ref_text: transcript of the reference audio (in-context cloning), or None.
    """

    speaker_embedding: np.ndarray
    ref_codes: np.ndarray | None = None
    ref_text: str | None = None

    @property
    def in_context(self) -> bool:
        return self.ref_codes is not None

    def save(self, path: str | Path) -> Path:
        """Write the prompt to a `.safetensors` file (plain tensors + JSON metadata)."""
        from safetensors.numpy import save_file

        path = Path(path)
        tensors = {"speaker_embedding": np.asarray(self.speaker_embedding, np.float32)}
        if self.ref_codes is not None:
            tensors["ref_codes"] = np.asarray(self.ref_codes, np.int32)
        meta = {"format": FORMAT, "ref_text": json.dumps(self.ref_text)}
        save_file(tensors, str(path), metadata=meta)
        return path

    def save_as(self, name: str, folder: str | Path | None = None) -> Path:
        """Store the voice under a name in the voices folder (`voices_dir()` by default)."""
        path = _named_path(name, folder)
        path.parent.mkdir(parents=True, exist_ok=True)
        return self.save(path)

    @classmethod
    def named(cls, name: str, folder: str | Path | None = None) -> "VoicePrompt":
        """A voice saved with `save_as`."""
        path = _named_path(name, folder)
        if not path.is_file():
            known = ", ".join(list_voices(folder)) or "none"
            raise AudioError(f"No saved voice named {name!r} in {path.parent} (saved: {known}).")
        return cls.load(path)

    @classmethod
    def resolve(cls, voice: "VoicePrompt | str | os.PathLike") -> "VoicePrompt":
        """A `VoicePrompt`, a path to a saved one, or the name of one in the voices folder."""
        if isinstance(voice, VoicePrompt):
            return voice
        path = Path(voice)
        if path.suffix == ".safetensors" or path.exists() or os.sep in str(voice):
            return cls.load(path)
        return cls.named(str(voice))

    @classmethod
    def load(cls, path: str | Path) -> "VoicePrompt":
        """Read a prompt written by `save`; a missing or corrupt file raises `AudioError`."""
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise AudioError(f"Voice prompt file {path} does not exist.")
        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, ValueError) as e:
            raise AudioError(f"{path} is not a readable voice prompt file: {e}") from e
        if meta.get("format") != FORMAT or "speaker_embedding" not in tensors:
            raise AudioError(f"{path} is not a voice prompt saved by mlx_qwen3_tts (VoicePrompt.save).")
        return cls(
            speaker_embedding=tensors["speaker_embedding"],
            ref_codes=tensors.get("ref_codes"),
            ref_text=json.loads(meta.get("ref_text", "null")),
        )
