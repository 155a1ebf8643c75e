"""Host syncs of a frame loop, counted and timed, for `bench/host_time.py` (MLX runners only).

On a GPU a 0.6B frame is milliseconds of device work, so what the host does per frame (building
the graph, dispatching it, waiting for results) decides frames/s. A *sync* is a call that makes
the host wait for MLX results. While a `SyncCounter` is active it wraps, on the thread that
entered it:

* `mx.eval` and `mx.synchronize`;
* the `mx.array` methods that read data: `item`, `tolist`, `__bool__`, `__int__`, `__float__`,
  `__index__`, `__array__` (set on the type, so `bool(x)`, `int(x)` and `if x:` are seen too);
* `numpy.array`, `numpy.asarray` and `numpy.asanyarray` when given an `mx.array`: numpy reads MLX
  arrays through the buffer protocol, not `__array__`, so the numpy functions themselves are
  wrapped (library code looks them up as `np.array` at call time).

`mx.async_eval` is counted apart: it dispatches work and does not wait. A sync inside another
(`np.array` of an array whose `__array__` runs) counts once. Not seen: C code that takes the
buffer of an MLX array directly (`np.stack` of MLX arrays, `memoryview`), counted as host time.

Time spent inside syncs is "blocked" (it includes the graph traversal and dispatch `mx.eval`
does before it waits); wall minus blocked is the host's own time. The thread's CPU time
(`time.thread_time`) is a second, independent measure of host work: MLX runs its kernels on its
own stream threads (and the BLAS's), and waits without spinning, so the calling thread's CPU
time is graph building, dispatch and Python, whatever the device.
"""

import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import numpy as np

ARRAY_METHODS = ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "__array__")
NUMPY_FUNCTIONS = ("array", "asarray", "asanyarray")


@dataclass
class Mark:
    """The counters at one instant (a frame boundary)."""

    wall: float
    cpu: float
    blocked: float
    counts: dict[str, int]
    async_evals: int


@dataclass
class SyncCounter:
    """`with SyncCounter() as syncs: ... syncs.mark() ...`: see the module docstring."""

    counts: Counter = field(default_factory=Counter)
    blocked: float = 0.0
    async_evals: int = 0
    _depth: int = 0
    _thread: int | None = None
    _saved: list[tuple[Any, str, Any]] = field(default_factory=list)

    def __enter__(self) -> "SyncCounter":
        self._thread = threading.get_ident()
        self._patch(mx, "eval", self._sync("eval", mx.eval))
        self._patch(mx, "synchronize", self._sync("synchronize", mx.synchronize))
        self._patch(mx, "async_eval", self._dispatch(mx.async_eval))
        for name in ARRAY_METHODS:
            if hasattr(mx.array, name):  # `__index__` came with MLX 0.32.4
                self._patch(mx.array, name, self._sync(name, getattr(mx.array, name)))
        for name in NUMPY_FUNCTIONS:
            self._patch(np, name, self._sync(f"numpy.{name}", getattr(np, name), _holds_mlx))
        return self

    def __exit__(self, *exc) -> None:
        while self._saved:
            owner, name, original = self._saved.pop()
            setattr(owner, name, original)

    def mark(self) -> Mark:
        return Mark(time.perf_counter(), time.thread_time(), self.blocked, dict(self.counts),
                    self.async_evals)

    def _patch(self, owner: Any, name: str, wrapper: Callable) -> None:
        self._saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, wrapper)

    def _sync(self, kind: str, fn: Callable, applies: Callable[..., bool] | None = None) -> Callable:
        def wrapper(*args, **kwargs):
            if (self._depth or threading.get_ident() != self._thread
                    or (applies is not None and not applies(*args))):
                return fn(*args, **kwargs)
            self._depth += 1
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.blocked += time.perf_counter() - start
                self.counts[kind] += 1
                self._depth -= 1

        return wrapper

    def _dispatch(self, fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            if threading.get_ident() == self._thread:
                self.async_evals += 1
            return fn(*args, **kwargs)

        return wrapper


def _holds_mlx(obj: Any = None, *args) -> bool:
    if isinstance(obj, mx.array):
        return True
    return isinstance(obj, (list, tuple)) and any(isinstance(o, mx.array) for o in obj[:4])


def per_frame(marks: list[Mark]) -> dict[str, Any]:
    """Per-frame numbers from consecutive frame boundaries: medians of times, means of counts."""
    if len(marks) < 2:
        return {"error": f"{len(marks)} frame boundaries seen; need at least 2"}
    steps = list(zip(marks, marks[1:]))
    wall = [b.wall - a.wall for a, b in steps]
    blocked = [b.blocked - a.blocked for a, b in steps]
    kinds = sorted({k for m in marks for k in m.counts})
    by_kind = {k: (marks[-1].counts.get(k, 0) - marks[0].counts.get(k, 0)) / len(steps) for k in kinds}
    ms = 1000.0
    return {
        "frames": len(steps),
        "wall_ms": ms * statistics.median(wall),
        "blocked_ms": ms * statistics.median(blocked),
        "host_ms": ms * statistics.median(w - b for w, b in zip(wall, blocked)),
        "cpu_ms": ms * statistics.median(b.cpu - a.cpu for a, b in steps),
        "wall_ms_mean": ms * statistics.fmean(wall),
        "syncs": sum(by_kind.values()),
        "by_kind": {k: v for k, v in by_kind.items() if v},
        "async_evals": (marks[-1].async_evals - marks[0].async_evals) / len(steps),
    }
