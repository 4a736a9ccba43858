"""Per-image reconstruction metrics (PSNR, SSIM) and a distributed mean accumulator.

Both metrics are computed on the uint8-quantized images (the pixels a user would save),
as float in [0, 255] with ``data_range = 255``, per image, then averaged over images.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

PSNR_MAX_DB = 100.0  # identical images: PSNR is capped here instead of +inf


def to_uint8_images(x: Tensor) -> Tensor:
    """[-1, 1] float (B, 3, H, W) -> uint8 [0, 255] with clamping and round-to-nearest."""
    if not torch.is_floating_point(x):
        raise TypeError(f"expected a float tensor in [-1, 1], got {x.dtype}")
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


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


class MeanMetric:
    """Running sum / count in float64 for per-image values; ``compute`` all-reduces across ranks."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def update(self, values: Tensor) -> None:
        v = values.detach().double().flatten()
        self.total += float(v.sum())
        self.count += v.numel()

    def compute(self, reduce: bool = True) -> float:
        total, count = self.total, float(self.count)
        if reduce and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
            t = torch.tensor([total, count], dtype=torch.float64, device=dev)
            dist.all_reduce(t)
            total, count = float(t[0]), float(t[1])
        if count == 0:
            return float("nan")
        return total / count
