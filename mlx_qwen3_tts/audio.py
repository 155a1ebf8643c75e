"""Audio at the library boundary: reading, down-mixing, resampling and validation (NumPy).

Mirrors what the reference does to audio before its models see it (dossier §2.6.2 item 5, §3.9):
channels averaged, cast to float32, resampled with soxr's HQ mode (librosa.resample's default
`soxr_hq`) and cut or zero-padded to `ceil(len * target / source)` samples as librosa does.

Every user-facing check of audio lives here, and runs before anything is resampled or read: a
header that says 1 Hz would otherwise be resampled to gigabytes before its length is looked at.
"""

import math
import os
import stat
from numbers import Real

import numpy as np
import soundfile as sf
import soxr

from .errors import AudioError
from .tokens import SAMPLE_RATE

# Telephone speech is the lowest rate worth cloning from; 384 kHz is the highest rate audio
# interfaces record at. Anything outside is a damaged or mislabelled header, and the ratio to
# 24 kHz (at most 3x up) bounds what resampling can allocate.
MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 384_000
# Cloning works best from 3-20 s of clean speech; past 60 s only time and memory grow.
MAX_REFERENCE_SECONDS = 60


def _hz(rate: Real) -> str:
    # Huge ints have no float and (past 4300 digits) no str: never let the message itself fail.
    if isinstance(rate, float) or isinstance(rate, np.floating):
        return f"{float(rate):g}"
    return str(int(rate)) if abs(rate) < 10**15 else "over 10^15"


