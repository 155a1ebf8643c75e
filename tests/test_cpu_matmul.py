"""CPU products: float32 matmuls for half-precision Linears, two-stream matvecs for float32 ones:
same values, same keys, used by load."""

import dataclasses

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

import mlx_qwen3_tts as qt
from mlx_qwen3_tts import convert as cv
from mlx_qwen3_tts.models.cpu_matmul import (
    Float32MatmulLinear,
    Float32MatmulQuantizedLinear,
    ThreadedMatvecLinear,
    use_float32_matmuls,
    use_threaded_matvecs,
)
from mlx_qwen3_tts.policy import ComputePolicy

TEXT = "Float32 products, half-precision weights."


def as64(x: mx.array) -> np.ndarray:
    return np.array(x.astype(mx.float32), np.float64)


def half_linear(dtype: mx.Dtype, bias: bool, seed: int = 0) -> nn.Linear:
    mx.random.seed(seed)
    layer = nn.Linear(96, 40, bias=bias)
    layer.set_dtype(dtype)
    return layer


@pytest.mark.parametrize("dtype", [mx.bfloat16, mx.float16])
@pytest.mark.parametrize("rows", [1, 7])
@pytest.mark.parametrize("bias", [False, True])
def test_linear_is_the_float32_product_rounded_to_the_activation_dtype(dtype, rows, bias):
    layer = half_linear(dtype, bias)
    x = mx.random.normal((2, rows, 96), key=mx.random.key(1)).astype(dtype)
    native = layer(x)
    use_float32_matmuls(layer)
    assert type(layer) is Float32MatmulLinear
    got = layer(x)
    assert got.dtype == dtype and got.shape == native.shape
    w = np.array(layer.weight.astype(mx.float32), np.float64)
    want = as64(x) @ w.T + (as64(layer.bias) if bias else 0)
    # Both are the exact product rounded once to the half dtype (8 or 11 mantissa bits).
    tol = 2.0 ** (-7 if dtype == mx.bfloat16 else -10) * np.abs(want).max()
    assert np.abs(as64(got) - want).max() <= tol
    assert np.abs(as64(native) - want).max() <= tol


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("dtype", [mx.bfloat16, mx.float32])
@pytest.mark.parametrize("rows", [1, 5])
def test_quantized_linear_multiplies_the_dequantized_weight_in_float32(bits, dtype, rows):
    layer = half_linear(dtype, bias=True)
    qlayer = nn.QuantizedLinear.from_linear(layer, group_size=32, bits=bits)
    assert qlayer.scales.dtype == dtype
    x = mx.random.normal((1, rows, 96), key=mx.random.key(2)).astype(dtype)
    native = qlayer(x)
    use_float32_matmuls(qlayer)
    assert type(qlayer) is Float32MatmulQuantizedLinear
    got = qlayer(x)
    assert got.dtype == dtype and got.shape == native.shape
    w = mx.dequantize(qlayer.weight, qlayer.scales.astype(mx.float32),
                      qlayer.biases.astype(mx.float32), group_size=32, bits=bits)
    want = as64(x) @ as64(w).T + as64(qlayer.bias)
    err, native_err = np.abs(as64(got) - want).max(), np.abs(as64(native) - want).max()
    assert err <= (2.0**-7 if dtype == mx.bfloat16 else 1e-5) * np.abs(want).max()
    # MLX's bf16 kernel dequantizes and sums with bf16 roundings (~3x this error, measured).
    assert err <= native_err * 1.01 + 1e-7


def test_float32_layers_and_other_modules_are_left_alone():
    model = nn.Sequential(nn.Linear(8, 8), nn.Embedding(10, 8), half_linear(mx.bfloat16, False))
    assert use_float32_matmuls(model) == 1
    assert [type(m) for m in model.layers] == [nn.Linear, nn.Embedding, Float32MatmulLinear]
    assert use_float32_matmuls(model) == 0  # idempotent


@pytest.fixture(scope="module")
def bf16_folder(checkpoint):
    return checkpoint("tiny-0.6b", "custom_voice")


def first_logits(tts) -> mx.array:
    prompt = tts.job(TEXT, speaker="vivian").requests[0].prompt
    logits, _ = tts.model.talker(prompt.prefill[None])
    return logits[0, -1]


def test_cpu_load_of_a_bfloat16_model_uses_float32_matmuls_with_the_same_keys(bf16_folder):
    tts = qt.load(bf16_folder, dtype="bfloat16", device="cpu")
    linears = [m for _, m in tts.model.talker.named_modules() if isinstance(m, nn.Linear)]
    assert linears and all(type(m) is Float32MatmulLinear for m in linears)
    reference = qt.load(bf16_folder, dtype="bfloat16", device="cpu")
    native = dict(tree_flatten(reference.model.parameters()))
    swapped = dict(tree_flatten(tts.model.parameters()))
    assert native.keys() == swapped.keys()
    assert all(native[k].dtype == swapped[k].dtype for k in native)
    # The same prompt through native bf16 matmuls and float32 ones: bf16 rounding apart.
    for _, m in reference.model.talker.named_modules():
        if type(m) is Float32MatmulLinear:
            m.__class__ = nn.Linear
    a, b = as64(first_logits(tts)), as64(first_logits(reference))
    assert np.corrcoef(a, b)[0, 1] >= 0.999
    assert np.argmax(a) == np.argmax(b)


