"""RVQ conv codec (SoundStream / EnCodec / DAC family): SEANet encoder with Snake
activations and weight norm, residual VQ with factorised low-dimensional l2-normalised
codes and quantizer dropout, mirrored transposed-conv decoder.

Registered variants (``causal=True`` makes any of them streamable):

================================  ======  =====  ========  ============  ======
name                               rate    hop   frames/s  levels x K    kbps
================================  ======  =====  ========  ============  ======
``rvq_codec_24k``                  24 kHz   320     75     8 x 1024      6.0
``rvq_codec_16k_speech``           16 kHz   320     50     8 x 1024      4.0
``rvq_codec_tiny``                 16 kHz   160    100     4 x 256       3.2
``rvq_codec_tiny_causal``          16 kHz   160    100     4 x 256       3.2
================================  ======  =====  ========  ============  ======
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from mmtok.audio.common import AudioTokenizer
from mmtok.config import build_config
from mmtok.quantize import ROBUST_VQ
from mmtok.layers.audio import SEANetDecoder, SEANetEncoder
from mmtok.quantize import Quantizer, build as build_quantizer
from mmtok.registry import register_family, register_tokenizer

# DAC-style RVQ: 1024 codes per level looked up in 8-d, l2-normalised, quantizer dropout.
RVQ_SPEC: dict[str, Any] = {
    "type": "rvq",
    "num_levels": 8,
    "codebook_size": 1024,
    "codebook_dim": 8,
    "quantizer_dropout": True,
    **ROBUST_VQ,
}


@dataclass
class RVQCodecConfig:
    """Config of the RVQ conv codec; ``hop_length = prod(strides)``, latent size ``latent_dim``.

    Layout options (defaults = mmtok's own layout; ``mmtok convert`` sets them for DAC):
    ``decoder_strides``: the decoder's upsampling strides in the order applied (None: the
    encoder's reversed; their product must equal the hop); ``upsample_padding``: "exact" or
    "symmetric" (DAC's transposed-conv trim, see ``mmtok.layers.audio.SEANetDecoder``).
    """

    sample_rate: int = 24000
    channels: int = 1
    segment_length: int = 24000
    causal: bool = False
    base_channels: int = 64
    decoder_channels: int = 1536
    strides: tuple[int, ...] = (2, 4, 5, 8)
    latent_dim: int = 1024
    dilations: tuple[int, ...] = (1, 3, 9)
    kernel_size: int = 7
    quantizer: dict[str, Any] = field(default_factory=lambda: dict(RVQ_SPEC))
    decoder_strides: tuple[int, ...] | None = None
    upsample_padding: str = "exact"


@register_family
class RVQCodec(AudioTokenizer):
    """``encode`` (B, C, S) -> (B, T, Q) int64 residual codes; ``decode`` back to (B, C, T * hop)."""

    config_class = RVQCodecConfig

    def __init__(self, config: RVQCodecConfig) -> None:
        super().__init__(config)
        c = config
        if not c.strides or any(s < 1 for s in c.strides):
            raise ValueError(f"strides must be a non-empty tuple of positive ints, got {c.strides}")
        arch = dict(
            strides=tuple(c.strides),
            latent_dim=c.latent_dim,
            dilations=tuple(c.dilations),
            kernel_size=c.kernel_size,
            causal=c.causal,
        )
        self.encoder = SEANetEncoder(in_channels=c.channels, base_channels=c.base_channels, **arch)
        self.quantizer: Quantizer = build_quantizer(dict(c.quantizer), dim=c.latent_dim)
        if c.decoder_strides is not None:
            if math.prod(c.decoder_strides) != math.prod(c.strides) or any(s < 1 for s in c.decoder_strides):
                raise ValueError(f"decoder_strides {c.decoder_strides} must be positive with the hop's product "
                                 f"{math.prod(c.strides)} (strides {c.strides})")
            arch["strides"] = tuple(reversed(c.decoder_strides))
        self.decoder = SEANetDecoder(out_channels=c.channels, channels=c.decoder_channels,
                                     upsample_padding=c.upsample_padding, **arch)
        self.check_config()

    @property
    def last_layer_weight(self) -> Tensor:
        return self.decoder.conv_out.weight


def _rvq(defaults: dict[str, Any], overrides: dict[str, Any]) -> RVQCodec:
    return RVQCodec(build_config(RVQCodecConfig, defaults, overrides))


@register_tokenizer
def rvq_codec_24k(**overrides: Any) -> RVQCodec:
    """24 kHz DAC-like codec: hop 320 (75 Hz), RVQ 8 x 1024 (8-d l2 codes) = 6.0 kbps."""
    return _rvq({}, overrides)


@register_tokenizer
def rvq_codec_16k_speech(**overrides: Any) -> RVQCodec:
    """16 kHz speech codec: hop 320 (50 Hz), RVQ 8 x 1024 = 4.0 kbps, half the 24 kHz widths."""
    return _rvq(
        dict(sample_rate=16000, segment_length=16000, base_channels=32, decoder_channels=768, latent_dim=512),
        overrides,
    )


TINY_RVQ: dict[str, Any] = dict(
    sample_rate=16000,
    segment_length=8000,
    base_channels=8,
    decoder_channels=128,
    strides=(2, 4, 4, 5),
    latent_dim=32,
    quantizer={**RVQ_SPEC, "num_levels": 4, "codebook_size": 256},
)


@register_tokenizer
def rvq_codec_tiny(**overrides: Any) -> RVQCodec:
    """Tiny 16 kHz codec for tests / CPU demos: hop 160 (100 Hz), RVQ 4 x 256 = 3.2 kbps."""
    return _rvq(TINY_RVQ, overrides)


@register_tokenizer
def rvq_codec_tiny_causal(**overrides: Any) -> RVQCodec:
    """``rvq_codec_tiny`` with causal convolutions (streamable, latency one frame = 10 ms)."""
    return _rvq({**TINY_RVQ, "causal": True}, overrides)
