"""Speaking rate through every front end: the audio is time-scaled, its codes are not, and a
stream gives the one-shot samples (the signal processing itself: test_timescale.py)."""

import numpy as np
import pytest
import soundfile as sf
from test_cli import main_in_process

import mlx_qwen3_tts as qt

TEXT = "hello there, this is a test of the speaking rate."
ARGS = dict(speaker="ryan", seed=3, max_frames=10)


@pytest.mark.parametrize("speed", [0.5, 0.8, 1.25, 2.0])
def test_duration_scales_and_codes_stay(cv, speed):
    normal = cv.generate(TEXT, **ARGS)
    scaled = cv.generate(TEXT, speed=speed, **ARGS)
    np.testing.assert_array_equal(scaled.codes, normal.codes)
    assert len(scaled.audio) == round(len(normal.audio) / speed)
    np.testing.assert_allclose(scaled.audio, qt.timescale.time_stretch(normal.audio, speed), atol=1e-6)


def test_speed_one_is_the_model_itself(cv):
    assert np.array_equal(cv.generate(TEXT, speed=1.0, **ARGS).audio, cv.generate(TEXT, **ARGS).audio)


def test_streams_give_the_one_shot_samples(cv):
    one = cv.generate(TEXT, speed=1.5, **ARGS)
    chunks = list(cv.stream_generate(TEXT, speed=1.5, chunk_frames=3, **ARGS))
    np.testing.assert_allclose(np.concatenate([c.audio for c in chunks]), one.audio, atol=1e-5)
    with cv.open_stream(speed=0.75, **ARGS) as s:
        s.feed(TEXT)
        streamed = np.concatenate([c.audio for c in list(s.audio()) + list(s.finish())])
    in_layout = cv.generate(TEXT, speed=0.75, non_streaming_mode=False, **ARGS)
    np.testing.assert_allclose(streamed, in_layout.audio, atol=1e-5)
    batch = cv.generate_batch([TEXT], speed=1.5, **ARGS)
    np.testing.assert_allclose(batch[0].audio, one.audio, atol=1e-5)


@pytest.mark.parametrize("speed", [0.25, 3, "fast", True, float("nan")])
def test_bad_speeds_are_typed_errors(cv, speed):
    with pytest.raises(qt.SynthesisError, match="`speed` must be"):
        cv.generate(TEXT, speed=speed, **ARGS)


def test_the_command_line_takes_speed(checkpoint, tmp_path, capsys):
    model = checkpoint("tiny-0.6b", "custom_voice")
    out = tmp_path / "fast.wav"
    code, err = main_in_process(["--model", str(model), "--text", TEXT, "--speaker", "ryan", "--seed", "3",
                                 "--max-frames", "10", "--speed", "1.6", "--out", str(out)], capsys)
    assert code == 0, err
    audio, _ = sf.read(out, dtype="float32")
    expected = qt.load(model).generate(TEXT, speed=1.6, **ARGS).audio
    np.testing.assert_allclose(audio, np.clip(expected, -1, 1), atol=2 / 32768)
    code, err = main_in_process(["--model", str(model), "--text", TEXT, "--speed", "5"], capsys)
    assert code == 2 and "--speed must be between 0.5 and 2.0" in err
