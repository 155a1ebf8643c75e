"""Dialogue in one call: a script's turns in their own voices, timed, seeded per turn, streamed."""

import numpy as np
import pytest
import soundfile as sf
from test_cli import main_in_process, reference_wav

import mlx_qwen3_tts as qt
from mlx_qwen3_tts.dialogue import turn_seed

SCRIPT = """# two speakers
Ryan: Hello there, how are you today?

Vivian: I am fine, thank you for asking.
Ryan: Good to hear.
"""
FRAMES = 6  # per turn (max_frames caps each turn)


def test_scripts_parse_into_turns():
    turns = qt.parse_script(SCRIPT)
    assert [(t.speaker, t.text, t.line) for t in turns] == [
        ("Ryan", "Hello there, how are you today?", 2), ("Vivian", "I am fine, thank you for asking.", 4),
        ("Ryan", "Good to hear.", 5)]
    assert qt.parse_script("Dr. Who: time: relative.")[0] == qt.Turn("Dr. Who", "time: relative.", 1)
    assert qt.parse_script("\ufeff" + SCRIPT) == turns  # a file read with a byte-order mark


@pytest.mark.parametrize("script,match", [
    ("Ryan: hi\nno colon on this line\n", "Line 2 of the script is not 'Name: text'"),
    ("# only a comment\n\n", "no 'Name: text' line"),
    ("Ryan:   \n", "Line 1 of the script is not"),
])
def test_malformed_scripts_name_the_line(cv, script, match):
    with pytest.raises(qt.SynthesisError, match=match):
        cv.generate_dialogue(script)


@pytest.mark.parametrize("voices,match", [
    (["ryan"], r"`voices` maps the script's names to voices .*got list"),  # was an AttributeError
    ({"Bob": {"speaker": "ryan", "seed": 3}}, r"Line 1: voices\['Bob'\] sets seed"),  # was a TypeError
    ({"Bob": {"speaker": "ryan", "text": "x"}}, r"voices\['Bob'\] sets text, which each turn takes"),
])
def test_misused_voices_are_synthesis_errors(cv, voices, match):
    with pytest.raises(qt.SynthesisError, match=match):
        cv.generate_dialogue("Bob: hello", voices=voices, max_frames=1)


@pytest.mark.parametrize("pause", [10.5, -0.1, True, "1", float("nan")])
def test_a_pause_outside_0_to_10_seconds_is_refused(cv, pause):
    with pytest.raises(qt.SynthesisError, match="`pause` must be 0 to 10 seconds") as info:
        cv.generate_dialogue("Ryan: hi.", pause=pause, max_frames=1)
    assert info.value.param == "pause"


def test_an_unknown_speaker_names_its_line_before_anything_is_spoken(cv, monkeypatch):
    from mlx_qwen3_tts.generate import FrameLoop

    prefills = []
    monkeypatch.setattr(FrameLoop, "add", lambda *a, **k: prefills.append(1))
    with pytest.raises(qt.UnknownSpeakerError, match="Line 3: speaker 'Bob': Unknown speaker 'Bob'"):
        cv.generate_dialogue("Ryan: hi there.\n\nBob: hello.")
    assert prefills == []


def test_turns_are_timed_seeded_and_each_what_it_is_alone(cv):
    result = cv.generate_dialogue(SCRIPT, seed=5, pause=0.25, max_frames=FRAMES)
    sr, pause = result.sample_rate, round(0.25 * 24000)
    assert [t.speaker for t in result.turns] == ["Ryan", "Vivian", "Ryan"] and result.seed == 5
    at = 0
    for i, (turn, parsed) in enumerate(zip(result.turns, qt.parse_script(SCRIPT))):
        alone = cv.generate(parsed.text, speaker=parsed.speaker, seed=turn_seed(5, i), max_frames=FRAMES)
        assert turn.seed == turn_seed(5, i) and turn.frames == alone.frames == FRAMES
        assert (round(turn.start * sr), round(turn.end * sr)) == (at, at + len(alone.audio))
        np.testing.assert_allclose(result.audio[at : at + len(alone.audio)], alone.audio, atol=1e-5)
        at += len(alone.audio)
        if i < 2:  # silence between turns
            assert not result.audio[at : at + pause].any()
            at += pause
    assert len(result.audio) == at
    assert len({t.seed for t in result.turns}) == 3


