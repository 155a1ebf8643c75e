"""Random-weight Qwen3-TTS checkpoints in the exact Hugging Face layout of the released repos.

Real weights cannot be downloaded where this project is tested, so tests and benchmarks run on
checkpoints written here: same files, key names, PyTorch shapes and dtypes as the released
repos (dossier §1.2), random values. The initialisation is chosen to catch porting bugs
(parity-notes.md): norm weights are 1 + noise, LayerScale and ConvNeXt gammas are large, the
codec's output has a std around 0.3, and tiny codecs use a short attention window.

    python -m mlx_qwen3_tts.testing /tmp/tiny --size tiny-0.6b --variant base

Used by tests and benchmarks only; nothing in the library imports it.
"""

import argparse
import json
import zlib
from collections.abc import Iterator
from pathlib import Path

import mlx.core as mx
import numpy as np

from . import tokens

Layout = list[tuple[str, tuple[int, ...]]]

# Widths and depths per topology; every id-bearing size stays real (parity-notes.md).
TOPOLOGIES: dict[str, dict] = {
    # 0.6B-like: head_dim != hidden/heads, text width != talker width, no predictor projection.
    "tiny-0.6b": dict(
        talker=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=16),
        text_hidden_size=24,
        code_predictor=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, head_dim=16),
        speaker=dict(enc_channels=[16, 16, 16, 16, 48], enc_attention_channels=8,
                     enc_res2net_scale=4, enc_se_channels=8),
        codec="tiny", size_tag="0b6",
    ),
    # 1.7B-like: predictor narrower than the talker, so small_to_mtp_projection exists.
    "tiny-1.7b": dict(
        talker=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=12),
        text_hidden_size=48,
        code_predictor=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, head_dim=16),
        speaker=dict(enc_channels=[16, 16, 16, 16, 48], enc_attention_channels=8,
                     enc_res2net_scale=4, enc_se_channels=8),
        codec="tiny", size_tag="1b7",
    ),
    # Quantization tests: every talker and predictor width a multiple of 64, the largest group size.
    "tiny-q": dict(
        talker=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=16),
        text_hidden_size=64,
        code_predictor=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, head_dim=16),
        # Speaker widths above 64: mlx-audio's converter guesses conv layouts by comparing sizes
        # with 64, and only converts a Base model whose 1x1 convs are that wide.
        speaker=dict(enc_channels=[128, 128, 128, 128, 384], enc_attention_channels=128,
                     enc_res2net_scale=4, enc_se_channels=128),
        codec="tiny", size_tag="0b6",
    ),
    "0.6b": dict(
        talker=dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                    num_attention_heads=16, num_key_value_heads=8, head_dim=128),
        text_hidden_size=2048,
        code_predictor=dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=5,
                            num_attention_heads=16, num_key_value_heads=8, head_dim=128),
        speaker={}, codec="full", size_tag="0b6",
    ),
    "1.7b": dict(
        talker=dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
                    num_attention_heads=16, num_key_value_heads=8, head_dim=128),
        text_hidden_size=2048,
        code_predictor=dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=5,
                            num_attention_heads=16, num_key_value_heads=8, head_dim=128),
        speaker={}, codec="full", size_tag="1b7",
    ),
}
VARIANTS = ("custom_voice", "voice_design", "base")

LANGUAGE_IDS = {
    "chinese": 2055, "english": 2050, "german": 2053, "italian": 2070, "portuguese": 2071,
    "spanish": 2054, "japanese": 2058, "korean": 2064, "french": 2061, "russian": 2069,
    "beijing_dialect": 2074, "sichuan_dialect": 2062,
}
SPEAKER_IDS = {
    "vivian": 3065, "serena": 3066, "uncle_fu": 3010, "dylan": 2878, "eric": 2875,
    "ryan": 3061, "aiden": 2861, "ono_anna": 2873, "sohee": 2864,
}
SPEAKER_DIALECTS = {
    name: {"dylan": "beijing_dialect", "eric": "sichuan_dialect"}.get(name, False)
    for name in SPEAKER_IDS
}

