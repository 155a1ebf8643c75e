"""Residual vector quantizers of the 12 Hz codec: dequantization (decoder) and nearest-centroid
encoding (Mimi encoder), dossier §2.6.1 item 1 and §2.6.2 item 4.

Each codebook stores the derived EMA table `embedding = embedding_sum / clamp(cluster_usage, 1e-5)`,
folded once by `SpeechTokenizerModel.sanitize`.
"""

import mlx.core as mx
import mlx.nn as nn

from .layers import apply_conv

POINTWISE = "matmul"  # a 1x1 convolution is one matrix product, on any device


class EuclideanCodebook(nn.Module):
    def __init__(self, codebook_size: int, dim: int):
        super().__init__()
        self.embedding = mx.zeros((codebook_size, dim))

    def decode(self, codes: mx.array) -> mx.array:
        return self.embedding[codes]

    def encode(self, x: mx.array) -> mx.array:
        """Index of the nearest centroid of each vector `[..., D] -> [...]`, in float32."""
        x = x.astype(mx.float32)
        e = self.embedding.astype(mx.float32)
        # torch.cdist's matmul form |x|^2 - 2 x.e + |e|^2, so near-ties round alike (dossier §5.3).
        d = mx.sum(x * x, axis=-1, keepdims=True) - 2.0 * (x @ e.T) + mx.sum(e * e, axis=-1)
        return mx.argmin(d, axis=-1)


class VectorQuantization(nn.Module):
    """One codebook level; keeps the checkpoint's `.codebook` key level."""

    def __init__(self, codebook_size: int, dim: int):
        super().__init__()
        self.codebook = EuclideanCodebook(codebook_size, dim)


class ResidualVQ(nn.Module):
    """`vq` of the decoder's quantizer groups: the sum of the looked-up vectors."""

    def __init__(self, num_quantizers: int, codebook_size: int, dim: int):
        super().__init__()
        self.layers = [VectorQuantization(codebook_size, dim) for _ in range(num_quantizers)]

    def decode(self, codes: mx.array) -> mx.array:
        """`[B, T, n]` codes -> `[B, T, dim]`."""
        out = self.layers[0].codebook.decode(codes[..., 0])
        for k, layer in enumerate(self.layers[1:], start=1):
            out = out + layer.codebook.decode(codes[..., k])
        return out


class DecoderRVQ(nn.Module):
    """`rvq_first` / `rvq_rest`: residual dequantization then `output_proj` (1x1 conv, no bias).

    The group's `input_proj` only serves encoding in the original Moshi code; sanitize drops it.
    """

    def __init__(self, num_quantizers: int, codebook_size: int, dim: int, output_dim: int):
        super().__init__()
        self.vq = ResidualVQ(num_quantizers, codebook_size, dim)
        self.output_proj = nn.Conv1d(dim, output_dim, 1, bias=False)

    def decode(self, codes: mx.array) -> mx.array:
        return apply_conv(self.output_proj, self.vq.decode(codes), POINTWISE)


class SplitResidualVectorQuantizer(nn.Module):
    """Decoder dequantizer: codebook 0 through `rvq_first`, 1.. through `rvq_rest`, summed."""

    def __init__(self, num_quantizers: int, codebook_size: int, codebook_dim: int):
        super().__init__()
        dim = codebook_dim // 2
        self.rvq_first = DecoderRVQ(1, codebook_size, dim, codebook_dim)
        self.rvq_rest = DecoderRVQ(num_quantizers - 1, codebook_size, dim, codebook_dim)

    def decode(self, codes: mx.array) -> mx.array:
        """`[B, T, 16]` codes -> `[B, T, codebook_dim]`."""
        return self.rvq_first.decode(codes[..., :1]) + self.rvq_rest.decode(codes[..., 1:])


class EncoderRVQ(nn.Module):
    """Mimi's `MimiResidualVectorQuantizer` (encode half): `input_proj` then residual VQ."""

    def __init__(self, num_quantizers: int, codebook_size: int, dim: int, hidden_size: int):
        super().__init__()
        if dim != hidden_size:
            self.input_proj = nn.Conv1d(hidden_size, dim, 1, bias=False)
        self.layers = [VectorQuantization(codebook_size, dim) for _ in range(num_quantizers)]

    def encode(self, x: mx.array) -> mx.array:
        """`[B, T, hidden]` -> codes `[B, T, n]`."""
        residual = apply_conv(self.input_proj, x, POINTWISE) if "input_proj" in self else x
        codes = []
        for layer in self.layers:
            c = layer.codebook.encode(residual)
            residual = residual - layer.codebook.decode(c)
            codes.append(c)
        return mx.stack(codes, axis=-1)


class EncoderSplitRVQ(nn.Module):
    """Mimi's split quantizer, keeping only the acoustic codebooks the tokenizer returns.

    Both groups start from the same embeddings: the acoustic RVQ does not quantize the semantic
    residual (dossier §2.6.2 item 4).
    """

    def __init__(self, num_semantic: int, num_acoustic: int, codebook_size: int, dim: int,
                 hidden_size: int):
        super().__init__()
        self.semantic_residual_vector_quantizer = EncoderRVQ(
            num_semantic, codebook_size, dim, hidden_size
        )
        self.acoustic_residual_vector_quantizer = EncoderRVQ(
            num_acoustic, codebook_size, dim, hidden_size
        )

    def encode(self, x: mx.array) -> mx.array:
        semantic = self.semantic_residual_vector_quantizer.encode(x)
        acoustic = self.acoustic_residual_vector_quantizer.encode(x)
        return mx.concatenate([semantic, acoustic], axis=-1)
