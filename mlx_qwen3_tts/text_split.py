"""Splitting long text into pieces the model speaks well (`synthesis.Joiner` joins their audio).

Texts up to `SPLIT_CHARS` characters are never split, so they stay identical to the official
model's output. Longer ones are cut at sentence ends, then clause marks, then spaces, into pieces
of at most `SPLIT_CHARS` characters.
"""

import re
import unicodedata

SPLIT_CHARS = 300

# Sentence ends (Latin and CJK), then clause marks; each keeps its punctuation and what follows.
_SENTENCE = re.compile(r"(?<=[.!?…。！？])[\"'”’)\]]*\s+|(?<=[。！？])")
_CLAUSE = re.compile(r"(?<=[,;:，；：、—])\s*")


def _pack(parts: list[str], limit: int) -> list[str]:
    """Greedily join consecutive parts while they fit in `limit` characters."""
    pieces: list[str] = []
    for part in parts:
        if pieces and len(pieces[-1]) + 1 + len(part) <= limit:
            pieces[-1] = f"{pieces[-1]} {part}"
        else:
            pieces.append(part)
    return pieces


def _split(text: str, limit: int, patterns: list[re.Pattern]) -> list[str]:
    if len(text) <= limit:
        return [text]
    if not patterns:  # no boundary left: cut at spaces, else hard at the limit
        words = text.split()
        if len(words) > 1 and max(len(w) for w in words) <= limit:
            return _pack(words, limit)
        return [text[i : i + limit] for i in range(0, len(text), limit)]
    parts = [p.strip() for p in patterns[0].split(text) if p.strip()]
    out: list[str] = []
    for part in parts:
        out += _split(part, limit, patterns[1:])
    return _pack(out, limit)


def has_words(text: str) -> bool:
    """Whether `text` has a letter or digit to speak (punctuation and symbols alone do not)."""
    return any(unicodedata.category(c)[0] in "LN" for c in text)


def split_text(text: str, limit: int = SPLIT_CHARS) -> list[str]:
    """Pieces of at most `limit` characters, cut at the strongest boundary available.

    A piece with nothing to say (only punctuation, say) is merged into its neighbour.
    """
    if len(text) <= limit:
        return [text]
    pieces: list[str] = []
    for piece in _split(text.strip(), limit, [_SENTENCE, _CLAUSE]):
        if pieces and (not has_words(piece) or not has_words(pieces[-1])):
            pieces[-1] = f"{pieces[-1]} {piece}"
        else:
            pieces.append(piece)
    return pieces
