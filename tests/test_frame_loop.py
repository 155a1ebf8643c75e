"""The frame loop itself: one host sync per frame, frame n + 1 queued before frame n is read,
weights read at every call, rows that join and leave a running batch.

Parity with the official model is in test_generate.py and test_parity_generation.py; these tests
pin down how the loop runs.
"""

import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from conftest import GREEDY, read_weights
from mlx.utils import tree_flatten

import mlx_qwen3_tts as qt
from mlx_qwen3_tts.generate import FrameLoop, generate_codes
from mlx_qwen3_tts.speech_tokenizer import StreamingDecoder

sys.path.insert(0, str(Path(__file__).parents[1] / "bench" / "runners"))
from _syncs import SyncCounter  # noqa: E402  (the benchmarks' own counter)

TEXT = "hello world, this is a test of the frame loop."


@pytest.fixture(scope="module")
def cv(checkpoint):
    # EOS never wins: every run makes exactly the frames asked for.
    return qt.load(checkpoint("tiny-0.6b", "custom_voice", eos_scale=0.0), dtype="float32")


@contextmanager
def counting_syncs(tts):
    """Host syncs on the model's thread, where the loop runs: `mx.eval`, numpy conversions of an
    `mx.array`, its `item`/`tolist`/`bool`/`int`... (bench/runners/_syncs.py, shared with
    bench/host_time.py)."""
    counter = SyncCounter()
    tts.thread.run(counter.__enter__)
    try:
        yield counter
    finally:
        tts.thread.run(counter.__exit__, None, None, None)


def total(counter) -> int:
    return sum(counter.counts.values())


def test_one_host_sync_per_frame_in_generate_codes(cv):
    job = cv.job(TEXT, speaker="ryan", seed=1, max_frames=20)
    engine = cv.engine
    prefixes = cv.thread.run(lambda: [engine.prefix(r) for r in job.requests])  # before counting
    with counting_syncs(cv) as syncs:
        (codes, reason), = cv.thread.run(generate_codes, engine.model.talker, job.requests,
                                         engine.embedder.tts_pad, prefixes)
    assert codes.shape == (20, 16) and reason == "length"
    assert total(syncs) <= 20, syncs.counts


@pytest.mark.parametrize("path", ["stream", "text_stream"])
def test_streams_add_syncs_per_chunk_only(cv, path, monkeypatch):
    frames, chunk = 24, 6
    kwargs = dict(speaker="ryan", seed=2, max_frames=frames, chunk_frames=chunk, first_chunk_frames=chunk)
    cv.generate(TEXT, speaker="ryan", seed=2, max_frames=2)  # voice prefix cached, predictor compiled
    in_decodes = []  # syncs inside each chunk's decode (the CPU's SnakeBeta syncs once per layer)
    decode_step = StreamingDecoder.decode_step

    def counted_decode_step(self, codes):
        before = total(syncs)
        audio = decode_step(self, codes)
        in_decodes.append(total(syncs) - before)
        return audio

    monkeypatch.setattr(StreamingDecoder, "decode_step", counted_decode_step)
    with counting_syncs(cv) as syncs:
        if path == "stream":
            chunks = list(cv.stream_generate(TEXT, non_streaming_mode=False, **kwargs))
        else:
            with cv.open_stream(**kwargs) as s:
                s.feed(TEXT)
                chunks = list(s.audio()) + list(s.finish())
    assert sum(c.frames for c in chunks) == frames
    # One decode per chunk that has frames, all alike; outside them, one sync per frame.
    assert len(in_decodes) == sum(c.frames > 0 for c in chunks) and len(set(in_decodes)) == 1
    assert total(syncs) - sum(in_decodes) <= frames + 3, syncs.counts


def test_frame_n_plus_one_is_queued_before_frame_n_is_read(cv, monkeypatch):
    events = []
    build, read = FrameLoop._build, FrameLoop._read

    def recording_build(self):
        built = build(self)
        if built is not None:
            events.append(("build", built.index[0]))
        return built

    def recording_read(self, built):
        events.append(("read", built.index[0]))
        return read(self, built)

    monkeypatch.setattr(FrameLoop, "_build", recording_build)
    monkeypatch.setattr(FrameLoop, "_read", recording_read)
    cv.generate(TEXT, speaker="ryan", seed=0, max_frames=6)
    reads = [i for kind, i in events if kind == "read"]
    assert reads == list(range(6))
    for n in range(5):
        assert events.index(("build", n + 1)) < events.index(("read", n))


def test_a_frame_the_host_reads_late_is_never_handed_out_past_eos(checkpoint):
    """The pipelined loop computes a frame past EOS; it must not reach the caller."""
    tts = qt.load(checkpoint("tiny-0.6b", "custom_voice", eos_scale=40.0), dtype="float32")
    one = tts.generate(TEXT, speaker="vivian", seed=0, max_frames=200, **GREEDY)
    assert one.finish_reason == "eos" and 2 <= one.frames < 200
    chunks = list(tts.stream_generate(TEXT, speaker="vivian", seed=0, max_frames=200, chunk_frames=1,
                                      **GREEDY))
    assert sum(c.frames for c in chunks) == one.frames and chunks[-1].finish_reason == "eos"


