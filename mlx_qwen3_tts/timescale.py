"""Speaking rate: pitch-preserving time-scaling of decoded audio by WSOLA, streamed chunk by chunk.

WSOLA (waveform-similarity overlap-add, Verhelst & Roelands 1993) cuts the input into Hann-windowed
frames taken every `speed * hop` samples and lays them down every `hop` samples, so the output is
`1 / speed` times as long; each frame is shifted by up to `search` samples to the position whose
start looks most like the natural continuation of the frame before, so the overlapping halves add
in phase and the pitch periods stay whole. Pitch is unchanged because samples are never resampled,
only repeated (slower) or skipped (faster) a pitch period at a time.

The stream is a pure function of the input: frame k's nominal input position is `round(k * speed *
hop)`, its shift depends only on input samples, and a frame is computed only once every sample it
may read has arrived (or, in `flush`, is known to be past the end and so zero). Any chunking gives
the same frames, so the same samples, as the whole signal at once. The whole stream is exactly
`round(len(input) / speed)` samples long.
"""

from numbers import Real

import numpy as np

from .errors import AudioError, SynthesisError

MIN_SPEED = 0.5
MAX_SPEED = 2.0

# Speech at 24 kHz: 25 ms frames hold two or more pitch periods of any voice (85-400 Hz), short
# enough that a frame rarely straddles two phonemes; 50 % overlap with a periodic Hann window sums
# to one. A +-12.5 ms search spans 25 ms, more than one period of the lowest voice, so an in-phase
# position always exists.
FRAME_MS = 25.0
SEARCH_MS = 12.5


def check_speed(speed: object) -> float:
    """The speaking rate as a float, checked.

    Args:
        speed: the rate, 1.0 being the model's own; 2.0 speaks twice as fast.

    Returns:
        `speed` as a float.

    Raises:
        SynthesisError: `speed` is not a real number (a bool counts as not), is NaN or infinite, or
            lies outside [MIN_SPEED, MAX_SPEED].
    """
    if isinstance(speed, bool | np.bool_) or not isinstance(speed, Real):
        raise SynthesisError(f"`speed` must be a number between {MIN_SPEED} and {MAX_SPEED}, got {speed!r}.",
                             "speed")
    value = float(speed)
    if not MIN_SPEED <= value <= MAX_SPEED:  # NaN fails both comparisons
        raise SynthesisError(f"`speed` must be between {MIN_SPEED} and {MAX_SPEED}, got {value:g}.", "speed")
    return value


def _frame_sizes(sample_rate: int) -> tuple[int, int]:
    """(hop, search) in samples; the frame is two hops long."""
    hop = max(1, round(FRAME_MS / 2 * sample_rate / 1000))
    search = max(1, round(SEARCH_MS * sample_rate / 1000))
    return hop, search


def _best_shift(region: np.ndarray, reference: np.ndarray) -> int:
    """Index into `region` where a `len(reference)` window best matches `reference` in shape.

    The score is the normalised cross-correlation: the dot product over the candidate's norm, so a
    loud but unrelated stretch does not beat a quieter in-phase one. Where nothing correlates
    positively (silence, noise) the centre, i.e. no shift, is kept.
    """
    n = len(reference)
    dots = np.correlate(region, reference, mode="valid")
    energy = np.cumsum(np.concatenate(([0.0], region * region)))
    norms = np.sqrt(np.maximum(energy[n:] - energy[:-n], 0.0))
    scores = dots / (norms + 1e-9 * np.sqrt(n))
    best = int(np.argmax(scores))
    return best if scores[best] > 0.0 else (len(scores) - 1) // 2


