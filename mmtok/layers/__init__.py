"""Shared building blocks: transformer (timm ViT blocks with an attention mask), 2D conv encoder/decoder
parts, 1D audio blocks (Snake, weight-normed causal/centred convs, SEANet, ConvNeXt1d, iSTFT head, streaming)."""

from mmtok.layers.audio import (
    AudioConv1d,
    AudioConvTranspose1d,
    ConvNeXt1d,
    ISTFTHead,
    LayerNorm1d,
    Reach,
    ResidualUnit1d,
    SEANetDecoder,
    SEANetEncoder,
    Snake,
    StreamingModule,
    chain_reach,
    reach,
    streaming,
    weight_of,
)
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
    "AudioConv1d",
    "AudioConvTranspose1d",
    "ConvNeXt1d",
    "ISTFTHead",
    "LayerNorm1d",
    "Reach",
    "ResidualUnit1d",
    "SEANetDecoder",
    "SEANetEncoder",
    "Snake",
    "StreamingModule",
    "chain_reach",
    "reach",
    "streaming",
    "weight_of",
]
