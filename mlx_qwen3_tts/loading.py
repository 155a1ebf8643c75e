"""Path or hub repo id -> configs -> modules -> sanitized, strictly loaded weights."""

import json
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from .errors import ModelLoadError
from .models.qwen3_tts import Model, Qwen3TTSConfig

# Everything a checkpoint needs, nothing it does not (README.md, .gitattributes are skipped).
HUB_ALLOW_PATTERNS = [
    "config.json", "generation_config.json", "preprocessor_config.json", "tokenizer_config.json",
    "vocab.json", "merges.txt", "*.safetensors", "model.safetensors.index.json",
    "speech_tokenizer/*.json", "speech_tokenizer/*.safetensors",
]
DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}


def resolve_path(path_or_repo: str | Path, allow_patterns: list[str] | None = None) -> Path:
    """A local folder as is; otherwise a Hugging Face repo id fetched with `snapshot_download`."""
    path = Path(path_or_repo).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{path} is a file; pass the checkpoint folder that holds it.")
        return path
    repo = str(path_or_repo)
    if repo.count("/") != 1 or repo.startswith((".", "/", "~")):
        raise ModelLoadError(
            f"{repo} is neither an existing folder nor a Hugging Face repo id like "
            "'Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice'."
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo, allow_patterns=allow_patterns or HUB_ALLOW_PATTERNS))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as e:
        raise ModelLoadError(f"Could not fetch {repo} from the Hugging Face Hub: {e}") from e


def read_json(path: Path, required: bool = True) -> dict[str, Any] | None:
    if not path.is_file():
        if required:
            raise ModelLoadError(f"{path} is missing; is {path.parent} a Qwen3-TTS checkpoint?")
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{path} is not valid JSON: {e}") from e


def read_safetensors(folder: Path, pattern: str = "model*.safetensors") -> dict[str, mx.array]:
    files = sorted(folder.glob(pattern))
    if not files:
        raise ModelLoadError(f"{folder} has no {pattern} weights file.")
    weights: dict[str, mx.array] = {}
    for file in files:
        try:
            weights.update(mx.load(str(file)))
        except (RuntimeError, ValueError, OSError) as e:
            raise ModelLoadError(f"{file} could not be read (truncated or corrupt?): {e}") from e
    return weights


def _listing(keys: list[str], limit: int = 8) -> str:
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_weights_strict(model: nn.Module, weights: dict[str, mx.array], source: str) -> None:
    """`model.load_weights(strict=True)` with errors that name the offending keys."""
    expected = dict(tree_flatten(model.parameters()))
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = [
        f"{k} {tuple(weights[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in weights and weights[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing tensors: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {_listing(unexpected)}")
    if wrong:
        problems.append(f"wrong shapes: {_listing(wrong)}")
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


def parse_dtype(dtype: str | mx.Dtype | None) -> mx.Dtype | None:
    if dtype is None or isinstance(dtype, mx.Dtype):
        return dtype
    if dtype not in DTYPES:
        raise ModelLoadError(f"dtype {dtype!r} is not one of {sorted(DTYPES)}.")
    return DTYPES[dtype]


def load_config(folder: Path) -> Qwen3TTSConfig:
    return Qwen3TTSConfig.from_dict(read_json(folder / "config.json"), str(folder / "config.json"))


def load_model(folder: Path, dtype: str | mx.Dtype | None = None, lazy: bool = False) -> Model:
    """Build the talker (+ speaker encoder) of a checkpoint folder and load its weights.

    The talker runs in `dtype` (default: as stored, bfloat16 in the released files); the speaker
    encoder always runs in float32, being small and feeding a single vector to the talker.
    """
    config = load_config(folder)
    model = Model(config)
    weights = model.sanitize(read_safetensors(folder))
    weights = cast_weights(weights, parse_dtype(dtype), keep_float32=("speaker_encoder.",))
    load_weights_strict(model, weights, str(folder / "model.safetensors"))
    model.eval()
    if not lazy:
        mx.eval(model.parameters())
    return model


def load(path_or_repo: str | Path, dtype: str | mx.Dtype | None = None):
    """Load a Qwen3-TTS 12 Hz checkpoint from a local folder or a Hugging Face repo id.

    Args:
        path_or_repo (str | Path): A checkpoint folder (original or converted layout) or a repo id
            such as ``"Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice"`` (fetched on first use).
        dtype (str, optional): Talker dtype, ``"float32"``, ``"float16"`` or ``"bfloat16"``.
            Default: as stored (bfloat16 in the released files). The codec and the speaker encoder
            run in float32.

    Returns:
        Qwen3TTS: the loaded model.

    Raises:
        ModelLoadError: the folder or repo is missing, incomplete, corrupt or not Qwen3-TTS.
    """
    from .speech_tokenizer import SpeechTokenizer
    from .text_tokenizer import TextTokenizer
    from .tts import Qwen3TTS

    folder = resolve_path(path_or_repo)
    model = load_model(folder, dtype)
    speech_folder = folder / "speech_tokenizer"
    if not (speech_folder / "config.json").is_file():
        raise ModelLoadError(
            f"{folder} lacks speech_tokenizer/config.json; every Qwen3-TTS checkpoint ships its "
            "12 Hz speech tokenizer in that subfolder."
        )
    return Qwen3TTS(
        model=model,
        text_tokenizer=TextTokenizer.from_folder(folder),
        speech_tokenizer=SpeechTokenizer.from_pretrained(speech_folder),
        generation_defaults=read_json(folder / "generation_config.json", required=False) or {},
        path=folder,
    )
