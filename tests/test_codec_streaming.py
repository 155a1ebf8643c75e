"""Streaming decode: pieces of any size give the single-pass ("exact") audio with bounded state."""

import json

import mlx.core as mx
import numpy as np
import pytest

from mlx_qwen3_tts.models.codec import SpeechTokenizerConfig, SpeechTokenizerModel
from mlx_qwen3_tts.models.codec.layers import state_arrays
from mlx_qwen3_tts.speech_tokenizer import SpeechTokenizer
from mlx_qwen3_tts.testing import make_speech_tokenizer_config, write_speech_tokenizer


@pytest.fixture(scope="module")
def tok(tmp_path_factory) -> SpeechTokenizer:
    return SpeechTokenizer.from_pretrained(
        write_speech_tokenizer(tmp_path_factory.mktemp("codec"), "tiny-0.6b", seed=0)
    )


def codes_of(frames: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2048, (frames, 16))


def single_pass(tok: SpeechTokenizer, codes: np.ndarray) -> np.ndarray:
    return np.array(tok.model.decoder(mx.array(codes)[None])[0])


def rel_err(got: np.ndarray, want: np.ndarray) -> float:
    assert got.shape == want.shape
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.mark.parametrize("piece", [1, 3, 7])
def test_streaming_in_pieces_equals_single_pass(tok, piece):
    codes = codes_of(40)  # 5x the tiny window: the KV window and every conv context are exercised
    want = single_pass(tok, codes)
    stream = tok.stream_decoder()
    got = np.concatenate([stream.decode_step(codes[i : i + piece]) for i in range(0, 40, piece)])
    assert got.dtype == np.float32 and stream.frames == 40
    assert rel_err(got, want) <= 1e-5
    assert rel_err(tok.decode(codes, mode="exact"), want) <= 1e-5


def test_rope_positions_keep_counting_and_reset_starts_over(tok):
    codes = codes_of(12, seed=1)
    stream = tok.stream_decoder()
    first = np.concatenate([stream.decode_step(codes[:5]), stream.decode_step(codes[5:])])
    caches = stream._state["pre_transformer"]
    assert all(c.offset == 12 for c in caches)  # positions continue, as in one pass
    assert all(c.keys.shape[2] == tok.config.decoder_config.sliding_window - 1 for c in caches)
    assert stream.decode_step(np.zeros((0, 16), np.int64)).shape == (0,)
    stream.reset_state()
    again = np.concatenate([stream.decode_step(codes[:5]), stream.decode_step(codes[5:])])
    np.testing.assert_array_equal(again, first)


def test_exact_decode_past_a_chunk_is_the_single_pass(tok, tmp_path):
    """`decode(mode="exact")` runs 300 frames at a time; with the released 72-frame window the
    KV cache then carries attention across the chunk join."""
    folder = write_speech_tokenizer(tmp_path / "codec", "tiny-0.6b", seed=0)
    config = json.loads((folder / "config.json").read_text())
    config["decoder_config"]["sliding_window"] = 72
    (folder / "config.json").write_text(json.dumps(config))
    tok72 = SpeechTokenizer.from_pretrained(folder)
    codes = codes_of(310, seed=2)
    assert rel_err(tok72.decode(codes, mode="exact"), single_pass(tok72, codes)) <= 1e-5


def fast_tokenizer() -> SpeechTokenizer:
    """The tiny codec with 4 instead of 1920 samples per frame, so 10,000 frames run in seconds.

    It keeps every kind of state: conv contexts, transposed-conv tails (k=4 / stride 2 and k=2 /
    stride 1 blocks) and the transformer's KV window.
    """
    config = make_speech_tokenizer_config("tiny-0.6b")
    config["decoder_config"].update(upsample_rates=[2, 1, 1, 1], upsampling_ratios=[1, 2],
                                    decoder_dim=16)
    config["decode_upsample_rate"] = 4
    model = SpeechTokenizerModel(SpeechTokenizerConfig.from_dict(config))
    mx.eval(model.parameters())
    return SpeechTokenizer(model)


def test_streaming_memory_is_bounded_over_10000_frames():
    tok = fast_tokenizer()
    stream = tok.stream_decoder()
    rng = np.random.default_rng(3)
    active, state_bytes = [], []
    for _ in range(200):  # 10,000 frames in pieces of 50
        wav = stream.decode_step(rng.integers(0, 2048, (50, 16)))
        assert wav.shape == (50 * 4,) and np.isfinite(wav).all()
        active.append(mx.get_active_memory())
        state_bytes.append(sum(a.nbytes for a in state_arrays(stream._state)))
    assert stream.frames == 10_000
    assert len(set(state_bytes[2:])) == 1  # the state's size is fixed once its windows are full
    assert max(active[100:]) <= max(active[2:20]) + 64 * 1024
