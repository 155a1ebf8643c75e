"""Model threads and their pooled workers: calls, results, refusals, finalizers and the exit
(the cases a mutation round of runtime.py found untested)."""

import gc
import subprocess
import sys
import textwrap
import threading
import time
import weakref

import mlx.core as mx
import pytest

import mlx_qwen3_tts as qt
from mlx_qwen3_tts import loading, runtime
from mlx_qwen3_tts.runtime import ModelThread


def _pooled(worker) -> bool:
    # Checked once, not waited for: `stop()` returns with the worker back in the pool, so a load
    # right after a close reuses it.
    with runtime._pool_lock:
        return worker in runtime._idle.get(runtime._device_key(worker.device), [])


def test_a_closed_models_call_from_the_next_model_on_its_worker_is_refused():
    """The worker's OS thread serves the next model: the closed one's calls from there must not
    run as if on its own thread."""
    first = ModelThread(mx.Device(mx.cpu))
    first.stop()
    assert _pooled(first._worker)
    second = ModelThread(mx.Device(mx.cpu))
    assert second._worker is first._worker  # the same OS thread
    with pytest.raises(RuntimeError, match="closed"):
        second.run(first.run, lambda: "ran on a closed model")
    second.stop()


def test_a_model_thread_holds_no_result_once_returned():
    class Result:
        pass

    thread = ModelThread(mx.Device(mx.cpu))
    result = thread.run(Result)
    ref = weakref.ref(result)
    del result
    gc.collect()
    assert ref() is None
    thread.stop()


def test_a_thread_that_cannot_start_is_released_and_leaves_the_workers():
    thread = ModelThread(mx.Device(mx.cpu, 5))
    with pytest.raises(RuntimeError, match="could not start"):
        thread.run(lambda: 1)
    thread._worker.thread.join(10)
    start = time.perf_counter()
    thread.stop(timeout=10)  # nothing to wait for: its worker did no work
    assert time.perf_counter() - start < 2
    with runtime._pool_lock:
        assert thread._worker not in runtime._workers


def test_calls_queued_before_the_thread_failed_to_start_fail_too(monkeypatch):
    gate, real_stream = threading.Event(), mx.stream

    def stream(device):
        if threading.current_thread().name.startswith("mlx-qwen3-tts-"):
            gate.wait(10)
            raise ValueError("no such device here")
        return real_stream(device)

    monkeypatch.setattr(mx, "stream", stream)
    thread, outcome = ModelThread(mx.Device(mx.cpu)), []

    def call():
        try:
            outcome.append(thread.run(lambda: "ran"))
        except RuntimeError as e:
            outcome.append(e)

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    deadline = time.monotonic() + 10
    while thread._tasks.empty() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not thread._tasks.empty()  # queued before the refusal
    gate.set()
    caller.join(10)
    assert len(outcome) == 1 and "could not start" in str(outcome[0])


def test_a_failed_load_gives_its_worker_back(checkpoint, monkeypatch):
    threads = []

    def failing(folder, policy, thread):
        threads.append(thread)
        raise ValueError("broken")

    monkeypatch.setattr(loading, "_load", failing)
    with pytest.raises(ValueError, match="broken"):
        qt.load(checkpoint(), dtype="float32")
    assert threads[0]._released.wait(10) and not threads[0].alive


def test_a_collected_model_gives_its_worker_back_without_waiting(checkpoint):
    """The finalizer runs on whichever thread collects: it must not wait for a running call
    (it could be that call's caller, or another model's thread), yet must still stop the model."""
    tts = qt.load(checkpoint(), dtype="float32")
    thread, busy, release = tts.thread, threading.Event(), threading.Event()
    engine = weakref.ref(tts.engine)
    caller = threading.Thread(target=thread.run, args=(lambda: busy.set() or release.wait(20),), daemon=True)
    caller.start()
    assert busy.wait(10)
    start = time.perf_counter()
    del tts
    gc.collect()
    waited = time.perf_counter() - start
    release.set()
    caller.join(30)
    assert engine() is None
    assert waited < 5, waited
    assert thread._released.wait(10) and not thread.alive


def test_the_exit_after_a_close_is_prompt(checkpoint):
    """Each pooled worker is told to end at exit; one that is not holds the exit for the whole
    bound of its join (10 s a worker)."""
    code = """
        import sys, time
        import mlx_qwen3_tts as qt
        qt.load(sys.argv[1], dtype="float32").close()
        tts = qt.load(sys.argv[1], dtype="float32")  # still open at exit
        tts.generate("hi.", speaker="ryan", max_frames=2)
        print(time.time(), flush=True)
        """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), str(checkpoint())],
                          capture_output=True, text=True, timeout=120)
    end = time.time()
    assert proc.returncode == 0, proc.stderr
    assert end - float(proc.stdout) < 5, end - float(proc.stdout)


def test_closing_an_iterator_closes_its_inner_one_on_the_model_thread():
    thread, closed_on = ModelThread(mx.Device(mx.cpu)), []

    def make():
        def items():
            try:
                yield 1
                yield 2
            finally:
                closed_on.append(threading.current_thread())
        return items()

    items = thread.iterate(make)
    assert next(items) == 1
    items.close()
    assert closed_on == [thread._worker.thread]
    thread.stop()


def test_a_stopped_model_thread_is_not_alive():
    thread = ModelThread(mx.Device(mx.cpu))
    assert thread.alive
    thread.stop()
    assert not thread.alive
