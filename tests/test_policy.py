"""The compute policy: fast defaults for the device, MKL under MLX on Linux, one line saying so."""

import json
import logging
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

import mlx_qwen3_tts as qt
from mlx_qwen3_tts import blas

REPO = Path(__file__).resolve().parents[1]
LINUX_X86 = sys.platform.startswith("linux") and platform.machine() == "x86_64"


def python(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, **env,
                   "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment,
                          timeout=120)


@pytest.mark.parametrize("switch,expected", [("1", "MKL (libmkl_rt.so"), ("0", "MLX's bundled BLAS")])
def test_mkl_is_loaded_before_mlx_without_ld_preload(switch, expected):
    """On Linux x86-64 `mkl` is a dependency; `import mlx_qwen3_tts` puts it under MLX."""
    if not LINUX_X86:
        assert blas.load_mkl() in ("Accelerate", "MLX's bundled BLAS")
        return
    probe = python("import mlx_qwen3_tts, mlx_qwen3_tts.blas as b, sys; print(b.blas()); "
                   "print(any('libmkl_rt' in line for line in open('/proc/self/maps')))",
                   MLX_QWEN3_TTS_MKL=switch)
    assert probe.returncode == 0, probe.stderr
    label, mapped = probe.stdout.split("\n")[:2]
    assert label.startswith(expected) and mapped == str(switch == "1")


def test_importing_mlx_first_warns_once_and_carries_on():
    probe = python("import warnings; warnings.simplefilter('always'); import mlx.core; "
                   "import mlx_qwen3_tts, mlx_qwen3_tts.blas as b; b.load_mkl(); print(b.blas())")
    assert probe.returncode == 0, probe.stderr
    if LINUX_X86:
        assert probe.stderr.count("import mlx_qwen3_tts first") == 1
        assert "imported before mlx_qwen3_tts" in probe.stdout
    else:  # nothing to load elsewhere, so nothing to warn about
        assert "import mlx_qwen3_tts first" not in probe.stderr


def test_cpu_default_is_float32_and_the_load_line_says_so(checkpoint, caplog):
    with caplog.at_level(logging.INFO, logger="mlx_qwen3_tts"):
        tts = qt.load(checkpoint("tiny-0.6b", "custom_voice"), device="cpu")
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("Loaded "))
    assert "CPU, talker weights stored bfloat16, computed in float32, BLAS: " in line
    assert blas.blas() in line
    assert tts.model.talker.model.layers[0].mlp.up_proj.weight.dtype == mx.float32
    assert tts.model.talker.model.rope_rows and tts.model.talker.code_predictor.model.rope_rows
    half = qt.load(checkpoint("tiny-0.6b", "custom_voice"), dtype="bfloat16")
    assert half.model.talker.model.norm.weight.dtype == mx.bfloat16


def test_a_gpu_policy_keeps_the_released_dtype():
    policy = qt.ComputePolicy.choose(mx.gpu)
    assert policy.dtype is None and not policy.float32_matmuls and not policy.rope_rows
    assert qt.ComputePolicy.choose(mx.cpu).rope_rows
    assert "GPU, talker weights stored bfloat16, computed in bfloat16" == policy.describe(mx.bfloat16)


def test_an_old_folder_recording_an_activation_dtype_loads_as_any_other(checkpoint, tmp_path):
    """Earlier converted folders wrote `activation_dtype`; it is ignored, the device decides."""
    from mlx_qwen3_tts.convert import convert

    out = convert(str(checkpoint("tiny-q", "custom_voice")), tmp_path / "q8", quantize=True)
    config = json.loads((out / "config.json").read_text())
    old = shutil.copytree(out, tmp_path / "old")
    config["quantization"]["activation_dtype"] = "bfloat16"
    (old / "config.json").write_text(json.dumps(config))
    new_tts, old_tts = qt.load(out, device="cpu"), qt.load(old, device="cpu")
    layer = "talker.model.layers.0.self_attn.q_proj"
    assert dict(old_tts.model.named_modules())[layer].scales.dtype == mx.float32
    a = new_tts.generate("hello there.", speaker="ryan", seed=0, max_frames=3)
    b = old_tts.generate("hello there.", speaker="ryan", seed=0, max_frames=3)
    np.testing.assert_array_equal(a.codes, b.codes)


def test_a_preloaded_mkl_is_reported_as_mkl():
    """LD_PRELOAD put MKL under MLX already: the policy must know (its matvec choice follows)."""
    if not LINUX_X86:
        pytest.skip("MKL is a dependency on Linux x86-64 only")
    path = blas.find_mkl()
    assert path is not None, "the mkl package is a dependency here"
    probe = python("import mlx_qwen3_tts, mlx_qwen3_tts.blas as b, mlx.core as mx; print(b.blas()); "
                   "from mlx_qwen3_tts.policy import ComputePolicy as P, cpu_vendor; "
                   "mkl_matvec = 'blas' if cpu_vendor() == 'GenuineIntel' else 'two_rows'; "
                   "print(P.choose(mx.cpu).matvec == mkl_matvec); "
                   "import os; print(os.environ.get('MKL_CBWR'))",
                   LD_PRELOAD=f"/nonexistent.so:{path}", MLX_QWEN3_TTS_MKL="0")
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split("\n")[:3] == [f"MKL (LD_PRELOAD {os.path.basename(path)})", "True", "AUTO"]


