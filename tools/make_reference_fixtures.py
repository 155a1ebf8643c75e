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

Fixtures written by `run`:
- `talker_*.npz`: text projection, talker prefill and code-predictor logits (teacher-forced).
- `text_tokenizer.npz`: Qwen2 and Mistral-regex ids of tricky strings.
- `generate_*.npz`: greedy runs of `GEN_FRAMES` frames in every mode (prompt, codes, audio).
- `generate_long_*.npz`: greedy runs of `LONG_FRAMES` frames with short texts, so the trailing text
  runs out early and the frame loop continues on `tts_pad`; both prompt layouts of every mode.
- `generate_eos_*.npz`: greedy runs on checkpoints whose EOS row is scaled by `EOS_SCALE`, which
  stop by themselves, with the frame counts the official model returns when `max_new_tokens` is
  the EOS token's position or one more, and the raw EOS margin of every talker step.
- `sampling_processors.npz`: the `LogitsProcessor` lists the official talker and code-predictor
  `generate` calls build, captured from real calls and applied to recorded logits and histories
  with repeated tokens (processed scores and probabilities).
"""

import argparse
import hashlib
import json
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

# (size, variant) of every checkpoint with a talker fixture; seed 0 throughout.
CHECKPOINTS = [
    ("tiny-0.6b", "custom_voice"), ("tiny-1.7b", "base"), ("tiny-1.7b", "voice_design"),
    ("tiny-1.7b", "custom_voice"), ("tiny-0.6b", "base"),
]
GEN_FRAMES = 8  # greedy frames per generation fixture (max_new_tokens = GEN_FRAMES + 1)
LONG_FRAMES = 32  # long fixtures: well past the end of every trailing text below
# The EOS checkpoints multiply the codec head's EOS row by this (testing.py's `eos_scale`): with
# random weights EOS then wins after a few frames instead of (almost) never.
EOS_SCALE = 5.0
EOS_LIMIT = 64  # max_new_tokens of the EOS runs; each must stop well before it

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
    # Dialect speakers with an explicit language: Chinese takes the dialect, English does not.
    ("cv_dialect_chinese", "tiny-0.6b", "custom_voice", "generate_custom_voice",
     dict(text="你好，世界！", speaker="dylan", language="chinese")),
    ("cv_dialect_english", "tiny-0.6b", "custom_voice", "generate_custom_voice",
     dict(text="good morning.", speaker="eric", language="english")),
]

# Greedy runs of LONG_FRAMES frames: every mode in both prompt layouts, with texts short enough
# that the streaming layouts' trailing text (and the in-context one's) runs out 12+ frames early.
LONG_CASES = [
    ("cv_nonstream", "tiny-0.6b", "custom_voice", "generate_custom_voice",
     dict(text="hello world, this is a test.", speaker="vivian", language="english")),
    ("cv_stream", "tiny-0.6b", "custom_voice", "generate_custom_voice",
     dict(text="hello world, this is a test.", speaker="ryan", language="english",
          non_streaming_mode=False)),
    ("vd_nonstream", "tiny-1.7b", "voice_design", "generate_voice_design",
     dict(text="the weather is nice today.", instruct="a calm deep male voice", language="english")),
    ("vd_stream", "tiny-1.7b", "voice_design", "generate_voice_design",
     dict(text="the weather is nice today.", instruct="a calm deep male voice", language="auto",
          non_streaming_mode=False)),
    ("clone_xvec_stream", "tiny-1.7b", "base", "generate_voice_clone",
     dict(text="nice to meet you.", language="english", x_vector_only_mode=True)),
    ("clone_xvec_nonstream", "tiny-0.6b", "base", "generate_voice_clone",
     dict(text="nice to meet you.", language="auto", x_vector_only_mode=True,
          non_streaming_mode=True)),
    ("clone_icl_stream", "tiny-0.6b", "base", "generate_voice_clone",
     dict(text="hello world, this is a test of it.", language="english", ref_text="short.")),
    ("clone_icl_nonstream", "tiny-1.7b", "base", "generate_voice_clone",
     dict(text="nice to meet you, friend.", language="english", ref_text="this is my voice.",
          non_streaming_mode=True)),
]

# Greedy runs on the EOS_SCALE checkpoints that end by EOS: every mode, both layouts. Where EOS
# is the raw argmax at talker token 1 or 2 (`eos_margin` > 0: clone_xvec_nonstream at token 1,
# vd_stream at token 2), only min_new_tokens=2 keeps the run going; clone_icl_stream stops at
# token 3, the earliest EOS allowed (2 frames).
EOS_CASES = [
    case if case[0] != "clone_icl_stream" else (
        *case[:4], dict(case[4], text="a longer target sentence that has more tokens than frames."))
    for case in LONG_CASES
]

# Sampler settings of the official calls whose LogitsProcessor lists are captured: (talker
# temperature, top_k, top_p, repetition_penalty) and (code predictor temperature, top_k, top_p).
# Run 0 is the released generation_config.json; the others have top_p < 1 and top_k below the
# vocabulary, where the order of top-k and top-p shows, top_k = 0 (off) and temperature 1 (no
# warper).
SAMPLING_RUNS = [
    ((0.9, 50, 1.0, 1.05), (0.9, 50, 1.0)),
    ((0.9, 20, 0.8, 1.05), (0.7, 30, 0.85)),
    ((0.9, 50, 1.0, 1.05), (0.8, 0, 0.9)),
    ((0.9, 50, 1.0, 1.05), (1.0, 100, 0.7)),
]
# Histories by rank of the raw logits (0 = the best audio code): repeats of likely tokens, a
# token just outside the top 50, and the two least likely (negative logits: penalty multiplies).
LATER_HISTORY = [0, 3, 0, 7, 40, 2047, 1, 3, 2046, 0, 12, 60]
# (name, run, raw talker step, history ranks): steps 0 and 1 still ban EOS, step 2 does not.
TALKER_SAMPLING_CASES = [
    ("talker_default_step0", 0, 0, []),
    ("talker_default_step1", 0, 0, [0]),
    ("talker_default_step2", 0, 0, [0, 1]),
    ("talker_default_later", 0, 10, LATER_HISTORY),
    ("talker_topk20_topp08_step0", 1, 0, []),
    ("talker_topk20_topp08_later", 1, 4, LATER_HISTORY),
]
# (name, run, frame, codebook step) of the recorded code-predictor logits.
CP_SAMPLING_CASES = [
    ("cp_default", 0, 0, 0),
    ("cp_t07_topk30_topp085", 1, 2, 5),
    ("cp_t08_topp09_nok", 2, 4, 14),
    ("cp_t1_topk100_topp07", 3, 6, 9),
]
# The greedy run whose raw logits the sampling cases process (EOS in the top 50 at step 0).
SAMPLING_SOURCE = ("tiny-0.6b", "custom_voice", EOS_SCALE, 16)
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


def checkpoint_name(size: str, variant: str, eos_scale: float = 1.0) -> str:
    suffix = "" if eos_scale == 1.0 else f"-eos{eos_scale:g}"
    return f"{size}-{variant}-seed{SEED}{suffix}"


def all_checkpoints() -> list[tuple[str, str, float]]:
    """(size, variant, eos_scale) of every checkpoint any fixture uses."""
    out = [(size, variant, 1.0) for size, variant in CHECKPOINTS]
    out += [(size, variant, EOS_SCALE) for _, size, variant, _, _ in EOS_CASES]
    out.append(SAMPLING_SOURCE[:3])
    return list(dict.fromkeys(out))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write(out: Path) -> None:
    """Project venv: write every fixture checkpoint with `mlx_qwen3_tts.testing`."""
    from mlx_qwen3_tts.testing import write_checkpoint

    for size, variant, eos_scale in all_checkpoints():
        path = write_checkpoint(out / checkpoint_name(size, variant, eos_scale), size, variant,
                                seed=SEED, eos_scale=eos_scale)
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


def generation_fixture(
    wrapper, method: str, kwargs: dict, max_new_tokens: int = GEN_FRAMES + 1
) -> dict[str, np.ndarray]:
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
            **args, do_sample=False, subtalker_dosample=False, max_new_tokens=max_new_tokens
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


class _Recorder:
    """A pass-through `LogitsProcessor` that keeps every step's input ids and raw scores."""

    def __init__(self, store: list):
        self.store = store

    def __call__(self, input_ids, scores):
        self.store.append((input_ids[0].clone(), scores[0].clone()))
        return scores


