"""Hardening of what comes from files: reference audio, saved voices, checkpoint configs.

Each test is one case of issues #21 / #23: a crafted or broken input raises the library's typed
error with a one-line message, before any large allocation or long computation.
"""

import json
import os
import signal
import struct
from contextlib import contextmanager

import numpy as np
import pytest
import soundfile as sf
from safetensors.numpy import save_file

import mlx_qwen3_tts as qt
from mlx_qwen3_tts import audio as audio_io
from mlx_qwen3_tts.voice_prompt import (
    FORMAT,
    MAX_REFERENCE_FRAMES,
    VoicePrompt,
    check_voice_name,
    is_voice_path,
    list_voices,
)

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


# --------------------------------------------------------------------------- case 2: voice names


def voice(frames: int = 4, text: str | None = "my voice.") -> VoicePrompt:
    codes = np.arange(frames * 16, dtype=np.int32).reshape(frames, 16) % 2048 if text else None
    return VoicePrompt(np.linspace(-1, 1, 8, dtype=np.float32), codes, text)


@pytest.fixture
def voices(tmp_path, monkeypatch):
    folder = tmp_path / "voices"
    monkeypatch.setenv("MLX_QWEN3_TTS_VOICES", str(folder))
    return folder


@pytest.mark.parametrize("value,is_path", [
    ("alice", False), ("alice.v2", False), ("me.safetensors", True), ("ME.SafeTensors", True),
    ("voices/alice", True), ("./alice", True), ("/abs/alice", True),
])
def test_the_one_rule(value, is_path):
    assert is_voice_path(value) is is_path


@pytest.mark.parametrize("name", ["abc\n", "a" * 65, "-lead", "sp ace", "a" * 5000])
def test_bad_names_are_refused(voices, name):
    with pytest.raises(qt.AudioError, match="is not valid: it must be 1-64 letters") as e:
        voice().save_as(name)
    assert len(one_line(e)) < 400
    with pytest.raises(qt.AudioError, match="is not valid"):
        VoicePrompt.resolve(name)
    assert not voices.exists() or not list(voices.iterdir())


def test_a_long_path_is_an_audio_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(qt.AudioError, match=r"\(5012 characters\) cannot be read \(File name too long\)"):
        VoicePrompt.load("a" * 5000 + ".safetensors")
    with pytest.raises(qt.AudioError, match="Cannot write the voice file"):
        voice().save(tmp_path / ("a" * 5000 + ".safetensors"))


def test_working_directory_never_hides_a_saved_voice(voices, tmp_path, monkeypatch):
    voice(text="saved one.").save_as("alice")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "alice").mkdir()  # a folder named like the voice
    assert VoicePrompt.resolve("alice").ref_text == "saved one."
    (tmp_path / "alice").rmdir()
    (tmp_path / "alice").write_bytes(b"not a voice")  # and a file
    assert VoicePrompt.resolve("alice").ref_text == "saved one."
    assert VoicePrompt.load("alice").ref_text == "saved one."  # load takes names too
    voice(text="local one.").save(tmp_path / "alice.safetensors")
    assert VoicePrompt.resolve("alice.safetensors").ref_text == "local one."  # a path by the rule
    assert VoicePrompt.resolve("alice").ref_text == "saved one."


def test_check_voice_name_accepts_bare_names_only(voices):
    assert check_voice_name("alice") == "alice"
    for bad in ("../alice", "alice.safetensors", "/etc/passwd", "a/b"):
        with pytest.raises(qt.AudioError, match="is a file path; only names of saved voices"):
            check_voice_name(bad)
    with pytest.raises(qt.AudioError, match="is not valid"):
        check_voice_name("abc\n")
    with pytest.raises(qt.AudioError, match="must be the name of a saved voice, got int"):
        check_voice_name(3)


