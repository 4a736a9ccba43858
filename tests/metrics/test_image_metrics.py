"""PSNR / SSIM against scikit-image and torchmetrics on the same inputs; accumulators."""

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from mmtok.data import to_uint8
from mmtok.metrics.image import PSNR_MAX_DB, psnr_per_image, ssim_per_image
from mmtok.metrics.reduce import MeanMetric


def _pair(b=3, size=32, noise=20.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(b, 3, size, size, generator=g) * 255).round()
    # smooth-ish content so SSIM is not trivially ~0
    x = torch.nn.functional.avg_pool2d(x, 3, 1, 1).round()
    y = (x + torch.randn(x.shape, generator=g) * noise).clamp(0, 255).round()
    return x.to(torch.uint8), y.to(torch.uint8)


def test_psnr_matches_skimage_and_torchmetrics():
    from torchmetrics.functional.image import peak_signal_noise_ratio as tm_psnr

    x, y = _pair()
    got = psnr_per_image(y, x)
    for i in range(x.shape[0]):
        ref = peak_signal_noise_ratio(x[i].numpy(), y[i].numpy(), data_range=255)
        assert got[i].item() == pytest.approx(ref, abs=1e-4)
        tm = tm_psnr(y[i : i + 1].float(), x[i : i + 1].float(), data_range=255.0)
        assert got[i].item() == pytest.approx(tm.item(), abs=1e-3)


def test_psnr_identical_is_capped_and_decreases_with_noise():
    x, _ = _pair()
    assert torch.all(psnr_per_image(x, x) == PSNR_MAX_DB)
    vals = [psnr_per_image(_pair(noise=n)[1], x).mean().item() for n in (2.0, 8.0, 32.0)]
    assert vals[0] > vals[1] > vals[2]


def test_ssim_matches_skimage():
    x, y = _pair(noise=15.0)
    got = ssim_per_image(y, x)
    for i in range(x.shape[0]):
        ref = structural_similarity(
            x[i].permute(1, 2, 0).numpy(), y[i].permute(1, 2, 0).numpy(), channel_axis=-1,
            gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255,
        )
        assert got[i].item() == pytest.approx(ref, abs=1e-5)
    assert torch.allclose(ssim_per_image(x, x), torch.ones(x.shape[0]), atol=1e-5)


def test_bad_shapes():
    x, y = _pair()
    with pytest.raises(ValueError, match="differ in shape"):
        psnr_per_image(x, y[:, :, :16])
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim_per_image(x[..., :8, :8], y[..., :8, :8])


def test_metric_pixels_roundtrip_and_clamp():
    """The pixels every metric sees: [-1, 1] -> uint8 with clamping and round-to-nearest."""
    u = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    x = u.float() / 127.5 - 1
    assert torch.equal(to_uint8(x), u)
    assert to_uint8(torch.full((1, 3, 2, 2), 3.0)).max() == 255
    assert to_uint8(torch.full((1, 3, 2, 2), -3.0)).max() == 0
    with pytest.raises(TypeError):
        to_uint8(u)


def test_mean_metric():
    m = MeanMetric()
    assert np.isnan(m.compute())
    m.update(torch.tensor([1.0, 2.0]))
    m.update(torch.tensor([6.0]))
    assert m.compute() == pytest.approx(3.0)
