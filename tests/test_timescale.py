"""Speaking rate: WSOLA time-scaling keeps pitch and level, scales duration, and streams seamlessly."""

import numpy as np
import pytest

from mlx_qwen3_tts.errors import AudioError, SynthesisError
from mlx_qwen3_tts.timescale import MAX_SPEED, MIN_SPEED, TimeStretcher, check_speed, time_stretch

SR = 24000
SPEEDS = (0.5, 0.8, 1.25, 2.0)


def _sine(freq: float = 220.0, seconds: float = 2.0, level: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _harmonic(f0: float = 150.0, seconds: float = 2.0) -> np.ndarray:
    # Partials falling as 1/k, with unrelated phases: the fundamental is the strongest line.
    t = np.arange(int(seconds * SR)) / SR
    return sum((0.4 / k) * np.sin(2 * np.pi * f0 * k * t + 0.7 * k) for k in range(1, 7)).astype(np.float32)


def _speechlike(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    # Gliding pitch, a slow envelope and noise: the search has to work, nothing lines up by luck.
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(120 + 60 * np.sin(2 * np.pi * 1.3 * t)) / SR
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return (0.2 * voiced + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def _middle(y: np.ndarray) -> np.ndarray:
    return y[len(y) // 4 : 3 * len(y) // 4].astype(np.float64)


def _fft_peak_hz(y: np.ndarray) -> float:
    """The strongest spectral line, refined by a parabola through the log magnitudes around it."""
    pad = 8 * len(y)
    mag = np.abs(np.fft.rfft(y * np.hanning(len(y)), pad))
    k = int(np.argmax(mag))
    a, b, c = np.log(mag[k - 1 : k + 2])
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * SR / pad


def _autocorr_f0_hz(y: np.ndarray, fmin: float = 60.0, fmax: float = 400.0) -> float:
    """The fundamental as the lag of the highest autocorrelation peak in the voice range."""
    ac = np.fft.irfft(np.abs(np.fft.rfft(y, 2 * len(y))) ** 2)[: len(y)]  # zero-padded: not circular
    lo, hi = int(SR / fmax), int(SR / fmin)
    lag = lo + int(np.argmax(ac[lo:hi]))
    a, b, c = ac[lag - 1 : lag + 2]
    return SR / (lag + 0.5 * (a - c) / (a - 2 * b + c))


def _stream(x: np.ndarray, speed: float, sizes) -> np.ndarray:
    stretcher, pieces, i = TimeStretcher(speed), [], 0
    for n in sizes:
        if i > len(x):
            break
        pieces.append(stretcher.process(x[i : i + n]))
        i += n
    pieces.append(stretcher.process(x[i:]))
    pieces.append(stretcher.flush())
    assert all(p.dtype == np.float32 and p.ndim == 1 for p in pieces)
    return np.concatenate(pieces)


# ----------------------------------------------------------------------------- duration, pitch, level


@pytest.mark.parametrize("speed", SPEEDS)
def test_duration_scales_by_inverse_speed(speed):
    x = _speechlike(1.5)
    y = time_stretch(x, speed)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) / (len(x) / speed) - 1) < 0.02
    assert len(y) == round(len(x) / speed)  # exact, in fact


@pytest.mark.parametrize("speed", SPEEDS)
def test_sine_keeps_its_pitch_and_level(speed):
    x = _sine(220.0)
    y = _middle(time_stretch(x, speed))
    assert _fft_peak_hz(y) == pytest.approx(220.0, rel=0.01)
    rms_in, rms_out = np.sqrt(np.mean(x.astype(np.float64) ** 2)), np.sqrt(np.mean(y**2))
    assert rms_out == pytest.approx(rms_in, rel=0.10)


@pytest.mark.parametrize("speed", SPEEDS)
def test_harmonic_signal_keeps_its_fundamental(speed):
    y = _middle(time_stretch(_harmonic(150.0), speed))
    assert _autocorr_f0_hz(y) == pytest.approx(150.0, rel=0.01)
    assert _fft_peak_hz(y) == pytest.approx(150.0, rel=0.01)


@pytest.mark.parametrize("speed", SPEEDS)
@pytest.mark.parametrize("freq", [97.3, 220.0])
def test_frames_join_in_phase(speed, freq):
    # Over any 40 ms of the output a steady tone is still one sinusoid: a click, a phase jump or a
    # level dip where frames overlap would leave a residual far above -35 dB.
    y = time_stretch(_sine(freq), speed).astype(np.float64)
    n = int(0.040 * SR)
    t = np.arange(n) / SR
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
    worst = 0.0
    for start in range(SR // 10, len(y) - SR // 10 - n, n // 2):
        seg = y[start : start + n]
        coef, *_ = np.linalg.lstsq(basis, seg, rcond=None)
        worst = max(worst, float(np.sum((seg - basis @ coef) ** 2) / np.sum(seg**2)))
    assert worst < 10 ** (-35 / 10)


@pytest.mark.parametrize("speed", SPEEDS)
def test_output_is_finite(speed):
    rng = np.random.default_rng(1)
    square = np.sign(_sine(50.0, 0.5)).astype(np.float32)
    clicks = np.zeros(SR // 2, np.float32)
    clicks[::997] = 1.0
    for x in (rng.standard_normal(SR // 2).astype(np.float32), square, clicks, np.zeros(SR // 2, np.float32)):
        y = time_stretch(x, speed)
        assert np.all(np.isfinite(y)) and np.max(np.abs(y)) <= 1.0 + 1e-6 + np.max(np.abs(x))
    assert not np.any(time_stretch(np.zeros(SR // 2, np.float32), speed))  # silence stays silent


# ----------------------------------------------------------------------------- streaming


@pytest.mark.parametrize("speed", SPEEDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_random_chunks_equal_one_shot(speed, seed):
    x = _speechlike(1.0, seed)
    whole = time_stretch(x, speed)
    rng = np.random.default_rng(seed)
    # Many empty and one-sample chunks, then sizes from a few samples to longer than a frame.
    sizes = [0, 1, 1, 0, 2, 1] * 20 + list(rng.integers(0, 1500, size=200))
    streamed = _stream(x, speed, sizes)
    assert len(streamed) == len(whole)
    np.testing.assert_allclose(streamed, whole, rtol=0, atol=1e-6)


@pytest.mark.parametrize("speed", [0.5, 2.0])
def test_one_sample_at_a_time_equals_one_shot(speed):
    x = _speechlike(0.25, seed=3)
    np.testing.assert_allclose(_stream(x, speed, [1] * len(x)), time_stretch(x, speed), rtol=0, atol=1e-6)


@pytest.mark.parametrize("speed", SPEEDS)
def test_latency_and_memory_stay_bounded(speed):
    x = _speechlike(6.0, seed=4)
    stretcher, emitted, chunk = TimeStretcher(speed), 0, 480
    for i in range(0, len(x), chunk):
        emitted += len(stretcher.process(x[i : i + chunk]))
        fed = i + len(x[i : i + chunk])
        # Output lags the input by at most 50 ms of input (25 ms of lookahead plus one hop).
        assert emitted * speed >= fed - 0.050 * SR
        assert len(stretcher._buf) < 0.1 * SR  # a few frames, not the stream
    assert emitted + len(stretcher.flush()) == round(len(x) / speed)


def test_flush_resets_for_the_next_stream():
    x = _speechlike(0.5)
    stretcher = TimeStretcher(1.25)
    first = np.concatenate([stretcher.process(x), stretcher.flush()])
    second = np.concatenate([stretcher.process(x), stretcher.flush()])
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("speed", SPEEDS)
def test_empty_and_tiny_inputs(speed):
    assert time_stretch(np.zeros(0, np.float32), speed).shape == (0,)
    stretcher = TimeStretcher(speed)
    assert stretcher.process(np.zeros(0, np.float32)).shape == (0,)
    assert stretcher.flush().shape == (0,)
    for n in (1, 2, 7, 100):
        y = time_stretch(np.full(n, 0.1, np.float32), speed)
        assert len(y) == int(np.floor(n / speed + 0.5)) and np.all(np.isfinite(y))


def test_speed_one_is_an_exact_pass_through():
    x = _speechlike(0.5)
    np.testing.assert_array_equal(time_stretch(x, 1.0), x)
    stretcher = TimeStretcher(1)
    for piece in (x[:1], x[1:1], x[1:5000], x[5000:]):
        np.testing.assert_array_equal(stretcher.process(piece), piece)  # no latency either
    assert stretcher.flush().shape == (0,)


def test_bad_chunk_and_sample_rate():
    with pytest.raises(AudioError, match="mono"):
        TimeStretcher(1.5).process(np.zeros((10, 2), np.float32))
    for rate in (0, -24000, 24000.0, True):
        with pytest.raises(AudioError, match="`sample_rate`"):
            TimeStretcher(1.5, rate)


# ----------------------------------------------------------------------------- check_speed


@pytest.mark.parametrize("speed", [MIN_SPEED, 0.75, 1, 1.0, np.float32(1.5), MAX_SPEED])
def test_check_speed_accepts_the_range(speed):
    assert check_speed(speed) == float(speed) and isinstance(check_speed(speed), float)


@pytest.mark.parametrize("speed", ["fast", "1.0", None, [1.0], True, np.bool_(True), 1 + 0j])
def test_check_speed_rejects_non_numbers(speed):
    with pytest.raises(SynthesisError, match=r"`speed` must be a number between 0.5 and 2.0, got "):
        check_speed(speed)


@pytest.mark.parametrize("speed", [0.49, 2.01, 3, 0, -1.0, float("nan"), float("inf"), -float("inf")])
def test_check_speed_rejects_out_of_range(speed):
    with pytest.raises(SynthesisError, match=r"^`speed` must be between 0.5 and 2.0, got ") as info:
        check_speed(speed)
    assert "\n" not in str(info.value)
    with pytest.raises(SynthesisError):
        TimeStretcher(speed)


def test_check_speed_message_names_the_value():
    with pytest.raises(SynthesisError, match=r"got 3\.$"):
        check_speed(3)
    with pytest.raises(SynthesisError, match=r"got nan\.$"):
        check_speed(float("nan"))


@pytest.mark.parametrize("speed", [0.75, 1.5])
def test_a_constant_signal_keeps_its_level_exactly(speed):
    """In-phase frames overlap-add to the input level only with a periodic Hann window (w[i] +
    w[i + hop] == 1); a symmetric one ripples by ~3e-3."""
    y = time_stretch(np.ones(SR, np.float32), speed, SR)
    middle = y[len(y) // 10 : -len(y) // 10]
    np.testing.assert_allclose(middle, 1.0, atol=1e-6)


def test_frames_are_placed_at_rounded_positions_and_silence_is_not_shifted():
    """Frame k is centred at round(k * speed * hop), not its floor (the error builds up over a
    long stream); where nothing correlates (silence) a frame keeps its place: the centre of the
    search region, not its start."""
    from mlx_qwen3_tts.timescale import _best_shift

    stretcher = TimeStretcher(1.001, SR)
    hop, search = stretcher.hop, stretcher.search
    assert stretcher._nominal(2) == int(np.floor(2 * 1.001 * hop + 0.5)) - hop == hop + 1
    assert _best_shift(np.zeros(2 * search + hop), np.ones(hop)) == search
