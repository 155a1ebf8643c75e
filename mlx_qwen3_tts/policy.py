"""How a loaded model computes: one `ComputePolicy` per model, chosen at load for its device.

Every device-dependent choice lives here and nowhere else, held by the model it applies to (no
process-wide switch of ours; MLX's default device is process-wide, so loaded models share one
device, `runtime.ModelThread`):

* the talker's activation dtype: on a GPU, as released (bf16, quantized matmuls as stored); on
  the CPU never bf16 by default (MLX's CPU bf16 and quantized kernels are several times slower
  than float32 through BLAS): float checkpoints compute in float32, quantized ones keep their
  packed weights with float32 scales and activations;
* half-precision and quantized Linears multiply in float32 on the CPU, and one-row float32
  products use both cores (`models/cpu_matmul.py`);
* RoPE in a cached step: each block's `mx.fast.rope` (a kernel on a GPU), or on the CPU its
  cos and sin computed once per step for every block (`models/base.py`, `rope_rows`);
* the codec's convolutions (MLX's kernels on a GPU, BLAS matmuls on the CPU) and SnakeBeta (the
  GPU's fused sin, NumPy's SIMD sin on the CPU) and, on the CPU, MLX's buffer cache;
* on Metal, the wired-memory limit for the model's weights, given back when the last model stops.

A converted folder records only how its weights are stored; how they are computed is decided
here, for the device at hand.
"""

import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from .blas import blas
from .errors import ModelLoadError
from .models.base import use_rope_rows
from .models.codec.layers import ConvImpl, SnakeImpl, use_impls
from .models.cpu_matmul import MatvecImpl, use_float32_matmuls, use_threaded_matvecs

log = logging.getLogger("mlx_qwen3_tts")


class _Wiring:
    """MLX's wired limit is one per process: raised while any model is wired, then put back."""

    def __init__(self):
        self.lock = threading.Lock()
        self.models = 0
        self.unwired = 0  # the limit before the first model was wired

    def wire(self, limit: int) -> None:
        with self.lock:
            previous = mx.set_wired_limit(limit)
            if self.models == 0:
                self.unwired = previous
            self.models += 1

    def unwire(self) -> None:
        with self.lock:
            self.models -= 1
            if self.models == 0:
                mx.set_wired_limit(self.unwired)


_wiring = _Wiring()


def parse_device(device: str | mx.Device | None) -> mx.Device:
    """`"cpu"`, `"gpu"`, an `mx.Device` or None (MLX's default: the GPU on Apple silicon)."""
    if device is None:
        return mx.default_device()
    if isinstance(device, str):
        if device not in ("cpu", "gpu"):
            raise ModelLoadError(f"`device` {device!r} is not 'cpu' or 'gpu'.", "device")
        device = mx.gpu if device == "gpu" else mx.cpu
    if not isinstance(device, (mx.Device, mx.DeviceType)):
        raise ModelLoadError(f"`device` must be 'cpu', 'gpu' or an mx.Device, got {device!r:.60}.", "device")
    device = _as_device(device)
    if not mx.is_available(device):
        raise ModelLoadError(
            f"`device` {device} is not available in this MLX build (no Metal or CUDA backend); "
            "use the CPU.", "device")
    return device


def _name(dtype: mx.Dtype | None) -> str:
    return "as stored" if dtype is None else str(dtype).removeprefix("mlx.core.")


