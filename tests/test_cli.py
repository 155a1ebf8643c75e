"""The `mlx-qwen3-tts` command, run as users run it: `python -m mlx_qwen3_tts` in a subprocess.

Error paths and the audio players are checked through `cli.main` in-process (the same code without
a new interpreter, whose start dominates each subprocess) to keep the suite fast.
"""

import io
import os
import stat
import subprocess
import sys
import types
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
import soundfile as sf

import mlx_qwen3_tts as qt
from mlx_qwen3_tts import cli

REPO = Path(__file__).resolve().parents[1]
TEXT = "hello world, this is a test."
SAMPLES_PER_FRAME = 1920
# libsndfile writes float * 32767 and reads int / 32768: allow two steps of 16-bit PCM.
PCM16_TOL = 2 / 32768


def run_cli(*args, cwd: Path, stdin: str = "", env: dict | None = None) -> subprocess.CompletedProcess:
    # The checkout first on the path: the suite tests this tree, however the package is installed.
    env = {**os.environ, **(env or {})}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "mlx_qwen3_tts", *map(str, args)], input=stdin, capture_output=True,
        text=True, cwd=cwd, env=env, timeout=300,
    )


def read_pcm(path: Path) -> tuple[np.ndarray, int]:
    return sf.read(path, dtype="float32")


def reference_wav(path: Path) -> Path:
    t = np.arange(24000) / 24000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), 24000)
    return path


