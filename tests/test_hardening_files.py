"""Hardening of what comes from files: reference audio, saved voices, checkpoint configs.

Each test is one case of issues #21 / #23: a crafted or broken input raises the library's typed
error with a one-line message, before any large allocation or long computation.
"""

import json
import os
import shutil
import signal
import struct
from contextlib import contextmanager

import numpy as np
import pytest
import soundfile as sf
from conftest import tone
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
    # Listed (and offered by the server's GET /v1/voices) though none can be loaded:
    (voices / "folder.safetensors").mkdir()
    (voices / "junk.safetensors").write_bytes(os.urandom(4000))
    (voices / "zero.safetensors").symlink_to(os.devnull)
    save_file({"w": np.ones(4, np.float32)}, str(voices / "weights.safetensors"))  # no voice's format
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
        if v.ref_codes is not None:
            np.testing.assert_array_equal(back.ref_codes, v.ref_codes)



# --------------------------------------------------------------------------- case 6: config fields


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def talker(**fields):
    return lambda c: c["talker_config"].update(fields)


def top(**fields):
    return lambda c: c.update(fields)


CONFIG_CASES = [
    # (id, edit of a tiny CustomVoice config.json, message pattern)
    ("layers as a string", talker(num_hidden_layers="2"),
     r"\(talker_config\): `num_hidden_layers` must be an integer, got '2'"),
    ("zero width", talker(hidden_size=0), r"`hidden_size` is 0, outside \[1, 65536\]"),
    ("zero heads", talker(num_attention_heads=0, head_dim=None),
     r"`num_attention_heads` is 0, outside \[1"),
    ("negative head_dim", talker(head_dim=-1), r"`head_dim` is -1, outside \[1, 1024\]"),
    ("derived head_dim of 0", talker(num_attention_heads=64, num_key_value_heads=64, head_dim=None),
     r"`head_dim` is 0 \(derived from the other fields\)"),
    ("a million layers", talker(num_hidden_layers=1_000_000),
     r"`num_hidden_layers` is 1000000, outside \[1, 256\]"),
    ("huge integer", talker(num_hidden_layers=10**5000),
     "`num_hidden_layers` is an integer of 19 digits or more"),
    ("bool as int", talker(num_hidden_layers=True), "must be an integer, got True"),
    ("eps as a string", talker(rms_norm_eps="x"), "`rms_norm_eps` must be a finite number, got 'x'"),
    ("zero eps", talker(rms_norm_eps=0), r"`rms_norm_eps` is 0, outside \(0, 1\]"),
    ("infinite rope_theta", talker(rope_theta=float("inf")), "`rope_theta` must be a finite number, got inf"),
    ("bias as a string", talker(attention_bias="false"), "`attention_bias` must be true or false"),
    ("heads not a multiple of kv heads", talker(num_key_value_heads=3),
     "`num_attention_heads` 4 is not a multiple of `num_key_value_heads` 3"),
    ("spk_id a list", talker(spk_id=["vivian"]),
     "`spk_id` must be a JSON object, got a list of 1 entry"),
    ("spk_id value a string", talker(spk_id={"vivian": "3065"}),
     r"`spk_id\['vivian'\]` must be an integer"),
    ("spk_id past the codec vocabulary", talker(spk_id={"vivian": 3072}),
     r"`spk_id\['vivian'\]` is 3072, outside the codec vocabulary \(`vocab_size`\) \[0, 3072\)"),
    ("language id not an int", talker(codec_language_id={"english": 2050.5}),
     r"`codec_language_id\['english'\]` must be an integer"),
    ("negative codec id", talker(codec_pad_id=-1), r"`codec_pad_id` is -1, outside the codec vocabulary"),
    ("unknown dialect", talker(spk_is_dialect={"dylan": "klingon"}),
     r"`spk_is_dialect\['dylan'\]` must be false or a language of `codec_language_id`"),
    ("deeply nested rope_scaling", talker(rope_scaling=nested(500)), "nested more than 16 levels deep"),
    ("text id past the text vocabulary", top(tts_pad_token_id=151936),
     r"^ck/config.json: `tts_pad_token_id` is 151936, outside the text vocabulary"),
    ("model size not a string", top(tts_model_size=6), "`tts_model_size` must be a string, got 6"),
    ("talker_config a list", top(talker_config=[1]), "`talker_config` must be a JSON object"),
    ("predictor layers", lambda c: c["talker_config"]["code_predictor_config"].update(num_hidden_layers=0),
     r"\(code_predictor_config\): `num_hidden_layers` is 0"),
    ("quantization bits", top(quantization={"group_size": 64, "bits": 7}),
     r"`quantization\['bits'\]` must be one of 2, 3, 4, 5, 6, 8, got 7"),
    ("per-layer group size",
     top(quantization={"bits": 8, "talker.codec_head": {"group_size": 48, "bits": 8}}),
     r"`quantization\['talker.codec_head'\]\['group_size'\]` must be one of 32, 64, 128"),
]


