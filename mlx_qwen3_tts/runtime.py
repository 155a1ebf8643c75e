"""One thread per loaded model for all of its MLX work.

MLX streams are thread-local (since MLX 0.31.2 on every device): a stream made on one thread
cannot be used on another, and a thread that did MLX work must end it with `mx.synchronize()`
and `mx.clear_streams()`, or the process can abort at exit ("terminate called without an active
exception", MLX 0.32.4). So a model owns one `ModelThread`: loading, generation, streaming,
text sessions and the server's batches all run there, whichever thread calls them, and the
thread clears its streams when it stops (when the model is closed or collected, or at exit).
Callers on other threads only wait for results; they never touch MLX. A caller that stops
waiting (Ctrl-C while `generate` runs) abandons its call: one not started never runs, one that
runs ends at its next `check_abandoned()` (the frame loop calls it every frame), so the thread
is free for the next call within a frame instead of finishing audio nobody will read.
"""

import atexit
import queue
import threading
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import ExitStack
from typing import Any, TypeVar

import mlx.core as mx

T = TypeVar("T")
_STOP = object()
_DONE = object()
_live: "weakref.WeakSet[ModelThread]" = weakref.WeakSet()
_running = threading.local()  # on a model thread: the `_Call` it is running


class Abandoned(RuntimeError):
    """Raised on a model thread inside a call whose caller stopped waiting for its result."""


class _Call(Future):
    abandoned = False  # set by the caller that stopped waiting while the call ran


def check_abandoned() -> None:
    """Raise `Abandoned` if this is a model thread whose current call's caller stopped waiting
    for it; do nothing anywhere else. Cheap: long loops call it at every step."""
    call = getattr(_running, "call", None)
    if call is not None and call.abandoned:
        raise Abandoned("The caller stopped waiting for this call.")


def live_device_types() -> set[mx.DeviceType]:
    """The kinds of device the live model threads of this process run on."""
    return {t.device.type for t in list(_live) if t.alive}


class ModelThread:
    """Runs callables on one daemon thread whose default stream is on `device`.

    Calls from the thread itself run directly (re-entrant), so methods that call each other
    need no care; calls from any other thread wait for the result or re-raise its exception.
    """

    def __init__(self, device: mx.Device, name: str = "mlx-qwen3-tts"):
        self.device = device
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._lock = threading.Lock()
        self._stopped = False
        self._closed = "This model has been closed; load it again."  # what calls get once stopped
        self._thread.start()
        _live.add(self)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stopped

    def on_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` on this thread; its result, or its exception re-raised here."""
        if self.on_thread():
            return fn(*args, **kwargs)
        future = _Call()
        with self._lock:
            if self._stopped:
                raise RuntimeError(self._closed)
            self._tasks.put((fn, args, kwargs, future))
        try:
            return future.result()
        finally:
            # Interrupted while waiting (KeyboardInterrupt): a call still queued never runs, one
            # that runs stops at its next `check_abandoned()`.
            if not future.done() and not future.cancel():
                future.abandoned = True

    def iterate(self, make: Callable[[], Iterator[T]]) -> Iterator[T]:
        """Items of the iterator `make()` builds, each produced on this thread when asked for.

        Nothing runs ahead of the consumer, and other calls can run between two items (another
        stream, a `generate`). Closing this iterator closes the inner one, on this thread.
        """
        inner = self.run(make)
        try:
            while True:
                item = self.run(next, inner, _DONE)
                if item is _DONE:
                    return
                yield item
        finally:
            if self.alive or self.on_thread():
                self.run(inner.close)

    def stop(self, timeout: float | None = 30.0) -> None:
        """Finish the queued calls, end this thread's MLX work and let it exit."""
        with self._lock:
            if not self._stopped:
                self._stopped = True
                self._tasks.put(_STOP)
        # Joined by every stop, not the first only: a `close()` that gave up on a long generation
        # must not make the exit's stop skip the wait, or the interpreter can finalize while the
        # thread still ends its MLX work (an abort: "terminate called without an active exception").
        if not self.on_thread():
            self._thread.join(timeout)

    def _serve(self) -> None:
        with ExitStack() as stack:
            try:
                stack.enter_context(mx.stream(self.device))
            except (RuntimeError, ValueError, IndexError) as e:  # a device this build lacks: no stream
                self._refuse_all(e)
                return
            while (task := self._tasks.get()) is not _STOP:
                fn, args, kwargs, future = task
                if not future.set_running_or_notify_cancel():
                    continue
                _running.call = future
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as e:  # handed to the caller, who re-raises it
                    future.set_exception(e)
                _running.call = None
                del task, fn, args, kwargs, future  # hold no references while idle
            mx.synchronize()
        mx.clear_streams()

    def _refuse_all(self, error: Exception) -> None:
        # Every call queued or to come fails with the reason, instead of waiting for a thread
        # that is gone.
        with self._lock:
            self._stopped = True
            self._closed = f"This model's thread could not start on {self.device}: {error}"
        while not self._tasks.empty():
            task = self._tasks.get()
            if task is not _STOP and task[3].set_running_or_notify_cancel():
                task[3].set_exception(RuntimeError(self._closed))


@atexit.register
def _stop_all() -> None:
    # atexit runs while daemon threads still live: stop each so it clears its streams first.
    for thread in list(_live):
        thread.stop(timeout=10.0)
