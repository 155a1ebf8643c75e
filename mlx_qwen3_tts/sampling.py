"""Logits processing and sampling in the reference's order, driven by explicit MLX keys (§3.6).

Talker codebook 0, per step: repetition penalty over every c0 generated so far, EOS banned until
`min_new_tokens` tokens exist, ids 2048..3071 except EOS suppressed, then temperature, top-k,
top-p and a categorical draw. The code predictor only applies temperature, top-k and top-p.
`temperature == 0` means argmax after the processors, as the reference's `do_sample=False`.
"""

from dataclasses import dataclass, field

import mlx.core as mx

from .errors import SynthesisError
from .tokens import TALKER_CONTROL_ROWS

MIN_NEW_TOKENS = 2  # hard-coded in the reference's talker `generate`
# Temperatures and repetition penalties scale float32 logits: far outside this range they round to
# 0 or inf (1e-40 is 0 in float32) and every draw is NaN-driven code 0, silent nonsense audio.
SCALE_RANGE = (1e-6, 1e6)


def check_scale(name: str, value: float, zero_allowed: bool, param: str | None = None) -> None:
    """SynthesisError unless `value` is in `SCALE_RANGE` (or 0 where that means greedy)."""
    low, high = SCALE_RANGE
    if not ((zero_allowed and value == 0) or low <= value <= high):
        greedy = "0 (greedy) or " if zero_allowed else ""
        raise SynthesisError(f"{name} must be {greedy}between {low:g} and {high:g}, got {value}.", param)


@dataclass(frozen=True)
class SamplerSettings:
    """Temperature (0 = greedy), top-k (0 = off) and top-p (1.0 = off) of one sampler."""

    temperature: float
    top_k: int
    top_p: float
    # How the arguments are named where they come from: "subtalker_" for the code predictor's.
    prefix: str = field(default="", compare=False, repr=False)

    def __post_init__(self):
        temperature, top_k, top_p = (f"{self.prefix}{n}" for n in ("temperature", "top_k", "top_p"))
        if not self.temperature >= 0:
            raise SynthesisError(f"`{temperature}` must be >= 0 (0 = greedy), got {self.temperature}.",
                                 temperature)
        check_scale(f"`{temperature}`", self.temperature, zero_allowed=True, param=temperature)
        if not (isinstance(self.top_k, int) and self.top_k >= 0):
            raise SynthesisError(f"`{top_k}` must be an integer >= 0 (0 = off), got {self.top_k!r}.", top_k)
        if not 0 < self.top_p <= 1:
            raise SynthesisError(f"`{top_p}` must be in (0, 1] (1 = off), got {self.top_p}.", top_p)


def apply_repetition_penalty(logits: mx.array, seen: mx.array, penalty: float | mx.array) -> mx.array:
    """HF `RepetitionPenaltyLogitsProcessor`: seen ids get `s * p` if negative else `s / p`.

    `penalty` is a number or `[B, 1]` per row; 1.0 leaves a row's logits exactly as they are
    (multiplying or dividing by 1 is exact).
    """
    penalized = mx.where(logits < 0, logits * penalty, logits / penalty)
    return mx.where(seen, penalized, logits)


def talker_ban_mask(vocab_size: int, eos_id: int) -> mx.array:
    """`[V]` bool: the ids the talker may never sample (its control rows except EOS, §3.7)."""
    ids = mx.arange(vocab_size)
    return (ids >= vocab_size - TALKER_CONTROL_ROWS) & (ids != eos_id)


def process_talker_logits(
    logits: mx.array,
    seen: mx.array,
    n_generated: int | mx.array,
    repetition_penalty: float | mx.array,
    ban: mx.array,
    eos_id: int,
) -> mx.array:
    """Repetition penalty, min-new-tokens and suppression, in the reference's order (fp32).

    `n_generated` and `repetition_penalty` are numbers, or `[B, 1]` arrays for rows that are
    at different steps or penalize differently.
    """
    logits = apply_repetition_penalty(logits.astype(mx.float32), seen, repetition_penalty)
    eos = (mx.arange(logits.shape[-1]) == eos_id) & (n_generated < MIN_NEW_TOKENS)
    return mx.where(ban | eos, -mx.inf, logits)


