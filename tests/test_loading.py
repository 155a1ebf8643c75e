"""Checkpoint loading: every variant, strictness, typed errors, hub ids, sanitize, the writer."""

import json
import shutil

import mlx.core as mx
import numpy as np
import pytest
from conftest import read_weights
from mlx.utils import tree_flatten

import mlx_qwen3_tts as qt
from mlx_qwen3_tts import loading
from mlx_qwen3_tts.errors import ModelLoadError
from mlx_qwen3_tts.models.qwen3_tts import Model, Qwen3TTSConfig
from mlx_qwen3_tts.testing import make_config, talker_layout, write_checkpoint


def copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def edit_config(folder, edit):
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))


def edit_weights(folder, edit):
    weights = read_weights(folder / "model.safetensors")
    edit(weights)
    mx.save_safetensors(str(folder / "model.safetensors"), weights, metadata={"format": "pt"})


@pytest.mark.parametrize("size", ["tiny-0.6b", "tiny-1.7b"])
@pytest.mark.parametrize("variant", ["custom_voice", "voice_design", "base"])
def test_tiny_checkpoints_load(checkpoint, size, variant):
    tts = qt.load(checkpoint(size, variant), device="cpu")
    assert tts.model_type == variant
    assert ("speaker_encoder" in tts.model) == (variant == "base")
    # On the CPU the default computes in float32 (the files are bf16, as released); on a GPU it
    # stays as stored. The speaker encoder is float32 either way.
    assert tts.model.talker.codec_head.weight.dtype == mx.float32
    assert tts.model.stored_dtype == mx.bfloat16
    assert tts.policy == qt.ComputePolicy.choose(mx.cpu)
    if variant == "base":
        assert all(v.dtype == mx.float32 for _, v in tree_flatten(tts.model.speaker_encoder.parameters()))
    assert tts.speakers == (sorted(["vivian", "serena", "uncle_fu", "dylan", "eric", "ryan", "aiden",
                                    "ono_anna", "sohee"]) if variant == "custom_voice" else [])
    assert tts.languages[0] == "auto" and len(tts.languages) == 11
    assert tts.sample_rate == 24000
    assert tts.engine.builder.defaults.max_frames == 8192 - 1


@pytest.mark.parametrize(
    "size,variant,millions",
    # Dossier §1.5: 905.8 M (0.6B) and 1916.7 M (1.7B) without speaker encoder; +8.9 M / +12.0 M.
    [("0.6b", "custom_voice", 905.8), ("0.6b", "base", 914.7), ("1.7b", "voice_design", 1916.7),
     ("1.7b", "base", 1928.7)],
)
def test_full_size_parameter_counts(size, variant, millions):
    config = make_config(size, variant)
    model = Model(Qwen3TTSConfig.from_dict(config))  # parameters stay lazy: nothing is allocated
    ours = sum(v.size for _, v in tree_flatten(model.parameters()))
    written = sum(int(np.prod(s)) for _, s in talker_layout(config))
    assert abs(ours / 1e6 - millions) < 0.1
    if variant != "base":
        assert ours == written


def test_sanitize_is_idempotent(checkpoint):
    folder = checkpoint("tiny-1.7b", "base")
    model = loading.load_model(folder)
    once = model.sanitize(mx.load(str(folder / "model.safetensors")))
    twice = model.sanitize(once)
    assert once.keys() == twice.keys()
    assert all(mx.array_equal(once[k], twice[k]) for k in once)
    # Something did change: the speaker encoder's convolutions are channels-last now.
    raw = mx.load(str(folder / "model.safetensors"))
    assert raw["speaker_encoder.fc.weight"].shape != once["speaker_encoder.fc.weight"].shape


