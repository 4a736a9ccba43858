"""Helpers between modality feature maps and the channel-last (B, N, D) quantizer layout."""

from __future__ import annotations

from einops import pack, rearrange, unpack
from torch import Tensor


def to_channel_last(x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
    """(B, D, *spatial) -> ((B, N, D), spatial).

    Works for audio (B, D, T), image (B, D, H, W) and video (B, D, T, H, W) maps.
    """
    if x.ndim < 3:
        raise ValueError(f"expected a (B, D, ...) feature map with at least one spatial axis, got shape {tuple(x.shape)}")
    z, (spatial,) = pack([x], "b d *")
    return rearrange(z, "b d n -> b n d"), tuple(spatial)


def from_channel_last(z: Tensor, spatial: tuple[int, ...]) -> Tensor:
    """((B, N, D), spatial) -> (B, D, *spatial); inverse of ``to_channel_last``."""
    expected = 1
    for s in spatial:
        expected *= s
    if z.ndim != 3 or z.shape[1] != expected:
        raise ValueError(f"cannot fold tokens of shape {tuple(z.shape)} into spatial shape {tuple(spatial)}")
    (x,) = unpack(rearrange(z, "b n d -> b d n"), [tuple(spatial)], "b d *")
    return x


def codes_to_grid(codes: Tensor, spatial: tuple[int, ...]) -> Tensor:
    """(B, N) or (B, N, Q) codes -> (B, *spatial) or (B, *spatial, Q)."""
    return codes.reshape(codes.shape[0], *spatial, *codes.shape[2:])


def grid_to_codes(codes: Tensor, spatial_ndim: int) -> Tensor:
    """(B, *spatial[, Q]) -> (B, N[, Q]) given the number of spatial axes."""
    return codes.reshape(codes.shape[0], -1, *codes.shape[1 + spatial_ndim :])
