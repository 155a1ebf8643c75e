"""Original Qwen3-TTS checkpoints -> MLX folders: sanitized weights, a dtype, optional quantization.

    python -m mlx_qwen3_tts.convert --hf-path Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice \\
        --mlx-path qwen3-tts-0.6b-8bit -q --q-bits 8

The output loads with `mlx_qwen3_tts.load(folder)` with no transposes and no re-quantization:
weights are already in module layout (convolutions channels-last, codec codebooks folded), and
quantized layers are rebuilt from the `quantization` block of `config.json` before loading.

Exit status of the command: 0 converted, 1 the library or the system failed (a checkpoint that
cannot be loaded or fetched, a failed upload, a full disk), 2 bad arguments (an existing output
folder, an already converted input, a missing folder, a bad option), 130 interrupted (Ctrl-C or
SIGTERM; the staging folder is removed, nothing is written). Errors are one line.
"""

import argparse
import json
import re
import shutil
import signal
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten
from mlx_lm.utils import compute_bits_per_weight, save_model

from . import ModelLoadError, Qwen3TTSError, SpeechTokenizer, __version__
from .loading import (
    DTYPES,
    FORMAT_KEY,
    FORMAT_VERSION,
    check_text_tokenizer,
    format_version,
    hub_repo_id,
    is_repo_id,
    load_model,
    read_json,
    resolve_path,
    speech_tokenizer_folder,
)

Q_BITS = (4, 6, 8)
Q_GROUP_SIZES = (32, 64, 128)
DEFAULT_Q_BITS = 8
DEFAULT_Q_GROUP_SIZE = 64
# Files next to the weights that a folder needs (config.json is rewritten, not copied).
SUPPORT_FILES = ("*.json", "*.txt", "*.jinja")
SKIPPED_FILES = ("config.json", "model.safetensors.index.json")

PROG = "mlx-qwen3-tts-convert"
EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class ArgumentError(ValueError):
    """An argument of `convert` must change: checked before any work is done (exit 2)."""


class SourceNotFoundError(ModelLoadError, ArgumentError):
    """`hf_path` is neither a folder nor a repo id: a bad argument (exit 2), not a failed load."""


class UploadError(Qwen3TTSError):
    """The converted folder was written, but uploading it to the Hub failed."""


# The c0 head picks codebook 0 and EOS, so it sets what is said and when it stops; it is 0.3 % of
# the 0.6B weights, so it stays float.
FLOAT_LAYERS = ("talker.codec_head",)
# Fewest bits per kind of layer, whatever `bits` asks. Peers found 4-bit talkers audibly worse,
# and on random weights 4-bit talker attention, then 4-bit MLPs, moved the first-step logits far
# more than a 4-bit text embedding did (bench/quantization_agreement.py; numbers in the README).
# The text embedding is the one big block that tolerates 4 bits; so `bits` sets it, and floors
# keep the stacks usable.
MIN_BITS = (
    # Rows used as they are (codec embeddings, predictor heads), the projections between widths,
    # and attention, whose errors move every later position's softmax.
    (re.compile(r"codec_embedding|lm_head|_projection|self_attn\."), 8),
    (re.compile(r"\.mlp\."), 6),
)


def quant_predicate(path: str, module: nn.Module, group_size: int, bits: int) -> bool | dict[str, Any]:
    """Whether and how one layer is quantized: the whole rule, in one place.

    * Only Linear and Embedding layers of the talker and the code predictor: the speaker encoder
      (convolutions, run in float32), the norms and the codec (another folder) stay float.
    * A layer whose input width is not a multiple of `group_size` stays float: the kernels pack
      whole groups (mlx-lm skips these too). So does `talker.codec_head` (`FLOAT_LAYERS`).
    * Codec embeddings, predictor heads, the text and predictor-input projections and attention
      get at least 8 bits, the MLPs at least 6 (`MIN_BITS`); the text embedding, a third of the
      0.6B model, gets `bits`. So 8 bits is 8 everywhere, and 4 bits is 4 where it is harmless.

    Returns:
        False (keep float), True (quantize at `bits`, `group_size`) or the parameters to use.
    """
    if path.startswith("speaker_encoder") or not hasattr(module, "to_quantized"):
        return False
    if module.weight.shape[-1] % group_size or path in FLOAT_LAYERS:
        return False
    floor = next((b for pattern, b in MIN_BITS if pattern.search(path)), 0)
    if floor > bits:
        return {"group_size": group_size, "bits": floor, "mode": "affine"}
    return True