def test_cpu_load_of_a_float32_model_keeps_float32_linears(bf16_folder):
    tts = qt.load(bf16_folder, dtype="float32", device="cpu")
    kinds = {type(m) for _, m in tts.model.named_modules()}
    assert Float32MatmulLinear not in kinds and nn.Linear in kinds


def test_quantized_bf16_model_generates_on_the_cpu(checkpoint, tmp_path):
    out = cv.convert(str(checkpoint("tiny-q", "custom_voice")), tmp_path / "q8", quantize=True)
    tts = qt.load(out, dtype="bfloat16", device="cpu")
    kinds = {type(m) for _, m in tts.model.talker.named_modules()}
    assert Float32MatmulQuantizedLinear in kinds and nn.QuantizedLinear not in kinds
    a = tts.generate(TEXT, speaker="vivian", max_frames=6, seed=3)
    b = tts.generate(TEXT, speaker="vivian", max_frames=6, seed=3)
    assert a.frames == 6 and np.isfinite(a.audio).all()
    assert np.array_equal(a.audio, b.audio)


@pytest.mark.parametrize("matvec", ["two_rows", "two_streams"])
@pytest.mark.parametrize("bias", [False, True])
def test_threaded_matvecs_give_the_same_values_as_one_product(matvec, bias):
    mx.random.seed(4)
    layer = nn.Linear(256, 1030, bias=bias)  # an odd half: 515 rows each side
    x = mx.random.normal((2, 1, 256), key=mx.random.key(2))[:1]  # one row (more rows: nn.Linear's call)
    want = layer(x)
    assert use_threaded_matvecs(layer, matvec) == 1 and type(layer) is ThreadedMatvecLinear
    got = layer(x)
    assert got.shape == want.shape
    if matvec == "two_streams":  # the same BLAS call on each half of the output rows
        assert np.array_equal(np.array(got), np.array(want))
    else:  # MKL's two-row kernel may sum in another order than its one-row one (Intel: 2.4e-7)
        np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-6, atol=1e-6)


def test_threaded_matvecs_only_for_large_float32_linears():
    model = nn.Sequential(nn.Linear(8, 1024), nn.Linear(1024, 8), nn.Linear(8, 2048))
    model.layers[2].set_dtype(mx.bfloat16)
    assert use_threaded_matvecs(model, "blas") == 0
    assert use_threaded_matvecs(model, "two_streams") == 1
    assert [type(m) for m in model.layers] == [ThreadedMatvecLinear, nn.Linear, nn.Linear]
    assert use_threaded_matvecs(model, "two_rows") == 1 and model.layers[0].matvec == "two_rows"


@pytest.mark.parametrize("platform,library,vendor,expected", [
    ("linux", "MKL (libmkl_rt.so.3)", "AuthenticAMD", "two_rows"),
    ("linux", "MKL (libmkl_rt.so.3)", "GenuineIntel", "blas"),
    ("linux", "MLX's bundled BLAS", "GenuineIntel", "two_streams"),
    ("darwin", "Accelerate", "", "blas")])
def test_the_cpu_policy_picks_the_matvec_for_its_blas(monkeypatch, platform, library, vendor, expected):
    from mlx_qwen3_tts import policy

    monkeypatch.setattr(policy, "blas", lambda: library)
    monkeypatch.setattr(policy, "cpu_vendor", lambda: vendor)
    monkeypatch.setattr(policy.sys, "platform", platform)
    assert ComputePolicy.choose(mx.cpu).matvec == expected
    assert ComputePolicy.choose(mx.gpu).matvec == "blas"


@pytest.mark.parametrize("matvec", ["two_rows", "two_streams"])
def test_a_cpu_model_with_threaded_matvecs_generates_the_same_audio(bf16_folder, monkeypatch, matvec):
    """The whole frame loop (talker steps, the compiled code predictor) with every Linear
    threaded, against the same model with none: identical codes and audio; a batch of two rows
    (which takes nn.Linear's call) is unchanged too."""
    from mlx_qwen3_tts.models import cpu_matmul

    monkeypatch.setattr(cpu_matmul, "MATVEC_MIN_OUT", 1)  # the tiny model's Linears are small
    cpu = ComputePolicy.choose(mx.cpu)
    threaded = qt.load(bf16_folder, policy=dataclasses.replace(cpu, matvec=matvec))
    plain = qt.load(bf16_folder, policy=dataclasses.replace(cpu, matvec="blas"))
    kinds = [type(m) for _, m in threaded.model.talker.named_modules() if isinstance(m, nn.Linear)]
    assert kinds and set(kinds) == {ThreadedMatvecLinear}
    assert f"one-row products as {matvec.replace('_', ' ')}" in threaded.compute
    assert "one-row products" not in plain.compute
    for sampling in ({}, {"temperature": 0.0, "subtalker_temperature": 0.0}):
        a = threaded.generate(TEXT, speaker="vivian", max_frames=8, seed=5, **sampling)
        b = plain.generate(TEXT, speaker="vivian", max_frames=8, seed=5, **sampling)
        assert np.array_equal(a.codes, b.codes) and np.array_equal(a.audio, b.audio)
    texts = [TEXT, "A second, shorter row."]
    for a, b in zip(threaded.generate_batch(texts, speaker="vivian", max_frames=6, seed=2),
                    plain.generate_batch(texts, speaker="vivian", max_frames=6, seed=2)):
        assert np.array_equal(a.codes, b.codes)