@contextmanager
def captured_processors(module, lists: list, raw: list):
    """Record the `LogitsProcessorList` each `generate` of `module` builds, and its raw scores.

    Wraps HF's `_get_logits_processor` on this instance: the list it builds is kept as it is
    (`lists`), and a `_Recorder` put in front of it stores the unprocessed scores (`raw`).
    """
    original = module._get_logits_processor

    def patched(*args, **kwargs):
        processors = original(*args, **kwargs)
        lists.append(list(processors))
        processors.insert(0, _Recorder(raw))
        return processors

    module._get_logits_processor = patched
    try:
        yield
    finally:
        del module._get_logits_processor  # the class's method again


class _Checkpoints:
    """Wrappers loaded once per checkpoint folder, each checked against its file first."""

    def __init__(self, root: Path):
        self.root = root
        self.wrappers: dict[Path, object] = {}

    def folder(self, size: str, variant: str, eos_scale: float = 1.0) -> Path:
        return self.root / checkpoint_name(size, variant, eos_scale)

    def wrapper(self, size: str, variant: str, eos_scale: float = 1.0):
        folder = self.folder(size, variant, eos_scale)
        if folder not in self.wrappers:
            _load_official(folder)  # checks the weights the wrapper will load
            self.wrappers[folder] = _load_wrapper(folder)
        return self.wrappers[folder]

    def digests(self, size: str, variant: str, eos_scale: float = 1.0) -> dict[str, np.ndarray]:
        folder = self.folder(size, variant, eos_scale)
        return {"sha256": np.array(sha256(folder / "model.safetensors")),
                "codec_sha256": np.array(sha256(folder / "speech_tokenizer/model.safetensors"))}