CODEC_DECODER = {
    "full": dict(codebook_size=2048, codebook_dim=512, num_quantizers=16, latent_dim=1024,
                 hidden_size=512, intermediate_size=1024, num_hidden_layers=8,
                 num_attention_heads=16, num_key_value_heads=16, head_dim=64, sliding_window=72,
                 decoder_dim=1536),
    # A short window makes short tests exercise the sliding-window mask.
    "tiny": dict(codebook_size=2048, codebook_dim=16, num_quantizers=16, latent_dim=32,
                 hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                 num_attention_heads=2, num_key_value_heads=2, head_dim=8, sliding_window=8,
                 decoder_dim=32),
}
CODEC_ENCODER = {
    "full": dict(num_filters=64, hidden_size=512, num_hidden_layers=8, num_attention_heads=8,
                 num_key_value_heads=8, head_dim=64, intermediate_size=2048, codebook_dim=256,
                 vector_quantization_hidden_dimension=256),
    "tiny": dict(num_filters=4, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=2, head_dim=8, intermediate_size=32, codebook_dim=8,
                 vector_quantization_hidden_dimension=8),
}


# --------------------------------------------------------------------------- configs


def make_config(size: str, variant: str) -> dict:
    """The top-level `config.json` of a checkpoint of this topology and variant."""
    topo = _topology(size, variant)
    t = topo["talker"]
    code_predictor = {
        **topo["code_predictor"],
        "vocab_size": 2048, "num_code_groups": 16, "max_position_embeddings": 65536,
        "rope_theta": 1000000, "rope_scaling": None, "rms_norm_eps": 1e-06, "hidden_act": "silu",
        "layer_types": ["full_attention"] * topo["code_predictor"]["num_hidden_layers"],
        "use_sliding_window": False, "sliding_window": None, "attention_bias": False,
        "attention_dropout": 0.0, "tie_word_embeddings": False, "use_cache": True,
        "max_window_layers": 28, "initializer_range": 0.02, "model_type": "qwen3_tts_talker_code_predictor",
    }
    custom = variant == "custom_voice"
    talker = {
        **t,
        "code_predictor_config": code_predictor,
        "vocab_size": 3072, "text_vocab_size": 151936, "text_hidden_size": topo["text_hidden_size"],
        "num_code_groups": 16, "hidden_act": "silu", "rms_norm_eps": 1e-06,
        "rope_theta": 1000000, "max_position_embeddings": 32768,
        "rope_scaling": {"interleaved": True, "mrope_section": [24, 20, 20],
                         "rope_type": "default", "type": "default"},
        "attention_bias": False, "attention_dropout": 0.0, "use_sliding_window": False,
        "sliding_window": None, "position_id_per_seconds": 13, "tie_word_embeddings": False,
        "use_cache": True, "initializer_range": 0.02, "model_type": "qwen3_tts_talker",
        "codec_pad_id": 2148, "codec_bos_id": 2149, "codec_eos_token_id": 2150,
        "codec_think_id": 2154, "codec_nothink_id": 2155, "codec_think_bos_id": 2156,
        "codec_think_eos_id": 2157, "codec_language_id": dict(LANGUAGE_IDS),
        "spk_id": dict(SPEAKER_IDS) if custom else {},
        "spk_is_dialect": dict(SPEAKER_DIALECTS) if custom else {},
    }
    config = {
        "architectures": ["Qwen3TTSForConditionalGeneration"],
        "model_type": "qwen3_tts",
        "tokenizer_type": "qwen3_tts_tokenizer_12hz",
        "tts_model_size": topo["size_tag"],
        "tts_model_type": variant,
        "im_start_token_id": tokens.IM_START,
        "im_end_token_id": tokens.IM_END,
        "assistant_token_id": tokens.ASSISTANT,
        "tts_pad_token_id": tokens.TTS_PAD,
        "tts_bos_token_id": tokens.TTS_BOS,
        "tts_eos_token_id": tokens.TTS_EOS,
        "talker_config": talker,
        "transformers_version": "4.57.3",
    }
    if variant == "base":
        config["speaker_encoder_config"] = {
            **topo["speaker"], "enc_dim": t["hidden_size"], "sample_rate": 24000,
        }
    return config


