"""Logits processing and sampling against the official stack's own `LogitsProcessor`s.

`sampling_processors.npz` (tools/make_reference_fixtures.py) holds, for each case, logits recorded
from an official run, a c0 history with repeated tokens, and what the `LogitsProcessorList` built
by the official talker / code-predictor `generate` (captured from real calls with those settings)
makes of them: processed scores and probabilities. Cases cover the released defaults at talker
steps 0, 1, 2 and later (min_new_tokens), `top_p < 1` with `top_k` below the vocabulary for both
samplers (where the order of top-k and top-p shows), `top_k = 0` and temperature 1.

Ours must give the same scores, and seeded draws from our sampler must follow the official
probabilities (a chi-square bound that a wrong sampler fails).
"""

import hashlib
import json
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from conftest import load_fixture

from mlx_qwen3_tts.sampling import (
    MIN_NEW_TOKENS,
    SamplerSettings,
    filter_logits,
    process_talker_logits,
    sample,
    talker_ban_mask,
)

sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))
from make_reference_fixtures import SAMPLING_SOURCE  # noqa: E402  (the fixture's own source)

EOS = 2150
FX = load_fixture("sampling_processors.npz")
CASES = {case["name"]: case for case in json.loads(str(FX["cases"]))}
# The order of `_get_logits_processor` in transformers 4.57.3 (dossier §3.6), as the official
# talker builds it (min_new_tokens adds a MinLength processor too: min_length = 0 + 2).
TALKER_ORDER = ["RepetitionPenaltyLogitsProcessor", "MinLengthLogitsProcessor",
                "MinNewTokensLengthLogitsProcessor", "SuppressTokensLogitsProcessor"]
# Draws per statistical case (batches of BATCH rows, one key each): enough that the wrong
# samplers below land far past the bound (checked by planting each once).
DRAWS = {
    "talker_default_step0": 8192,  # min_new_tokens dropped: EOS is drawn
    "talker_default_later": 40960,  # temperature ignored: chi-square ~200 against a bound ~100
    "talker_topk20_topp08_later": 16384,  # top-p before top-k: tokens outside the support
    "cp_t07_topk30_topp085": 8192,
    "cp_t1_topk100_topp07": 8192,
}
BATCH = 4096


# ----------------------------------------------------------------- adapters (library internals)


def settings_of(case: dict) -> SamplerSettings:
    return SamplerSettings(case["temperature"], case["top_k"], case["top_p"])


def our_pre_warper_scores(case: dict, logits: np.ndarray, history: np.ndarray) -> mx.array:
    """`[1, V]`: what the talker's frame loop hands the sampler (the code predictor: raw)."""
    x = mx.array(logits)[None]
    if case["sampler"] == "code_predictor":
        return x
    vocab = logits.shape[-1]
    seen = np.zeros((1, vocab), bool)
    seen[0, history] = True
    return process_talker_logits(x, mx.array(seen), len(history), case["repetition_penalty"],
                                 talker_ban_mask(vocab, EOS), EOS)


def our_processed_scores(case: dict, logits: np.ndarray, history: np.ndarray) -> np.ndarray:
    """`[V]` after every processor and warper: the logits the sampler draws from."""
    return np.array(filter_logits(our_pre_warper_scores(case, logits, history), settings_of(case))[0])