def test_writer_is_deterministic(tmp_path, checkpoint):
    a = write_checkpoint(tmp_path / "a", "tiny-0.6b", "custom_voice", seed=3)
    b = write_checkpoint(tmp_path / "b", "tiny-0.6b", "custom_voice", seed=3)
    c = write_checkpoint(tmp_path / "c", "tiny-0.6b", "custom_voice", seed=4)
    for name in ("model.safetensors", "speech_tokenizer/model.safetensors", "vocab.json",
                 "config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()


def test_eos_scale_scales_only_the_eos_row(tmp_path):
    a = mx.load(str(write_checkpoint(tmp_path / "a", eos_scale=1.0) / "model.safetensors"))
    b = mx.load(str(write_checkpoint(tmp_path / "b", eos_scale=8.0) / "model.safetensors"))
    wa, wb = a["talker.codec_head.weight"], b["talker.codec_head.weight"]
    assert mx.array_equal(wa[:2150], wb[:2150]) and mx.array_equal(wa[2151:], wb[2151:])
    np.testing.assert_allclose(np.array(wb[2150].astype(mx.float32)),
                               8 * np.array(wa[2150].astype(mx.float32)), rtol=1e-2)


# --------------------------------------------------------------------------- bad checkpoints


def test_missing_config_field_is_named(tmp_path, checkpoint):
    folder = copy(checkpoint(), tmp_path / "ck")
    edit_config(folder, lambda c: c["talker_config"].pop("num_code_groups"))
    with pytest.raises(ModelLoadError, match=r"talker_config.*num_code_groups"):
        qt.load(folder)


def test_missing_nested_predictor_field_is_named(tmp_path, checkpoint):
    folder = copy(checkpoint(), tmp_path / "ck")
    edit_config(folder, lambda c: c["talker_config"]["code_predictor_config"].pop("vocab_size"))
    with pytest.raises(ModelLoadError, match=r"code_predictor_config.*vocab_size"):
        qt.load(folder)


def test_missing_tensor_is_named(tmp_path, checkpoint):
    folder = copy(checkpoint(), tmp_path / "ck")
    edit_weights(folder, lambda w: w.pop("talker.model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(ModelLoadError, match=r"missing tensors: talker\.model\.layers\.1\.mlp\.up_proj"):
        qt.load(folder)


def test_unexpected_tensor_is_named(tmp_path, checkpoint):
    folder = copy(checkpoint(), tmp_path / "ck")
    edit_weights(folder, lambda w: w.update({"talker.model.extra.weight": mx.zeros((2,))}))
    with pytest.raises(ModelLoadError, match=r"unexpected tensors: talker\.model\.extra\.weight"):
        qt.load(folder)


def test_wrong_shape_is_named(tmp_path, checkpoint):
    folder = copy(checkpoint(), tmp_path / "ck")
    edit_weights(folder, lambda w: w.update({"talker.codec_head.weight": mx.zeros((3072, 7))}))
    with pytest.raises(ModelLoadError, match=r"wrong shapes: talker\.codec_head\.weight \(3072, 7\)"):
        qt.load(folder)


def test_corrupt_safetensors(tmp_path, checkpoint):
    folder = copy(checkpoint(), tmp_path / "ck")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        qt.load(folder)


def test_missing_speech_tokenizer(tmp_path, checkpoint):
    folder = copy(checkpoint(), tmp_path / "ck")
    shutil.rmtree(folder / "speech_tokenizer")
    with pytest.raises(ModelLoadError, match="speech_tokenizer"):
        qt.load(folder)


def test_other_model_family(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    with pytest.raises(ModelLoadError, match="not a Qwen3-TTS checkpoint"):
        qt.load(tmp_path)


def test_unreleased_25hz_tokenizer_type(tmp_path, checkpoint):
    folder = copy(checkpoint(), tmp_path / "ck")
    edit_config(folder, lambda c: c.update(tokenizer_type="qwen3_tts_tokenizer_25hz"))
    with pytest.raises(ModelLoadError, match="25 Hz"):
        qt.load(folder)


def test_empty_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="config.json is missing"):
        qt.load(tmp_path)


def test_not_a_folder_nor_repo_id(tmp_path):
    with pytest.raises(ModelLoadError, match="no such folder, and not a Hugging Face repo id"):
        qt.load(tmp_path / "nope" / "deeper")


@pytest.mark.parametrize("dtype", ["int8", mx.int32, mx.float64, ["float32"]])
def test_bad_dtype(checkpoint, dtype):
    """An integer mx.Dtype was blamed on the checkpoint ('wrong dtypes'), float64 was taken, and a
    list raised a raw TypeError."""
    with pytest.raises(ModelLoadError, match=r"dtype .* is not one of \['bfloat16', 'float16', 'float32'\]"):
        qt.load(checkpoint(), dtype=dtype)


@pytest.mark.parametrize("repo", ["a/b..c", "a/b--c", "a/b.", "a/-b", "a/b.git", "a/" + "x" * 97])
def test_a_name_the_hub_refuses_is_no_repo_id(repo):
    """The Hub client raised a raw HFValidationError for these (the CLI printed a traceback)."""
    from mlx_qwen3_tts.weights import is_repo_id

    assert not is_repo_id(repo)
    with pytest.raises(ModelLoadError, match="not a Hugging Face repo id"):
        qt.load(repo)


# --------------------------------------------------------------------------- hub ids


def test_hub_repo_id_downloads_only_what_is_needed(monkeypatch, checkpoint):
    import huggingface_hub

    calls = []

    def fake_snapshot_download(repo_id, allow_patterns=None, **kwargs):
        calls.append((repo_id, allow_patterns))
        return str(checkpoint())

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    tts = qt.load("Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice")
    assert tts.model_type == "custom_voice"
    repo, patterns = calls[0]
    assert repo == "Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice"
    assert "speech_tokenizer/*.safetensors" in patterns and "README.md" not in patterns


def test_hub_failure_is_a_model_load_error(monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(repo_id, **kwargs):
        raise LocalEntryNotFoundError("offline and not cached")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(ModelLoadError, match="Could not fetch Qwen/Nope"):
        qt.load("Qwen/Nope")


def test_conv_layout_by_shape_and_ambiguity():
    from mlx_qwen3_tts.models.base import conv_weight_to_mlx

    w = mx.arange(2 * 3 * 5).reshape(2, 3, 5)  # PyTorch Conv1d [out, in, k]
    mlx_w = conv_weight_to_mlx("c", w, (2, 5, 3))
    assert mx.array_equal(mlx_w, w.transpose(0, 2, 1))
    assert conv_weight_to_mlx("c", mlx_w, (2, 5, 3)) is mlx_w  # already MLX: untouched
    wt = mx.arange(3 * 2 * 4).reshape(3, 2, 4)  # PyTorch ConvTranspose1d [in, out, k]
    assert mx.array_equal(conv_weight_to_mlx("t", wt, (2, 4, 3), transposed=True), wt.transpose(1, 2, 0))
    with pytest.raises(ModelLoadError, match="ambiguous"):
        conv_weight_to_mlx("c", mx.zeros((2, 3, 3)), (2, 3, 3))
    with pytest.raises(ModelLoadError, match="does not match"):
        conv_weight_to_mlx("c", mx.zeros((2, 3, 4)), (2, 5, 3))


def test_device_choice(checkpoint):
    tts = qt.load(checkpoint(), device="cpu")
    assert tts.device == mx.cpu
    assert tts.generate("hello there.", speaker="vivian", max_frames=2, seed=0).frames == 2
    with pytest.raises(ModelLoadError, match="not 'cpu' or 'gpu'"):
        qt.load(checkpoint(), device="tpu")
    for device in (["cpu"], 1):  # raw TypeError, or "not available in this MLX build"
        with pytest.raises(ModelLoadError, match="`device` must be 'cpu', 'gpu' or an mx.Device"):
            qt.load(checkpoint(), device=device)
    if not mx.is_available(mx.gpu):
        with pytest.raises(ModelLoadError, match="not available in this MLX build"):
            qt.load(checkpoint(), device="gpu")
