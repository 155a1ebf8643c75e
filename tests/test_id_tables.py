"""The released checkpoints' id tables, held independently of both sides that use them.

`fixtures/released_ids.json` is copied by hand from the architecture dossier (which read the
released config files). The checkpoint writer (`mlx_qwen3_tts.testing`) and the library (its
loader, token constants, enums and sampler) are each checked against it, never against each
other, so one wrong table cannot pass by agreeing with itself. Entries the dossier marks
assumed or unverified are marked in the fixture; the tests below check that the library does
not depend on them being right.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES

import mlx_qwen3_tts as qt
from mlx_qwen3_tts import tokens
from mlx_qwen3_tts.sampling import MIN_NEW_TOKENS, talker_ban_mask
from mlx_qwen3_tts.testing import (
    GENERATION_CONFIG,
    VARIANTS,
    make_config,
    make_speech_tokenizer_config,
)

TABLES = json.loads((FIXTURES / "released_ids.json").read_text())


def values(table: str) -> dict:
    return TABLES[table]["values"]


def speakers_of(variant: str, table: str) -> dict:
    return values(table) if variant in TABLES[table]["variants"] else {}


def suppressed() -> np.ndarray:
    g = values("talker_generate")
    ids = np.arange(g["suppress_tokens_from"], g["suppress_tokens_to"] + 1)
    return ids[~np.isin(ids, g["suppress_tokens_except"])]


def non_dialect_languages() -> list[str]:
    return sorted(n for n in values("codec_language_id") if not n.endswith("_dialect"))


# ----------------------------------------------------------------- the fixture itself


def test_every_table_is_tagged_and_every_mark_names_an_entry():
    tags = TABLES["tags"]
    tables = [k for k in TABLES if k not in ("about", "tags", "marks")]
    assert all(TABLES[t]["tag"] in tags and TABLES[t]["dossier"] for t in tables)
    for mark in TABLES["marks"]:
        assert mark["status"] in ("assumed", "unverified") and mark["dossier"]
        table, _, key = mark["entry"].partition(".")
        assert table in tables and (not key or key in values(table)), mark
    assert {m["entry"] for m in TABLES["marks"]} == {
        "spk_id", "spk_is_dialect", "codec_language_id.beijing_dialect",
        "codec_language_id.sichuan_dialect",
    }


# ----------------------------------------------------------------- the checkpoint writer


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("size", ["tiny-0.6b", "tiny-1.7b", "tiny-q", "0.6b", "1.7b"])
def test_writer_uses_the_released_tables(size, variant):
    config = make_config(size, variant)
    assert {k: config[k] for k in values("config")} == values("config")
    size_tag = values("tts_model_size")["1.7b" if "1.7b" in size else "0.6b"]
    assert config["tts_model_size"] == size_tag and config["tts_model_type"] == variant
    talker = config["talker_config"]
    assert {k: talker[k] for k in values("talker_config")} == values("talker_config")
    cp = talker["code_predictor_config"]
    assert {k: cp[k] for k in values("code_predictor_config")} == values("code_predictor_config")
    assert talker["codec_language_id"] == values("codec_language_id")
    assert talker["spk_id"] == speakers_of(variant, "spk_id")
    assert talker["spk_is_dialect"] == speakers_of(variant, "spk_is_dialect")
    assert ("speaker_encoder_config" in config) == (variant == "base")


@pytest.mark.parametrize("size", ["tiny-0.6b", "0.6b"])
def test_writer_generation_and_codec_configs(size):
    assert {k: GENERATION_CONFIG[k] for k in values("generation_config")} == values("generation_config")
    codec = make_speech_tokenizer_config(size)
    want = values("speech_tokenizer")
    for key in ("input_sample_rate", "output_sample_rate", "encode_downsample_rate",
                "decode_upsample_rate", "encoder_valid_num_quantizers"):
        assert codec[key] == want[key]
    assert codec["decoder_config"]["codebook_size"] == want["codebook_size"]
    assert codec["decoder_config"]["num_quantizers"] == want["num_quantizers"]
    assert codec["encoder_config"]["codebook_size"] == want["codebook_size"]


# ----------------------------------------------------------------- what the library reads


@pytest.mark.parametrize("size,variant", [
    ("tiny-0.6b", "custom_voice"), ("tiny-1.7b", "voice_design"), ("tiny-1.7b", "base"),
])
def test_loader_reads_the_released_tables(tts, size, variant):
    model = tts(size, variant)
    cfg = model.config
    top = values("config")
    assert (cfg.tts_pad_token_id, cfg.tts_bos_token_id, cfg.tts_eos_token_id) == (
        top["tts_pad_token_id"], top["tts_bos_token_id"], top["tts_eos_token_id"])
    assert cfg.tts_model_type == variant
    talker = cfg.talker_config
    assert {k: getattr(talker, k) for k in values("talker_config")} == values("talker_config")
    cp = talker.code_predictor_config
    assert cp.vocab_size == values("code_predictor_config")["vocab_size"]
    assert talker.codec_language_id == values("codec_language_id")
    assert talker.spk_id == speakers_of(variant, "spk_id")
    assert talker.spk_is_dialect == speakers_of(variant, "spk_is_dialect")
    assert model.speakers == sorted(speakers_of(variant, "spk_id"))
    assert model.languages == ["auto"] + non_dialect_languages()
    # Sampling defaults from generation_config.json (frames = max_new_tokens - 1, §3.5).
    gen = values("generation_config")
    d = model.engine.builder.defaults  # the sampling defaults read from generation_config.json
    assert (d.talker.temperature, d.talker.top_k, d.talker.top_p) == (
        gen["temperature"], gen["top_k"], gen["top_p"])
    assert (d.code_predictor.temperature, d.code_predictor.top_k, d.code_predictor.top_p) == (
        gen["subtalker_temperature"], gen["subtalker_top_k"], gen["subtalker_top_p"])
    assert d.repetition_penalty == gen["repetition_penalty"]
    assert d.max_frames == gen["max_new_tokens"] - 1
    codec = values("speech_tokenizer")
    st = model.speech_tokenizer
    assert (st.sample_rate, st.input_sample_rate, st.samples_per_frame) == (
        codec["output_sample_rate"], codec["input_sample_rate"], codec["decode_upsample_rate"])
    assert (st.num_codebooks, st.codebook_size) == (codec["num_quantizers"], codec["codebook_size"])


def test_library_constants_are_the_released_ids():
    text = values("text_tokens")
    for content, token_id in text.items():
        if content.startswith("<"):
            assert tokens.ADDED_TOKENS[token_id] == content
    assert (tokens.ENDOFTEXT, tokens.IM_START, tokens.IM_END) == (
        text["<|endoftext|>"], text["<|im_start|>"], text["<|im_end|>"])
    assert (tokens.AUDIO_START, tokens.AUDIO_END, tokens.AUDIO_PAD) == (
        text["<|audio_start|>"], text["<|audio_end|>"], text["<|audio_pad|>"])
    assert (tokens.TTS_PAD, tokens.TTS_BOS, tokens.TTS_EOS, tokens.TTS_BOS_SINGLE) == (
        text["<tts_pad>"], text["<tts_text_bos>"], text["<tts_text_eod>"], text["<tts_text_bos_single>"])
    assert (tokens.ASSISTANT, tokens.NEWLINE) == (text["assistant"], text["\n"])
    top = values("config")
    assert (tokens.IM_START, tokens.IM_END, tokens.ASSISTANT) == (
        top["im_start_token_id"], top["im_end_token_id"], top["assistant_token_id"])
    assert (tokens.TTS_PAD, tokens.TTS_BOS, tokens.TTS_EOS) == (
        top["tts_pad_token_id"], top["tts_bos_token_id"], top["tts_eos_token_id"])
    codec = values("speech_tokenizer")
    assert (tokens.SAMPLE_RATE, tokens.SAMPLES_PER_FRAME, tokens.CODEBOOK_SIZE) == (
        codec["output_sample_rate"], codec["decode_upsample_rate"], codec["codebook_size"])
    assert set(qt.Language.names()) == {"auto", *non_dialect_languages()}
    assert set(qt.Speaker.names()) == set(values("spk_id"))


def test_sampler_constants_are_the_official_generate_settings():
    g = values("talker_generate")
    vocab = values("talker_config")["vocab_size"]
    assert MIN_NEW_TOKENS == g["min_new_tokens"]
    ban = np.flatnonzero(np.array(talker_ban_mask(vocab, g["eos_token_id"])))
    np.testing.assert_array_equal(ban, suppressed())


# ----------------------------------------------------------------- marked entries


def _copy_with_config(folder: Path, out: Path, edit) -> Path:
    """`folder` with an edited config.json; the other files are links to the originals."""
    out.mkdir()
    for item in folder.iterdir():
        if item.name != "config.json":
            (out / item.name).symlink_to(item)
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (out / "config.json").write_text(json.dumps(config))
    return out


def test_speakers_are_read_from_the_checkpoint(checkpoint, tmp_path):
    """0.6B speakers are only assumed equal to 1.7B's: the library takes a checkpoint's own
    `spk_id` / `spk_is_dialect` (as a fine-tune writes them, dossier §1.1), none built in."""
    def fine_tune(config):
        config["talker_config"]["spk_id"] = {"my_voice": 3000}
        config["talker_config"]["spk_is_dialect"] = {"my_voice": False}

    folder = _copy_with_config(checkpoint("tiny-0.6b", "custom_voice"), tmp_path / "ft", fine_tune)
    model = qt.load(folder, dtype="float32")
    assert model.speakers == ["my_voice"]
    result = model.generate("hello.", speaker="my_voice", max_frames=2, seed=0)
    assert result.frames == 2
    with pytest.raises(qt.UnknownSpeakerError):
        model.generate("hello.", speaker="vivian", max_frames=2)


def test_base_checkpoint_without_dialect_languages_loads(checkpoint, tmp_path):
    """A Base config may lack the two dialect languages (unverified): it loads and clones."""
    def drop_dialects(config):
        ids = config["talker_config"]["codec_language_id"]
        for name in ("beijing_dialect", "sichuan_dialect"):
            del ids[name]

    folder = _copy_with_config(checkpoint("tiny-1.7b", "base"), tmp_path / "nd", drop_dialects)
    model = qt.load(folder, dtype="float32")
    assert model.languages == ["auto"] + non_dialect_languages()
    hidden = model.config.talker_config.hidden_size
    voice = qt.VoicePrompt(np.full(hidden, 0.1, np.float32))
    result = model.generate("hello.", voice=voice, language="english", max_frames=2, seed=0)
    assert result.frames == 2 and np.isfinite(result.audio).all()
