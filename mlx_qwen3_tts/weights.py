"""Checkpoint files: where a checkpoint is, its JSON, its safetensors, strict loading into modules.

A leaf of the package (it imports only `errors`), shared by the TTS loader, the speech tokenizer
and the converter.
"""

import json
import re
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from .errors import ModelLoadError

# Everything a checkpoint needs, nothing it does not (README.md, .gitattributes are skipped).
HUB_ALLOW_PATTERNS = [
    "config.json", "generation_config.json", "preprocessor_config.json", "tokenizer_config.json",
    "vocab.json", "merges.txt", "*.safetensors", "model.safetensors.index.json",
    "speech_tokenizer/*.json", "speech_tokenizer/*.safetensors",
]
DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# A Hugging Face repo id: `owner/name`, each part letters, digits, '-', '_' or '.'.
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
# No checkpoint config comes near this; a larger "config" is refused before it is parsed.
MAX_JSON_BYTES = 16 << 20


def is_repo_id(value: str) -> bool:
    """Whether a value that is not an existing path names a Hugging Face repo.

    `owner/name` is a repo id unless `owner` is a folder here: `models/x` with a `models/` folder
    is a path that was meant (and does not exist), not a repo to download.
    """
    return hub_repo_id(value) and not Path(value).parent.is_dir()


def hub_repo_id(value: str) -> bool:
    """Whether the Hub accepts `value` as an `owner/name` repo id: besides the shape, no "--" or
    "..", no "." or "-" at either end, no ".git" suffix, 96 characters a part (its client raises
    a raw HFValidationError for those)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if not (isinstance(value, str) and _REPO_ID.fullmatch(value)):
        return False
    try:
        validate_repo_id(value)
    except HFValidationError:
        return False
    return True


def resolve_path(path_or_repo: str | Path, allow_patterns: list[str] | None = None) -> Path:
    """A local folder as is; otherwise a Hugging Face repo id fetched with `snapshot_download`.

    Raises:
        ModelLoadError: a file, a path that does not exist, or a repo that cannot be fetched.
    """
    if not str(path_or_repo).strip():  # Path("") is the working folder: never what was meant
        raise ModelLoadError("The checkpoint path is empty; pass a folder or a Hugging Face repo id.",
                             "path_or_repo")
    path = Path(path_or_repo).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{path} is a file; pass the checkpoint folder that holds it.",
                                 "path_or_repo")
        return path
    repo = str(path_or_repo)
    if not is_repo_id(repo):
        raise ModelLoadError(
            f"{repo}: no such folder, and not a Hugging Face repo id like "
            "'Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice'.", "path_or_repo")
    return _download(repo, allow_patterns or HUB_ALLOW_PATTERNS)


def _download(repo: str, allow_patterns: list[str]) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        return Path(snapshot_download(repo, allow_patterns=allow_patterns))
    except RepositoryNotFoundError as e:
        raise ModelLoadError(f"{repo} is not a model repo on the Hugging Face Hub (or it is private "
                             "and you are not logged in).", "path_or_repo") from e
    except LocalEntryNotFoundError as e:  # offline, or the Hub is unreachable, and nothing cached
        raise ModelLoadError(
            f"Could not fetch {repo}: the Hugging Face Hub is unreachable and it is not in the local "
            "cache; connect once, or pass a local checkpoint folder as `path_or_repo`.",
            "path_or_repo") from e
    except (HfHubHTTPError, OSError) as e:
        raise ModelLoadError(f"Could not fetch {repo} from the Hugging Face Hub ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''}).", "path_or_repo") from e


def read_json(path: Path, required: bool = True) -> Any:
    """A JSON file's value; None for a missing optional file.

    Raises:
        ModelLoadError: missing (when required), unreadable, too large or not valid JSON.
    """
    if not path.is_file():
        if required:
            raise ModelLoadError(f"{path} is missing; is {path.parent} a Qwen3-TTS checkpoint?")
        return None
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise ModelLoadError(f"{path} is larger than any checkpoint config ({MAX_JSON_BYTES} bytes).")
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:  # not JSON, not UTF-8, too deep, a 5,000-digit int
        raise ModelLoadError(f"{path} is not valid JSON: {type(e).__name__}: {e}") from e
    except OSError as e:
        raise ModelLoadError(f"{path} cannot be read: {e.strerror or e}.") from e


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files a checkpoint folder names: those of its index, else `model.safetensors`.

    Only these are read: a stray `model.backup.safetensors` beside them is never merged in.
    """
    index = read_json(folder / INDEX_FILE, required=False)
    if index is None:
        if not (folder / WEIGHTS_FILE).is_file():
            raise ModelLoadError(f"{folder} has no {WEIGHTS_FILE} (nor an {INDEX_FILE}).")
        return [folder / WEIGHTS_FILE]
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(f, str) for f in weight_map.values()):
        raise ModelLoadError(f"{folder / INDEX_FILE} has no valid weight_map.")
    names = sorted(set(weight_map.values()))
    for name in names:
        if Path(name).name != name or not name.endswith(".safetensors"):
            raise ModelLoadError(f"{folder / INDEX_FILE} names {name!r}, not a file of this folder.")
        if not (folder / name).is_file():
            raise ModelLoadError(f"{folder / name} is missing: {INDEX_FILE} lists it.")
    return [folder / name for name in names]


