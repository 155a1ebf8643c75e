"""The converter's surface: `--force` replaces only its own folders, and the command fails in one
line with a documented exit status (1: the library or system failed, 2: bad arguments)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlx_qwen3_tts import convert as cv
from mlx_qwen3_tts.errors import ModelLoadError
from mlx_qwen3_tts.loading import FORMAT_KEY

ROOT = Path(__file__).parents[1]
PREFIX = "mlx-qwen3-tts-convert: error: "


@pytest.fixture(scope="module")
def tiny_q(checkpoint):
    return checkpoint("tiny-q", "custom_voice")


@pytest.fixture(scope="module")
def converted(tiny_q, tmp_path_factory):
    return cv.convert(str(tiny_q), tmp_path_factory.mktemp("surface") / "converted")


def run_main(argv, capsys) -> tuple[int, str]:
    code = cv.main(argv)
    err = capsys.readouterr().err
    return code, err


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(PREFIX), err
    assert "Traceback" not in err
    return lines[0]


def offline_env(tmp_path) -> dict[str, str]:
    """No network and an empty Hub cache, so no repo id resolves."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
            "HF_HUB_CACHE": str(tmp_path / "hf" / "hub")}


# --------------------------------------------------------------------------- case 4: --force


def test_force_refuses_a_folder_it_did_not_write(tiny_q, tmp_path, capsys):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "thesis.txt").write_text("years of work")
    with pytest.raises(cv.ArgumentError, match="`--force` only replaces folders written by mlx-qwen3-tts"):
        cv.convert(str(tiny_q), target, force=True)
    assert (target / "thesis.txt").read_text() == "years of work"
    (target / "config.json").write_text(json.dumps({"model_type": "qwen3_tts"}))  # a checkpoint, not ours
    code, err = run_main(["--hf-path", str(tiny_q), "--mlx-path", str(target), "--force"], capsys)
    assert code == 2 and "Cannot replace" in one_error_line(err)
    assert (target / "thesis.txt").is_file()


def test_force_refuses_a_file(tiny_q, tmp_path):
    (tmp_path / "out").write_text("a file")
    with pytest.raises(cv.ArgumentError, match="it is a file, not a converted folder"):
        cv.convert(str(tiny_q), tmp_path / "out", force=True)


def test_force_replaces_an_earlier_conversion(tiny_q, tmp_path):
    target = cv.convert(str(tiny_q), tmp_path / "out")
    (target / "stale.txt").write_text("from before")
    assert cv.is_conversion_output(target)
    cv.convert(str(tiny_q), target, force=True)
    assert not (target / "stale.txt").exists()
    assert FORMAT_KEY in json.loads((target / "config.json").read_text())


@pytest.mark.parametrize("config", ["{not json", "[" * 100000, json.dumps({FORMAT_KEY: "x"})])
def test_broken_or_foreign_config_is_not_a_conversion_output(tmp_path, config):
    (tmp_path / "config.json").write_text(config)
    assert not cv.is_conversion_output(tmp_path)


# --------------------------------------------------------------------------- case 5: one line, exit codes


def test_existing_output_folder(tiny_q, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    code, err = run_main(["--hf-path", str(tiny_q), "--mlx-path", str(tmp_path / "out")], capsys)
    assert code == 2
    assert "already exists. Delete it, choose another `--mlx-path`, or pass `--force`" in one_error_line(err)


def test_already_converted_input(converted, tmp_path, capsys):
    code, err = run_main(["--hf-path", str(converted), "--mlx-path", str(tmp_path / "again")], capsys)
    assert code == 2 and "is already converted by mlx_qwen3_tts" in one_error_line(err)


def test_missing_folder(tmp_path, capsys):
    missing = tmp_path / "no" / "such-checkpoint"
    code, err = run_main(["--hf-path", str(missing), "--mlx-path", str(tmp_path / "out")], capsys)
    assert code == 2 and f"`--hf-path` {missing} is neither an existing folder" in one_error_line(err)
    with pytest.raises(ModelLoadError):  # still a ModelLoadError for library callers
        cv.convert(str(missing), tmp_path / "out")


def test_bad_option_value(tiny_q, tmp_path, capsys):
    code, err = run_main(["--hf-path", str(tiny_q), "--mlx-path", str(tmp_path / "o"), "--q-bits", "4"],
                         capsys)
    assert code == 2 and "only apply with quantize=True" in one_error_line(err)


def test_checkpoint_that_cannot_be_loaded(tmp_path, capsys):
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "config.json").write_text("{}")
    code, err = run_main(["--hf-path", str(tmp_path / "ck"), "--mlx-path", str(tmp_path / "out")], capsys)
    assert code == 1 and "lacks speech_tokenizer/config.json" in one_error_line(err)


def test_unreachable_hub(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mlx_qwen3_tts.convert", "--hf-path", "nobody/not-a-cached-model",
         "--mlx-path", str(tmp_path / "out")],
        capture_output=True, text=True, env=offline_env(tmp_path), timeout=300,
    )
    assert result.returncode == 1, result.stderr
    line = one_error_line(result.stderr)
    assert "Could not fetch nobody/not-a-cached-model: the Hugging Face Hub is unreachable" in line
    assert "pass a local checkpoint folder as --hf-path" in line
    assert not (tmp_path / "out").exists()


def test_failed_upload_says_where_the_folder_is(tiny_q, tmp_path):
    out = tmp_path / "up"
    result = subprocess.run(
        [sys.executable, str(ROOT / "convert.py"), "--hf-path", str(tiny_q), "--mlx-path", str(out),
         "--upload-repo", "me/tiny-8bit"],
        capture_output=True, text=True, env=offline_env(tmp_path), timeout=300,
    )
    assert result.returncode == 1, result.stderr
    line = one_error_line(result.stderr)
    assert "Upload to me/tiny-8bit failed" in line
    assert f"the converted folder was written to {out.resolve()}" in line
    assert (out / "model.safetensors").is_file()


def test_network_errors_of_the_hub_client_are_upload_errors(tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub import HfApi  # noqa: F401 - loads the Hub's HTTP client

    # The HTTP client's own base error, which is neither an OSError nor a ValueError.
    transport = next(e for e in cv._upload_errors() if not issubclass(e, (OSError, ValueError)))

    class Unreachable:
        def create_repo(self, **kw):
            raise transport("connection refused")

    monkeypatch.setattr(huggingface_hub, "HfApi", Unreachable)
    with pytest.raises(cv.UploadError, match=f"the converted folder was written to {tmp_path}"):
        cv.upload_to_hub(tmp_path, "me/x")


def test_main_returns_zero_and_the_script_exits_with_its_status(tiny_q, tmp_path, capsys):
    assert cv.main(["--hf-path", str(tiny_q), "--mlx-path", str(tmp_path / "ok")]) == 0
    result = subprocess.run([sys.executable, str(ROOT / "convert.py"), "--hf-path", str(tiny_q),
                             "--mlx-path", str(tmp_path / "ok")], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith(PREFIX)
