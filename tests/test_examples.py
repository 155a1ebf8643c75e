"""Every script in examples/ runs on a tiny random checkpoint and writes audio of a plausible length."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
FRAMES = 4
SAMPLES_PER_FRAME = 1920


def run_example(name: str, *args, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *map(str, args)], capture_output=True, text=True,
        cwd=cwd, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def assert_clip(path: Path, max_frames: int = FRAMES) -> np.ndarray:
    """24 kHz audio of whole frames, at most `max_frames` of them (a random model may stop early)."""
    audio, sr = sf.read(path, dtype="float32")
    assert sr == 24000 and len(audio) % SAMPLES_PER_FRAME == 0
    assert 0 < len(audio) <= max_frames * SAMPLES_PER_FRAME
    return audio


def test_every_example_is_tested():
    tested = {"custom_voice.py", "voice_design.py", "voice_clone.py", "streaming.py", "batch.py",
              "long_text.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_custom_voice(checkpoint, tmp_path):
    run_example("custom_voice.py", checkpoint("tiny-0.6b", "custom_voice"), "--speaker", "ryan",
                "--max-frames", FRAMES, "--out-dir", tmp_path, cwd=tmp_path)
    for language in ("english", "chinese"):
        assert_clip(tmp_path / f"custom_voice_{language}.wav")


def test_voice_design(checkpoint, tmp_path):
    run_example("voice_design.py", checkpoint("tiny-1.7b", "voice_design"), "--max-frames", FRAMES,
                "--out-dir", tmp_path, cwd=tmp_path)
    for name in ("narrator", "cheerful"):
        assert_clip(tmp_path / f"voice_design_{name}.wav")


def test_voice_clone(checkpoint, tmp_path):
    t = np.arange(24000) / 24000
    sf.write(tmp_path / "ref.wav", (0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), 24000)
    run_example("voice_clone.py", checkpoint("tiny-1.7b", "base"), "ref.wav", "--ref-text",
                "this is my voice.", "--voice-file", "me.safetensors", "--max-frames", FRAMES, cwd=tmp_path)
    assert (tmp_path / "me.safetensors").is_file()
    for i in range(2):
        assert_clip(tmp_path / f"voice_clone_{i}.wav")


def test_streaming(checkpoint, tmp_path):
    proc = run_example("streaming.py", checkpoint("tiny-0.6b", "custom_voice"), "--max-frames", 16,
                       "--out", "s.wav", cwd=tmp_path)
    assert_clip(tmp_path / "s.wav", max_frames=16)
    assert "+2 frames" in proc.stdout  # the short first chunk came on its own


def test_batch(checkpoint, tmp_path):
    (tmp_path / "lines.txt").write_text("one line.\n\ntwo lines here.\nthree.\n", encoding="utf-8")
    proc = run_example("batch.py", checkpoint("tiny-0.6b", "custom_voice"), "lines.txt", "--batch-size", 2,
                       "--max-frames", FRAMES, "--out-dir", "clips", cwd=tmp_path)
    assert sorted(p.name for p in (tmp_path / "clips").iterdir()) == [f"line_00{i}.wav" for i in range(3)]
    for clip in (tmp_path / "clips").iterdir():
        assert_clip(clip)
    assert "3 lines" in proc.stdout


def test_long_text(checkpoint, tmp_path):
    import mlx_qwen3_tts as qt
    from mlx_qwen3_tts.text_split import split_text

    text = " ".join(f"Sentence {i} of a long text, read aloud from a file." for i in range(12))
    (tmp_path / "long.txt").write_text(text, encoding="utf-8")
    model = checkpoint("tiny-0.6b", "custom_voice", eos_scale=40.0)  # each piece ends by EOS
    run_example("long_text.py", model, "long.txt", "--seed", 0, "--out", "long.wav", cwd=tmp_path)
    audio, sr = sf.read(tmp_path / "long.wav", dtype="float32")
    assert sr == 24000 and len(split_text(text)) > 1
    expected = qt.load(model).generate(text, speaker="vivian", seed=0)
    np.testing.assert_allclose(audio, np.clip(expected.audio, -1, 1), atol=2 / 32768)  # 16-bit WAV
