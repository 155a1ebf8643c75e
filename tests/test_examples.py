"""Every script in examples/ runs on a tiny random checkpoint and writes the library's own audio.

Each script is run as a user runs it (a subprocess); its files are compared, sample for sample,
with what the public API gives for the same arguments and seeds.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import mlx_qwen3_tts as qt

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
FRAMES = 4
PCM16_TOL = 2 / 32768  # the scripts write 16-bit WAV


def run_example(name: str, *args, cwd: Path, env: dict | None = None, ok: bool = True):
    env = {**os.environ, **(env or {})}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *map(str, args)], capture_output=True, text=True,
        cwd=cwd, env=env, timeout=300,
    )
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def assert_same_audio(path: Path, expected: np.ndarray) -> None:
    audio, sr = sf.read(path, dtype="float32")
    assert sr == 24000 and len(audio) == len(expected) > 0
    np.testing.assert_allclose(audio, np.clip(expected, -1, 1), atol=PCM16_TOL)


def test_every_example_is_tested():
    tested = {"custom_voice.py", "voice_design.py", "voice_clone.py", "streaming.py", "batch.py",
              "long_text.py", "dialogue.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_custom_voice(checkpoint, tmp_path):
    model = checkpoint("tiny-0.6b", "custom_voice")
    run_example("custom_voice.py", model, "--speaker", "ryan", "--max-frames", FRAMES, "--seed", 3,
                "--out-dir", tmp_path, cwd=tmp_path)
    tts = qt.load(model)
    for i, (language, text) in enumerate([("english", "Hello! This is Qwen3 text to speech, running on MLX."),
                                          ("chinese", "你好，今天天气很好。我们一起去公园散步吧。")]):
        expected = tts.generate(text, speaker="ryan", language=language, max_frames=FRAMES, seed=3 + i)
        assert_same_audio(tmp_path / f"custom_voice_{language}.wav", expected.audio)


def test_voice_design(checkpoint, tmp_path):
    model = checkpoint("tiny-1.7b", "voice_design")
    run_example("voice_design.py", model, "--max-frames", FRAMES, "--out-dir", tmp_path, cwd=tmp_path)
    tts = qt.load(model)
    text = "The library opens at nine, and the reading room stays quiet until noon."
    voices = {"narrator": "A calm, deep male voice, speaking slowly like a documentary narrator.",
              "cheerful": "A bright, cheerful young woman, fast and full of energy."}
    for i, (name, description) in enumerate(voices.items()):
        expected = tts.generate(text, instruct=description, language="english", max_frames=FRAMES, seed=i)
        assert_same_audio(tmp_path / f"voice_design_{name}.wav", expected.audio)


def test_voice_clone(checkpoint, tmp_path):
    t = np.arange(24000) / 24000
    sf.write(tmp_path / "ref.wav", (0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), 24000)
    model = checkpoint("tiny-1.7b", "base")
    run_example("voice_clone.py", model, "ref.wav", "--ref-text", "this is my voice.", "--voice-file",
                "me.safetensors", "--max-frames", FRAMES, cwd=tmp_path)
    saved = qt.VoicePrompt.load(tmp_path / "me.safetensors")
    tts = qt.load(model)
    voice = tts.create_voice_prompt(str(tmp_path / "ref.wav"), ref_text="this is my voice.")
    np.testing.assert_array_equal(saved.ref_codes, voice.ref_codes)
    lines = ["This is my cloned voice, reading a sentence I never recorded.",
             "The voice prompt was encoded once and loaded back from a file."]
    for i, text in enumerate(lines):
        expected = tts.generate(text, voice=voice, language="english", max_frames=FRAMES, seed=i)
        assert_same_audio(tmp_path / f"voice_clone_{i}.wav", expected.audio)


def test_streaming(checkpoint, tmp_path):
    model = checkpoint("tiny-0.6b", "custom_voice")
    proc = run_example("streaming.py", model, "--max-frames", 16, "--seed", 2, "--out", "s.wav", cwd=tmp_path)
    assert "+2 frames" in proc.stdout  # the short first chunk came on its own
    text = ("Streaming lets you hear the first words after a fraction of a second, "
            "long before the whole sentence has been generated.")
    expected = qt.load(model).generate(text, speaker="vivian", max_frames=16, seed=2)
    assert_same_audio(tmp_path / "s.wav", expected.audio)


def test_batch(checkpoint, tmp_path):
    (tmp_path / "lines.txt").write_text("one line.\n\ntwo lines here.\nthree.\n", encoding="utf-8")
    model = checkpoint("tiny-0.6b", "custom_voice")
    proc = run_example("batch.py", model, "lines.txt", "--batch-size", 2, "--max-frames", FRAMES,
                       "--out-dir", "clips", cwd=tmp_path)
    assert sorted(p.name for p in (tmp_path / "clips").iterdir()) == [f"line_00{i}.wav" for i in range(3)]
    assert "3 lines" in proc.stdout
    tts = qt.load(model)
    for i, line in enumerate(["one line.", "two lines here.", "three."]):
        # Line i is sampled with seed + i in its batch, as it would be alone.
        expected = tts.generate(line, speaker="ryan", max_frames=FRAMES, seed=i)
        assert_same_audio(tmp_path / "clips" / f"line_{i:03d}.wav", expected.audio)


def test_long_text(checkpoint, tmp_path):
    from mlx_qwen3_tts.text_split import split_text

    text = " ".join(f"Sentence {i} of a long text, read aloud from a file." for i in range(12))
    (tmp_path / "long.txt").write_text(text, encoding="utf-8")
    model = checkpoint("tiny-0.6b", "custom_voice", eos_scale=40.0)  # each piece ends by EOS
    run_example("long_text.py", model, "long.txt", "--seed", 0, "--out", "long.wav", cwd=tmp_path)
    assert len(split_text(text)) > 1
    assert_same_audio(tmp_path / "long.wav", qt.load(model).generate(text, speaker="vivian", seed=0).audio)


def test_dialogue(checkpoint, tmp_path):
    model = checkpoint("tiny-0.6b", "custom_voice")
    proc = run_example("dialogue.py", model, "--max-frames", FRAMES, "--seed", 2, "--pause", 0.2,
                       "--out", "d.wav", cwd=tmp_path)
    spec = importlib.util.spec_from_file_location("dialogue_example", EXAMPLES / "dialogue.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)  # its SCRIPT and CAST (main() runs only as a script)
    expected = qt.load(model).generate_dialogue(example.SCRIPT, voices=example.CAST, pause=0.2, seed=2,
                                                language="english", max_frames=FRAMES)
    assert_same_audio(tmp_path / "d.wav", expected.audio)
    assert all(f"{t.speaker}: {t.text}" in proc.stdout for t in expected.turns)


@pytest.mark.parametrize("name,args,message", [
    ("custom_voice.py", ["--instruct", "whisper"], "error: The 0.6B CustomVoice checkpoint ignores"),
    ("custom_voice.py", ["--speaker", "nobody"], "error: Unknown speaker 'nobody'"),
    ("streaming.py", ["--play"], "error: --play needs sounddevice: pip install sounddevice"),
])
def test_library_errors_are_one_line(checkpoint, tmp_path, name, args, message):
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "sounddevice.py").write_text("raise ImportError('hidden by the test')\n")
    proc = run_example(name, checkpoint("tiny-0.6b", "custom_voice"), *args, "--max-frames", 1, cwd=tmp_path,
                       env={"PYTHONPATH": str(stub)}, ok=False)
    assert proc.returncode == 1 and proc.stderr.strip() == proc.stderr.strip().splitlines()[-1]
    assert proc.stderr.startswith(message) and "Traceback" not in proc.stderr


def test_an_unreachable_hub_is_one_line(tmp_path):
    proc = run_example("custom_voice.py", "nobody/not-cached", cwd=tmp_path, ok=False,
                       env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: Could not fetch nobody/not-cached: the Hugging Face Hub is "
                                  "unreachable")
