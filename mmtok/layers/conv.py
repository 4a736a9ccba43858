"""2D convolutional building blocks (taming / VQGAN-style encoder and decoder parts)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def group_norm(channels: int, max_groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= ``max_groups`` that divides ``channels``."""
    groups = max(g for g in range(1, min(max_groups, channels) + 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels, eps=1e-6)


class ResBlock2d(nn.Module):
    """GroupNorm-SiLU-Conv3x3 twice plus a (1x1 projected when needed) skip; (B, C_in, H, W) -> (B, C_out, H, W)."""

    def __init__(self, in_channels: int, out_channels: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        out_channels = out_channels or in_channels
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttnBlock2d(nn.Module):
    """Single-head self-attention over all positions of a feature map (SDPA), residual."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
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
    ) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        blocks: list[nn.Module] = []
        ch = base_channels
        for i, mult in enumerate(channel_mult):
            out = base_channels * mult
            for _ in range(num_res_blocks):
                blocks.append(ResBlock2d(ch, out, dropout))
                ch = out
            if i < len(channel_mult) - 1:
                blocks.append(Downsample2d(ch))
        self.down = nn.Sequential(*blocks)
        self.mid = nn.Sequential(
            ResBlock2d(ch, ch, dropout), AttnBlock2d(ch) if mid_attention else nn.Identity(), ResBlock2d(ch, ch, dropout)
        )
        self.norm_out = group_norm(ch)
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
    ) -> None:
        super().__init__()
        ch = base_channels * channel_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, ch, 3, padding=1)
        self.mid = nn.Sequential(
            ResBlock2d(ch, ch, dropout), AttnBlock2d(ch) if mid_attention else nn.Identity(), ResBlock2d(ch, ch, dropout)
        )
        blocks: list[nn.Module] = []
        for i, mult in reversed(list(enumerate(channel_mult))):
            out = base_channels * mult
            for _ in range(num_res_blocks + 1):
                blocks.append(ResBlock2d(ch, out, dropout))
                ch = out
            if i > 0:
                blocks.append(Upsample2d(ch))
        self.up = nn.Sequential(*blocks)
        self.norm_out = group_norm(ch)
        self.conv_out = nn.Conv2d(ch, out_channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.up(self.mid(self.conv_in(z)))
        return self.conv_out(F.silu(self.norm_out(h)))