class TimeStretcher:
    """Streaming, pitch-preserving time-scale modification (WSOLA) of mono audio.

    Feed decoded audio with `process` as it arrives and end the stream with `flush`; the samples
    returned, concatenated, are the input spoken `speed` times as fast, at the same pitch, and do not
    depend on how the input was chunked. After `flush` the stretcher is ready for a new stream.

    Latency: the output returned covers the input up to 25 ms (the search reach plus half a frame)
    and at most one analysis hop (12.5 ms * speed) before its end, so at most 50 ms. Memory: a few
    frames of input, whatever the stream's length. `speed == 1.0` passes samples through untouched.

    Args:
        speed: the rate, in [MIN_SPEED, MAX_SPEED]; 2.0 halves the duration.
        sample_rate: of the audio, in Hz (the frame and search lengths are set in milliseconds).

    Raises:
        SynthesisError: a bad `speed` (see `check_speed`).
        AudioError: `sample_rate` is not a positive integer.
    """

    def __init__(self, speed: float, sample_rate: int = 24000):
        self.speed = check_speed(speed)
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer) or sample_rate <= 0:
            raise AudioError(f"`sample_rate` must be a positive integer, got {sample_rate!r}.")
        self.sample_rate = int(sample_rate)
        self.hop, self.search = _frame_sizes(self.sample_rate)
        self.frame = 2 * self.hop
        # Periodic Hann: w[i] + w[i + hop] == 1, so in-phase frames overlap-add to the input level.
        self.window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(self.frame) / self.frame)
        self._reset()

    def _reset(self) -> None:
        # Input is indexed so that sample 0 is the first sample fed; frame 0 is centred on it, so it
        # starts `hop` samples before, and the search may reach `search` samples further back:
        # that much virtual silence is held in front.
        lead = self.hop + self.search
        self._buf = np.zeros(lead)
        self._start = -lead  # input index of self._buf[0]
        self._k = 0  # next frame to lay down
        self._prev = 0  # input index where frame k - 1 began
        self._tail = np.zeros(self.hop)  # second half of frame k - 1, windowed: not final yet
        self._emitted = 0  # output samples returned so far

    def _nominal(self, k: int) -> int:
        """Input index where frame k begins before its shift (its centre at k * speed * hop)."""
        return int(np.floor(k * self.speed * self.hop + 0.5)) - self.hop

    def _frame_end(self, k: int) -> int:
        """One past the last input index frame k may read."""
        return self.hop if k == 0 else self._nominal(k) + self.search + self.frame

    def _next_frame(self) -> np.ndarray:
        """Lay down frame k (all its input is buffered) and return the `hop` samples now final."""
        k = self._k
        if k == 0:
            begin = -self.hop
        else:
            # The natural continuation of frame k - 1 starts where its second half began; the new
            # frame's first half must overlap that second half, so match it against the candidates.
            reference = self._slice(self._prev + self.hop, self.hop)
            low = self._nominal(k) - self.search
            region = self._slice(low, 2 * self.search + self.hop)
            begin = low + _best_shift(region, reference)
        frame = self._slice(begin, self.frame) * self.window
        out = self._tail + frame[: self.hop]
        self._tail = frame[self.hop :]
        self._prev, self._k = begin, k + 1
        return out

    def _slice(self, begin: int, length: int) -> np.ndarray:
        i = begin - self._start
        return self._buf[i : i + length]

    @property
    def _fed(self) -> int:
        """Samples fed since the stream began: the input index one past the buffer's end."""
        return self._start + len(self._buf)

    def _drop_consumed(self) -> None:
        # Frame k reads from min(its lowest candidate, frame k - 1's second half) onwards.
        keep = min(self._nominal(self._k) - self.search, self._prev + self.hop)
        if keep > self._start:
            self._buf = self._buf[keep - self._start :]
            self._start = keep

    def _run(self, end: int, limit: int | None = None) -> np.ndarray:
        """Lay down every frame readable below input index `end` (and, with `limit`, needed for
        `limit` output samples); the output made final, as float32."""
        pieces = []
        made = 0
        while self._frame_end(self._k) <= end:
            if limit is not None and self._emitted + made >= limit:
                break
            out = self._next_frame()
            if self._k > 1:  # frame 0's first half lies before output sample 0
                pieces.append(out)
                made += len(out)
        self._drop_consumed()
        out = np.concatenate(pieces) if pieces else np.zeros(0)
        if limit is not None:
            out = out[: max(0, limit - self._emitted)]
        self._emitted += len(out)
        return out.astype(np.float32)

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Feed the next input samples; returns the output samples that are now final.

        Args:
            chunk: mono float audio `[samples]`, any length (0 and 1 included).

        Returns:
            float32 `[samples]`, possibly empty: the stretched audio up to 25-50 ms of input behind
            the end of the input so far.

        Raises:
            AudioError: `chunk` is not one-dimensional.
        """
        chunk = np.asarray(chunk, dtype=np.float32)
        if chunk.ndim != 1:
            raise AudioError(f"`chunk` must be mono audio [samples], got shape {chunk.shape}.")
        if self.speed == 1.0:
            return chunk.copy()
        self._buf = np.concatenate((self._buf, chunk.astype(np.float64)))
        return self._run(self._fed)

    def flush(self) -> np.ndarray:
        """End the stream; returns the rest of the output and resets the stretcher.

        Returns:
            float32 `[samples]`: the remaining output, so that the whole stream holds exactly
            `round(total_input / speed)` samples.
        """
        if self.speed == 1.0:
            return np.zeros(0, np.float32)
        have = self._fed
        total = int(np.floor(have / self.speed + 0.5))
        # Past the end the input is silence: pad far enough for the frames that reach `total`
        # output samples (frame k >= 1 makes output final up to sample k * hop).
        end = self._frame_end(-(-total // self.hop))
        if end > have:
            self._buf = np.concatenate((self._buf, np.zeros(end - have)))
        out = self._run(end, limit=total)
        self._reset()
        return out


def time_stretch(audio: np.ndarray, speed: float, sample_rate: int = 24000) -> np.ndarray:
    """Speak `audio` `speed` times as fast at the same pitch, in one call (WSOLA).

    Args:
        audio: mono float audio `[samples]`.
        speed: the rate, in [MIN_SPEED, MAX_SPEED]; 1.0 returns the samples unchanged.
        sample_rate: of `audio`, in Hz.

    Returns:
        float32 `[round(len(audio) / speed)]`.

    Raises:
        SynthesisError: a bad `speed`.
        AudioError: `audio` is not one-dimensional, or a bad `sample_rate`.
    """
    stretcher = TimeStretcher(speed, sample_rate)
    head = stretcher.process(audio)
    return np.concatenate((head, stretcher.flush()))
