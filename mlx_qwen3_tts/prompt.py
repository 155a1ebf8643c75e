"""Prefill embeddings per mode: one small builder each, nothing else (dossier §3.1-§3.4).

Every prompt is `role block + control block + mode tail`, optionally preceded by an instruction.
A builder returns the prefill sequence and the trailing text embeddings that the frame loop adds
to frames 0, 1, ... (then `tts_pad` forever). `T(x)` is the projected text embedding, `C(x)` the
talker's codec embedding.
"""

from dataclasses import dataclass
from typing import Protocol

import mlx.core as mx

from . import tokens
from .models.qwen3_tts import Model
from .text_tokenizer import TextTokenizer

ROLE = [tokens.IM_START, tokens.ASSISTANT, tokens.NEWLINE]


@dataclass
class Prompt:
    """What the frame loop needs for one utterance.

    Attributes:
        prefill: `[L, H]` prompt embeddings.
        trailing: `[T, H]` text embeddings added to frames 0..T-1 (`tts_pad` after that).
        ref_codes: `[F, 16]` reference codes of an in-context clone, decoded with the output.
        text_tokens: number of tokens of the text to speak (bounds runaway generation).
        prefix_len: leading prefill positions that do not depend on the text to speak (the
            voice part); their KV cache can be computed once per voice and reused.
    """

    prefill: mx.array
    trailing: mx.array
    ref_codes: mx.array | None = None
    text_tokens: int = 0
    prefix_len: int = 0


class TextSource(Protocol):
    """The text side of the frames' feedback: what the frame loop adds to frame `step`'s codes.

    A prompt's trailing text (`FixedText`), or text that is still arriving (`text_stream.py`).
    """

    @property
    def tokens(self) -> int:
        """Tokens of the text to speak so far (the runaway guard's frame cap grows with them)."""
        ...

    def embedding(self, step: int) -> mx.array:
        """`[1, H]` text embedding added to frame `step`'s feedback."""
        ...

    def ready(self, step: int) -> bool:
        """Whether `embedding(step)` is known (text streamed in may not have arrived yet)."""
        ...


@dataclass
class FixedText:
    """A prompt's trailing text embeddings, then `pad` (`tts_pad`) once they run out."""

    trailing: mx.array
    pad: mx.array
    tokens: int

    def embedding(self, step: int) -> mx.array:
        return self.trailing[step : step + 1] if step < self.trailing.shape[0] else self.pad

    def ready(self, step: int) -> bool:
        return True


class PromptEmbedder:
    """The talker's embedding functions plus the special embeddings, computed once per load."""

    def __init__(self, model: Model, tokenizer: TextTokenizer):
        self.model = model
        self.tokenizer = tokenizer
        self.config = model.config.talker_config
        talker = model.talker
        cfg = model.config
        special = talker.embed_text(
            mx.array([cfg.tts_bos_token_id, cfg.tts_eos_token_id, cfg.tts_pad_token_id])
        )
        self.tts_bos, self.tts_eos, self.tts_pad = special[0:1], special[1:2], special[2:3]
        mx.eval(self.tts_bos, self.tts_eos, self.tts_pad)

    def text(self, ids: list[int]) -> mx.array:
        return self.model.talker.embed_text(mx.array(ids, mx.int32))

    def codec(self, ids: list[int]) -> mx.array:
        return self.model.talker.embed_codec(mx.array(ids, mx.int32))

    # User text is always literal text: only this builder emits control ids. The reference
    # tokenizes a chat template holding the text, so control-token strings typed into the text
    # became control tokens (prompt injection); every other text gets the reference's ids.

    def target_ids(self, text: str) -> list[int]:
        """Ids of the spoken text: what the reference slices out of its assistant template
        (`ids[3:-5]`, dossier §3.1). The template's special tokens end the text's BPE segment, so
        the text alone gives the same ids, and stays right where the slice breaks (a text that
        starts with newlines, which merge with the role's, dossier §6.13)."""
        return self.tokenizer.encode_literal(text)

    def ref_ids(self, ref_text: str) -> list[int]:
        """Ids of an in-context clone's transcript (`ref_ids[3:-2]` of its template)."""
        return self.tokenizer.encode_literal(ref_text)

    def instruct_ids(self, instruct: str) -> list[int]:
        """`<|im_start|>user\\n{instruct}<|im_end|>\\n` as the reference tokenizes it: `user\\n`
        and the instruction are one BPE segment between the special tokens."""
        return [tokens.IM_START, *self.tokenizer.encode_literal(f"user\n{instruct}"), tokens.IM_END,
                tokens.NEWLINE]


