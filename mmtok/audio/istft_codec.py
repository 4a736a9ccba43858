"""Single-codebook iSTFT codec (WavTokenizer-style): SEANet conv encoder, ONE codebook
(VQ of 4096 l2-normalised codes, k-means initialised, dead codes restarted; or FSQ through
the quantizer spec), and a Vocos-style decoder: ConvNeXt1d blocks at frame rate and an
inverse-STFT head (``n_fft = n_fft_ratio * hop_length``, STFT hop = token hop).

Causal mode (``causal=True``): causal convs in the encoder and the backbone, and the head
synthesises frame ``j`` over samples ``[j * hop, j * hop + n_fft)`` with its own
overlap-add (``torch.istft(center=True)`` looks ahead), so streamed == offline.

================================  ======  ====  ========  ========  ======
name                               rate    hop  frames/s  codes     kbps
================================  ======  ====  ========  ========  ======
``istft_codec_24k_40hz``           24 kHz  600     40     4096      0.48
``istft_codec_24k_75hz``           24 kHz  320     75     4096      0.90
``istft_codec_tiny``               16 kHz  160    100     256       0.80
``istft_codec_tiny_causal``        16 kHz  160    100     256       0.80
================================  ======  ====  ========  ========  ======
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from mmtok.audio.common import AudioTokenizer
from mmtok.config import build_config
from mmtok.quantize import ROBUST_VQ
from mmtok.layers.audio import AudioConv1d, ConvNeXt1d, ISTFTHead, LayerNorm1d, Reach, SEANetEncoder, chain_reach
from mmtok.quantize import Quantizer, build as build_quantizer
from mmtok.registry import register_family, register_tokenizer

# WavTokenizer: one VQ of 4096 codes, k-means init, dead-code restart (here looked up in 8-d, l2).
ISTFT_VQ: dict[str, Any] = {"type": "vq", "codebook_size": 4096, "codebook_dim": 8, **ROBUST_VQ}


class ISTFTDecoder(nn.Module):
    """Latent frames -> waveform: conv(k=7) -> LayerNorm -> ConvNeXt1d x depth -> LayerNorm
    -> ``ISTFTHead``; (B, latent_dim, T) -> (B, channels, T * hop_length)."""

    def __init__(
        self,
        *,
        latent_dim: int,
        width: int,
        depth: int,
        mlp_dim: int,
        hop_length: int,
        n_fft: int,
        channels: int = 1,
        kernel_size: int = 7,
        layer_scale: float | None = None,
        causal: bool = False,
        max_magnitude: float = 100.0,
    ) -> None:
        super().__init__()
        scale = 1.0 / depth if layer_scale is None else layer_scale
        self.conv_in = AudioConv1d(latent_dim, width, kernel_size, causal=causal, weight_norm=False)
        self.norm_in = LayerNorm1d(width, eps=1e-6)
        self.blocks = nn.Sequential(*[ConvNeXt1d(width, mlp_dim, kernel_size, scale, causal) for _ in range(depth)])
        self.norm_out = LayerNorm1d(width, eps=1e-6)
        self.head = ISTFTHead(width, hop_length, n_fft, channels, causal, max_magnitude)

    def reach(self) -> Reach:
        return chain_reach([self.conv_in, *self.blocks, self.head])

    def forward(self, z: Tensor) -> Tensor:
        return self.head(self.norm_out(self.blocks(self.norm_in(self.conv_in(z)))))


@dataclass
class ISTFTCodecConfig:
    """Config of the single-codebook iSTFT codec; ``hop_length = prod(strides)``."""

    sample_rate: int = 24000
    channels: int = 1
    segment_length: int = 24000
    causal: bool = False
    encoder_channels: int = 32
    strides: tuple[int, ...] = (4, 5, 5, 6)
    latent_dim: int = 512
    dilations: tuple[int, ...] = (1, 3, 9)
    kernel_size: int = 7
    width: int = 768
    depth: int = 12
    mlp_dim: int = 2304
    layer_scale: float | None = None  # None: 1 / depth
    n_fft_ratio: int = 4
    max_magnitude: float = 100.0
    quantizer: dict[str, Any] = field(default_factory=lambda: dict(ISTFT_VQ))


@register_family
class ISTFTCodec(AudioTokenizer):
    """``encode`` (B, C, S) -> (B, T) int64 (one codebook); ``decode`` back to (B, C, T * hop)."""

    config_class = ISTFTCodecConfig

    def __init__(self, config: ISTFTCodecConfig) -> None:
        super().__init__(config)
        c = config
        if not c.strides or any(s < 1 for s in c.strides):
            raise ValueError(f"strides must be a non-empty tuple of positive ints, got {c.strides}")
        if c.n_fft_ratio < 1 or c.depth < 1:
            raise ValueError("n_fft_ratio and depth must be >= 1")
        hop = math.prod(c.strides)
        self.encoder = SEANetEncoder(
            in_channels=c.channels,
            base_channels=c.encoder_channels,
            strides=tuple(c.strides),
            latent_dim=c.latent_dim,
            dilations=tuple(c.dilations),
            kernel_size=c.kernel_size,
            causal=c.causal,
        )
        self.quantizer: Quantizer = build_quantizer(dict(c.quantizer), dim=c.latent_dim)
        if self.quantizer.is_residual:
            raise ValueError("ISTFTCodec uses a single codebook ('vq' or 'fsq'); use RVQCodec for residual quantizers")
        self.decoder = ISTFTDecoder(
            latent_dim=c.latent_dim,
            width=c.width,
            depth=c.depth,
            mlp_dim=c.mlp_dim,
            hop_length=hop,
            n_fft=c.n_fft_ratio * hop,
            channels=c.channels,
            kernel_size=c.kernel_size,
            layer_scale=c.layer_scale,
            causal=c.causal,
            max_magnitude=c.max_magnitude,
        )
        self.check_config()

    @property
    def n_fft(self) -> int:
        return self.decoder.head.n_fft

    @property
    def last_layer_weight(self) -> Tensor:
        return self.decoder.head.weight


def _istft(defaults: dict[str, Any], overrides: dict[str, Any]) -> ISTFTCodec:
    return ISTFTCodec(build_config(ISTFTCodecConfig, defaults, overrides))


@register_tokenizer
def istft_codec_24k_40hz(**overrides: Any) -> ISTFTCodec:
    """24 kHz, hop 600 (40 tokens/s), one VQ of 4096 codes (0.48 kbps), n_fft 2400."""
    return _istft({}, overrides)


@register_tokenizer
def istft_codec_24k_75hz(**overrides: Any) -> ISTFTCodec:
    """24 kHz, hop 320 (75 tokens/s), one VQ of 4096 codes (0.9 kbps), n_fft 1280."""
    return _istft(dict(strides=(2, 4, 5, 8)), overrides)


TINY_ISTFT: dict[str, Any] = dict(
    sample_rate=16000,
    segment_length=8000,
    encoder_channels=8,
    strides=(2, 4, 4, 5),
    latent_dim=32,
    width=32,
    depth=2,
    mlp_dim=96,
    quantizer={**ISTFT_VQ, "codebook_size": 256},
)


@register_tokenizer
def istft_codec_tiny(**overrides: Any) -> ISTFTCodec:
    """Tiny 16 kHz iSTFT codec for tests / CPU demos: hop 160 (100 Hz), VQ 256 codes, n_fft 640."""
    return _istft(TINY_ISTFT, overrides)


@register_tokenizer
def istft_codec_tiny_causal(**overrides: Any) -> ISTFTCodec:
    """``istft_codec_tiny`` with causal encoder, backbone and head (streamable)."""
    return _istft({**TINY_ISTFT, "causal": True}, overrides)
