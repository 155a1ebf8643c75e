"""Parity fixtures from the official `qwen-tts` 0.1.1 model (PyTorch, CPU, float32).

Runs in a separate virtualenv that has the official package; installs nothing itself:

    python -m venv /tmp/ref && /tmp/ref/bin/pip install torch==2.13.0
    /tmp/ref/bin/pip install --no-deps qwen-tts==0.1.1
    /tmp/ref/bin/pip install transformers==4.57.3 accelerate einops soundfile librosa
    # 1. write the tiny checkpoints with this project's own writer (project venv):
    python tools/make_reference_fixtures.py write /tmp/fixture-checkpoints
    # 2. run the official model on them (reference venv):
    /tmp/ref/bin/python tools/make_reference_fixtures.py run /tmp/fixture-checkpoints tests/fixtures

Each fixture records the sha256 of the checkpoint it came from; the tests rewrite the same
checkpoint and refuse to compare against a fixture made from other bytes.
"""

import argparse
import hashlib
import json
import sys
import warnings
from pathlib import Path

import numpy as np

# (size, variant) of every checkpoint the fixtures use; seed 0 throughout.
CHECKPOINTS = [
    ("tiny-0.6b", "custom_voice"), ("tiny-1.7b", "base"), ("tiny-1.7b", "voice_design"),
    ("tiny-1.7b", "custom_voice"), ("tiny-0.6b", "base"),
]
GEN_FRAMES = 8  # greedy frames per generation fixture (max_new_tokens = GEN_FRAMES + 1)

# Greedy generation cases: (name, size, variant, wrapper method, kwargs). Mixed-case words are
# avoided so that the wrapper's Mistral-regex tokenizer (local folder, dossier §6.1) agrees with
# the Qwen2 one; the fixture stores the ids it used anyway.
GENERATION_CASES = [
    ("cv_en_nonstream", "tiny-0.6b", "custom_voice", "generate_custom_voice",
     dict(text="hello world, this is a test.", speaker="vivian", language="english")),
    ("cv_en_stream", "tiny-0.6b", "custom_voice", "generate_custom_voice",
     dict(text="hello world, this is a test.", speaker="ryan", language="english",
          non_streaming_mode=False)),
    ("cv_dialect_auto", "tiny-0.6b", "custom_voice", "generate_custom_voice",
     dict(text="你好，世界！", speaker="eric", language="auto")),
    ("cv_06b_instruct_dropped", "tiny-0.6b", "custom_voice", "generate_custom_voice",
     dict(text="good morning.", speaker="aiden", language="auto", instruct="speak slowly")),
    ("cv_17b_instruct", "tiny-1.7b", "custom_voice", "generate_custom_voice",
     dict(text="good morning.", speaker="sohee", language="korean", instruct="speak slowly")),
    ("vd_nonstream", "tiny-1.7b", "voice_design", "generate_voice_design",
     dict(text="the weather is nice today.", instruct="a calm deep male voice",
          language="english")),
    ("vd_stream", "tiny-1.7b", "voice_design", "generate_voice_design",
     dict(text="the weather is nice today.", instruct="a calm deep male voice",
          language="auto", non_streaming_mode=False)),
    ("clone_xvec", "tiny-1.7b", "base", "generate_voice_clone",
     dict(text="nice to meet you.", language="english", x_vector_only_mode=True)),
    ("clone_icl_stream", "tiny-1.7b", "base", "generate_voice_clone",
     dict(text="nice to meet you.", language="english", ref_text="this is my voice.")),
    ("clone_icl_nonstream", "tiny-0.6b", "base", "generate_voice_clone",
     dict(text="nice to meet you, friend.", language="auto", ref_text="this is my voice.",
          non_streaming_mode=True)),
    ("clone_icl_long_text", "tiny-0.6b", "base", "generate_voice_clone",
     dict(text="a much longer target sentence that has more tokens than the reference has frames.",
          language="english", ref_text="short.")),
]
SEED = 0
PREFILL_LEN = 12

# Tricky strings for the text tokenizer: digits, CJK, emoji, contractions, whitespace runs.
TOKENIZER_TEXTS = [
    "Hello world! It's 3:45 pm; we'll see.",
    " iPhone McDonald camelCaseWord",
    "1234567890 3.14159 $19.99 100%",
    "你好，世界！今天天气很好。",
    "こんにちは世界。안녕하세요 세계.",
    "emoji 😀🎉👍🏽 ❤️ done",
    "don't won't I'm you're they've I'D",
    "tabs\tand\nnewlines\n\n  spaces   runs  ",
    "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "Привет, мир! Grüße aus München, ça va?",
]


