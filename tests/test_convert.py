"""Conversion: exact float folders, quantization rule and agreement, errors, mlx-audio's folders."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

import mlx_qwen3_tts as qt
from mlx_qwen3_tts import convert as cv
from mlx_qwen3_tts.errors import ModelLoadError
from mlx_qwen3_tts.loading import FORMAT_KEY, FORMAT_VERSION
from mlx_qwen3_tts.models.codec import SpeechTokenizerConfig, SpeechTokenizerModel
from mlx_qwen3_tts.models.qwen3_tts import Model, Qwen3TTSConfig
from mlx_qwen3_tts.testing import make_config

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
from mlx_audio_listing import LISTING, tensor_hash  # noqa: E402

TEXT = "hello world, this is a test."
GREEDY = dict(speaker="vivian", temperature=0, subtalker_temperature=0, max_frames=8)
ROOT = Path(__file__).parents[1]


def params(module: nn.Module) -> dict[str, mx.array]:
    return dict(tree_flatten(module.parameters()))


def first_step_logits(tts) -> np.ndarray:
    """The talker's c0 logits for the first frame of a CustomVoice prompt, float64."""
    prompt = tts.job(TEXT, speaker="vivian").requests[0].prompt
    logits, _ = tts.model.talker(prompt.prefill[None])
    return np.array(logits[0, -1].astype(mx.float32), np.float64)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("convert")


@pytest.fixture(scope="module")
def tiny_q(checkpoint):
    return checkpoint("tiny-q", "custom_voice")


@pytest.fixture(scope="module")
def float_reference(tiny_q):
    return first_step_logits(qt.load(tiny_q, dtype="float32"))


# --------------------------------------------------------------------------- float conversion


@pytest.mark.parametrize("size,variant", [("tiny-0.6b", "custom_voice"), ("tiny-1.7b", "base")])
def test_float32_conversion_loads_the_same_model(checkpoint, work, size, variant):
    source = checkpoint(size, variant)
    out = cv.convert(str(source), work / f"f32-{size}-{variant}", dtype="float32")
    ours, theirs = qt.load(out), qt.load(source, dtype="float32")
    a, b = params(ours.model), params(theirs.model)
    assert a.keys() == b.keys() and all(mx.array_equal(a[k], b[k]) for k in a)
    a, b = params(ours.speech_tokenizer.model), params(theirs.speech_tokenizer.model)
    assert a.keys() == b.keys() and all(mx.array_equal(a[k], b[k]) for k in a)
    if variant == "custom_voice":
        assert np.array_equal(ours.generate(TEXT, **GREEDY).codes, theirs.generate(TEXT, **GREEDY).codes)


def test_converted_weights_need_no_sanitizing(checkpoint, work):
    # Loading a converted folder must not transpose or fold anything: sanitize hands back the
    # very arrays it was given, for the talker + speaker encoder and for the codec.
    out = cv.convert(str(checkpoint("tiny-1.7b", "base")), work / "no-sanitize")
    config = Qwen3TTSConfig.from_dict(json.loads((out / "config.json").read_text()))
    weights = mx.load(str(out / "model.safetensors"))
    sanitized = Model(config).sanitize(weights)
    assert sanitized.keys() == weights.keys() and all(sanitized[k] is weights[k] for k in weights)
    codec_config = json.loads((out / "speech_tokenizer" / "config.json").read_text())
    codec = SpeechTokenizerModel(SpeechTokenizerConfig.from_dict(codec_config))
    weights = mx.load(str(out / "speech_tokenizer" / "model.safetensors"))
    sanitized = codec.sanitize(weights)
    assert sanitized.keys() == weights.keys() and all(sanitized[k] is weights[k] for k in weights)
    # The stored dtype is kept by default; the speaker encoder is written as it runs, float32.
    assert weights["decoder.pre_conv.conv.weight"].dtype == mx.float32
    talker = mx.load(str(out / "model.safetensors"))
    assert talker["talker.codec_head.weight"].dtype == mx.bfloat16
    assert talker["speaker_encoder.fc.weight"].dtype == mx.float32