def run_generation(ckpts: _Checkpoints, out: Path) -> None:
    for name, size, variant, method, kwargs in GENERATION_CASES:
        fixture = generation_fixture(ckpts.wrapper(size, variant), method, kwargs)
        fixture["kwargs"] = np.array(json.dumps(kwargs))
        fixture.update(ckpts.digests(size, variant))
        np.savez_compressed(out / f"generate_{name}.npz", **fixture)
        print(f"[INFO] generate_{name}.npz: {fixture['codes'].shape[0]} frames")


def run_long_generation(ckpts: _Checkpoints, out: Path) -> None:
    for name, size, variant, method, kwargs in LONG_CASES:
        fixture = generation_fixture(ckpts.wrapper(size, variant), method, kwargs, LONG_FRAMES + 1)
        if len(fixture["codes"]) != LONG_FRAMES:
            sys.exit(f"long case {name}: {len(fixture['codes'])} frames, not {LONG_FRAMES}")
        if len(fixture["trailing"]) > LONG_FRAMES - 12:  # >= 12 frames fed tts_pad after the text
            sys.exit(f"long case {name}: the trailing text does not run out early")
        fixture.pop("ref_audio", None)  # reference_waveform(): the clone-from-audio path has its test
        fixture["kwargs"] = np.array(json.dumps(kwargs))
        fixture.update(ckpts.digests(size, variant))
        np.savez_compressed(out / f"generate_long_{name}.npz", **fixture)
        print(f"[INFO] generate_long_{name}.npz: trailing text ends at frame "
              f"{len(fixture['trailing'])}")


def run_eos_generation(ckpts: _Checkpoints, out: Path) -> None:
    """EOS runs, and the same runs cut by `max_new_tokens` at the EOS token and one before it."""
    for name, size, variant, method, kwargs in EOS_CASES:
        wrapper = ckpts.wrapper(size, variant, EOS_SCALE)
        lists: list = []
        raw: list = []
        with captured_processors(wrapper.model.talker, lists, raw):
            fixture = generation_fixture(wrapper, method, kwargs, EOS_LIMIT)
        frames = len(fixture["codes"])
        if frames >= EOS_LIMIT - 1 or len(raw) != frames + 1:
            sys.exit(f"EOS case {name}: no EOS within {EOS_LIMIT} tokens")
        # EOS's raw logit minus the best audio code's, per talker token: > 0 where EOS would win
        # without min_new_tokens (and the repetition penalty, which only lowers audio codes).
        fixture["eos_margin"] = np.array(
            [float(s[2150] - s[:2048].max()) for _, s in raw], np.float32
        )
        limits = []
        for max_new_tokens in (frames, frames + 1):
            codes = generation_fixture(wrapper, method, kwargs, max_new_tokens)["codes"]
            if not np.array_equal(codes, fixture["codes"][: len(codes)]):
                sys.exit(f"EOS case {name}: a shorter run is not a prefix of the long one")
            limits.append((max_new_tokens, len(codes)))
        fixture["limit_frames"] = np.array(limits, np.int64)
        del fixture["audio"]  # the long fixtures check audio; these check where a run ends
        fixture.pop("ref_audio", None)
        fixture["kwargs"] = np.array(json.dumps(kwargs))
        fixture.update(ckpts.digests(size, variant, EOS_SCALE))
        np.savez_compressed(out / f"generate_eos_{name}.npz", **fixture)
        print(f"[INFO] generate_eos_{name}.npz: EOS after {frames} frames; limits {limits}")


