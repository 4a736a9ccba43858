"""Streaming encode / decode of causal audio codecs with explicit state objects.

    enc, dec = tok.stream_encoder(), tok.stream_decoder()
    for chunk in chunks:                 # (B, C, any number of samples)
        codes = enc.push(chunk)          # (B, t[, Q]): the frames completed so far
        wav = dec.push(codes)            # (B, C, t * hop): the samples ready
    codes = enc.flush()                  # the last, zero-padded partial frame (if any)

How: every causal layer carries its left context between calls (``mmtok.layers.audio
.streaming``): a conv keeps its last ``(k - 1) * dilation + 1 - stride`` inputs, a
transposed conv its last ``ceil(k / stride) - 1`` input frames, the causal iSTFT head the
overlap-add tail. The stream starts with the zeros the offline padding adds, so the
concatenated streamed codes equal ``tok.encode`` of the whole signal (right-padded to a
whole frame, as ``encode`` does) and the streamed waveform equals ``tok.decode`` of the
whole code sequence (up to float summation order, ~1e-6).

Algorithmic latency (``tok.latency``): one frame, ``hop_length`` samples. A frame's codes
exist once its hop has been heard (the encoder looks at no future input), and the decoder
turns frame ``j`` into samples ``[j * hop, (j + 1) * hop)`` with no future codes (causal
transposed convs, causal iSTFT head), so ``StreamDecoder.flush`` has nothing left to emit.
A non-causal model looks ahead (``tok.lookahead`` samples) and does not stream: its
``stream_encoder()`` / ``stream_decoder()`` raise ``ValueError`` (use ``encode_long`` /
``decode_long`` for long files instead).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmtok.audio.common import check_audio
from mmtok.layers.audio import streaming, streaming_layers

if TYPE_CHECKING:
    from mmtok.audio.common import AudioTokenizer


def _require_causal(tok: "AudioTokenizer", what: str) -> None:
    if not tok.causal:
        name = tok.variant_name or type(tok).__name__
        raise ValueError(
            f"{name} is not causal: its layers look {tok.lookahead} samples ahead, so a {what} could not match the "
            f"offline result; build it with causal=True (e.g. mmtok.create_tokenizer({name!r}, causal=True)) "
            "or use tok.encode_long / tok.decode_long for long files"
        )


class _Stream:
    def __init__(self, tok: "AudioTokenizer") -> None:
        self.tok = tok
        self.state: dict[nn.Module, Tensor] = {}
        self.batch_size: int | None = None
        self.frames = 0  # frames emitted so far
        self._layers: dict[nn.Module, list] = {}  # stateful layers of each streamed stack

    def _run(self, module: nn.Module, x: Tensor) -> Tensor:
        """``module(x)`` with this stream's carried state."""
        layers = self._layers.get(module)
        if layers is None:
            layers = self._layers[module] = streaming_layers(module)
        with streaming(module, self.state, layers):
            return module(x)

    def _check_batch(self, b: int) -> None:
        if self.batch_size is None:
            self.batch_size = b
        elif b != self.batch_size:
            raise ValueError(f"this stream carries state for a batch of {self.batch_size}, got a chunk of batch {b}")

    def reset(self) -> None:
        """Forget the past: the next push starts a new stream."""
        self.state.clear()
        self._layers.clear()
        self.batch_size = None
        self.frames = 0


class StreamEncoder(_Stream):
    """Chunk-by-chunk encoder of a causal codec; ``push`` / ``flush`` return codes
    ``(B, t)`` or ``(B, t, n_q)`` for the frames completed."""

    def __init__(self, tok: "AudioTokenizer", n_q: int | None = None) -> None:
        _require_causal(tok, "streamed encoding")
        super().__init__(tok)
        self.n_q = tok._levels(n_q)
        self.pending: Tensor | None = None  # (B, C, r < hop) samples of an unfinished frame

    def reset(self) -> None:
        super().reset()
        self.pending = None

    def _empty(self, like: Tensor) -> Tensor:
        b = like.shape[0]
        shape = (b, 0, self.n_q) if self.tok.is_residual else (b, 0)
        return torch.zeros(shape, dtype=torch.long, device=like.device)

    @torch.no_grad()
    def push(self, chunk: Tensor) -> Tensor:
        """chunk: (B, C, n) float32 in [-1, 1], any n >= 1 -> codes of the frames it completes."""
        check_audio(chunk, self.tok.channels, "chunk")
        self._check_batch(chunk.shape[0])
        x = chunk if self.pending is None else torch.cat([self.pending, chunk], dim=-1)
        hop = self.tok.hop_length
        n = x.shape[-1] // hop * hop
        self.pending = x[..., n:] if n < x.shape[-1] else None
        if n == 0:
            return self._empty(x)
        z = self._run(self.tok.encoder, x[..., :n])
        codes = self.tok.quantize_latent(z, self.n_q)
        self.frames += codes.shape[1]
        return codes

    @torch.no_grad()
    def flush(self) -> Tensor:
        """Codes of the last partial frame, zero-padded to a whole hop (as ``encode`` pads);
        ``(B, 0[, Q])`` when nothing is pending. The stream can go on afterwards."""
        if self.pending is None:
            b = self.batch_size or 1
            return self._empty(torch.zeros(b, 1, device=self.tok.device))
        last, self.pending = self.pending, None
        return self.push(F.pad(last, (0, self.tok.hop_length - last.shape[-1])))


class StreamDecoder(_Stream):
    """Chunk-by-chunk decoder of a causal codec: ``push(codes (B, t[, Q]))`` -> waveform
    ``(B, C, t * hop)`` in [-1, 1] (each frame's samples are final when it is pushed)."""

    def __init__(self, tok: "AudioTokenizer") -> None:
        _require_causal(tok, "streamed decoding")
        super().__init__(tok)

    @torch.no_grad()
    def push(self, codes: Tensor) -> Tensor:
        """codes: (B, t) / (B, t, Q) of any integer dtype, t >= 0 -> (B, C, t * hop)."""
        if codes.ndim >= 2 and codes.shape[1] == 0:
            return torch.zeros(codes.shape[0], self.tok.channels, 0, device=self.tok.device)
        codes = self.tok.check_codes(codes)
        self._check_batch(codes.shape[0])
        wav = self._run(self.tok.decoder, self.tok.dequantize(codes))
        self.frames += codes.shape[1]
        return wav.clamp(-1, 1)

    @torch.no_grad()
    def flush(self) -> Tensor:
        """Samples still held back: none for a causal codec (``(B, C, 0)``); kept so encoder
        and decoder streams read alike."""
        return torch.zeros(self.batch_size or 1, self.tok.channels, 0, device=self.tok.device)


__all__ = ["StreamEncoder", "StreamDecoder"]