def test_folder_keeps_config_and_files(tiny_q, work):
    out = cv.convert(str(tiny_q), work / "files-q8", quantize=True)
    original = json.loads((tiny_q / "config.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert all(config[k] == v for k, v in original.items())
    assert config[FORMAT_KEY]["format_version"] == FORMAT_VERSION
    assert config[FORMAT_KEY]["dtype"] == "bfloat16"
    block = config["quantization"]
    assert {k: block[k] for k in ("bits", "group_size", "mode", "scale_dtype")} == {
        "bits": 8, "group_size": 64, "mode": "affine", "scale_dtype": "bfloat16"}
    # How the model computes is decided at load for the device, never recorded by convert.
    assert "activation_dtype" not in block
    assert block["talker.model.layers.0.mlp.up_proj"] == {"group_size": 64, "bits": 8, "mode": "affine"}
    Qwen3TTSConfig.from_dict(config)
    for name in ("generation_config.json", "preprocessor_config.json", "tokenizer_config.json",
                 "vocab.json", "merges.txt", "speech_tokenizer/config.json",
                 "speech_tokenizer/preprocessor_config.json"):
        assert (out / name).read_bytes() == (tiny_q / name).read_bytes(), name
    assert "quantized with 8 bits, group size 64" in (out / "README.md").read_text()
    assert not list(work.glob(".*.tmp"))


# --------------------------------------------------------------------------- quantization


@pytest.mark.parametrize("bits,group_size,min_cos", [(8, 64, 0.999), (6, 64, 0.995), (4, 64, 0.99),
                                                     (4, 32, 0.99)])
def test_quantized_logits_agree_with_float(tiny_q, float_reference, work, bits, group_size, min_cos):
    out = cv.convert(str(tiny_q), work / f"q{bits}-{group_size}", quantize=True, q_bits=bits,
                     q_group_size=group_size)
    tts = qt.load(out)
    layers = dict(tts.model.named_modules())
    assert isinstance(layers["talker.model.text_embedding"], nn.QuantizedEmbedding)
    assert layers["talker.model.text_embedding"].bits == bits
    assert isinstance(layers["talker.model.layers.1.mlp.down_proj"], nn.QuantizedLinear)
    assert cosine(first_step_logits(tts), float_reference) >= min_cos


def test_quantized_folder_loads_exactly_what_was_written(tiny_q, work):
    out = cv.convert(str(tiny_q), work / "exact-q4", quantize=True, q_bits=4)
    stored = mx.load(str(out / "model.safetensors"))
    loaded = params(qt.load(out).model)
    assert loaded.keys() == stored.keys()
    for k, v in stored.items():  # float32 activations: bfloat16 scales are upcast, exactly
        assert mx.array_equal(loaded[k], v.astype(loaded[k].dtype)), k
    assert loaded["talker.model.layers.0.self_attn.q_proj.scales"].dtype == mx.float32
    bf16 = params(qt.load(out, dtype="bfloat16").model)
    assert bf16["talker.model.layers.0.self_attn.q_proj.scales"].dtype == mx.bfloat16


def test_quant_predicate_rule():
    model = Model(Qwen3TTSConfig.from_dict(make_config("1.7b", "base")))  # lazy: nothing allocated
    modules = dict(model.named_modules())

    def bits(path: str, requested: int) -> int | None:
        result = cv.quant_predicate(path, modules[path], 64, requested)
        return None if not result else result["bits"] if isinstance(result, dict) else requested

    assert bits("talker.model.text_embedding", 4) == 4
    assert bits("talker.model.layers.3.mlp.gate_proj", 4) == 6
    assert bits("talker.model.layers.3.mlp.up_proj", 4) == bits("talker.model.layers.3.mlp.down_proj", 4) == 6
    assert bits("talker.model.layers.3.self_attn.q_proj", 4) == 8
    assert bits("talker.code_predictor.model.layers.0.mlp.down_proj", 6) == 6
    assert bits("talker.code_predictor.lm_head.14", 4) == 8
    assert bits("talker.code_predictor.model.codec_embedding.0", 6) == 8
    assert bits("talker.code_predictor.small_to_mtp_projection", 4) == 8
    assert bits("talker.text_projection.linear_fc1", 4) == 8
    assert bits("talker.codec_head", 8) is None
    assert bits("talker.model.norm", 4) is None
    assert bits("speaker_encoder.fc", 4) is None
    assert all(bits(p, 8) in (8, None) for p in modules)


def test_layers_not_a_multiple_of_the_group_size_stay_float(checkpoint, work):
    # tiny-1.7b: the talker is 48 wide (4 heads of 12), its MLP 96, the code predictor 32.
    out = cv.convert(str(checkpoint("tiny-1.7b", "custom_voice")), work / "widths", quantize=True,
                     q_bits=8, q_group_size=32)
    block = json.loads((out / "config.json").read_text())["quantization"]
    layers = dict(qt.load(out).model.named_modules())
    for path in ("talker.model.layers.0.self_attn.q_proj", "talker.model.layers.0.self_attn.o_proj",
                 "talker.model.layers.0.mlp.up_proj", "talker.model.text_embedding",
                 "talker.code_predictor.small_to_mtp_projection"):
        assert path not in block and type(layers[path]) in (nn.Linear, nn.Embedding), path
    for path in ("talker.model.layers.0.mlp.down_proj", "talker.code_predictor.lm_head.3",
                 "talker.code_predictor.model.layers.1.self_attn.q_proj"):
        assert path in block and isinstance(layers[path], nn.QuantizedLinear), path


def test_nothing_quantizable_is_refused(checkpoint, work):
    with pytest.raises(ValueError, match="group size 128"):
        cv.convert(str(checkpoint("tiny-0.6b", "custom_voice")), work / "none", quantize=True,
                   q_group_size=128)
    assert not (work / "none").exists()


# --------------------------------------------------------------------------- errors and safety


def test_converting_a_converted_folder_is_refused(tiny_q, work):
    out = cv.convert(str(tiny_q), work / "once")
    with pytest.raises(ValueError, match="already converted by mlx_qwen3_tts"):
        cv.convert(str(out), work / "twice")
    assert not (work / "twice").exists()


@pytest.mark.parametrize("kwargs,match", [
    (dict(quantize=True, q_bits=3), "q_bits 3 is not supported"),
    (dict(quantize=True, q_group_size=48), "q_group_size 48 is not supported"),
    (dict(q_bits=4), "only apply with quantize=True"),
    (dict(dtype="float64"), "dtype 'float64' is not one of"),
])
def test_bad_options(tiny_q, work, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cv.convert(str(tiny_q), work / "bad", **kwargs)
    assert not (work / "bad").exists()


def test_missing_source(work):
    with pytest.raises(ModelLoadError, match="neither an existing folder"):
        cv.convert(str(work / "no-such-checkpoint"), work / "out-missing")
    assert not (work / "out-missing").exists()


def test_existing_output_needs_force(tiny_q, tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="already exists.*--force"):
        cv.convert(str(tiny_q), target)
    assert (target / "keep.txt").read_text() == "mine"
    # --force replaces only an earlier conversion's folder (test_convert_surface.py).
    with pytest.raises(ValueError, match="only replaces folders written by"):
        cv.convert(str(tiny_q), target, force=True)
    assert (target / "keep.txt").read_text() == "mine"
    shutil.rmtree(target)
    cv.convert(str(tiny_q), target)
    (target / "keep.txt").write_text("stale")
    cv.convert(str(tiny_q), target, force=True)
    assert not (target / "keep.txt").exists() and (target / "model.safetensors").is_file()
    source = shutil.copytree(tiny_q, target / "inside")
    with pytest.raises(ValueError, match="would overwrite the checkpoint"):
        cv.convert(str(source), target, force=True)


def test_failure_leaves_nothing_behind(tiny_q, tmp_path, monkeypatch):
    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(cv, "_save_speech_tokenizer", broken)
    with pytest.raises(OSError, match="disk full"):
        cv.convert(str(tiny_q), tmp_path / "new")
    old = tmp_path / "old"
    old.mkdir()
    (old / "keep.txt").write_text("mine")
    (old / "config.json").write_text(json.dumps({FORMAT_KEY: {"format_version": FORMAT_VERSION}}))
    with pytest.raises(OSError, match="disk full"):
        cv.convert(str(tiny_q), old, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]
    assert (old / "keep.txt").read_text() == "mine"


def test_upload(tiny_q, work, monkeypatch):
    import huggingface_hub

    calls = []

    class FakeApi:
        def create_repo(self, **kw):
            calls.append(("create", kw))

        def upload_folder(self, **kw):
            calls.append(("upload", kw))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    out = cv.convert(str(tiny_q), work / "up", upload_repo="me/tiny-8bit", quantize=True)
    assert calls == [("create", {"repo_id": "me/tiny-8bit", "exist_ok": True}),
                     ("upload", {"folder_path": str(out), "repo_id": "me/tiny-8bit", "repo_type": "model"})]
    assert 'qt.load("me/tiny-8bit")' in (out / "README.md").read_text()


def test_cli(tiny_q, tmp_path, monkeypatch, capsys):
    out = tmp_path / "cli"
    monkeypatch.setattr(sys, "argv", ["convert", "--hf-path", str(tiny_q), "--mlx-path", str(out),
                                      "-q", "--q-bits", "6", "--dtype", "float32"])
    cv.main()
    assert "[INFO] Quantizing to 6 bits, group size 64" in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["quantization"]["scale_dtype"] == "float32"
    monkeypatch.setattr(sys, "argv", ["convert", "--hf-path", str(tiny_q), "-q", "--q-bits", "5"])
    with pytest.raises(SystemExit):
        cv.main()
    assert "invalid choice: 5" in capsys.readouterr().err


def test_top_level_script():
    result = subprocess.run([sys.executable, str(ROOT / "convert.py"), "--help"], capture_output=True,
                            text=True, check=True)
    assert "--q-group-size {32,64,128}" in result.stdout


# --------------------------------------------------------------------------- mlx-audio folders

LISTED = json.loads(LISTING.read_text())


def mlx_audio_folder(source: Path, dest: Path, listed: dict) -> Path:
    """What mlx-audio 0.6.2's converter writes for `source`, rebuilt without mlx-audio.

    Faithful because it does what that converter does, and every tensor is then checked against
    the hashes of its real output (`mlx_audio_qwen3_tts_tiny_q.json`): mlx-audio's sanitize
    renames nothing and moves the 3-D (speaker-encoder conv) weights to `[out, k, in]`; with no
    --dtype it keeps the bfloat16 weights; `nn.quantize` turns each Linear its predicate accepts
    (the listing names them by their `.scales`) into `mx.quantize(weight, group_size, bits)`;
    all other files are copied verbatim; config.json gains `quantization(_config)` blocks.
    """
    shutil.copytree(source, dest)
    config = {**json.loads((source / "config.json").read_text()), **listed["config_added"]}
    quant = config.get("quantization")
    weights = {}
    for key, w in mx.load(str(source / "model.safetensors")).items():
        layer = key.removesuffix(".weight")
        if f"{layer}.scales" in listed["tensors"]:
            w, scales, biases = mx.quantize(w, quant["group_size"], quant["bits"])
            weights.update({f"{layer}.scales": scales, f"{layer}.biases": biases})
        elif w.ndim == 3:
            w = w.transpose(0, 2, 1)
        weights[key] = w
    mx.save_safetensors(str(dest / "model.safetensors"), weights, metadata={"format": "mlx"})
    index = {"metadata": {"total_size": sum(v.nbytes for v in weights.values())},
             "weight_map": dict.fromkeys(sorted(weights), "model.safetensors")}
    (dest / "model.safetensors.index.json").write_text(json.dumps(index, indent=4))
    (dest / "config.json").write_text(json.dumps(dict(sorted(config.items())), indent=4))
    return dest


@pytest.fixture(scope="module")
def mlx_audio(checkpoint, work):
    made = {}

    def make(name: str) -> Path:
        if name not in made:
            listed = LISTED["folders"][name]
            source = checkpoint("tiny-q", listed["variant"])
            made[name] = mlx_audio_folder(source, work / f"mlx-audio-{name}", listed)
        return made[name]

    return make


@pytest.mark.parametrize("name", sorted(LISTED["folders"]))
def test_mlx_audio_folder_matches_its_listing(mlx_audio, name):
    listed, folder = LISTED["folders"][name], mlx_audio(name)
    assert sorted(str(f.relative_to(folder)) for f in folder.rglob("*") if f.is_file()) == listed["files"]
    weights = mx.load(str(folder / "model.safetensors"))
    assert sorted(weights) == sorted(listed["tensors"])
    same_mlx = mx.__version__ == LISTED["made_with"]["mlx"]
    for key, (shape, dtype, digest) in listed["tensors"].items():
        w = weights[key]
        assert list(w.shape) == shape and str(w.dtype).split(".")[-1] == dtype, key
        # Packed values depend on mlx's quantize kernel: compare them on the version that made them.
        if same_mlx or not key.endswith((".scales", ".biases")) and w.dtype != mx.uint32:
            assert tensor_hash(w) == digest, key


def test_mlx_audio_float_folder_loads_identically(mlx_audio, tiny_q):
    ours = qt.load(mlx_audio("custom_voice-float"), dtype="float32").generate(TEXT, **GREEDY).codes
    assert np.array_equal(ours, qt.load(tiny_q, dtype="float32").generate(TEXT, **GREEDY).codes)


def test_mlx_audio_quantized_folders_load(mlx_audio, checkpoint, float_reference):
    tts = qt.load(mlx_audio("custom_voice-8bit"), device="cpu")
    q_proj = tts.model.talker.model.layers[0].self_attn.q_proj
    assert isinstance(q_proj, nn.QuantizedLinear) and q_proj.bits == 8
    # Packed weights as stored; scales in float32 on the CPU, as for our own folders.
    assert q_proj.weight.dtype == mx.uint32 and q_proj.scales.dtype == mx.float32
    stored = qt.load(mlx_audio("custom_voice-8bit"), dtype="bfloat16")
    assert stored.model.talker.model.layers[0].self_attn.q_proj.scales.dtype == mx.bfloat16
    assert isinstance(tts.model.talker.model.text_embedding, nn.Embedding)
    assert cosine(first_step_logits(tts), float_reference) >= 0.999
    base = qt.load(mlx_audio("base-4bit"))
    assert base.model.talker.codec_head.bits == 4
    # Its speaker encoder came back channels-last from mlx-audio: the same weights as ours.
    ours = qt.load(checkpoint("tiny-q", "base"))
    a, b = params(base.model.speaker_encoder), params(ours.model.speaker_encoder)
    assert all(mx.array_equal(a[k], b[k]) for k in b)


def test_mlx_audio_quantized_folder_is_not_converted_again(mlx_audio, work):
    with pytest.raises(ValueError, match="already quantized"):
        cv.convert(str(mlx_audio("custom_voice-8bit")), work / "requant", quantize=True)