def cpu_vendor() -> str:
    """The CPU's vendor string on Linux ("GenuineIntel", "AuthenticAMD"), else ""."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _cpu_matvec() -> MatvecImpl:
    # Measured on Linux, 2 cores (bench/kernel_speed.py, one row through 35 talker Linears):
    # MKL threads a one-row product itself on Intel CPUs (14.2 ms; as two rows 15.0), but not on
    # AMD ones, where the row twice runs on both cores (15.8 -> 7.6 ms); the bundled BLAS threads
    # nothing (76 ms; two streams 55). On a Mac the CPU is the fallback device and Accelerate
    # threads its own products: left as it is there.
    if sys.platform == "darwin":
        return "blas"
    if not blas().startswith("MKL"):
        return "two_streams"
    return "blas" if cpu_vendor() == "GenuineIntel" else "two_rows"


def _as_device(device: mx.Device | mx.DeviceType) -> mx.Device:
    # `mx.cpu` / `mx.gpu` name a kind of device, not a device.
    return mx.Device(device) if isinstance(device, mx.DeviceType) else device


CPU_CACHE_LIMIT = 1 << 30


def _keep_freed_buffers() -> None:
    # MLX's CPU allocator keeps only 32 MiB of freed buffers by default and hands the rest back to
    # the OS, so a decode's signals (tens of MB at its last stages) were page-faulted in afresh at
    # every layer: with 1 GiB kept, a 75-frame CPU decode took 0.56 instead of 0.69 s per audio
    # second (an ad-hoc A/B; `bench/codec_speed.py` times decodes). The limit is the process's:
    # only ever raised, never below a user's choice.
    previous = mx.set_cache_limit(CPU_CACHE_LIMIT)
    if previous > CPU_CACHE_LIMIT:
        mx.set_cache_limit(previous)


@dataclass(frozen=True)
class ComputePolicy:
    """Device, dtype and kernel formulations of one model.

    Attributes:
        device: where its arrays are computed.
        dtype: the talker's float tensors (None: as stored). The speaker encoder and the codec
            always compute in float32.
        float32_matmuls: half-precision and quantized Linears multiply in float32 (CPU).
        conv: how the codec computes its convolutions (`models/codec/layers.conv1d`).
        snake: how it computes SnakeBeta ("sin" or "numpy").
        matvec: how the talker's one-row float32 products use the cores: "blas" (as BLAS
            does it), "two_rows" (MKL on an AMD CPU) or "two_streams" (`models/cpu_matmul.py`).
        rope_rows: a cached step computes RoPE's cos and sin once for all blocks (CPU).
    """

    device: mx.Device
    dtype: mx.Dtype | None
    float32_matmuls: bool
    conv: ConvImpl
    snake: SnakeImpl
    matvec: MatvecImpl = "blas"
    rope_rows: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", _as_device(self.device))

    @classmethod
    def choose(cls, device: mx.Device, dtype: mx.Dtype | None = None) -> "ComputePolicy":
        """The fast choice for `device`; `dtype` None means as released on a GPU, float32 on the CPU."""
        gpu = _as_device(device).type == mx.DeviceType.gpu
        if dtype is None and not gpu:
            dtype = mx.float32
        return cls(device, dtype, float32_matmuls=not gpu, conv="native" if gpu else "matmul",
                   snake="sin" if gpu else "numpy", matvec="blas" if gpu else _cpu_matvec(),
                   rope_rows=not gpu)

    @property
    def on_gpu(self) -> bool:
        return self.device.type == mx.DeviceType.gpu

    def apply_talker(self, model: nn.Module) -> None:
        """Give a loaded talker (+ speaker encoder) this policy's Linear products."""
        if self.float32_matmuls:
            use_float32_matmuls(model)
        use_threaded_matvecs(model, self.matvec)
        if self.rope_rows:
            use_rope_rows(model)

    def apply_codec(self, codec: nn.Module) -> None:
        """Give a loaded speech tokenizer this policy's convolutions and SnakeBeta (and, on the
        CPU, the buffer cache its decode needs)."""
        use_impls(codec, self.conv, self.snake)
        if not self.on_gpu:
            _keep_freed_buffers()

    def wire(self, *models: nn.Module) -> Callable[[], None] | None:
        """On Metal, keep the weights wired (resident) while the model lives, as mlx-lm does while
        it generates. Returns what to call once the model has stopped: the last wired model to
        stop gives the limit back to what it was (None off Metal)."""
        if not (self.on_gpu and mx.metal.is_available()):
            return None
        size = sum(v.nbytes for m in models for _, v in tree_flatten(m.parameters()))
        # `mx.device_info`, not `mx.metal.device_info`: MLX 0.32 prints a deprecation notice for
        # the latter, which every Mac user would see at each load.
        limit = mx.device_info(self.device)["max_recommended_working_set_size"]
        if size > 0.9 * limit:
            log.warning("The model needs %.1f GB, close to this Mac's recommended working set of %.1f GB: "
                        "generation may be slow; try a quantized or smaller checkpoint.", size / 1e9,
                        limit / 1e9)
        _wiring.wire(limit)
        return _wiring.unwire

    def describe(self, stored: mx.Dtype) -> str:
        """One line: device, the talker's dtypes, and the BLAS under float32 products."""
        computed = self.dtype or stored
        where = "GPU" if self.on_gpu else "CPU"
        line = f"{where}, talker weights stored {_name(stored)}, computed in {_name(computed)}"
        if not self.on_gpu:
            line += f", BLAS: {blas()}"
            if self.matvec != "blas":
                line += f", one-row products as {self.matvec.replace('_', ' ')}"
        return line
