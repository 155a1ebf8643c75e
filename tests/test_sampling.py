"""Sampling: the reference's processing order, exact distributions, and keyed draws."""

import mlx.core as mx
import numpy as np
import pytest
from numpy_ref import sampling as ref

from mlx_qwen3_tts.errors import SynthesisError
from mlx_qwen3_tts.sampling import (
    RowSettings,
    SamplerSettings,
    filter_logits,
    process_talker_logits,
    sample,
    talker_ban_mask,
)

EOS = 2150


def probs_of(logits: mx.array, settings: SamplerSettings) -> np.ndarray:
    return np.array(mx.softmax(filter_logits(logits, settings), axis=-1), np.float64)


@pytest.mark.parametrize("temperature,top_k,top_p", [
    (0.9, 50, 1.0), (1.0, 0, 1.0), (0.7, 10, 0.8), (1.3, 0, 0.5), (0.5, 3, 0.99), (1.0, 1, 1.0),
])
def test_distribution_matches_numpy_reference(temperature, top_k, top_p):
    rng = np.random.default_rng(0)
    for _ in range(5):
        logits = rng.normal(0, 3, 2048).astype(np.float32)
        ours = probs_of(mx.array(logits)[None], SamplerSettings(temperature, top_k, top_p))[0]
        expected = ref.distribution(logits, temperature, top_k, top_p)
        np.testing.assert_array_equal(ours > 0, expected > 0)  # the kept set
        np.testing.assert_allclose(ours, expected, atol=1e-6)


@pytest.mark.parametrize("n_generated", [0, 1, 2, 7])
def test_talker_processing_matches_numpy_reference(n_generated):
    rng = np.random.default_rng(n_generated)
    logits = rng.normal(0, 2, 3072).astype(np.float32)
    history = rng.integers(0, 2048, n_generated).tolist() + ([EOS] if n_generated > 5 else [])
    seen = np.zeros((1, 3072), bool)
    seen[0, history] = True
    ours = process_talker_logits(mx.array(logits)[None], mx.array(seen), n_generated, 1.05,
                                 talker_ban_mask(3072, EOS), EOS)
    expected = ref.talker_processors(logits, history, n_generated, 1.05, EOS)
    np.testing.assert_allclose(np.array(ours[0]), expected.astype(np.float32), rtol=1e-6)
    # EOS is never among the first two tokens; control ids are never sampleable.
    assert (np.array(ours[0])[EOS] == -np.inf) == (n_generated < 2)
    assert np.all(np.array(ours[0])[2048:3072][np.arange(1024) != EOS - 2048] == -np.inf)


def test_greedy_is_argmax_after_processing():
    logits = mx.array([[0.0, 5.0, 4.9, -1.0]])
    assert sample(logits, SamplerSettings(0, 50, 1.0), mx.random.key(0)[None]).item() == 1


def test_chi_square_of_draws():
    """10,000 keyed draws follow the filtered distribution (fixed key: deterministic)."""
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 1, 32).astype(np.float32)
    settings = SamplerSettings(0.8, 12, 0.95)
    expected = ref.distribution(logits, 0.8, 12, 0.95)
    batch = mx.repeat(mx.array(logits)[None], 10_000, axis=0)
    draws = np.array(sample(batch, settings, mx.random.split(mx.random.key(1234), 10_000)))
    counts = np.bincount(draws, minlength=32)
    kept = expected > 0
    assert counts[~kept].sum() == 0
    e = expected[kept] * 10_000
    chi2 = float(((counts[kept] - e) ** 2 / e).sum())
    df = int(kept.sum()) - 1
    # Wilson-Hilferty 99.9 % quantile of chi-square(df).
    crit = df * (1 - 2 / (9 * df) + 3.09 * np.sqrt(2 / (9 * df))) ** 3
    assert chi2 < crit, (chi2, crit)