def main_in_process(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def cv(checkpoint) -> Path:
    return checkpoint("tiny-0.6b", "custom_voice")


@pytest.fixture(scope="module")
def base(checkpoint) -> Path:
    return checkpoint("tiny-1.7b", "base")


@pytest.fixture(scope="module")
def default_run(cv, tmp_path_factory):
    """CustomVoice, no --speaker, 6 frames: the output other tests compare against."""
    folder = tmp_path_factory.mktemp("cli")
    proc = run_cli("--model", cv, "--text", TEXT, "--max-frames", 6, "--seed", 3, "--out", "a.wav",
                   cwd=folder)
    return proc, folder / "a.wav"


# --------------------------------------------------------------------------- every mode writes audio


def test_custom_voice_default_speaker_writes_the_library_audio(default_run, cv):
    proc, out = default_run
    assert proc.returncode == 0, proc.stderr
    audio, sr = read_pcm(out)
    assert sr == 24000 and len(audio) == 6 * SAMPLES_PER_FRAME
    assert "[INFO] No --speaker given: using vivian" in proc.stderr
    summary = next(line for line in proc.stderr.splitlines() if "s of audio" in line)
    for field in ("0.48 s of audio (6 frames)", "first audio after", "RTF", "peak memory", "seed 3"):
        assert field in summary
    expected = qt.load(cv).generate(TEXT, speaker="vivian", seed=3, max_frames=6).audio
    np.testing.assert_allclose(audio, np.clip(expected, -1, 1), atol=PCM16_TOL)


def test_stream_writes_and_plays_the_same_audio(default_run, cv, tmp_path):
    # A fake `ffplay` (the first pipe player tried) records what it is fed; a stub module hides any
    # installed sounddevice so the pipe player is the one chosen.
    bin_dir, stub_dir = tmp_path / "bin", tmp_path / "stub"
    bin_dir.mkdir()
    stub_dir.mkdir()
    fake = bin_dir / "ffplay"
    fake.write_text('#!/bin/sh\nexec cat > "$FAKE_PLAYER_OUT"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    (stub_dir / "sounddevice.py").write_text("raise ImportError('hidden by the test')\n")
    played = tmp_path / "played.f32"
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_PLAYER_OUT": str(played),
           "PYTHONPATH": str(stub_dir)}
    proc = run_cli("--model", cv, "--text", TEXT, "--max-frames", 6, "--seed", 3, "--out", "b.wav",
                   "--stream", "--play", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    streamed, sr = sf.read(tmp_path / "b.wav", dtype="int16")
    one_shot, _ = sf.read(default_run[1], dtype="int16")
    assert sr == 24000 and np.array_equal(streamed, one_shot)
    heard = np.fromfile(played, "<f4")
    assert len(heard) == 6 * SAMPLES_PER_FRAME
    np.testing.assert_allclose(np.clip(heard, -1, 1), one_shot / 32768, atol=PCM16_TOL)


def test_text_file_to_flac_with_speaker_and_language(cv, tmp_path):
    (tmp_path / "in.txt").write_text(TEXT + "\n", encoding="utf-8")
    proc = run_cli("--model", cv, "--text-file", "in.txt", "--speaker", "Ryan", "--language", "English",
                   "--max-frames", 5, "--seed", 1, "--temperature", 0.7, "--top-k", 20, "--top-p", 0.9,
                   "--repetition-penalty", 1.1, "--device", "cpu", "--out", "c.flac", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "No --speaker given" not in proc.stderr
    info = sf.info(tmp_path / "c.flac")
    assert info.format == "FLAC" and info.samplerate == 24000 and info.frames == 5 * SAMPLES_PER_FRAME


def test_five_thousand_characters_from_a_file(checkpoint, tmp_path):
    """A long text is split into pieces by the library, spoken and joined into one file."""
    from mlx_qwen3_tts.text_split import split_text

    text = " ".join(f"Line {i} of a long story, read from a file by the command line." for i in range(80))
    assert len(text) >= 5000 and len(split_text(text)) > 10
    (tmp_path / "long.txt").write_text(text, encoding="utf-8")
    # A checkpoint that ends each piece by EOS after a few frames, so every piece is spoken.
    model = checkpoint("tiny-0.6b", "custom_voice", eos_scale=40.0)
    proc = run_cli("--model", model, "--text-file", "long.txt", "--speaker", "ryan", "--seed", 0,
                   "--out", "long.wav", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    audio, sr = read_pcm(tmp_path / "long.wav")
    expected = qt.load(model).generate(text, speaker="ryan", seed=0)
    assert sr == 24000 and expected.finish_reason == "eos"
    np.testing.assert_allclose(audio, np.clip(expected.audio, -1, 1), atol=PCM16_TOL)


def test_standard_input_to_ogg_quietly(cv, tmp_path):
    proc = run_cli("--model", cv, "--speaker", "serena", "--max-frames", 4, "--seed", 2, "--out", "d.ogg",
                   "--quiet", cwd=tmp_path, stdin=TEXT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and proc.stdout == ""
    info = sf.info(tmp_path / "d.ogg")
    assert info.format == "OGG" and info.samplerate == 24000 and info.frames == 4 * SAMPLES_PER_FRAME


# The least correlation with the audio itself: Opus codes a random model's noise-like audio
# loosely (0.54 measured); audio shifted or from other codes correlates near 0.
@pytest.mark.parametrize("suffix,format_name,fidelity", [(".mp3", "MP3", 0.9), (".opus", "OGG", 0.4)])
def test_compressed_out_streamed(cv, tmp_path, suffix, format_name, fidelity):
    proc = run_cli("--model", cv, "--speaker", "serena", "--max-frames", 6, "--seed", 2, "--text", TEXT,
                   "--stream", "--out", "f" + suffix, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    info = sf.info(tmp_path / ("f" + suffix))
    expected = qt.load(cv).generate(TEXT, speaker="serena", max_frames=6, seed=2).audio
    assert info.format == format_name and info.samplerate == 24000 and info.frames == len(expected)
    assert info.subtype == {".mp3": "MPEG_LAYER_III", ".opus": "OPUS"}[suffix]
    heard = sf.read(tmp_path / ("f" + suffix), dtype="float32")[0]
    assert np.corrcoef(heard, np.clip(expected, -1, 1))[0, 1] > fidelity  # lossy, but the same audio


def test_voice_design(checkpoint, tmp_path):
    proc = run_cli("--model", checkpoint("tiny-1.7b", "voice_design"), "--text", TEXT,
                   "--instruct", "a calm, low voice", "--max-frames", 4, "--seed", 0, "--out", "e.wav",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    audio, sr = read_pcm(tmp_path / "e.wav")
    assert sr == 24000 and len(audio) == 4 * SAMPLES_PER_FRAME


def test_clone_saves_a_voice_that_gives_the_same_audio(base, tmp_path):
    reference_wav(tmp_path / "ref.wav")
    common = ["--model", base, "--text", TEXT, "--max-frames", 5, "--seed", 4]
    first = run_cli(*common, "--ref-audio", "ref.wav", "--ref-text", "this is my voice.",
                    "--save-voice", "me.safetensors", "--out", "f.wav", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "Saved voice prompt to me.safetensors" in first.stderr
    again = run_cli(*common, "--voice", "me.safetensors", "--out", "g.wav", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    a, sr = read_pcm(tmp_path / "f.wav")
    b, _ = read_pcm(tmp_path / "g.wav")
    assert sr == 24000 and len(a) == 5 * SAMPLES_PER_FRAME and np.array_equal(a, b)


def test_a_voice_saved_by_name_is_reused_by_name(base, tmp_path):
    """--save-voice NAME stores it in the voices folder; --voice NAME finds it there, even with a
    file or folder of that name in the working directory."""
    reference_wav(tmp_path / "ref.wav")
    env = {"MLX_QWEN3_TTS_VOICES": str(tmp_path / "voices")}
    common = ["--model", base, "--text", TEXT, "--max-frames", 4, "--seed", 5]
    first = run_cli(*common, "--ref-audio", "ref.wav", "--ref-text", "this is my voice.",
                    "--save-voice", "alice", "--out", "a.wav", cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    assert "reuse it with --voice alice" in first.stderr
    assert (tmp_path / "voices" / "alice.safetensors").is_file()
    (tmp_path / "alice").mkdir()  # must not hide the saved voice
    again = run_cli(*common, "--voice", "alice", "--out", "b.wav", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    np.testing.assert_array_equal(read_pcm(tmp_path / "a.wav")[0], read_pcm(tmp_path / "b.wav")[0])


@pytest.mark.parametrize("argv,message", [
    (["--voice", "bad name!"], "--voice: Voice name 'bad name!' is not valid"),
    (["--voice", "nobody"], "--voice nobody: no saved voice of that name"),  # exit 1 before
    (["--ref-audio", "ref.wav", "--save-voice", "a\nb"], "--save-voice: Voice name"),
])
def test_voice_names_are_checked(base, tmp_path, capsys, monkeypatch, argv, message):
    reference_wav(tmp_path / "ref.wav")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLX_QWEN3_TTS_VOICES", str(tmp_path / "voices"))
    code, err = main_in_process(["--model", str(base), "--text", TEXT, *argv], capsys)
    assert code == 2 and message in err.splitlines()[-1] and "Traceback" not in err


def test_save_voice_only_when_there_is_no_text(base, tmp_path, capsys, monkeypatch):
    reference_wav(tmp_path / "ref.wav")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    argv = ["--model", str(base), "--ref-audio", "ref.wav", "--save-voice", "v.safetensors"]
    code, err = main_in_process(argv, capsys)
    assert code == 0, err
    assert not qt.VoicePrompt.load(tmp_path / "v.safetensors").in_context
    assert not (tmp_path / "output.wav").exists() and "replacing" not in err
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code, err = main_in_process([*argv, "--ref-text", "this is my voice."], capsys)  # save it again
    assert code == 0 and "[WARNING] --save-voice v.safetensors: replacing the voice saved in" in err, err
    assert qt.VoicePrompt.load(tmp_path / "v.safetensors").in_context


def test_play_without_any_player_degrades_with_a_message(cv, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import fails as if not installed
    monkeypatch.setattr(cli.shutil, "which", lambda name: None)
    out = tmp_path / "h.wav"
    argv = ["--model", str(cv), "--text", TEXT, "--max-frames", "3", "--seed", "0", "--play",
            "--out", str(out)]
    code, err = main_in_process(argv, capsys)
    assert code == 0, err
    assert "[WARNING] --play: no audio player found" in err and "pip install sounddevice" in err
    assert len(read_pcm(out)[0]) == 3 * SAMPLES_PER_FRAME


def test_stream_play_through_sounddevice_needs_no_file(cv, tmp_path, capsys, monkeypatch):
    written, events = [], []

    class OutputStream:
        def __init__(self, samplerate, channels, dtype):
            assert (samplerate, channels, dtype) == (24000, 1, "float32")

        def start(self):
            events.append("start")

        def write(self, block):
            written.append(block[:, 0].copy())

        def stop(self):
            events.append("stop")  # sounddevice's stop() drains what was written

        def close(self):
            events.append("close")

    fake = types.SimpleNamespace(OutputStream=OutputStream, PortAudioError=RuntimeError)
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    monkeypatch.chdir(tmp_path)
    argv = ["--model", str(cv), "--text", TEXT, "--max-frames", "3", "--seed", "0", "--stream", "--play"]
    code, err = main_in_process(argv, capsys)
    assert code == 0, err
    assert events == ["start", "stop", "close"] and len(written) == 2  # first chunk, then the rest
    assert sum(len(b) for b in written) == 3 * SAMPLES_PER_FRAME
    assert list(tmp_path.iterdir()) == []


def test_list_speakers_and_languages(cv, tmp_path):
    proc = run_cli("--model", cv, "--list-speakers", "--list-languages", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    tts = qt.load(cv)
    assert proc.stdout.split() == tts.speakers + tts.languages
    assert "vivian" in tts.speakers and "english" in tts.languages


# --------------------------------------------------------------------------- errors


def test_unknown_speaker_exits_2_listing_the_speakers(cv, tmp_path):
    proc = run_cli("--model", cv, "--text", TEXT, "--speaker", "nobody", "--out", "x.wav", cwd=tmp_path)
    assert proc.returncode == 2
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("mlx-qwen3-tts: error: Unknown speaker 'nobody'")
    assert "aiden" in error and "vivian" in error
    assert "Traceback" not in proc.stderr and not (tmp_path / "x.wav").exists()


def test_clone_on_custom_voice_exits_2_naming_the_base_model(cv, tmp_path, capsys):
    ref = reference_wav(tmp_path / "ref.wav")
    for clone in (["--ref-audio", str(ref)], ["--ref-audio", str(ref), "--save-voice", str(tmp_path / "v")]):
        code, err = main_in_process(["--model", str(cv), "--text", TEXT, "--out", str(tmp_path / "x.wav"),
                                     *clone], capsys)
        assert code == 2 and "Qwen/Qwen3-TTS-12Hz-0.6B-Base" in err.splitlines()[-1]
        assert "Traceback" not in err and "No --speaker given" not in err
    assert not (tmp_path / "x.wav").exists() and not (tmp_path / "v").exists()


@pytest.mark.parametrize("variant,argv,message", [
    ("base", [], "pass --ref-audio (and --ref-text"),
    ("voice_design", ["--speaker", "vivian"], "describe the voice with --instruct"),
])
def test_mode_errors_name_the_flags(checkpoint, variant, argv, message, capsys):
    code, err = main_in_process(["--model", str(checkpoint("tiny-1.7b", variant)), "--text", TEXT, *argv],
                                capsys)
    assert code == 2 and message in err.splitlines()[-1]


@pytest.mark.parametrize("argv,message", [
    (["--temperature", "-1"], "--temperature must be >= 0"),
    (["--top-k", "-1"], "--top-k must be an integer >= 0"),
    (["--top-p", "1.5"], "--top-p must be in (0, 1]"),
])
def test_sampling_errors_name_the_flags(cv, argv, message, tmp_path, capsys):
    code, err = main_in_process(["--model", str(cv), "--text", TEXT, "--out", str(tmp_path / "x.wav"), *argv],
                                capsys)
    assert code == 2 and message in err.splitlines()[-1], err


def test_library_error_exits_1_with_a_traceback_only_when_verbose(tmp_path, capsys):
    argv = ["--model", str(tmp_path / "no-such-checkpoint"), "--text", TEXT]
    code, err = main_in_process(argv, capsys)
    assert code == 1 and err.splitlines()[-1].startswith("mlx-qwen3-tts: error: ")
    assert "Traceback" not in err
    code, err = main_in_process([*argv, "--verbose"], capsys)
    assert code == 1 and "Traceback" in err and "ModelLoadError" in err


@pytest.mark.parametrize("argv,message", [
    ([], "nothing to say"),
    (["--text", "  "], "nothing to say"),
    (["--text", "hi", "--language", "klingon"], "Unsupported language 'klingon'"),
    (["--text", "hi", "--out", "x.m4a"], "unknown audio format '.m4a'"),
    (["--text", "hi", "--out", "no/such/folder/x.wav"], "does not exist"),
    (["--text", "hi", "--ref-text", "words"], "pass --ref-audio too"),
    (["--text", "hi", "--save-voice", "v.safetensors"], "pass --ref-audio too"),
    (["--text", "hi", "--ref-audio", "missing.wav"], "no such file"),
    (["--text", "hi", "--voice", "never_saved_x9"], "--voice never_saved_x9: no saved voice of that name"),
    (["--text-file", "missing.txt"], "no such file"),
    (["--text", "hi", "--speaker", "ryan", "--voice", "v.safetensors"], "pick one"),
    (["--text", "hi", "--ref-audio", "a.wav", "--voice", "v.safetensors"], "not allowed with"),
    (["--text", "hi", "--quiet", "--verbose"], "not allowed with"),
    (["--text", "hi", "--max-frames", "six"], "invalid int value"),
    (["--text", "hi", "--device", "tpu"], "invalid choice"),
])
def test_usage_errors_exit_2_before_loading(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    # A model that does not exist: every one of these must be caught before loading it.
    code, err = main_in_process(["--model", str(tmp_path / "never-loaded"), *argv], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err and "never-loaded" not in err


@pytest.mark.parametrize("argv,message", [
    (["--text", TEXT, "--ref-audio", "ref.wav", "--out", "ref.wav"], "--out ref.wav is the --ref-audio file"),
    (["--text", TEXT, "--ref-audio", "ref.wav", "--save-voice", "./ref.wav"],
     "--save-voice ./ref.wav is the --ref-audio file"),
    (["--text-file", "in.wav", "--out", "in.wav"], "--out in.wav is the --text-file file"),
    (["--script", "in.wav", "--out", "in.wav"], "--out in.wav is the --script file"),
    (["--text", TEXT, "--ref-audio", "ref.wav", "--save-voice", "./v.wav", "--out", "v.wav"],
     "--save-voice ./v.wav is also the --out file"),
    (["--text", TEXT, "--ref-audio", "ref.wav", "--save-voice", "./in.wav"],
     "in.wav exists and is not a voice saved by mlx_qwen3_tts"),
    (["--text", TEXT, "--ref-audio", "ref.wav", "--save-voice", "model.safetensors"],
     "model.safetensors exists and is not a voice saved by mlx_qwen3_tts"),
    (["--text", TEXT, "--ref-audio", "ref.wav", "--save-voice", "notes"],
     "notes.safetensors exists and is not a voice saved by mlx_qwen3_tts"),
])
def test_an_output_that_is_an_input_is_refused(argv, message, tmp_path, capsys, monkeypatch):
    # --out pointing at the recording silently overwrote it.
    reference_wav(tmp_path / "ref.wav")
    (tmp_path / "in.wav").write_text(TEXT)
    (tmp_path / "model.safetensors").write_bytes(b"weights")  # someone's checkpoint, not a voice
    (tmp_path / "voices").mkdir()
    (tmp_path / "voices" / "notes.safetensors").write_text("not a voice")
    monkeypatch.setenv("MLX_QWEN3_TTS_VOICES", str(tmp_path / "voices"))
    monkeypatch.chdir(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code, err = main_in_process(["--model", str(tmp_path / "never-loaded"), *argv], capsys)
    assert code == 2 and message in err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_warnings_are_one_line_in_the_commands_terms(checkpoint, tmp_path, capsys):
    never_stops = checkpoint("tiny-0.6b", "custom_voice", eos_scale=0.0)
    code, err = main_in_process(["--model", str(never_stops), "--text", "hi.", "--speaker", "ryan",
                                 "--out", str(tmp_path / "a.wav")], capsys)
    assert code == 0, err
    warning = [line for line in err.splitlines() if line.startswith("[WARNING]")]
    assert len(warning) == 1 and "runaway guard" in warning[0] and "(--no-runaway-guard)" in warning[0]
    assert ".py" not in err and "`" not in warning[0]
    code, err = main_in_process(["--model", str(never_stops), "--text", "hi.", "--speaker", "ryan",
                                 "--no-runaway-guard", "--max-frames", "120", "--out",
                                 str(tmp_path / "b.wav")], capsys)
    assert code == 0 and "[WARNING]" not in err
    assert sf.info(tmp_path / "b.wav").frames == 120 * SAMPLES_PER_FRAME
    design = checkpoint("tiny-1.7b", "voice_design")
    code, err = main_in_process(["--model", str(design), "--text", "hi.", "--max-frames", "1", "--quiet",
                                 "--out", str(tmp_path / "c.wav")], capsys)
    assert code == 0 and err.strip() == ("[WARNING] No --instruct given: the VoiceDesign model makes up a "
                                         "voice of its own; describe the voice you want with --instruct.")


def test_help_lists_the_serve_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0 and "mlx-qwen3-tts serve" in capsys.readouterr().out


def test_model_paths_and_the_hub_get_local_messages(tmp_path, capsys, monkeypatch):
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    code, err = main_in_process(["--model", "models/x", "--text", TEXT], capsys)
    assert code == 1 and "models/x: no such folder" in err and "internet" not in err.lower()
    offline = run_cli("--model", "nobody/not-cached", "--text", TEXT, cwd=tmp_path,
                      env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert offline.returncode == 1 and "unreachable" in offline.stderr
    assert "pass a local checkpoint folder as --model" in offline.stderr


def test_gpu_that_is_not_there_exits_2(tmp_path, capsys):
    if mx.is_available(mx.gpu):
        pytest.skip("this machine has a GPU backend")
    code, err = main_in_process(["--model", str(tmp_path), "--text", "hi", "--device", "gpu"], capsys)
    assert code == 2 and "no GPU backend" in err


def test_serve_subcommand_dispatches_to_the_server(capsys):
    from mlx_qwen3_tts import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["serve", "--help"])
    assert exit_info.value.code == 0
    assert "mlx-qwen3-tts serve" in capsys.readouterr().out


def test_a_checkpoint_field_is_named_as_in_its_file_not_as_a_flag(checkpoint, tmp_path, capsys):
    """Backquoted names in messages become flags (`ref_text` -> --ref-text); a config file's field
    became one too ('--hidden-size is 0'), and generation_config's max_new_tokens 0 blamed
    --max-frames."""
    import json
    import shutil

    folder = shutil.copytree(checkpoint(), tmp_path / "ck")
    config = json.loads((folder / "config.json").read_text())
    config["talker_config"]["hidden_size"] = 0
    (folder / "config.json").write_text(json.dumps(config))
    argv = ["--model", str(folder), "--text", TEXT, "--out", str(tmp_path / "x.wav")]
    code, err = main_in_process(argv, capsys)
    assert code == 1 and "(talker_config): 'hidden_size' is 0" in err and "--hidden-size" not in err, err
    shutil.copy(checkpoint() / "config.json", folder / "config.json")
    (folder / "generation_config.json").write_text(json.dumps({"max_new_tokens": 0}))
    code, err = main_in_process(argv, capsys)
    assert code == 1 and "'max_new_tokens' must be at least 2" in err and "--max-frames" not in err, err
    (folder / "generation_config.json").unlink()
    code, err = main_in_process([*argv, "--max-frames", "0"], capsys)  # a flag is still a flag
    assert code == 2 and "--max-frames" in err, err


def assert_a_full_disk_is_one_line(cv: Path, tmp_path: Path, capsys) -> None:
    for stream in ([], ["--stream"]):
        code, err = main_in_process(["--model", str(cv), "--text", TEXT, "--max-frames", "2",
                                     "--out", str(tmp_path / "x.wav"), *stream], capsys)
        assert code == 1 and "Traceback" not in err, err
        assert err.strip().splitlines()[-1].endswith(
            f"error: cannot write --out {tmp_path / 'x.wav'}: [Errno 28] No space left on device")


def test_an_unusable_out_is_refused_before_loading_and_a_failed_write_is_one_line(cv, tmp_path, capsys,
                                                                                  monkeypatch):
    """--out naming a folder failed only after the whole text was spoken, with a raw
    LibsndfileError traceback; so did any write that fails (a full disk)."""
    (tmp_path / "d.wav").mkdir()
    code, err = main_in_process(["--model", str(tmp_path / "never-loaded"), "--text", TEXT,
                                 "--out", str(tmp_path / "d.wav")], capsys)
    assert code == 2 and "d.wav is a folder" in err and "never-loaded" not in err
    monkeypatch.setattr(cli.os, "access", lambda path, mode: False)
    code, err = main_in_process(["--model", str(tmp_path / "never-loaded"), "--text", TEXT,
                                 "--out", str(tmp_path / "x.wav")], capsys)
    assert code == 2 and "x.wav: its folder is not writable" in err
    monkeypatch.undo()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli.sf, "SoundFile", full_disk)
    assert_a_full_disk_is_one_line(cv, tmp_path, capsys)


def test_a_text_file_with_a_byte_order_mark_is_read_without_it(cv, tmp_path, capsys):
    """Notepad's byte-order mark was tokenized and spoken before the text."""
    (tmp_path / "t.txt").write_text(TEXT, encoding="utf-8-sig")
    common = ["--model", str(cv), "--speaker", "ryan", "--max-frames", "3", "--seed", "2"]
    sources = ((["--text-file", str(tmp_path / "t.txt")], "file.wav"), (["--text", TEXT], "text.wav"))
    for source, out in sources:
        code, err = main_in_process([*common, *source, "--out", str(tmp_path / out)], capsys)
        assert code == 0, err
    np.testing.assert_array_equal(read_pcm(tmp_path / "file.wav")[0], read_pcm(tmp_path / "text.wav")[0])


def test_standard_input_with_a_byte_order_mark_is_read_without_it(cv, tmp_path, capsys, monkeypatch):
    common = ["--model", str(cv), "--speaker", "ryan", "--max-frames", "3", "--seed", "2"]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\ufeff" + TEXT))  # piped from a Windows tool
    for source, out in (([], "stdin.wav"), (["--text", TEXT], "text.wav")):
        code, err = main_in_process([*common, *source, "--out", str(tmp_path / out)], capsys)
        assert code == 0, err
    np.testing.assert_array_equal(read_pcm(tmp_path / "stdin.wav")[0], read_pcm(tmp_path / "text.wav")[0])


def test_a_read_only_out_file_is_refused_before_loading(tmp_path, capsys, monkeypatch):
    """The check read the folder's permission only: a read-only file in a writable folder failed
    after the whole text was spoken. (Stubbed: root may write any file.)"""
    (tmp_path / "x.wav").write_bytes(b"")
    monkeypatch.setattr(cli.os, "access", lambda path, mode: Path(path) != tmp_path / "x.wav")
    code, err = main_in_process(["--model", str(tmp_path / "never-loaded"), "--text", TEXT,
                                 "--out", str(tmp_path / "x.wav")], capsys)
    assert code == 2 and "x.wav: the file is not writable" in err and "never-loaded" not in err, err


def test_a_write_that_fails_at_close_is_one_line(cv, tmp_path, capsys, monkeypatch):
    """The last header write comes at close: a full disk there was a raw traceback."""

    class FailsAtClose(sf.SoundFile):
        def close(self):
            first = not self.closed
            super().close()
            if first:  # not again from __del__
                raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli.sf, "SoundFile", FailsAtClose)
    assert_a_full_disk_is_one_line(cv, tmp_path, capsys)


def test_a_format_this_libsndfile_cannot_write_is_refused_before_loading(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sf, "available_formats", lambda: {"WAV": "WAV", "FLAC": "FLAC", "OGG": "OGG"})
    monkeypatch.setattr(sf, "available_subtypes", lambda format_name: {"PCM_16": "", "VORBIS": ""})
    for suffix in (".mp3", ".opus"):
        code, err = main_in_process(["--model", str(tmp_path / "never-loaded"), "--text", "hi",
                                     "--out", str(tmp_path / ("x" + suffix))], capsys)
        assert code == 2 and f"cannot write {suffix}; use .wav" in err.splitlines()[-1], err


def test_unknown_saved_voice_lists_the_saved_ones(tmp_path, capsys, monkeypatch):
    from safetensors.numpy import save_file

    from mlx_qwen3_tts.voice_prompt import FORMAT

    voices = tmp_path / "voices"
    monkeypatch.setenv("MLX_QWEN3_TTS_VOICES", str(voices))
    argv = ["--model", str(tmp_path / "never-loaded"), "--text", "hi", "--voice", "bob"]
    code, err = main_in_process(argv, capsys)
    assert code == 2 and "(saved: none)" in err, err
    voices.mkdir()
    save_file({"x": np.zeros(1, np.float32)}, str(voices / "alice.safetensors"), metadata={"format": FORMAT})
    code, err = main_in_process(argv, capsys)
    assert code == 2 and "(saved: alice)" in err, err


@pytest.mark.parametrize("name", ["x.WAV", "x.Mp3", "x.OPUS"])
def test_an_upper_case_suffix_is_accepted(tmp_path, capsys, name):
    code, err = main_in_process(["--model", str(tmp_path / "never-loaded"), "--text", "hi",
                                 "--out", str(tmp_path / name)], capsys)
    assert code == 1 and "no such folder" in err and "Traceback" not in err, err