def make_speech_tokenizer_config(size: str) -> dict:
    """`speech_tokenizer/config.json` (dossier §1.4)."""
    kind = TOPOLOGIES[size]["codec"]
    decoder = {
        **CODEC_DECODER[kind],
        "max_position_embeddings": 8000, "rope_theta": 10000, "rms_norm_eps": 1e-05,
        "layer_scale_initial_scale": 0.01, "hidden_act": "silu", "attention_bias": False,
        "attention_dropout": 0.0, "upsample_rates": [8, 5, 4, 3], "upsampling_ratios": [2, 2],
        "num_semantic_quantizers": 1, "semantic_codebook_size": 4096,
        "vector_quantization_hidden_dimension": 512,
    }
    encoder = {
        **CODEC_ENCODER[kind],
        "sampling_rate": 24000, "audio_channels": 1, "kernel_size": 7, "last_kernel_size": 3,
        "residual_kernel_size": 3, "num_residual_layers": 1, "dilation_growth_rate": 2,
        "compress": 2, "upsampling_ratios": [8, 6, 5, 4], "hidden_act": "gelu", "norm_eps": 1e-05,
        "layer_scale_initial_scale": 0.01, "rope_theta": 10000.0, "max_position_embeddings": 8000,
        "sliding_window": 250, "num_quantizers": 32, "num_semantic_quantizers": 1,
        "codebook_size": 2048, "use_causal_conv": True, "pad_mode": "constant",
        "trim_right_ratio": 1.0, "use_conv_shortcut": False,
        "upsample_groups": CODEC_ENCODER[kind]["hidden_size"],
        "frame_rate": 12.5, "dtype": "float32", "model_type": "mimi", "use_streaming": False,
        "attention_bias": False, "attention_dropout": 0.0, "initializer_range": 0.02,
    }
    return {
        "architectures": ["Qwen3TTSTokenizerV2Model"],
        "model_type": "qwen3_tts_tokenizer_12hz",
        "encoder_valid_num_quantizers": 16,
        "input_sample_rate": 24000,
        "output_sample_rate": 24000,
        "encode_downsample_rate": 1920,
        "decode_upsample_rate": 1920,
        "encoder_config": encoder,
        "decoder_config": decoder,
        "transformers_version": "4.57.3",
    }


GENERATION_CONFIG = {
    "do_sample": True, "repetition_penalty": 1.05, "temperature": 0.9, "top_p": 1.0,
    "top_k": 50, "subtalker_dosample": True, "subtalker_temperature": 0.9, "subtalker_top_p": 1.0,
    "subtalker_top_k": 50, "max_new_tokens": 8192, "transformers_version": "4.57.3",
}
PREPROCESSOR_CONFIG = {
    "padding_side": "left", "padding_value": 0.0, "processor_class": "Qwen3TTSProcessor",
    "return_attention_mask": True,
}
CODEC_PREPROCESSOR_CONFIG = {
    "chunk_length_s": None, "feature_extractor_type": "EncodecFeatureExtractor",
    "feature_size": 1, "overlap": None, "padding_side": "right", "padding_value": 0.0,
    "return_attention_mask": True, "sampling_rate": 24000,
}


def _topology(size: str, variant: str) -> dict:
    # Every size takes every variant: no 0.6B VoiceDesign was released, but the network is the
    # same, so tests may use one.
    if size not in TOPOLOGIES:
        raise ValueError(f"Unknown size {size!r}; choose one of {sorted(TOPOLOGIES)}.")
    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}; choose one of {VARIANTS}.")
    return TOPOLOGIES[size]


# --------------------------------------------------------------------------- key layouts


def _decoder_layers(prefix: str, n: int, h: int, i: int, heads: int, kv: int, hd: int) -> Layout:
    out: Layout = []
    for layer in range(n):
        p = f"{prefix}.layers.{layer}"
        out += [
            (f"{p}.self_attn.q_proj.weight", (heads * hd, h)),
            (f"{p}.self_attn.k_proj.weight", (kv * hd, h)),
            (f"{p}.self_attn.v_proj.weight", (kv * hd, h)),
            (f"{p}.self_attn.o_proj.weight", (h, heads * hd)),
            (f"{p}.self_attn.q_norm.weight", (hd,)),
            (f"{p}.self_attn.k_norm.weight", (hd,)),
            (f"{p}.mlp.gate_proj.weight", (i, h)),
            (f"{p}.mlp.up_proj.weight", (i, h)),
            (f"{p}.mlp.down_proj.weight", (h, i)),
            (f"{p}.input_layernorm.weight", (h,)),
            (f"{p}.post_attention_layernorm.weight", (h,)),
        ]
    return out


