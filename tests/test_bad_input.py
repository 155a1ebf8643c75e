"""The bad-input catalogue: every case raises a specific error class with a helpful message.

Library errors all derive from `qt.Qwen3TTSError`; nothing surfaces as a raw MLX exception.
Bad checkpoints have their own cases in test_loading.py.
"""

import shutil

import numpy as np
import pytest
import soundfile as sf
from conftest import tone

import mlx_qwen3_tts as qt

TEXT = "hello there, how are you today?"
SR = 24000


CUSTOM_VOICE_CASES = [
    # (id, kwargs, error, message pattern)
    ("empty text", dict(text=""), qt.EmptyTextError, "empty"),
    ("whitespace text", dict(text=" \n\t "), qt.EmptyTextError, "empty"),
    ("punctuation only", dict(text="?!... --"), qt.EmptyTextError, "no letters or digits"),
    ("emoji only", dict(text="😀🎉👍"), qt.EmptyTextError, "no letters or digits"),
    ("None text", dict(text=None), qt.SynthesisError, "`text` must be a str, got NoneType"),
    ("bytes text", dict(text=b"hello"), qt.SynthesisError, "`text` must be a str, got bytes"),
    ("unknown speaker", dict(speaker="bob"), qt.UnknownSpeakerError, "Unknown speaker 'bob'.*vivian"),
    ("missing speaker", dict(speaker=None), qt.UnknownSpeakerError, "needs a `speaker`; choose one of"),
    ("unknown language", dict(language="elvish"), qt.UnsupportedLanguageError, "Supported: auto"),
    ("dialect as language", dict(language="beijing_dialect"), qt.UnsupportedLanguageError,
     "dialects come with the speakers"),
    ("instruct on 0.6B", dict(instruct="whisper"), qt.InstructUnsupportedError, "1.7B CustomVoice"),
    ("clone on CustomVoice", dict(ref_audio=(tone(), SR)), qt.VoiceCloneUnsupportedError,
     "Qwen3-TTS-12Hz-0.6B-Base"),
    ("voice on CustomVoice", dict(voice="x.safetensors"), qt.VoiceCloneUnsupportedError, "Base"),
    ("negative temperature", dict(temperature=-0.5), qt.SynthesisError, "^`temperature` must be >= 0"),
    ("top_p zero", dict(top_p=0.0), qt.SynthesisError, r"^`top_p` must be in \(0, 1\]"),
    ("top_p above one", dict(top_p=1.2), qt.SynthesisError, r"^`top_p` must be in \(0, 1\]"),
    ("negative top_k", dict(top_k=-1), qt.SynthesisError, "^`top_k` must be an integer >= 0"),
    ("float top_k", dict(top_k=2.5), qt.SynthesisError, "`top_k` must be an integer"),
    ("zero repetition penalty", dict(repetition_penalty=0), qt.SynthesisError,
     "`repetition_penalty` must be > 0"),
    # Far outside (1e-6, 1e6) float32 logits over- or underflow: every code was 0, no error.
    ("underflowing temperature", dict(temperature=1e-40), qt.SynthesisError,
     r"^`temperature` must be 0 \(greedy\) or between 1e-06 and 1e\+06, got 1e-40"),
    ("overflowing temperature", dict(temperature=1e39), qt.SynthesisError, "^`temperature` must be 0"),
    ("infinite subtalker temperature", dict(subtalker_temperature=float("inf")), qt.SynthesisError,
     "subtalker_temperature` must be a finite number"),
    ("underflowing repetition penalty", dict(repetition_penalty=1e-40), qt.SynthesisError,
     r"`repetition_penalty` must be between 1e-06 and 1e\+06"),
    # The code predictor's settings are named as given, not as the talker's ('top_p must be').
    ("negative subtalker temperature", dict(subtalker_temperature=-1), qt.SynthesisError,
     "^`subtalker_temperature` must be >= 0"),
    ("underflowing subtalker temperature", dict(subtalker_temperature=1e-40), qt.SynthesisError,
     "^`subtalker_temperature` must be 0"),
    ("negative subtalker top_k", dict(subtalker_top_k=-2), qt.SynthesisError, "^`subtalker_top_k` must be"),
    ("zero subtalker top_p", dict(subtalker_top_p=0.0), qt.SynthesisError, "^`subtalker_top_p` must be"),
    ("zero max_frames", dict(max_frames=0), qt.SynthesisError, "`max_frames` must be a positive integer"),
    ("negative max_frames", dict(max_frames=-3), qt.SynthesisError, "max_frames"),
    ("negative seed", dict(seed=-1), qt.SynthesisError, r"`seed` must be an integer in \[0, 2\*\*64\)"),
    ("typo in argument", dict(temprature=0.5), qt.SynthesisError,
     r"Unknown argument\(s\) \['temprature'\]"),
]


