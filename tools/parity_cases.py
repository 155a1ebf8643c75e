"""The committed official generation fixtures (`tests/fixtures/generate_*.npz`) as runnable cases.

Shared by `tests/test_generate.py` and `bench/gpu_check.py` (every fixture on a GPU). A fixture
holds the official wrapper's arguments and the sha256 of the checkpoint it came from; this module
finds that checkpoint among the ones the fixture tables of `make_reference_fixtures.py` write
(seed 0; the EOS cases' with a scaled EOS row), and turns the arguments into `tts.generate`'s.
Fixtures are found by glob, so new ones of the same structure are picked up without a change.
"""

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import make_reference_fixtures as tables
import numpy as np

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
GREEDY = {"temperature": 0, "subtalker_temperature": 0}
CHECKED_FILES = {"sha256": "model.safetensors", "codec_sha256": "speech_tokenizer/model.safetensors"}
# `checkpoint(size, variant, **writer_kwargs) -> folder`: writes (or reuses) a seed-0 checkpoint.
Writer = Callable[..., Path]


def fixture_paths(folder: Path = FIXTURES) -> list[Path]:
    return sorted(folder.glob("generate_*.npz"))


def load_fixture(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def matches(folder: Path, fx: dict) -> bool:
    """Whether `folder` holds the bytes the fixture was made from (talker and codec)."""
    return all(sha256(folder / name) == str(fx[key]) for key, name in CHECKED_FILES.items())


def variant_of(kwargs: dict[str, Any]) -> str:
    """The checkpoint type the official wrapper call needs, from its arguments."""
    if "ref_text" in kwargs or "x_vector_only_mode" in kwargs:
        return "base"
    return "custom_voice" if "speaker" in kwargs else "voice_design"


def candidates(name: str, variant: str) -> list[tuple[str, dict[str, Any]]]:
    """`(size, writer kwargs)` a fixture may come from: its own table's entry first, then every
    checkpoint of that variant the tables write (for fixtures named otherwise)."""
    eos = {"eos_scale": getattr(tables, "EOS_SCALE", 1.0)}
    groups = [("", getattr(tables, "GENERATION_CASES", []), {}),
              ("long_", getattr(tables, "LONG_CASES", []), {}),
              ("eos_", getattr(tables, "EOS_CASES", []), eos)]
    own, rest = [], []
    for prefix, cases, writer_kwargs in groups:
        for case_name, size, case_variant, _, _ in cases:
            if case_variant == variant:
                (own if prefix + case_name == name else rest).append((size, writer_kwargs))
    unique: dict[tuple, tuple[str, dict[str, Any]]] = {}
    for size, writer_kwargs in own + rest:
        unique.setdefault((size, tuple(sorted(writer_kwargs.items()))), (size, writer_kwargs))
    return list(unique.values())


@dataclass
class Case:
    """One fixture and the checkpoint it came from."""

    name: str
    fixture: dict[str, np.ndarray]
    size: str
    variant: str
    writer_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return len(self.fixture["codes"])

    @property
    def stops_by_eos(self) -> bool:
        """EOS fixtures end by EOS: generation gets one frame more than they hold and must stop."""
        return "eos_margin" in self.fixture

    @property
    def checkpoint(self) -> str:
        extra = "".join(f", {k}={v:g}" for k, v in self.writer_kwargs.items())
        return f"{self.size} {self.variant}{extra}"

    def generate_kwargs(self, tts) -> dict[str, Any]:
        return generate_kwargs(self.fixture, self.variant, tts)

    def run_kwargs(self) -> dict[str, Any]:
        """Greedy, the fixture's frames (one more for EOS runs), the official chunked decode."""
        return dict(GREEDY, max_frames=self.frames + self.stops_by_eos, decode_mode="reference")


def find_case(path: Path, checkpoint: Writer) -> Case:
    """The case of fixture `path`; `checkpoint` writes candidate checkpoints until one matches.

    Raises:
        LookupError: no checkpoint of the fixture tables has the fixture's bytes.
    """
    fx = load_fixture(path)
    name = path.stem.removeprefix("generate_")
    variant = variant_of(json.loads(str(fx["kwargs"])))
    for size, writer_kwargs in candidates(name, variant):
        writer_kwargs = dict(writer_kwargs)
        if matches(checkpoint(size, variant, **writer_kwargs), fx):
            return Case(name, fx, size, variant, writer_kwargs)
    raise LookupError(f"{path.name}: no {variant} checkpoint of the fixture tables has its bytes; the "
                      "checkpoint writer changed: regenerate the fixtures")


def generate_kwargs(fx: dict[str, np.ndarray], variant: str, tts) -> dict[str, Any]:
    """The fixture's official arguments as `tts.generate` keyword arguments (text included)."""
    import mlx_qwen3_tts as qt

    kwargs = json.loads(str(fx["kwargs"]))
    if variant == "base":
        # Feed the official reference codes and x-vector, isolating the frame loop from the
        # encoders (they have their own parity tests).
        ref_codes = fx["ref_code"].astype(np.int32) if "ref_code" in fx else None
        kwargs["voice"] = qt.VoicePrompt(fx["ref_spk_embedding"], ref_codes, kwargs.pop("ref_text", None))
        kwargs.pop("x_vector_only_mode", None)
    if "instruct" in kwargs and not tts.capabilities.supports_instruct:
        kwargs.pop("instruct")  # the official 0.6B CustomVoice drops it silently; we refuse it
    return kwargs
