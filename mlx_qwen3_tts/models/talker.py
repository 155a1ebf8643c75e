"""The talker: a 28-layer Qwen3 decoder over summed text + codec embeddings (dossier §2.1-§2.4).

It predicts codebook 0 of each 80 ms frame; its post-norm hidden state conditions the code
predictor, which fills in codebooks 1..15.
"""

from dataclasses import dataclass, field
from typing import Any, ClassVar

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models.cache import KVCache

from ..errors import ModelLoadError
from .base import FIX, MAX_VOCAB, MAX_WIDTH, Qwen3Stack, Qwen3StackConfig, Range, check_id
from .code_predictor import CodePredictor, CodePredictorConfig


@dataclass
class TalkerConfig(Qwen3StackConfig):
    text_vocab_size: int
    text_hidden_size: int
    codec_pad_id: int
    codec_bos_id: int
    codec_eos_token_id: int
    codec_think_id: int
    codec_nothink_id: int
    codec_think_bos_id: int
    codec_think_eos_id: int
    codec_language_id: dict[str, int]
    code_predictor_config: CodePredictorConfig
    spk_id: dict[str, int] = field(default_factory=dict)
    spk_is_dialect: dict[str, Any] = field(default_factory=dict)

    BOUNDS: ClassVar[dict[str, Range]] = {
        **Qwen3StackConfig.BOUNDS,
        "text_vocab_size": Range(1, MAX_VOCAB),
        "text_hidden_size": Range(1, MAX_WIDTH),
    }
    # Rows of the codec embedding (`vocab_size` of them) that the prompt builders look up.
    CODEC_IDS: ClassVar[tuple[str, ...]] = (
        "codec_pad_id", "codec_bos_id", "codec_eos_token_id", "codec_think_id", "codec_nothink_id",
        "codec_think_bos_id", "codec_think_eos_id",
    )

    @classmethod
    def _nested(cls, kwargs, source):
        cp_source = f"{source} (code_predictor_config)"
        cp = CodePredictorConfig.from_dict(kwargs["code_predictor_config"], cp_source)
        cp.check(cp_source)
        return {**kwargs, "code_predictor_config": cp}

    def _check(self, source: str) -> None:
        super()._check(source)
        # An id past the embedding would index out of bounds at the first request, not at load.
        ids = {name: getattr(self, name) for name in self.CODEC_IDS}
        for table in ("codec_language_id", "spk_id"):
            ids.update({f"{table}[{k!r}]": v for k, v in getattr(self, table).items()})
        for name, value in ids.items():
            check_id(value, self.vocab_size, source, name, "codec vocabulary (`vocab_size`)")
        for speaker, dialect in self.spk_is_dialect.items():
            if dialect not in (False, None) and not (
                isinstance(dialect, str) and dialect in self.codec_language_id
            ):
                raise ModelLoadError(
                    f"{source}: `spk_is_dialect[{speaker!r}]` must be false or a language of "
                    f"`codec_language_id`, got {dialect!r:.40}; {FIX}."
                )


class ResizeMLP(nn.Module):
    """`text_projection`: text width -> talker width, fc2(silu(fc1(x)))."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.linear_fc1 = nn.Linear(in_dim, hidden_dim)
        self.linear_fc2 = nn.Linear(hidden_dim, out_dim)

    def __call__(self, x: mx.array) -> mx.array:
        return self.linear_fc2(nn.silu(self.linear_fc1(x)))


class TalkerModel(Qwen3Stack):
    """`talker.model`: the 28-layer stack plus the codec and text embedding tables."""

    def __init__(self, config: TalkerConfig):
        super().__init__(config)
        self.codec_embedding = nn.Embedding(config.vocab_size, config.hidden_size)
        self.text_embedding = nn.Embedding(config.text_vocab_size, config.text_hidden_size)


class Talker(nn.Module):
    def __init__(self, config: TalkerConfig):
        super().__init__()
        self.config = config
        self.model = TalkerModel(config)
        self.text_projection = ResizeMLP(
            config.text_hidden_size, config.text_hidden_size, config.hidden_size
        )
        self.codec_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.code_predictor = CodePredictor(config.code_predictor_config, config.hidden_size)

    @property
    def layers(self):
        return self.model.layers

    def make_cache(self) -> list[KVCache]:
        return [KVCache() for _ in self.model.layers]

    def embed_text(self, ids: mx.array) -> mx.array:
        """T(ids): projected text embeddings, `[..., H]`."""
        return self.text_projection(self.model.text_embedding(ids))

    def embed_codec(self, ids: mx.array) -> mx.array:
        """C(ids): talker codec embeddings, `[..., H]`."""
        return self.model.codec_embedding(ids)

    def embed_frame(self, codes: mx.array) -> mx.array:
        """Sum of the 16 code embeddings of frames `[..., G]` -> `[..., H]` (dossier §2.4)."""
        h = self.embed_codec(codes[..., 0])
        for g, emb in enumerate(self.code_predictor.model.codec_embedding):
            h = h + emb(codes[..., g + 1])
        return h

    def __call__(
        self, inputs_embeds: mx.array, cache: list[Any] | None = None, mask: Any = None
    ) -> tuple[mx.array, mx.array]:
        """Returns `(logits [B, L, Vc], hidden [B, L, H])`, hidden being post-final-norm."""
        h = self.model(inputs_embeds, cache, mask)
        return self.codec_head(h), h

    def decode(self, inputs_embeds: mx.array, cache: list[Any]) -> tuple[mx.array, mx.array]:
        """`__call__` for one new position per row, its blocks compiled (`Qwen3Stack.decode`)."""
        h = self.model.decode(inputs_embeds, cache)
        return self.codec_head(h), h
