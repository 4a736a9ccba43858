import mmtok.losses
import pytest
import torch
from torch import nn

from mmtok.losses import (
    LPIPS,
    PatchGANDiscriminator,
    TokenizerLoss,
    adaptive_weight,
    hinge_d_loss,
    lecam_reg,
)
from mmtok.tokenizer import TokenizerOutput


@pytest.fixture(scope="module")
def lpips_alex():
    torch.manual_seed(0)
    return LPIPS(net="alex", weights="random")


def _images(b=2, h=32, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, h, w, generator=g) * 2 - 1


# --- LPIPS ----------------------------------------------------------------------------
def test_lpips_identity_zero_and_positive_otherwise(lpips_alex):
    x, y = _images(seed=0), _images(seed=1)
    d_same = lpips_alex(x, x)
    d_diff = lpips_alex(x, y)
    assert d_same.shape == (2,)
    assert torch.allclose(d_same, torch.zeros(2), atol=1e-6)
    assert (d_diff > 0).all()
    # symmetric and more different images are farther apart
    torch.testing.assert_close(d_diff, lpips_alex(y, x))
    assert (lpips_alex(x, x + 0.05 * (y - x)) < d_diff).all()


def test_lpips_frozen_differentiable_and_stays_in_eval(lpips_alex):
    assert not any(p.requires_grad for p in lpips_alex.parameters())
    lpips_alex.train()
    assert not lpips_alex.training and not lpips_alex.model.training
    x = _images().requires_grad_(True)
    lpips_alex(x, _images(seed=3)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_lpips_bad_input(lpips_alex):
    with pytest.raises(ValueError, match="same shape"):
        lpips_alex(_images(), _images(h=48))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        lpips_alex(torch.zeros(2, 1, 32, 32), torch.zeros(2, 1, 32, 32))


def test_lpips_auto_missing_names_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError) as e:
        LPIPS(net="alex", weights="auto")
    msg = str(e.value)
    assert "alexnet-owt-7be5be79.pth" in msg and str(tmp_path / "hub" / "checkpoints") in msg
    with pytest.raises(FileNotFoundError, match="alexnet-owt-7be5be79.pth"):
        LPIPS(net="alex", weights=tmp_path / "nope.pth")
    with pytest.raises(ValueError, match="net must be one of"):
        LPIPS(net="resnet", weights="random")


def test_lpips_loads_trunk_from_path_and_checks_the_cache_file(tmp_path, monkeypatch):
    torch.manual_seed(1)
    ref = LPIPS(net="alex", weights="random")
    # a torchvision-layout checkpoint holding the trunk ("features.N.*") of `ref`
    state = {f"features.{k.split('.', 1)[1]}": v.clone() for k, v in ref.model.net.state_dict().items()}
    own = tmp_path / "my_alexnet.pth"
    torch.save(state, own)
    torch.manual_seed(2)
    from_path = LPIPS(net="alex", weights=own)
    assert not from_path.trunk_verified  # a user's own file: loaded, but not the reference trunk
    x, y = _images(seed=4), _images(seed=5)
    torch.testing.assert_close(from_path(x, y), ref(x, y))
    # a file under torchvision's name must match the sha256 prefix in that name
    ckpt = tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    ckpt.parent.mkdir(parents=True)
    torch.save(state, ckpt)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ValueError, match="damaged or a different file.*download.pytorch.org"):
        LPIPS(net="alex", weights="auto")
    bad = tmp_path / "bad.pth"
    torch.save({"something": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="does not look like"):
        LPIPS(net="alex", weights=bad)


# --- discriminator / GAN pieces ---------------------------------------------------------
def test_patchgan_learns_to_separate_real_from_fake():
    torch.manual_seed(0)
    d = PatchGANDiscriminator(base_channels=8, num_layers=2)
    opt = torch.optim.Adam(d.parameters(), lr=2e-3, betas=(0.5, 0.9))
    real = torch.linspace(-1, 1, 16).expand(4, 3, 16, 16).contiguous()  # smooth ramps
    fake = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1  # noise
    first = None
    for _ in range(15):
        loss = hinge_d_loss(d(real), d(fake))
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    assert d(real).mean() > d(fake).mean()
    assert d(real).shape[:2] == (4, 1)
    with pytest.raises(ValueError, match="expects"):
        d(torch.zeros(1, 1, 16, 16))


def test_hinge_and_lecam_values():
    real = torch.tensor([2.0, 0.0])
    fake = torch.tensor([-2.0, 0.5])
    # relu(1-real) = [0, 1] -> 0.5 ; relu(1+fake) = [0, 1.5] -> 0.75
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.5 * (0.5 + 0.75))
    # relu(real - ema_fake=0)^2 = [4, 0] -> 2 ; relu(ema_real=1 - fake)^2 = [9, 0.25] -> 4.625
    assert lecam_reg(real, fake, torch.tensor(1.0), torch.tensor(0.0)).item() == pytest.approx(6.625)


