"""Runaway guard, long texts with bounded memory, determinism across processes, interrupted
calls."""

import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections import Counter
from contextlib import contextmanager

import mlx.core as mx
import pytest
from conftest import read_weights

import mlx_qwen3_tts as qt
from mlx_qwen3_tts.generate import FrameLoop
from mlx_qwen3_tts.runtime import ModelThread
from mlx_qwen3_tts.text_split import split_text


@pytest.fixture(scope="module")
def never_stops(checkpoint):
    # EOS row of the codec head zeroed: its logit is 0, below the top-50 of 2048 random logits,
    # so generation never ends by itself.
    return qt.load(checkpoint("tiny-0.6b", "custom_voice", eos_scale=0.0), dtype="float32")


def test_runaway_guard_ends_generation_within_its_bound(never_stops):
    guard = qt.RunawayGuard(base_frames=20, frames_per_token=2.0)
    text = "hi there."
    n_tokens = never_stops.job(text, speaker="vivian").requests[0].prompt.text_tokens
    with pytest.warns(RuntimeWarning, match="runaway guard"):
        r = never_stops.generate(text, speaker="vivian", seed=0, runaway_guard=guard)
    assert r.finish_reason == "runaway"
    assert r.frames == guard.frame_cap(n_tokens) and len(r.audio) == r.frames * 1920


def test_runaway_guard_default_bound_and_off_switch(never_stops):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no guard warning when the frame limit comes first
        r = never_stops.generate("hi.", speaker="vivian", seed=0, max_frames=30)
    assert r.finish_reason == "length" and r.frames == 30
    r = never_stops.generate("hi.", speaker="vivian", seed=0, max_frames=120, runaway_guard=False)
    assert r.finish_reason == "length" and r.frames == 120


def test_runaway_guard_detects_loops():
    guard = qt.RunawayGuard(repeat_window=10, min_distinct=2)
    assert not guard.looping([5, 6] * 4)  # too short to judge
    assert guard.looping([1, 2, 3] + [5, 6] * 5)
    assert not guard.looping(list(range(10)))


def test_runaway_guard_stream_flags_it(never_stops):
    guard = qt.RunawayGuard(base_frames=10, frames_per_token=1.0)
    with pytest.warns(RuntimeWarning):
        chunks = list(never_stops.stream_generate("hi.", speaker="vivian", seed=0, runaway_guard=guard))
    assert chunks[-1].finish_reason == "runaway"


def test_long_text_split_with_bounded_memory(checkpoint):
    tts = qt.load(checkpoint("tiny-0.6b", "custom_voice"), dtype="float32")
    text = " ".join(f"This is sentence number {i}, spoken as part of a long text." for i in range(90))
    assert len(text) > 5000
    pieces = split_text(text)
    memory = []
    total = 0
    three = qt.RunawayGuard(base_frames=3, frames_per_token=0)  # every piece stops after 3 frames
    with pytest.warns(qt.RunawayWarning):
        for chunk in tts.stream_generate(text, speaker="vivian", seed=0, runaway_guard=three,
                                         chunk_frames=3):
            total += len(chunk.audio)
            memory.append(mx.get_active_memory())
    assert chunk.is_final and chunk.total_frames == 3 * len(pieces)
    # Pieces are joined by 20 ms crossfades.
    assert total == 3 * 1920 * len(pieces) - 480 * (len(pieces) - 1)
    half = len(memory) // 2
    assert max(memory[half:]) <= max(memory[:half]) * 1.1 + 1e6
    with pytest.warns(qt.RunawayWarning):
        one_shot = tts.generate(text, speaker="vivian", seed=0, runaway_guard=three)
    assert len(one_shot.audio) == total and one_shot.frames == 3 * len(pieces)
    # max_frames caps the whole call, not each piece: here the first piece uses it up.
    capped = tts.generate(text, speaker="vivian", seed=0, runaway_guard=False, max_frames=7)
    assert capped.frames == 7 and capped.finish_reason == "length"
    assert len(capped.audio) == 7 * 1920
    # Streamed, the capped call still ends with a final chunk (a server client waits for it).
    chunks = list(tts.stream_generate(text, speaker="vivian", seed=0, runaway_guard=False, max_frames=7))
    assert chunks[-1].is_final and chunks[-1].finish_reason == "length"
    assert sum(c.frames for c in chunks) == 7
    # Pieces that stop early leave the rest of the budget to the next: 3 + 3 + 1 frames, and only
    # the call's first chunk is `first_chunk_frames` long (later pieces chunk by `chunk_frames`).
    with pytest.warns(qt.RunawayWarning):
        chunks = list(tts.stream_generate(text, speaker="vivian", seed=0, runaway_guard=three, max_frames=7,
                                          first_chunk_frames=2, chunk_frames=3))
    assert [c.frames for c in chunks] == [2, 1, 3, 0, 1] and chunks[-1].is_final
    with pytest.warns(qt.RunawayWarning):
        assert tts.generate(text, speaker="vivian", seed=0, runaway_guard=three, max_frames=7).frames == 7


