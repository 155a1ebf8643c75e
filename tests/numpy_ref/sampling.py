"""NumPy reference of the sampling distribution (HF transformers 4.57.3 order, dossier §3.6).

Used only by tests.
"""

import numpy as np


def talker_processors(logits, history, n_generated, penalty, eos, min_new_tokens=2):
    """Repetition penalty over the c0 history, min-new-tokens, then suppression of 2048.. \\ EOS."""
    x = np.array(logits, np.float64)
    for token in set(history):
        x[token] = x[token] * penalty if x[token] < 0 else x[token] / penalty
    if n_generated < min_new_tokens:
        x[eos] = -np.inf
    banned = np.arange(x.size) >= x.size - 1024
    banned[eos] = False
    x[banned] = -np.inf
    return x


def distribution(logits, temperature, top_k, top_p):
    """Probabilities after temperature, top-k (ties kept) and top-p (HF semantics)."""
    x = np.array(logits, np.float64) / temperature
    if 0 < top_k < x.size:
        kth = np.sort(x)[-top_k]
        x[x < kth] = -np.inf
    if top_p < 1.0:
        order = np.argsort(x, kind="stable")
        probs = np.exp(x[order] - x[order].max())
        probs /= probs.sum()
        remove = np.cumsum(probs) <= 1 - top_p
        remove[-1] = False
        x[order[remove]] = -np.inf
    probs = np.exp(x - x.max())
    return probs / probs.sum()
