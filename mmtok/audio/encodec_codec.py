"""EnCodec-style codec: EnCodec's SEANet (ELU, residual blocks with a halved hidden width and
a 1x1-conv shortcut, weight norm, reflect padding, a 2-layer LSTM at the bottleneck, no
output tanh) around a Euclidean EMA residual VQ. It exists so the published EnCodec 24 kHz
weights load into mmtok (``mmtok convert encodec_24khz-d7cc33bc.th OUT``) and give EnCodec's
codes; it trains like the other codecs too.

Registered variants (causal, streamable):

==========================  ======  =====  ========  ============  ======
name                         rate    hop   frames/s  levels x K    kbps
==========================  ======  =====  ========  ============  ======
``encodec_style_24k``       24 kHz   320     75     32 x 1024     24.0
``encodec_style_tiny``      16 kHz   160    100      4 x 256       3.2
==========================  ======  =====  ========  ============  ======

EnCodec picks a bitrate by bandwidth (1.5 / 3 / 6 / 12 / 24 kbps = 2 / 4 / 8 / 16 / 32
levels at 24 kHz); here ``encode(x, n_q=k)`` keeps the first ``k`` levels (the same codes).

Streaming (``stream_encoder`` / ``stream_decoder``) carries the LSTM state and each conv's
past; with reflect padding the first chunk must cover the widest padding at each layer
(7 frames for the 24 kHz layout), later chunks may be any size. The LSTM remembers the whole
past, so ``receptive_field`` (convolutions only) understates it and ``encode_long`` windows
only approximate a whole-file encode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from mmtok.audio.common import AudioTokenizer
from mmtok.config import build_config
from mmtok.layers.audio import AudioConv1d, AudioConvTranspose1d, Reach, StreamingModule, chain_reach, reach
from mmtok.quantize import Quantizer, build as build_quantizer
from mmtok.registry import register_family, register_tokenizer

# EnCodec's quantizer: 1024 Euclidean codes per level, EMA updates (decay 0.99), k-means init
# (50 rounds), dead codes restarted below an EMA count of 2, commitment weight 1.
ENCODEC_RVQ: dict[str, Any] = {
    "type": "rvq",
    "num_levels": 32,
    "codebook_size": 1024,
    "use_cosine_sim": False,
    "ema_update": True,
    "decay": 0.99,
    "kmeans_init": True,
    "kmeans_iters": 50,
    "threshold_ema_dead_code": 2.0,
    "commitment_weight": 1.0,
    "quantizer_dropout": True,
    "eval_lookup": "expanded",
}


@dataclass
class EncodecStyleCodecConfig:
    """Config of the EnCodec-style codec (EnCodec's names in brackets).

    ``strides`` are the encoder's, in the order applied (EnCodec's ``ratios`` reversed); the
    decoder mirrors them. ``latent_dim`` [dimension] is the quantized size; ``n_filters`` the
    first width, doubled at every stride. Residual blocks: ``n_residual_layers`` per stride,
    dilations ``dilation_base ** j``, hidden width ``dim // compress``, shortcut a 1x1 conv
    unless ``true_skip``. ``final_activation``: "none" (EnCodec) or "tanh".
    """

    sample_rate: int = 24000
    channels: int = 1
    segment_length: int = 24000
    causal: bool = True
    n_filters: int = 32
    latent_dim: int = 128
    strides: tuple[int, ...] = (2, 4, 5, 8)
    n_residual_layers: int = 1
    kernel_size: int = 7
    last_kernel_size: int = 7
    residual_kernel_size: int = 3
    dilation_base: int = 2
    compress: int = 2
    true_skip: bool = False
    lstm_layers: int = 2
    pad_mode: str = "reflect"
    final_activation: str = "none"
    quantizer: dict[str, Any] = field(default_factory=lambda: dict(ENCODEC_RVQ))


class LSTM1d(StreamingModule):
    """A multi-layer LSTM over the frames of a (B, C, T) map plus the input (EnCodec's SLSTM).
    Causal; streamed, it carries its (h, c) state from chunk to chunk."""

    def __init__(self, channels: int, num_layers: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(channels, channels, num_layers)

    def reach(self) -> Reach:
        return Reach()  # no future input; the past it remembers is unbounded (not counted)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, T) -> (B, C, T)
        seq = x.permute(2, 0, 1)  # (T, B, C)
        state = self._stream.get(self) if self._stream is not None else None
        y, new_state = self.lstm(seq, state)
        if self._stream is not None:
            self._stream[self] = tuple(s.clone() for s in new_state)  # type: ignore[assignment]
        return (y + seq).permute(1, 2, 0)


class EncodecResBlock(nn.Module):
    """ELU -> conv(k, dilation) to ``dim // compress`` -> ELU -> 1x1 conv back, plus the shortcut
    (a 1x1 conv, or the identity with ``true_skip``); (B, dim, T) -> (B, dim, T)."""

    def __init__(self, dim: int, kernel_size: int, dilation: int, compress: int, true_skip: bool,
                 causal: bool, pad_mode: str) -> None:
        super().__init__()
        hidden = dim // compress
        conv = dict(causal=causal, pad_mode=pad_mode)
        self.block = nn.Sequential(
            nn.ELU(),
            AudioConv1d(dim, hidden, kernel_size, dilation=dilation, **conv),
            nn.ELU(),
            AudioConv1d(hidden, dim, 1, **conv),
        )
        self.shortcut = nn.Identity() if true_skip else AudioConv1d(dim, dim, 1, **conv)

    def reach(self) -> Reach:
        return chain_reach(list(self.block))

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut(x) + self.block(x)


def _blocks(c: EncodecStyleCodecConfig, dim: int) -> list[nn.Module]:
    return [EncodecResBlock(dim, c.residual_kernel_size, c.dilation_base ** j, c.compress, c.true_skip,
                            c.causal, c.pad_mode) for j in range(c.n_residual_layers)]


class EncodecEncoder(nn.Module):
    """Waveform -> latent frames: conv(k), per stride residual blocks + ELU + strided conv
    (k = 2s) doubling the width, LSTM, ELU, conv(last k) to ``latent_dim``.
    (B, channels, n * hop) -> (B, latent_dim, n); layers in EnCodec's order."""

    def __init__(self, c: EncodecStyleCodecConfig) -> None:
        super().__init__()
        conv = dict(causal=c.causal, pad_mode=c.pad_mode)
        ch = c.n_filters
        layers: list[nn.Module] = [AudioConv1d(c.channels, ch, c.kernel_size, **conv)]
        for s in c.strides:
            layers += [*_blocks(c, ch), nn.ELU(), AudioConv1d(ch, 2 * ch, 2 * s, stride=s, **conv)]
            ch *= 2
        if c.lstm_layers:
            layers.append(LSTM1d(ch, c.lstm_layers))
        layers += [nn.ELU(), AudioConv1d(ch, c.latent_dim, c.last_kernel_size, **conv)]
        self.layers = nn.Sequential(*layers)
        self.hop_length = math.prod(c.strides)

    def reach(self) -> Reach:
        return reach(self.layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class EncodecDecoder(nn.Module):
    """Latent frames -> waveform, mirroring the encoder: conv(k) to ``n_filters * 2^len(strides)``,
    LSTM, per stride (reversed) ELU + transposed conv halving the width + residual blocks, ELU,
    ``conv_out`` (last k), optional tanh. (B, latent_dim, n) -> (B, channels, n * hop)."""

    def __init__(self, c: EncodecStyleCodecConfig) -> None:
        super().__init__()
        conv = dict(causal=c.causal, pad_mode=c.pad_mode)
        ch = c.n_filters * 2 ** len(c.strides)
        layers: list[nn.Module] = [AudioConv1d(c.latent_dim, ch, c.kernel_size, **conv)]
        if c.lstm_layers:
            layers.append(LSTM1d(ch, c.lstm_layers))
        for s in reversed(c.strides):
            layers += [nn.ELU(), AudioConvTranspose1d(ch, ch // 2, 2 * s, s, causal=c.causal)]
            ch //= 2
            layers += _blocks(c, ch)
        layers.append(nn.ELU())
        self.layers = nn.Sequential(*layers)
        self.conv_out = AudioConv1d(ch, c.channels, c.last_kernel_size, **conv)
        self.tanh = c.final_activation == "tanh"

    def reach(self) -> Reach:
        return chain_reach([*self.layers, self.conv_out])

    def forward(self, z: Tensor) -> Tensor:
        y = self.conv_out(self.layers(z))
        return torch.tanh(y) if self.tanh else y


@register_family
class EncodecStyleCodec(AudioTokenizer):
    """``encode`` (B, C, S) -> (B, T, Q) int64 residual codes; ``decode`` back to (B, C, T * hop)
    (clamped to [-1, 1]; EnCodec's own decoder output is not clamped)."""

    config_class = EncodecStyleCodecConfig

    def __init__(self, config: EncodecStyleCodecConfig) -> None:
        super().__init__(config)
        c = config
        if not c.strides or any(s < 1 for s in c.strides):
            raise ValueError(f"strides must be a non-empty tuple of positive ints, got {c.strides}")
        if c.final_activation not in ("none", "tanh"):
            raise ValueError(f"final_activation must be 'none' or 'tanh', got {c.final_activation!r}")
        if c.compress < 1 or c.n_filters % c.compress:
            raise ValueError(f"compress ({c.compress}) must divide n_filters ({c.n_filters})")
        self.encoder = EncodecEncoder(c)
        self.quantizer: Quantizer = build_quantizer(dict(c.quantizer), dim=c.latent_dim)
        self.decoder = EncodecDecoder(c)
        self.check_config()

    @property
    def last_layer_weight(self) -> Tensor:
        return self.decoder.conv_out.weight


def _encodec(defaults: dict[str, Any], overrides: dict[str, Any]) -> EncodecStyleCodec:
    return EncodecStyleCodec(build_config(EncodecStyleCodecConfig, defaults, overrides))


@register_tokenizer
def encodec_style_24k(**overrides: Any) -> EncodecStyleCodec:
    """EnCodec's 24 kHz layout (causal, hop 320 = 75 Hz, RVQ 32 x 1024 = 24 kbps; 1.5 kbps at n_q=2)."""
    return _encodec({}, overrides)


@register_tokenizer
def encodec_style_tiny(**overrides: Any) -> EncodecStyleCodec:
    """Tiny 16 kHz EnCodec-style codec for tests / CPU demos: hop 160, RVQ 4 x 256 = 3.2 kbps."""
    return _encodec(
        dict(sample_rate=16000, segment_length=8000, n_filters=4, latent_dim=32, strides=(2, 4, 4, 5),
             lstm_layers=1, quantizer={**ENCODEC_RVQ, "num_levels": 4, "codebook_size": 256}),
        overrides,
    )
