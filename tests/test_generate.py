"""The frame loop and the public synthesis API against the official model and invariants."""

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import load_fixture, snr_db

import mlx_qwen3_tts as qt

sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))
import parity_cases  # noqa: E402  (case setup shared with bench/gpu_check.py)
from make_reference_fixtures import GENERATION_CASES  # noqa: E402  (the fixtures' own table)

CASE_CHECKPOINTS = {name: (size, variant) for name, size, variant, _, _ in GENERATION_CASES}
CASES = sorted(CASE_CHECKPOINTS)
GREEDY = parity_cases.GREEDY


@pytest.fixture(scope="module")
def models(checkpoint):
    cache = {}

    def get(size, variant, **kw):
        key = (size, variant, tuple(sorted(kw.items())))
        if key not in cache:
            cache[key] = qt.load(checkpoint(size, variant, **kw), dtype="float32")
        return cache[key]

    return get


def case_setup(name: str, models):
    fx = load_fixture(f"generate_{name}.npz")
    size, variant = CASE_CHECKPOINTS[name]
    tts = models(size, variant)
    assert parity_cases.matches(tts.path, fx), "regenerate fixtures"
    return tts, fx, parity_cases.generate_kwargs(fx, variant, tts)


@pytest.mark.parametrize("name", CASES)
def test_greedy_matches_official(models, name):
    tts, fx, kwargs = case_setup(name, models)
    ids = fx["input_ids"].tolist()  # the official template: role, text, suffix (dossier §3.1)
    assert ids[:3] == [151644, 77091, 198] and ids[-5:] == [151645, 198, 151644, 77091, 198]
    assert tts.engine.embedder.target_ids(kwargs["text"]) == ids[3:-5]
    prompt = tts.job(**kwargs).requests[0].prompt
    np.testing.assert_allclose(np.array(prompt.prefill), fx["prefill"], atol=1e-5)
    np.testing.assert_allclose(np.array(prompt.trailing), fx["trailing"], atol=1e-5)
    result = tts.generate(**kwargs, **GREEDY, max_frames=len(fx["codes"]), decode_mode="reference")
    np.testing.assert_array_equal(result.codes, fx["codes"])
    assert result.audio.shape == fx["audio"].shape
    assert snr_db(result.audio, fx["audio"]) >= 90  # measured ~120 dB


def test_06b_custom_voice_refuses_instruct(models):
    tts = models("tiny-0.6b", "custom_voice")
    with pytest.raises(qt.InstructUnsupportedError, match="0.6B CustomVoice"):
        tts.generate("hi", speaker="vivian", instruct="whisper", max_frames=2)


@pytest.mark.parametrize("name", [c for c in CASES if c.startswith("clone_")])
def test_clone_from_audio_matches_official(models, name):
    """End to end: reference audio -> our encoders -> prompt -> greedy codes, as the official."""
    tts, fx, kwargs = case_setup(name, models)
    voice = kwargs.pop("voice")
    ours = tts.create_voice_prompt((fx["ref_audio"], 24000), ref_text=voice.ref_text)
    a, b = ours.speaker_embedding, fx["ref_spk_embedding"]
    assert np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b) >= 0.9999
    if voice.in_context:
        np.testing.assert_array_equal(ours.ref_codes, fx["ref_code"])
    result = tts.generate(**kwargs, ref_audio=(fx["ref_audio"], 24000), ref_text=voice.ref_text,
                          **GREEDY, max_frames=len(fx["codes"]), decode_mode="reference")
    np.testing.assert_array_equal(result.codes, fx["codes"])
    assert snr_db(result.audio, fx["audio"]) >= 90
