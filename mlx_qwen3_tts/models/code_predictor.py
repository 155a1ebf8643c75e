"""The code predictor ("sub-talker"): codebooks 1..15 of a frame from the talker's hidden state.

Dossier §2.3. Per frame it sees at most 16 positions: the talker's post-norm hidden state, the
talker's embedding of c0, then its own embeddings of c1..c14; head j at position j+1 predicts c_{j+1}.
"""

from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models.base import create_attention_mask
from mlx_lm.models.cache import KVCache
from mlx_lm.models.qwen3 import TransformerBlock

from .base import Qwen3StackConfig, qwen3_block_args


class CodePredictorConfig(Qwen3StackConfig):
    """`talker_config.code_predictor_config`: 5 blocks over 16 positions per frame."""


class CodePredictorModel(nn.Module):
    def __init__(self, config: CodePredictorConfig, talker_hidden_size: int):
        super().__init__()
        args = qwen3_block_args(config)
        # Embeddings live in the talker's width; the talker sums them into its frame input.
        self.codec_embedding = [
            nn.Embedding(config.vocab_size, talker_hidden_size)
            for _ in range(config.num_code_groups - 1)
        ]
        self.layers = [TransformerBlock(args) for _ in range(config.num_hidden_layers)]
        self.norm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def __call__(self, inputs_embeds: mx.array, cache: list[Any] | None = None) -> mx.array:
        h = inputs_embeds
        if cache is None:
            cache = [None] * len(self.layers)
        mask = create_attention_mask(h, cache[0])
        for layer, c in zip(self.layers, cache):
            h = layer(h, mask, c)
        return self.norm(h)


class CodePredictor(nn.Module):
    def __init__(self, config: CodePredictorConfig, talker_hidden_size: int):
        super().__init__()
        self.config = config
        if config.hidden_size != talker_hidden_size:
            # Only the 1.7B models have this; in 0.6B it is an identity with no weights.
            self.small_to_mtp_projection = nn.Linear(talker_hidden_size, config.hidden_size)
        self.model = CodePredictorModel(config, talker_hidden_size)
        self.lm_head = [
            nn.Linear(config.hidden_size, config.vocab_size, bias=False)
            for _ in range(config.num_code_groups - 1)
        ]

    @property
    def layers(self):
        return self.model.layers

    def make_cache(self) -> list[KVCache]:
        return [KVCache() for _ in self.model.layers]

    def project(self, x: mx.array) -> mx.array:
        if "small_to_mtp_projection" in self:
            return self.small_to_mtp_projection(x)
        return x

    def __call__(self, inputs_embeds: mx.array, cache: list[Any] | None = None) -> mx.array:
        """Post-norm hidden states `[B, L, Hc]` for talker-width inputs `[B, L, H]`."""
        return self.model(self.project(inputs_embeds), cache)

    def teacher_forced_logits(
        self, past_hidden: mx.array, c0_embed: mx.array, codes: mx.array
    ) -> mx.array:
        """Logits of every head for one frame given its codes (for parity tests).

        Args:
            past_hidden: `[B, H]` talker post-norm hidden state of the step that sampled c0.
            c0_embed: `[B, H]` talker codec embedding of c0.
            codes: `[B, G-1]` integer codes c1..c15 (only c1..c14 are fed back).

        Returns:
            `[B, G-1, vocab]` logits; row j predicts c_{j+1}.
        """
        embeds = [past_hidden, c0_embed]
        embeds += [emb(codes[:, j]) for j, emb in enumerate(self.model.codec_embedding[:-1])]
        h = self(mx.stack(embeds, axis=1))
        return mx.stack([head(h[:, j + 1]) for j, head in enumerate(self.lm_head)], axis=1)

