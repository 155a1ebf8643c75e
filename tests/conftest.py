"""Shared fixtures: tiny random checkpoints written once per session in the released layout."""

from pathlib import Path

import numpy as np
import pytest

from mlx_qwen3_tts.testing import write_checkpoint

FIXTURES = Path(__file__).parent / "fixtures"
GREEDY = dict(temperature=0, subtalker_temperature=0)


def tone(seconds: float = 1.0, sr: int = 24000, channels: int = 1) -> np.ndarray:
    """A 180 Hz sine at 0.3, float32 `[samples]`; two channels `[samples, 2]`, the second at half."""
    t = np.arange(int(seconds * sr)) / sr
    wav = (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32)
    return np.stack([wav, 0.5 * wav], axis=1) if channels == 2 else wav


def snr_db(ours: np.ndarray, ref: np.ndarray) -> float:
    """Signal-to-noise ratio of `ours` against `ref` in dB, computed in float64."""
    ref = ref.astype(np.float64)
    return float(10 * np.log10(np.sum(ref**2) / max(np.sum((ours.astype(np.float64) - ref) ** 2), 1e-30)))


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """`checkpoint(size, variant, **kw)` -> folder; each distinct request is written once."""
    made: dict[tuple, Path] = {}

    def make(size: str = "tiny-0.6b", variant: str = "custom_voice", **kwargs) -> Path:
        key = (size, variant, tuple(sorted(kwargs.items())))
        if key not in made:
            folder = tmp_path_factory.mktemp(f"{size}-{variant}")
            made[key] = write_checkpoint(folder, size, variant, **kwargs)
        return made[key]

    return make


def load_fixture(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / name) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="session")
def tts(checkpoint):
    """`tts(size, variant, **kw)` -> that checkpoint loaded in float32, once per session."""
    import mlx_qwen3_tts as qt

    loaded: dict[tuple, object] = {}

    def get(size: str = "tiny-0.6b", variant: str = "custom_voice", **kwargs):
        key = (size, variant, tuple(sorted(kwargs.items())))
        if key not in loaded:
            loaded[key] = qt.load(checkpoint(size, variant, **kwargs), dtype="float32")
        return loaded[key]

    return get


# The tiny checkpoints most tests speak with, loaded once (a test file may define its own).
@pytest.fixture
def cv(tts):
    return tts("tiny-0.6b", "custom_voice")


@pytest.fixture
def cv17(tts):
    return tts("tiny-1.7b", "custom_voice")


@pytest.fixture
def design(tts):
    return tts("tiny-1.7b", "voice_design")


@pytest.fixture
def base(tts):
    return tts("tiny-0.6b", "base")


def read_weights(path) -> dict:
    """A safetensors file's tensors, read now: MLX loads lazily, so a file rewritten in place
    must be read completely first (older MLX versions read it after it was truncated)."""
    import mlx.core as mx

    weights = dict(mx.load(str(path)))
    mx.eval(weights)
    return weights
