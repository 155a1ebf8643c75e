"""Codec building blocks against the NumPy reference, on the tiny codec's checkpoint weights.

The NumPy side reads the checkpoint's PyTorch-layout tensors directly, so these tests also check
that `sanitize` moved every conv / conv-transpose weight into MLX layout correctly.
"""

import json
from types import SimpleNamespace

import mlx.core as mx
import numpy as np
import pytest
from mlx_lm.models.base import create_causal_mask
from numpy_ref import codec as ref

from mlx_qwen3_tts.models.codec.layers import state_arrays
from mlx_qwen3_tts.speech_tokenizer import SpeechTokenizer
from mlx_qwen3_tts.testing import write_speech_tokenizer


@pytest.fixture(scope="module")
def codec(tmp_path_factory):
    folder = write_speech_tokenizer(tmp_path_factory.mktemp("codec"), "tiny-0.6b", seed=0)
    raw = mx.load(str(folder / "model.safetensors"))
    return SimpleNamespace(
        tok=SpeechTokenizer.from_pretrained(folder),
        raw=raw,
        np={k: np.array(v, dtype=np.float64) for k, v in raw.items()},
        cfg=json.loads((folder / "config.json").read_text()),
    )


def submodule(root, path: str):
    for part in path.split("."):
        root = root[int(part)] if part.isdigit() else getattr(root, part)
    return root


def run(module, x: np.ndarray, *args) -> np.ndarray:
    return np.array(module(mx.array(x, dtype=mx.float32)[None], *args)[0])


def assert_close(got: np.ndarray, want: np.ndarray, rtol: float = 2e-5):
    err = np.abs(got - want).max() / max(np.abs(want).max(), 1e-6)
    assert err <= rtol, f"max-abs error {err:.2e} of the peak"


def test_rvq_dequantization_matches_numpy(codec):
    codes = np.random.default_rng(0).integers(0, 2048, (12, 16))
    w = codec.np
    groups = []
    for name, ks in (("rvq_first", range(1)), ("rvq_rest", range(15))):
        p = f"decoder.quantizer.{name}"
        tables = [ref.codebook_table(w[f"{p}.vq.layers.{k}._codebook.embedding_sum"],
                                     w[f"{p}.vq.layers.{k}._codebook.cluster_usage"]) for k in ks]
        cols = codes[:, :1] if name == "rvq_first" else codes[:, 1:]
        groups.append(ref.rvq_dequantize(cols, tables, w[f"{p}.output_proj.weight"]))
    got = np.array(codec.tok.model.decoder.quantizer.decode(mx.array(codes)[None])[0])
    assert_close(got, groups[0] + groups[1])


CONVS = [  # (module path under decoder, dilation, groups)
    ("pre_conv", 1, 1),
    ("upsample.1.1.dwconv", 1, 32),  # depthwise
    ("decoder.0", 1, 1),
    ("decoder.2.block.3.conv1", 3, 1),
    ("decoder.1.block.4.conv1", 9, 1),
    ("decoder.4.block.2.conv2", 1, 1),  # 1x1
    ("decoder.6", 1, 1),
]


@pytest.mark.parametrize("path,dilation,groups", CONVS)
def test_causal_conv_matches_numpy(codec, path, dilation, groups):
    module = submodule(codec.tok.model.decoder, path)
    w, b = codec.np[f"decoder.{path}.conv.weight"], codec.np[f"decoder.{path}.conv.bias"]
    x = np.random.default_rng(1).normal(size=(23, w.shape[1] * groups))
    assert_close(run(module, x), ref.causal_conv1d(x, w, b, dilation=dilation, groups=groups))


@pytest.mark.parametrize("path,stride", [("upsample.0.0", 2), ("decoder.1.block.1", 8),
                                         ("decoder.4.block.1", 3)])
def test_causal_conv_transpose_matches_numpy(codec, path, stride):
    module = submodule(codec.tok.model.decoder, path)
    w, b = codec.np[f"decoder.{path}.conv.weight"], codec.np[f"decoder.{path}.conv.bias"]
    x = np.random.default_rng(2).normal(size=(11, w.shape[0]))
    want = ref.causal_conv_transpose1d(x, w, b, stride)
    assert want.shape[0] == 11 * stride
    assert_close(run(module, x), want)


@pytest.mark.parametrize("path", ["decoder.1.block.0", "decoder.3.block.2.act2", "decoder.5"])
def test_snake_beta_matches_numpy(codec, path):
    module = submodule(codec.tok.model.decoder, path)
    alpha, beta = codec.np[f"decoder.{path}.alpha"], codec.np[f"decoder.{path}.beta"]
    x = 3 * np.random.default_rng(3).normal(size=(17, alpha.shape[0]))
    assert_close(run(module, x), ref.snake_beta(x, alpha, beta))


def test_windowed_attention_layer_matches_numpy(codec):
    cfg = codec.cfg["decoder_config"]
    L, window = 3 * cfg["sliding_window"] + 1, cfg["sliding_window"]
    x = np.random.default_rng(4).normal(size=(L, cfg["hidden_size"]))
    layer = codec.tok.model.decoder.pre_transformer.layers[1]
    got = run(layer, x, create_causal_mask(L, 0, window_size=window))
    p = "decoder.pre_transformer.layers.1"
    assert_close(got, ref.windowed_transformer_layer(x, codec.np, p, cfg))
    # The window matters at this length: without it the reference layer gives other values.
    unwindowed = ref.windowed_transformer_layer(x, codec.np, p, {**cfg, "sliding_window": 10**6})
    assert np.abs(unwindowed - got).max() > 1e-3


