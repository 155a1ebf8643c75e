"""Long texts through the public API: the joined audio, by value, not only its length.

A text over 300 characters is spoken in pieces (`text_split.split_text`), piece i with seed + i,
and the pieces' audio is joined with a 20 ms linear crossfade. The one-shot result must equal
that join computed here from independently generated pieces, and the streamed chunks must add
up to the same samples.
"""

import numpy as np
import pytest

import mlx_qwen3_tts as qt
from mlx_qwen3_tts.text_split import SPLIT_CHARS, split_text

# Each piece stops after FRAMES frames (`max_frames` would cap the whole call): the runaway guard
# ends it, with a warning each time.
pytestmark = pytest.mark.filterwarnings("ignore::mlx_qwen3_tts.RunawayWarning")

SEED = 3
FRAMES = 5  # per piece: 9600 samples, far more than the 480 of a crossfade
PIECE = qt.RunawayGuard(base_frames=FRAMES, frames_per_token=0)
FADE = 480  # 20 ms at 24 kHz
TEXT = " ".join(f"sentence number {i} says something about the weather today." for i in range(14))


def reference_audio(seconds: float = 1.0, sr: int = 24000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 150 * t) + 0.05 * np.sin(2 * np.pi * 900 * t)).astype(np.float32)


@pytest.fixture(scope="module", params=["custom_voice", "clone_in_context"])
def voice(request, tts):
    """(model, voice kwargs): a named speaker, and an in-context clone (its reference codes are
    decoded with every piece)."""
    if request.param == "custom_voice":
        return tts("tiny-0.6b", "custom_voice"), dict(speaker="vivian", language="english")
    model = tts("tiny-1.7b", "base")
    prompt = model.create_voice_prompt((reference_audio(), 24000), ref_text="this is my voice.")
    return model, dict(voice=prompt, language="english")


def crossfade_join(pieces: list[np.ndarray], n: int) -> np.ndarray:
    """Each next piece's first n samples blended with the previous tail's last n: weight of the
    new piece k/(n-1) at sample k (0 to 1, equal gain), so the total length drops n per join."""
    out = pieces[0].astype(np.float64)
    w = np.arange(n) / (n - 1)
    for piece in pieces[1:]:
        piece = piece.astype(np.float64)
        blend = out[-n:] * (1 - w) + piece[:n] * w
        out = np.concatenate([out[:-n], blend, piece[n:]])
    return out


def test_text_is_split_into_several_pieces():
    pieces = split_text(TEXT)
    assert len(TEXT) > SPLIT_CHARS and len(pieces) >= 3
    assert all(len(p) <= SPLIT_CHARS for p in pieces) and " ".join(pieces) == TEXT


def test_one_shot_equals_crossfade_of_independent_pieces(voice):
    model, kwargs = voice
    one = model.generate(TEXT, seed=SEED, runaway_guard=PIECE, **kwargs)
    pieces = [model.generate(p, seed=SEED + i, split=False, runaway_guard=PIECE, **kwargs)
              for i, p in enumerate(split_text(TEXT))]
    assert one.seed == SEED and one.frames == FRAMES * len(pieces)
    np.testing.assert_array_equal(one.codes, np.concatenate([p.codes for p in pieces]))
    # Pieces really differ (else a join could not show): distinct seeds, distinct texts.
    assert not np.array_equal(pieces[0].codes, pieces[1].codes)
    expected = crossfade_join([p.audio for p in pieces], FADE)
    assert one.audio.shape == expected.shape
    np.testing.assert_allclose(one.audio, expected, rtol=0, atol=1e-5)


def test_stream_chunks_join_to_the_one_shot_audio(voice):
    model, kwargs = voice
    one = model.generate(TEXT, seed=SEED, runaway_guard=PIECE, **kwargs)
    chunks = list(model.stream_generate(TEXT, seed=SEED, runaway_guard=PIECE, chunk_frames=3,
                                        first_chunk_frames=2, **kwargs))
    assert chunks[-1].is_final and chunks[-1].finish_reason == "runaway" and chunks[-1].seed == SEED
    assert not any(c.is_final for c in chunks[:-1])
    assert sum(c.frames for c in chunks) == chunks[-1].total_frames == one.frames
    joined = np.concatenate([c.audio for c in chunks])
    assert joined.shape == one.audio.shape
    np.testing.assert_allclose(joined, one.audio, rtol=0, atol=1e-5)
