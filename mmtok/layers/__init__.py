"""Shared building blocks: transformer (timm ViT blocks with an attention mask), 2D conv encoder/decoder parts."""

from mmtok.layers.conv import (
    AttnBlock2d,
    ConvDecoder2d,
    ConvEncoder2d,
    Downsample2d,
    ResBlock2d,
    Upsample2d,
    group_norm,
)
from mmtok.layers.transformer import Block, Transformer, prefix_causal_mask

__all__ = [
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