def our_draws(case: dict, logits: np.ndarray, history: np.ndarray, n: int) -> np.ndarray:
    """`n` token ids from our sampler, in batches with distinct keys."""
    scores = our_pre_warper_scores(case, logits, history)
    draws = []
    for i in range(0, n, BATCH):
        rows = mx.repeat(scores, min(BATCH, n - i), axis=0)
        keys = mx.random.split(mx.random.key(1000 + i // BATCH), rows.shape[0])  # a key per row
        draws.append(np.array(sample(rows, settings_of(case), keys)))
    return np.concatenate(draws)


# ----------------------------------------------------------------- helpers


def arrays(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return (FX[f"{name}__logits"], FX[f"{name}__history"], FX[f"{name}__scores"],
            FX[f"{name}__probs"])


def chi_square_bound(df: int, z: float = 3.719) -> float:
    """Wilson-Hilferty upper quantile of chi-square(df); z = 3.719: probability 1e-4 above."""
    return df * (1 - 2 / (9 * df) + z * np.sqrt(2 / (9 * df))) ** 3


def kept(scores: np.ndarray) -> np.ndarray:
    return np.isfinite(scores)


def np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.where(np.isfinite(x), np.exp(x - x[np.isfinite(x)].max()), 0.0)
    return e / e.sum()


def np_top_k(x: np.ndarray, k: int) -> np.ndarray:
    return x if k <= 0 or k >= len(x) else np.where(x < np.sort(x)[-k], -np.inf, x)


def np_top_p(x: np.ndarray, p: float) -> np.ndarray:
    if p >= 1:
        return x
    order = np.argsort(x, kind="stable")
    remove = np.cumsum(np_softmax(x)[order]) <= 1 - p
    remove[-1] = False
    out = x.copy()
    out[order[remove]] = -np.inf
    return out


# ----------------------------------------------------------------- processing


def test_fixture_comes_from_the_writers_checkpoint(checkpoint):
    """The recorded logits are the official model's on the checkpoint the writer makes today."""
    size, variant, eos_scale, _ = SAMPLING_SOURCE
    folder = checkpoint(size, variant, eos_scale=eos_scale)
    for key, name in (("sha256", "model.safetensors"),
                      ("codec_sha256", "speech_tokenizer/model.safetensors")):
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == str(FX[key])


@pytest.mark.parametrize("name", sorted(CASES))
def test_processed_scores_match_official(name):
    case = CASES[name]
    logits, history, scores, probs = arrays(name)
    ours = our_processed_scores(case, logits, history)
    np.testing.assert_array_equal(kept(ours), kept(scores))  # the same ids survive
    np.testing.assert_allclose(ours[kept(ours)], scores[kept(scores)], rtol=0, atol=1e-5)
    our_probs = np.array(mx.softmax(mx.array(ours), axis=-1))
    np.testing.assert_allclose(our_probs, probs, rtol=0, atol=1e-6)


def test_official_processor_lists_are_the_documented_ones():
    """What the fixture captured is the order and the settings our sampler implements."""
    suppress = np.flatnonzero(np.array(talker_ban_mask(3072, EOS)))
    for name, case in CASES.items():
        procs = case["processors"]
        classes = [p["class"] for p in procs]
        warpers = ((["TemperatureLogitsWarper"] if case["temperature"] != 1.0 else [])
                   + (["TopKLogitsWarper"] if case["top_k"] else [])
                   + (["TopPLogitsWarper"] if case["top_p"] < 1.0 else []))
        if case["sampler"] == "talker":
            assert classes == TALKER_ORDER + warpers, name
            assert procs[0]["penalty"] == case["repetition_penalty"]
            assert procs[1]["min_length"] == procs[2]["min_new_tokens"] == MIN_NEW_TOKENS
            assert procs[1]["eos_token_id"] == procs[2]["eos_token_id"] == [EOS]
            assert procs[2]["prompt_length_to_skip"] == 0  # the history is all generated c0s
            np.testing.assert_array_equal(sorted(procs[3]["suppress_tokens"]), suppress)
        else:  # no penalty, no suppression, no EOS: only the warpers
            assert classes == warpers, name
        by_class = {p["class"]: p for p in procs}
        if "TemperatureLogitsWarper" in by_class:
            assert by_class["TemperatureLogitsWarper"]["temperature"] == case["temperature"]
        if "TopKLogitsWarper" in by_class:
            assert by_class["TopKLogitsWarper"]["top_k"] == case["top_k"]
        if "TopPLogitsWarper" in by_class:
            assert by_class["TopPLogitsWarper"]["top_p"] == case["top_p"]
            assert by_class["TopPLogitsWarper"]["min_tokens_to_keep"] == 1


def test_fixture_cases_can_see_the_rules():
    """The recorded cases are ones where each rule changes the result, so a port that gets a
    rule wrong cannot match them by luck."""
    # min_new_tokens: at step 0 EOS would be among the talker's top 50 if it were not banned.
    logits, history, scores, _ = arrays("talker_default_step0")
    allowed = np.concatenate([logits[:2048], logits[EOS:EOS + 1]])
    assert logits[EOS] >= np.sort(allowed)[-50] and not kept(scores)[EOS]
    assert kept(arrays("talker_default_step2")[2])[EOS]  # allowed from the third token on
    # Repetition penalty: repeated ids, both signs of logits, and it moves the kept set or scores.
    for name in ("talker_default_later", "talker_topk20_topp08_later"):
        logits, history, scores, _ = arrays(name)
        assert len(set(history.tolist())) < len(history)
        assert (logits[history] > 0).any() and (logits[history] < 0).any()
        assert kept(scores)[history].any()
        unpenalized = our_processed_scores(dict(CASES[name], repetition_penalty=1.0), logits, history)
        both = kept(scores) & kept(unpenalized)
        assert (not np.array_equal(kept(unpenalized), kept(scores))
                or np.abs(unpenalized[both] - scores[both]).max() > 1e-3), name
    # Top-k then top-p (official) keeps another set than top-p then top-k.
    for name in ("talker_topk20_topp08_later", "cp_t07_topk30_topp085", "cp_t1_topk100_topp07"):
        case = CASES[name]
        logits, history, scores, _ = arrays(name)
        pre = np.array(our_pre_warper_scores(case, logits, history)[0]) / case["temperature"]
        swapped = np_top_k(np_top_p(pre, case["top_p"]), case["top_k"])
        assert not np.array_equal(kept(swapped), kept(scores)), name


# ----------------------------------------------------------------- sampling statistics


@pytest.mark.parametrize("name", sorted(DRAWS))
def test_draws_follow_official_probabilities(name):
    """Seeded draws from our sampler against the official distribution: never outside its
    support, and a Pearson chi-square below the 1e-4 quantile (bins with < 5 expected pooled)."""
    case = CASES[name]
    logits, history, _, probs = arrays(name)
    n = DRAWS[name]
    counts = np.bincount(our_draws(case, logits, history, n), minlength=len(probs))
    support = probs > 0
    assert counts[~support].sum() == 0, f"drew ids {np.flatnonzero(counts * ~support)[:5]}"
    expected = probs[support].astype(np.float64) * n
    observed = counts[support].astype(np.float64)
    small = expected < 5
    if small.any():
        expected = np.append(expected[~small], expected[small].sum())
        observed = np.append(observed[~small], observed[small].sum())
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    bound = chi_square_bound(len(expected) - 1)
    assert chi2 < bound, (chi2, bound)
