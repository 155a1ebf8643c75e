"""Greedy generation past the end of the text and up to EOS, against the official model.

Fixtures (tools/make_reference_fixtures.py, official `qwen-tts` 0.1.1, fp32, greedy):
- `generate_long_*`: LONG_FRAMES frames in every mode and both prompt layouts, with texts short
  enough that the trailing text runs out early; from then on the frame loop feeds `tts_pad`, and
  the repetition penalty over the whole history shapes the codes.
- `generate_eos_*`: checkpoints whose EOS row is scaled by EOS_SCALE stop by themselves; the
  official frame counts for `max_new_tokens` at the EOS token and one before it pin "returned
  frames = talker tokens - 1", and the raw EOS margins show where min_new_tokens=2 holds EOS off.
Everything runs through the public API; the two adapters below are the only internals used.
"""

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import GREEDY, load_fixture, snr_db

import mlx_qwen3_tts as qt

sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))
from make_reference_fixtures import (  # noqa: E402  (the fixtures' own tables)
    EOS_CASES,
    EOS_LIMIT,
    EOS_SCALE,
    LONG_CASES,
    LONG_FRAMES,
)

SAMPLES_PER_FRAME = 1920
# The reference's chat template around the spoken text (dossier §3.1), as literal ids.
ROLE_IDS = [151644, 77091, 198]
SUFFIX_IDS = [151645, 198, 151644, 77091, 198]
LONG = {name: (size, variant, kwargs) for name, size, variant, _, kwargs in LONG_CASES}
EOS = {name: (size, variant, kwargs) for name, size, variant, _, kwargs in EOS_CASES}


# ----------------------------------------------------------------- adapters (library internals)


def prompt_of(tts, **kwargs):
    """The prompt a request builds: `.prefill [L, H]` and `.trailing [T, H]` embeddings."""
    return tts.job(**kwargs).requests[0].prompt


def text_ids_of(tts, text: str) -> list[int]:
    """The spoken text's token ids, as the reference slices them out of its template."""
    return tts.engine.embedder.target_ids(text)


# ----------------------------------------------------------------- helpers


def setup(tts, fx: dict, variant: str, kwargs: dict, **checkpoint_kw):
    """The model for a fixture (same bytes) and the public `generate` kwargs of its case."""
    model = tts(fx["size"], variant, **checkpoint_kw)
    files = {"sha256": "model.safetensors", "codec_sha256": "speech_tokenizer/model.safetensors"}
    for key, name in files.items():
        digest = hashlib.sha256((model.path / name).read_bytes()).hexdigest()
        assert digest == str(fx[key]), "the checkpoint writer changed: regenerate the fixtures"
    assert json.loads(str(fx["kwargs"])) == kwargs
    kwargs = dict(kwargs)
    if variant == "base":
        # The official x-vector and reference codes isolate the frame loop from the encoders
        # (they have their own parity tests: test_generate.py, test_codec_parity.py).
        ref_codes = fx["ref_code"].astype(np.int32) if "ref_code" in fx else None
        kwargs["voice"] = qt.VoicePrompt(fx["ref_spk_embedding"], ref_codes, kwargs.pop("ref_text", None))
        assert ref_codes is None or kwargs["voice"].ref_text is not None
        assert kwargs.pop("x_vector_only_mode", False) == (ref_codes is None)
    return model, kwargs