def talker_layout(config: dict) -> Layout:
    t = config["talker_config"]
    c = t["code_predictor_config"]
    h, ht, hc = t["hidden_size"], t["text_hidden_size"], c["hidden_size"]
    g = t["num_code_groups"]
    out = _decoder_layers("talker.model", t["num_hidden_layers"], h, t["intermediate_size"],
                          t["num_attention_heads"], t["num_key_value_heads"], t["head_dim"])
    out += [
        ("talker.model.norm.weight", (h,)),
        ("talker.model.codec_embedding.weight", (t["vocab_size"], h)),
        ("talker.model.text_embedding.weight", (t["text_vocab_size"], ht)),
        ("talker.text_projection.linear_fc1.weight", (ht, ht)),
        ("talker.text_projection.linear_fc1.bias", (ht,)),
        ("talker.text_projection.linear_fc2.weight", (h, ht)),
        ("talker.text_projection.linear_fc2.bias", (h,)),
        ("talker.codec_head.weight", (t["vocab_size"], h)),
    ]
    out += _decoder_layers("talker.code_predictor.model", c["num_hidden_layers"], hc,
                           c["intermediate_size"], c["num_attention_heads"],
                           c["num_key_value_heads"], c["head_dim"])
    out.append(("talker.code_predictor.model.norm.weight", (hc,)))
    out += [(f"talker.code_predictor.model.codec_embedding.{j}.weight", (c["vocab_size"], h))
            for j in range(g - 1)]
    out += [(f"talker.code_predictor.lm_head.{j}.weight", (c["vocab_size"], hc))
            for j in range(g - 1)]
    if hc != h:
        out += [("talker.code_predictor.small_to_mtp_projection.weight", (hc, h)),
                ("talker.code_predictor.small_to_mtp_projection.bias", (hc,))]
    return out


SPEAKER_DEFAULTS = dict(mel_dim=128, enc_channels=[512, 512, 512, 512, 1536],
                        enc_kernel_sizes=[5, 3, 3, 3, 1], enc_dilations=[1, 2, 3, 4, 1],
                        enc_attention_channels=128, enc_res2net_scale=8, enc_se_channels=128)


def speaker_layout(config: dict) -> Layout:
    s = {**SPEAKER_DEFAULTS, **config["speaker_encoder_config"]}
    ch, ks = s["enc_channels"], s["enc_kernel_sizes"]
    scale, se, att = s["enc_res2net_scale"], s["enc_se_channels"], s["enc_attention_channels"]
    p = "speaker_encoder"
    out: Layout = [(f"{p}.blocks.0.conv.weight", (ch[0], s["mel_dim"], ks[0])),
                   (f"{p}.blocks.0.conv.bias", (ch[0],))]
    for b in range(1, len(ch) - 1):
        q = f"{p}.blocks.{b}"
        cin, cout, sub = ch[b - 1], ch[b], ch[b] // scale
        out += [(f"{q}.tdnn1.conv.weight", (cout, cin, 1)), (f"{q}.tdnn1.conv.bias", (cout,))]
        for j in range(scale - 1):
            out += [(f"{q}.res2net_block.blocks.{j}.conv.weight", (sub, sub, ks[b])),
                    (f"{q}.res2net_block.blocks.{j}.conv.bias", (sub,))]
        out += [(f"{q}.tdnn2.conv.weight", (cout, cout, 1)), (f"{q}.tdnn2.conv.bias", (cout,)),
                (f"{q}.se_block.conv1.weight", (se, cout, 1)), (f"{q}.se_block.conv1.bias", (se,)),
                (f"{q}.se_block.conv2.weight", (cout, se, 1)),
                (f"{q}.se_block.conv2.bias", (cout,))]
    cat = sum(ch[1:-1])
    out += [
        (f"{p}.mfa.conv.weight", (ch[-1], cat, ks[-1])), (f"{p}.mfa.conv.bias", (ch[-1],)),
        (f"{p}.asp.tdnn.conv.weight", (att, ch[-1] * 3, 1)), (f"{p}.asp.tdnn.conv.bias", (att,)),
        (f"{p}.asp.conv.weight", (ch[-1], att, 1)), (f"{p}.asp.conv.bias", (ch[-1],)),
        (f"{p}.fc.weight", (s["enc_dim"], ch[-1] * 2, 1)), (f"{p}.fc.bias", (s["enc_dim"],)),
    ]
    return out


