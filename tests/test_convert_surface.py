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


# --------------------------------------------------------------------------- a hostile-input audit


def no_staging_left(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith((".tmp", ".old"))]


def test_a_folder_that_appears_while_converting_is_never_replaced(tiny_q, tmp_path, monkeypatch):
    """`--mlx-path` was checked before the conversion (minutes) and whatever stood there at the
    end was deleted, a user's folder included, with no --force."""
    target = tmp_path / "out"
    save = cv.save_model

    def meanwhile(*args, **kwargs):
        target.mkdir()
        (target / "notes.txt").write_text("mine")
        return save(*args, **kwargs)

    monkeypatch.setattr(cv, "save_model", meanwhile)
    with pytest.raises(FileExistsError, match="appeared while converting.*Nothing was written"):
        cv.convert(str(tiny_q), target)
    assert [p.name for p in target.iterdir()] == ["notes.txt"] and no_staging_left(tmp_path)


@pytest.mark.parametrize("failure,code,message", [
    (RuntimeError("[write] Unable to write 1825721 bytes to file."), 1, "Cannot write"),  # a full disk
    (KeyboardInterrupt(), 130, None),
])
def test_a_failed_or_interrupted_write_is_one_line_and_leaves_nothing(tiny_q, tmp_path, monkeypatch, capsys,
                                                                        failure, code, message):
    def fail(*args, **kwargs):
        raise failure

    monkeypatch.setattr(cv, "save_model", fail)
    got, err = run_main(["--hf-path", str(tiny_q), "--mlx-path", str(tmp_path / "out")], capsys)
    assert got == code and "Traceback" not in err, err
    if message:
        assert message in one_error_line(err)
    assert not (tmp_path / "out").exists() and no_staging_left(tmp_path)


def test_sigterm_ends_a_conversion_as_ctrl_c_does(tiny_q, tmp_path, monkeypatch, capsys):
    """A killed conversion left gigabytes in a hidden staging folder nothing ever removed."""
    import signal

    monkeypatch.setattr(cv, "save_model", lambda *a, **k: os.kill(os.getpid(), signal.SIGTERM))
    before = signal.getsignal(signal.SIGTERM)
    code, err = run_main(["--hf-path", str(tiny_q), "--mlx-path", str(tmp_path / "out")], capsys)
    assert code == 130 and "interrupted; nothing was written" in err
    assert no_staging_left(tmp_path) and signal.getsignal(signal.SIGTERM) is before


def test_main_gives_back_the_sigterm_handler_it_found(tmp_path, capsys):
    """A conversion's own handler stayed installed after main returned (every earlier test left
    it behind, so the test above could not tell)."""
    import signal

    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        code, _ = run_main(["--hf-path", str(tmp_path / "never-read"), "--mlx-path", str(tmp_path / "out")],
                           capsys)
        assert code == 2 and signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("make,message", [
    (lambda d: (d / "link").symlink_to(d / "nowhere"), "it is a symbolic link"),  # dangling
    (lambda d: (d / "link").symlink_to(d), "it is a symbolic link"),  # --force would replace the link
])
def test_a_symbolic_link_as_output_is_refused_up_front(tiny_q, tmp_path, capsys, make, message):
    make(tmp_path)
    code, err = run_main(["--hf-path", str(tmp_path / "never-read"), "--mlx-path", str(tmp_path / "link"),
                          "--force"], capsys)
    assert code == 2 and message in one_error_line(err)


def test_an_output_under_a_file_is_refused_up_front(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")
    code, err = run_main(["--hf-path", str(tmp_path / "never-read"), "--mlx-path",
                          str(tmp_path / "config.json" / "out")], capsys)
    assert code == 2 and "config.json is a file, not a folder" in one_error_line(err)


def test_a_source_without_its_text_tokenizer_is_refused_before_writing(tiny_q, tmp_path, capsys):
    import shutil

    source = shutil.copytree(tiny_q, tmp_path / "src")
    (source / "vocab.json").unlink()
    code, err = run_main(["--hf-path", str(source), "--mlx-path", str(tmp_path / "out")], capsys)
    assert code == 1 and "lacks the text tokenizer file vocab.json" in one_error_line(err)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kwargs,message", [
    (dict(quantize=True, q_bits=8.0), "q_bits 8.0 is not supported"),  # 8.0 == 8 reached mx.quantize
    (dict(quantize=True, q_group_size=64.0), "q_group_size 64.0 is not supported"),
    (dict(upload_repo="me/model..8bit"), "upload_repo 'me/model..8bit' is not a Hugging Face repo id"),
])
def test_options_are_checked_before_any_work(tmp_path, kwargs, message):
    with pytest.raises(cv.ArgumentError, match=message):
        cv.convert(str(tmp_path / "never-read"), tmp_path / "out", **kwargs)


def test_a_sharded_speech_tokenizer_converts_to_a_folder_that_loads(tiny_q, tmp_path):
    """The codec's weights are written as one file, but its shard index was copied beside it:
    the output named shards it did not have and did not load."""
    import shutil

    import mlx.core as mx

    import mlx_qwen3_tts as qt

    source = shutil.copytree(tiny_q, tmp_path / "src")
    codec = source / "speech_tokenizer"
    weights = mx.load(str(codec / "model.safetensors"))
    (codec / "model.safetensors").unlink()
    keys, owner = sorted(weights), {}
    for i, part in enumerate((keys[: len(keys) // 2], keys[len(keys) // 2 :])):
        name = f"model-0000{i + 1}-of-00002.safetensors"
        mx.save_safetensors(str(codec / name), {k: weights[k] for k in part}, metadata={"format": "pt"})
        owner |= dict.fromkeys(part, name)
    (codec / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": owner}))
    qt.load(source)  # the source loads
    out = cv.convert(str(source), tmp_path / "out")
    assert not (out / "speech_tokenizer" / "model.safetensors.index.json").exists()
    assert qt.load(out).generate("Hi.", speaker="ryan", max_frames=2).frames == 2


def test_a_file_or_an_empty_hf_path_is_a_bad_argument(tmp_path, capsys):
    """A file exited 1 (a failed load) where a missing path exits 2, and "" meant the working
    folder; qt.load("") converted nothing but loaded whatever folder Python ran in."""
    import mlx_qwen3_tts as qt

    (tmp_path / "model.safetensors").write_bytes(b"x")
    for hf_path in (str(tmp_path / "model.safetensors"), ""):
        code, err = run_main(["--hf-path", hf_path, "--mlx-path", str(tmp_path / "out")], capsys)
        assert code == 2 and "is not a checkpoint folder" in one_error_line(err)
    with pytest.raises(ModelLoadError, match="The checkpoint path is empty"):
        qt.load("")


def test_a_null_quantization_entry_is_no_quantization(tiny_q, tmp_path):
    import shutil

    import mlx_qwen3_tts as qt

    source = shutil.copytree(tiny_q, tmp_path / "src")
    config = json.loads((source / "config.json").read_text())
    (source / "config.json").write_text(json.dumps({**config, "quantization": None}))
    out = cv.convert(str(source), tmp_path / "out")  # it was refused as "already quantized"
    assert qt.load(out).generate("Hi.", speaker="ryan", max_frames=2).frames == 2
