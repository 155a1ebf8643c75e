"""The codec's matmul convolutions equal MLX's own and the NumPy reference, on every backend.

`conv1d` / `conv_transpose1d` are forced to each formulation (`impl=`), so the matmul paths the CPU
uses are checked on a GPU machine too, against `mx.conv1d` / `mx.conv_transpose1d` on either.
"""

from concurrent.futures import ThreadPoolExecutor

import mlx.core as mx
import numpy as np
import pytest
from numpy_ref import codec as ref

from mlx_qwen3_tts.models.codec import layers
from mlx_qwen3_tts.models.codec.layers import conv1d, conv_transpose1d, use_impls
from mlx_qwen3_tts.policy import CPU_CACHE_LIMIT, ComputePolicy
from mlx_qwen3_tts.speech_tokenizer import SpeechTokenizer
from mlx_qwen3_tts.testing import write_speech_tokenizer

MATMUL_IMPLS = ["taps", "im2col", "matmul"]

CONVS = [  # (batch, length, C_in, C_out, kernel, stride, dilation, groups)
    (1, 23, 16, 32, 3, 1, 1, 1),
    (2, 31, 24, 24, 7, 1, 3, 1),  # dilated residual unit
    (2, 61, 12, 20, 7, 1, 9, 1),  # receptive field (55) nearly the whole input
    (1, 17, 8, 1, 7, 1, 1, 1),  # the decoder's last conv: one output channel
    (2, 19, 32, 32, 1, 1, 1, 1),  # 1x1
    (2, 29, 32, 32, 7, 1, 1, 32),  # depthwise (ConvNeXt)
    (1, 21, 12, 18, 3, 1, 2, 3),  # grouped, neither 1 nor depthwise
    (2, 45, 4, 8, 8, 4, 1, 1),  # SEANet downsampling, stride 4, length not a multiple
    (1, 37, 6, 12, 10, 5, 1, 1),
    (2, 40, 16, 16, 4, 2, 1, 1),  # Mimi's downsample conv
    (1, 24, 1, 8, 7, 1, 1, 1),  # mono input
    (1, 9, 8, 8, 3, 2, 2, 1),  # stride and dilation together
]

TRANSPOSED = [  # (batch, length, C_in, C_out, kernel, stride)
    (1, 11, 16, 8, 16, 8),
    (2, 13, 12, 6, 10, 5),
    (2, 7, 8, 4, 6, 3),
    (1, 12, 16, 16, 2, 2),  # kernel == stride: no overlap
    (2, 9, 6, 5, 7, 3),  # kernel not a multiple of the stride
    (1, 1, 8, 4, 8, 4),  # one frame
    (1, 5, 4, 3, 3, 1),  # stride 1
]


