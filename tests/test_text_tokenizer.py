"""The Qwen2 byte-level BPE against transformers' Qwen2TokenizerFast on the same files."""

import hashlib

import pytest
from conftest import load_fixture

from mlx_qwen3_tts import tokens
from mlx_qwen3_tts.errors import ModelLoadError
from mlx_qwen3_tts.text_tokenizer import TextTokenizer


@pytest.fixture(scope="module")
def fixture_and_tokenizer(checkpoint):
    folder = checkpoint("tiny-0.6b", "custom_voice", seed=0)
    fx = load_fixture("text_tokenizer.npz")
    digest = "".join(hashlib.sha256((folder / n).read_bytes()).hexdigest()
                     for n in ("vocab.json", "merges.txt"))
    assert digest == str(fx["sha256"]), "regenerate fixtures: the tokenizer writer changed"
    return fx, TextTokenizer.from_folder(folder)


def test_ids_match_transformers_qwen2(fixture_and_tokenizer):
    fx, tok = fixture_and_tokenizer
    for i, text in enumerate(fx["texts"]):
        assert tok.encode(str(text)) == fx[f"ids_{i}"].tolist(), text


def test_qwen2_regex_not_mistral(fixture_and_tokenizer):
    """transformers 4.57.3 swaps in Mistral's regex for local folders (dossier §6.1); we never do."""
    fx, tok = fixture_and_tokenizer
    i = [str(t) for t in fx["texts"]].index(" iPhone McDonald camelCaseWord")
    assert fx[f"ids_{i}"].tolist() != fx[f"mistral_ids_{i}"].tolist()
    assert tok.encode(" iPhone McDonald camelCaseWord") == fx[f"ids_{i}"].tolist()
    # The regexes split only mixed-case words differently: every other text gets Mistral's ids too.
    for j, text in enumerate(fx["texts"]):
        if j != i:
            assert tok.encode(str(text)) == fx[f"mistral_ids_{j}"].tolist(), text


def test_special_tokens_at_released_ids(fixture_and_tokenizer):
    _, tok = fixture_and_tokenizer
    for token_id, content in tokens.ADDED_TOKENS.items():
        assert tok.encode(content) == [token_id]
    template = "<|im_start|>assistant\nHi<|im_end|>\n<|im_start|>assistant\n"
    ids = tok.encode(template)
    assert ids[:3] == [tokens.IM_START, tokens.ASSISTANT, tokens.NEWLINE]
    assert ids[-5:] == [tokens.IM_END, tokens.NEWLINE, tokens.IM_START, tokens.ASSISTANT, tokens.NEWLINE]


def test_decode_round_trips(fixture_and_tokenizer):
    fx, tok = fixture_and_tokenizer
    for text in fx["texts"]:
        # NFC normalisation is the only change the tokenizer may make.
        assert tok.decode(tok.encode(str(text))) == str(text)


def test_missing_tokenizer_files_raise(tmp_path):
    with pytest.raises(ModelLoadError, match="merges.txt"):
        (tmp_path / "vocab.json").write_text("{}")
        TextTokenizer.from_folder(tmp_path)