@pytest.mark.parametrize("case,kwargs,error,match", CUSTOM_VOICE_CASES,
                         ids=[c[0] for c in CUSTOM_VOICE_CASES])
def test_custom_voice_catalogue(cv, case, kwargs, error, match):
    args = dict(text=TEXT, speaker="vivian", max_frames=2)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        cv.generate(args.pop("text"), **args)
    assert issubclass(error, qt.Qwen3TTSError)


@pytest.mark.parametrize("top_k", [2**31, 2**40])
def test_a_top_k_past_int32_is_off_as_any_k_past_the_vocabulary(cv, top_k):
    """It crashed inside MLX (std::bad_cast) building the per-row int32 column."""
    kwargs = dict(speaker="vivian", max_frames=3, seed=11, temperature=0.9)
    off = cv.generate(TEXT, top_k=0, subtalker_top_k=0, **kwargs).audio
    np.testing.assert_array_equal(cv.generate(TEXT, top_k=top_k, subtalker_top_k=top_k, **kwargs).audio, off)


def test_odd_casing_works(cv):
    a = cv.generate(TEXT, speaker=" ViViAn ", language="English", seed=1, max_frames=3)
    b = cv.generate(TEXT, speaker="vivian", language="english", seed=1, max_frames=3)
    assert np.array_equal(a.codes, b.codes)


def test_control_characters_are_dropped(cv):
    a = cv.generate("hello\x00 there\x07, how\x1b are you today?", speaker="vivian", seed=2, max_frames=3)
    b = cv.generate(TEXT, speaker="vivian", seed=2, max_frames=3)
    assert np.array_equal(a.codes, b.codes)
    from mlx_qwen3_tts.request import check_str

    assert check_str("a\tb\nc\x0bd", "text") == "a\tb\ncd"  # tabs and newlines separate words: kept


def test_the_pieces_of_a_split_text_wrap_their_seeds(cv):
    """Piece i draws with seed + i modulo 2**64: the last seed did not wrap (a TypeError in MLX)."""
    text = " ".join(f"This is sentence number {i} of a text long enough to split." for i in range(12))
    seeds = [r.seed for r in cv.job(text, speaker="vivian", seed=2**64 - 1).requests]
    assert len(seeds) >= 2 and seeds[:2] == [2**64 - 1, 0]


def test_instruct_is_for_17b_custom_voice_and_voice_design(cv17, design):
    assert cv17.generate(TEXT, speaker="ryan", instruct="cheerful", max_frames=2).frames == 2
    assert design.generate(TEXT, instruct="a bright voice", max_frames=2).frames == 2
    with pytest.raises(qt.VoiceCloneUnsupportedError, match="Base"):
        design.generate(TEXT, ref_audio=(tone(), SR))


