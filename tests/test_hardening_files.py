"""Hardening of what comes from files: reference audio, saved voices, checkpoint configs.

Each test is one case of issues #21 / #23: a crafted or broken input raises the library's typed
error with a one-line message, before any large allocation or long computation.
"""

import os
import signal
import struct
from contextlib import contextmanager

import numpy as np
import pytest
import soundfile as sf

import mlx_qwen3_tts as qt
from mlx_qwen3_tts import audio as audio_io

SR = 24000


def tone(seconds: float, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32)


def one_line(e: pytest.ExceptionInfo) -> str:
    message = str(e.value)
    assert "\n" not in message, message
    return message


@contextmanager
def deadline(seconds: int):
    """Fail instead of hanging (opening a FIFO blocks until a writer comes)."""
    def expire(*_):
        raise TimeoutError(f"no answer in {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture
def no_sample_reads(monkeypatch):
    """Fail the test if samples are read or resampled: the checks must come first."""
    def forbidden(*args, **kwargs):
        raise AssertionError("samples were read or resampled before the checks")

    monkeypatch.setattr(sf, "read", forbidden)
    monkeypatch.setattr(audio_io.soxr, "resample", forbidden)


# --------------------------------------------------------------------------- case 1: audio


def wav_with_rate(path, rate: int, seconds: float = 1.0):
    """A 16-bit WAV whose header claims `rate` Hz (bytes 24-27 of a canonical header)."""
    sf.write(path, tone(seconds), SR, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data[24:28] = struct.pack("<I", rate)
    path.write_bytes(bytes(data))
    return path


def test_read_audio_checks_the_header_rate_before_reading(tmp_path, no_sample_reads):
    path = wav_with_rate(tmp_path / "one_hz.wav", 1)  # 48 KB that would resample to ~1.1 GB
    with pytest.raises(qt.AudioError, match=r"sample rate of .*one_hz.wav' is 1 Hz, outside 8000-384000"):
        audio_io.read_audio(path)


def test_read_audio_checks_the_length_before_reading(tmp_path, no_sample_reads):
    path = tmp_path / "long.wav"
    sf.write(path, np.zeros(75 * 8000, np.float32), 8000, subtype="PCM_16")
    with pytest.raises(qt.AudioError, match=r"long.wav' is 75.0 s long; at most 60 s is accepted") as e:
        audio_io.read_audio(path)
    one_line(e)


@pytest.mark.parametrize("rate,match", [
    (1, "`sample_rate` is 1 Hz, outside 8000-384000 Hz"),
    (10**30, "`sample_rate` is over 10\\^15 Hz"),
    (float("inf"), "`sample_rate` is inf Hz"),
    (0, "`sample_rate` must be a positive number"),
])
def test_prepare_audio_checks_the_rate_before_resampling(rate, match, no_sample_reads):
    with pytest.raises(qt.AudioError, match=match):
        audio_io.prepare_audio(np.zeros(1, np.float32), rate)


def test_prepare_audio_checks_the_length_before_resampling(no_sample_reads):
    with pytest.raises(qt.AudioError, match=r"The audio is 61.0 s long; at most 60 s is accepted"):
        audio_io.prepare_audio(np.zeros(61 * 8000, np.float32), 8000)


def test_max_reference_seconds_lives_in_audio():
    assert audio_io.MAX_REFERENCE_SECONDS == 60
    n = 60 * 8000
    assert audio_io.prepare_audio(np.zeros(n, np.float32), 8000).shape == (60 * SR,)


def test_too_short_reference_is_reported_in_seconds(tts):
    base = tts("tiny-0.6b", "base")
    with pytest.raises(qt.AudioError, match=r"Reference audio is 0.02 s long, too short; at least 0.06 s"):
        base.create_voice_prompt((tone(0.02), SR))


def test_speaker_encoder_uses_the_audio_check():
    from mlx_qwen3_tts.models import speaker_encoder

    assert not hasattr(speaker_encoder, "_check_audio")
    with pytest.raises(qt.AudioError, match=r"0.04 s long, too short; at least 0.06 s is needed"):
        audio_io.check_reference_audio(tone(0.04), SR, 1280)


def test_a_folder_is_not_audio(tmp_path):
    with pytest.raises(qt.AudioError, match="it is a folder"):
        audio_io.read_audio(tmp_path)


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    with deadline(10), pytest.raises(qt.AudioError, match="not a regular file"):
        audio_io.read_audio(fifo)


def test_permission_error_is_an_audio_error(tmp_path, monkeypatch):
    path = tmp_path / "ok.wav"
    sf.write(path, tone(0.5), SR)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(sf, "info", denied)
    monkeypatch.setattr(sf, "read", denied)
    with pytest.raises(qt.AudioError, match="cannot read audio file .*Permission denied"):
        audio_io.read_audio(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_an_audio_error(tmp_path):
    path = tmp_path / "locked.wav"
    sf.write(path, tone(0.5), SR)
    path.chmod(0)
    with pytest.raises(qt.AudioError, match="cannot read audio file"):
        audio_io.read_audio(path)