def codec_decoder_layout(config: dict) -> Layout:
    d = config["decoder_config"]
    p = "decoder"
    vq, cd, lat, h, i = d["codebook_dim"] // 2, d["codebook_dim"], d["latent_dim"], \
        d["hidden_size"], d["intermediate_size"]
    out: Layout = []
    for group, n in (("rvq_first", 1), ("rvq_rest", d["num_quantizers"] - 1)):
        q = f"{p}.quantizer.{group}"
        out += [(f"{q}.input_proj.weight", (vq, cd, 1)), (f"{q}.output_proj.weight", (cd, vq, 1))]
        for k in range(n):
            out += [(f"{q}.vq.layers.{k}._codebook.cluster_usage", (d["codebook_size"],)),
                    (f"{q}.vq.layers.{k}._codebook.embedding_sum", (d["codebook_size"], vq))]
    out += [(f"{p}.pre_conv.conv.weight", (lat, cd, 3)), (f"{p}.pre_conv.conv.bias", (lat,))]
    t = f"{p}.pre_transformer"
    heads, kv, hd = d["num_attention_heads"], d["num_key_value_heads"], d["head_dim"]
    for layer in range(d["num_hidden_layers"]):
        q = f"{t}.layers.{layer}"
        out += [
            (f"{q}.self_attn.q_proj.weight", (heads * hd, h)),
            (f"{q}.self_attn.k_proj.weight", (kv * hd, h)),
            (f"{q}.self_attn.v_proj.weight", (kv * hd, h)),
            (f"{q}.self_attn.o_proj.weight", (h, heads * hd)),
            (f"{q}.mlp.gate_proj.weight", (i, h)),
            (f"{q}.mlp.up_proj.weight", (i, h)),
            (f"{q}.mlp.down_proj.weight", (h, i)),
            (f"{q}.input_layernorm.weight", (h,)),
            (f"{q}.post_attention_layernorm.weight", (h,)),
            (f"{q}.self_attn_layer_scale.scale", (h,)),
            (f"{q}.mlp_layer_scale.scale", (h,)),
        ]
    out += [(f"{t}.norm.weight", (h,)), (f"{t}.input_proj.weight", (h, lat)),
            (f"{t}.input_proj.bias", (h,)), (f"{t}.output_proj.weight", (lat, h)),
            (f"{t}.output_proj.bias", (lat,))]
    for s, ratio in enumerate(d["upsampling_ratios"]):
        q = f"{p}.upsample.{s}"
        out += [(f"{q}.0.conv.weight", (lat, lat, ratio)), (f"{q}.0.conv.bias", (lat,)),
                (f"{q}.1.gamma", (lat,)), (f"{q}.1.dwconv.conv.weight", (lat, 1, 7)),
                (f"{q}.1.dwconv.conv.bias", (lat,)), (f"{q}.1.norm.weight", (lat,)),
                (f"{q}.1.norm.bias", (lat,)), (f"{q}.1.pwconv1.weight", (4 * lat, lat)),
                (f"{q}.1.pwconv1.bias", (4 * lat,)), (f"{q}.1.pwconv2.weight", (lat, 4 * lat)),
                (f"{q}.1.pwconv2.bias", (lat,))]
    dim = d["decoder_dim"]
    out += [(f"{p}.decoder.0.conv.weight", (dim, lat, 7)), (f"{p}.decoder.0.conv.bias", (dim,))]
    for b, rate in enumerate(d["upsample_rates"], start=1):
        cin, cout = dim // 2 ** (b - 1), dim // 2**b
        q = f"{p}.decoder.{b}.block"
        out += [(f"{q}.0.alpha", (cin,)), (f"{q}.0.beta", (cin,)),
                (f"{q}.1.conv.weight", (cin, cout, 2 * rate)), (f"{q}.1.conv.bias", (cout,))]
        for r in range(2, 5):
            out += [(f"{q}.{r}.act1.alpha", (cout,)), (f"{q}.{r}.act1.beta", (cout,)),
                    (f"{q}.{r}.conv1.conv.weight", (cout, cout, 7)),
                    (f"{q}.{r}.conv1.conv.bias", (cout,)),
                    (f"{q}.{r}.act2.alpha", (cout,)), (f"{q}.{r}.act2.beta", (cout,)),
                    (f"{q}.{r}.conv2.conv.weight", (cout, cout, 1)),
                    (f"{q}.{r}.conv2.conv.bias", (cout,))]
    n = len(d["upsample_rates"])
    last = dim // 2**n
    out += [(f"{p}.decoder.{n + 1}.alpha", (last,)), (f"{p}.decoder.{n + 1}.beta", (last,)),
            (f"{p}.decoder.{n + 2}.conv.weight", (1, last, 7)),
            (f"{p}.decoder.{n + 2}.conv.bias", (1,))]
    return out