def checkpoint_name(size: str, variant: str) -> str:
    return f"{size}-{variant}-seed{SEED}"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write(out: Path) -> None:
    """Project venv: write every fixture checkpoint with `mlx_qwen3_tts.testing`."""
    from mlx_qwen3_tts.testing import write_checkpoint

    for size, variant in CHECKPOINTS:
        path = write_checkpoint(out / checkpoint_name(size, variant), size, variant, seed=SEED)
        print(f"[INFO] wrote {path}")


def _load_official(folder: Path):
    import torch
    from qwen_tts.core.models.modeling_qwen3_tts import Qwen3TTSForConditionalGeneration
    from safetensors.torch import load_file

    model = Qwen3TTSForConditionalGeneration.from_pretrained(
        str(folder), dtype=torch.float32, attn_implementation="eager"
    ).eval()
    # from_pretrained only warns about missing or unexpected weights and initialises them
    # randomly: check that the model holds exactly the file's tensors, or a fixture would
    # describe another model.
    state = model.state_dict()
    stored = load_file(str(folder / "model.safetensors"))
    if set(state) != set(stored):
        sys.exit(f"{folder}: official keys differ: {sorted(set(state) ^ set(stored))[:10]}")
    for key, value in stored.items():
        if not torch.equal(state[key], value.to(torch.float32)):
            sys.exit(f"{folder}: official model's {key} differs from the file")
    return model


def talker_fixture(model, config: dict) -> dict[str, np.ndarray]:
    import torch

    talker = model.talker
    hidden = config["talker_config"]["hidden_size"]
    rng = np.random.default_rng(1234)
    text_ids = np.array([151671, 151672, 151673, 151644, 77091, 198, 5, 1000, 151000], np.int64)
    prefill = rng.normal(0, 1, (1, PREFILL_LEN, hidden)).astype(np.float32)
    codes = rng.integers(0, 2048, 15).astype(np.int64)
    with torch.no_grad():
        ids = torch.from_numpy(text_ids)[None]
        text_embeds = talker.text_projection(talker.model.get_text_embeddings()(ids))[0]
        h = talker.model(inputs_embeds=torch.from_numpy(prefill), use_cache=False).last_hidden_state
        logits = talker.codec_head(h)[0]
        c0 = int(torch.argmax(logits[-1, :2048]))
        cp = talker.code_predictor
        embeds = [h[:, -1:], talker.model.get_input_embeddings()(torch.tensor([[c0]]))]
        embeds += [cp.model.get_input_embeddings()[j](torch.from_numpy(codes[j : j + 1])[None])
                   for j in range(14)]
        cp_logits = cp.forward_finetune(inputs_embeds=torch.cat(embeds, dim=1)).logits[0]
    return {
        "text_ids": text_ids, "text_embeds": text_embeds.numpy(),
        "prefill": prefill[0], "hidden": h[0].numpy(), "logits": logits.numpy(),
        "c0": np.array(c0), "codes": codes, "cp_logits": cp_logits.numpy(),
    }


def tokenizer_fixture(folder: Path) -> dict[str, np.ndarray]:
    from transformers import AutoTokenizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qwen2 = AutoTokenizer.from_pretrained(str(folder))  # Qwen2 regex (what hub users get)
        mistral = AutoTokenizer.from_pretrained(str(folder), fix_mistral_regex=True)
    out = {"texts": np.array(TOKENIZER_TEXTS)}
    for i, text in enumerate(TOKENIZER_TEXTS):
        out[f"ids_{i}"] = np.array(qwen2(text)["input_ids"], np.int64)
        out[f"mistral_ids_{i}"] = np.array(mistral(text)["input_ids"], np.int64)
    return out


def reference_waveform(seconds: float = 1.1, sr: int = 24000) -> np.ndarray:
    """A fixed, speech-like test signal: harmonics with a slow vibrato plus a little noise."""
    rng = np.random.default_rng(7)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 140 + 20 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    wav = sum(0.2 / k * np.sin(k * phase) for k in range(1, 6)) + 0.01 * rng.normal(size=t.size)
    return wav.astype(np.float32)


