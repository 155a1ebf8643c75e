"""One thread per loaded model for all of its MLX work.

MLX streams are thread-local (since MLX 0.31.2 on every device): a stream made on one thread
cannot be used on another, and a thread that did MLX work must end it with `mx.synchronize()`
and `mx.clear_streams()`, or the process can abort at exit ("terminate called without an active
exception", MLX 0.32.4). So a model owns one `ModelThread`: loading, generation, streaming,
text sessions and the server's batches all run there, whichever thread calls them. Callers on
other threads only wait for results; they never touch MLX.

The OS threads under model threads are kept for the process's life and reused: MLX never ends
the native thread of a thread's CPU stream (`mx.clear_streams()` does not, 0.32.4), nor MKL the
OpenMP team of a thread that called it, so an OS thread per loaded model leaked 1-2 native
threads and 3-40 MB with every load and close. A `_Worker` serves one model thread at a time,
from its `mx.stream(device)` to its stop, then waits for the next model on that device; at exit
each worker synchronizes and clears its streams.

A caller that stops waiting (Ctrl-C while `generate` runs) abandons its call: one not started
never runs, one that runs ends at its next `check_abandoned()` (the frame loop calls it every
frame), so the thread is free for the next call within a frame instead of finishing audio nobody
will read.
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
_STOP = object()  # a model thread's last task
_EXIT = object()  # a worker's last model
_DONE = object()
_live: "weakref.WeakSet[ModelThread]" = weakref.WeakSet()
_workers: "list[_Worker]" = []  # every worker started, for the exit
_idle: "dict[str, list[_Worker]]" = {}  # workers free for a model, by device
_pool_lock = threading.Lock()
_exiting = False  # set by `_stop_all`: no worker is handed out after it
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


def _device_key(device: mx.Device) -> str:
    return str(device)  # "Device(cpu, 0)": MLX's devices compare equal but hash by identity


class _Worker:
    """A daemon OS thread that serves model threads on one device, one after another."""

    def __init__(self, device: mx.Device):
        self.device = device
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()  # model threads to serve, then _EXIT
        self.serving: ModelThread | None = None
        self.thread = threading.Thread(target=self._run, name=f"mlx-qwen3-tts-{device}", daemon=True)
        self.thread.start()

    @staticmethod
    def take(device: mx.Device) -> "_Worker":
        """An idle worker on `device`, or a new one."""
        with _pool_lock:
            if _exiting:  # the workers are gone, and a new one would never clear its streams
                raise RuntimeError("The interpreter is exiting: no model can be loaded now.")
            idle = _idle.get(_device_key(device))
            if idle:
                return idle.pop()
            worker = _Worker(device)
            _workers.append(worker)
            return worker

    def _run(self) -> None:
        while (model := self.inbox.get()) is not _EXIT:
            self.serving, usable = model, False
            try:
                usable = model._serve()
            finally:
                self.serving = None
                with _pool_lock:  # back in the pool before `stop()` returns: a load right after reuses it
                    if usable:
                        _idle.setdefault(_device_key(self.device), []).append(self)
                    else:  # a fresh worker on a device this build lacks: it did no MLX work
                        _workers.remove(self)
                model._released.set()
            del model  # hold no reference to a stopped model while idle
            if not usable:
                return
        mx.synchronize()
        mx.clear_streams()


class ModelThread:
    """Runs callables on one thread whose default stream is on `device` (a reused `_Worker`).

    Calls from the thread itself run directly (re-entrant), so methods that call each other
    need no care; calls from any other thread wait for the result or re-raise its exception.
    """

    def __init__(self, device: mx.Device):
        self.device = device
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._stopped = False
        self._released = threading.Event()  # its worker has run its last call
        self._current: _Call | None = None  # the call its worker runs now
        self._at_stop: list[Callable[[], None]] = []
        self._closed = "This model has been closed; load it again."  # what calls get once stopped
        self._worker = _Worker.take(device)
        self._worker.inbox.put(self)
        _live.add(self)

    @property
    def alive(self) -> bool:
        return self._worker.thread.is_alive() and not self._stopped

    def on_thread(self) -> bool:
        return threading.current_thread() is self._worker.thread and self._worker.serving is self

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

    def at_stop(self, fn: Callable[[], None]) -> None:
        """Run `fn()` on this thread once its last call and that call's MLX work are done."""
        self._at_stop.append(fn)

    def stop(self, timeout: float | None = 30.0) -> None:
        """Finish the queued calls and their MLX work, and give the worker back."""
        with self._lock:
            if not self._stopped:
                self._stopped = True
                self._tasks.put(_STOP)
        # Waited for by every stop, not the first only: a `close()` that gave up on a long
        # generation must not make the exit's stop skip the wait, or the interpreter can finalize
        # while the thread still runs MLX work (an abort: "terminate called without an active
        # exception").
        if not self.on_thread():
            self._released.wait(timeout)

    def _serve(self) -> bool:
        """Run this model's calls on the current (worker) thread until `stop`; False if its
        device's stream cannot be entered here."""
        with ExitStack() as stack:
            try:
                stack.enter_context(mx.stream(self.device))
            except (RuntimeError, ValueError, IndexError) as e:  # a device this build lacks: no stream
                self._refuse_all(e)
                return False
            while (task := self._tasks.get()) is not _STOP:
                fn, args, kwargs, future = task
                if not future.set_running_or_notify_cancel():
                    continue
                _running.call = self._current = future
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as e:  # handed to the caller, who re-raises it
                    future.set_exception(e)
                _running.call = self._current = None
                del task, fn, args, kwargs, future  # hold no references while idle
            mx.synchronize()
            for fn in self._at_stop:
                fn()
        return True

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
    # atexit runs while daemon threads still live: stop each model, then each worker, so that
    # every thread ends its MLX work and clears its streams before the interpreter finalizes.
    # Only daemon threads can still be waiting for a call here (the interpreter has joined the
    # others), and they die with it: their calls are abandoned, so a generation ends at its next
    # frame instead of holding the exit until its last one.
    global _exiting
    with _pool_lock:
        _exiting = True
        _idle.clear()
        workers = list(_workers)
    threads = list(_live)
    for thread in threads:
        call = thread._current
        if call is not None:
            call.abandoned = True
    for thread in threads:
        thread.stop(timeout=10.0)
    for worker in workers:
        worker.inbox.put(_EXIT)
    for worker in workers:
        worker.thread.join(timeout=10.0)