def check_sample_rate(sample_rate: object, what: str = "`sample_rate`") -> float:
    """`sample_rate` if it is a number of Hz in [`MIN_SAMPLE_RATE`, `MAX_SAMPLE_RATE`].

    Raises:
        AudioError: not a number, not positive, NaN, or outside the range.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, Real) or not sample_rate > 0:
        raise AudioError(
            f"{what} must be a positive number of Hz, got {sample_rate!r:.40}; pass the audio's real "
            "sample rate."
        )
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:  # also inf
        raise AudioError(
            f"{what} is {_hz(sample_rate)} Hz, outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz; pass the "
            "audio's real sample rate, or resample it to e.g. 24000 Hz first."
        )
    return sample_rate


def check_length(
    samples: int,
    sample_rate: float,
    min_samples: int = 1,
    max_seconds: float | None = MAX_REFERENCE_SECONDS,
    what: str = "The audio",
) -> None:
    """Refuse audio of `samples` at `sample_rate` that is shorter than `min_samples` or too long.

    Lengths are reported in seconds, the unit a person trims audio in.

    Raises:
        AudioError: empty, shorter than `min_samples`, or longer than `max_seconds`.
    """
    seconds = samples / sample_rate
    if max_seconds is not None and seconds > max_seconds:
        raise AudioError(
            f"{what} is {seconds:.1f} s long; at most {max_seconds:g} s is accepted. Trim it (cloning "
            "works best from 3-20 s of clean speech)."
        )
    if samples == 0:
        raise AudioError(f"{what} is empty (0 samples); pass a recording of the voice.")
    if samples < min_samples:
        needed = math.ceil(100 * min_samples / sample_rate) / 100  # rounded up, so it is enough
        raise AudioError(
            f"{what} is {seconds:.2f} s long, too short; at least {needed:.2f} s is needed. Pass a "
            "longer recording (3-20 s of clean speech works best)."
        )


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


def check_finite(audio: np.ndarray) -> None:
    if not np.all(np.isfinite(audio)):
        what = "all NaN" if np.all(np.isnan(audio)) else "NaN or inf samples"
        raise AudioError(f"audio contains {what}; clean or drop it before encoding.")


def resample(audio: np.ndarray, orig_sr: float, target_sr: float) -> np.ndarray:
    """soxr HQ resampling to exactly `ceil(len * target_sr / orig_sr)` samples (librosa's length)."""
    if orig_sr == target_sr:
        return audio
    out = soxr.resample(audio, orig_sr, target_sr, quality="HQ")
    n = int(np.ceil(audio.shape[-1] * (float(target_sr) / orig_sr)))
    if out.shape[-1] >= n:
        return out[:n]
    return np.pad(out, (0, n - out.shape[-1]))


def prepare_audio(
    audio: np.ndarray,
    sample_rate: float,
    target_sr: int = SAMPLE_RATE,
    max_seconds: float | None = MAX_REFERENCE_SECONDS,
) -> np.ndarray:
    """Validated mono float32 audio at `target_sr`, as the reference feeds its speech tokenizer.

    The rate and the length are checked before resampling, which is what allocates.

    Raises:
        AudioError: a sample rate outside 8-384 kHz, empty audio, audio longer than
            `max_seconds`, an uninterpretable shape, or NaN / inf samples.
    """
    sample_rate = check_sample_rate(sample_rate)
    mono = to_mono(audio)
    check_length(mono.shape[0], sample_rate, max_seconds=max_seconds)
    check_finite(mono)
    return resample(mono.astype(np.float32), sample_rate, target_sr).astype(np.float32)


def check_reference_audio(audio: np.ndarray, sample_rate: int, min_samples: int) -> np.ndarray:
    """Mono float32 `audio` at `sample_rate` with at least `min_samples`, or AudioError.

    What a model that takes already-prepared audio (the speaker encoder) checks at its entry.
    """
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise AudioError(f"reference audio must be 1-D mono samples, got shape {audio.shape}; "
                         "prepare it with prepare_audio first.")
    if not np.issubdtype(audio.dtype, np.floating):
        raise AudioError(f"reference audio must be float samples in [-1, 1], got {audio.dtype}; "
                         "convert integer PCM first (e.g. int16 / 32768).")
    check_length(audio.size, sample_rate, min_samples, max_seconds=None, what="Reference audio")
    audio = audio.astype(np.float32)
    check_finite(audio)
    return audio


def _check_regular_file(name: str) -> None:
    """A folder, FIFO or device is refused by its type: opening a FIFO would block forever."""
    try:
        mode = os.stat(name).st_mode
    except FileNotFoundError:
        raise AudioError(f"cannot read audio file {name!r}: it does not exist; check the path.") from None
    except OSError as e:  # permission, a name too long, a loop of links
        raise AudioError(f"cannot read audio file {name!r}: {e.strerror or e}; check the path.") from e
    if stat.S_ISDIR(mode):
        raise AudioError(f"cannot read audio file {name!r}: it is a folder; pass an audio file in it.")
    if not stat.S_ISREG(mode):
        raise AudioError(f"cannot read audio file {name!r}: it is not a regular file; pass an audio file.")


def can_write(format_name: str, subtype: str) -> bool:
    """Whether this libsndfile writes soundfile's `format_name` with `subtype` (MP3 needs
    libsndfile 1.1, Opus 1.0.29; soundfile's wheels bundle a recent one)."""
    return format_name in sf.available_formats() and subtype in sf.available_subtypes(format_name)


def read_audio(
    path: str | os.PathLike, max_seconds: float | None = MAX_REFERENCE_SECONDS
) -> tuple[np.ndarray, int]:
    """`(audio [samples] or [samples, channels] float32, sample_rate)` read with soundfile.

    The header's rate and length are checked before any sample is read.

    Raises:
        AudioError: a missing, unreadable or non-audio file, a header rate outside 8-384 kHz, or
            audio longer than `max_seconds`.
    """
    name = os.fspath(path)
    _check_regular_file(name)
    try:
        info = sf.info(name)
        check_sample_rate(info.samplerate, what=f"The sample rate of {name!r}")
        check_length(info.frames, info.samplerate, max_seconds=max_seconds, what=f"Audio file {name!r}")
        audio, sample_rate = sf.read(name, dtype="float32", always_2d=False)
    except (sf.SoundFileError, OSError) as e:  # unknown format, permission, I/O error
        raise AudioError(f"cannot read audio file {name!r}: {' '.join(str(e).split())}") from e
    return audio, sample_rate
