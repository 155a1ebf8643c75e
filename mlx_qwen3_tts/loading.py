"""Path or hub repo id -> configs -> modules -> sanitized, strictly loaded weights."""

import json
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from .errors import ModelLoadError
from .models.cpu_matmul import use_float32_matmuls
from .models.qwen3_tts import Model, Qwen3TTSConfig

# Everything a checkpoint needs, nothing it does not (README.md, .gitattributes are skipped).
HUB_ALLOW_PATTERNS = [
    "config.json", "generation_config.json", "preprocessor_config.json", "tokenizer_config.json",
    "vocab.json", "merges.txt", "*.safetensors", "model.safetensors.index.json",
    "speech_tokenizer/*.json", "speech_tokenizer/*.safetensors",
]
DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}
# Version of the folder layout `mlx_qwen3_tts.convert` writes, recorded in its config.json.
FORMAT_KEY = "mlx_qwen3_tts"
FORMAT_VERSION = 1


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


def format_version(params: Any) -> int | None:
    """The layout version of a folder `mlx_qwen3_tts.convert` wrote; None for any other folder."""
    marker = params.get(FORMAT_KEY) if isinstance(params, dict) else None
    return marker.get("format_version") if isinstance(marker, dict) else None


def load_config(folder: Path) -> Qwen3TTSConfig:
    path = folder / "config.json"
    params = read_json(path)
    version = format_version(params)
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise ModelLoadError(
            f"{path}: written by a newer mlx_qwen3_tts (format {version}; this one reads up to "
            f"{FORMAT_VERSION}); upgrade mlx-qwen3-tts, or convert the original checkpoint again."
        )
    return Qwen3TTSConfig.from_dict(params, str(path))


def _infer_quant_params(path: str, module: nn.Module, weights: dict[str, mx.array]) -> dict[str, Any]:
    """Group size and bits of one packed layer from its shapes (mlx-lm's `infer_quant_config`)."""
    scales, packed = weights[f"{path}.scales"], weights.get(f"{path}.weight")
    in_dims = module.weight.shape[-1]
    groups = scales.shape[-1] if scales.ndim == 2 else 0
    if packed is None or packed.dtype != mx.uint32 or not groups or in_dims % groups:
        raise ModelLoadError(f"{path}: its .scales do not fit a {in_dims}-wide layer packed as uint32.")
    if not mx.issubdtype(scales.dtype, mx.floating):
        raise ModelLoadError(f"{path}: only affine quantization is supported (scales {scales.dtype}).")
    return {"group_size": in_dims // groups, "bits": packed.shape[-1] * 32 // in_dims, "mode": "affine"}


def quantize_for_load(model: nn.Module, quantization: dict[str, Any], weights: dict[str, mx.array]) -> None:
    """Swap in the quantized layers a checkpoint holds, so its packed weights load as they are.

    The mlx-lm rule: a per-layer entry of the config's `quantization` block wins (our converter
    records every layer it quantized); otherwise a layer is quantized iff its `.scales` are in the
    weights, with group size and bits read off the shapes (mlx-audio's folders record one setting).
    """

    def predicate(path: str, module: nn.Module) -> bool | dict[str, Any]:
        if path in quantization:
            return quantization[path]
        if not hasattr(module, "to_quantized") or f"{path}.scales" not in weights:
            return False
        return _infer_quant_params(path, module, weights)

    nn.quantize(
        model,
        group_size=quantization.get("group_size", 64),
        bits=quantization.get("bits", 4),
        mode=quantization.get("mode", "affine"),
        class_predicate=predicate,
    )


def load_model(folder: Path, dtype: str | mx.Dtype | None = None, lazy: bool = False) -> Model:
    """Build the talker (+ speaker encoder) of a checkpoint folder and load its weights.

    The talker runs in `dtype` (default: as stored, bfloat16 in the released files; a quantized
    folder's recorded `activation_dtype`); the speaker encoder always runs in float32, being
    small and feeding a single vector to the talker. Quantized layers are built before loading,
    so packed weights load as stored; `dtype` then casts their scales and biases.
    """
    config = load_config(folder)
    model = Model(config)
    weights = model.sanitize(read_safetensors(folder))
    if config.quantization is not None:
        quantize_for_load(model, config.quantization, weights)
        if dtype is None:
            dtype = config.quantization.get("activation_dtype")
    weights = cast_weights(weights, parse_dtype(dtype), keep_float32=("speaker_encoder.",))
    load_weights_strict(model, weights, str(folder / "model.safetensors"))
    model.eval()
    if not lazy:
        mx.eval(model.parameters())
    return model


def parse_device(device: str | mx.Device | None) -> mx.Device:
    """`"cpu"`, `"gpu"`, an `mx.Device` or None (MLX's default: the GPU on Apple silicon)."""
    if device is None:
        return mx.default_device()
    if isinstance(device, str):
        if device not in ("cpu", "gpu"):
            raise ModelLoadError(f"device {device!r} is not 'cpu' or 'gpu'.")
        device = mx.gpu if device == "gpu" else mx.cpu
    if not mx.is_available(device):
        raise ModelLoadError(
            f"device {device} is not available in this MLX build (no Metal or CUDA backend); "
            "use device='cpu'."
        )
    return device


def load(
    path_or_repo: str | Path,
    dtype: str | mx.Dtype | None = None,
    device: str | mx.Device | None = None,
):
    """Load a Qwen3-TTS 12 Hz checkpoint from a local folder or a Hugging Face repo id.

    Args:
        path_or_repo (str | Path): A checkpoint folder (original layout, converted by
            ``mlx_qwen3_tts.convert``, or mlx-audio's, quantized or not) or a repo id
            such as ``"Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice"`` (fetched on first use).
        dtype (str, optional): Talker dtype, ``"float32"``, ``"float16"`` or ``"bfloat16"``.
            Default: as stored (bfloat16 in the released files; float32 activations for folders
            quantized by ``mlx_qwen3_tts.convert``). The codec and the speaker encoder run in
            float32.
        device (str, optional): ``"gpu"`` or ``"cpu"``: where the model's arrays are computed.
            Default: MLX's default device (the GPU on Apple silicon).

    Returns:
        Qwen3TTS: the loaded model.

    Raises:
        ModelLoadError: the folder or repo is missing, incomplete, corrupt or not Qwen3-TTS,
            or the device is not available.
    """
    device = parse_device(device)
    with mx.stream(device):
        return _load(resolve_path(path_or_repo), dtype, device)


def _load(folder: Path, dtype: str | mx.Dtype | None, device: mx.Device):
    from .speech_tokenizer import SpeechTokenizer
    from .text_tokenizer import TextTokenizer
    from .tts import Qwen3TTS

    model = load_model(folder, dtype)
    if device == mx.cpu:
        use_float32_matmuls(model)
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
        device=device,
    )