def control_block(
    e: PromptEmbedder, language_id: int | None, speaker: mx.array | None
) -> tuple[mx.array, mx.array]:
    """Role + control positions, and `C(codec_bos)` for the position after them (§3.3).

    Codec side: think/nothink tags (with the language id when one is given), the speaker slot,
    `codec_pad`; text side: `tts_pad` ... `tts_bos`.
    """
    cfg = e.config
    if language_id is None:
        tags = [cfg.codec_nothink_id, cfg.codec_think_bos_id, cfg.codec_think_eos_id]
    else:
        tags = [cfg.codec_think_id, cfg.codec_think_bos_id, language_id, cfg.codec_think_eos_id]
    codec = [e.codec(tags)]
    if speaker is not None:
        codec.append(speaker.reshape(1, -1).astype(codec[0].dtype))
    codec.append(e.codec([cfg.codec_pad_id]))
    codec = mx.concatenate(codec)
    text = mx.concatenate([mx.repeat(e.tts_pad, codec.shape[0] - 1, axis=0), e.tts_bos])
    return mx.concatenate([e.text(ROLE), text + codec]), e.codec([cfg.codec_bos_id])


def text_prompt(
    e: PromptEmbedder,
    text_ids: list[int],
    language_id: int | None,
    speaker: mx.array | None,
    instruct_ids: list[int] | None,
    non_streaming: bool,
) -> Prompt:
    """CustomVoice, VoiceDesign and x-vector clone: layouts A and B of §3.4.

    Streaming-text (A): the first text token rides on `codec_bos`; the rest arrive one per frame.
    Non-streaming (B): all text, then `tts_eos`, over `codec_pad`, then `tts_pad + codec_bos`.
    """
    head, codec_bos = control_block(e, language_id, speaker)
    parts = [e.text(instruct_ids)] if instruct_ids else []
    parts.append(head)
    if non_streaming:
        text = mx.concatenate([e.text(text_ids), e.tts_eos])
        parts += [text + e.codec([e.config.codec_pad_id]), e.tts_pad + codec_bos]
        trailing = e.tts_pad
    else:
        parts.append(e.text(text_ids[:1]) + codec_bos)
        rest = [e.text(text_ids[1:])] if len(text_ids) > 1 else []
        trailing = mx.concatenate(rest + [e.tts_eos])
    prefix_len = sum(p.shape[0] for p in parts[: len(parts) - (2 if non_streaming else 1)])
    return Prompt(mx.concatenate(parts), trailing, text_tokens=len(text_ids), prefix_len=prefix_len)


def icl_prompt(
    e: PromptEmbedder,
    text_ids: list[int],
    ref_ids: list[int],
    ref_codes: mx.array,
    language_id: int | None,
    speaker: mx.array,
    non_streaming: bool,
) -> Prompt:
    """In-context voice clone (layout C of §3.4): reference transcript + target text against
    `codec_bos` + the reference frames."""
    head, codec_bos = control_block(e, language_id, speaker)
    text = mx.concatenate([e.text(ref_ids + text_ids), e.tts_eos])
    codec = mx.concatenate([codec_bos, e.model.talker.embed_frame(ref_codes)])
    if non_streaming:
        tail = mx.concatenate([text + e.codec([e.config.codec_pad_id]), codec + e.tts_pad])
        trailing = e.tts_pad
    elif text.shape[0] > codec.shape[0]:
        tail, trailing = text[: codec.shape[0]] + codec, text[codec.shape[0]:]
    else:
        pad = mx.repeat(e.tts_pad, codec.shape[0] - text.shape[0], axis=0)
        tail, trailing = mx.concatenate([text, pad]) + codec, e.tts_pad
    # Tail positions pairing the reference transcript with codec frames are voice-only too.
    shared = len(ref_ids) if non_streaming else min(len(ref_ids), codec.shape[0])
    prefill = mx.concatenate([head, tail])
    # A transcript as long as the reference fills the whole streaming-layout prompt; the cached
    # prefix must still leave a position to prefill, whose logits give the first token.
    prefix_len = min(head.shape[0] + shared, prefill.shape[0] - 1)
    return Prompt(prefill, trailing, ref_codes, len(text_ids), prefix_len)