def _dtype_name(dtype: mx.Dtype) -> str:
    return next(name for name, d in DTYPES.items() if d == dtype)


def quantize_model(model: nn.Module, group_size: int, bits: int) -> dict[str, Any]:
    """Quantize `model` in place by `quant_predicate`; returns the config's `quantization` block.

    The block holds the defaults, the dtype of the scales, and one entry per quantized layer with
    its group size and bits (mlx-lm's per-layer format). How the model computes (its activation
    dtype) is not recorded: `load` decides it for the device (`ComputePolicy`).
    """
    settings = {"group_size": group_size, "bits": bits, "mode": "affine"}
    layers: dict[str, dict[str, Any]] = {}

    def predicate(path: str, module: nn.Module) -> bool | dict[str, Any]:
        result = quant_predicate(path, module, group_size, bits)
        if result:
            layers[path] = result if isinstance(result, dict) else dict(settings)
        return result

    nn.quantize(model, group_size, bits, class_predicate=predicate)
    if not layers:
        raise ArgumentError(
            f"No layer of this checkpoint is a multiple of group size {group_size} wide; "
            f"choose a smaller q_group_size ({', '.join(map(str, Q_GROUP_SIZES))})."
        )
    scales = next(m.scales for _, m in model.named_modules() if "scales" in m)
    return {
        **settings,
        "scale_dtype": _dtype_name(scales.dtype),
        **dict(sorted(layers.items())),
    }


# --------------------------------------------------------------------------- checks

def _check_hf_path(hf_path: str) -> None:
    path = Path(hf_path).expanduser()
    if hf_path.strip() and path.is_dir():
        return
    if path.exists():  # a file, or "" (the working folder): the argument must change
        raise SourceNotFoundError(f"`--hf-path` {hf_path!r} is not a checkpoint folder; pass the folder "
                                  "that holds config.json, or a Hugging Face repo id.")
    if not is_repo_id(hf_path):
        raise SourceNotFoundError(
            f"`--hf-path` {hf_path} is neither an existing folder nor a Hugging Face repo id like "
            "'Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice'; check the path."
        )


