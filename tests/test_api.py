"""The public synthesis API: determinism, streaming, batching, voice prompts and typed errors."""

import json
import threading

import mlx.core as mx
import numpy as np
import pytest
from conftest import load_fixture

import mlx_qwen3_tts as qt

TEXT = "hello world, this is a test."


@pytest.fixture
def base(tts):
    return tts("tiny-1.7b", "base")


def reference_audio(seconds=1.0, sr=24000):
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 150 * t) + 0.05 * np.sin(2 * np.pi * 900 * t)).astype(np.float32)


def speak(tts, **kw):
    return tts.generate(TEXT, speaker="vivian", max_frames=12, **kw)


def test_result_fields(cv):
    r = speak(cv, seed=1)
    assert r.sample_rate == 24000 and r.audio.dtype == np.float32
    assert r.codes.shape == (12, 16) and r.frames == 12 and r.finish_reason == "length"
    assert len(r.audio) == 12 * 1920 and r.seconds == pytest.approx(0.96)
    assert r.rtf > 0 and r.peak_memory_gb > 0 and r.seed == 1
    assert np.isfinite(r.audio).all()


def test_same_seed_same_audio_and_global_seed_irrelevant(cv):
    a = speak(cv, seed=7)
    mx.random.seed(123)
    b = speak(cv, seed=7)
    assert np.array_equal(a.audio, b.audio) and np.array_equal(a.codes, b.codes)
    c = speak(cv, seed=8)
    assert not np.array_equal(a.codes, c.codes)


def test_two_threads_same_seed_identical(cv):
    results = [None, None]

    def run(i):
        results[i] = speak(cv, seed=11)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert np.array_equal(results[0].audio, results[1].audio)
    assert np.array_equal(results[0].audio, speak(cv, seed=11).audio)


def test_seed_none_is_reported_and_reproducible(cv):
    r = speak(cv)
    assert np.array_equal(speak(cv, seed=r.seed).codes, r.codes)


def test_natural_stop_reports_eos(checkpoint):
    tts = qt.load(checkpoint("tiny-0.6b", "custom_voice", eos_scale=40.0), dtype="float32")
    r = tts.generate(TEXT, speaker="vivian", max_frames=200, seed=0)
    assert r.finish_reason == "eos" and 2 <= r.frames < 200
    assert len(r.audio) == r.frames * 1920


@pytest.mark.parametrize("first,chunk", [(1, 4), (2, 5), (3, 3)])
def test_stream_equals_one_shot(cv, first, chunk):
    one = speak(cv, seed=4)
    chunks = list(cv.stream_generate(TEXT, speaker="vivian", max_frames=12, seed=4,
                                     chunk_frames=chunk, first_chunk_frames=first))
    assert [c.frames for c in chunks[:2]] == [first, chunk]
    assert chunks[-1].is_final and chunks[-1].finish_reason == "length"
    assert sum(c.frames for c in chunks) == 12
    np.testing.assert_allclose(np.concatenate([c.audio for c in chunks]), one.audio, atol=1e-5)


def test_first_chunk_arrives_before_generation_ends(cv, monkeypatch):
    from mlx_qwen3_tts.generate import FrameLoop

    produced = []
    original = FrameLoop._read

    def counting(self, built):
        frames = original(self, built)
        produced.extend(frames)  # frames handed out by the loop
        return frames

    monkeypatch.setattr(FrameLoop, "_read", counting)
    stream = cv.stream_generate(TEXT, speaker="vivian", max_frames=30, seed=0, first_chunk_frames=2)
    first = next(stream)
    assert first.frames == 2 and len(produced) == 2 and len(first.audio) == 2 * 1920
    rest = list(stream)
    assert len(produced) == 30 and rest[-1].is_final


def test_stream_clone_in_context_equals_one_shot(base):
    voice = base.create_voice_prompt((reference_audio(), 24000), ref_text="this is my voice.")
    one = base.generate(TEXT, voice=voice, seed=2, max_frames=10)
    chunks = list(base.stream_generate(TEXT, voice=voice, seed=2, max_frames=10, chunk_frames=3))
    np.testing.assert_allclose(np.concatenate([c.audio for c in chunks]), one.audio, atol=1e-5)


def test_a_batch_runs_at_most_max_batch_streams(cv):
    batch = cv.open_batch(max_batch=2)
    streams = [batch.add(TEXT, speaker="ryan", seed=i, max_frames=3) for i in range(3)]
    running = []
    while batch.active:
        batch.step()
        running.append(batch.batch.running)
    assert max(running) == 2 and all(s.done for s in streams)