def test_finish_reasons_and_the_guards_bound():
    """A split text's reason is its most severe piece's; the bound is 6 s plus 1 s per token."""
    from mlx_qwen3_tts.synthesis import finish_reason

    assert finish_reason(["eos", "runaway", "length"]) == "runaway"
    assert finish_reason(["length", "eos"]) == "length" and finish_reason(["eos", "eos"]) == "eos"
    assert qt.RunawayGuard().frame_cap(5) == 137  # 75 + 12.5 x 5 frames, rounded down


def test_split_false_speaks_one_piece(checkpoint):
    tts = qt.load(checkpoint("tiny-0.6b", "custom_voice"), dtype="float32")
    text = "word " * 100
    r = tts.generate(text, speaker="vivian", seed=0, max_frames=4, split=False)
    assert r.frames == 4


def test_same_seed_identical_across_processes(checkpoint):
    folder = checkpoint("tiny-0.6b", "custom_voice")
    code = (
        "import sys, hashlib, mlx_qwen3_tts as qt;"
        "tts = qt.load(sys.argv[1], dtype='float32');"
        "r = tts.generate('hello there.', speaker='ryan', seed=42, max_frames=6);"
        "print(hashlib.sha256(r.audio.tobytes()).hexdigest())"
    )
    digests = [
        subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True,
                       check=True).stdout.strip()
        for _ in range(2)
    ]
    assert digests[0] == digests[1] and len(digests[0]) == 64
    here = qt.load(folder, dtype="float32").generate("hello there.", speaker="ryan", seed=42, max_frames=6)
    import hashlib

    assert hashlib.sha256(here.audio.tobytes()).hexdigest() == digests[0]


def test_non_finite_logits_are_reported(checkpoint, tmp_path):
    import shutil

    folder = shutil.copytree(checkpoint(), tmp_path / "nan")
    weights = read_weights(folder / "model.safetensors")
    w = weights["talker.model.norm.weight"]
    weights["talker.model.norm.weight"] = mx.full(w.shape, float("nan"), w.dtype)
    mx.save_safetensors(str(folder / "model.safetensors"), weights, metadata={"format": "pt"})
    tts = qt.load(folder)
    with pytest.raises(qt.SynthesisError, match="non-finite logits at frame 0"):
        tts.generate("hello.", speaker="vivian", max_frames=3)


@contextmanager
def ctrl_c_when(event: threading.Event, delay: float = 0.0):
    """SIGINT to the main thread (this test's) `delay` seconds after `event` is set, as a user's
    Ctrl-C."""
    main = threading.main_thread().ident

    def send():
        if event.wait(60):
            time.sleep(delay)
            signal.pthread_kill(main, signal.SIGINT)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        yield
    finally:
        event.set()
        sender.join()


@pytest.fixture
def counted_steps(monkeypatch):
    """Frames each `FrameLoop` stepped, in the order the loops started; `started` is set at the
    first loop's fifth step."""
    steps, started, step = Counter(), threading.Event(), FrameLoop.step

    def counted(self, *args, **kwargs):
        steps[self] += 1
        if steps[self] == 5:
            started.set()
        return step(self, *args, **kwargs)

    monkeypatch.setattr(FrameLoop, "step", counted)
    return steps, started


def test_ctrl_c_during_generate_stops_the_generation_at_the_next_frame(never_stops, counted_steps):
    # The caller got KeyboardInterrupt at once, but the model's thread ran the generation on to
    # its 3,000-frame limit, and the next call waited for it.
    steps, started = counted_steps
    with ctrl_c_when(started), pytest.raises(KeyboardInterrupt):
        never_stops.generate("hi.", speaker="vivian", seed=0, max_frames=3000, runaway_guard=False)
    after = never_stops.generate("hi.", speaker="vivian", seed=0, max_frames=3)  # queued behind it
    assert after.frames == 3
    abandoned, _ = steps.values()
    assert 5 <= abandoned <= 25