@pytest.mark.parametrize("case,edit,match", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_fields_are_model_load_errors(case, edit, match):
    from mlx_qwen3_tts.models.qwen3_tts import Qwen3TTSConfig
    from mlx_qwen3_tts.testing import make_config

    config = make_config("tiny-0.6b", "custom_voice")
    edit(config)
    with pytest.raises(qt.ModelLoadError, match=match) as e:
        Qwen3TTSConfig.from_dict(config, "ck/config.json")
    assert one_line(e).startswith("ck/config.json")


SPEAKER_ENCODER_CASES = [
    ("zero kernel", dict(enc_kernel_sizes=[5, 3, 3, 3, 0]),
     r"`enc_kernel_sizes\[4\]` is 0, outside \[1"),
    ("lengths differ", dict(enc_dilations=[1, 2]), "must have the same length"),
    ("too few blocks", dict(enc_channels=[16, 16], enc_kernel_sizes=[5, 1], enc_dilations=[1, 1]),
     "`enc_channels` .* must have 3 or more entries"),
    ("scale does not divide", dict(enc_res2net_scale=3), "`enc_res2net_scale` 3 must divide"),
    ("channels as floats", dict(enc_channels=[16.0, 16, 16, 16, 48]),
     r"`enc_channels\[0\]` must be an integer"),
]


@pytest.mark.parametrize("case,fields,match", SPEAKER_ENCODER_CASES,
                         ids=[c[0] for c in SPEAKER_ENCODER_CASES])
def test_bad_speaker_encoder_fields(case, fields, match):
    from mlx_qwen3_tts.models.qwen3_tts import Qwen3TTSConfig
    from mlx_qwen3_tts.testing import make_config

    config = make_config("tiny-0.6b", "base")
    config["speaker_encoder_config"].update(fields)
    with pytest.raises(qt.ModelLoadError, match=match) as e:
        Qwen3TTSConfig.from_dict(config, "ck/config.json")
    assert one_line(e).startswith("ck/config.json (speaker_encoder_config)")


def codec(part: str, **fields):
    return lambda c: (c[part] if part else c).update(fields)


CODEC_CASES = [
    ("upsample rate 0", codec("decoder_config", upsample_rates=[0, 5, 4, 3]),
     r"\(decoder_config\): `upsample_rates\[0\]` is 0, outside \[1, 64\]"),
    ("upsample rates not a list", codec("decoder_config", upsample_rates=8),
     "must be a list of 1 to 64 entries"),
    ("decoder too narrow", codec("decoder_config", decoder_dim=8),
     r"`decoder_dim // 2\^len\(upsample_rates\)` is 0"),
    ("decoder heads", codec("decoder_config", num_attention_heads=0), "`num_attention_heads` is 0"),
    ("window as a string", codec("decoder_config", sliding_window="72"),
     "`sliding_window` must be an integer"),
    ("encoder too wide", codec("encoder_config", upsampling_ratios=[8, 6, 5, 4] + [1] * 40),
     r"`num_filters \* 2\^len\(upsampling_ratios\)` is \d+, outside"),
    ("tiny frame rate", codec("encoder_config", frame_rate=1e-9), "`downsample kernel from frame_rate` is"),
    ("compress past the width", codec("encoder_config", compress=64), "`num_filters // compress` is 0"),
    ("sample rate of 1 Hz", codec(None, input_sample_rate=1), r"`input_sample_rate` is 1, outside \[8000"),
    ("quantizers as a string", codec(None, encoder_valid_num_quantizers="16"),
     "must be an integer, got '16'"),
]


@pytest.mark.parametrize("case,edit,match", CODEC_CASES, ids=[c[0] for c in CODEC_CASES])
def test_bad_speech_tokenizer_fields(case, edit, match):
    from mlx_qwen3_tts.models.codec import SpeechTokenizerConfig
    from mlx_qwen3_tts.testing import make_speech_tokenizer_config

    config = make_speech_tokenizer_config("tiny-0.6b")
    edit(config)
    with pytest.raises(qt.ModelLoadError, match=match) as e:
        SpeechTokenizerConfig.from_dict(config, "ck/speech_tokenizer/config.json")
    assert one_line(e).startswith("ck/speech_tokenizer/config.json")


def test_absurd_depth_fails_before_any_module_is_built(monkeypatch, checkpoint, tmp_path):
    from mlx_qwen3_tts.models import qwen3_tts

    def never(*args, **kwargs):
        raise AssertionError("a module was built")

    folder = shutil.copytree(checkpoint(), tmp_path / "ck")
    config = json.loads((folder / "config.json").read_text())
    config["talker_config"]["num_hidden_layers"] = 1_000_000
    (folder / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr(qwen3_tts.Talker, "__init__", never)
    with pytest.raises(qt.ModelLoadError, match="num_hidden_layers"):
        qt.load(folder)


def test_a_bad_field_is_named_with_its_file(tmp_path, checkpoint):
    import shutil

    folder = shutil.copytree(checkpoint(), tmp_path / "ck")
    config = json.loads((folder / "config.json").read_text())
    config["talker_config"]["hidden_size"] = 0
    (folder / "config.json").write_text(json.dumps(config))
    where = rf"{folder / 'config.json'} \(talker_config\)"
    with pytest.raises(qt.ModelLoadError, match=rf"{where}: `hidden_size` is 0"):
        qt.load(folder)
    st = json.loads((folder / "speech_tokenizer" / "config.json").read_text())
    st["decoder_config"]["upsample_rates"] = [0, 5, 4, 3]
    (folder / "speech_tokenizer" / "config.json").write_text(json.dumps(st))
    from mlx_qwen3_tts.speech_tokenizer import SpeechTokenizer

    with pytest.raises(qt.ModelLoadError, match=r"tokenizer/config.json \(decoder_config\): `upsample_rates"):
        SpeechTokenizer.from_pretrained(folder)


@pytest.mark.parametrize("size", ["tiny-0.6b", "tiny-1.7b", "tiny-q", "0.6b", "1.7b"])
@pytest.mark.parametrize("variant", ["custom_voice", "voice_design", "base"])
def test_released_layouts_still_parse(size, variant):
    from mlx_qwen3_tts.models.codec import SpeechTokenizerConfig
    from mlx_qwen3_tts.models.qwen3_tts import Qwen3TTSConfig
    from mlx_qwen3_tts.testing import make_config, make_speech_tokenizer_config

    config = make_config(size, variant)
    parsed = Qwen3TTSConfig.from_dict(config)
    assert parsed.talker_config.num_hidden_layers == config["talker_config"]["num_hidden_layers"]
    assert parsed.talker_config.spk_id == config["talker_config"]["spk_id"]
    codec_config = SpeechTokenizerConfig.from_dict(make_speech_tokenizer_config(size))
    assert codec_config.decoder_config.upsample_rates == [8, 5, 4, 3]


@pytest.mark.parametrize("defaults,match", [
    ([1], "must hold a JSON object, got list"),
    ({"temperature": "hot"}, "'temperature' must be a finite number, got 'hot'"),
    ({"subtalker_top_p": None}, "'subtalker_top_p' must be a finite number, got None"),
    ({"top_k": 2.5}, "'top_k' must be an integer, got 2.5"),
    ({"do_sample": "yes"}, "'do_sample' must be true or false"),
    # It said "`max_frames` must be a positive integer, got -1", a flag the user never passed.
    ({"max_new_tokens": 0}, "'max_new_tokens' must be at least 2, got 0"),
    ({"max_new_tokens": 1}, "'max_new_tokens' must be at least 2, got 1"),  # 0 frames, not max_frames' fault
    ({"top_p": 0}, r"top_p must be in \(0, 1\]"),
    ({"repetition_penalty": 1e-40}, "repetition_penalty must be between"),
])
def test_bad_generation_config_fields_are_model_load_errors(defaults, match):
    from mlx_qwen3_tts.request import GenerationConfig

    with pytest.raises(qt.ModelLoadError, match=rf"^generation_config.json[: ].*{match}"):
        GenerationConfig.from_checkpoint(defaults)


def test_a_bad_generation_config_fails_the_load(checkpoint, tmp_path):
    folder = shutil.copytree(checkpoint(), tmp_path / "ck")
    (folder / "generation_config.json").write_text(json.dumps({"temperature": None}))
    with pytest.raises(qt.ModelLoadError, match="'temperature' must be a finite number"):
        qt.load(folder)
    (folder / "generation_config.json").write_text(json.dumps({"top_k": 50.0, "do_sample": 1}))
    assert qt.load(folder).generate("Hi.", speaker="vivian", max_frames=2).audio.size  # as HF reads them


TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json")


@pytest.mark.parametrize("name,content,match", [
    ("vocab.json", "{", "vocab.json is not valid JSON"),
    ("vocab.json", '["a"]', "must map each token to a non-negative integer id"),
    ("vocab.json", '{"a": "1"}', "must map each token to a non-negative integer id"),
    ("vocab.json", '{"a": -1}', "must map each token to a non-negative integer id"),  # tokenizers: TypeError
    ("merges.txt", "#version: 0.2\na b c\n", r"merges.txt line 2: 'a b c' is not a merge"),
    ("merges.txt", "lonely\n", r"merges.txt line 1: 'lonely' is not a merge"),
    ("merges.txt", "\u0120 zzzq\n", "is not a merge of two tokens of vocab.json"),
    # Both halves in the vocabulary, their merge not: tokenizers panics (a BaseException).
    ("merges.txt", "#version: 0.2\nQ X\n", "is not a merge of two tokens of vocab.json into a third"),
    ("merges.txt", b"\xff\xfe", "merges.txt cannot be read"),
    ("tokenizer_config.json", "[1]", "tokenizer_config.json must hold a JSON object"),
    ("tokenizer_config.json", '{"added_tokens_decoder": {"x": {"content": "<a>"}}}',
     "added_tokens_decoder must map ids to objects with a 'content' string"),
    ("tokenizer_config.json", '{"added_tokens_decoder": {"5": {"special": true}}}',
     "added_tokens_decoder must map ids"),
    ("tokenizer_config.json", '{"added_tokens_decoder": {"5": {"content": 7}}}',
     "whose 'content' is not a non-empty string"),
    ("tokenizer_config.json", '{"added_tokens_decoder": {"5": {"content": ""}}}',  # silently dropped
     "whose 'content' is not a non-empty string"),
])
def test_bad_text_tokenizer_files_are_model_load_errors(checkpoint, tmp_path, name, content, match):
    """They raised JSONDecodeError, KeyError, ValueError or tokenizers' bare Exception."""
    from mlx_qwen3_tts.text_tokenizer import TextTokenizer

    for file in TOKENIZER_FILES:
        shutil.copy(checkpoint() / file, tmp_path / file)
    TextTokenizer.from_folder(tmp_path)  # the copies load
    (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(qt.ModelLoadError, match=match):
        TextTokenizer.from_folder(tmp_path)
