"""`VoicePrompt`: what a Base model needs to clone a voice, reusable across runs and processes."""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import AudioError

FORMAT = "mlx_qwen3_tts.voice_prompt/1"


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