def is_conversion_output(folder: Path) -> bool:
    """Whether `folder` was written by `convert` (its config.json carries the format marker)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # missing, unreadable or not JSON: not ours
        return False
    return format_version(config) is not None


def _check_options(dtype: str | None, quantize: bool, q_bits: int | None, q_group_size: int | None,
                   upload_repo: str | None = None):
    if dtype is not None and dtype not in DTYPES:
        raise ArgumentError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}.")
    if not quantize and (q_bits is not None or q_group_size is not None):
        raise ArgumentError("q_bits and q_group_size only apply with quantize=True (-q/--quantize).")
    # `type(...) is int`: 8.0 == 8 passed and reached mx.quantize, which takes ints only.
    if q_bits is not None and (type(q_bits) is not int or q_bits not in Q_BITS):
        raise ArgumentError(f"q_bits {q_bits!r} is not supported; choose one of {Q_BITS}.")
    if q_group_size is not None and (type(q_group_size) is not int or q_group_size not in Q_GROUP_SIZES):
        raise ArgumentError(f"q_group_size {q_group_size!r} is not supported; choose one of {Q_GROUP_SIZES}.")
    # Found before the conversion, not after it (a name the Hub refuses cannot become valid).
    if upload_repo is not None and not hub_repo_id(upload_repo):
        raise ArgumentError(f"upload_repo {upload_repo!r} is not a Hugging Face repo id like "
                            "'you/Qwen3-TTS-0.6B-CustomVoice-8bit'.")


def _check_target(target: Path, force: bool) -> None:
    if target.is_symlink():  # --force would replace the link, not the folder it points to
        raise ArgumentError(f"Cannot save to {target}: it is a symbolic link; name a folder instead.")
    parent = next((p for p in target.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ArgumentError(f"Cannot save to {target}: {parent} is a file, not a folder.")
    if not target.exists():
        return
    if not force:
        raise ArgumentError(
            f"Cannot save to {target}: it already exists. Delete it, choose another `--mlx-path`, "
            "or pass `--force` to replace it."
        )
    # --force deletes the folder: only ever one this converter wrote, never unrelated files.
    if not target.is_dir():
        raise ArgumentError(f"Cannot replace {target}: it is a file, not a converted folder; delete it.")
    if not is_conversion_output(target):
        raise ArgumentError(
            f"Cannot replace {target}: `--force` only replaces folders written by {PROG} (their "
            f"config.json has an `{FORMAT_KEY}` entry); delete it yourself or choose another `--mlx-path`."
        )


def _check_source(source: Path, target: Path, config: dict[str, Any]) -> None:
    src, dst = source.resolve(), target.resolve()
    if src == dst or src.is_relative_to(dst):
        raise ArgumentError(
            f"`--mlx-path` {target} would overwrite the checkpoint being converted ({source}); "
            "choose another."
        )
    version = format_version(config)
    if version is not None:
        made_from = config[FORMAT_KEY].get("source", "the original checkpoint")
        raise ArgumentError(
            f"{source} is already converted by mlx_qwen3_tts (format {version}); load it as it is "
            f"with mlx_qwen3_tts.load, or convert {made_from} again for another dtype or bits."
        )
    if config.get("quantization") is not None or config.get("quantization_config") is not None:
        raise ArgumentError(
            f"{source} is already quantized (an mlx-audio or mlx-lm folder); quantizing it again "
            "would round twice. Load it as it is with mlx_qwen3_tts.load, or convert the original "
            "checkpoint."
        )
    speech_tokenizer_folder(source)
    check_text_tokenizer(source)  # present and readable: the output needs it to load


# --------------------------------------------------------------------------- writing


@contextmanager
def _staged(target: Path, force: bool) -> Iterator[Path]:
    """A temporary folder next to `target` that replaces it only once everything is written.

    Raises:
        OSError: writing failed (a full disk: MLX's RuntimeError, as an OSError), or something
            appeared at `target` while converting that may not be replaced (`_check_target`
            checked it before the conversion, which takes minutes).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()  # not mkdtemp: its 0700 mode would outlive the rename
    done = False
    try:
        try:
            yield tmp
        except RuntimeError as e:  # mx.save_safetensors on a full disk, say
            raise OSError(f"Cannot write {target}: {e}") from e
        if target.exists() or target.is_symlink():
            try:
                _check_target(target, force)
            except ArgumentError as e:
                raise FileExistsError(f"{target} appeared while converting. {e} Nothing was written.") from e
        if target.exists():  # --force: keep the old folder until the new one is in place
            old = tmp.with_suffix(".old")
            target.rename(old)
            try:
                tmp.rename(target)
            except OSError:
                old.rename(target)
                raise
            shutil.rmtree(old)
        else:
            tmp.rename(target)
        done = True
    finally:
        if not done:
            shutil.rmtree(tmp, ignore_errors=True)


def _copy_support_files(source: Path, dest: Path, skip: tuple[str, ...] = ()) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for pattern in SUPPORT_FILES:
        for file in sorted(source.glob(pattern)):
            if file.name not in skip:
                shutil.copy(file, dest / file.name)


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    path.write_text(json.dumps(dict(sorted(obj.items())), indent=2, ensure_ascii=False) + "\n")


def _save_speech_tokenizer(source: Path, dest: Path) -> None:
    """Sanitized codec weights in float32, as the codec runs (its convolutions channels-last)."""
    codec = SpeechTokenizer.from_pretrained(source).model
    # Its config.json is kept; a shard index is not: the weights are written as one file.
    _copy_support_files(source, dest, skip=("model.safetensors.index.json",))
    weights = dict(tree_flatten(codec.parameters()))
    mx.save_safetensors(str(dest / "model.safetensors"), weights, metadata={"format": "mlx"})


# What the model card's example asks of each kind of checkpoint.
CARD_EXAMPLES = {
    "custom_voice": 'tts.generate("Hello!", speaker="vivian")',
    "voice_design": 'tts.generate("Hello!", instruct="A warm, calm female voice.")',
    "base": 'tts.generate("Hello!", ref_audio="me.wav", ref_text="What I say in me.wav.")',
}
MODEL_CARD = """---
library_name: mlx
pipeline_tag: text-to-speech
tags: [mlx, mlx-qwen3-tts, qwen3-tts, text-to-speech]{base_model}
---

# {title}

{origin} converted to MLX with mlx-qwen3-tts {version}: {what}.

```python
import mlx_qwen3_tts as qt

tts = qt.load("{path}")
result = {example}
```
"""


def _model_card(hf_path: str, is_repo: bool, config: dict[str, Any], title: str, repo: str | None) -> str:
    quant = config.get("quantization")
    what = (f"quantized with {quant['bits']} bits, group size {quant['group_size']} (per-layer bits in "
            "config.json)" if quant else config[FORMAT_KEY]["dtype"])
    return MODEL_CARD.format(
        base_model=f"\nbase_model: {hf_path}" if is_repo else "",
        title=repo or title,
        origin=f"[{hf_path}](https://huggingface.co/{hf_path})" if is_repo else f"`{Path(hf_path).name}`",
        version=__version__,
        what=what,
        path=repo or "path/to/this/folder",
        example=CARD_EXAMPLES[config["tts_model_type"]],
    )


def folder_size(path: Path) -> int:
    """Bytes of all files under `path`."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# --------------------------------------------------------------------------- convert


def convert(
    hf_path: str,
    mlx_path: str | Path = "mlx_model",
    dtype: str | None = None,
    quantize: bool = False,
    q_bits: int | None = None,
    q_group_size: int | None = None,
    upload_repo: str | None = None,
    force: bool = False,
    verbose: bool = False,
) -> Path:
    """Convert an original Qwen3-TTS checkpoint to an MLX folder, optionally quantized.

    Args:
        hf_path (str): Checkpoint folder or Hugging Face repo id, e.g.
            ``"Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice"``.
        mlx_path (str | Path): Output folder. Default: ``"mlx_model"``.
        dtype (str, optional): ``"float32"``, ``"float16"`` or ``"bfloat16"`` for the talker's
            float tensors, and the scales of quantized layers. Default: as stored (bfloat16).
            The speaker encoder and the codec are written in float32, the dtype they run in.
        quantize (bool): Quantize by `quant_predicate`. Default: ``False``.
        q_bits (int, optional): 4, 6 or 8. Default: ``8``.
        q_group_size (int, optional): 32, 64 or 128. Default: ``64``.
        upload_repo (str, optional): Hugging Face repo to upload the folder to.
        force (bool): Replace an existing `mlx_path` that an earlier conversion wrote (never
            any other folder). Default: ``False``.
        verbose (bool): Print ``[INFO]`` progress lines. Default: ``False``.

    Returns:
        Path: the output folder.

    Raises:
        ValueError: a bad option, an existing output without `force` (or, with it, one that
            is not a previous conversion output), a source that is already converted or
            quantized, or a source path that does not exist (`SourceNotFoundError`).
        ModelLoadError: the source is incomplete, not a Qwen3-TTS checkpoint, or cannot be
            fetched from the Hub.
        UploadError: the folder was written but could not be uploaded.
    """
    log = print if verbose else lambda *_: None
    _check_options(dtype, quantize, q_bits, q_group_size, upload_repo)
    target = Path(mlx_path).expanduser()
    _check_target(target, force)
    _check_hf_path(str(hf_path))
    source = resolve_path(hf_path)
    config = read_json(source / "config.json")
    _check_source(source, target, config)

    is_repo = not Path(hf_path).expanduser().exists()

    log(f"[INFO] Loading {source}")
    model = load_model(source, dtype, lazy=True)
    stored = model.talker.model.norm.weight.dtype
    config[FORMAT_KEY] = {"format_version": FORMAT_VERSION, "library_version": __version__,
                          "source": str(hf_path) if is_repo else source.name,
                          "dtype": _dtype_name(stored)}
    if quantize:
        bits, group_size = q_bits or DEFAULT_Q_BITS, q_group_size or DEFAULT_Q_GROUP_SIZE
        log(f"[INFO] Quantizing to {bits} bits, group size {group_size}")
        config["quantization"] = quantize_model(model, group_size, bits)
        config["quantization_config"] = config["quantization"]  # what the Hub reads (mlx-lm)

    bpw = compute_bits_per_weight(model.talker)
    with _staged(target, force) as tmp:
        log("[INFO] Saving the talker" + (" and speaker encoder" if "speaker_encoder" in model else ""))
        save_model(tmp, model, donate_model=True)
        log("[INFO] Saving the speech tokenizer")
        _save_speech_tokenizer(source / "speech_tokenizer", tmp / "speech_tokenizer")
        _copy_support_files(source, tmp, skip=SKIPPED_FILES)
        _write_json(tmp / "config.json", config)
        (tmp / "README.md").write_text(_model_card(str(hf_path), is_repo, config, target.name, upload_repo))
    log(f"[INFO] Wrote {target}: {folder_size(target) / 1e9:.3f} GB, talker {bpw:.2f} bits per weight")

    if upload_repo is not None:
        upload_to_hub(target, upload_repo)
        log(f"[INFO] Uploaded to https://huggingface.co/{upload_repo}")
    return target


def _upload_errors() -> tuple[type[BaseException], ...]:
    """What a failed upload raises: HTTP and offline-mode errors and a missing token are OSErrors,
    a malformed repo id a ValueError, and a network failure the Hub client's transport error."""
    errors: list[type[BaseException]] = [OSError, ValueError]
    for client in ("httpx2", "httpx"):  # whichever HTTP library huggingface_hub was built on
        if client in sys.modules:
            errors.append(sys.modules[client].HTTPError)
    return tuple(errors)


def upload_to_hub(path: Path, upload_repo: str) -> None:
    """Create `upload_repo` on the Hugging Face Hub if needed and upload the folder to it.

    Raises:
        UploadError: the Hub refused or could not be reached; the folder stays where it is.
    """
    from huggingface_hub import HfApi

    try:
        api = HfApi()
        api.create_repo(repo_id=upload_repo, exist_ok=True)
        api.upload_folder(folder_path=str(path), repo_id=upload_repo, repo_type="model")
    except _upload_errors() as e:
        raise UploadError(
            f"Upload to {upload_repo} failed ({' '.join(str(e).split())}); the converted folder was "
            f"written to {path.resolve()}. Check `hf auth login` and the repo name, then upload that folder."
        ) from e


def configure_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Convert a Qwen3-TTS checkpoint to an MLX folder, optionally quantized.",
        epilog="Exit status: 0 converted; 1 the library or system failed (a checkpoint that cannot be "
        "loaded or fetched, a failed upload, a full disk); 2 bad arguments; 130 interrupted (nothing "
        "written).",
    )
    parser.add_argument("--hf-path", "--model", type=str, required=True,
                        help="Checkpoint folder or Hugging Face repo id.")
    parser.add_argument("--mlx-path", type=str, default="mlx_model", help="Output folder.")
    parser.add_argument("--dtype", type=str, choices=list(DTYPES), default=None,
                        help="dtype of the talker's float tensors and scales (default: as stored).")
    parser.add_argument("-q", "--quantize", action="store_true", help="Quantize the talker.")
    parser.add_argument("--q-bits", type=int, choices=Q_BITS, default=None,
                        help=f"Bits to quantize to (default: {DEFAULT_Q_BITS}); attention, heads and "
                        "embeddings other than the text's keep at least 8, MLPs at least 6.")
    parser.add_argument("--q-group-size", type=int, choices=Q_GROUP_SIZES, default=None,
                        help=f"Quantization group size (default: {DEFAULT_Q_GROUP_SIZE}).")
    parser.add_argument("--upload-repo", type=str, default=None,
                        help="Hugging Face repo to upload the converted folder to.")
    parser.add_argument("--force", action="store_true",
                        help="Replace an existing --mlx-path that an earlier conversion wrote.")
    return parser


def _fail(error: Exception, code: int) -> int:
    # One line, whatever the error's own text holds (the Hub's errors span several), naming this
    # command's flags where the library names its arguments.
    flags = {"path_or_repo": "--hf-path", "dtype": "--dtype"}
    message = error.render(flags.get) if isinstance(error, Qwen3TTSError) else str(error)
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """The `mlx-qwen3-tts-convert` command; returns the exit status (see the module docstring)."""
    args = configure_parser().parse_args(argv)  # bad options: argparse exits with 2
    # SIGTERM ends the conversion as Ctrl-C does, so the staging folder (gigabytes) is removed.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        convert(**vars(args), verbose=True)
    except ArgumentError as e:  # checked before any work: the arguments must change
        return _fail(e, EXIT_USAGE)
    except (Qwen3TTSError, OSError, ValueError) as e:  # loading, fetching, writing or uploading failed
        return _fail(e, EXIT_FAILED)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing was written.", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