@pytest.mark.parametrize("length", [37, 40])
def test_encoder_downsample_pads_by_replication(codec, length):
    w = codec.np["encoder.downsample.conv.weight"]
    x = np.random.default_rng(5).normal(size=(length, w.shape[1])) + 2.0  # far from zero padding
    want = ref.causal_conv1d(x, w, stride=2, pad_mode="edge")
    assert want.shape[0] == -(-length // 2)
    assert_close(run(codec.tok.model.encoder.downsample, x), want)


def test_encoder_strided_conv_pads_right_to_a_multiple_of_the_stride(codec):
    path = "encoder.encoder.layers.3"  # k=8, stride 4
    w, b = codec.np[f"{path}.conv.weight"], codec.np[f"{path}.conv.bias"]
    x = np.random.default_rng(6).normal(size=(45, w.shape[1]))
    got = run(codec.tok.model.encoder.encoder.layers[3], x)
    assert got.shape[0] == 12
    assert_close(got, ref.causal_conv1d(x, w, b, stride=4))


STREAMABLE = ["pre_conv", "upsample.0.0", "upsample.1.1", "decoder.1", "decoder.4.block.4"]


@pytest.mark.parametrize("path", STREAMABLE)
def test_module_streaming_equals_one_pass_and_is_causal(codec, path):
    module = submodule(codec.tok.model.decoder, path)
    channels = {"pre_conv": 16, "decoder.1": 32, "decoder.4.block.4": 2}.get(path, 32)
    x = mx.array(np.random.default_rng(7).normal(size=(1, 30, channels)), dtype=mx.float32)
    full = np.array(module(x))
    for piece in (1, 4, 7):
        state = module.make_state()
        outs = [module(x[:, i : i + piece], state) for i in range(0, 30, piece)]
        mx.eval(outs, state_arrays(state))
        assert_close(np.concatenate([np.array(o) for o in outs], axis=1), full, rtol=1e-5)
    # Causal: new inputs do not change earlier outputs.
    prefix = np.array(module(x[:, :13]))
    assert_close(full[:, : prefix.shape[1]], prefix, rtol=1e-5)


def test_sanitize_folds_drops_transposes_and_is_idempotent(codec):
    model, raw = codec.tok.model, codec.raw
    before = {k: np.array(v) for k, v in raw.items()}
    once = model.sanitize(raw)
    assert set(raw) == set(before) and all(np.array_equal(np.array(raw[k]), before[k]) for k in raw)
    twice = model.sanitize(once)
    assert set(twice) == set(once)
    assert all(np.array_equal(np.array(twice[k]), np.array(once[k])) for k in once)

    p = "decoder.quantizer.rvq_rest.vq.layers.3"
    np.testing.assert_allclose(
        np.array(once[f"{p}.codebook.embedding"]),
        ref.codebook_table(before[f"{p}._codebook.embedding_sum"], before[f"{p}._codebook.cluster_usage"]),
        rtol=1e-6,
    )
    dropped = {k for k in raw if k not in once}
    acoustic = "encoder.quantizer.acoustic_residual_vector_quantizer"
    codebook_parts = {k for k in raw if k.endswith(("embedding_sum", "embed_sum", "cluster_usage"))}
    unused = {"decoder.quantizer.rvq_first.input_proj.weight", "decoder.quantizer.rvq_rest.input_proj.weight",
              f"{acoustic}.output_proj.weight",
              "encoder.quantizer.semantic_residual_vector_quantizer.output_proj.weight"}
    unused |= {k for k in raw if k.endswith(".initialized") or k.startswith(f"{acoustic}.layers.")}
    assert dropped == codebook_parts | unused
    assert f"{acoustic}.layers.14.codebook.embedding" in once
    assert f"{acoustic}.layers.15.codebook.embedding" not in once
    # Conv weights [out, in, k] -> [out, k, in]; ConvTranspose [in, out, k] -> [out, k, in].
    conv, convtr = "decoder.pre_conv.conv.weight", "decoder.decoder.2.block.1.conv.weight"
    assert np.array_equal(np.array(once[conv]), before[conv].transpose(0, 2, 1))
    assert np.array_equal(np.array(once[convtr]), before[convtr].transpose(1, 2, 0))


def test_an_unused_codebook_entry_is_clamped_not_divided_by_zero():
    """EuclideanCodebook divides each sum by its usage clamped to 1e-5; the tiny fixtures' usages
    are all above 0.5, so a zero (an entry training never used) was never seen to give inf."""
    from mlx_qwen3_tts.models.codec.model import CODEBOOK_EPS, _fold_codebook

    total = mx.array([[1.0, -2.0], [3.0, 4.0]])
    folded = _fold_codebook("q", {"cluster_usage": mx.array([0.0, 2.0]), "embedding_sum": total})
    expected = [[1 / CODEBOOK_EPS, -2 / CODEBOOK_EPS], [1.5, 2.0]]
    np.testing.assert_allclose(np.array(folded), expected, rtol=1e-6)
