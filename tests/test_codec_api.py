"""SpeechTokenizer's boundary: loading (strict, loud), audio handling and input validation."""

import json

import mlx.core as mx
import numpy as np
import pytest
import soundfile as sf
import soxr

from mlx_qwen3_tts.audio import prepare_audio, resample, to_mono
from mlx_qwen3_tts.errors import AudioError, ModelLoadError
from mlx_qwen3_tts.speech_tokenizer import SpeechTokenizer
from mlx_qwen3_tts.testing import write_speech_tokenizer


@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory):
    return write_speech_tokenizer(tmp_path_factory.mktemp("codec"), "tiny-0.6b", seed=0)


@pytest.fixture(scope="module")
def tok(codec_dir):
    return SpeechTokenizer.from_pretrained(codec_dir)


def tone(seconds: float, sr: int, channels: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 1234 * t)
    if channels:
        x = np.stack([x * (1 + 0.2 * c) for c in range(channels)], axis=-1)
    return x.astype(np.float32)


# --------------------------------------------------------------------------- loading


def test_loads_a_checkpoint_folder_or_its_speech_tokenizer_without_preprocessor_config(tmp_path, tok):
    folder = write_speech_tokenizer(tmp_path / "ckpt" / "speech_tokenizer", "tiny-0.6b", seed=0)
    (folder / "preprocessor_config.json").unlink()  # missing in some snapshots (dossier §6.19)
    codes = np.random.default_rng(0).integers(0, 2048, (3, 16))
    want = tok.decode(codes)
    for path in (tmp_path / "ckpt", folder):
        loaded = SpeechTokenizer.from_pretrained(path)
        np.testing.assert_array_equal(loaded.decode(codes), want)
    assert (loaded.sample_rate, loaded.samples_per_frame, loaded.num_codebooks) == (24000, 1920, 16)


def test_bfloat16_decodes_finite_float32_audio(codec_dir):
    tok16 = SpeechTokenizer.from_pretrained(codec_dir, dtype=mx.bfloat16)
    assert tok16.dtype == mx.bfloat16
    wav = tok16.decode(np.random.default_rng(1).integers(0, 2048, (4, 16)))
    assert wav.dtype == np.float32 and wav.shape == (4 * 1920,) and np.isfinite(wav).all()
    assert tok16.encode(tone(0.5, 24000), 24000).shape == (7, 16)


def rewrite_weights(src, dst, edit) -> None:
    write_speech_tokenizer(dst, "tiny-0.6b", seed=0)
    weights = dict(mx.load(str(src / "model.safetensors")))
    edit(weights)
    mx.save_safetensors(str(dst / "model.safetensors"), weights)


@pytest.mark.parametrize("edit,match", [
    (lambda w: w.pop("decoder.pre_conv.conv.bias"), "missing tensors: decoder.pre_conv.conv.bias"),
    (lambda w: w.update({"decoder.extra.weight": mx.zeros((2,))}),
     "unexpected tensors: decoder.extra.weight"),
    (lambda w: w.update({"encoder.downsample.conv.weight": mx.zeros((16, 16, 5))}),
     "encoder.downsample.conv.weight"),
    (lambda w: w.update({"decoder.pre_transformer.norm.weight": mx.zeros((17,))}),
     r"wrong shapes: decoder.pre_transformer.norm.weight \(17,\)"),
    (lambda w: w.pop("decoder.quantizer.rvq_rest.vq.layers.2._codebook.cluster_usage"),
     "decoder.quantizer.rvq_rest.vq.layers.2: codebook has only embedding_sum"),
])
def test_bad_weights_raise_model_load_error_naming_the_tensor(codec_dir, tmp_path, edit, match):
    rewrite_weights(codec_dir, tmp_path, edit)
    with pytest.raises(ModelLoadError, match=match):
        SpeechTokenizer.from_pretrained(tmp_path)


@pytest.mark.parametrize("edit,match", [
    (lambda c: c["decoder_config"].pop("sliding_window"), "decoder_config.*sliding_window"),
    (lambda c: c.pop("encoder_valid_num_quantizers"), "encoder_valid_num_quantizers"),
    (lambda c: c.update(model_type="qwen3_tts_tokenizer_25hz"), "not supported"),
    (lambda c: c["decoder_config"].update(upsample_rates=[8, 5, 4, 2]), "decode_upsample_rate"),
])
def test_bad_config_raises_model_load_error(codec_dir, tmp_path, edit, match):
    folder = write_speech_tokenizer(tmp_path, "tiny-0.6b", seed=0)
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=match):
        SpeechTokenizer.from_pretrained(folder)