def _processor_info(processor) -> dict:
    """Class name and plain settings of a HF `LogitsProcessor` (tensors as lists)."""
    import torch

    params = {}
    for key, value in vars(processor).items():
        if torch.is_tensor(value):
            value = value.tolist()
        if isinstance(value, (int, float, list, str)):  # drops None and module references
            params[key] = value
    return {"class": type(processor).__name__, **params}


def run_sampling(ckpts: _Checkpoints, out: Path) -> None:
    """The official processor lists applied to recorded logits and repeated-token histories."""
    import torch
    from transformers.generation.logits_process import LogitsProcessorList

    size, variant, eos_scale, max_new_tokens = SAMPLING_SOURCE
    wrapper = ckpts.wrapper(size, variant, eos_scale)
    model = wrapper.model
    text = dict(text="hello world, this is a test.", speaker="vivian", language="english")
    # 1. Raw logits of a greedy run (deterministic): talker steps and code-predictor steps.
    talker_raw: list = []
    cp_raw: list = []
    with captured_processors(model.talker, [], talker_raw), \
            captured_processors(model.talker.code_predictor, [], cp_raw), torch.no_grad():
        wrapper.generate_custom_voice(**text, do_sample=False, subtalker_dosample=False,
                                      max_new_tokens=max_new_tokens)
    groups = model.config.talker_config.num_code_groups - 1
    # 2. The lists the official generate builds for each sampler setting (a real sampled call).
    runs = []
    for (t, k, p, penalty), (st, sk, sp) in SAMPLING_RUNS:
        talker_lists: list = []
        cp_lists: list = []
        torch.manual_seed(0)
        with captured_processors(model.talker, talker_lists, []), \
                captured_processors(model.talker.code_predictor, cp_lists, []), torch.no_grad():
            wrapper.generate_custom_voice(
                **text, do_sample=True, temperature=t, top_k=k, top_p=p, repetition_penalty=penalty,
                subtalker_dosample=True, subtalker_temperature=st, subtalker_top_k=sk,
                subtalker_top_p=sp, max_new_tokens=2,
            )
        runs.append((talker_lists[-1], cp_lists[-1]))
    fixture: dict[str, np.ndarray] = {}
    cases = []

    def apply(name: str, processors, history: list[int], logits, settings: dict) -> None:
        ids = torch.tensor([history], dtype=torch.long)  # input_ids of that step: the c0 history
        with torch.no_grad():
            scores = LogitsProcessorList(processors)(ids, logits[None].clone())[0]
        fixture[f"{name}__logits"] = logits.numpy()
        fixture[f"{name}__history"] = np.array(history, np.int64)
        fixture[f"{name}__scores"] = scores.numpy()
        fixture[f"{name}__probs"] = torch.softmax(scores, dim=-1).numpy()
        cases.append({"name": name, **settings,
                      "processors": [_processor_info(proc) for proc in processors]})

    for name, run, step, ranks in TALKER_SAMPLING_CASES:
        logits = talker_raw[step][1].float()
        order = torch.argsort(logits[:2048], descending=True, stable=True)
        history = [int(order[r]) for r in ranks]
        (t, k, p, penalty), _ = SAMPLING_RUNS[run]
        apply(name, runs[run][0], history, logits,
              {"sampler": "talker", "temperature": t, "top_k": k, "top_p": p,
               "repetition_penalty": penalty})
    for name, run, frame, step in CP_SAMPLING_CASES:
        logits = cp_raw[frame * groups + step][1].float()
        _, (t, k, p) = SAMPLING_RUNS[run]
        apply(name, runs[run][1], [], logits,
              {"sampler": "code_predictor", "temperature": t, "top_k": k, "top_p": p,
               "repetition_penalty": 1.0})
    fixture["cases"] = np.array(json.dumps(cases))
    fixture.update(ckpts.digests(size, variant, eos_scale))
    np.savez_compressed(out / "sampling_processors.npz", **fixture)
    print(f"[INFO] sampling_processors.npz: {len(cases)} cases")


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
    ckpts = _Checkpoints(checkpoints)
    run_generation(ckpts, out)
    run_long_generation(ckpts, out)
    run_eos_generation(ckpts, out)
    run_sampling(ckpts, out)


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
