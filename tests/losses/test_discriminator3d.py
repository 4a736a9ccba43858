"""PatchGAN3D: patch-logit shapes for clips and images, images judged as still clips, learning to
separate real from fake, and its use inside AdversarialLoss."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmtok.losses import AdversarialLoss, PatchGAN3D, build_discriminator, hinge_d_loss


def _clips(b=2, t=8, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, t, size, size, generator=g) * 2 - 1


@pytest.mark.parametrize("t, td, expect_t", [(8, None, 2), (9, None, 3), (8, 0, 8), (8, 1, 4), (1, None, 1)])
def test_patch_logit_shapes(t, td, expect_t):
    d = PatchGAN3D(base_channels=8, num_layers=2, temporal_downsample=td)
    out = d(_clips(t=t))
    # space: 16 -> 8 (first conv) -> 4 (layer 1) -> 3 (layer 2, stride 1) -> 2 (output conv)
    assert out.shape == (2, 1, expect_t, 2, 2)
    assert torch.isfinite(out).all()


def test_images_are_judged_as_still_clips():
    d = PatchGAN3D(base_channels=8, num_layers=2).eval()
    img = _clips(t=1)[:, :, 0]
    logits = d(img)
    assert logits.shape == (2, 1, 2, 2)  # (B, 1, h, w): an image in, an image-like map out
    still = d(img.unsqueeze(2).expand(-1, -1, 6, -1, -1).contiguous())  # one image repeated over 6 frames
    assert still.shape == (2, 1, 2, 2, 2)
    torch.testing.assert_close(still, logits.unsqueeze(2).expand_as(still), atol=1e-5, rtol=1e-4)
    moving = _clips(t=6, seed=1)
    assert not torch.allclose(d(moving)[:, :, 0], d(moving[:, :, 0]), atol=1e-3)  # time matters for real clips


def test_bad_input_and_options():
    d = PatchGAN3D(base_channels=8, num_layers=2)
    with pytest.raises(ValueError, match="expects"):
        d(torch.zeros(1, 1, 4, 16, 16))
    with pytest.raises(ValueError, match="expects"):
        d(torch.zeros(3, 16, 16))
    with pytest.raises(ValueError, match="norm"):
        PatchGAN3D(norm="layer")
    with pytest.raises(ValueError, match="temporal_downsample"):
        PatchGAN3D(num_layers=2, temporal_downsample=3)
    assert isinstance(build_discriminator("patchgan3d", in_channels=3, base_channels=8, num_layers=2), PatchGAN3D)
    assert isinstance(PatchGAN3D(base_channels=8, num_layers=1, norm="batch").net[3], nn.BatchNorm3d)


def test_learns_to_separate_real_from_fake():
    torch.manual_seed(0)
    d = PatchGAN3D(base_channels=8, num_layers=2)
    opt = torch.optim.Adam(d.parameters(), lr=2e-3, betas=(0.5, 0.9))
    ramp = torch.linspace(-1, 1, 16)
    real = (ramp.view(1, 1, 1, 1, 16) * torch.linspace(0.2, 1, 4).view(1, 1, 4, 1, 1)).expand(4, 3, 4, 16, 16).contiguous()
    fake = _clips(b=4, t=4, seed=3)  # noise
    first = None
    for _ in range(15):
        loss = hinge_d_loss(d(real), d(fake))
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    assert d(real).mean() > d(fake).mean()


def test_inside_adversarial_loss():
    torch.manual_seed(0)
    gen = nn.Conv3d(3, 3, 3, padding=1)
    x = _clips(t=4)
    recon = gen(x)
    adv = AdversarialLoss(PatchGAN3D(base_channels=8, num_layers=2), weight=0.5, adaptive=True)
    rec_loss = (recon - x).abs().mean()
    g = adv.generator_terms(recon, rec_loss, step=0, last_layer=gen.weight)
    assert torch.isfinite(g.total) and g.weight.item() > 0
    g.total.backward()
    assert gen.weight.grad is not None and all(p.grad is None for p in adv.discriminator.parameters())
    total, terms = adv.discriminator_loss(x, recon.detach(), step=0)
    assert torch.isfinite(total) and 0 < terms["d_loss"].item() < 10
    total.backward()
    assert all(p.grad is not None for p in adv.discriminator.parameters())
    img_total, _ = adv.discriminator_loss(x[:, :, 0], recon.detach()[:, :, 0], step=0)  # images share it
    assert torch.isfinite(img_total)
