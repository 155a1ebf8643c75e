"""Long-text splitting and crossfades."""

import numpy as np

from mlx_qwen3_tts.synthesis import crossfade
from mlx_qwen3_tts.text_split import SPLIT_CHARS, split_text


def test_short_text_is_never_split():
    text = "One. Two! Three? " * 10
    assert len(text) <= SPLIT_CHARS and split_text(text) == [text]


def test_long_text_splits_at_sentences_within_limit():
    sentences = [f"Sentence number {i} says something moderately long here." for i in range(40)]
    text = " ".join(sentences)
    pieces = split_text(text)
    assert all(len(p) <= SPLIT_CHARS for p in pieces) and len(pieces) > 1
    assert all(p.endswith(".") for p in pieces)  # cut only at sentence ends
    assert " ".join(pieces) == text


def test_cjk_and_clause_and_word_fallbacks():
    cjk = "今天天气很好。" * 80
    assert all(len(p) <= SPLIT_CHARS and p.endswith("。") for p in split_text(cjk))
    clauses = "a clause without a full stop, " * 30
    assert all(len(p) <= SPLIT_CHARS for p in split_text(clauses))
    words = "word " * 200
    pieces = split_text(words)
    assert all(len(p) <= SPLIT_CHARS for p in pieces) and "".join(pieces).replace(" ", "") == "word" * 200


def test_unspeakable_piece_is_merged():
    text = "x" * (SPLIT_CHARS - 5) + ". " + "!!! " + "y" * 50 + "."
    assert all(any(c.isalnum() for c in p) for p in split_text(text))


def test_crossfade_preserves_length_and_is_continuous():
    a, b = np.ones(1000, np.float32), np.zeros(1000, np.float32)
    head, tail = crossfade(a, b, 100)
    joined = np.concatenate([head, tail])
    assert len(joined) == 1900
    assert np.max(np.abs(np.diff(joined))) <= 1 / 99 + 1e-6  # no step: a linear ramp


def test_packed_pieces_count_the_joining_space():
    """Two parts of 150 characters joined by a space are 301: over the limit, so two pieces."""
    assert [len(p) for p in split_text("a" * 150 + " " + "b" * 150)] == [150, 150]


def test_a_leading_unspeakable_piece_is_merged_into_the_next():
    text = "!" * 10 + ". " + "y" * 295 + ". " + "z" * 50 + "."
    pieces = split_text(text)
    assert all(any(c.isalnum() for c in p) for p in pieces) and pieces[0].startswith("!" * 10)