@pytest.mark.parametrize("cancel", [False, True])
def test_an_idle_batch_holds_no_kv_cache(cv, cancel):
    """The finished rows' device state (KV caches) stayed in the loops until the next request:
    an idle server held up to 0.85 GiB at 0.6B."""
    batch = cv.open_batch(max_batch=2)
    streams = [batch.add(TEXT, speaker=s, seed=i, max_frames=20) for i, s in enumerate(["ryan", "vivian"])]
    batch.step()
    batch.step()
    if cancel:  # clients that leave: no step comes after
        for stream in streams:
            batch.cancel(stream)
    while batch.active:
        batch.step()
    loops = (batch.batch.loop, batch.batch.fresh)
    assert all(loop.state is None and loop.queued is None and not loop.rows for loop in loops)


def test_a_clone_in_context_decodes_in_the_mode_asked(base, monkeypatch):
    """The reference's codes are decoded with the output's (as the official model does), in the
    call's `decode_mode`: the mode was dropped there, which shows only past 300 frames."""
    from mlx_qwen3_tts.speech_tokenizer import SpeechTokenizer

    modes = []
    real = SpeechTokenizer.decode
    monkeypatch.setattr(SpeechTokenizer, "decode", lambda self, codes, *a, **k: modes.append(
        k.get("mode", a[0] if a else None)) or real(self, codes, *a, **k))
    voice = base.create_voice_prompt((reference_audio(), 24000), ref_text="this is my voice.")
    for mode in ("reference", "exact"):
        base.generate(TEXT, voice=voice, seed=2, max_frames=3, decode_mode=mode)
        assert modes[-1] == mode, modes


def test_a_stream_joining_a_batch_runs_alone_until_it_speaks(cv):
    """A newcomer's first audio should not wait behind the whole batch's frames and the others'
    chunk decodes: it runs alone from its prefill to its first chunk (the others wait), then
    joins them; every stream's audio is still what it gives alone."""
    batch = cv.open_batch(max_batch=4)
    kwargs = dict(max_frames=16, chunk_frames=1)
    early = batch.add(TEXT, speaker="ryan", seed=1, first_chunk_frames=1, **kwargs)
    audio: dict[int, list[np.ndarray]] = {id(early): []}
    log = []  # per step: how many frames each stream got as audio
    while len(audio[id(early)]) < 3:
        for stream, chunk in batch.step():
            audio[id(stream)].append(chunk.audio)
    late = batch.add("a late arrival.", speaker="sohee", seed=2, first_chunk_frames=3, **kwargs)
    audio[id(late)] = []
    while batch.active:
        got = batch.step()
        log.append({id(stream): chunk.frames for stream, chunk in got})
        for stream, chunk in got:
            audio[id(stream)].append(chunk.audio)
    # The late stream's frames 0-2 come out in its first three steps, as alone, and none of the
    # early stream's; none is built after its frame 2 (its first chunk's decode goes first), so
    # the fourth step hands it over with no frame in flight; the batch (with room, on a CPU)
    # had none queued when the late one came either, so from then on every frame has both.
    assert [step.get(id(late), 0) for step in log[:4]] == [0, 0, 3, 0]
    assert not any(id(early) in step for step in log[:4])
    assert [step.keys() for step in log[4:6]] == [{id(early), id(late)}] * 2
    for stream, text, speaker, seed in ((early, TEXT, "ryan", 1), (late, "a late arrival.", "sohee", 2)):
        alone = cv.generate(text, speaker=speaker, seed=seed, max_frames=16).audio
        np.testing.assert_allclose(np.concatenate(audio[id(stream)]), alone, atol=1e-5)


def test_a_cpu_batch_queues_a_frame_ahead_only_when_no_stream_can_join(cv):
    """On a CPU a queued frame of the batch is ~0.5 s of the machine that a request coming in
    would wait behind: a batch with room queues none between steps; a full one does."""
    batch = cv.open_batch(max_batch=2)
    kwargs = dict(max_frames=12, first_chunk_frames=1, chunk_frames=1)
    first = batch.add(TEXT, speaker="ryan", seed=1, **kwargs)
    queued = []  # after each step of speaking streams that none joined or left: a frame in flight?
    while batch.active:
        rows, fresh = len(batch.batch.rows), batch.batch.fresh.members
        got = batch.step()
        if not fresh and not batch.batch.fresh.members and len(batch.batch.rows) == rows:
            queued.append((rows, batch.batch.loop.queued is not None))
        if any(stream is first and chunk.frames for stream, chunk in got) and len(queued) == 3:
            batch.add("and a second one.", speaker="vivian", seed=2, **kwargs)
    alone = [q for rows, q in queued if rows == 1]
    together = [q for rows, q in queued if rows == 2]
    assert len(alone) >= 3 and len(together) >= 3 and not any(alone) and all(together)


