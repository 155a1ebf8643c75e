"""Speech tokenizer parity with the official `qwen-tts` 0.1.1 on the tiny random codec.

Fixtures come from `tools/ref_codec.py` (official model, fp32, one thread). Regenerate with:

    /work/venv/bin/python -c "from mlx_qwen3_tts.testing import write_speech_tokenizer as w; \
        w('/tmp/codec_tiny', 'tiny-0.6b', seed=0)"
    /work/refvenv/bin/python tools/ref_codec.py /tmp/codec_tiny tests/fixtures
"""

import importlib.util
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from conftest import snr_db
from mlx_lm.models.base import create_causal_mask

from mlx_qwen3_tts.audio import prepare_audio
from mlx_qwen3_tts.speech_tokenizer import SpeechTokenizer
from mlx_qwen3_tts.testing import write_speech_tokenizer

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
_spec = importlib.util.spec_from_file_location("ref_codec", ROOT / "tools" / "ref_codec.py")
ref_codec = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref_codec)  # codec_digest / with_window only: it imports no torch


def load(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / name) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory) -> Path:
    return write_speech_tokenizer(tmp_path_factory.mktemp("codec"), "tiny-0.6b", seed=0)


@pytest.fixture(scope="module")
def decode_fx(codec_dir):
    fx = load("codec_decode.npz")
    assert str(fx["codec_digest"]) == ref_codec.codec_digest(codec_dir), (
        "the test codec changed since the fixtures were made; regenerate them (module docstring)"
    )
    return fx


@pytest.fixture(scope="module")
def encode_fx(codec_dir):
    fx = load("codec_encode.npz")
    assert str(fx["codec_digest"]) == ref_codec.codec_digest(codec_dir), "regenerate the fixtures"
    return fx


@pytest.fixture(scope="module")
def tok(codec_dir) -> SpeechTokenizer:
    return SpeechTokenizer.from_pretrained(codec_dir)


@pytest.fixture(scope="module")
def tok_long(codec_dir, decode_fx, tmp_path_factory) -> SpeechTokenizer:
    """Same weights with the released 72-frame window, longer than the 25 context frames."""
    folder = tmp_path_factory.mktemp("codec_long")
    return SpeechTokenizer.from_pretrained(
        ref_codec.with_window(codec_dir, folder, int(decode_fx["long_window"]))
    )


def assert_parity(got: np.ndarray, want: np.ndarray):
    assert got.shape == want.shape and got.dtype == np.float32
    assert snr_db(got, want) >= 90.0  # measured ~120 dB
    assert np.abs(got - want).max() <= 2e-5 * np.abs(want).max()  # measured ~4e-6


def test_reference_decode_matches_official(tok, decode_fx):
    wav = tok.decode(decode_fx["codes_short"], mode="reference")
    assert_parity(wav, decode_fx["wav_short"])
    # The fixture codec is meant to catch errors: audible, not saturated (parity-notes.md).
    assert 0.15 < wav.std() < 0.6 and np.mean(np.abs(wav) >= 1.0) < 0.1


def test_reference_decode_matches_official_past_300_frames(tok_long, decode_fx):
    wav = tok_long.decode(decode_fx["codes_long"], mode="reference")
    tail = int(decode_fx["long_tail_start"]) * tok_long.samples_per_frame
    assert_parity(wav[tail:], decode_fx["wav_long_tail"])
    assert_parity(wav[:: int(decode_fx["long_stride"])], decode_fx["wav_long_strided"])


def test_exact_decode_matches_official_single_pass_and_differs_from_chunked(tok_long, decode_fx):
    wav = tok_long.decode(decode_fx["codes_long"], mode="exact")
    tail = int(decode_fx["long_tail_start"]) * tok_long.samples_per_frame
    assert_parity(wav[tail:], decode_fx["wav_long_exact_tail"])
    # Dossier §6.11: with a window (72) longer than the context (25), the official chunked decode
    # is not the single pass after frame 300; both our modes reproduce their counterpart.
    official_gap = decode_fx["wav_long_tail"] - decode_fx["wav_long_exact_tail"]
    assert np.abs(official_gap).max() > 1e-2 * np.abs(decode_fx["wav_long_tail"]).max()
    join = (300 - int(decode_fx["long_tail_start"])) * tok_long.samples_per_frame
    assert np.abs(official_gap[:join]).max() < 1e-5  # identical before the first chunk join


def near_tie_violations(tok, latent: mx.array, ref_codes: np.ndarray, rel: float = 1e-4) -> int:
    """Decisions where the reference's code is not (within `rel`) our nearest centroid.

    Each codebook is checked with the residual built from the reference's own earlier codes, so a
    flipped near-tie does not count again in the codebooks after it. Distances in float64.
    """
    q = tok.model.encoder.quantizer
    groups = [(q.semantic_residual_vector_quantizer, ref_codes[:, :1]),
              (q.acoustic_residual_vector_quantizer, ref_codes[:, 1:])]
    violations = 0
    for rvq, codes in groups:
        residual = np.array(rvq.input_proj(latent)[0] if "input_proj" in rvq else latent[0], np.float64)
        for k, layer in enumerate(rvq.layers):
            table = np.array(layer.codebook.embedding, np.float64)
            d = ((residual[:, None, :] - table[None]) ** 2).sum(-1)
            best = d.min(-1)
            chosen = d[np.arange(len(d)), codes[:, k]]
            violations += int(np.sum(chosen - best > rel * best + 1e-12))
            residual = residual - table[codes[:, k]]
    return violations


@pytest.mark.parametrize("case", ["a", "b"])  # a: stereo 24 kHz; b: mono 16 kHz, 10.6 s
def test_encode_matches_official(tok, encode_fx, case):
    audio, sr, want = encode_fx[f"audio_{case}"], int(encode_fx[f"sr_{case}"]), encode_fx[f"codes_{case}"]
    codes = tok.encode(audio, sr)
    assert codes.shape == want.shape == (-(-round(len(audio) * 24000 / sr) // 1920), 16)
    assert codes.dtype == np.int64
    flips = codes != want
    assert flips.mean() <= 1e-3, f"{flips.sum()} codes differ"
    wav = prepare_audio(audio, sr)
    latent = tok.model.encoder.embed(mx.array(wav)[None])
    assert near_tie_violations(tok, latent, want.astype(np.int64)) == 0


def test_encoder_attention_is_full_causal_past_the_configured_window(tok, encode_fx):
    """Dossier §6.10: the reference ignores Mimi's 250-frame window; case b has 266 frames."""
    enc = tok.model.encoder
    wav = mx.array(prepare_audio(encode_fx["audio_b"], int(encode_fx["sr_b"])))[None]
    want = encode_fx["latent_b"]
    got = np.array(enc.embed(wav)[0])
    tol = 1e-5 * np.abs(want).max()  # measured: ~1e-6
    assert np.abs(got - want).max() <= tol
    x = enc.encoder(wav[..., None])
    assert x.shape[1] > 250
    mask = create_causal_mask(x.shape[1], 0, window_size=250)
    for layer in enc.encoder_transformer.layers:
        x = layer(x, mask)
    windowed = np.array(enc.downsample(x)[0])
    assert np.abs(windowed - want).max() > 100 * tol
