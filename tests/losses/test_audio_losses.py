import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mmtok.losses
from mmtok.losses import (
    AdversarialLoss,
    CombinedDiscriminator,
    DiscriminatorOutput,
    MultiPeriodDiscriminator,
    MultiResolutionSTFTDiscriminator,
    MultiResolutionSTFTLoss,
    MultiScaleMelLoss,
    PatchGANDiscriminator,
    TokenizerLoss,
    adaptive_weight,
    build_discriminator,
    build_loss_term,
    gan_d_loss,
    gan_g_loss,
    mel_distance,
    stft_distance,
)
from mmtok.tokenizer import TokenizerOutput

SR = 16000


def _wave(b=2, c=1, s=3200, seed=0):
    """Harmonic tones with a little noise, (B, C, S) in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(s) / SR
    f0 = 110 + 330 * torch.rand(b, c, 1, generator=g)
    x = 0.4 * torch.sin(2 * math.pi * f0 * t) + 0.2 * torch.sin(2 * math.pi * 3 * f0 * t)
    return x + 0.01 * torch.randn(b, c, s, generator=g)


def _noise(b=2, c=1, s=3200, seed=1):
    return 0.5 * torch.randn(b, c, s, generator=torch.Generator().manual_seed(seed)).clamp(-2, 2)


@pytest.fixture(scope="module")
def mel():
    return build_loss_term("mel", sample_rate=SR)


# --- spectral losses --------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mel", "stft"])
def test_spectral_zero_for_identity_and_orders_distortions(name, mel):
    loss = mel if name == "mel" else build_loss_term("stft")
    x = _wave()
    slight = x + 0.003 * _noise()
    assert loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    d_slight, d_noise = loss(slight, x).item(), loss(_noise(), x).item()
    assert 0 < d_slight < d_noise
    r = slight.clone().requires_grad_(True)
    loss(r, x).backward()
    assert r.grad is not None and torch.isfinite(r.grad).all() and r.grad.abs().sum() > 0


def test_mel_matches_torchaudio_for_one_scale_and_sums_scales():
    from torchaudio.transforms import MelSpectrogram

    x, y = _wave(c=2), _wave(c=2, seed=3)
    one = MultiScaleMelLoss(SR, n_mels=(40,), window_lengths=(256,), mag_weight=0.5, pow=2.0)
    ref = MelSpectrogram(SR, n_fft=256, hop_length=64, n_mels=40, power=1.0, norm="slaney", mel_scale="slaney")
    mx, my = ref(x.reshape(4, -1)), ref(y.reshape(4, -1))
    log = lambda m: m.clamp(min=1e-5).pow(2.0).log10()  # noqa: E731
    expected = (log(my) - log(mx)).abs().mean() + 0.5 * (my - mx).abs().mean()
    assert one(y, x).item() == pytest.approx(expected.item(), rel=1e-5)
    # the multi-scale loss is the sum of its single-scale losses
    two = MultiScaleMelLoss(SR, n_mels=(10, 40), window_lengths=(64, 256))
    parts = [MultiScaleMelLoss(SR, n_mels=(n,), window_lengths=(w,))(y, x) for n, w in ((10, 64), (40, 256))]
    assert two(y, x).item() == pytest.approx(sum(parts).item(), rel=1e-5)
    assert any(name.endswith("fb") for name, _ in two.named_buffers())  # moves with .to(device)


def test_stft_matches_direct_computation_for_one_resolution():
    x, y = _wave(), _wave(seed=4)
    loss = MultiResolutionSTFTLoss(fft_sizes=(512,), hop_sizes=(128,), win_lengths=(400,))

    def mag(v):
        s = torch.stft(v.reshape(2, -1), 512, 128, 400, torch.hann_window(400), return_complex=True)
        return s.abs().pow(2).clamp(min=1e-7).sqrt()

    mx, my = mag(x), mag(y)
    sc = ((mx - my).flatten(1).norm(dim=1) / mx.flatten(1).norm(dim=1)).mean()
    log_l1 = (mx.log() - my.log()).abs().mean()
    assert loss(y, x).item() == pytest.approx((sc + log_l1).item(), rel=1e-5)


def test_functional_distances_match_modules_and_give_per_item_values(mel):
    x, y = _wave(b=3), _wave(b=3, seed=5)
    torch.testing.assert_close(mel_distance(x, y, SR), mel(y, x))
    torch.testing.assert_close(stft_distance(x, y), build_loss_term("stft")(y, x))
    per = mel_distance(x, y, SR, reduction="none")
    assert per.shape == (3,) and not per.requires_grad
    torch.testing.assert_close(per.mean(), mel_distance(x, y, SR))
    assert stft_distance(x, y, reduction="none").shape == (3,)
    # one item's value does not depend on its batch-mates
    torch.testing.assert_close(stft_distance(x[:1], y[:1]), stft_distance(x, y, reduction="none")[0])


def test_spectral_losses_run_in_fp32_under_autocast(mel):
    x, y = _wave(), _wave(seed=6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        v = mel(y.bfloat16(), x.bfloat16())
    assert v.dtype == torch.float32
    assert v.item() == pytest.approx(mel(y.bfloat16().float(), x.bfloat16().float()).item(), rel=1e-5)


def test_spectral_errors(mel):
    with pytest.raises(ValueError, match="sample_rate"):
        build_loss_term("mel")
    x = _wave()
    with pytest.raises(ValueError, match="differs"):
        mel(x[..., :3000], x)
    with pytest.raises(ValueError, match=r"\(B, C, S\)"):
        build_loss_term("stft")(x[0], x[0])
    with pytest.raises(ValueError, match="samples"):
        mel(x[..., :800], x[..., :800])
    with pytest.raises(ValueError, match="one entry per scale"):
        MultiScaleMelLoss(SR, n_mels=(5, 10), window_lengths=(32,))
    with pytest.raises(ValueError, match="reduction"):
        mel_distance(x, x, SR, reduction="sum")
    assert build_loss_term("stft", sample_rate=SR, fft_sizes=(256,), hop_sizes=(64,), win_lengths=(256,)).fft_sizes == (256,)


# --- discriminators ---------------------------------------------------------------------
def test_mpd_and_mrstft_output_structure_and_gradients():
    torch.manual_seed(0)
    mpd = build_discriminator("mpd", in_channels=2, width=1 / 32, periods=(2, 3, 5))
    mrd = build_discriminator("mrstft", in_channels=2, width=1 / 8, fft_sizes=(512, 256), bands="dac")
    x = _wave(c=2).requires_grad_(True)
    for d, n in ((mpd, 3), (mrd, 2)):
        o = d(x)
        assert isinstance(o, DiscriminatorOutput) and len(o.logits) == len(o.features) == n
        assert all(len(f) > 0 for f in o.features)
        assert all(t.shape[0] == 4 for t in o.logits)  # channels judged as mono waveforms
        o2 = d(_noise(c=2))
        assert [[f.shape for f in fs] for fs in o2.features] == [[f.shape for f in fs] for fs in o.features]
    mrd_bands = len(mmtok.losses.audio_discriminators.DAC_BANDS)
    assert len(mrd(x).features[0]) == 5 * mrd_bands  # 5 convs per band
    assert mpd(x).logits[1].shape[-1] == 3  # (frames, period)
    sum(t.mean() for t in mpd(x).logits + mrd(x).logits).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"\(B, 2, S\)"):
        mpd(torch.zeros(2, 1, 3200))
    with pytest.raises(ValueError, match=r"\(B, 2, S\)"):
        mrd(torch.zeros(2, 3200))
    with pytest.raises(ValueError, match="samples"):
        mrd(torch.zeros(1, 2, 200))


def test_audio_discriminator_combines_and_round_trips_safetensors(tmp_path):
    from safetensors.torch import load_model, save_model

    torch.manual_seed(0)
    d = build_discriminator("audio", in_channels=1, width=1 / 32, fft_sizes=(512, 256))
    o = d(_wave())
    assert len(o.logits) == 5 + 2 and len(o.features) == 7
    torch.manual_seed(1)
    d2 = build_discriminator("audio", in_channels=1, width=1 / 32, fft_sizes=(512, 256))
    save_model(d, str(tmp_path / "d.safetensors"))
    load_model(d2, str(tmp_path / "d.safetensors"))
    torch.testing.assert_close(d2(_wave()).logits[-1], o.logits[-1])
    # a plain-tensor member counts as one sub-discriminator without features
    c = CombinedDiscriminator(MultiPeriodDiscriminator(width=1 / 32, periods=(2,)), _MeanDisc())
    oc = c(_wave())
    assert len(oc.logits) == 2 and oc.features[1] == []
    n = sum(p.numel() for p in MultiResolutionSTFTDiscriminator(fft_sizes=(512,), bands="dac", channels=4).parameters())
    assert n > sum(p.numel() for p in MultiResolutionSTFTDiscriminator(fft_sizes=(512,), channels=4).parameters())


class _MeanDisc(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return self.w * x.mean(dim=tuple(range(1, x.ndim)))


class _FixedDisc(nn.Module):
    """Returns fixed logits per call: real when the input is all zeros, fake otherwise."""

    def __init__(self, real, fake):
        super().__init__()
        self.real, self.fake = real, fake
        self.p = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        logits = self.real if bool((x == 0).all()) else self.fake
        return DiscriminatorOutput([t + self.p for t in logits], [[] for _ in logits])


# --- GAN losses -------------------------------------------------------------------------
def test_hinge_and_lsgan_values_summed_over_sub_discriminators():
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([-2.0, 0.5])
    assert gan_d_loss("hinge", real, fake).item() == pytest.approx(0.5 * (0.5 + 0.75))
    # (1-real)^2 = [1, 1] -> 1 ; fake^2 = [4, 0.25] -> 2.125
    assert gan_d_loss("lsgan", real, fake).item() == pytest.approx(3.125)
    assert gan_g_loss("hinge", fake).item() == pytest.approx(0.75)
    # (1-fake)^2 = [9, 0.25] -> 4.625
    assert gan_g_loss("lsgan", fake).item() == pytest.approx(4.625)
    reals, fakes = [real, torch.tensor([1.0])], [fake, torch.tensor([3.0])]
    for kind, d_val, g_val in (("hinge", 0.625 + 0.5 * 4.0, 0.75 - 3.0), ("lsgan", 3.125 + 9.0, 4.625 + 4.0)):
        adv = AdversarialLoss(_FixedDisc(reals, fakes), weight=1.0, adaptive=False, loss=kind)
        zeros = torch.zeros(1, 1, 8)
        total, terms = adv.discriminator_loss(zeros, torch.ones(1, 1, 8), step=0)
        assert total.item() == pytest.approx(d_val)
        assert terms["logits_real"].item() == pytest.approx((1.0 + 1.0) / 2)  # mean of per-sub means
        assert terms["logits_fake"].item() == pytest.approx((-0.75 + 3.0) / 2)
        g = adv.generator_terms(torch.ones(1, 1, 8), torch.zeros(()), step=0, last_layer=None)
        assert g.gan.item() == pytest.approx(g_val) and g.total.item() == pytest.approx(g_val)
    with pytest.raises(ValueError, match="GAN loss"):
        AdversarialLoss(_MeanDisc(), loss="wgan")
    with pytest.raises(ValueError, match="single-output"):
        AdversarialLoss(_FixedDisc(reals, fakes), lecam_weight=0.1).discriminator_loss(zeros, torch.ones(1, 1, 8), 0)


def test_patchgan_numbers_match_the_hand_computed_hinge():
    torch.manual_seed(0)
    d = PatchGANDiscriminator(base_channels=8, num_layers=2)
    adv = AdversarialLoss(d, weight=0.5, start_step=0, adaptive=True, lecam_weight=0.1)
    conv = nn.Conv2d(3, 3, 3, padding=1)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    recon = conv(x)
    rec = (recon - x).abs().mean()
    g = adv.generator_terms(recon, rec, step=0, last_layer=conv.weight)
    gan = -d(recon).float().mean()
    assert g.gan.item() == pytest.approx(gan.item(), rel=1e-6)
    assert g.weight.item() == pytest.approx((0.5 * adaptive_weight(rec, gan, conv.weight)).item(), rel=1e-5)
    assert g.feature_matching.item() == 0 and g.feature_matching_weight.item() == 0
    total, terms = adv.discriminator_loss(x, recon.detach(), step=0)
    lr, lf = d(x).float(), d(recon.detach()).float()
    hinge = 0.5 * (F.relu(1 - lr).mean() + F.relu(1 + lf).mean())
    lecam = F.relu(lr - 0.0).pow(2).mean() + F.relu(0.0 - lf).pow(2).mean()  # EMAs start at 0
    assert terms["d_loss"].item() == pytest.approx(hinge.item(), rel=1e-6)
    assert total.item() == pytest.approx((hinge + 0.1 * lecam).item(), rel=1e-6)
    assert terms["logits_real"].item() == pytest.approx(lr.mean().item(), rel=1e-6)
    with pytest.raises(ValueError, match="hidden features"):
        AdversarialLoss(d, adaptive=False, feature_matching_weight=1.0).generator_terms(recon, rec, 0, None, x=x)


def test_feature_matching_zero_for_identity_and_positive_otherwise():
    torch.manual_seed(0)
    d = build_discriminator("audio", in_channels=1, width=1 / 32, fft_sizes=(512, 256))
    adv = AdversarialLoss(d, weight=1.0, start_step=5, adaptive=False, loss="lsgan", feature_matching_weight=2.0)
    x = _wave()
    recon = (x + 0.1 * _noise()).requires_grad_(True)
    before = adv.generator_terms(recon, torch.zeros(()), step=4, last_layer=None, x=x)
    assert before.total.item() == 0 and before.feature_matching_weight.item() == 0
    same = adv.generator_terms(x.clone().requires_grad_(True), torch.zeros(()), step=5, last_layer=None, x=x)
    assert same.feature_matching.item() == pytest.approx(0.0, abs=1e-7)
    g = adv.generator_terms(recon, torch.zeros(()), step=5, last_layer=None, x=x)
    assert g.feature_matching.item() > 0 and g.feature_matching_weight.item() == 2.0
    g.total.backward()
    assert recon.grad is not None and recon.grad.abs().sum() > 0
    assert all(p.grad is None for p in d.parameters())  # the generator step leaves D alone
    assert all(p.requires_grad for p in d.parameters())
    with pytest.raises(ValueError, match="targets"):
        adv.generator_terms(recon, torch.zeros(()), step=5, last_layer=None)


def test_audio_discriminator_learns_to_separate_real_from_fake():
    torch.manual_seed(0)
    d = build_discriminator("audio", in_channels=1, width=1 / 16, periods=(2, 3), fft_sizes=(512, 256))
    adv = AdversarialLoss(d, loss="hinge", adaptive=False)
    opt = torch.optim.Adam(d.parameters(), lr=5e-3, betas=(0.5, 0.9))
    real, fake = _wave(s=2000), _noise(s=2000)
    first = None
    for _ in range(20):
        loss, terms = adv.discriminator_loss(real, fake, step=0)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    assert terms["logits_real"] > terms["logits_fake"]


# --- TokenizerLoss ----------------------------------------------------------------------
class _TinyCodec(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, 5, padding=2)

    def forward(self, x):
        r = self.conv(x)
        return TokenizerOutput(recon=r, codes=torch.zeros(x.shape[0], 1, dtype=torch.long), loss=r.new_tensor(0.25))


def test_tokenizer_loss_with_audio_terms_and_discriminator():
    torch.manual_seed(0)
    codec, x = _TinyCodec(), _wave()
    d = build_discriminator("audio", in_channels=1, width=1 / 32, periods=(2, 3), fft_sizes=(512, 256))
    lf = TokenizerLoss.from_weights(l1_weight=0.0, perceptual=None, gan_weight=1.0, adaptive_gan_weight=False, discriminator=d,
                                    gan_loss="lsgan", feature_matching_weight=2.0,
                                    extra_terms={"mel": (15.0, {"sample_rate": SR}), "stft": (1.0, {})})
    out = codec(x)
    g = lf.generator_loss(x, out, step=0, last_layer=codec.conv.weight)
    assert {"mel", "stft", "gan", "gan_weight", "feature_matching", "quantizer"} <= set(g.terms)
    assert all(torch.isfinite(v) for v in g.terms.values())
    t = g.terms
    expected = 15 * t["mel"] + t["stft"] + t["gan"] + 2 * t["feature_matching"] + t["quantizer"]
    assert g.total.item() == pytest.approx(expected.item(), rel=1e-5)
    assert t["mel"].item() == pytest.approx(lf.terms["mel"](out.recon, x).item(), rel=1e-5)
    g.total.backward()
    assert codec.conv.weight.grad is not None and all(p.grad is None for p in d.parameters())
    dl = lf.discriminator_loss(x, out.recon.detach(), step=0)
    assert set(dl.terms) == {"d_loss", "lecam", "logits_real", "logits_fake"} and dl.total.item() > 0
    dl.total.backward()
    assert any(p.grad is not None for p in d.parameters())
    with pytest.raises(ValueError, match="gan_weight"):
        TokenizerLoss.from_weights(perceptual=None, gan_weight=0.0, feature_matching_weight=1.0)