def test_adaptive_weight_is_gradient_norm_ratio():
    w = nn.Parameter(torch.tensor([1.0, 2.0]))
    rec = (3.0 * w).sum()  # grad (3, 3)   -> norm 3*sqrt(2)
    gan = (w**2).sum()  # grad (2, 4)      -> norm sqrt(20)
    expected = (3 * 2**0.5) / (20**0.5 + 1e-4)
    assert adaptive_weight(rec, gan, w).item() == pytest.approx(expected, rel=1e-5)


# --- TokenizerLoss ----------------------------------------------------------------------
class _TinyGen(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        r = self.conv(x)
        return TokenizerOutput(recon=r, codes=torch.zeros(x.shape[0], 1, dtype=torch.long), loss=r.new_tensor(0.5))


def _loss(**kw):
    kw.setdefault("perceptual", None)
    kw.setdefault("discriminator", PatchGANDiscriminator(base_channels=8, num_layers=2))
    return TokenizerLoss.from_weights(**kw)


def test_generator_terms_values_and_names():
    torch.manual_seed(0)
    gen, x = _TinyGen(), _images()
    lf = _loss(l1_weight=1.0, l2_weight=2.0, gan_weight=0.5, gan_start_step=10, quantizer_weight=3.0)
    out = gen(x)
    g = lf.generator_loss(x, out, step=0, last_layer=gen.conv.weight)
    assert set(g.terms) == {"l1", "l2", "perceptual", "gan", "gan_weight", "quantizer"}
    l1 = (out.recon - x).abs().mean()
    l2 = (out.recon - x).pow(2).mean()
    assert g.terms["l1"].item() == pytest.approx(l1.item(), rel=1e-5)
    assert g.terms["gan"].item() == 0 and g.terms["gan_weight"].item() == 0  # before gan_start_step
    assert g.total.item() == pytest.approx((l1 + 2 * l2 + 3 * 0.5).item(), rel=1e-5)
    assert all(not t.requires_grad for t in g.terms.values())


def test_gan_switches_on_at_start_step_with_adaptive_weight():
    torch.manual_seed(0)
    gen, x = _TinyGen(), _images()
    lf = _loss(gan_weight=0.5, gan_start_step=10)
    out = gen(x)
    g = lf.generator_loss(x, out, step=10, last_layer=gen.conv.weight)
    rec = (out.recon - x).abs().mean()
    gan = -lf.discriminator(out.recon).mean()
    expected = 0.5 * adaptive_weight(rec, gan, gen.conv.weight)
    assert g.terms["gan_weight"].item() == pytest.approx(expected.item(), rel=1e-4)
    assert g.terms["gan_weight"].item() > 0
    assert g.terms["gan"].item() == pytest.approx(gan.item(), rel=1e-5)
    g.total.backward()
    assert all(p.grad is None for p in lf.discriminator.parameters())  # generator step leaves D alone
    assert all(p.requires_grad for p in lf.discriminator.parameters())
    assert gen.conv.weight.grad is not None


def test_adaptive_weight_needs_last_layer_and_fixed_weight_does_not():
    gen, x = _TinyGen(), _images()
    with pytest.raises(ValueError, match="last_layer"):
        _loss(gan_weight=0.1).generator_loss(x, gen(x), step=0)
    g = _loss(gan_weight=0.1, adaptive_gan_weight=False).generator_loss(x, gen(x), step=0)
    assert g.terms["gan_weight"].item() == pytest.approx(0.1)


def test_discriminator_loss_inactive_before_start_and_lecam_ema():
    torch.manual_seed(0)
    gen, x = _TinyGen(), _images()
    lf = _loss(gan_weight=0.1, gan_start_step=5, lecam_weight=0.1)
    recon = gen(x).recon.detach()
    d0 = lf.discriminator_loss(x, recon, step=0)
    assert set(d0.terms) == {"d_loss", "lecam", "logits_real", "logits_fake"}
    assert d0.total.item() == 0 and d0.terms["d_loss"].item() > 0
    assert not bool(lf.adversarial.ema_initialised)
    d1 = lf.discriminator_loss(x, recon, step=5)
    assert d1.total.item() == pytest.approx(d1.terms["d_loss"].item() + 0.1 * d1.terms["lecam"].item(), rel=1e-5)
    assert bool(lf.adversarial.ema_initialised)
    assert lf.adversarial.ema_logits_real.item() == pytest.approx(d1.terms["logits_real"].item(), rel=1e-5)
    d1.total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in lf.discriminator.parameters())