BASE_CASES = [
    ("speaker on Base", dict(speaker="vivian", ref_audio=(tone(), SR)), qt.ModeError, "not `speaker`"),
    ("instruct on Base", dict(instruct="slow", ref_audio=(tone(), SR)), qt.InstructUnsupportedError,
     "Base checkpoints do not follow"),
    ("nothing to clone", dict(), qt.ModeError, "pass `ref_audio`"),
    ("empty ref text", dict(ref_audio=(tone(), SR), ref_text=""), qt.SynthesisError, "`ref_text` is empty"),
    ("empty audio", dict(ref_audio=(np.zeros(0, np.float32), SR)), qt.AudioError, "audio is empty"),
    ("silent audio", dict(ref_audio=(np.zeros(SR, np.float32), SR)), qt.AudioError, "silent"),
    ("too short audio", dict(ref_audio=(tone(0.02), SR)), qt.AudioError, "too short|at least"),
    ("very long audio", dict(ref_audio=(tone(61.0, sr=8000), 8000)), qt.AudioError, "at most 60 s"),
    ("NaN audio", dict(ref_audio=(np.full(SR, np.nan, np.float32), SR)), qt.AudioError, "NaN"),
    ("some NaN", dict(ref_audio=(np.where(np.arange(SR) == 5, np.nan, tone()).astype(np.float32), SR)),
     qt.AudioError, "NaN or inf"),
    ("int16 audio", dict(ref_audio=((tone() * 32767).astype(np.int16), SR)), qt.AudioError, "floating point"),
    ("channels-first stereo", dict(ref_audio=(tone(channels=2).T, SR)), qt.AudioError, "channels-first"),
    ("zero sample rate", dict(ref_audio=(tone(), 0)), qt.AudioError, "`sample_rate` must be a positive"),
    ("bare array", dict(ref_audio=tone()), qt.AudioError, r"\(waveform, sample_rate\)"),
]


@pytest.mark.parametrize("case,kwargs,error,match", BASE_CASES, ids=[c[0] for c in BASE_CASES])
def test_base_catalogue(base, case, kwargs, error, match):
    with pytest.raises(error, match=match):
        base.generate(TEXT, max_frames=2, **kwargs)


def test_reference_files(base, tmp_path):
    with pytest.raises(qt.AudioError, match="cannot read audio file"):
        base.generate(TEXT, ref_audio=str(tmp_path / "missing.wav"), max_frames=2)
    (tmp_path / "notaudio.wav").write_text("this is text, not audio")
    with pytest.raises(qt.AudioError, match="cannot read audio file"):
        base.generate(TEXT, ref_audio=str(tmp_path / "notaudio.wav"), max_frames=2)
    (tmp_path / "voice.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(qt.AudioError, match="not a readable voice prompt"):
        base.generate(TEXT, voice=tmp_path / "voice.safetensors", max_frames=2)


@pytest.mark.parametrize("channels,sr", [(2, 24000), (1, 8000), (1, 96000), (2, 44100)])
def test_valid_references_of_any_rate_and_channels(base, tmp_path, channels, sr):
    """Stereo is averaged and any rate is resampled to 24 kHz, as the reference does."""
    wav = tone(1.0, sr=sr, channels=channels)
    sf.write(tmp_path / "ref.flac", wav, sr)
    voice = base.create_voice_prompt(str(tmp_path / "ref.flac"), ref_text="my voice.")
    assert voice.ref_codes.shape == (13, 16)  # ceil(1.0 s * 12.5)
    mono24 = base.create_voice_prompt((wav.mean(axis=1) if channels == 2 else wav, sr), ref_text="my voice.")
    np.testing.assert_array_equal(voice.ref_codes, mono24.ref_codes)


def test_truncated_checkpoint_folder(tmp_path, checkpoint):
    folder = shutil.copytree(checkpoint(), tmp_path / "ck")
    (folder / "model.safetensors").unlink()
    with pytest.raises(qt.ModelLoadError, match="has no model.safetensors"):
        qt.load(folder)


@pytest.mark.parametrize("kwargs,param", [
    (dict(temperature=-0.5), "temperature"), (dict(temperature=1e-40), "temperature"),
    (dict(top_k=-1), "top_k"), (dict(top_p=0.0), "top_p"),
    (dict(subtalker_temperature=-1), "subtalker_temperature"),
    (dict(subtalker_temperature=1e-40), "subtalker_temperature"),
    (dict(subtalker_top_k=-2), "subtalker_top_k"), (dict(subtalker_top_p=0.0), "subtalker_top_p"),
])
def test_sampling_errors_carry_their_param(cv, kwargs, param):
    with pytest.raises(qt.SynthesisError) as info:
        cv.generate(TEXT, speaker="vivian", max_frames=2, **kwargs)
    assert info.value.param == param