def codec_encoder_layout(config: dict) -> Layout:
    e = config["encoder_config"]
    p = "encoder"
    nf, ks = e["num_filters"], e["kernel_size"]
    out: Layout = [(f"{p}.encoder.layers.0.conv.weight", (nf, e["audio_channels"], ks)),
                   (f"{p}.encoder.layers.0.conv.bias", (nf,))]
    idx, ch = 1, nf
    for ratio in reversed(e["upsampling_ratios"]):
        hid = ch // e["compress"]
        out += [(f"{p}.encoder.layers.{idx}.block.1.conv.weight", (hid, ch, e["residual_kernel_size"])),
                (f"{p}.encoder.layers.{idx}.block.1.conv.bias", (hid,)),
                (f"{p}.encoder.layers.{idx}.block.3.conv.weight", (ch, hid, 1)),
                (f"{p}.encoder.layers.{idx}.block.3.conv.bias", (ch,))]
        idx += 2  # the ResBlock, then an ELU
        out += [(f"{p}.encoder.layers.{idx}.conv.weight", (2 * ch, ch, 2 * ratio)),
                (f"{p}.encoder.layers.{idx}.conv.bias", (2 * ch,))]
        idx += 1
        ch *= 2
    idx += 1  # ELU
    h = e["hidden_size"]
    out += [(f"{p}.encoder.layers.{idx}.conv.weight", (h, ch, e["last_kernel_size"])),
            (f"{p}.encoder.layers.{idx}.conv.bias", (h,))]
    heads, kv, hd = e["num_attention_heads"], e["num_key_value_heads"], e["head_dim"]
    for layer in range(e["num_hidden_layers"]):
        q = f"{p}.encoder_transformer.layers.{layer}"
        out += [
            (f"{q}.self_attn.q_proj.weight", (heads * hd, h)),
            (f"{q}.self_attn.k_proj.weight", (kv * hd, h)),
            (f"{q}.self_attn.v_proj.weight", (kv * hd, h)),
            (f"{q}.self_attn.o_proj.weight", (h, heads * hd)),
            (f"{q}.mlp.fc1.weight", (e["intermediate_size"], h)),
            (f"{q}.mlp.fc2.weight", (h, e["intermediate_size"])),
            (f"{q}.input_layernorm.weight", (h,)), (f"{q}.input_layernorm.bias", (h,)),
            (f"{q}.post_attention_layernorm.weight", (h,)),
            (f"{q}.post_attention_layernorm.bias", (h,)),
            (f"{q}.self_attn_layer_scale.scale", (h,)), (f"{q}.mlp_layer_scale.scale", (h,)),
        ]
    out.append((f"{p}.downsample.conv.weight", (h, h, 2 * e["compress"])))
    vq, cd = e["vector_quantization_hidden_dimension"], e["codebook_dim"]
    n_sem = e["num_semantic_quantizers"]
    for group, n in (("semantic", n_sem), ("acoustic", e["num_quantizers"] - n_sem)):
        q = f"{p}.quantizer.{group}_residual_vector_quantizer"
        for k in range(n):
            out += [(f"{q}.layers.{k}.codebook.initialized", (1,)),
                    (f"{q}.layers.{k}.codebook.cluster_usage", (e["codebook_size"],)),
                    (f"{q}.layers.{k}.codebook.embed_sum", (e["codebook_size"], cd))]
        if vq != h:
            out += [(f"{q}.input_proj.weight", (vq, h, 1)), (f"{q}.output_proj.weight", (h, vq, 1))]
    return out


# --------------------------------------------------------------------------- values


def _rng(seed: int, key: str) -> np.random.Generator:
    # One stream per key, so adding a tensor never changes the values of the others.
    return np.random.default_rng([seed, zlib.crc32(key.encode())])