def generation_fixture(wrapper, method: str, kwargs: dict) -> dict[str, np.ndarray]:
    """Greedy official run: prefill embeddings, codes and decoded audio."""
    import torch

    captured: dict[str, np.ndarray] = {}
    talker = wrapper.model.talker
    original_generate = wrapper.model.generate

    # A hook, not a wrapper: HF's generate validates kwargs against `forward`'s signature.
    def prefill_hook(module, args, kw):
        emb = kw.get("inputs_embeds")
        if emb is not None and emb.shape[1] > 1 and "prefill" not in captured:
            captured["prefill"] = emb[0].float().numpy()
            captured["trailing"] = kw["trailing_text_hidden"][0].float().numpy()

    def generate(*args, **kw):
        codes, hidden = original_generate(*args, **kw)
        captured["codes"] = codes[0].numpy().astype(np.int16)
        captured["input_ids"] = kw["input_ids"][0][0].numpy()
        return codes, hidden

    hook = talker.register_forward_pre_hook(prefill_hook, with_kwargs=True)
    wrapper.model.generate = generate
    args = dict(kwargs)
    if method == "generate_voice_clone":
        wav = reference_waveform()
        captured["ref_audio"] = wav
        prompt = wrapper.create_voice_clone_prompt(
            (wav, 24000), ref_text=args.pop("ref_text", None),
            x_vector_only_mode=args.pop("x_vector_only_mode", False),
        )[0]
        captured["ref_spk_embedding"] = prompt.ref_spk_embedding.float().numpy()
        if prompt.ref_code is not None:
            captured["ref_code"] = prompt.ref_code.numpy().astype(np.int16)
        args["voice_clone_prompt"] = [prompt]
    with torch.no_grad():
        wavs, sr = getattr(wrapper, method)(
            **args, do_sample=False, subtalker_dosample=False, max_new_tokens=GEN_FRAMES + 1
        )
    hook.remove()
    wrapper.model.generate = original_generate
    captured["audio"] = wavs[0].astype(np.float32)
    return captured


def _load_wrapper(folder: Path):
    import torch
    from qwen_tts import Qwen3TTSModel
    from transformers import AutoTokenizer

    wrapper = Qwen3TTSModel.from_pretrained(str(folder), dtype=torch.float32,
                                            attn_implementation="eager")
    # Loading a local folder gives the Mistral regex (dossier §6.1); hub users get Qwen2's.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapper.processor.tokenizer = AutoTokenizer.from_pretrained(str(folder))
    return wrapper


def run_generation(checkpoints: Path, out: Path) -> None:
    wrappers = {}
    for name, size, variant, method, kwargs in GENERATION_CASES:
        folder = checkpoints / checkpoint_name(size, variant)
        if folder not in wrappers:
            _load_official(folder)  # checks the weights the wrapper will load
            wrappers[folder] = _load_wrapper(folder)
        fixture = generation_fixture(wrappers[folder], method, kwargs)
        fixture["kwargs"] = np.array(json.dumps(kwargs))
        fixture["sha256"] = np.array(sha256(folder / "model.safetensors"))
        fixture["codec_sha256"] = np.array(sha256(folder / "speech_tokenizer/model.safetensors"))
        np.savez_compressed(out / f"generate_{name}.npz", **fixture)
        print(f"[INFO] generate_{name}.npz: {fixture['codes'].shape[0]} frames")


def run(checkpoints: Path, out: Path) -> None:
    """Reference venv: run the official model on each checkpoint and save `.npz` fixtures."""
    sys.path.insert(0, str(Path(__file__).parent))
    from _reference import import_qwen_tts

    import_qwen_tts()
    out.mkdir(parents=True, exist_ok=True)
    for size, variant in CHECKPOINTS:
        name = checkpoint_name(size, variant)
        folder = checkpoints / name
        config = json.loads((folder / "config.json").read_text())
        model = _load_official(folder)
        fixture = talker_fixture(model, config)
        fixture["sha256"] = np.array(sha256(folder / "model.safetensors"))
        np.savez_compressed(out / f"talker_{name}.npz", **fixture)
        print(f"[INFO] talker_{name}.npz")
    first = checkpoints / checkpoint_name(*CHECKPOINTS[0])
    np.savez_compressed(out / "text_tokenizer.npz", **tokenizer_fixture(first),
                        sha256=np.array(sha256(first / "vocab.json") + sha256(first / "merges.txt")))
    print("[INFO] text_tokenizer.npz")
    run_generation(checkpoints, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("write").add_argument("checkpoints", type=Path)
    p = sub.add_parser("run")
    p.add_argument("checkpoints", type=Path)
    p.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.command == "write":
        write(args.checkpoints)
    else:
        run(args.checkpoints, args.out)


if __name__ == "__main__":
    main()