def test_no_gan_and_bad_settings():
    lf = TokenizerLoss.from_weights(gan_weight=0.0, perceptual=None)
    assert lf.discriminator is None
    x = _images()
    with pytest.raises(RuntimeError, match="no discriminator"):
        lf.discriminator_loss(x, x, step=0)
    with pytest.raises(ValueError, match="l1 weight"):
        TokenizerLoss.from_weights(l1_weight=-1.0, perceptual=None, gan_weight=0.0)
    with pytest.raises(ValueError, match="differs"):
        lf.generator_loss(x, TokenizerOutput(recon=x[:, :, :16], codes=x, loss=x.new_zeros(())), step=0)
    assert isinstance(TokenizerLoss.from_weights(perceptual=None, gan_weight=0.1).discriminator, PatchGANDiscriminator)
    with pytest.raises(ValueError, match="unknown discriminator"):
        mmtok.losses.build_discriminator("nope")


def test_perceptual_term_with_random_lpips():
    torch.manual_seed(0)
    gen, x = _TinyGen(), _images()
    lf = TokenizerLoss.from_weights(perceptual="random", perceptual_net="alex", gan_weight=0.0, perceptual_weight=2.0)
    out = gen(x)
    g = lf.generator_loss(x, out, step=0)
    p = lf.terms["perceptual"].lpips(out.recon, x).mean()
    assert g.terms["perceptual"].item() == pytest.approx(p.item(), rel=1e-5) and p.item() > 0
    l1 = (out.recon - x).abs().mean()
    assert g.total.item() == pytest.approx((l1 + 2 * p + 0.5).item(), rel=1e-5)


def test_generator_loss_trains_a_tiny_model():
    torch.manual_seed(0)
    gen, x = _TinyGen(), _images(b=4, h=16, w=16)
    lf = _loss(gan_weight=0.1, lecam_weight=0.05)
    opt = torch.optim.Adam(gen.parameters(), lr=2e-2)
    d_opt = torch.optim.Adam(lf.discriminator.parameters(), lr=1e-3)
    losses = []
    for step in range(20):
        out = gen(x)
        g = lf.generator_loss(x, out, step, last_layer=gen.conv.weight)
        opt.zero_grad()
        g.total.backward()
        opt.step()
        d = lf.discriminator_loss(x, out.recon.detach(), step)
        d_opt.zero_grad()
        d.total.backward()
        d_opt.step()
        losses.append(g.terms["l1"].item())
    assert losses[-1] < 0.7 * losses[0]


def test_a_custom_discriminator_and_term_plug_in():
    """Any module mapping a batch to logits is a discriminator; any registered term a loss part."""
    torch.manual_seed(0)

    class MeanDisc(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(()))

        def forward(self, x):
            return self.w * x.mean(dim=tuple(range(1, x.ndim)))

    mmtok.losses.register_loss_term("mean_abs_test", lambda scale=1.0: _MeanAbs(scale))
    gen, x = _TinyGen(), _images()
    lf = TokenizerLoss.from_weights(perceptual=None, gan_weight=0.5, adaptive_gan_weight=False, discriminator=MeanDisc(),
                                    extra_terms={"mean_abs_test": (2.0, {"scale": 3.0})})
    out = gen(x)
    g = lf.generator_loss(x, out, step=0)
    m = 3.0 * (out.recon - x).mean().abs()
    assert g.terms["mean_abs_test"].item() == pytest.approx(m.item(), rel=1e-5)
    assert g.terms["gan"].item() == pytest.approx(-out.recon.mean().item(), rel=1e-4)
    d = lf.discriminator_loss(x, out.recon.detach(), step=0)
    d.total.backward()
    assert lf.discriminator.w.grad is not None


class _MeanAbs(nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, recon, x):
        return self.scale * (recon - x).mean().abs()