def test_a_call_abandoned_before_it_starts_never_runs():
    thread, busy, ran = ModelThread(mx.Device(mx.cpu)), threading.Event(), []
    release = threading.Event()
    worker = threading.Thread(target=thread.run, args=(lambda: busy.set() or release.wait(60),))
    worker.start()
    # `busy` may be set before this thread waits for its call: the delay lets it get there.
    with ctrl_c_when(busy, delay=0.5), pytest.raises(KeyboardInterrupt):
        thread.run(ran.append, "queued")  # waits behind the busy call until Ctrl-C
    release.set()
    worker.join()
    assert thread.run(lambda: "next") == "next" and ran == []
    thread.stop()


def test_ctrl_c_during_a_pieces_decode_stops_before_the_next_piece(never_stops, counted_steps, monkeypatch):
    """The frame loop checked for an abandoned call, but a long text's next pieces still ran."""
    from mlx_qwen3_tts.synthesis import Engine

    steps, _ = counted_steps
    decoding, decode = threading.Event(), Engine.decode

    def slow_decode(self, *args, **kwargs):
        decoding.set()
        time.sleep(1.0)  # the Ctrl-C lands here
        return decode(self, *args, **kwargs)

    monkeypatch.setattr(Engine, "decode", slow_decode)
    text = " ".join(f"Sentence number {i} of a text long enough to be spoken in pieces." for i in range(15))
    assert len(split_text(text)) >= 3
    short = qt.RunawayGuard(base_frames=4, frames_per_token=0.0)  # each piece ends after 4 frames
    with ctrl_c_when(decoding), pytest.raises(KeyboardInterrupt), warnings.catch_warnings():
        warnings.simplefilter("ignore", qt.RunawayWarning)
        never_stops.generate(text, speaker="vivian", seed=0, runaway_guard=short)
    monkeypatch.setattr(Engine, "decode", decode)
    assert never_stops.generate("hi.", speaker="vivian", seed=0, max_frames=3).frames == 3
    assert len(steps) == 2  # the first piece's frame loop, then the call after it


def test_ctrl_c_during_a_batch_rows_decode_skips_the_other_rows(never_stops, monkeypatch):
    from mlx_qwen3_tts.synthesis import Engine

    decoding, decoded, decode = threading.Event(), [], Engine.decode

    def counted_decode(self, *args, **kwargs):
        decoded.append(1)
        if len(decoded) == 1:
            decoding.set()
            time.sleep(1.0)  # the Ctrl-C lands here
        return decode(self, *args, **kwargs)

    monkeypatch.setattr(Engine, "decode", counted_decode)
    with ctrl_c_when(decoding), pytest.raises(KeyboardInterrupt):
        never_stops.generate_batch(["one.", "two.", "three."], speaker="vivian", seed=0, max_frames=3)
    assert never_stops.generate("hi.", speaker="vivian", seed=0, max_frames=3).frames == 3
    assert len(decoded) == 2  # the first row's, then the call after it's


EXIT_CODE = """
    import sys, threading, time
    import mlx_qwen3_tts as qt
    tts = qt.load(sys.argv[1], dtype="float32")
    threading.Thread(target=tts.generate, args=("hi.",), daemon=True,
                     kwargs=dict(speaker="vivian", max_frames=3000, runaway_guard=False)).start()
    time.sleep(2.0)  # generating by now (a stream would not hold the exit: each chunk is a call)
    print("exiting", flush=True)
    """


def test_exit_does_not_wait_for_a_daemon_threads_generation(checkpoint):
    """The exit waited for the generation's last frame (40 s for 1,500 tiny frames), and the
    bound under that wait would have aborted ('terminate called', rc 134) at 10 s."""
    folder = checkpoint("tiny-0.6b", "custom_voice", eos_scale=0.0)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(EXIT_CODE), str(folder)],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0 and "exiting" in proc.stdout, proc.stderr
    assert "terminate called" not in proc.stderr
    assert time.perf_counter() - start < 30


def test_a_load_after_the_exit_has_stopped_every_model_is_refused(checkpoint):
    """An exit hook that ran after the library's hung on a pooled worker that had exited."""
    code = """
        import atexit, sys
        def late():  # registered first: runs after the library's own exit hook
            try:
                qt.load(sys.argv[1], dtype="float32")
            except RuntimeError as e:
                print("refused:", e, flush=True)
        atexit.register(late)
        import mlx_qwen3_tts as qt
        qt.load(sys.argv[1], dtype="float32").close()  # its worker waits in the pool
        """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), str(checkpoint())],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "refused: The interpreter is exiting" in proc.stdout, (proc.stdout, proc.stderr)
