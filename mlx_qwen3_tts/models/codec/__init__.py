"""The 12 Hz speech tokenizer (codec) modules: encoder, decoder, quantizers (dossier §2.6)."""

from .decoder import Decoder, DecoderConfig
from .encoder import Encoder, EncoderConfig
from .model import SpeechTokenizerConfig, SpeechTokenizerModel

__all__ = [
    "Decoder",
    "DecoderConfig",
    "Encoder",
    "EncoderConfig",
    "SpeechTokenizerConfig",
    "SpeechTokenizerModel",
]
