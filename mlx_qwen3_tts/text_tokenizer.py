"""The Qwen2 byte-level BPE text tokenizer, built from `vocab.json` + `merges.txt`.

The released repos ship no `tokenizer.json`; transformers converts the slow tokenizer with its
Qwen2 converter. This builds the same pipeline with the `tokenizers` library directly. The split
regex is always Qwen2's: transformers 4.57.3 swaps in Mistral's when the official model is loaded
from a local folder (dossier §6.1), but hub-id users get Qwen2's, which the model was trained with.
"""

from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
from tokenizers.models import BPE

from . import tokens
from .errors import ModelLoadError
from .weights import read_json

QWEN2_SPLIT = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


def _read_vocab(path: Path) -> dict[str, int]:
    vocab = read_json(path)
    if not (isinstance(vocab, dict) and all(type(i) is int and i >= 0 for i in vocab.values())):
        raise ModelLoadError(f"{path} must map each token to a non-negative integer id; download "
                             "the checkpoint again.")
    return vocab


def _read_merges(path: Path, vocab: dict[str, int]) -> list[tuple[str, str]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{path} cannot be read ({e}); download the checkpoint again.") from e
    merges = []
    for number, line in enumerate(lines, 1):
        if not line or line.startswith("#version"):
            continue
        pair = line.split(" ")
        # `tokenizers` refuses a merge of (or into) a token outside the vocabulary, with a bare
        # Exception: checked here to name the line.
        if len(pair) != 2 or not all(t in vocab for t in (*pair, "".join(pair))):
            raise ModelLoadError(f"{path} line {number}: {line[:80]!r} is not a merge of two tokens of "
                                 "vocab.json into a third; download the checkpoint again.")
        merges.append((pair[0], pair[1]))
    return merges


def _added_tokens(folder: Path) -> dict[int, tuple[str, bool]]:
    """Added tokens by id from `tokenizer_config.json`, else the released set."""
    config_file = folder / "tokenizer_config.json"
    config = read_json(config_file, required=False)
    if config is not None and not isinstance(config, dict):
        raise ModelLoadError(f"{config_file} must hold a JSON object.")
    decoder = (config or {}).get("added_tokens_decoder")
    if not decoder:
        return {i: (s, i not in tokens.NOT_SPECIAL) for i, s in tokens.ADDED_TOKENS.items()}
    try:
        added = {int(i): (t["content"], t.get("special", True)) for i, t in decoder.items()}
    except (AttributeError, KeyError, TypeError, ValueError) as e:  # not {"<id>": {"content": ...}}
        raise ModelLoadError(f"{config_file}: added_tokens_decoder must map ids to objects with a "
                             f"'content' string ({type(e).__name__}: {e}).") from e
    if not all(isinstance(c, str) and c and isinstance(sp, bool) for c, sp in added.values()):
        raise ModelLoadError(f"{config_file}: added_tokens_decoder holds an entry whose 'content' is "
                             "not a non-empty string or whose 'special' is not true or false.")
    return added


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
        vocab = _read_vocab(folder / "vocab.json")
        bpe = BPE(vocab=vocab, merges=_read_merges(folder / "merges.txt", vocab), dropout=None,
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
