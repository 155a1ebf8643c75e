"""`SpeechTokenizer`: the 12 Hz codec with NumPy in and out (dossier §2.6, §4.2).

    tok = SpeechTokenizer.from_pretrained("Qwen3-TTS-Tokenizer-12Hz")  # or a checkpoint folder
    codes = tok.encode(audio, sample_rate)          # [T, 16] int64
    wav = tok.decode(codes)                         # float32 at tok.sample_rate
    stream = tok.stream_decoder()
    pieces = [stream.decode_step(c) for c in np.array_split(codes, 10)]  # == wav
"""

import os
from pathlib import Path
from typing import Literal

import mlx.core as mx
import numpy as np

from .audio import prepare_audio, read_audio
from .errors import AudioError, ModelLoadError
from .models.codec import SpeechTokenizerConfig, SpeechTokenizerModel
from .models.codec.layers import state_arrays
from .policy import ComputePolicy, parse_device
from .weights import cast_weights, load_weights_strict, read_json, read_safetensors

DecodeMode = Literal["exact", "reference"]
DECODE_MODES: tuple[str, ...] = ("exact", "reference")


def _resolve_folder(path: str | os.PathLike) -> Path:
    """A tokenizer folder itself, or a TTS checkpoint folder holding it in `speech_tokenizer/`."""
    path = Path(path)
    if (path / "speech_tokenizer" / "config.json").is_file():
        return path / "speech_tokenizer"
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path}: no config.json (expected a speech tokenizer folder).")
    return path


def load_model(path: str | os.PathLike, dtype: mx.Dtype = mx.float32) -> SpeechTokenizerModel:
    """Builds the model from `config.json` and strictly loads sanitized weights cast to `dtype`."""
    folder = _resolve_folder(path)
    config_path = folder / "config.json"
    model = SpeechTokenizerModel(SpeechTokenizerConfig.from_dict(read_json(config_path), str(config_path)))
    weights = cast_weights(model.sanitize(read_safetensors(folder)), dtype)
    load_weights_strict(model, weights, str(folder))
    mx.eval(model.parameters())
    return model