def test_batch_greedy_equals_single(cv):
    texts = ["hi.", TEXT, "a somewhat longer sentence for the batch test, with commas."]
    greedy = dict(temperature=0, subtalker_temperature=0, max_frames=10)
    batch = cv.generate_batch(texts, speaker="ryan", language="english", **greedy)
    for text, r in zip(texts, batch):
        single = cv.generate(text, speaker="ryan", language="english", **greedy)
        np.testing.assert_array_equal(r.codes, single.codes)
        np.testing.assert_allclose(r.audio, single.audio, atol=1e-5)


def test_batch_rows_stop_independently(checkpoint):
    tts = qt.load(checkpoint("tiny-0.6b", "custom_voice", eos_scale=40.0), dtype="float32")
    texts = ["hi.", TEXT, "another one."]
    batch = tts.generate_batch(texts, speaker="vivian", temperature=0, subtalker_temperature=0,
                               max_frames=100)
    for text, r in zip(texts, batch):
        single = tts.generate(text, speaker="vivian", temperature=0, subtalker_temperature=0,
                              max_frames=100)
        np.testing.assert_array_equal(r.codes, single.codes)
        assert r.finish_reason == single.finish_reason


def test_voice_design_both_layouts(design):
    """Both prompt layouts, greedy: the official model's first frames and their audio (the
    fixtures of test_generate.py; the decoder is causal, so 4 frames decode to the official
    8-frame audio's first 4 frames), and the two layouts really differ."""
    codes = {}
    for layout, name in ((True, "vd_nonstream"), (False, "vd_stream")):
        fx = load_fixture(f"generate_{name}.npz")
        kw = json.loads(str(fx["kwargs"]))
        assert kw.get("non_streaming_mode", True) == layout
        r = design.generate(kw["text"], instruct=kw["instruct"], language=kw["language"],
                            non_streaming_mode=layout, temperature=0, subtalker_temperature=0,
                            max_frames=4, decode_mode="reference")
        np.testing.assert_array_equal(r.codes, fx["codes"][:4])
        want = fx["audio"][: 4 * 1920]
        assert r.audio.shape == want.shape
        assert 10 * np.log10(np.sum(want**2) / np.sum((r.audio - want) ** 2)) >= 90
        codes[layout] = r.codes
    assert not np.array_equal(codes[True], codes[False])


def test_voice_prompt_round_trip(base, tmp_path):
    voice = base.create_voice_prompt((reference_audio(), 24000), ref_text="this is my voice.")
    assert voice.in_context and voice.ref_codes.shape == (13, 16)
    assert voice.speaker_embedding.shape == (base.config.talker_config.hidden_size,)
    path = voice.save(tmp_path / "me.safetensors")
    loaded = qt.VoicePrompt.load(path)
    assert np.array_equal(loaded.ref_codes, voice.ref_codes) and loaded.ref_text == voice.ref_text
    a = base.generate(TEXT, voice=voice, seed=3, max_frames=6)
    b = base.generate(TEXT, voice=path, seed=3, max_frames=6)
    c = base.generate(TEXT, ref_audio=(reference_audio(), 24000), ref_text="this is my voice.",
                      seed=3, max_frames=6)
    assert np.array_equal(a.audio, b.audio) and np.array_equal(a.audio, c.audio)


def test_x_vector_only_clone(base, tmp_path):
    import soundfile as sf

    sf.write(tmp_path / "ref.wav", reference_audio(), 24000)
    voice = base.create_voice_prompt(tmp_path / "ref.wav")
    assert not voice.in_context and voice.ref_text is None
    r = base.generate(TEXT, ref_audio=str(tmp_path / "ref.wav"), seed=0, max_frames=4)
    assert np.array_equal(r.audio, base.generate(TEXT, voice=voice, seed=0, max_frames=4).audio)


# --------------------------------------------------------------------------- errors


def test_language_and_speaker_parse_case_insensitively(cv):
    a = cv.generate(TEXT, speaker="Vivian", language="ENGLISH", seed=0, max_frames=3)
    b = cv.generate(TEXT, speaker=qt.Speaker.VIVIAN, language=qt.Language.ENGLISH, seed=0, max_frames=3)
    assert np.array_equal(a.codes, b.codes)
    assert str(qt.Language.parse("English")) == "english"


def test_voice_prompt_from_other_model_size(base, cv):
    wrong = qt.VoicePrompt(np.zeros(7, np.float32))
    with pytest.raises(qt.AudioError, match="another model size"):
        base.generate(TEXT, voice=wrong)
    with pytest.raises(qt.VoiceCloneUnsupportedError):
        cv.create_voice_prompt((reference_audio(), 24000))


def test_voice_design_rejects_speaker(design):
    with pytest.raises(qt.ModeError, match="describe the voice"):
        design.generate(TEXT, speaker="vivian", instruct="calm")
