"""The Qwen2 byte-level BPE text tokenizer, built from `vocab.json` + `merges.txt`.

The released repos ship no `tokenizer.json`; transformers converts the slow tokenizer with its
Qwen2 converter. This builds the same pipeline with the `tokenizers` library directly. The split
regex is always Qwen2's: transformers 4.57.3 swaps in Mistral's when the official model is loaded
from a local folder (dossier §6.1), but hub-id users get Qwen2's, which the model was trained with.
"""

import json
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
from tokenizers.models import BPE

from . import tokens
from .errors import ModelLoadError

QWEN2_SPLIT = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


def _read_merges(path: Path) -> list[tuple[str, str]]:
    merges = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#version"):
            continue
        a, b = line.split(" ")
        merges.append((a, b))
    return merges


def _added_tokens(folder: Path) -> dict[int, tuple[str, bool]]:
    """Added tokens by id from `tokenizer_config.json`, else the released set."""
    config_file = folder / "tokenizer_config.json"
    if config_file.exists():
        decoder = json.loads(config_file.read_text(encoding="utf-8")).get("added_tokens_decoder")
        if decoder:
            return {int(i): (t["content"], t.get("special", True)) for i, t in decoder.items()}
    return {i: (s, i not in tokens.NOT_SPECIAL) for i, s in tokens.ADDED_TOKENS.items()}


class TextTokenizer:
    """Text -> token ids for the talker's text embedding."""

    def __init__(self, tokenizer: Tokenizer):
        self._tokenizer = tokenizer

    @classmethod
    def from_folder(cls, folder: str | Path) -> "TextTokenizer":
        folder = Path(folder)
        for name in ("vocab.json", "merges.txt"):
            if not (folder / name).is_file():
                raise ModelLoadError(f"{folder} lacks the text tokenizer file {name}.")
        vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        bpe = BPE(vocab=vocab, merges=_read_merges(folder / "merges.txt"), dropout=None,
                  unk_token=None, continuing_subword_prefix="", end_of_word_suffix="",
                  fuse_unk=False, byte_fallback=False)
        tok = Tokenizer(bpe)
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
        tok.decoder = decoders.ByteLevel()
        for token_id, (content, special) in sorted(_added_tokens(folder).items()):
            added = AddedToken(content, special=special, normalized=False)
            tok.add_special_tokens([added]) if special else tok.add_tokens([added])
            if tok.token_to_id(content) != token_id:
                raise ModelLoadError(
                    f"{folder}: added token {content!r} got id {tok.token_to_id(content)}, "
                    f"expected {token_id}; vocab.json and tokenizer_config.json disagree."
                )
        return cls(tok)

    def encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def _split(self, text: str) -> tuple[str, list[tuple[str, tuple[int, int]]]]:
        """NFC, then the Qwen2 split: the normalized text and its pieces with their offsets."""
        normalized = self._tokenizer.normalizer.normalize_str(text)
        return normalized, self._tokenizer.pre_tokenizer.pre_tokenize_str(normalized)

    def pre_tokens(self, text: str) -> list[str]:
        """The byte-level pieces BPE runs on, after NFC and the Qwen2 split."""
        return [p for p, _ in self._split(text)[1]]

    def encode_pre_tokens(self, pieces: list[str]) -> list[int]:
        """BPE ids of pieces from `pre_tokens`: each piece's ids never depend on what follows."""
        return [t.id for piece in pieces for t in self._tokenizer.model.tokenize(piece)]

    def encode_literal(self, text: str) -> list[int]:
        """Ids of `text` as plain text: a control-token string in it (`<|im_start|>`, ...) is
        spelled out as ordinary tokens, never turned into the control id."""
        return self.encode_pre_tokens(self.pre_tokens(text))

    def encode_stable(self, text: str) -> tuple[list[int], str]:
        """Ids of the pre-tokens of `text` that text appended later cannot change (all but the
        last), and the normalized rest, to be tokenized again with what follows it."""
        normalized, pieces = self._split(text)
        if len(pieces) <= 1:
            return [], normalized
        rest = pieces[-1][1][0]
        return self.encode_pre_tokens([p for p, _ in pieces[:-1]]), normalized[rest:]

    def decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=False)

    def token_to_id(self, token: str) -> int | None:
        return self._tokenizer.token_to_id(token)