class SpeechTokenizer:
    """The 12 Hz speech tokenizer: audio <-> `[frames, 16]` codes, 1920 samples per frame."""

    def __init__(self, model: SpeechTokenizerModel, policy: ComputePolicy | None = None):
        self.policy = policy or ComputePolicy.choose(mx.default_device())
        self.policy.apply_codec(model)
        self.model = model
        self.config = model.config
        dec = model.config.decoder_config
        self.num_codebooks = dec.num_quantizers
        self.codebook_size = dec.codebook_size

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        dtype: mx.Dtype = mx.float32,
        device: str | mx.Device | None = None,
        *,
        policy: ComputePolicy | None = None,
    ) -> "SpeechTokenizer":
        """Loads a local tokenizer folder, or the `speech_tokenizer/` of a TTS checkpoint folder.

        Args:
            path: Folder with `config.json` and `model.safetensors` (no preprocessor config needed).
            dtype: Dtype of the weights and activations. Default: ``mx.float32`` (as released).
            device: ``"gpu"`` or ``"cpu"``. Default: MLX's default device.
            policy: the compute policy of a whole model (`load` passes its own).

        Raises:
            ModelLoadError: a missing file or config field, or a missing, unexpected or
                mis-shaped tensor, or an unavailable device.
        """
        policy = policy or ComputePolicy.choose(parse_device(device))
        with mx.stream(policy.device):
            return cls(load_model(path, dtype), policy)

    @property
    def sample_rate(self) -> int:
        """Sample rate of decoded audio (24000)."""
        return self.config.output_sample_rate

    @property
    def input_sample_rate(self) -> int:
        return self.config.input_sample_rate

    @property
    def samples_per_frame(self) -> int:
        return self.config.decode_upsample_rate

    @property
    def dtype(self) -> mx.Dtype:
        return self.model.decoder.pre_conv.conv.weight.dtype

    def encode(self, audio: np.ndarray | str | os.PathLike, sample_rate: float | None = None) -> np.ndarray:
        """Codes of mono (or down-mixed) audio at any sample rate.

        Args:
            audio: `[samples]` or `[samples, channels]` float array, or an audio file path.
            sample_rate: Sample rate of `audio`; omit it for a file path.

        Returns:
            `[ceil(samples_24k / 1920), 16]` int64 codes.

        Raises:
            AudioError: a bad sample rate, empty / all-NaN audio or an uninterpretable shape.
        """
        if isinstance(audio, (str, os.PathLike)):
            if sample_rate is not None:
                raise AudioError("sample_rate is read from the file; do not pass it with a path.")
            audio, sample_rate = read_audio(audio)
        elif sample_rate is None:
            raise AudioError("sample_rate is required for array input.")
        wav = prepare_audio(audio, sample_rate, self.input_sample_rate)
        frames = -(-wav.shape[0] // self.config.encode_downsample_rate)
        with mx.stream(self.policy.device):
            codes = self.model.encoder(mx.array(wav)[None].astype(self.dtype))
            return np.array(codes[0, :frames]).astype(np.int64)

    def decode(self, codes: np.ndarray, mode: DecodeMode = "exact") -> np.ndarray:
        """Audio of `[frames, 16]` codes, `frames * 1920` float32 samples at `sample_rate`.

        Args:
            codes: `[frames, 16]` integer codes in `[0, 2048)`.
            mode: ``"exact"`` (default): the decoder's single-pass output with its sliding window,
                identical to streaming with `stream_decoder()`. ``"reference"``: the official
                300-frame chunked decode with 25 frames of left context, for parity; past 300
                frames it differs from ``"exact"`` (dossier §2.6.3, §6.11).

        Raises:
            AudioError: codes of the wrong shape, dtype or range; an unknown mode.
        """
        if mode not in DECODE_MODES:
            raise AudioError(f"`mode` must be 'exact' or 'reference', got {mode!r}.", "mode")
        c = self._check_codes(codes)
        with mx.stream(self.policy.device):
            if mode == "exact":
                wav = self.model.decoder.streamed_decode(c)
            else:
                wav = self.model.decoder.chunked_decode(c)
            return np.array(wav[0].astype(mx.float32))

    def stream_decoder(self) -> "StreamingDecoder":
        """A fresh streaming decoder (see `StreamingDecoder`)."""
        return StreamingDecoder(self)

    def _check_codes(self, codes: np.ndarray | mx.array) -> mx.array:
        """`[1, T, 16]` int32 MLX codes, or AudioError naming what is wrong."""
        c = np.asarray(codes)
        if c.ndim != 2 or c.shape[1] != self.num_codebooks:
            raise AudioError(f"codes must have shape [frames, {self.num_codebooks}], got {c.shape}.")
        if not np.issubdtype(c.dtype, np.integer):
            raise AudioError(f"codes must be integers, got dtype {c.dtype}.")
        if c.size and (c.min() < 0 or c.max() >= self.codebook_size):
            raise AudioError(
                f"codes must lie in [0, {self.codebook_size}), got values in [{c.min()}, {c.max()}]."
            )
        return mx.array(c.astype(np.int32))[None]


class StreamingDecoder:
    """Decodes frames piece by piece with bounded state; pieces concatenate to `decode(mode="exact")`.

    State: each causal conv's left context, each transposed conv's overlap tail, and per
    transformer layer the keys/values of the last `sliding_window - 1` frames, with RoPE positions
    counting on across steps as in a single pass. Memory does not grow with the stream's length.
    """

    def __init__(self, tokenizer: SpeechTokenizer):
        self._tokenizer = tokenizer
        self.reset_state()

    def reset_state(self) -> None:
        """Start a new stream."""
        self._state = self._tokenizer.model.decoder.make_state()
        self.frames = 0

    def decode_step(self, codes: np.ndarray | mx.array) -> np.ndarray:
        """Audio of the next `[n, 16]` frames of the stream: `n * 1920` float32 samples."""
        c = self._tokenizer._check_codes(codes)
        if c.shape[1] == 0:
            return np.zeros(0, dtype=np.float32)
        with mx.stream(self._tokenizer.policy.device):
            wav = self._tokenizer.model.decoder(c, self._state)[0].astype(mx.float32)
            mx.eval(wav, state_arrays(self._state))
        self.frames += c.shape[1]
        return np.array(wav)
