"""Shared building blocks: transformer block with SDPA attention, 2D conv encoder/decoder parts."""

from mmtok.layers.conv import (
    AttnBlock2d,
    ConvDecoder2d,
    ConvEncoder2d,
    Downsample2d,
    ResBlock2d,
    Upsample2d,
    group_norm,
)
from mmtok.layers.transformer import Attention, Block, Transformer, prefix_causal_mask

__all__ = [
    "Attention",
    "Block",
    "Transformer",
    "prefix_causal_mask",
    "ResBlock2d",
    "AttnBlock2d",
    "Downsample2d",
    "Upsample2d",
    "ConvEncoder2d",
    "ConvDecoder2d",
    "group_norm",
]
