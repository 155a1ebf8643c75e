"""Speaker-encoder fixtures from the official `qwen-tts` 0.1.1 model (dossier §2.5, §5.1 #12).

For a random-weight Base checkpoint, runs the official `mel_spectrogram` (with the call-site
literals of `extract_speaker_embedding`) and `Qwen3TTSSpeakerEncoder` in fp32 on a fixed 24 kHz
waveform, and writes `speaker_<checkpoint folder name>.npz`. Also writes librosa's mel filterbank,
so tests check ours without depending on librosa. Run with the reference venv:

    /work/venv/bin/python -m mlx_qwen3_tts.testing /tmp/spk/tiny-0.6b-seed0 \\
        --size tiny-0.6b --variant base --seed 0
    /work/refvenv/bin/python tools/ref_speaker.py /tmp/spk/tiny-0.6b-seed0 tests/fixtures

The test rewrites the checkpoint from the `<size>-seed<seed>` folder name and checks the weights
digest stored in the fixture, so name the folder that way.
"""

import hashlib
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _reference import import_qwen_tts  # noqa: E402

SAMPLE_RATE = 24000
PREFIX = "speaker_encoder."
MEL_ARGS = dict(n_fft=1024, num_mels=128, sampling_rate=24000, hop_size=256, win_size=1024,
                fmin=0, fmax=12000)


def waveform(seconds: float = 1.3, seed: int = 1234) -> np.ndarray:
    """A deterministic test signal in [-0.8, 0.8]: a few gliding tones, an envelope and noise.

    Frames differ from each other, so the attentive pooling weights are far from uniform.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    y = np.zeros_like(t)
    for f0, f1 in rng.uniform(80.0, 4000.0, (6, 2)):
        phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))
        y += rng.uniform(0.2, 1.0) * np.sin(phase + rng.uniform(0, 2 * np.pi))
    y *= 0.6 + 0.4 * np.sin(2 * np.pi * 2.5 * t)
    y += 0.05 * rng.standard_normal(t.shape)
    return (0.8 * y / np.abs(y).max()).astype(np.float32)


def weights_digest(weights: dict[str, np.ndarray]) -> str:
    """sha256 of the weights as float32 in PyTorch layout, keys sorted (tests recompute it)."""
    h = hashlib.sha256()
    for key in sorted(weights):
        h.update(key.encode())
        h.update(np.ascontiguousarray(weights[key], dtype=np.float32).tobytes())
    return h.hexdigest()


def make(checkpoint_dir: Path, out_dir: Path) -> None:
    import_qwen_tts()
    import librosa
    import torch
    from qwen_tts.core.models.configuration_qwen3_tts import Qwen3TTSConfig
    from qwen_tts.core.models.modeling_qwen3_tts import Qwen3TTSSpeakerEncoder, mel_spectrogram
    from safetensors.torch import load_file

    checkpoint_dir, out_dir = Path(checkpoint_dir), Path(out_dir)
    config = Qwen3TTSConfig.from_pretrained(checkpoint_dir).speaker_encoder_config
    encoder = Qwen3TTSSpeakerEncoder(config).float().eval()
    state = {
        k[len(PREFIX):]: v.float()
        for k, v in load_file(checkpoint_dir / "model.safetensors").items()
        if k.startswith(PREFIX)
    }
    encoder.load_state_dict(state, strict=True)

    wav = waveform()
    with torch.inference_mode():
        mels = mel_spectrogram(torch.from_numpy(wav).unsqueeze(0), **MEL_ARGS).transpose(1, 2)
        xvector = encoder(mels)[0]

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"speaker_{checkpoint_dir.name}.npz"
    np.savez_compressed(
        path,
        waveform=wav,
        mel=mels[0].numpy().astype(np.float32),
        xvector=xvector.numpy().astype(np.float32),
        weights_digest=np.array(weights_digest({k: v.numpy() for k, v in state.items()})),
    )
    filters = librosa.filters.mel(sr=24000, n_fft=1024, n_mels=128, fmin=0, fmax=12000)
    np.savez_compressed(out_dir / "speaker_librosa_mel.npz", filters=filters.astype(np.float32))
    print(f"[INFO] wrote {path} (mel {tuple(mels.shape)}, x-vector {tuple(xvector.shape)})")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} CHECKPOINT_DIR OUT_DIR")
    make(Path(sys.argv[1]), Path(sys.argv[2]))