def random(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def assert_close(got: np.ndarray, want: np.ndarray, rtol: float = 1e-5):
    assert got.shape == want.shape
    err = np.abs(got - want).max() / max(np.abs(want).max(), 1e-6)
    assert err <= rtol, f"max-abs error {err:.2e} of the peak"


@pytest.mark.parametrize("impl", MATMUL_IMPLS)
@pytest.mark.parametrize("B,L,c_in,c_out,k,stride,dilation,groups", CONVS)
def test_conv1d_equals_mlx(impl, B, L, c_in, c_out, k, stride, dilation, groups):
    x = mx.array(random((B, L, c_in), 0))
    w = mx.array(random((c_out, k, c_in // groups), 1))
    got = conv1d(x, w, stride, dilation, groups, impl=impl)
    assert_close(np.array(got), np.array(mx.conv1d(x, w, stride=stride, dilation=dilation, groups=groups)))


@pytest.mark.parametrize("impl", MATMUL_IMPLS)
@pytest.mark.parametrize("B,L,c_in,c_out,k,stride,dilation,groups", CONVS)
def test_causally_padded_conv1d_equals_numpy(impl, B, L, c_in, c_out, k, stride, dilation, groups):
    x = random((B, L, c_in), 2)
    w = random((c_out, k, c_in // groups), 3)
    pad = [(0, 0), ((k - 1) * dilation + 1 - stride, -L % stride), (0, 0)]
    got = np.array(conv1d(mx.pad(mx.array(x), pad), mx.array(w), stride, dilation, groups, impl=impl))
    want = [ref.causal_conv1d(x[b].astype(np.float64), w.transpose(0, 2, 1).astype(np.float64),
                              stride=stride, dilation=dilation, groups=groups) for b in range(B)]
    assert_close(got, np.stack(want))


@pytest.mark.parametrize("impl", ["taps", "matmul"])
@pytest.mark.parametrize("B,L,c_in,c_out,k,stride", TRANSPOSED)
def test_conv_transpose1d_equals_mlx_and_numpy(impl, B, L, c_in, c_out, k, stride):
    x = random((B, L, c_in), 4)
    w = random((c_out, k, c_in), 5)
    got = np.array(conv_transpose1d(mx.array(x), mx.array(w), stride, impl=impl))
    assert got.shape == (B, (L - 1) * stride + k, c_out)
    assert_close(got, np.array(mx.conv_transpose1d(mx.array(x), mx.array(w), stride=stride)))
    # The reference is the causal (trimmed) transposed conv, `[in, out, k]` layout, bias 0.
    w_torch = w.transpose(2, 0, 1).astype(np.float64)
    want = [ref.causal_conv_transpose1d(x[b].astype(np.float64), w_torch, np.zeros(c_out), stride)
            for b in range(B)]
    assert_close(got[:, : L * stride], np.stack(want))


@pytest.mark.parametrize("impl", MATMUL_IMPLS)
def test_an_input_shorter_than_the_kernel_gives_an_empty_output(impl):
    y = conv1d(mx.zeros((1, 6, 4)), mx.zeros((8, 7, 4)), impl=impl)
    assert y.shape == (1, 0, 8)


def test_matmul_builds_im2col_patches_only_while_small(monkeypatch):
    calls = []
    monkeypatch.setattr(layers, "_im2col", lambda taps, w: calls.append("im2col") or layers._tap_sum(taps, w))
    x, w = mx.zeros((1, 40, 8)), mx.zeros((4, 3, 8))
    monkeypatch.setattr(layers, "IM2COL_MAX_ELEMENTS", 3 * 38 * 8)
    conv1d(x, w, impl="matmul")
    monkeypatch.setattr(layers, "IM2COL_MAX_ELEMENTS", 3 * 38 * 8 - 1)
    conv1d(x, w, impl="matmul")
    assert calls == ["im2col"]


@pytest.mark.parametrize("B,L,c_in,c_out,k,stride,dilation,groups", CONVS)
def test_tap_major_weights_are_the_same_weights(B, L, c_in, c_out, k, stride, dilation, groups):
    """Laid out tap by tap, a weight holds the same values and gives the same products, bit for
    bit (only where each tap's slice lies in memory changes)."""
    x = mx.array(random((B, L, c_in), 8))
    w = mx.array(random((c_out, k, c_in // groups), 9))
    laid = layers.tap_major(w)
    assert laid.shape == w.shape and mx.array_equal(laid, w)
    assert mx.array_equal(layers.tap_major(laid), w)
    want = np.array(conv1d(x, w, stride, dilation, groups, impl="taps"))
    np.testing.assert_array_equal(np.array(conv1d(x, laid, stride, dilation, groups, impl="taps")), want)


def test_low_precision_keeps_its_dtype():
    x = mx.array(random((2, 30, 16), 6)).astype(mx.bfloat16)
    w = mx.array(random((16, 7, 16), 7) / 10).astype(mx.bfloat16)
    got = conv1d(x, w, dilation=3, impl="matmul")
    assert got.dtype == mx.bfloat16
    want = conv1d(x.astype(mx.float32), w.astype(mx.float32), dilation=3, impl="native")
    assert_close(np.array(got.astype(mx.float32)), np.array(want), rtol=3e-2)
    assert conv_transpose1d(x, w, 3, impl="matmul").dtype == mx.bfloat16


def test_an_unknown_formulation_is_refused(tokenizer):
    with pytest.raises(ValueError, match="conv impl"):
        use_impls(tokenizer.model, "winograd", "numpy")
    with pytest.raises(ValueError, match="conv impl"):
        conv1d(mx.zeros((1, 4, 2)), mx.zeros((2, 1, 2)), impl="fft")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return SpeechTokenizer.from_pretrained(
        write_speech_tokenizer(tmp_path_factory.mktemp("codec_conv"), "tiny-0.6b", seed=0)
    )


@pytest.mark.parametrize("impl", MATMUL_IMPLS)
def test_codec_decodes_and_encodes_alike_with_every_formulation(tokenizer, impl):
    codes = np.random.default_rng(8).integers(0, 2048, (7, 16))
    audio = 0.3 * np.sin(np.linspace(0, 400, 11 * 1920)).astype(np.float32)
    encoder = tokenizer.model.encoder
    use_impls(tokenizer.model, "native", "sin")
    wav, emb = tokenizer.decode(codes), np.array(encoder.embed(mx.array(audio)[None]))
    use_impls(tokenizer.model, impl, "numpy")
    try:
        assert_close(tokenizer.decode(codes), wav, rtol=2e-5)
        # The encoder's quantizer input: the codes themselves could flip on a near-tie.
        assert_close(np.array(encoder.embed(mx.array(audio)[None])), emb, rtol=2e-5)
    finally:
        tokenizer.policy.apply_codec(tokenizer.model)


def test_snake_beta_is_the_same_fused_and_unfused():
    # The GPU runs the compiled SnakeBeta, the CPU NumPy's sin: all are the same function.
    x = 3 * mx.array(random((2, 50, 8), 9))
    alpha, beta = mx.array(random((8,), 10) / 3), mx.array(random((8,), 11) / 3)
    plain = np.array(layers._snake_beta(x, alpha, beta))
    assert_close(np.array(layers._snake_beta_fused(x, alpha, beta)), plain)
    assert_close(np.array(layers._snake_beta_cpu(x, alpha, beta)), plain)


def test_the_cpu_snake_beta_in_blocks_on_threads_gives_the_same_values(monkeypatch):
    """Long inputs are cut into blocks that worker threads share: the same values, bit for bit,
    as in one block, for a length that does not divide into blocks, called from any thread."""
    x = 3 * mx.array(random((1, 9001, 24), 12))
    alpha, beta = mx.array(random((24,), 13) / 3), mx.array(random((24,), 14) / 3)
    assert 9001 * 24 > 3 * layers.SNAKE_BLOCK_ELEMENTS
    blocks = np.array(layers._snake_beta_cpu(x, alpha, beta))
    with ThreadPoolExecutor(1) as pool:
        elsewhere = pool.submit(lambda: np.array(layers._snake_beta_cpu(x, alpha, beta))).result()
    monkeypatch.setattr(layers, "SNAKE_BLOCK_ELEMENTS", x.size)
    one_block = np.array(layers._snake_beta_cpu(x, alpha, beta))
    assert np.array_equal(blocks, one_block) and np.array_equal(elsewhere, one_block)
    assert_close(one_block, np.array(layers._snake_beta(x, alpha, beta)))


def test_the_cpu_snake_beta_takes_views_and_keeps_half_precision():
    x = 3 * mx.array(random((1, 24, 300), 15))
    alpha, beta = mx.array(random((24,), 16) / 3), mx.array(random((24,), 17) / 3)
    view = x.transpose(0, 2, 1)[:, ::2]  # strided, not contiguous
    assert_close(np.array(layers._snake_beta_cpu(view, alpha, beta)),
                 np.array(layers._snake_beta(view, alpha, beta)))
    half = layers._snake_beta_cpu(view.astype(mx.bfloat16), alpha.astype(mx.bfloat16), beta)
    assert half.dtype == mx.bfloat16 and half.shape == view.shape


@pytest.mark.parametrize("scale", [1.0, 30.0, 3e3, 3e4])
def test_the_cpu_snake_beta_is_as_accurate_as_mlx_sin(scale):
    # Real activations times exp(alpha) reach the hundreds: sin's range reduction must hold there.
    z = np.concatenate([scale * random((20_000,), 12), np.arange(-40, 41) * np.pi / 2])
    z = z.astype(np.float32)[None, :, None]
    zero = mx.zeros((1,))  # alpha = beta = 0: x + sin(x)^2 (1 / (1 + 1e-9) rounds to 1)
    exact = z + np.sin(z.astype(np.float64)) ** 2
    ours = np.array(layers._snake_beta_cpu(mx.array(z), zero, zero))
    mlx_sin = np.array(layers._snake_beta(mx.array(z), zero, zero))
    assert np.abs(ours - exact).max() <= max(2 * np.abs(mlx_sin - exact).max(), 5e-7)


def test_streaming_states_keep_copies_of_their_tails_not_their_inputs():
    # A tail sliced as a view would keep the whole 16 MB input alive with it.
    before = mx.get_active_memory()
    conv_state, tail_state = layers.ConvState(6), layers.TailState(6)
    x = mx.random.normal((1, 1_000_000, 4))
    outputs = [conv_state.update(x), tail_state.overlap_add(x)]
    mx.eval(outputs, conv_state.state, tail_state.state)
    del x, outputs
    assert mx.get_active_memory() - before < 2**20


# --------------------------------------------------------------------------- the compute policy


def test_the_policy_picks_formulations_for_the_device():
    gpu, cpu = ComputePolicy.choose(mx.gpu), ComputePolicy.choose(mx.cpu)
    assert (gpu.conv, gpu.snake, gpu.dtype, gpu.float32_matmuls) == ("native", "sin", None, False)
    assert (cpu.conv, cpu.snake, cpu.dtype, cpu.float32_matmuls) == ("matmul", "numpy", mx.float32, True)
    assert ComputePolicy.choose(mx.cpu, mx.bfloat16).dtype == mx.bfloat16


def test_a_cpu_codec_keeps_freed_buffers_and_never_lowers_a_larger_cache_limit(tmp_path_factory):
    folder = write_speech_tokenizer(tmp_path_factory.mktemp("cache"), "tiny-0.6b", seed=0)
    previous = mx.set_cache_limit(0)
    try:
        SpeechTokenizer.from_pretrained(folder, device="cpu")
        assert mx.set_cache_limit(8 << 30) == CPU_CACHE_LIMIT
        SpeechTokenizer.from_pretrained(folder, device="cpu")
        assert mx.set_cache_limit(0) == 8 << 30
    finally:
        mx.set_cache_limit(previous)


def test_the_cpu_lays_out_the_tap_sums_weights_tap_major_and_decodes_the_same(tokenizer, monkeypatch):
    """`use_impls(..., "matmul")` gives "taps" over tap-major weights to every conv with a
    kernel > 1, not grouped, that does not widen, "native" the checkpoint's layout back; the
    audio is the same bit for bit in either layout."""
    convs = {name: m for name, m in tokenizer.model.named_modules()
             if isinstance(m, layers.CausalConv1d) and m.conv.groups == 1 and m.conv.weight.shape[1] > 1}
    narrowing = {name for name, m in convs.items() if m.conv.weight.shape[2] >= m.conv.weight.shape[0]}
    assert narrowing and set(convs) - narrowing  # both kinds are there to tell apart
    laid = []
    tap_major = layers.tap_major
    monkeypatch.setattr(layers, "tap_major", lambda w: laid.append(w.shape) or tap_major(w))
    codes = np.random.default_rng(5).integers(0, 2048, (5, 16))
    try:
        use_impls(tokenizer.model, "native", "numpy")
        assert laid == []
        use_impls(tokenizer.model, "matmul", "numpy")
        assert {name for name, m in convs.items() if m.impl == "taps"} == narrowing
        assert {m.impl for name, m in convs.items() if name not in narrowing} == {"matmul"}
        assert len(laid) == len(narrowing)
        tap_major_audio = tokenizer.decode(codes)
        monkeypatch.setattr(layers, "tap_major", mx.contiguous)  # the checkpoint's layout for "taps"
        use_impls(tokenizer.model, "matmul", "numpy")
        np.testing.assert_array_equal(tokenizer.decode(codes), tap_major_audio)
    finally:
        monkeypatch.undo()
        tokenizer.policy.apply_codec(tokenizer.model)


def test_two_policies_live_in_one_process(tmp_path_factory):
    """No process-wide switch: a model made for a GPU and one for the CPU keep their own choices."""
    folder = write_speech_tokenizer(tmp_path_factory.mktemp("policies"), "tiny-0.6b", seed=0)
    as_gpu = ComputePolicy(mx.cpu, None, False, "native", "sin")  # a GPU's choices, run on the CPU
    a = SpeechTokenizer.from_pretrained(folder, policy=as_gpu)
    b = SpeechTokenizer.from_pretrained(folder, device="cpu")
    def kinds(tok):
        return {(type(m).__name__, m.impl) for _, m in tok.model.named_modules() if hasattr(m, "impl")}

    gpu_like = {("CausalConv1d", "native"), ("CausalConvTranspose1d", "native"), ("SnakeBeta", "sin")}
    assert kinds(a) == gpu_like
    cpu = {("CausalConv1d", "matmul"), ("CausalConv1d", "taps"), ("CausalConvTranspose1d", "matmul"),
           ("SnakeBeta", "numpy")}
    assert kinds(b) == cpu
    codes = np.random.default_rng(3).integers(0, 2048, (6, 16))
    assert_close(a.decode(codes), b.decode(codes), rtol=2e-5)
    assert kinds(a) == gpu_like
