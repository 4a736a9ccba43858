"""Per-image PSNR and SSIM on uint8 pixels.

Both metrics are computed on the uint8-quantized images (the pixels a user would save),
as float in [0, 255] with ``data_range = 255``, per image, then averaged over images.
"""

from __future__ import annotations

import torch
from torch import Tensor

PSNR_MAX_DB = 100.0  # identical images: PSNR is capped here instead of +inf


def _check_pair(x: Tensor, y: Tensor) -> None:
    if x.shape != y.shape:
        raise ValueError(f"images differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.ndim != 4:
        raise ValueError(f"expected (B, C, H, W) images, got shape {tuple(x.shape)}")


def psnr_per_image(x: Tensor, y: Tensor, data_range: float = 255.0) -> Tensor:
    """PSNR in dB of each image pair (B,), capped at ``PSNR_MAX_DB`` for identical images."""
    _check_pair(x, y)
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(1)
    floor = data_range**2 * 10 ** (-PSNR_MAX_DB / 10)
    return (10 * torch.log10(data_range**2 / mse.clamp_min(floor))).float()


def ssim_per_image(x: Tensor, y: Tensor, data_range: float = 255.0) -> Tensor:
    """SSIM of each image pair (B,): Gaussian window 11 / sigma 1.5, K = (0.01, 0.03), channel mean.

    The SSIM map comes from torchmetrics and is averaged over the "valid" region (5 pixels
    cropped at each border, where the window would leave the image), which reproduces
    scikit-image ``structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False)`` and the original definition.
    """
    from torchmetrics.functional.image import structural_similarity_index_measure

    _check_pair(x, y)
    if min(x.shape[-2:]) < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels, got {tuple(x.shape[-2:])}")
    _, ssim_map = structural_similarity_index_measure(
        x.double(), y.double(), gaussian_kernel=True, sigma=1.5, kernel_size=11, reduction="none",
        data_range=data_range, return_full_image=True,
    )
    r = 5  # (kernel_size - 1) // 2
    return ssim_map[..., r:-r, r:-r].flatten(1).mean(1).float()