def _init(key: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Bug-catching random values for one tensor, chosen by its key (parity-notes.md)."""
    rng = _rng(seed, key)
    name = key.rsplit(".", 1)[-1]
    normal = lambda std: rng.normal(0.0, std, shape)  # noqa: E731
    if name == "initialized":
        return np.ones(shape)
    if name == "cluster_usage":
        return rng.uniform(0.5, 2.0, shape)
    if name in ("embedding_sum", "embed_sum"):
        # The table is embedding_sum / cluster_usage; usage is drawn from the sibling key's stream.
        usage = _init(key.rsplit(".", 1)[0] + ".cluster_usage", shape[:1], seed)
        return normal(1.0) * usage[:, None]
    if name == "scale" or name == "gamma":  # LayerScale / ConvNeXt gamma: large, so blocks count
        return rng.uniform(0.05, 0.25, shape)
    if name in ("alpha", "beta"):  # SnakeBeta parameters, stored as logs
        return normal(0.2)
    if name == "bias":
        return normal(0.1)
    if "norm" in key.rsplit(".", 2)[-2] and name == "weight":
        return 1.0 + normal(0.1)
    if "embedding" in key:
        return normal(0.5)
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    std = 1.0 / np.sqrt(fan_in)
    # Random codecs saturate the clamp; shrink the residual 1x1 convs and the final conv so
    # std(wav) is ~0.3 (tiny codec, seed 0: 0.33 with 3 % of samples at the clamp).
    if key.startswith("decoder.decoder.") and ".conv2." in key:
        std *= 0.3
    elif key.startswith("decoder.decoder.") and key.count(".") == 4 and ".0." not in key:
        std *= 0.6  # the last conv (decoder.decoder.0, the first one, keeps its std)
    return normal(std)


def random_weights(layout: Layout, seed: int, eos_scale: float = 1.0) -> Iterator[tuple[str, np.ndarray]]:
    for key, shape in layout:
        value = _init(key, shape, seed)
        if key == "talker.codec_head.weight" and eos_scale != 1.0:
            value[2150] *= eos_scale
        yield key, value.astype(np.float32)


# --------------------------------------------------------------------------- text tokenizer


_TOKENIZER_CORPUS = [
    "Hello world! This is a test of the Qwen3 text to speech system.",
    "The quick brown fox jumps over the lazy dog. It's 3:45 pm; we'll see.",
    "iPhone McDonald camelCaseWord HTTPServer don't won't I'm you're they've",
    "1234567890 3.14159 2026-11-30 $19.99 100% #hashtag @user https://example.com/path",
    "你好，世界！今天天气很好。我们一起去公园散步吧。语音合成测试。",
    "こんにちは世界。音声合成のテストです。カタカナ ひらがな",
    "안녕하세요 세계. 음성 합성 테스트입니다.",
    "Привет, мир! Это тест синтеза речи. Grüße aus München, ça va? ¿Qué tal? Olá!",
    "emoji 😀🎉👍🏽 ❤️ — “quotes” ‘single’ … tabs\tand\nnewlines\n\n  spaces   runs",
    "assistant\nuser\nassistant\nuser\nassistant\nuser\nassistant\nuser\nassistant\n",
]
# The prompt templates slice token ids by position (dossier §3.1), which only works when these
# words are single tokens at their released ids.
_PINNED_IDS = {"assistant": tokens.ASSISTANT, "user": 872, "Ċ": tokens.NEWLINE, "Ġ": 220}


def write_text_tokenizer(path: Path) -> None:
    """`vocab.json`, `merges.txt`, `tokenizer_config.json`: a small Qwen2-style byte-level BPE.

    Trained locally on a fixed corpus, then padded with filler entries to the real 151,643 base
    ids, so every special token sits at its released id (transformers keys a Qwen2 patch off a
    vocabulary larger than 100k, parity-notes.md).
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=1500, min_frequency=1, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_TOKENIZER_CORPUS * 4, trainer)
    model = json.loads(tok.to_str())["model"]
    by_id = {i: t for t, i in model["vocab"].items()}
    by_id.update({i: f"<|filler_{i}|>" for i in range(len(by_id), tokens.ENDOFTEXT)})
    for token, pinned in _PINNED_IDS.items():
        old = model["vocab"][token]
        by_id[old], by_id[pinned] = by_id[pinned], token
    vocab = {t: i for i, t in sorted(by_id.items())}
    merges = [" ".join(m) if isinstance(m, list) else m for m in model["merges"]]
    (path / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    added = {
        str(i): {"content": s, "lstrip": False, "normalized": False, "rstrip": False,
                 "single_word": False, "special": i not in tokens.NOT_SPECIAL}
        for i, s in tokens.ADDED_TOKENS.items()
    }
    config = {
        "add_bos_token": False, "add_prefix_space": False, "added_tokens_decoder": added,
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>", "<|audio_start|>",
                                      "<|audio_end|>", "<tts_pad>", "<tts_text_bos>",
                                      "<tts_text_bos_single>", "<|audio_pad|>"],
        "bos_token": None, "clean_up_tokenization_spaces": False, "eos_token": "<|im_end|>",
        "errors": "replace", "model_max_length": 131072, "pad_token": "<|endoftext|>",
        "split_special_tokens": False, "tokenizer_class": "Qwen2Tokenizer", "unk_token": None,
    }
    (path / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))


