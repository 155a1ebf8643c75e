"""Speaker encoder and its mel front-end against the official model and the NumPy reference.

Fixtures come from tools/ref_speaker.py (official `qwen-tts` 0.1.1 in fp32, librosa's filterbank).
"""

import hashlib
import json

import mlx.core as mx
import numpy as np
import pytest
from conftest import load_fixture
from numpy_ref import speaker_encoder as ref

from mlx_qwen3_tts.errors import AudioError, ModelLoadError
from mlx_qwen3_tts.models.speaker_encoder import (
    FMAX,
    FMIN,
    N_FFT,
    SpeakerEncoder,
    SpeakerEncoderConfig,
    mel_filterbank,
    min_audio_samples,
)

SIZES = ["tiny-0.6b", "tiny-1.7b"]
PREFIX = "speaker_encoder."


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


def cosine(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def weights_digest(weights: dict[str, np.ndarray]) -> str:
    """Same digest as tools/ref_speaker.py: float32 PyTorch-layout weights, keys sorted."""
    h = hashlib.sha256()
    for key in sorted(weights):
        h.update(key.encode())
        h.update(np.ascontiguousarray(weights[key], dtype=np.float32).tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def loaded(checkpoint):
    """`loaded(size)` -> (fp32 encoder, fixture, PyTorch-layout numpy weights, config)."""
    cache = {}

    def get(size):
        if size not in cache:
            folder = checkpoint(size, "base")  # seed 0, shared with other test files
            fixture = load_fixture(f"speaker_{size}-base-seed0.npz")
            weights = {
                k[len(PREFIX):]: v.astype(mx.float32)
                for k, v in mx.load(str(folder / "model.safetensors")).items()
                if k.startswith(PREFIX)
            }
            np_weights = {k: np.array(v) for k, v in weights.items()}
            # A fixture made from other weights would compare two different models.
            assert weights_digest(np_weights) == str(fixture["weights_digest"]), (
                "regenerate fixtures: the checkpoint writer changed (tools/ref_speaker.py)"
            )
            params = json.loads((folder / "config.json").read_text())["speaker_encoder_config"]
            config = SpeakerEncoderConfig.from_dict(params)
            model = SpeakerEncoder(config)
            model.load_weights(list(model.sanitize(weights).items()), strict=True)
            mx.eval(model.parameters())
            cache[size] = (model, fixture, np_weights, config)
        return cache[size]

    return get


def test_filterbank_matches_librosa():
    librosa_filters = load_fixture("speaker_librosa_mel.npz")["filters"]
    ours = mel_filterbank(24000, N_FFT, 128, FMIN, FMAX)
    assert ours.shape == librosa_filters.shape == (128, N_FFT // 2 + 1)
    assert np.abs(ours - librosa_filters).max() < 1e-7


@pytest.mark.parametrize("size", SIZES)
def test_mel_matches_official_and_numpy(loaded, size):
    model, fx, _, _ = loaded(size)
    ours = np.array(model.mel_spectrogram(mx.array(fx["waveform"])))[0]
    assert ours.shape == fx["mel"].shape == (len(fx["waveform"]) // 256, 128)
    assert np.abs(ours - fx["mel"]).max() < 1e-4
    librosa_filters = load_fixture("speaker_librosa_mel.npz")["filters"]
    assert np.abs(ours - ref.log_mel(fx["waveform"], librosa_filters)).max() < 1e-4


def test_mel_batches_rows_independently(loaded):
    model, fx, _, _ = loaded("tiny-0.6b")
    wav = fx["waveform"]
    both = np.array(model.mel_spectrogram(mx.array(np.stack([wav, wav[::-1]]))))
    one = np.array(model.mel_spectrogram(mx.array(wav[::-1].copy())))[0]
    assert np.abs(both[1] - one).max() < 1e-5


@pytest.mark.parametrize("size", SIZES)
def test_xvector_matches_official(loaded, size):
    model, fx, _, _ = loaded(size)
    ours = np.array(model(mx.array(fx["mel"])[None]))[0]
    assert ours.shape == fx["xvector"].shape == (model.config.enc_dim,)
    assert cosine(ours, fx["xvector"]) >= 0.9999
    assert np.abs(ours - fx["xvector"]).max() < 1e-5  # measured ~2e-6 (|x-vector| <= 7.3)
    # End to end from the waveform, as extract_speaker_embedding does it.
    embedded = np.array(model.embed(fx["waveform"]))
    assert cosine(embedded, fx["xvector"]) >= 0.9999
    assert np.abs(embedded - fx["xvector"]).max() < 1e-5


@pytest.mark.parametrize("size", SIZES)
def test_xvector_matches_numpy(loaded, size):
    model, fx, weights, config = loaded(size)
    ours = np.array(model(mx.array(fx["mel"])[None]))[0]
    expected = ref.speaker_embedding(weights, fx["mel"], config.enc_dilations, config.enc_res2net_scale)
    assert rel_err(ours, expected) < 1e-5


def test_batch_equals_one_at_a_time(loaded):
    model, fx, _, _ = loaded("tiny-0.6b")
    mel = fx["mel"]
    batch = np.array(model(mx.array(np.stack([mel, mel[::-1]]))))
    single = np.array(model(mx.array(mel[::-1].copy())[None]))[0]
    assert rel_err(batch[1], single) < 1e-5


def test_sanitize_is_idempotent(loaded):
    model, _, weights, _ = loaded("tiny-0.6b")
    once = model.sanitize({k: mx.array(v) for k, v in weights.items()})
    twice = model.sanitize(once)
    assert once.keys() == twice.keys() == weights.keys()
    for k in once:
        assert once[k].shape == twice[k].shape
        assert mx.array_equal(once[k], twice[k]).item(), k
    assert once["blocks.0.conv.weight"].shape == (16, 5, 128)  # [out, k, in]


def test_config_requires_enc_dim():
    with pytest.raises(ModelLoadError, match="enc_dim"):
        SpeakerEncoderConfig.from_dict({"sample_rate": 24000})
    config = SpeakerEncoderConfig.from_dict({"enc_dim": 1024, "sample_rate": 24000})
    assert config.enc_channels == [512, 512, 512, 512, 1536]
    assert (config.enc_kernel_sizes, config.enc_dilations) == ([5, 3, 3, 3, 1], [1, 2, 3, 4, 1])


@pytest.mark.parametrize(
    "audio",
    [
        np.zeros(0, np.float32),
        np.zeros((2, 24000), np.float32),
        np.array([0.0] * 2000 + [np.nan], np.float32),
        np.array([0.0] * 2000 + [np.inf], np.float32),
        np.zeros(1000, np.float32),  # under one STFT frame
        np.zeros(24000, np.int16),
    ],
    ids=["empty", "2-D", "nan", "inf", "short", "int16"],
)
def test_embed_rejects_bad_audio(loaded, audio):
    model, _, _, _ = loaded("tiny-0.6b")
    with pytest.raises(AudioError):
        model.embed(audio)


def test_embed_minimum_length(loaded):
    model, fx, _, _ = loaded("tiny-0.6b")
    n = min_audio_samples(model.min_frames)
    assert n == 1280  # 5 frames: the dilation-4 k3 convs reflect-pad 4 frames each side
    assert model.embed(fx["waveform"][:n]).shape == (model.config.enc_dim,)
    with pytest.raises(AudioError):
        model.embed(fx["waveform"][: n - 1])