def test_save_to_follows_the_rule(voices, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert voice().save_to("bob") == "bob"
    assert (voices / "bob.safetensors").is_file() and not (tmp_path / "bob").exists()
    assert VoicePrompt.resolve(voice().save_to("me.safetensors")).in_context
    assert (tmp_path / "me.safetensors").is_file()
    from pathlib import Path

    again = voice().save_to(Path("plain"))  # a Path is a path, even without a suffix
    assert again == os.path.join(".", "plain") and VoicePrompt.resolve(again).in_context
    assert list_voices() == ["bob"]


def test_list_voices_shows_only_loadable_names(voices):
    voice().save_as("ok")
    (voices / "bad name.safetensors").write_bytes(b"")
    assert list_voices() == ["ok"]


# --------------------------------------------------------------------------- case 3: voice files


def write_voice(path, tensors=None, meta=None, **drop):
    tensors = {"speaker_embedding": np.ones(8, np.float32),
               "ref_codes": np.zeros((4, 16), np.int32), **(tensors or {})}
    meta = {"format": FORMAT, "ref_text": json.dumps("my voice."), **(meta or {})}
    for key in drop:
        tensors.pop(key, None)
        meta.pop(key, None)
    save_file({k: v for k, v in tensors.items() if v is not None}, str(path), metadata=meta)
    return path


BAD_FILES = [
    ("too many frames", dict(tensors={"ref_codes": np.zeros((20000, 16), np.int32)}),
     r"`ref_codes` has 20000 frames \(1600.0 s\); 1 to 750 \(60 s\) are accepted"),
    ("code past the codebook", dict(tensors={"ref_codes": np.full((4, 16), 2048, np.int32)}),
     r"`ref_codes` must lie in \[0, 2048\), got values in \[2048, 2048\]"),
    ("negative code", dict(tensors={"ref_codes": np.full((4, 16), -1, np.int32)}),
     r"must lie in \[0, 2048\)"),
    ("float codes", dict(tensors={"ref_codes": np.zeros((4, 16), np.float32)}), "must be integer codes"),
    ("15 codebooks", dict(tensors={"ref_codes": np.zeros((4, 15), np.int32)}), r"shape \[frames, 16\]"),
    ("1-D codes", dict(tensors={"ref_codes": np.zeros(16, np.int32)}), r"shape \[frames, 16\]"),
    ("no frames", dict(tensors={"ref_codes": np.zeros((0, 16), np.int32)}), "has 0 frames"),
    ("2-D embedding", dict(tensors={"speaker_embedding": np.ones((2, 8), np.float32)}),
     "`speaker_embedding` must be a non-empty 1-D float vector"),
    ("int embedding", dict(tensors={"speaker_embedding": np.ones(8, np.int32)}), "1-D float vector"),
    ("NaN embedding", dict(tensors={"speaker_embedding": np.full(8, np.nan, np.float32)}), "NaN or inf"),
    ("malformed ref_text", dict(meta={"ref_text": '"unclosed'}), "`ref_text` metadata is not valid JSON"),
    ("deep ref_text", dict(meta={"ref_text": "[" * 100000 + "]" * 100000}), "not valid JSON"),
    ("ref_text a list", dict(meta={"ref_text": "[1, 2]"}), "must be a JSON string or null, got list"),
    ("empty ref_text", dict(meta={"ref_text": '""'}), "`ref_text` must be the reference's transcript"),
    ("huge ref_text", dict(meta={"ref_text": json.dumps("a" * 50_000)}),
     "50000 characters long; at most 3000"),
    ("codes without text", dict(ref_text=True), "has `ref_codes` but no `ref_text`"),
    ("text without codes", dict(ref_codes=True), "has `ref_text` but no `ref_codes`"),
    ("other format", dict(meta={"format": "other/1"}), "not a voice prompt saved by mlx_qwen3_tts"),
    ("extra tensor", dict(tensors={"extra": np.zeros(2, np.float32)}), "unexpected tensors extra"),
]


@pytest.mark.parametrize("case,kwargs,match", BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_bad_voice_files_are_refused_on_load(tmp_path, case, kwargs, match):
    path = write_voice(tmp_path / "v.safetensors", **kwargs)
    with pytest.raises(qt.AudioError, match=match) as e:
        VoicePrompt.load(path)
    message = one_line(e)
    assert message.startswith(f"Voice file '{path}'"), message


def test_reference_length_is_capped_on_save(tmp_path):
    assert MAX_REFERENCE_FRAMES == 750
    ok = voice(frames=750)
    ok.save(tmp_path / "ok.safetensors")
    assert VoicePrompt.load(tmp_path / "ok.safetensors").ref_codes.shape == (750, 16)
    with pytest.raises(qt.AudioError, match="has 751 frames"):
        voice(frames=751)
    ok.ref_codes = np.zeros((20000, 16), np.int32)  # fields changed after construction
    with pytest.raises(qt.AudioError, match="has 20000 frames"):
        ok.save(tmp_path / "big.safetensors")
    assert not (tmp_path / "big.safetensors").exists()


def test_codes_without_text_are_refused_in_memory():
    with pytest.raises(qt.AudioError, match="has `ref_codes` but no `ref_text`"):
        VoicePrompt(np.ones(8, np.float32), np.zeros((4, 16), np.int32))


def test_oversized_voice_file_is_not_read(tmp_path, monkeypatch):
    path = tmp_path / "big.safetensors"
    with open(path, "wb") as f:
        f.truncate(64 << 20)  # sparse: no disk used
    with pytest.raises(qt.AudioError, match="is 64 MiB; a voice file is under 8 MiB"):
        VoicePrompt.load(path)


def test_voice_file_permission_error(tmp_path, monkeypatch):
    import safetensors

    path = write_voice(tmp_path / "v.safetensors")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(safetensors, "safe_open", denied)
    with pytest.raises(qt.AudioError, match="not a readable voice prompt file.*Permission denied"):
        VoicePrompt.load(path)


def test_voice_folder_is_not_a_file(tmp_path):
    (tmp_path / "dir.safetensors").mkdir()
    with pytest.raises(qt.AudioError, match="is not a file"):
        VoicePrompt.load(tmp_path / "dir.safetensors")


def test_valid_voice_files_round_trip(tmp_path):
    for v in (voice(), voice(text=None)):
        back = VoicePrompt.load(v.save(tmp_path / "v.safetensors"))
        np.testing.assert_array_equal(back.speaker_embedding, v.speaker_embedding)
        assert back.ref_text == v.ref_text
        assert (back.ref_codes is None) == (v.ref_codes is None)