@dataclass(frozen=True)
class RowSettings:
    """The sampler settings of each row of a batch, as `[B, 1]` arrays (rows may differ).

    `temperature` is 1 for greedy rows (they take the argmax, `greedy`); `top_k` 0 and
    `top_p_cut` (1 - top_p) 0 turn a row's filter off. The flags say which steps any row needs,
    so a batch that never samples, or never cuts, builds none of it.
    """

    temperature: mx.array
    top_k: mx.array
    top_p_cut: mx.array
    greedy: mx.array
    sampled: bool
    uses_top_k: bool
    uses_top_p: bool

    @classmethod
    def of(cls, settings: list[SamplerSettings], vocab_size: int) -> "RowSettings":
        column = lambda values, dtype: mx.array(values, dtype)[:, None]  # noqa: E731
        return cls(
            temperature=column([s.temperature or 1.0 for s in settings], mx.float32),
            # Any k >= V keeps every id: stored as V, which int32 holds (2**31 would not).
            top_k=column([min(s.top_k, vocab_size) for s in settings], mx.int32),
            # Computed in double as `1 - p` always was, then rounded once to float32.
            top_p_cut=column([1.0 - s.top_p for s in settings], mx.float32),
            greedy=column([s.temperature == 0 for s in settings], mx.bool_),
            sampled=any(s.temperature > 0 for s in settings),
            uses_top_k=any(0 < s.top_k < vocab_size for s in settings),
            uses_top_p=any(s.top_p < 1.0 for s in settings),
        )

    def arrays(self) -> tuple[mx.array, ...]:
        return self.temperature, self.top_k, self.top_p_cut, self.greedy


def apply_top_k(logits: mx.array, k: mx.array) -> mx.array:
    """Keep logits >= the k-th largest (ties kept, as HF's `TopKLogitsWarper`); `k` `[B, 1]` per
    row, 0 (or >= V) = off."""
    V = logits.shape[-1]
    ranked = mx.sort(logits, axis=-1)
    kth = mx.take_along_axis(ranked, mx.clip(V - k, 0, V - 1), axis=-1)
    kth = mx.where((k > 0) & (k < V), kth, -mx.inf)
    return mx.where(logits < kth, -mx.inf, logits)


def apply_top_p(logits: mx.array, cut: mx.array) -> mx.array:
    """HF `TopPLogitsWarper`: drop ascending-sorted ids whose cumulative prob <= 1 - p, keep >= 1.

    `cut` = 1 - p per row (`[B, 1]`; 0 drops only ids whose probability is 0).
    """
    order = mx.argsort(logits, axis=-1)
    sorted_logits = mx.take_along_axis(logits, order, axis=-1)
    cumulative = mx.cumsum(mx.softmax(sorted_logits, axis=-1), axis=-1)
    remove_sorted = cumulative <= cut
    remove_sorted[..., -1] = False
    remove = mx.put_along_axis(mx.zeros_like(remove_sorted), order, remove_sorted, axis=-1)
    return mx.where(remove, -mx.inf, logits)


def filter_logits(logits: mx.array, settings: SamplerSettings | RowSettings) -> mx.array:
    """Temperature, then top-k, then top-p: the warpers of a sampling step (one `SamplerSettings`
    for every row, or a `RowSettings` per row, the form the frame loop uses)."""
    if isinstance(settings, SamplerSettings):
        settings = RowSettings.of([settings] * logits.shape[0], logits.shape[-1])
    logits = logits / settings.temperature  # 1 for greedy rows: dividing by 1 changes nothing
    if settings.uses_top_k:
        logits = apply_top_k(logits, settings.top_k)
    if settings.uses_top_p:
        logits = apply_top_p(logits, settings.top_p_cut)
    return logits


# One uniform number per row, each from its row's key: the same number as `uniform(key=keys[b])`.
_uniform_rows = mx.vmap(lambda key: mx.random.uniform(shape=(1,), key=key))


def sample(logits: mx.array, settings: SamplerSettings | RowSettings, keys: mx.array) -> mx.array:
    """Token ids `[B]` (uint32) from logits `[B, V]`; argmax for greedy rows (`temperature == 0`).

    One `SamplerSettings` for every row, or a `RowSettings` per row. Row b draws with its own key
    `keys[b]` (`keys` is `[B, 2]`), so a row of a batch draws what it would alone. Draws by
    inverting the CDF with one uniform number per row: the same distribution as a Gumbel-max
    categorical, without generating V random numbers per token.
    """
    if isinstance(settings, SamplerSettings):
        settings = RowSettings.of([settings] * logits.shape[0], logits.shape[-1])
    greedy = mx.argmax(logits, axis=-1).astype(mx.uint32)
    if not settings.sampled:
        return greedy
    probs = mx.softmax(filter_logits(logits.astype(mx.float32), settings), axis=-1)
    cdf = mx.cumsum(probs, axis=-1)
    u = _uniform_rows(keys) * cdf[:, -1:]
    # The first id whose cumulative probability exceeds u; zero-probability ids are never it.
    drawn = mx.sum(cdf <= u, axis=-1).astype(mx.uint32)
    return mx.where(settings.greedy[:, 0], greedy, drawn)
