"""Talker, text projection and code predictor against the official model and the NumPy reference."""

import hashlib

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from conftest import load_fixture
from numpy_ref import transformer as ref

from mlx_qwen3_tts.loading import load_model
from mlx_qwen3_tts.models.base import rope_factors, rotate, use_rope_rows
from mlx_qwen3_tts.models.talker import Talker, TalkerConfig
from mlx_qwen3_tts.testing import make_config, teacher_forced_logits

# (size, variant) pairs that have official fixtures (tools/make_reference_fixtures.py): every
# variant's loader path gives the same talker (the weights differ only outside it).
OFFICIAL = [("tiny-0.6b", "custom_voice"), ("tiny-1.7b", "base"), ("tiny-1.7b", "voice_design"),
            ("tiny-1.7b", "custom_voice"), ("tiny-0.6b", "base")]


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def loaded(checkpoint):
    cache = {}

    def get(size, variant):
        if (size, variant) not in cache:
            folder = checkpoint(size, variant)
            fixture = load_fixture(f"talker_{size}-{variant}-seed0.npz")
            digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
            # A fixture made from other bytes would compare two different models.
            assert digest == str(fixture["sha256"]), "regenerate fixtures: the writer changed"
            model = load_model(folder, dtype="float32")
            weights = {k: np.asarray(v.astype(mx.float32), np.float64)
                       for k, v in mx.load(str(folder / "model.safetensors")).items()}
            cache[size, variant] = (model, fixture, weights, model.config.to_dict()["talker_config"])
        return cache[size, variant]

    return get


def top50_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return set(np.argsort(-a)[:50]) == set(np.argsort(-b)[:50])


@pytest.mark.parametrize("size,variant", OFFICIAL)
def test_text_projection_matches_official(loaded, size, variant):
    model, fx, w, _ = loaded(size, variant)
    ours = np.array(model.talker.embed_text(mx.array(fx["text_ids"])))
    np.testing.assert_allclose(ours, fx["text_embeds"], atol=1e-6, rtol=0)  # measured ~1.2e-7
    assert rel_err(ours, ref.text_embed(fx["text_ids"], w)) < 1e-5


@pytest.mark.parametrize("size,variant", OFFICIAL)
def test_talker_prefill_matches_official(loaded, size, variant):
    model, fx, w, cfg = loaded(size, variant)
    logits, hidden = model.talker(mx.array(fx["prefill"])[None])
    logits, hidden = np.array(logits[0]), np.array(hidden[0])
    assert np.abs(logits - fx["logits"]).max() <= 1e-5  # measured ~2e-6 (|logits| <= 4.6)
    assert np.abs(hidden - fx["hidden"]).max() <= 1e-5
    assert all(top50_equal(a, b) for a, b in zip(logits, fx["logits"]))
    ref_logits, ref_hidden = ref.talker(fx["prefill"].astype(np.float64), w, cfg)
    assert rel_err(logits, ref_logits) < 1e-5
    assert rel_err(hidden, ref_hidden) < 1e-5


@pytest.mark.parametrize("size,variant", OFFICIAL)
def test_code_predictor_matches_official(loaded, size, variant):
    model, fx, w, cfg = loaded(size, variant)
    past_hidden = mx.array(fx["hidden"][-1:])
    c0 = int(fx["c0"])
    # The official greedy c0 (best audio code of the last prefill position) is ours too.
    prefill_logits = np.array(model.talker(mx.array(fx["prefill"])[None])[0][0, -1])
    assert int(np.argmax(prefill_logits[:2048])) == c0
    logits = teacher_forced_logits(
        model.talker.code_predictor, past_hidden, model.talker.embed_codec(mx.array([c0])),
        mx.array(fx["codes"])[None]
    )
    logits = np.array(logits[0])
    assert np.abs(logits - fx["cp_logits"]).max() <= 1e-5  # measured ~2.5e-6
    assert all(top50_equal(a, b) for a, b in zip(logits, fx["cp_logits"]))
    expected = ref.code_predictor_logits(fx["hidden"][-1].astype(np.float64), c0, fx["codes"], w, cfg)
    assert rel_err(logits, expected) < 1e-5


@pytest.mark.parametrize("size", ["tiny-0.6b", "tiny-1.7b"])
def test_cached_steps_equal_full_prefill(loaded, size):
    """KV-cached single steps give the same logits as one causal pass over the sequence."""
    model, fx, _, _ = loaded(*next(p for p in OFFICIAL if p[0] == size))
    x = mx.array(fx["prefill"])[None]
    cache = model.talker.make_cache()
    steps = [model.talker(x[:, :-3], cache)[0][0, -1]]
    for i in range(3, 0, -1):
        steps.append(model.talker(x[:, -i : x.shape[1] - i + 1], cache)[0][0, -1])
    full = fx["logits"][-4:]
    np.testing.assert_allclose(np.stack([np.array(s) for s in steps]), full, atol=1e-5)