def test_missing_folder_raises_model_load_error(tmp_path):
    with pytest.raises(ModelLoadError, match="config.json"):
        SpeechTokenizer.from_pretrained(tmp_path / "nowhere")


# --------------------------------------------------------------------------- audio in


def test_stereo_is_averaged_and_any_rate_resampled_with_soxr_hq(tok):
    stereo = tone(0.7, 24000, channels=2)
    np.testing.assert_array_equal(tok.encode(stereo, 24000), tok.encode(stereo.mean(-1), 24000))
    x = tone(0.7, 44100)
    y = prepare_audio(x, 44100)
    n = int(np.ceil(len(x) * 24000 / 44100))  # librosa.resample's length: soxr's, zero-padded
    want = soxr.resample(x, 44100, 24000, quality="HQ")
    assert y.dtype == np.float32 and y.shape == (n,) and len(want) == n - 1
    np.testing.assert_array_equal(y, np.pad(want, (0, 1)))
    assert tok.encode(x, 44100).shape == (-(-n // 1920), 16)
    assert resample(x, 24000, 24000) is x


def test_encode_reads_audio_files(tok, tmp_path):
    x = tone(0.4, 16000, channels=2)
    sf.write(tmp_path / "ref.wav", x, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(tok.encode(tmp_path / "ref.wav"), tok.encode(x, 16000))
    with pytest.raises(AudioError, match="cannot read"):
        tok.encode(tmp_path / "missing.wav")


def test_encode_frames_cover_every_sample(tok):
    for n in (1, 1919, 1920, 1921):
        assert tok.encode(np.full(n, 0.1, np.float32), 24000).shape == (-(-n // 1920), 16)


@pytest.mark.parametrize("audio,sr,match", [
    (np.zeros(0, np.float32), 24000, "empty"),
    (np.zeros((0, 2), np.float32), 24000, "empty"),
    (np.full(4000, np.nan, np.float32), 24000, "all NaN"),
    (np.array([0.1, np.inf, 0.2] * 100, np.float32), 24000, "NaN or inf"),
    (np.zeros((2, 4000), np.float32), 24000, "channels-first"),
    (np.zeros((4000, 2, 1), np.float32), 24000, "cannot interpret"),
    (np.zeros(4000, np.int16), 24000, "floating point"),
    (np.zeros(4000, np.float32), 0, "positive"),
    (np.zeros(4000, np.float32), -16000, "positive"),
    (np.zeros(4000, np.float32), float("nan"), "positive"),
    (np.zeros(4000, np.float32), None, "required"),
])
def test_bad_audio_raises_audio_error(tok, audio, sr, match):
    with pytest.raises(AudioError, match=match):
        tok.encode(audio, sr)


def test_to_mono_keeps_mono_and_averages_channels_last():
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    np.testing.assert_array_equal(to_mono(x), x.mean(-1))
    np.testing.assert_array_equal(to_mono(x[:, 0]), x[:, 0])


# --------------------------------------------------------------------------- codes in


@pytest.mark.parametrize("codes,match", [
    (np.zeros((4, 15), np.int64), r"shape \[frames, 16\]"),
    (np.zeros(16, np.int64), r"shape \[frames, 16\]"),
    (np.zeros((1, 4, 16), np.int64), r"shape \[frames, 16\]"),
    (np.full((4, 16), 2048), r"\[0, 2048\)"),
    (np.full((4, 16), -1), r"\[0, 2048\)"),
    (np.zeros((4, 16), np.float32), "integers"),
])
def test_bad_codes_raise_audio_error(tok, codes, match):
    with pytest.raises(AudioError, match=match):
        tok.decode(codes)
    with pytest.raises(AudioError, match=match):
        tok.stream_decoder().decode_step(codes)


def test_decode_modes_and_empty_codes(tok):
    codes = np.random.default_rng(2).integers(0, 2048, (5, 16))
    exact, reference = tok.decode(codes), tok.decode(codes, mode="reference")
    assert exact.shape == reference.shape == (5 * 1920,)
    np.testing.assert_allclose(exact, reference, atol=1e-6)  # one chunk: the same single pass
    assert np.abs(exact).max() <= 1.0
    assert tok.decode(np.zeros((0, 16), np.int64)).shape == (0,)
    np.testing.assert_array_equal(tok.decode(mx.array(codes)), exact)
    with pytest.raises(AudioError, match="mode"):
        tok.decode(codes, mode="chunked")
