"""Audio at the library boundary: reading, down-mixing, resampling and validation (NumPy).

Mirrors what the reference does to audio before its models see it (dossier §2.6.2 item 5, §3.9):
channels averaged, cast to float32, resampled with soxr's HQ mode (librosa.resample's default
`soxr_hq`) and cut or zero-padded to `ceil(len * target / source)` samples as librosa does.
"""

import os
from numbers import Real

import numpy as np
import soundfile as sf
import soxr

from .errors import AudioError
from .tokens import SAMPLE_RATE


def check_sample_rate(sample_rate: object) -> float:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, Real) or not sample_rate > 0:
        raise AudioError(f"sample_rate must be a positive number, got {sample_rate!r}.")
    if not np.isfinite(sample_rate):
        raise AudioError(f"sample_rate must be finite, got {sample_rate!r}.")
    return sample_rate


def to_mono(audio: np.ndarray) -> np.ndarray:
    """`[samples]` or `[samples, channels]` -> `[samples]`, channels averaged like the reference.

    Raises:
        AudioError: empty audio, a non-float dtype, or a shape that is not (samples[, channels]).
    """
    audio = np.asarray(audio)
    if not np.issubdtype(audio.dtype, np.floating):
        raise AudioError(
            f"audio must be floating point in [-1, 1], got dtype {audio.dtype}; "
            "convert integer PCM first (e.g. int16 / 32768)."
        )
    if audio.size == 0:
        raise AudioError(f"audio is empty (shape {audio.shape}).")
    if audio.ndim == 1:
        return audio
    if audio.ndim == 2 and audio.shape[1] < audio.shape[0]:
        return np.mean(audio, axis=-1)
    raise AudioError(
        f"cannot interpret audio of shape {audio.shape}: pass mono [samples] or "
        "[samples, channels] (soundfile's layout), e.g. audio.T for channels-first arrays."
    )


def resample(audio: np.ndarray, orig_sr: float, target_sr: float) -> np.ndarray:
    """soxr HQ resampling to exactly `ceil(len * target_sr / orig_sr)` samples (librosa's length)."""
    if orig_sr == target_sr:
        return audio
    out = soxr.resample(audio, orig_sr, target_sr, quality="HQ")
    n = int(np.ceil(audio.shape[-1] * (float(target_sr) / orig_sr)))
    if out.shape[-1] >= n:
        return out[:n]
    return np.pad(out, (0, n - out.shape[-1]))


def prepare_audio(audio: np.ndarray, sample_rate: float, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Validated mono float32 audio at `target_sr`, as the reference feeds its speech tokenizer.

    Raises:
        AudioError: a bad sample rate, empty audio, an uninterpretable shape, or NaN / inf samples.
    """
    sample_rate = check_sample_rate(sample_rate)
    mono = to_mono(audio)
    if not np.all(np.isfinite(mono)):
        what = "all NaN" if np.all(np.isnan(mono)) else "NaN or inf samples"
        raise AudioError(f"audio contains {what}; clean or drop it before encoding.")
    return resample(mono.astype(np.float32), sample_rate, target_sr).astype(np.float32)


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """`(audio [samples] or [samples, channels] float32, sample_rate)` read with soundfile."""
    try:
        audio, sample_rate = sf.read(os.fspath(path), dtype="float32", always_2d=False)
    except sf.SoundFileError as e:  # missing file, unknown format
        raise AudioError(f"cannot read audio file {os.fspath(path)!r}: {e}") from e
    return audio, sample_rate
