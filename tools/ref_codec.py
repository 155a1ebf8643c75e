"""Official-model fixtures for the speech tokenizer tests (`tests/test_codec_parity.py`).

Runs the official `qwen-tts` 0.1.1 tokenizer (PyTorch, fp32, one thread) on a codec folder written
by `mlx_qwen3_tts.testing.write_speech_tokenizer` and stores its decodes of fixed codes and its
codes of fixed waveforms. It must not import mlx (it runs in the reference's venv):

    /work/venv/bin/python -c "from mlx_qwen3_tts.testing import write_speech_tokenizer as w; \
        w('/tmp/codec_tiny', 'tiny-0.6b', seed=0)"
    /work/refvenv/bin/python tools/ref_codec.py /tmp/codec_tiny tests/fixtures
"""

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _reference import import_qwen_tts  # noqa: E402

SHORT_FRAMES = 40
LONG_FRAMES = 320  # > 300: the second reference chunk decodes with 25 frames of left context
LONG_TAIL_START = 288  # the long waveform is stored from this frame on (join at 300) ...
LONG_STRIDE = 16  # ... and every 16th sample of all of it, to stay under the fixture budget
# The long case runs with the released 72-frame window: with the tiny codec's 8, everything a
# frame depends on fits in the 25 context frames and chunked decoding would equal a single pass.
LONG_WINDOW = 72
CODEC_FILES = ("config.json", "model.safetensors")


def codec_digest(codec_dir: Path) -> str:
    """Fingerprint of the codec the fixtures were made from (the test recomputes it)."""
    h = hashlib.sha256()
    for name in CODEC_FILES:
        h.update((codec_dir / name).read_bytes())
    return h.hexdigest()


def with_window(codec_dir: Path, out_dir: Path, window: int) -> Path:
    """A copy of the codec folder whose decoder uses another sliding window (same weights)."""
    shutil.copytree(codec_dir, out_dir, dirs_exist_ok=True)
    config = json.loads((out_dir / "config.json").read_text())
    config["decoder_config"]["sliding_window"] = window
    (out_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return out_dir


def load_official(codec_dir: Path):
    """The official wrapper around `Qwen3TTSTokenizerV2Model`, failing on any weight mismatch."""
    import_qwen_tts()
    import torch
    from qwen_tts.core import Qwen3TTSTokenizerV2Model
    from qwen_tts.inference.qwen3_tts_tokenizer import Qwen3TTSTokenizer
    from transformers import AutoFeatureExtractor

    model, info = Qwen3TTSTokenizerV2Model.from_pretrained(
        codec_dir, dtype=torch.float32, output_loading_info=True
    )
    problems = {k: v for k, v in info.items() if v}
    if problems:
        raise SystemExit(f"official model did not load every weight exactly: {problems}")
    tok = Qwen3TTSTokenizer()
    tok.model, tok.config, tok.device = model.eval(), model.config, torch.device("cpu")
    tok.feature_extractor = AutoFeatureExtractor.from_pretrained(codec_dir)
    return tok


def synthetic_speech(seconds: float, sample_rate: int, seed: int, channels: int = 1) -> np.ndarray:
    """A voiced, gliding, amplitude-modulated signal plus noise, on the 16-bit grid, float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    out = []
    for c in range(channels):
        f0 = 110 + 40 * np.sin(2 * np.pi * 0.7 * t + c) + 20 * t / seconds
        phase = 2 * np.pi * np.cumsum(f0) / sample_rate
        voiced = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 12))
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.1 * t + c) ** 2
        out.append(0.25 * envelope * voiced + 0.02 * rng.standard_normal(t.shape))
    x = np.stack(out, axis=-1) if channels > 1 else out[0]
    return (np.round(np.clip(x, -1, 1) * 32767) / 32768).astype(np.float32)


def decode_fixture(tok, tok_long, digest: str) -> dict[str, np.ndarray]:
    import torch

    rng = np.random.default_rng(20260)
    short = rng.integers(0, 2048, (SHORT_FRAMES, 16))
    long = rng.integers(0, 2048, (LONG_FRAMES, 16))
    wav_short = tok.decode({"audio_codes": [short]})[0][0]
    wav_long = tok_long.decode({"audio_codes": [long]})[0][0]
    assert wav_short.shape == (SHORT_FRAMES * 1920,) and wav_long.shape == (LONG_FRAMES * 1920,)
    with torch.inference_mode():  # the official single pass over all frames ("exact" mode)
        exact = tok_long.model.decoder(torch.from_numpy(long).T[None]).numpy()[0, 0]
    tail = LONG_TAIL_START * 1920
    return {
        "codec_digest": np.array(digest),
        "codes_short": short.astype(np.int16),
        "wav_short": wav_short.astype(np.float32),
        "codes_long": long.astype(np.int16),
        "long_window": np.array(LONG_WINDOW),
        "long_tail_start": np.array(LONG_TAIL_START),
        "long_stride": np.array(LONG_STRIDE),
        "wav_long_tail": wav_long[tail:].astype(np.float32),
        "wav_long_strided": wav_long[::LONG_STRIDE].astype(np.float32),
        "wav_long_exact_tail": exact[tail:].astype(np.float32),
    }


def encode_with_latent(tok, audio: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Codes `[T, 16]` and the quantizer's input `[T, hidden]` (the downsampling conv's output)."""
    seen = []
    hook = tok.model.encoder.downsample.register_forward_hook(lambda m, i, o: seen.append(o))
    try:
        codes = tok.encode(audio, sr=sr).audio_codes[0].numpy()
    finally:
        hook.remove()
    return codes, seen[0][0].T.numpy()


def encode_fixture(tok, digest: str) -> dict[str, np.ndarray]:
    # A: stereo at 24 kHz (down-mix only); B: mono 16 kHz, 10.6 s (resampled, > 250 encoder
    # frames at 25 Hz, so the 250-frame window that the reference does not apply would matter).
    audio_a = synthetic_speech(1.5, 24000, seed=1, channels=2)
    audio_b = synthetic_speech(10.6, 16000, seed=2)
    codes_a, _ = encode_with_latent(tok, audio_a, 24000)
    codes_b, latent_b = encode_with_latent(tok, audio_b, 16000)
    return {
        "codec_digest": np.array(digest),
        "audio_a": audio_a, "sr_a": np.array(24000), "codes_a": codes_a.astype(np.int16),
        "audio_b": audio_b, "sr_b": np.array(16000), "codes_b": codes_b.astype(np.int16),
        "latent_b": latent_b.astype(np.float32),
    }


def make(out_dir: Path, codec_dir: Path) -> list[Path]:
    """Writes `codec_decode.npz` and `codec_encode.npz` into `out_dir`; returns their paths."""
    tok = load_official(codec_dir)
    digest = codec_digest(codec_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "codec_decode.npz", out_dir / "codec_encode.npz"]
    with tempfile.TemporaryDirectory() as tmp:
        tok_long = load_official(with_window(codec_dir, Path(tmp), LONG_WINDOW))
        np.savez_compressed(paths[0], **decode_fixture(tok, tok_long, digest))
    np.savez_compressed(paths[1], **encode_fixture(tok, digest))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("codec_dir", type=Path, help="folder written by write_speech_tokenizer")
    parser.add_argument("out_dir", type=Path, nargs="?", default=Path("tests/fixtures"))
    args = parser.parse_args()
    for path in make(args.out_dir, args.codec_dir):
        print(f"[INFO] wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
