"""`load()`: a path or hub repo id -> a `Qwen3TTS` ready to speak.

This module sits above everything it assembles: configs, modules, sanitized and strictly loaded
weights (+ quantization from the config block), both tokenizers and the model's MLX thread.
"""

import weakref
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from .errors import ModelLoadError
from .models.qwen3_tts import Model, Qwen3TTSConfig
from .policy import ComputePolicy, log, parse_device
from .runtime import ModelThread, live_device_types
from .speech_tokenizer import SpeechTokenizer
from .text_tokenizer import TextTokenizer
from .tts import Qwen3TTS
from .weights import (
    DTYPES,
    cast_weights,
    hub_repo_id,
    is_repo_id,
    load_weights_strict,
    read_json,
    read_safetensors,
    resolve_path,
)

# Version of the folder layout `mlx_qwen3_tts.convert` writes, recorded in its config.json.
FORMAT_KEY = "mlx_qwen3_tts"
FORMAT_VERSION = 1


def parse_dtype(dtype: str | mx.Dtype | None) -> mx.Dtype | None:
    """None, or one of `DTYPES` by name or as the `mx.Dtype` itself (no integer, float64, ...)."""
    if dtype is None or (isinstance(dtype, mx.Dtype) and dtype in DTYPES.values()):
        return dtype
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise ModelLoadError(f"dtype {dtype!r} is not one of {sorted(DTYPES)}.", "dtype")
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

    The talker's float tensors are cast to `dtype` (default: as stored, bfloat16 in the released
    files); the speaker encoder is always float32, being small and feeding a single vector to
    the talker. Quantized layers are built before loading, so packed weights load as stored;
    `dtype` then casts their scales and biases. (An `activation_dtype` that older converted
    folders recorded is ignored: how a model computes is the compute policy's choice.)
    `model.stored_dtype` is the talker's dtype in the files.
    """
    config = load_config(folder)
    model = Model(config)
    weights = model.sanitize(read_safetensors(folder))
    if config.quantization is not None:
        quantize_for_load(model, config.quantization, weights)
    stored = weights.get("talker.model.norm.weight")
    weights = cast_weights(weights, parse_dtype(dtype), keep_float32=("speaker_encoder.",))
    load_weights_strict(model, weights, str(folder / "model.safetensors"))
    model.eval()
    model.stored_dtype = stored.dtype if stored is not None else None  # a plain attribute
    if not lazy:
        mx.eval(model.parameters())
    return model


def load(
    path_or_repo: str | Path,
    dtype: str | mx.Dtype | None = None,
    device: str | mx.Device | None = None,
    *,
    policy: ComputePolicy | None = None,
) -> Qwen3TTS:
    """Load a Qwen3-TTS 12 Hz checkpoint from a local folder or a Hugging Face repo id.

    Args:
        path_or_repo (str | Path): A checkpoint folder (original layout, converted by
            ``mlx_qwen3_tts.convert``, or mlx-audio's, quantized or not) or a repo id
            such as ``"Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice"`` (fetched on first use).
        dtype (str, optional): Talker dtype, ``"float32"``, ``"float16"`` or ``"bfloat16"``.
            Default: the fast one for the device: on a GPU as released (bfloat16; quantized
            folders as stored), on the CPU float32 (quantized folders keep their packed
            weights, with float32 scales and activations). The codec and the speaker encoder
            run in float32.
        device (str, optional): ``"gpu"`` or ``"cpu"``: where the model's arrays are computed.
            Default: MLX's default device (the GPU on Apple silicon).
        policy (ComputePolicy, optional): every device-dependent choice at once, instead of
            the one `dtype` and `device` make (`ComputePolicy.choose`).

    Returns:
        Qwen3TTS: the loaded model. Its MLX work runs on a thread of its own (`runtime.py`).

    Raises:
        ModelLoadError: the folder or repo is missing, incomplete, corrupt or not Qwen3-TTS,
            or the device is not available.
    """
    if policy is None:
        policy = ComputePolicy.choose(parse_device(device), parse_dtype(dtype))
    _check_one_device(policy.device)
    parse_device(policy.device)  # a thread on a device this build lacks would die and leave us waiting
    folder = resolve_path(path_or_repo)
    thread = ModelThread(policy.device)
    try:
        tts = thread.run(_load, folder, policy, thread)
    except BaseException:
        thread.stop()
        raise
    # The thread's worker goes back to the pool once nothing uses the model any more. Without
    # waiting: the collector may run this on any thread, even another model's in a call. Not at
    # exit either, where `runtime` stops every model itself.
    weakref.finalize(tts.engine, thread.stop, 0).atexit = False
    return tts


def _check_one_device(device: mx.Device) -> None:
    """ModelLoadError if a live model runs on the other kind of device.

    MLX keeps one default device per process, and `mx.stream(device)` sets it for every thread
    (only default streams are per thread): a CPU model's thread and a GPU model's thread would
    each switch the other's computations to their own device.
    """
    other = live_device_types() - {device.type}
    if other:
        there, here = ("GPU", "CPU") if mx.DeviceType.gpu in other else ("CPU", "GPU")
        raise ModelLoadError(
            f"A model on the {there} is loaded in this process, and MLX keeps one default device per "
            f"process: a {here} model cannot run beside it. Close that one first (tts.close()), or "
            f"load this one on the {there} too.", "device")


def _check_codec_fits(config: Qwen3TTSConfig, speech: SpeechTokenizer, source: Path) -> None:
    """The talker's codes must be the codec's: same number of codebooks, same codebook size."""
    predictor = config.talker_config.code_predictor_config
    if (speech.num_codebooks, speech.codebook_size) != (predictor.num_code_groups, predictor.vocab_size):
        raise ModelLoadError(
            f"{source}: the speech tokenizer has {speech.num_codebooks} codebooks of "
            f"{speech.codebook_size}, the talker predicts {predictor.num_code_groups} of "
            f"{predictor.vocab_size}; the folder mixes two checkpoints.")


def check_text_tokenizer(folder: Path) -> None:
    """ModelLoadError unless the checkpoint's text tokenizer files are present and well formed."""
    TextTokenizer.from_folder(folder)


def speech_tokenizer_folder(folder: Path) -> Path:
    """The checkpoint's `speech_tokenizer/` subfolder; ModelLoadError if it has no config."""
    speech_folder = folder / "speech_tokenizer"
    if not (speech_folder / "config.json").is_file():
        raise ModelLoadError(
            f"{folder} lacks speech_tokenizer/config.json; every Qwen3-TTS checkpoint ships its "
            "12 Hz speech tokenizer in that subfolder."
        )
    return speech_folder


def _load(folder: Path, policy: ComputePolicy, thread: ModelThread) -> Qwen3TTS:
    model = load_model(folder, policy.dtype)
    policy.apply_talker(model)
    speech_folder = speech_tokenizer_folder(folder)
    speech = SpeechTokenizer.from_pretrained(speech_folder, policy=policy)
    _check_codec_fits(model.config, speech, speech_folder)
    unwire = policy.wire(model, speech.model)
    if unwire is not None:
        thread.at_stop(unwire)
    log.info("Loaded %s: %s", folder.name, policy.describe(model.stored_dtype))
    return Qwen3TTS.build(
        model=model,
        text_tokenizer=TextTokenizer.from_folder(folder),
        speech_tokenizer=speech,
        generation_defaults=read_json(folder / "generation_config.json", required=False) or {},
        path=folder,
        thread=thread,
        policy=policy,
    )


# What the front ends (cli, server, convert) take from here besides `load`.
__all__ = ["DTYPES", "FORMAT_KEY", "FORMAT_VERSION", "ComputePolicy", "check_text_tokenizer",
           "format_version", "hub_repo_id", "is_repo_id", "load", "load_model", "parse_device", "parse_dtype",
           "read_json", "resolve_path", "speech_tokenizer_folder"]