@pytest.mark.parametrize("key", ["talker.code_predictor.lm_head.3.weight",  # the compiled predictor
                                 "talker.model.layers.1.mlp.down_proj.weight"])  # a compiled block half
def test_compiled_functions_see_new_weights(checkpoint, tmp_path, key):
    """Compiled functions that captured the weights as constants: after `load_weights` a model
    kept computing with the old ones."""
    tts = qt.load(checkpoint("tiny-0.6b", "custom_voice"), dtype="float32")
    before = tts.generate(TEXT, speaker="ryan", max_frames=4, **GREEDY)  # compiles both
    folder = shutil.copytree(checkpoint("tiny-0.6b", "custom_voice"), tmp_path / "changed")
    weights = read_weights(folder / "model.safetensors")
    weights[key] = -weights[key]
    mx.save_safetensors(str(folder / "model.safetensors"), weights, metadata={"format": "pt"})
    # Built from host data: a lazy array of this thread could not be evaluated on the model's.
    changed = mx.array(-np.array(dict(tree_flatten(tts.model.parameters()))[key]))
    tts.thread.run(tts.model.load_weights, [(key, changed)], strict=False)
    after = tts.generate(TEXT, speaker="ryan", max_frames=4, **GREEDY)
    fresh = qt.load(folder, dtype="float32").generate(TEXT, speaker="ryan", max_frames=4, **GREEDY)
    np.testing.assert_array_equal(after.codes, fresh.codes)
    assert not np.array_equal(after.codes, before.codes)


def run_loop(cv, plan):
    """Run a FrameLoop on the model's thread: `plan[step]` lists requests that join at that step,
    ("new", request) for one that joins a second loop, which runs alone while it has rows (as
    StreamBatch runs new streams), "hand_over" to move the second loop's rows into the first,
    or "drop:<i>" to drop the i-th request. Returns each request's codes and rows."""
    engine = cv.engine

    def go():
        loop, new = (FrameLoop(engine.model.talker, engine.embedder.tts_pad) for _ in range(2))
        rows, codes, step = [], {}, 0
        while step in plan or loop.active or new.active:
            items = plan.get(step, [])
            for item in items:
                if isinstance(item, str) and item.startswith("drop:"):
                    rows[int(item.split(":")[1])].finish("dropped")  # as StreamBatch.cancel
                elif item != "hand_over":
                    target, request = (new, item[1]) if isinstance(item, tuple) else (loop, item)
                    rows.append(target.add(request, prefix=engine.prefix(request)))
            if "hand_over" in items:
                frames = new.hand_over(loop)
            else:
                frames = new.step() if new.active else loop.step()
            for row, c in frames:
                codes.setdefault(id(row), []).append(c)
            step += 1
        return [np.stack(codes[id(r)]) if id(r) in codes else np.zeros((0, 16)) for r in rows], rows

    return cv.thread.run(go)


@pytest.mark.parametrize("sampling", [GREEDY, dict(temperature=0.9, subtalker_temperature=0.8, top_k=20,
                                                   subtalker_top_p=0.9)])
def test_rows_joining_and_leaving_a_running_batch_get_their_solo_codes(cv, sampling):
    texts = [TEXT, "a second, shorter sentence.", "and a third voice joins late."]
    speakers = ["ryan", "vivian", "serena"]
    frames = [12, 7, 9]
    jobs = [cv.job(t, speaker=s, seed=10 + i, max_frames=n, **sampling)
            for i, (t, s, n) in enumerate(zip(texts, speakers, frames))]
    solo = [cv.generate(t, speaker=s, seed=10 + i, max_frames=n, **sampling).codes
            for i, (t, s, n) in enumerate(zip(texts, speakers, frames))]
    # Row 0 starts alone, row 1 joins at step 3, row 2 at step 5; rows leave at their limits.
    codes, rows = run_loop(cv, {0: [jobs[0].requests[0]], 3: [jobs[1].requests[0]],
                                5: [jobs[2].requests[0]]})
    for ours, theirs in zip(codes, solo):
        np.testing.assert_array_equal(ours, theirs)
    assert [r.reason for r in rows] == ["length"] * 3


@pytest.mark.parametrize("sampling", [GREEDY, dict(temperature=0.9, subtalker_temperature=0.8, top_k=20,
                                                   subtalker_top_p=0.9)])
