"""Trivial codecs a trained tokenizer must beat, one definition for benchmarks and tests.

Each maps a batch in [-1, 1] to its "reconstruction" by a method that needs no learning:

- images (B, 3, H, W): :func:`mean_colour` (each image's mean colour everywhere);
- video (B, 3, T, H, W): :func:`clip_mean` (each pixel's mean over the clip) and
  :func:`copy_first_frame` (the true first frame, given losslessly, repeated);
- audio (B, C, S): :func:`mulaw` (resample to ``kbps * 1000 / bits`` Hz, ``bits``-bit mu-law,
  resample back: a PCM codec at the same bitrate).

:func:`psnr` is the per-item PSNR (peak-to-peak 2 for [-1, 1] data), averaged over the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def psnr(est: Tensor, ref: Tensor) -> float:
    """Mean over items of 10 log10(4 / MSE) for values in [-1, 1] (first dim = items)."""
    mse = (est.float().clamp(-1, 1) - ref.float()).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(4.0 / mse)).mean())


def mean_colour(x: Tensor) -> Tensor:
    """(B, 3, H, W) -> each image's mean colour at every pixel."""
    if x.dim() != 4:
        raise ValueError(f"mean_colour expects images (B, C, H, W), got {tuple(x.shape)}")
    return x.mean(dim=(2, 3), keepdim=True).expand_as(x)


def clip_mean(x: Tensor) -> Tensor:
    """(B, 3, T, H, W) -> every frame replaced by the clip's per-pixel temporal mean."""
    if x.dim() != 5:
        raise ValueError(f"clip_mean expects clips (B, C, T, H, W), got {tuple(x.shape)}")
    return x.mean(dim=2, keepdim=True).expand_as(x)


def copy_first_frame(x: Tensor) -> Tensor:
    """(B, 3, T, H, W) -> the first frame repeated T times."""
    if x.dim() != 5:
        raise ValueError(f"copy_first_frame expects clips (B, C, T, H, W), got {tuple(x.shape)}")
    return x[:, :, :1].expand_as(x)


def mulaw_rate(kbps: float, bits: int) -> int:
    """Sample rate r (Hz) of a ``bits``-bit PCM stream at ``kbps``: r * bits = kbps * 1000."""
    if bits < 1 or kbps <= 0:
        raise ValueError(f"need bits >= 1 and kbps > 0, got bits={bits}, kbps={kbps}")
    r = int(round(kbps * 1000 / bits))
    if r < 1:
        raise ValueError(f"{kbps} kbps at {bits} bits is below 1 sample/s")
    return r


def mulaw(x: Tensor, sample_rate: int, kbps: float, bits: int = 4) -> Tensor:
    """(B, C, S) -> the same audio through a ``bits``-bit mu-law PCM codec at ``kbps``."""
    import torchaudio.functional as AF

    if x.dim() != 3:
        raise ValueError(f"mulaw expects audio (B, C, S), got {tuple(x.shape)}")
    r = mulaw_rate(kbps, bits)
    low = AF.resample(x, sample_rate, r).clamp(-1, 1) if r < sample_rate else x
    q = AF.mu_law_decoding(AF.mu_law_encoding(low, 2**bits), 2**bits)
    y = AF.resample(q, r, sample_rate) if r < sample_rate else q
    s = x.shape[-1]
    y = y[..., :s] if y.shape[-1] >= s else F.pad(y, (0, s - y.shape[-1]))
    return y.clamp(-1, 1)
