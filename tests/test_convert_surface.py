"""The converter's surface: `--force` replaces only its own folders, and the command fails in one
line with a documented exit status (1: the library or system failed, 2: bad arguments)."""

import json
import os
from pathlib import Path

import pytest

from mlx_qwen3_tts import convert as cv
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
    with pytest.raises(ValueError, match="`--force` only replaces folders written by mlx-qwen3-tts"):
        cv.convert(str(tiny_q), target, force=True)
    assert (target / "thesis.txt").read_text() == "years of work"
    (target / "config.json").write_text(json.dumps({"model_type": "qwen3_tts"}))  # a checkpoint, not ours
    with pytest.raises(ValueError, match="Cannot replace"):
        cv.convert(str(tiny_q), target, force=True)
    assert (target / "thesis.txt").is_file()


def test_force_refuses_a_file(tiny_q, tmp_path):
    (tmp_path / "out").write_text("a file")
    with pytest.raises(ValueError, match="it is a file, not a converted folder"):
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