def test_same_key_same_draw_and_global_seed_irrelevant():
    logits = mx.array(np.random.default_rng(0).normal(0, 1, (4, 100)).astype(np.float32))
    s = SamplerSettings(1.0, 0, 1.0)
    a = sample(logits, s, mx.random.split(mx.random.key(5), 4))
    mx.random.seed(999)
    b = sample(logits, s, mx.random.split(mx.random.key(5), 4))
    # Each row draws from its own key: a row alone draws what it draws in the batch.
    alone = sample(logits[2:3], s, mx.random.split(mx.random.key(5), 4)[2:3])
    assert alone.item() == a[2].item()
    assert mx.array_equal(a, b)
    assert not mx.array_equal(a, sample(logits, s, mx.random.split(mx.random.key(6), 4)))


@pytest.mark.parametrize("kwargs,match", [
    (dict(temperature=-0.1, top_k=50, top_p=1.0), "temperature"),
    (dict(temperature=0.9, top_k=-1, top_p=1.0), "top_k"),
    (dict(temperature=0.9, top_k=50, top_p=0.0), "top_p"),
    (dict(temperature=0.9, top_k=50, top_p=1.5), "top_p"),
])
def test_bad_settings(kwargs, match):
    with pytest.raises(SynthesisError, match=match):
        SamplerSettings(**kwargs)


def test_a_tiny_top_p_keeps_the_most_likely_id():
    """1 - 1e-9 is 1.0 in float32, so every cumulative probability is <= the cut: HF keeps the most
    likely id anyway; without that rule every logit was -inf and id 0 came out."""
    logits = mx.array(np.random.default_rng(1).normal(0, 3, (3, 2048)).astype(np.float32))
    settings = SamplerSettings(0.9, 0, 1e-9)
    kept = np.isfinite(np.array(filter_logits(logits, settings)))
    assert kept.sum(axis=-1).tolist() == [1, 1, 1]
    drawn = sample(logits, settings, mx.random.split(mx.random.key(0), 3))
    assert drawn.tolist() == np.argmax(np.array(logits), axis=-1).tolist()


def test_rows_of_a_batch_filter_with_their_own_settings():
    """One row's top-k (or top-p) must not be skipped because another row has none."""
    logits = mx.array(np.random.default_rng(2).normal(0, 3, (3, 2048)).astype(np.float32))
    rows = [SamplerSettings(0.9, 5, 1.0), SamplerSettings(0.9, 0, 1.0), SamplerSettings(0.9, 0, 0.5)]
    batch = np.array(filter_logits(logits, RowSettings.of(rows, 2048)))
    for i, settings in enumerate(rows):
        alone = np.array(filter_logits(logits[i : i + 1], RowSettings.of([settings], 2048)))
        np.testing.assert_array_equal(batch[i : i + 1], alone)
    assert np.isfinite(batch).sum(axis=-1)[:2].tolist() == [5, 2048]


def test_a_top_k_past_the_vocabulary_keeps_every_id_beside_a_filtering_row():
    """top_k >= V means no filtering, also in a batch where another row filters (where the clamp
    to V decides; alone, such a row skips top-k altogether)."""
    logits = mx.array(np.random.default_rng(3).normal(0, 3, (2, 2048)).astype(np.float32))
    rows = [SamplerSettings(1.0, 2**31, 1.0), SamplerSettings(1.0, 2, 1.0)]
    kept = np.isfinite(np.array(filter_logits(logits, RowSettings.of(rows, 2048)))).sum(axis=-1)
    assert kept.tolist() == [2048, 2]


def test_a_draw_of_zero_never_picks_an_id_of_zero_probability(monkeypatch):
    """Inverting the CDF: the first id whose cumulative probability exceeds u. With u == 0 a
    leading id that was filtered out (its cumulative probability is 0 too) is not it."""
    from mlx_qwen3_tts import sampling

    monkeypatch.setattr(sampling, "_uniform_rows", lambda keys: mx.zeros((keys.shape[0], 1)))
    logits = mx.array([[-np.inf, -np.inf, 1.0, 2.0], [0.0, 3.0, -np.inf, 1.0]], mx.float32)
    drawn = sample(logits, SamplerSettings(1.0, 0, 1.0), mx.random.split(mx.random.key(0), 2))
    assert drawn.tolist() == [2, 0]
