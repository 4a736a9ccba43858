"""2D VQGAN-style conv tokenizer (taming / LlamaGen VQ-16 style): an (h, w) grid of codes.

Registered variants: ``vqgan_f8_vq``, ``vqgan_f16_vq`` (LlamaGen-like widths, 256px) and the
tiny ``vqgan_t_f8_vq`` (32px, CPU-friendly); their VQ codebooks are k-means initialised and
restart dead codes (``mmtok.image.common.ROBUST_VQ``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from mmtok.config import build_config
from mmtok.image.common import ImageTokenizer, parse_image_size
from mmtok.quantize import ROBUST_VQ
from mmtok.layers.conv import ConvDecoder2d, ConvEncoder2d
from mmtok.quantize import Quantizer, build as build_quantizer, codes_to_grid, from_channel_last, grid_to_codes, to_channel_last
from mmtok.registry import register_family, register_tokenizer
from mmtok.tokenizer import TokenizerOutput, as_codes

# LlamaGen VQ-16: 16384 codes looked up in 8-d, l2-normalised, k-means init, dead-code restart.
VQGAN_VQ: dict[str, Any] = {"type": "vq", "codebook_size": 16384, "codebook_dim": 8, **ROBUST_VQ}


@dataclass
class VQGANConfig:
    """Config of the 2D conv tokenizer family; downsampling factor = 2 ** (len(channel_mult) - 1)."""

    image_size: int = 256
    in_channels: int = 3
    base_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    z_channels: int = 256
    mid_attention: bool = True
    dropout: float = 0.0
    # GroupNorm keeps >= this many channels per group (1 = up to 32 groups: InstanceNorm on
    # 32-channel maps, which erases each image's colour and level; widths >= 128 are unchanged)
    norm_min_group_channels: int = 4
    # zero-init the second conv of every ResBlock: the stacks start as their skip paths
    zero_init_residual: bool = True
    # attention after every res block at the lowest resolution, encoder and decoder
    # (taming / LlamaGen VQ layout; mmtok's default has attention in the mid block only)
    level_attention: bool = False
    quantizer: dict[str, Any] = field(default_factory=lambda: dict(VQGAN_VQ))


@register_family
class VQGANTokenizer(ImageTokenizer):
    """2D tokenizer: ``encode`` (B, 3, H, W) in [-1, 1] -> (B, H/f, W/f) int64; ``decode`` back."""

    config_class = VQGANConfig

    def __init__(self, config: VQGANConfig) -> None:
        super().__init__(config)
        c = config
        if not c.channel_mult or any(m < 1 for m in c.channel_mult):
            raise ValueError(f"channel_mult must be a non-empty tuple of positive ints, got {c.channel_mult}")
        if c.num_res_blocks < 1 or c.base_channels < 1 or c.z_channels < 1:
            raise ValueError("num_res_blocks, base_channels and z_channels must be >= 1")
        self.factor = 2 ** (len(c.channel_mult) - 1)
        if c.image_size % self.factor:
            raise ValueError(f"image_size ({c.image_size}) must be a multiple of the downsampling factor {self.factor}")
        kw = dict(
            base_channels=c.base_channels,
            channel_mult=tuple(c.channel_mult),
            num_res_blocks=c.num_res_blocks,
            z_channels=c.z_channels,
            mid_attention=c.mid_attention,
            dropout=c.dropout,
            min_group_channels=c.norm_min_group_channels,
            zero_init_residual=c.zero_init_residual,
            level_attention=c.level_attention,
        )
        self.encoder = ConvEncoder2d(in_channels=c.in_channels, **kw)
        self.quantizer: Quantizer = build_quantizer(dict(c.quantizer), dim=c.z_channels)
        self.decoder = ConvDecoder2d(out_channels=c.in_channels, **kw)

    # --- properties -------------------------------------------------------------------
    @property
    def token_shape(self) -> tuple[int, ...]:
        g = self.config.image_size // self.factor
        return (g, g)

    @property
    def size_multiple(self) -> int:
        return self.factor

    @property
    def last_layer_weight(self) -> Tensor:
        return self.decoder.conv_out.weight

    # --- protocol ---------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """x: (B, 3, H, W) float32 in [-1, 1], H and W multiples of f -> (B, H/f, W/f) int64."""
        self.check_input(x)
        z, spatial = to_channel_last(self.encoder(x))
        return codes_to_grid(self.quantizer.encode(z), spatial)

    def decode(self, codes: Tensor, image_size: int | tuple[int, int] | None = None) -> Tensor:
        """codes: (B, h, w) ids of any integer dtype -> (B, 3, h*f, w*f) in [-1, 1].
        ``image_size``, when given, must match."""
        codes = as_codes(codes, self.device)
        if codes.ndim < 3:
            raise ValueError(f"codes must be a (B, h, w) grid, got shape {tuple(codes.shape)}")
        h, w = codes.shape[1:3]
        if image_size is not None:
            hw = parse_image_size(image_size, self.factor)
            if hw != (h * self.factor, w * self.factor):
                raise ValueError(f"a {h}x{w} code grid decodes to {h * self.factor}x{w * self.factor}, not {hw}")
        z = self.quantizer.decode(grid_to_codes(codes, 2))
        z = from_channel_last(z.to(self.decoder.conv_in.weight.dtype), (h, w))
        return self.decoder(z).clamp(-1, 1)

    def forward(self, x: Tensor) -> TokenizerOutput:
        self.check_input(x)
        z, spatial = to_channel_last(self.encoder(x))
        q = self.quantizer(z)
        recon = self.decoder(from_channel_last(q.quantized, spatial))
        return TokenizerOutput(recon=recon, codes=codes_to_grid(q.codes, spatial), loss=q.loss, metrics=dict(q.metrics))


def _vqgan(defaults: dict[str, Any], overrides: dict[str, Any]) -> VQGANTokenizer:
    return VQGANTokenizer(build_config(VQGANConfig, defaults, overrides))


@register_tokenizer
def vqgan_f16_vq(**overrides: Any) -> VQGANTokenizer:
    """2D VQGAN f16 (LlamaGen VQ-16 widths): 256px -> 16x16 codes, VQ 16384 x 8-d l2."""
    return _vqgan(dict(channel_mult=(1, 1, 2, 2, 4)), overrides)


@register_tokenizer
def vqgan_f8_vq(**overrides: Any) -> VQGANTokenizer:
    """2D VQGAN f8: 256px -> 32x32 codes, VQ 16384 x 8-d l2."""
    return _vqgan(dict(channel_mult=(1, 2, 2, 4)), overrides)


@register_tokenizer
def vqgan_t_f8_vq(**overrides: Any) -> VQGANTokenizer:
    """Tiny 2D VQGAN f8 for tests / CPU demos: 32px -> 4x4 codes, VQ 512 x 8-d l2.

    512 codes and a dead-code threshold of 0.1: a CPU batch (16 x 64 tokens at 64px) gives each
    of 1024 codes < 1 vector per step, so with the usual threshold 2.0 every code counted as
    dead and was resampled from the batch at every step (the codebook never settled)."""
    return _vqgan(
        dict(
            image_size=32,
            base_channels=32,
            channel_mult=(1, 2, 2, 2),
            num_res_blocks=1,
            z_channels=32,
            quantizer={**VQGAN_VQ, "codebook_size": 512, "threshold_ema_dead_code": 0.1},
        ),
        overrides,
    )


@register_tokenizer
def vqgan_tiny_f4_fsq(**overrides: Any) -> VQGANTokenizer:
    """Tiny 2D VQGAN f4, the image twin of ``causal3d_tiny`` (same widths and quantizer, so it
    inflates into it, ``mmtok.video.inflate``): 32px -> 8x8 codes, FSQ [8, 5, 5, 5] (1,000 codes)."""
    return _vqgan(
        dict(
            image_size=32,
            base_channels=8,
            channel_mult=(1, 2, 2),
            num_res_blocks=1,
            z_channels=8,
            quantizer={"type": "fsq", "levels": [8, 5, 5, 5]},
        ),
        overrides,
    )