def read_safetensors(folder: Path) -> dict[str, mx.array]:
    """Every tensor of the files `weight_files` names; a tensor stored twice is an error.

    Raises:
        ModelLoadError: a missing, truncated or corrupt file, or a duplicated tensor name.
    """
    weights: dict[str, mx.array] = {}
    for file in weight_files(folder):
        try:
            part = mx.load(str(file))
        except (RuntimeError, ValueError, OSError) as e:
            raise ModelLoadError(f"{file} could not be read (truncated or corrupt?): {e}") from e
        twice = sorted(set(part) & set(weights))
        if twice:
            raise ModelLoadError(f"{file} repeats tensors of another weights file: {_listing(twice)}.")
        weights.update(part)
    return weights


def _listing(keys: list[str], limit: int = 8) -> str:
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _kind(dtype: mx.Dtype) -> str:
    if mx.issubdtype(dtype, mx.floating):
        return "floating"
    if dtype == mx.bool_:
        return "bool"
    return "integer"


def load_weights_strict(model: nn.Module, weights: dict[str, mx.array], source: str) -> None:
    """`model.load_weights(strict=True)` with errors that name the offending keys.

    Each tensor must have its parameter's shape and kind of dtype (floating where the module
    holds floats, integers where it holds packed quantized weights).
    """
    expected = dict(tree_flatten(model.parameters()))
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = [
        f"{k} {tuple(weights[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in weights and weights[k].shape != v.shape
    ]
    kinds = [
        f"{k} {weights[k].dtype} (expected {_kind(v.dtype)})"
        for k, v in expected.items()
        if k in weights and _kind(weights[k].dtype) != _kind(v.dtype)
    ]
    problems = []
    if missing:
        problems.append(f"missing tensors: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {_listing(unexpected)}")
    if wrong:
        problems.append(f"wrong shapes: {_listing(wrong)}")
    if kinds:
        problems.append(f"wrong dtypes: {_listing(kinds)}")
    if problems:
        raise ModelLoadError(f"{source} does not fit its config; " + "; ".join(problems) + ".")
    model.load_weights(list(weights.items()), strict=True)


def cast_weights(
    weights: dict[str, mx.array], dtype: mx.Dtype | None, keep_float32: tuple[str, ...] = ()
) -> dict[str, mx.array]:
    """Cast floating tensors to `dtype`; keys under `keep_float32` prefixes become float32."""
    out = {}
    for k, v in weights.items():
        if mx.issubdtype(v.dtype, mx.floating):
            target = mx.float32 if k.startswith(keep_float32) else dtype
            if target is not None and v.dtype != target:
                v = v.astype(target)
        out[k] = v
    return out