# --------------------------------------------------------------------------- teacher forcing


def teacher_forced_logits(code_predictor, past_hidden: mx.array, c0_embed: mx.array,
                          codes: mx.array) -> mx.array:
    """Logits of every code-predictor head for one frame given its codes (parity tests, benchmarks).

    Args:
        code_predictor: a loaded `models.code_predictor.CodePredictor`.
        past_hidden: `[B, H]` talker post-norm hidden state of the step that sampled c0.
        c0_embed: `[B, H]` talker codec embedding of c0.
        codes: `[B, G-1]` integer codes c1..c15 (only c1..c14 are fed back).

    Returns:
        `[B, G-1, vocab]` logits; row j predicts c_{j+1}.
    """
    embeds = [past_hidden, c0_embed]
    embeds += [emb(codes[:, j]) for j, emb in enumerate(code_predictor.model.codec_embedding[:-1])]
    h = code_predictor(mx.stack(embeds, axis=1))
    return mx.stack([head(h[:, j + 1]) for j, head in enumerate(code_predictor.lm_head)], axis=1)


# --------------------------------------------------------------------------- writer


def _save(path: Path, weights: Iterator[tuple[str, np.ndarray]], dtype: mx.Dtype) -> None:
    arrays = {k: mx.array(v).astype(dtype) for k, v in weights}
    mx.save_safetensors(str(path), arrays, metadata={"format": "pt"})


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_speech_tokenizer(path: str | Path, size: str = "tiny-0.6b", seed: int = 0) -> Path:
    """A standalone speech tokenizer folder (like Qwen/Qwen3-TTS-Tokenizer-12Hz), fp32."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = make_speech_tokenizer_config(size)
    _write_json(path / "config.json", config)
    _write_json(path / "preprocessor_config.json", CODEC_PREPROCESSOR_CONFIG)
    layout = codec_encoder_layout(config) + codec_decoder_layout(config)
    _save(path / "model.safetensors", random_weights(layout, seed + 1), mx.float32)
    return path


def write_checkpoint(
    path: str | Path,
    size: str = "tiny-0.6b",
    variant: str = "custom_voice",
    seed: int = 0,
    eos_scale: float = 1.0,
    dtype: str = "bfloat16",
) -> Path:
    """Write a random-weight checkpoint folder in the released Hugging Face layout.

    Args:
        path: Output folder (created).
        size: One of ``TOPOLOGIES``: ``tiny-0.6b``, ``tiny-1.7b``, ``tiny-q`` (tests), ``0.6b``,
            ``1.7b``.
        variant: ``custom_voice``, ``voice_design`` or ``base``.
        seed: Same seed, same bytes.
        eos_scale: Multiplies the codec head's EOS row, so generation can stop naturally.
        dtype: Storage dtype of ``model.safetensors`` (the released files are bfloat16; the
            speech tokenizer is always float32, as released).

    Returns:
        The folder path.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = make_config(size, variant)
    _write_json(path / "config.json", config)
    _write_json(path / "generation_config.json", GENERATION_CONFIG)
    _write_json(path / "preprocessor_config.json", PREPROCESSOR_CONFIG)
    write_text_tokenizer(path)
    layout = talker_layout(config)
    if variant == "base":
        layout += speaker_layout(config)
    _save(path / "model.safetensors", random_weights(layout, seed, eos_scale), getattr(mx, dtype))
    write_speech_tokenizer(path / "speech_tokenizer", size, seed)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--size", default="tiny-0.6b", choices=sorted(TOPOLOGIES))
    parser.add_argument("--variant", default="custom_voice", choices=VARIANTS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eos-scale", type=float, default=1.0)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    args = parser.parse_args()
    write_checkpoint(args.path, args.size, args.variant, args.seed, args.eos_scale, args.dtype)
    print(f"[INFO] wrote {args.size} {args.variant} checkpoint to {args.path}")


if __name__ == "__main__":
    main()
