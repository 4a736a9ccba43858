"""2D convolutional building blocks (taming / VQGAN-style encoder and decoder parts)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def group_norm(channels: int, max_groups: int = 32, min_group_channels: int = 1) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= ``max_groups`` that divides ``channels`` and
    leaves at least ``min_group_channels`` channels in each group.

    One channel per group is InstanceNorm: it removes each map's spatial mean, i.e. the image's
    colour and level, which then survive only as differences between the channels of a group
    (``min_group_channels >= 4`` keeps them; 32 groups of C >= 128 channels are unchanged)."""
    cap = max(1, min(max_groups, channels // max(1, min_group_channels)))
    groups = max(g for g in range(1, cap + 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels, eps=1e-6)


class ResBlock2d(nn.Module):
    """GroupNorm-SiLU-Conv3x3 twice plus a (1x1 projected when needed) skip; (B, C_in, H, W) -> (B, C_out, H, W)."""

    def __init__(self, in_channels: int, out_channels: int | None = None, dropout: float = 0.0,
                 min_group_channels: int = 1, zero_init: bool = False) -> None:
        super().__init__()
        out_channels = out_channels or in_channels
        self.norm1 = group_norm(in_channels, min_group_channels=min_group_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels, min_group_channels=min_group_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        if zero_init:  # the block starts as its skip connection (identity when widths match)
            nn.init.zeros_(self.conv2.weight)
            nn.init.zeros_(self.conv2.bias)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttnBlock2d(nn.Module):
    """Single-head self-attention over all positions of a feature map (SDPA), residual."""

    def __init__(self, channels: int, min_group_channels: int = 1) -> None:
        super().__init__()
        self.norm = group_norm(channels, min_group_channels=min_group_channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)  # (B, HW, C)
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return x + self.proj(out.transpose(1, 2).reshape(b, c, h, w))


class Downsample2d(nn.Module):
    """Stride-2 3x3 conv (pads right/bottom so even sizes halve exactly)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample2d(nn.Module):
    """Nearest-neighbour x2 then 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ConvEncoder2d(nn.Module):
    """Image -> latent map downsampled by ``2 ** (len(channel_mult) - 1)``.

    (B, in_channels, H, W) -> (B, z_channels, H / f, W / f)
    """

    def __init__(
        self,
        *,
        in_channels: int,
        base_channels: int,
        channel_mult: tuple[int, ...],
        num_res_blocks: int,
        z_channels: int,
        mid_attention: bool = True,
        dropout: float = 0.0,
        min_group_channels: int = 1,
        zero_init_residual: bool = False,
        level_attention: bool = False,
    ) -> None:
        """``level_attention``: an attention block after every res block of the last (lowest
        resolution) level, as taming / LlamaGen place them at f16 (off: none in the levels)."""
        super().__init__()
        res = dict(dropout=dropout, min_group_channels=min_group_channels, zero_init=zero_init_residual)
        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        blocks: list[nn.Module] = []
        ch = base_channels
        for i, mult in enumerate(channel_mult):
            out = base_channels * mult
            for _ in range(num_res_blocks):
                blocks.append(ResBlock2d(ch, out, **res))
                ch = out
                if level_attention and i == len(channel_mult) - 1:
                    blocks.append(AttnBlock2d(ch, min_group_channels))
            if i < len(channel_mult) - 1:
                blocks.append(Downsample2d(ch))
        self.down = nn.Sequential(*blocks)
        self.mid = nn.Sequential(
            ResBlock2d(ch, ch, **res),
            AttnBlock2d(ch, min_group_channels) if mid_attention else nn.Identity(),
            ResBlock2d(ch, ch, **res),
        )
        self.norm_out = group_norm(ch, min_group_channels=min_group_channels)
        self.conv_out = nn.Conv2d(ch, z_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.mid(self.down(self.conv_in(x)))
        return self.conv_out(F.silu(self.norm_out(h)))


class ConvDecoder2d(nn.Module):
    """Latent map -> image, upsampling by ``2 ** (len(channel_mult) - 1)``.

    (B, z_channels, h, w) -> (B, out_channels, h * f, w * f)
    """

    def __init__(
        self,
        *,
        out_channels: int,
        base_channels: int,
        channel_mult: tuple[int, ...],
        num_res_blocks: int,
        z_channels: int,
        mid_attention: bool = True,
        dropout: float = 0.0,
        min_group_channels: int = 1,
        zero_init_residual: bool = False,
        level_attention: bool = False,
        level_blocks: int | None = None,
    ) -> None:
        """``level_attention``: an attention block after every res block of the first (lowest
        resolution) level (taming / LlamaGen). ``level_blocks``: res blocks per level (default
        ``num_res_blocks + 1``, as in taming; MaskGIT's VQGAN uses ``num_res_blocks``)."""
        super().__init__()
        res = dict(dropout=dropout, min_group_channels=min_group_channels, zero_init=zero_init_residual)
        n_blocks = num_res_blocks + 1 if level_blocks is None else level_blocks
        if n_blocks < 1:
            raise ValueError(f"level_blocks must be >= 1, got {level_blocks}")
        ch = base_channels * channel_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, ch, 3, padding=1)
        self.mid = nn.Sequential(
            ResBlock2d(ch, ch, **res),
            AttnBlock2d(ch, min_group_channels) if mid_attention else nn.Identity(),
            ResBlock2d(ch, ch, **res),
        )
        blocks: list[nn.Module] = []
        for i, mult in reversed(list(enumerate(channel_mult))):
            out = base_channels * mult
            for _ in range(n_blocks):
                blocks.append(ResBlock2d(ch, out, **res))
                ch = out
                if level_attention and i == len(channel_mult) - 1:
                    blocks.append(AttnBlock2d(ch, min_group_channels))
            if i > 0:
                blocks.append(Upsample2d(ch))
        self.up = nn.Sequential(*blocks)
        self.norm_out = group_norm(ch, min_group_channels=min_group_channels)
        self.conv_out = nn.Conv2d(ch, out_channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.up(self.mid(self.conv_in(z)))
        return self.conv_out(F.silu(self.norm_out(h)))