def check_prompt(model, fx: dict, kwargs: dict) -> None:
    prompt = prompt_of(model, **kwargs)
    np.testing.assert_allclose(np.array(prompt.prefill), fx["prefill"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.array(prompt.trailing), fx["trailing"], atol=1e-5, rtol=0)
    ids = fx["input_ids"].tolist()
    assert ids[:3] == ROLE_IDS and ids[-5:] == SUFFIX_IDS
    assert text_ids_of(model, kwargs["text"]) == ids[3:-5]


def long_fixture(name: str) -> dict:
    size, _, _ = LONG[name]
    return {**load_fixture(f"generate_long_{name}.npz"), "size": size}


def eos_fixture(name: str) -> dict:
    size, _, _ = EOS[name]
    return {**load_fixture(f"generate_eos_{name}.npz"), "size": size}


# ----------------------------------------------------------------- long runs


@pytest.mark.parametrize("name", sorted(LONG))
def test_long_greedy_run_matches_official(tts, name):
    """Past the end of the text: prompt, text ids, all LONG_FRAMES codes and the audio."""
    _, variant, case_kwargs = LONG[name]
    fx = long_fixture(name)
    model, kwargs = setup(tts, fx, variant, case_kwargs)
    # The fixture reaches the end of the trailing text with frames to spare.
    assert len(fx["trailing"]) <= LONG_FRAMES - 12
    check_prompt(model, fx, kwargs)
    result = model.generate(**kwargs, **GREEDY, max_frames=LONG_FRAMES, decode_mode="reference")
    assert result.frames == LONG_FRAMES and result.finish_reason == "length"
    mismatched = np.flatnonzero((result.codes != fx["codes"]).any(axis=1))
    assert mismatched.size == 0, f"codes differ from frame {mismatched[:1]} on"
    assert result.audio.shape == fx["audio"].shape and result.audio.dtype == np.float32
    assert snr_db(result.audio, fx["audio"]) >= 90


def test_long_fixtures_cover_every_mode_and_layout():
    """Each mode in both prompt layouts, and each streaming layout runs out of text early."""
    seen = set()
    for name, (_, variant, kwargs) in LONG.items():
        fx = long_fixture(name)
        mode = "icl" if kwargs.get("ref_text") else ("xvec" if variant == "base" else variant)
        default_stream = variant == "base"  # the official per-method default (dossier §6.4)
        streaming = not kwargs.get("non_streaming_mode", not default_stream)
        seen.add((mode, streaming))
        if streaming and mode != "icl":
            assert len(fx["trailing"]) > 1, name  # trailing text, then tts_pad
    assert seen == {(m, s) for m in ("custom_voice", "voice_design", "xvec", "icl") for s in (False, True)}


# ----------------------------------------------------------------- runs that end by EOS


@pytest.mark.parametrize("name", sorted(EOS))
def test_eos_run_matches_official(tts, name):
    """Natural stop: the official codes, "eos", no frame for the EOS token itself."""
    _, variant, case_kwargs = EOS[name]
    fx = eos_fixture(name)
    model, kwargs = setup(tts, fx, variant, case_kwargs, eos_scale=EOS_SCALE)
    check_prompt(model, fx, kwargs)
    frames = len(fx["codes"])
    # One talker token per frame plus the EOS token (dossier §3.5).
    assert len(fx["eos_margin"]) == frames + 1 and 2 <= frames < EOS_LIMIT - 1
    result = model.generate(**kwargs, **GREEDY, max_frames=EOS_LIMIT - 1, decode_mode="exact")
    assert result.finish_reason == "eos"
    assert result.frames == frames
    np.testing.assert_array_equal(result.codes, fx["codes"])
    assert len(result.audio) == frames * SAMPLES_PER_FRAME


@pytest.mark.parametrize("name", sorted(EOS))
def test_frame_limit_is_official_max_new_tokens_minus_one(tts, name):
    """`max_frames = max_new_tokens - 1`: cut at the EOS token or one token before it, the
    official model returns these frame counts, and so do we."""
    _, variant, case_kwargs = EOS[name]
    fx = eos_fixture(name)
    model, kwargs = setup(tts, fx, variant, case_kwargs, eos_scale=EOS_SCALE)
    frames = len(fx["codes"])
    assert fx["limit_frames"].tolist() == [[frames, frames - 1], [frames + 1, frames]]
    for max_new_tokens, official_frames in fx["limit_frames"].tolist():  # frames >= 2: both > 0
        result = model.generate(**kwargs, **GREEDY, max_frames=max_new_tokens - 1, decode_mode="exact")
        assert result.frames == official_frames and result.finish_reason == "length"
        np.testing.assert_array_equal(result.codes, fx["codes"][:official_frames])


def test_eos_fixtures_exercise_min_new_tokens():
    """Some fixture would stop at talker token 1 and some at token 2 without min_new_tokens=2
    (EOS is the raw argmax there), so the EOS runs above fail if the rule is dropped."""
    margins = {name: eos_fixture(name)["eos_margin"] for name in EOS}
    assert any(m[0] > 0 for m in margins.values()), "no fixture where EOS wins at token 1"
    assert any(m[1] > 0 for m in margins.values()), "no fixture where EOS wins at token 2"
    # And one stops at the earliest token EOS is allowed: exactly 2 frames.
    assert any(len(m) == 3 for m in margins.values())


# ----------------------------------------------------------------- sampler settings, whole path


def test_top_k_then_top_p_that_keep_one_token_give_the_official_greedy_codes(tts):
    """top_k=2 then top_p=0.3 keeps only the best token (of two renormalized probabilities the
    smaller is <= 0.5 <= 1 - 0.3, so top-p drops it), for the talker and the code predictor: any
    seed gives the official greedy codes. Top-p before top-k would keep two tokens and draw."""
    _, variant, case_kwargs = LONG["cv_stream"]
    fx = long_fixture("cv_stream")
    model, kwargs = setup(tts, fx, variant, case_kwargs)
    only_best = dict(temperature=0.9, top_k=2, top_p=0.3, subtalker_temperature=0.9,
                     subtalker_top_k=2, subtalker_top_p=0.3)
    result = model.generate(**kwargs, **only_best, seed=0, max_frames=LONG_FRAMES)
    np.testing.assert_array_equal(result.codes, fx["codes"])


def test_each_sampler_gets_its_own_settings(tts):
    """A greedy talker with a sampling code predictor: the first c0 is the official greedy one
    (it comes from the prompt alone) while codebooks 1-15 are drawn, so no frame keeps the
    greedy ones. Swapped settings would draw c0 or keep codebooks 1-15 greedy."""
    _, variant, case_kwargs = LONG["cv_stream"]
    fx = long_fixture("cv_stream")
    model, kwargs = setup(tts, fx, variant, case_kwargs)
    drawn = model.generate(**kwargs, temperature=0, subtalker_temperature=0.9, seed=0, max_frames=4)
    assert drawn.codes[0, 0] == fx["codes"][0, 0]
    assert (drawn.codes[:, 1:] != fx["codes"][:4, 1:]).any(axis=1).all()
