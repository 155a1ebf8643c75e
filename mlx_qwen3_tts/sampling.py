"""Logits processing and sampling in the reference's order, driven by explicit MLX keys (§3.6).

Talker codebook 0, per step: repetition penalty over every c0 generated so far, EOS banned until
`min_new_tokens` tokens exist, ids 2048..3071 except EOS suppressed, then temperature, top-k,
top-p and a categorical draw. The code predictor only applies temperature, top-k and top-p.
`temperature == 0` means argmax after the processors, as the reference's `do_sample=False`.
"""

from dataclasses import dataclass

import mlx.core as mx

from .errors import SynthesisError
from .tokens import TALKER_CONTROL_ROWS

MIN_NEW_TOKENS = 2  # hard-coded in the reference's talker `generate`


@dataclass(frozen=True)
class SamplerSettings:
    """Temperature (0 = greedy), top-k (0 = off) and top-p (1.0 = off) of one sampler."""

    temperature: float
    top_k: int
    top_p: float

    def __post_init__(self):
        if not self.temperature >= 0:
            raise SynthesisError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}.")
        if not (isinstance(self.top_k, int) and self.top_k >= 0):
            raise SynthesisError(f"top_k must be an integer >= 0 (0 = off), got {self.top_k!r}.")
        if not 0 < self.top_p <= 1:
            raise SynthesisError(f"top_p must be in (0, 1] (1 = off), got {self.top_p}.")


def apply_repetition_penalty(logits: mx.array, seen: mx.array, penalty: float) -> mx.array:
    """HF `RepetitionPenaltyLogitsProcessor`: seen ids get `s * p` if negative else `s / p`."""
    if penalty == 1.0:
        return logits
    penalized = mx.where(logits < 0, logits * penalty, logits / penalty)
    return mx.where(seen, penalized, logits)


def talker_ban_mask(vocab_size: int, eos_id: int) -> mx.array:
    """`[V]` bool: the ids the talker may never sample (its control rows except EOS, §3.7)."""
    ids = mx.arange(vocab_size)
    return (ids >= vocab_size - TALKER_CONTROL_ROWS) & (ids != eos_id)


def process_talker_logits(
    logits: mx.array,
    seen: mx.array,
    n_generated: int,
    repetition_penalty: float,
    ban: mx.array,
    eos_id: int,
) -> mx.array:
    """Repetition penalty, min-new-tokens and suppression, in the reference's order (fp32)."""
    logits = apply_repetition_penalty(logits.astype(mx.float32), seen, repetition_penalty)
    if n_generated < MIN_NEW_TOKENS:
        ban = ban | (mx.arange(logits.shape[-1]) == eos_id)
    return mx.where(ban, -mx.inf, logits)


def apply_top_k(logits: mx.array, k: int) -> mx.array:
    """Keep logits >= the k-th largest (ties kept, as HF's `TopKLogitsWarper`)."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = mx.min(mx.topk(logits, k, axis=-1), axis=-1, keepdims=True)
    return mx.where(logits < kth, -mx.inf, logits)


def apply_top_p(logits: mx.array, p: float) -> mx.array:
    """HF `TopPLogitsWarper`: drop ascending-sorted ids whose cumulative prob <= 1 - p, keep >= 1."""
    if p >= 1.0:
        return logits
    order = mx.argsort(logits, axis=-1)
    sorted_logits = mx.take_along_axis(logits, order, axis=-1)
    cumulative = mx.cumsum(mx.softmax(sorted_logits, axis=-1), axis=-1)
    remove_sorted = cumulative <= 1 - p
    remove_sorted[..., -1] = False
    remove = mx.put_along_axis(mx.zeros_like(remove_sorted), order, remove_sorted, axis=-1)
    return mx.where(remove, -mx.inf, logits)


def filter_logits(logits: mx.array, settings: SamplerSettings) -> mx.array:
    """Temperature, then top-k, then top-p: the warpers of a sampling step."""
    if settings.temperature != 1.0:
        logits = logits / settings.temperature
    return apply_top_p(apply_top_k(logits, settings.top_k), settings.top_p)


# One uniform number per row, each from its row's key: the same number as `uniform(key=keys[b])`.
_uniform_rows = mx.vmap(lambda key: mx.random.uniform(shape=(1,), key=key))


def sample(logits: mx.array, settings: SamplerSettings, keys: mx.array) -> mx.array:
    """Token ids `[B]` (uint32) from logits `[B, V]`; argmax when `temperature == 0`.

    Row b draws with its own key `keys[b]` (`keys` is `[B, 2]`), so a row of a batch draws what
    it would alone. Draws by inverting the CDF with one uniform number per row: the same
    distribution as a Gumbel-max categorical, without generating V random numbers per token.
    """
    if settings.temperature == 0:
        return mx.argmax(logits, axis=-1).astype(mx.uint32)
    probs = mx.softmax(filter_logits(logits.astype(mx.float32), settings), axis=-1)
    cdf = mx.cumsum(probs, axis=-1)
    u = _uniform_rows(keys) * cdf[:, -1:]
    # The first id whose cumulative probability exceeds u; zero-probability ids are never it.
    return mx.sum(cdf <= u, axis=-1).astype(mx.uint32)