def test_wiring_on_metal_uses_the_current_device_info_api(monkeypatch, caplog):
    """The Metal path (never run here): the wired limit comes from `mx.device_info` for the
    policy's device, not from the deprecated `mx.metal.device_info` (MLX 0.32 prints a notice
    for it at every load), and a model near the limit is warned about."""
    def deprecated():
        raise AssertionError("mx.metal.device_info is deprecated")

    asked, wired = [], []
    monkeypatch.setattr(mx.metal, "is_available", lambda: True)
    monkeypatch.setattr(mx.metal, "device_info", deprecated)
    monkeypatch.setattr(mx, "device_info", lambda d=None: asked.append(d) or
                        {"max_recommended_working_set_size": 1000})
    monkeypatch.setattr(mx, "set_wired_limit", lambda limit: wired.append(limit) or 0)
    policy = qt.ComputePolicy.choose(mx.gpu)
    unwire = [policy.wire(nn.Linear(8, 8, bias=False))]  # 256 bytes: far from the limit
    assert (asked, wired) == ([policy.device], [1000])
    with caplog.at_level(logging.WARNING, logger="mlx_qwen3_tts"):
        unwire.append(policy.wire(nn.Linear(16, 16, bias=False)))  # 1,024 bytes > 0.9 x 1,000
    assert wired == [1000, 1000] and "recommended working set" in caplog.text
    qt.ComputePolicy.choose(mx.cpu).wire(nn.Linear(8, 8))  # the CPU never wires
    assert wired == [1000, 1000]
    for fn in unwire:  # the models stop: the limit goes back
        fn()
    assert wired == [1000, 1000, 0]


def test_the_wired_limit_is_given_back_when_the_last_wired_model_stops(monkeypatch):
    """It stayed at the working-set size for the process's life after every model was closed."""
    limit = {"now": 7}

    def set_wired_limit(new):
        old, limit["now"] = limit["now"], new
        return old

    monkeypatch.setattr(mx.metal, "is_available", lambda: True)
    monkeypatch.setattr(mx, "device_info", lambda d=None: {"max_recommended_working_set_size": 1000})
    monkeypatch.setattr(mx, "set_wired_limit", set_wired_limit)
    policy = qt.ComputePolicy.choose(mx.gpu)
    first, second = policy.wire(nn.Linear(8, 8)), policy.wire(nn.Linear(8, 8))
    assert limit["now"] == 1000
    first()
    assert limit["now"] == 1000  # the other model still runs
    second()
    assert limit["now"] == 7
    assert qt.ComputePolicy.choose(mx.cpu).wire(nn.Linear(8, 8)) is None


def test_a_models_unwiring_runs_on_its_thread_when_it_stops(checkpoint, monkeypatch):
    """After its last call's MLX work: MLX's wired limit must not change under a computation."""
    import threading

    ran = []
    monkeypatch.setattr(qt.ComputePolicy, "wire", lambda self, *models: lambda: ran.append(
        threading.current_thread().name))
    tts = qt.load(checkpoint(), dtype="float32")
    tts.generate("Hi.", speaker="vivian", max_frames=2)
    assert ran == []
    tts.close()
    assert ran == ["mlx-qwen3-tts-Device(cpu, 0)"]


def test_models_on_two_kinds_of_device_are_refused_in_one_process(checkpoint):
    """MLX's default device is process-wide and `mx.stream` sets it for every thread: a CPU
    model's thread and a GPU model's would switch each other's computations. (Tested from the
    CPU side: this build has no GPU to start a thread on.)"""
    cpu = qt.load(checkpoint(), device="cpu")
    with pytest.raises(qt.ModelLoadError, match="A model on the CPU is loaded in this process") as info:
        qt.load(checkpoint(), policy=qt.ComputePolicy.choose(mx.gpu))  # refused before its thread starts
    assert info.value.param == "device"
    second = qt.load(checkpoint(), device="cpu")  # the same kind of device: fine
    assert cpu.generate("Hi.", speaker="ryan", max_frames=2).frames == second.generate(
        "Hi.", speaker="ryan", max_frames=2).frames == 2


def test_a_policy_for_a_missing_device_is_refused_not_waited_on(checkpoint, monkeypatch):
    """A GPU policy on a build without a GPU: the model's thread died entering mx.stream(gpu) and
    load() waited for it forever (pytest-timeout ended the run)."""
    from mlx_qwen3_tts import loading

    available = mx.is_available
    monkeypatch.setattr(mx, "is_available", lambda d: d != mx.gpu and available(d))  # any build
    monkeypatch.setattr(loading, "live_device_types", set)  # as if no other model were loaded
    with pytest.raises(qt.ModelLoadError, match="not available in this MLX build"):
        qt.load(checkpoint(), policy=qt.ComputePolicy.choose(mx.gpu))
