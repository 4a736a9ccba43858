"""3D PatchGAN discriminator for clips (TATS / MAGVIT style), shared by images as one-frame clips."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from mmtok.layers.conv import group_norm

KERNEL = 4


def _norm3d(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    if kind == "group":
        return group_norm(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'batch', 'group' or 'none', got {kind!r}")


class _Conv3d(nn.Module):
    """Conv3d of kernel 4: spatial zero padding 1 (PatchGAN), temporal "same" replicate padding
    (T -> ceil(T / stride_t), so a single frame stays a single frame)."""

    def __init__(self, in_channels: int, out_channels: int, stride: tuple[int, int, int], bias: bool = True) -> None:
        super().__init__()
        self.stride_t = stride[0]
        self.conv = nn.Conv3d(in_channels, out_channels, KERNEL, stride, padding=(0, 1, 1), bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        t, s = x.shape[2], self.stride_t
        total = max(KERNEL - (s if t % s == 0 else t % s), 0)
        x = F.pad(x, (0, 0, 0, 0, total // 2, total - total // 2), mode="replicate")
        return self.conv(x)


class PatchGAN3D(nn.Module):
    """(B, C, T, H, W) -> (B, 1, t, h, w) logits, one per spatio-temporal patch.

    Images (B, C, H, W) are judged as one-frame clips and get (B, 1, h, w). With replicate
    padding in time, a still clip (one image repeated) gets that image's logits at every time
    step, so joint image + video training can share one discriminator.

    Args:
        in_channels: input channels.
        base_channels: width of the first conv (doubled per layer, capped at 8x).
        num_layers: layers after the first conv; all but the last halve H and W (as PatchGAN).
        norm: "group" (default; batch-size and DDP independent), "batch" or "none".
        temporal_downsample: how many of the spatially strided convs also halve T (stride 2 in
            time; the others use stride 1); None = all of them (``num_layers``).
    """

    def __init__(self, in_channels: int = 3, base_channels: int = 64, num_layers: int = 3, norm: str = "group",
                 temporal_downsample: int | None = None) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        _norm3d(norm, 1)  # validate before building
        td = num_layers if temporal_downsample is None else int(temporal_downsample)
        if not 0 <= td <= num_layers:
            raise ValueError(f"temporal_downsample must be in [0, {num_layers}], got {temporal_downsample}")

        def stride(i: int, spatial: int) -> tuple[int, int, int]:
            return (2 if spatial == 2 and i < td else 1, spatial, spatial)

        layers: list[nn.Module] = [_Conv3d(in_channels, base_channels, stride(0, 2)), nn.LeakyReLU(0.2, inplace=True)]
        ch = base_channels
        for i in range(1, num_layers + 1):
            out = base_channels * min(2**i, 8)
            spatial = 2 if i < num_layers else 1
            layers += [_Conv3d(ch, out, stride(i, spatial), bias=norm == "none"), _norm3d(norm, out),
                       nn.LeakyReLU(0.2, inplace=True)]
            ch = out
        layers.append(_Conv3d(ch, 1, (1, 1, 1)))
        self.net = nn.Sequential(*layers)
        self.in_channels = in_channels
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Conv3d):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm3d, nn.GroupNorm)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, T, H, W) -> (B, 1, t, h, w); (B, C, H, W) -> (B, 1, h, w)."""
        if x.ndim not in (4, 5) or x.shape[1] != self.in_channels:
            c = self.in_channels
            raise ValueError(f"discriminator expects (B, {c}, T, H, W) clips or (B, {c}, H, W) images, got {tuple(x.shape)}")
        if x.ndim == 4:
            return self.net(x.unsqueeze(2)).squeeze(2)
        return self.net(x)