def test_rows_handed_over_to_a_running_loop_get_their_solo_codes(cv, sampling):
    """StreamBatch runs new streams in a loop of their own until they have spoken, then hands
    them over, frame in flight and device state, to the running batch."""
    texts = [TEXT, "a second, shorter sentence.", "and a third voice joins late."]
    speakers = ["ryan", "vivian", "serena"]
    frames = [12, 9, 10]
    jobs = [cv.job(t, speaker=s, seed=20 + i, max_frames=n, **sampling).requests[0]
            for i, (t, s, n) in enumerate(zip(texts, speakers, frames))]
    solo = [cv.generate(t, speaker=s, seed=20 + i, max_frames=n, **sampling).codes
            for i, (t, s, n) in enumerate(zip(texts, speakers, frames))]
    # Row 0 runs; rows 1 and 2 start on their own at steps 3 and 4 while row 0 waits, and join
    # it at step 6; the first loop then runs all three.
    codes, rows = run_loop(cv, {0: [jobs[0]], 3: [("new", jobs[1])], 4: [("new", jobs[2])],
                                6: ["hand_over"]})
    for ours, theirs in zip(codes, solo):
        np.testing.assert_array_equal(ours, theirs)
    assert [r.reason for r in rows] == ["length"] * 3


def test_a_dropped_row_stops_and_the_others_go_on(cv):
    a = cv.job(TEXT, speaker="ryan", seed=1, max_frames=10, **GREEDY).requests[0]
    b = cv.job("another text entirely.", speaker="vivian", seed=2, max_frames=10, **GREEDY).requests[0]
    codes, rows = run_loop(cv, {0: [a, b], 4: ["drop:1"]})
    # Dropped before its 5th frame was handed out: the 4 frames it had are its solo run's first 4.
    assert rows[1].reason == "dropped" and len(codes[1]) == 4
    np.testing.assert_array_equal(codes[0], cv.generate(TEXT, speaker="ryan", seed=1, max_frames=10,
                                                        **GREEDY).codes)
    np.testing.assert_array_equal(codes[1], cv.generate("another text entirely.", speaker="vivian", seed=2,
                                                        max_frames=10, **GREEDY).codes[: len(codes[1])])


def test_the_benchmarks_split_sees_every_talker_step_and_predictor_call(cv):
    """bench/runners/ours.py times the talker and the code predictor by wrapping the calls the
    loop makes; when the loop moved its steps to `Talker.decode` the split went missing."""
    import ours  # bench/runners/ours.py

    spec = dict(text=TEXT, speaker="vivian", language="english", seed=0)
    split = ours.split_loop(cv, spec, 6)
    assert "error" not in split, split["error"]
    assert split["frames"] == 6 and split["talker_ms"] > 0 and split["code_predictor_ms"] > 0


def test_each_codebook_of_a_frame_draws_with_its_own_key(checkpoint):
    """With every head's logits flat (zero weights) a draw is the key's uniform number scaled to
    the vocabulary, so two codebooks drawn with the same key get the same code: codebooks 1..15
    all drew with codebook 1's key, or codebook 1 with codebook 0's, and no test saw it."""
    tts = qt.load(checkpoint("tiny-0.6b", "custom_voice"), dtype="float32")
    talker = tts.model.talker
    heads = [talker.codec_head, *talker.code_predictor.lm_head]
    names = ["codec_head", *(f"code_predictor.lm_head.{j}" for j in range(len(heads) - 1))]
    # Built from host data: a lazy array of this thread could not be evaluated on the model's.
    zeroed = [(f"{name}.weight", mx.array(np.zeros(head.weight.shape, np.float32)))
              for name, head in zip(names, heads)]
    tts.thread.run(talker.load_weights, zeroed, strict=False)
    codes = tts.generate(TEXT, speaker="ryan", max_frames=6, seed=3, temperature=0.9, top_k=0,
                         subtalker_temperature=0.9, subtalker_top_k=0).codes
    assert codes.shape == (6, 16)
    assert (codes[:, 0] == codes[:, 1]).sum() <= 1, codes  # 1 in 2048 per frame by chance
    assert all(len(set(frame[1:])) > 1 for frame in codes.tolist()), codes


def test_the_repetition_penalty_sees_every_c0_drawn_so_far(cv, monkeypatch):
    """HF's penalty reads every generated id, the one just fed back included. Without it the
    greedy fixtures still matched (the tiny models never repeat a c0), so the ids the penalty is
    given at each talker step are checked against the codes themselves."""
    from mlx_qwen3_tts import generate

    given = []

    def recording(logits, seen, *args):
        given.append(set(np.flatnonzero(np.array(seen)[0]).tolist()))
        return process(logits, seen, *args)

    process = generate.process_talker_logits
    monkeypatch.setattr(generate, "process_talker_logits", recording)
    codes = cv.generate(TEXT, speaker="ryan", max_frames=6, **GREEDY).codes
    assert len(given) >= 6
    assert given[:6] == [set(codes[:i, 0].tolist()) for i in range(6)]