@pytest.mark.parametrize("size", ["tiny-0.6b", "tiny-1.7b"])
def test_decode_steps_are_the_cached_steps_with_either_rope(loaded, size):
    """The talker's compiled step (`decode`), RoPE by `mx.fast.rope` in every block or by the
    CPU policy's rows once per step, gives the cached steps' logits bit for bit."""
    model, fx, _, _ = loaded(*next(p for p in OFFICIAL if p[0] == size))
    talker = model.talker
    x = mx.array(fx["prefill"])[None]
    steps = {}
    for way in ("call", "fast", "rows"):
        talker.model.rope_rows = way == "rows"
        cache = talker.make_cache()
        talker(x[:, :-3], cache)
        step = talker if way == "call" else talker.decode
        logits = [step(x[:, -i: x.shape[1] - i + 1], cache)[0][0, -1] for i in (3, 2, 1)]
        steps[way] = np.stack([np.array(a) for a in logits])
    talker.model.rope_rows = False
    np.testing.assert_array_equal(steps["fast"], steps["call"])
    np.testing.assert_array_equal(steps["rows"], steps["call"])
    np.testing.assert_allclose(steps["rows"], fx["logits"][-3:], atol=1e-5)


@pytest.mark.parametrize("way", ["call", "fast", "rows"])
@pytest.mark.parametrize("size", ["tiny-0.6b", "tiny-1.7b"])
def test_code_predictor_cached_steps_equal_teacher_forcing(loaded, size, way):
    """2-token prefill + 14 cached steps (how generation runs it, `decode` with either RoPE)
    == one teacher-forced pass."""
    model, fx, _, _ = loaded(*next(p for p in OFFICIAL if p[0] == size))
    cp = model.talker.code_predictor
    cp.model.rope_rows = way == "rows"
    step = cp if way == "call" else cp.decode
    past_hidden = mx.array(fx["hidden"][-1:])
    c0_embed = model.talker.embed_codec(mx.array([int(fx["c0"])]))
    codes = mx.array(fx["codes"])[None]
    cache = cp.make_cache()
    h = step(mx.stack([past_hidden, c0_embed], axis=1), cache)
    stepped = [cp.lm_head[0](h[:, -1])]
    for j in range(1, 15):
        h = step(cp.model.codec_embedding[j - 1](codes[:, j - 1 : j]), cache)
        stepped.append(cp.lm_head[j](h[:, -1]))
    cp.model.rope_rows = False
    forced = teacher_forced_logits(cp, past_hidden, c0_embed, codes)
    np.testing.assert_allclose(np.array(mx.stack(stepped, axis=1)), np.array(forced), atol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("offset,length", [(5, 1), (0, 2), (32000, 3), (70000, 1), ([4, 0, 77], 1),
                                           ([10, 20], 4)])
def test_rope_rows_rotate_as_fast_rope_does_bit_for_bit(offset, length, dtype):
    """The CPU's RoPE (`rope_factors` once per step, `rotate` in each block) is `mx.fast.rope` on
    the CPU to the bit, eager and compiled, for one offset or one per row (a batch): the parity
    fixtures hold and a batch row stays its solo run."""
    with mx.stream(mx.cpu):
        offsets = mx.array(offset)
        x = mx.random.normal((offsets.size, 16, length, 128), key=mx.random.key(0)) * 10
        x = x.astype(getattr(mx, dtype))
        for base in (1e6, 1e4):
            expected = mx.fast.rope(x, 128, traditional=False, base=base, scale=1.0, offset=offsets)
            factors = rope_factors(nn.RoPE(128, base=base), offsets, length)
            assert mx.array_equal(rotate(x, *factors), expected)
            assert mx.array_equal(mx.compile(rotate)(x, *factors), expected)


def test_rope_rows_only_for_blocks_whose_rope_rotate_computes():
    """`rotate` is rotate-half over the whole head: a stack with another RoPE keeps its own."""
    talker = Talker(TalkerConfig.from_dict(make_config("tiny-0.6b", "custom_voice")["talker_config"]))
    for layer in talker.code_predictor.model.layers:
        layer.self_attn.rope = nn.RoPE(layer.self_attn.rope.dims, traditional=True)
    assert use_rope_rows(talker) == 1
    assert talker.model.rope_rows and not talker.code_predictor.model.rope_rows


def test_frame_embedding_is_sum_of_code_embeddings(loaded):
    model, fx, w, _ = loaded("tiny-1.7b", "base")
    codes = np.concatenate([[int(fx["c0"])], fx["codes"]])
    expected = w["talker.model.codec_embedding.weight"][codes[0]] + sum(
        w[f"talker.code_predictor.model.codec_embedding.{g}.weight"][codes[g + 1]] for g in range(15)
    )
    ours = np.array(model.talker.embed_frame(mx.array(codes)))
    assert rel_err(ours, expected) < 1e-5