def test_the_stream_is_the_dialogue_turn_by_turn(cv):
    one = cv.generate_dialogue(SCRIPT, seed=2, max_frames=FRAMES)
    chunks = list(cv.stream_dialogue(SCRIPT, seed=2, max_frames=FRAMES, chunk_frames=2))
    np.testing.assert_allclose(np.concatenate([c.audio for c in chunks]), one.audio, atol=1e-5)
    assert [c.turn for c in chunks] == sorted(c.turn for c in chunks)  # turn after turn
    ends = [c for c in chunks if c.finish_reason is not None]
    assert [c.turn for c in ends] == [0, 1, 2] and [c.seed for c in ends] == [t.seed for t in one.turns]
    assert chunks[-1].is_final and not any(c.is_final for c in chunks[:-1])


def test_one_base_model_clones_several_saved_voices(tts, tmp_path, monkeypatch):
    monkeypatch.setenv("MLX_QWEN3_TTS_VOICES", str(tmp_path / "voices"))
    base = tts("tiny-1.7b", "base")
    t = np.arange(24000) / 24000
    for name, f0 in (("alice", 180.0), ("bob", 110.0)):
        wav = (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32)
        base.create_voice_prompt((wav, 24000)).save_as(name)
    result = base.generate_dialogue([("Alice", "hello bob."), ("Bob", "hi alice.")], seed=1,
                                    voices={"Alice": "alice", "Bob": "bob"}, max_frames=4)
    for i, (name, text) in enumerate([("alice", "hello bob."), ("bob", "hi alice.")]):
        alone = base.generate(text, voice=name, seed=result.turns[i].seed, max_frames=4)
        start = round(result.turns[i].start * 24000)
        np.testing.assert_allclose(result.audio[start : start + len(alone.audio)], alone.audio, atol=1e-5)


def test_voice_design_names_are_descriptions(tts):
    design = tts("tiny-1.7b", "voice_design")
    cast = {"Narrator": "a calm deep voice", "Child": {"instruct": "an excited child", "language": "english"}}
    result = design.generate_dialogue("Narrator: once upon a time.\nChild: and then?", voices=cast, seed=0,
                                      max_frames=3)
    alone = design.generate("and then?", instruct="an excited child", language="english",
                            seed=result.turns[1].seed, max_frames=3)
    start = round(result.turns[1].start * 24000)
    np.testing.assert_allclose(result.audio[start:], alone.audio, atol=1e-5)
    narrator = design.generate("once upon a time.", instruct="a calm deep voice", seed=result.turns[0].seed,
                               max_frames=3)
    np.testing.assert_allclose(result.audio[: len(narrator.audio)], narrator.audio, atol=1e-5)


def test_the_command_line_speaks_a_script(checkpoint, tmp_path, capsys):
    model = checkpoint("tiny-0.6b", "custom_voice")
    # Saved with a byte-order mark, as Notepad does: it started the first name ('\ufeffAlice').
    (tmp_path / "play.txt").write_text("Alice: hello there.\nBob: hi.\n", encoding="utf-8-sig")
    out = tmp_path / "play.wav"
    code, err = main_in_process(["--model", str(model), "--script", str(tmp_path / "play.txt"), "--cast",
                                 "Alice=serena", "--cast", "Bob=ryan", "--seed", "4", "--max-frames", "3",
                                 "--pause", "0.1", "--out", str(out)], capsys)
    assert code == 0, err
    expected = qt.load(model).generate_dialogue("Alice: hello there.\nBob: hi.", seed=4, max_frames=3,
                                                pause=0.1, voices={"Alice": "serena", "Bob": "ryan"})
    audio, _ = sf.read(out, dtype="float32")
    np.testing.assert_allclose(audio, np.clip(expected.audio, -1, 1), atol=2 / 32768)
    assert "turn 2 Bob: " in err and f"seed {expected.turns[1].seed}" in err
    code, err = main_in_process(["--model", str(model), "--script", str(tmp_path / "play.txt"),
                                 "--out", str(out)], capsys)
    assert code == 2 and "Line 1: speaker 'Alice': Unknown speaker 'Alice'" in err
    reference_wav(tmp_path / "ref.wav")
    code, err = main_in_process(["--model", str(model), "--script", str(tmp_path / "play.txt"),
                                 "--ref-audio", str(tmp_path / "ref.wav")], capsys)
    assert code == 2 and "--ref-audio does not go with --script" in err
    (tmp_path / "dots.txt").write_text("Alice: hello there.\nBob: ...\n")
    code, err = main_in_process(["--model", str(model), "--script", str(tmp_path / "dots.txt"), "--cast",
                                 "Alice=serena", "--cast", "Bob=ryan"], capsys)
    # The turn's text is no --text flag (it was "Line 2: --text '...' has no letters").
    assert code == 2 and "error: Line 2: the text '...' has no letters or digits" in err, err
    code, err = main_in_process(["--model", str(model), "--script", str(tmp_path / "play.txt"), "--cast",
                                 "Bob="], capsys)
    assert code == 2 and "--cast Bob=: expected NAME=VOICE" in err, err
