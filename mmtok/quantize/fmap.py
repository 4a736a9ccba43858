"""Helpers between modality feature maps and the channel-last (B, N, D) quantizer layout."""

from __future__ import annotations

from torch import Tensor


def to_channel_last(x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
    """(B, D, *spatial) -> ((B, N, D), spatial).

    Works for audio (B, D, T), image (B, D, H, W) and video (B, D, T, H, W) maps.
    """
    if x.ndim < 3:
        raise ValueError(f"expected a (B, D, ...) feature map with at least one spatial axis, got shape {tuple(x.shape)}")
    b, d, *spatial = x.shape
    return x.reshape(b, d, -1).transpose(1, 2), tuple(spatial)


def from_channel_last(z: Tensor, spatial: tuple[int, ...]) -> Tensor:
    """((B, N, D), spatial) -> (B, D, *spatial); inverse of ``to_channel_last``."""
    b, n, d = z.shape
    expected = 1
    for s in spatial:
        expected *= s
    if n != expected:
        raise ValueError(f"cannot fold {n} tokens into spatial shape {spatial}")
    return z.transpose(1, 2).reshape(b, d, *spatial)


def codes_to_grid(codes: Tensor, spatial: tuple[int, ...]) -> Tensor:
    """(B, N) or (B, N, Q) codes -> (B, *spatial) or (B, *spatial, Q)."""
    b = codes.shape[0]
    tail = codes.shape[2:]
    return codes.reshape(b, *spatial, *tail)


def grid_to_codes(codes: Tensor, spatial_ndim: int) -> Tensor:
    """(B, *spatial[, Q]) -> (B, N[, Q]) given the number of spatial axes."""
    b = codes.shape[0]
    tail = codes.shape[1 + spatial_ndim :]
    return codes.reshape(b, -1, *tail)
