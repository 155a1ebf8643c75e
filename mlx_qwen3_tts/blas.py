"""The BLAS under MLX's float32 products on Linux x86-64: Intel MKL, loaded before `mlx.core`.

MLX's CPU backend sends every float32 matmul, the one-row products of decoding included, to
`cblas_sgemm`, and its Linux wheel links a slow reference BLAS. MKL (a dependency of this package
on Linux x86-64) streams those products at memory speed. Loaded into the process's global symbol
scope before MLX's library is, its `cblas_sgemm` is the one MLX binds; loaded after, most calls
stay on the bundled BLAS. The package's `__init__` calls `load_mkl()` first thing, so a plain
`import mlx_qwen3_tts` is fast with no LD_PRELOAD. `MLX_QWEN3_TTS_MKL=0` keeps the bundled BLAS.

This module imports nothing from MLX (it must run before MLX is imported).
"""

import ctypes
import glob
import os
import platform
import re
import site
import sys
import warnings

ENV_SWITCH = "MLX_QWEN3_TTS_MKL"
_loaded: list[str] = []  # what `load_mkl` found, once per process (BLAS is a process-wide fact)


def _library_dirs() -> list[str]:
    # pip puts the mkl wheel's libraries in <prefix>/lib (a venv, the system, or --user's base).
    prefixes = [sys.prefix, sys.base_prefix, site.getuserbase()]
    return [os.path.join(p, "lib") for p in dict.fromkeys(prefixes) if p]


def find_mkl() -> str | None:
    """The path of `libmkl_rt.so.*` from the `mkl` package, or None."""
    for folder in _library_dirs():
        found = sorted(glob.glob(os.path.join(folder, "libmkl_rt.so*")))
        if found:
            return found[-1]
    return None


def load_mkl() -> str:
    """Load MKL before MLX if this platform can use it; returns what BLAS MLX will use (`blas()`)."""
    if _loaded:
        return _loaded[0]
    _loaded.append(_load())
    return _loaded[0]


def _load() -> str:
    if sys.platform == "darwin":
        return "Accelerate"
    if not (sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64")):
        return "MLX's bundled BLAS"
    preloaded = [p for p in re.split(r"[:\s]+", os.environ.get("LD_PRELOAD", "")) if "libmkl_rt" in p]
    if preloaded:  # the dynamic linker put it first already
        _mkl_settings()
        return f"MKL (LD_PRELOAD {os.path.basename(preloaded[0])})"
    if os.environ.get(ENV_SWITCH, "1") == "0":
        return f"MLX's bundled BLAS ({ENV_SWITCH}=0)"
    path = find_mkl()
    if path is None:
        return "MLX's bundled BLAS (mkl is not installed: pip install mkl)"
    if "mlx.core" in sys.modules:
        warnings.warn(
            "mlx.core was imported before mlx_qwen3_tts, so MLX keeps its slow bundled BLAS for "
            "float32 products; import mlx_qwen3_tts first (or start Python with "
            f"LD_PRELOAD={path}).", RuntimeWarning, stacklevel=3)
        return "MLX's bundled BLAS (mlx.core was imported before mlx_qwen3_tts)"
    _mkl_settings()
    try:
        ctypes.CDLL(path, mode=os.RTLD_GLOBAL)
    except OSError as e:  # a broken install: keep working, slower
        return f"MLX's bundled BLAS (MKL failed to load: {e})"
    return f"MKL ({os.path.basename(path)})"


def _mkl_settings() -> None:
    # Unless the user chose a mode, MKL's conditional numerical reproducibility: the same results
    # run to run whatever the memory alignment of MLX's buffers (`MKL_CBWR`). MKL reads it at its
    # first call, so this works after a preload too. It is also faster: without it a 0.6B
    # float32 generation took a third longer on an AMD EPYC (2 threads, mkl 2026.2).
    os.environ.setdefault("MKL_CBWR", "AUTO")


def blas() -> str:
    """What BLAS MLX's float32 products use in this process."""
    return _loaded[0] if _loaded else "not chosen yet"
