"""The code predictor ("sub-talker"): codebooks 1..15 of a frame from the talker's hidden state.

Dossier §2.3. Per frame it sees at most 16 positions: the talker's post-norm hidden state, the
talker's embedding of c0, then its own embeddings of c1..c14; head j at position j+1 predicts c_{j+1}.
"""

from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models.cache import KVCache

from .base import Qwen3Stack, Qwen3StackConfig


class CodePredictorConfig(Qwen3StackConfig):
    """`talker_config.code_predictor_config`: 5 blocks over 16 positions per frame."""


class CodePredictorModel(Qwen3Stack):
    """`talker.code_predictor.model`: the 5-layer stack plus the embeddings of codebooks 1..15."""

    def __init__(self, config: CodePredictorConfig, talker_hidden_size: int):
        super().__init__(config)
        # Embeddings live in the talker's width; the talker sums them into its frame input.
        self.codec_embedding = [
            nn.Embedding(config.vocab_size, talker_hidden_size)
            for _ in range(config.num_code_groups - 1)
        ]


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

    def decode(self, inputs_embeds: mx.array, cache: list[Any]) -> mx.array:
        """`__call__` for a frame's cached steps, its blocks as `Qwen3Stack.decode` runs them."""
        return self.model.decode(self.project(inputs_embeds), cache)
