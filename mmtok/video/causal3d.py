"""Causal 3D conv video tokenizer (Cosmos-DV / MAGVIT-v2 style), joint image + video.

``encode`` (B, 3, 1 + 4n, H, W) in [-1, 1] -> (B, 1 + n, H / f, W / f) int64; an image is a
clip of one frame (``encode_image``). The encoder / decoder are ``mmtok.layers.conv3d``'s
``CausalEncoder3d`` / ``CausalDecoder3d``: causal 3x3x3 residual blocks with per-frame
GroupNorm, spatial downsampling at every level and temporal downsampling (stride 2) at the
last ``log2(temporal_factor)`` levels, per-frame spatial attention in the middle.

Registered variants (256 px, 17 frames, base width 128, widths x (1, 2, 2, 4) for f8,
x (1, 1, 2, 2, 4) for f16):

- ``causal3d_4x8x8_fsq``: FSQ [8, 8, 8, 5, 5, 5] (64,000 codes, as Cosmos DV)
- ``causal3d_4x16x16_fsq``: the same at 16x16 spatial compression
- ``causal3d_4x8x8_lfq``: LFQ 2^14 codes (Open-MAGVIT2 uses 2^18; its entropy term over
  2^18 codes costs ~1 GB per 1,000 tokens, so 2^14 is the default; override
  ``quantizer={"type": "lfq", "codebook_size": 2**18}`` to match it)
- ``causal3d_4x8x8_vq``: VQ 16384 x 8-d, l2, k-means init, dead-code restarts (``ROBUST_VQ``)
- ``causal3d_4x8x8_fsq_2p1d`` / ``causal3d_4x16x16_fsq_2p1d``: the FSQ presets with
  ``conv="2+1d"``: every residual 3x3x3 conv factorised into a 1x3x3 spatial conv and a
  3x1x1 causal temporal conv (a different, cheaper model: ~0.5x the FLOPs; same causality,
  streaming and inflation from 2D)
- ``causal3d_tiny``: tests / CPU demos (32 px, 9 frames, width 8, 4x4x4, FSQ [8, 5, 5, 5])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from mmtok.config import build_config
from mmtok.layers.conv3d import CONVS, NORMS, CausalDecoder3d, CausalEncoder3d
from mmtok.layers.latent_norm import build_latent_norm, check_latent_norm
from mmtok.quantize import ROBUST_VQ, Quantizer, build as build_quantizer
from mmtok.registry import register_family, register_tokenizer
from mmtok.video.common import VideoTokenizer, is_valid_length

FSQ_64K: dict[str, Any] = {"type": "fsq", "levels": [8, 8, 8, 5, 5, 5]}
LFQ_16K: dict[str, Any] = {"type": "lfq", "codebook_size": 2**14}
VIDEO_VQ: dict[str, Any] = {"type": "vq", "codebook_size": 16384, "codebook_dim": 8, **ROBUST_VQ}


@dataclass
class Causal3dConfig:
    """Config of the causal 3D conv family.

    ``spatial_factor`` must be ``2 ** (len(channel_mult) - 1)`` and ``temporal_factor`` a power
    of two up to it; ``num_frames`` is ``1 + n * temporal_factor`` and ``image_size`` a
    multiple of ``spatial_factor``. ``norm``: ``"group"`` (per-frame GroupNorm, inflatable from
    a 2D VQGAN) or ``"layer"`` (per-position channel LayerNorm: with ``mid_attention=False``
    the model is spatially local, so tiled encode / decode match whole frames away from tile
    edges). ``mid_attention``: per-frame spatial self-attention in the middle blocks.
    ``conv``: ``"3d"`` (3x3x3 residual convs) or ``"2+1d"`` (each one a 1x3x3 spatial conv then
    a 3x1x1 causal temporal conv: ~0.5x the FLOPs, a different model). ``latent_norm``:
    ``"none"`` or ``"batch"`` (per-channel standardisation of the latents before the quantizer,
    ``mmtok.layers.latent_norm``; running statistics at encode time, so it stays causal).
    """

    image_size: int = 256
    num_frames: int = 17
    in_channels: int = 3
    causal: bool = True
    base_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: int = 2
    z_channels: int = 256
    temporal_factor: int = 4
    spatial_factor: int = 8
    mid_attention: bool = True
    norm: str = "group"
    dropout: float = 0.0
    # GroupNorm keeps >= this many channels per group (1 = up to 32 groups: a per-frame
    # InstanceNorm on 8..32-channel maps, which erases each frame's colour and level; widths
    # >= 128 are unchanged)
    norm_min_group_channels: int = 4
    # zero-init the second conv of every ResBlock: the stacks start as their skip paths
    zero_init_residual: bool = True
    quantizer: dict[str, Any] = field(default_factory=lambda: dict(FSQ_64K))
    conv: str = "3d"
    # "batch": standardise every latent channel before the quantizer (batch statistics in
    # training, running ones in encode / eval), so FSQ's levels are used
    latent_norm: str = "none"


def _power_of_two(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1 and (v & (v - 1)) == 0


def check_config(c: Causal3dConfig) -> None:
    """Raise ``ValueError`` for a config no model can run, saying which fields disagree."""
    if not c.channel_mult or any(not isinstance(m, int) or m < 1 for m in c.channel_mult):
        raise ValueError(f"channel_mult must be a non-empty tuple of positive ints, got {c.channel_mult}")
    if min(c.num_res_blocks, c.base_channels, c.z_channels, c.in_channels) < 1:
        raise ValueError("num_res_blocks, base_channels, z_channels and in_channels must be >= 1")
    levels = len(c.channel_mult) - 1
    if not _power_of_two(c.spatial_factor) or c.spatial_factor != 2**levels:
        raise ValueError(
            f"spatial_factor={c.spatial_factor} needs len(channel_mult) = log2(spatial_factor) + 1, "
            f"but channel_mult={tuple(c.channel_mult)} gives a factor of {2 ** levels}"
        )
    if not _power_of_two(c.temporal_factor) or c.temporal_factor > c.spatial_factor:
        raise ValueError(
            f"temporal_factor must be a power of two <= spatial_factor ({c.spatial_factor}), got {c.temporal_factor}"
        )
    if not isinstance(c.image_size, int) or c.image_size < 1 or c.image_size % c.spatial_factor:
        raise ValueError(f"image_size ({c.image_size}) must be a positive multiple of spatial_factor {c.spatial_factor}")
    if c.conv not in CONVS:
        raise ValueError(f"conv must be one of {CONVS}, got {c.conv!r}")
    check_latent_norm(c.latent_norm)
    if c.norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {c.norm!r}")
    if not isinstance(c.num_frames, int) or not is_valid_length(c.num_frames, c.temporal_factor):
        raise ValueError(f"num_frames ({c.num_frames}) must be 1 + n * temporal_factor ({c.temporal_factor}), e.g. 17")


@register_family
class Causal3dTokenizer(VideoTokenizer):
    """Causal 3D conv tokenizer: (B, 3, 1 + f_t n, H, W) -> codes (B, 1 + n, H / f_s, W / f_s)."""

    config_class = Causal3dConfig

    def __init__(self, config: Causal3dConfig) -> None:
        super().__init__(config)
        c = config
        check_config(c)
        kw = dict(
            base_channels=c.base_channels,
            channel_mult=tuple(c.channel_mult),
            num_res_blocks=c.num_res_blocks,
            z_channels=c.z_channels,
            temporal_downsamples=int(math.log2(c.temporal_factor)),
            mid_attention=c.mid_attention,
            dropout=c.dropout,
            causal=c.causal,
            norm=c.norm,
            min_group_channels=c.norm_min_group_channels,
            zero_init_residual=c.zero_init_residual,
            conv=c.conv,
        )
        self.encoder = CausalEncoder3d(in_channels=c.in_channels, **kw)
        self.latent_norm = build_latent_norm(c.latent_norm, c.z_channels)
        self.quantizer: Quantizer = build_quantizer(dict(c.quantizer), dim=c.z_channels)
        self.decoder = CausalDecoder3d(out_channels=c.in_channels, **kw)

    @property
    def last_layer_weight(self) -> Tensor:
        return self.decoder.conv_out.weight


def _causal3d(defaults: dict[str, Any], overrides: dict[str, Any]) -> Causal3dTokenizer:
    return Causal3dTokenizer(build_config(Causal3dConfig, defaults, overrides))


F8 = dict(channel_mult=(1, 2, 2, 4), spatial_factor=8)
F16 = dict(channel_mult=(1, 1, 2, 2, 4), spatial_factor=16)


@register_tokenizer
def causal3d_4x8x8_fsq(**overrides: Any) -> Causal3dTokenizer:
    """Causal 3D, 4x8x8: 17 x 256^2 -> 5 x 32 x 32 codes, FSQ [8, 8, 8, 5, 5, 5] (64,000 codes)."""
    return _causal3d(dict(**F8, quantizer=dict(FSQ_64K)), overrides)


@register_tokenizer
def causal3d_4x16x16_fsq(**overrides: Any) -> Causal3dTokenizer:
    """Causal 3D, 4x16x16: 17 x 256^2 -> 5 x 16 x 16 codes, FSQ [8, 8, 8, 5, 5, 5] (64,000 codes)."""
    return _causal3d(dict(**F16, quantizer=dict(FSQ_64K)), overrides)


@register_tokenizer
def causal3d_4x8x8_fsq_2p1d(**overrides: Any) -> Causal3dTokenizer:
    """``causal3d_4x8x8_fsq`` with (2+1)D residual convs (1x3x3 spatial, then 3x1x1 causal temporal)."""
    return _causal3d(dict(**F8, conv="2+1d", quantizer=dict(FSQ_64K)), overrides)


@register_tokenizer
def causal3d_4x16x16_fsq_2p1d(**overrides: Any) -> Causal3dTokenizer:
    """``causal3d_4x16x16_fsq`` with (2+1)D residual convs (1x3x3 spatial, then 3x1x1 causal temporal)."""
    return _causal3d(dict(**F16, conv="2+1d", quantizer=dict(FSQ_64K)), overrides)


@register_tokenizer
def causal3d_4x8x8_lfq(**overrides: Any) -> Causal3dTokenizer:
    """Causal 3D, 4x8x8, LFQ with 2^14 codes (14 sign bits per token)."""
    return _causal3d(dict(**F8, quantizer=dict(LFQ_16K)), overrides)


@register_tokenizer
def causal3d_4x8x8_vq(**overrides: Any) -> Causal3dTokenizer:
    """Causal 3D, 4x8x8, VQ 16384 x 8-d l2 (k-means init, dead-code restarts)."""
    return _causal3d(dict(**F8, quantizer=dict(VIDEO_VQ)), overrides)


@register_tokenizer
def causal3d_tiny(**overrides: Any) -> Causal3dTokenizer:
    """Tiny causal 3D for tests / CPU demos: 9 x 32^2 -> 3 x 8 x 8 codes (4x4x4), FSQ [8, 5, 5, 5] (1,000 codes)."""
    return _causal3d(
        dict(
            image_size=32,
            num_frames=9,
            base_channels=8,
            channel_mult=(1, 2, 2),
            num_res_blocks=1,
            z_channels=8,
            spatial_factor=4,
            quantizer={"type": "fsq", "levels": [8, 5, 5, 5]},
        ),
        overrides,
    )
