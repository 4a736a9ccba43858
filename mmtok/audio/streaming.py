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
Compiled streaming (opt-in): ``tok.stream_encoder(compile=True)`` / ``stream_decoder(compile=True)``
run each push's encoder stack / decoder stack (+ clamp) through ``torch.compile(dynamic=False)``
(inductor; the quantizer lookups stay eager), so the small pointwise ops fuse and the per-layer
Python of the eager path disappears (each conv is still its own library call per chunk). The
carried state stays the same dict of tensors, read and written inside the compiled graph: the
first push runs eagerly (it creates the state, e.g. the zeros of the stream's start); the
first later push fixes the chunk shape the graph is compiled for (one compile per tokenizer,
direction and shape, shared by its streams: 20-110 s on a loaded 2-core CPU, paid on that
push); a push of any other length
(e.g. the last, shorter chunk, or ``flush``) runs eagerly, with the same state, so
results do not depend on which path ran. Codes equal the eager stream's; the waveform agrees
to float summation order (~1e-7). Checks (``check_audio``, ``check_codes``) stay eager.
Dynamo's recompile limit (``torch._dynamo.config.recompile_limit``) bounds the cache: past
it, dynamo itself falls back to eager.

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
from mmtok.layers.audio import refresh_weights, streaming, streaming_layers

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


def encoder_step(tok: "AudioTokenizer", x: Tensor) -> Tensor:
    """Waveform (B, C, n * hop) -> latent frames (B, D, n): the encoder stack."""
    return tok.encoder(x)


def decoder_step(tok: "AudioTokenizer", z: Tensor) -> Tensor:
    """Latent frames -> waveform in [-1, 1]: the decoder stack and the clamp."""
    return tok.decoder(z).clamp(-1, 1)


_STEPS = {"encoder": encoder_step, "decoder": decoder_step}
_COMPILED: dict[str, object] = {}


def compiled(step: str):
    """``torch.compile(dynamic=False)`` of ``encoder_step`` / ``decoder_step`` (``step``:
    "encoder" / "decoder"), made once per process; dynamo keeps one graph per tokenizer,
    shape and mode (streamed / offline). The quantizer lookups stay eager (their range checks
    and the codebook search's branches would break the graph)."""
    fn = _COMPILED.get(step)
    if fn is None:
        fn = _COMPILED[step] = torch.compile(_STEPS[step], dynamic=False)
    return fn


class _Stream:
    def __init__(self, tok: "AudioTokenizer", compile: bool = False) -> None:
        self.tok = tok
        self.compile = bool(compile)
        self.state: dict[nn.Module, Tensor] = {}
        self.batch_size: int | None = None
        self.frames = 0  # frames emitted so far
        self._layers: dict[nn.Module, list] = {}  # stateful layers of each streamed stack
        self._convs: dict[nn.Module, list] = {}  # convs of each stack (kept weights refreshed before compiled calls)
        self._shape: tuple[int, ...] | None = None  # the chunk shape the compiled step runs at
        self.compiled_pushes = 0  # pushes that ran the compiled step

    def _run(self, module: nn.Module, step, x: Tensor, *args) -> Tensor:
        """``step(tok, x, *args)`` (which runs ``module``) with this stream's carried state:
        compiled when asked, the state exists (not the first push) and ``x`` has the
        compiled chunk shape; else eagerly."""
        layers = self._layers.get(module)
        if layers is None:
            layers = self._layers[module] = streaming_layers(module)
        fn = step
        if self.compile and self.state:
            if self._shape is None:
                self._shape = tuple(x.shape)
            if tuple(x.shape) == self._shape:
                convs = self._convs.get(module)
                if convs is None:
                    convs = self._convs[module] = [m.conv for m in module.modules() if isinstance(
                        getattr(m, "conv", None), nn.Module) and hasattr(m.conv, "weight")]
                refresh_weights(convs)
                fn = compiled("encoder" if step is encoder_step else "decoder")
                self.compiled_pushes += 1
        with streaming(module, self.state, layers):
            return fn(self.tok, x, *args)

    def _check_batch(self, b: int) -> None:
        if self.batch_size is None:
            self.batch_size = b
        elif b != self.batch_size:
            raise ValueError(f"this stream carries state for a batch of {self.batch_size}, got a chunk of batch {b}")

    def reset(self) -> None:
        """Forget the past: the next push starts a new stream."""
        self.state.clear()
        self._layers.clear()
        self._convs.clear()
        self._shape = None
        self.batch_size = None
        self.frames = 0


class StreamEncoder(_Stream):
    """Chunk-by-chunk encoder of a causal codec; ``push`` / ``flush`` return codes
    ``(B, t)`` or ``(B, t, n_q)`` for the frames completed."""

    def __init__(self, tok: "AudioTokenizer", n_q: int | None = None, compile: bool = False) -> None:
        _require_causal(tok, "streamed encoding")
        super().__init__(tok, compile)
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
        z = self._run(self.tok.encoder, encoder_step, x[..., :n])
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

    def __init__(self, tok: "AudioTokenizer", compile: bool = False) -> None:
        _require_causal(tok, "streamed decoding")
        super().__init__(tok, compile)

    @torch.no_grad()
    def push(self, codes: Tensor) -> Tensor:
        """codes: (B, t) / (B, t, Q) of any integer dtype, t >= 0 -> (B, C, t * hop)."""
        if codes.ndim >= 2 and codes.shape[1] == 0:
            return torch.zeros(codes.shape[0], self.tok.channels, 0, device=self.tok.device)
        codes = self.tok.check_codes(codes)
        self._check_batch(codes.shape[0])
        wav = self._run(self.tok.decoder, decoder_step, self.tok.dequantize(codes))
        self.frames += codes.shape[1]
        return wav

    @torch.no_grad()
    def flush(self) -> Tensor:
        """Samples still held back: none for a causal codec (``(B, C, 0)``); kept so encoder
        and decoder streams read alike."""
        return torch.zeros(self.batch_size or 1, self.tok.channels, 0, device=self.tok.device)


__all__ = ["StreamEncoder", "StreamDecoder", "compiled", "encoder_step", "decoder_step"]
