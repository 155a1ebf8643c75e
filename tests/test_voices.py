"""Saved voices and the cached voice prefix."""

import subprocess
import sys

import numpy as np
import pytest

import mlx_qwen3_tts as qt
from mlx_qwen3_tts.generate import PrefixCache

TEXT = "nice to meet you, how are you?"


def reference_audio(seconds=1.2, sr=24000):
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 170 * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


@pytest.fixture(scope="module")
def base(checkpoint):
    return qt.load(checkpoint("tiny-1.7b", "base"), dtype="float32")


def test_named_voice_in_a_new_process(base, tmp_path, monkeypatch):
    monkeypatch.setenv("MLX_QWEN3_TTS_VOICES", str(tmp_path / "voices"))
    voice = base.create_voice_prompt((reference_audio(), 24000), ref_text="this is my voice.")
    voice.save_as("alice")
    assert qt.list_voices() == ["alice"]
    here = base.generate(TEXT, voice=voice, temperature=0, subtalker_temperature=0, max_frames=6)
    code = (
        "import sys, mlx_qwen3_tts as qt;"
        "tts = qt.load(sys.argv[1], dtype='float32');"
        "r = tts.generate(sys.argv[2], voice='alice', temperature=0, subtalker_temperature=0, max_frames=6);"
        "print(r.codes.flatten().tolist())"
    )
    out = subprocess.run([sys.executable, "-c", code, str(base.path), TEXT], capture_output=True,
                         text=True, check=True, env={**__import__("os").environ})
    assert eval(out.stdout) == here.codes.flatten().tolist()


def test_unknown_and_bad_names(tmp_path, monkeypatch, base):
    monkeypatch.setenv("MLX_QWEN3_TTS_VOICES", str(tmp_path))
    with pytest.raises(qt.AudioError, match="No saved voice named 'bob'"):
        base.generate(TEXT, voice="bob")
    with pytest.raises(qt.AudioError, match="must be 1-64 letters"):
        qt.VoicePrompt(np.zeros(48, np.float32)).save_as("../escape")


@pytest.mark.parametrize("ref_text", [None, "this is my voice."])
@pytest.mark.parametrize("non_streaming_mode", [False, True])
def test_cached_prefix_equals_full_prefill(base, ref_text, non_streaming_mode):
    """The voice prefix's KV cache + the rest gives the logits of one full prefill."""
    voice = base.create_voice_prompt((reference_audio(), 24000), ref_text=ref_text)
    talker = base.model.talker
    prompt = base.job(TEXT, voice=voice, non_streaming_mode=non_streaming_mode).requests[0].prompt
    assert 0 < prompt.prefix_len < prompt.prefill.shape[0]
    full, _ = talker(prompt.prefill[None])
    prefix = PrefixCache.compute(talker, prompt.prefill[: prompt.prefix_len])
    rest, _ = talker(prompt.prefill[None, prompt.prefix_len:], prefix.restore())
    np.testing.assert_allclose(np.array(rest[0, -1]), np.array(full[0, -1]), atol=1e-4)
    # The same voice with another text shares the prefix (and so the cache entry).
    other = base.job("something else entirely.", voice=voice,
                     non_streaming_mode=non_streaming_mode).requests[0].prompt
    np.testing.assert_array_equal(np.array(other.prefill[: other.prefix_len]),
                                  np.array(prompt.prefill[: prompt.prefix_len]))


def test_prefix_cache_is_reused_and_bounded(base):
    voice = base.create_voice_prompt((reference_audio(), 24000), ref_text="this is my voice.")
    base.engine.prefixes.clear()
    a = base.generate(TEXT, voice=voice, seed=0, max_frames=4)
    assert len(base.engine.prefixes) == 1
    b = base.generate(TEXT, voice=voice, seed=0, max_frames=4)
    assert len(base.engine.prefixes) == 1 and np.array_equal(a.audio, b.audio)
    for i in range(10):
        base.generate(TEXT, voice=qt.VoicePrompt(voice.speaker_embedding * (1 + i / 10)), max_frames=1)
    assert len(base.engine.prefixes) == 8
