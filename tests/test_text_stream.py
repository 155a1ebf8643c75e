"""Text streamed in: audio starts before the text ends and equals the all-at-once stream."""

import numpy as np
import pytest

import mlx_qwen3_tts as qt

TEXT = "Streaming text in, one small piece at a time, as a language model writes it."


@pytest.fixture(scope="module")
def cv(checkpoint):
    return qt.load(checkpoint("tiny-0.6b", "custom_voice"), dtype="float32")


def pieces(text: str, size: int = 5) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def run_session(tts, parts, **kwargs):
    chunks, fed_at_first_audio = [], None
    with tts.open_stream(**kwargs) as s:
        for i, part in enumerate(parts):
            s.feed(part)
            for chunk in s.audio():
                if fed_at_first_audio is None and chunk.audio.size:
                    fed_at_first_audio = i + 1
                chunks.append(chunk)
        chunks += list(s.finish())
    return chunks, fed_at_first_audio


@pytest.mark.parametrize("lookahead", [0, 2, 5])
def test_first_audio_before_last_piece_and_equal_to_all_at_once(cv, lookahead):
    kwargs = dict(speaker="ryan", language="english", seed=5, max_frames=40, lookahead=lookahead)
    parts = pieces(TEXT)
    chunks, first = run_session(cv, parts, **kwargs)
    assert first is not None and first < len(parts)
    streamed = np.concatenate([c.audio for c in chunks])
    kwargs.pop("lookahead")
    reference = list(cv.stream_generate(TEXT, non_streaming_mode=False, **kwargs))
    expected = np.concatenate([c.audio for c in reference])
    assert chunks[-1].is_final and chunks[-1].total_frames == reference[-1].total_frames
    np.testing.assert_allclose(streamed, expected, atol=1e-5)


def test_all_text_up_front(cv):
    kwargs = dict(speaker="vivian", seed=1, max_frames=20)
    with cv.open_stream(**kwargs) as s:
        s.feed(TEXT)
        chunks = list(s.audio()) + list(s.finish())
    one = cv.generate(TEXT, non_streaming_mode=False, **kwargs)
    np.testing.assert_allclose(np.concatenate([c.audio for c in chunks]), one.audio, atol=1e-5)


def test_waits_instead_of_padding(cv):
    """With too few tokens for the lookahead, no frame is generated yet."""
    with cv.open_stream(speaker="vivian", seed=0, lookahead=4, max_frames=10) as s:
        s.feed("Hi")
        assert list(s.audio()) == []
        s.feed(" there")
        assert all(c.frames == 0 for c in s.audio())


def test_stream_errors(cv, checkpoint):
    with pytest.raises(qt.ModeError, match="streaming-text layout"):
        cv.open_stream(speaker="vivian", non_streaming_mode=True)
    for fed in ([], ["...", " !?"]):  # as generate("...") refuses it: it was spoken
        with cv.open_stream(speaker="vivian") as s, pytest.raises(qt.EmptyTextError, match="no letters"):
            for text in fed:
                s.feed(text)
            list(s.finish())
    with cv.open_stream(speaker="vivian", max_frames=2) as s:
        with pytest.raises(qt.SynthesisError, match="`text` must be a str"):
            s.feed(None)
        s.feed("hello")
        assert list(s.finish())[-1].is_final
        assert list(s.finish()) == []  # it gave its final chunk again
        with pytest.raises(qt.SynthesisError, match="after finish"):
            s.feed("more")
    with pytest.raises(qt.UnknownSpeakerError):
        with cv.open_stream(speaker="nobody") as s:
            s.feed("hello there friend, how are you")
            list(s.finish())


def test_closing_a_stream_while_its_audio_is_read_ends_the_reading(cv):
    """close() dropped the frame loop under a reader waiting at a yield, which then called
    `None.step()` (an AttributeError)."""
    s = cv.open_stream(speaker="vivian", first_chunk_frames=1, chunk_frames=1, max_frames=30)
    s.feed("a long text, with many words to speak one after the other, so there is audio to read")
    audio = s.audio()
    assert next(audio).frames == 1
    s.close()
    assert list(audio) == [] and list(s.finish()) == []
