"""The adversarial part of tokenizer training, with a pluggable discriminator.

``AdversarialLoss`` owns any discriminator module (``forward(x) -> logits``: a PatchGAN for
images, a 3D PatchGAN for clips; or ``-> DiscriminatorOutput`` with several sub-discriminators
and their hidden features: the audio MPD / MR-STFT discriminators), the hinge or LSGAN loss, feature
matching, the adaptive generator weight at the decoder's last layer, the GAN start step
and the LeCAM regulariser. Discriminators are built by name with :func:`build_discriminator`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_DISCRIMINATORS: dict[str, Callable[..., nn.Module]] = {}
GAN_LOSSES = ("hinge", "lsgan")


@dataclass
class DiscriminatorOutput:
    """What a multi-output discriminator returns.

    logits: one tensor per sub-discriminator (any shape, batch first).
    features: per sub-discriminator, its hidden activations in order (the same structure for
        any two inputs of the same shape); empty lists when it exposes none.
    """

    logits: list[Tensor]
    features: list[list[Tensor]] = field(default_factory=list)


def as_discriminator_output(out: Tensor | DiscriminatorOutput) -> DiscriminatorOutput:
    """A plain logits tensor (PatchGAN) is one sub-discriminator without features."""
    if isinstance(out, Tensor):
        return DiscriminatorOutput([out], [[]])
    if not isinstance(out, DiscriminatorOutput) or not out.logits:
        raise TypeError(f"a discriminator must return a Tensor or a non-empty DiscriminatorOutput, got {type(out).__name__}")
    feats = out.features if out.features else [[] for _ in out.logits]
    if len(feats) != len(out.logits):
        raise ValueError(f"DiscriminatorOutput has {len(out.logits)} logits but {len(feats)} feature lists")
    return DiscriminatorOutput(list(out.logits), [list(f) for f in feats])


def register_discriminator(name: str, factory: Callable[..., nn.Module]) -> None:
    """``factory(in_channels=..., **options) -> nn.Module`` mapping a batch to logits (a Tensor)
    or to a :class:`DiscriminatorOutput`."""
    _DISCRIMINATORS[name] = factory


def build_discriminator(name: str, **options: Any) -> nn.Module:
    if name not in _DISCRIMINATORS:
        raise ValueError(f"unknown discriminator {name!r}; known: {sorted(_DISCRIMINATORS)}")
    return _DISCRIMINATORS[name](**options)


def _patchgan(**options: Any) -> nn.Module:
    from mmtok.losses.discriminator import PatchGANDiscriminator

    return PatchGANDiscriminator(**options)


def _patchgan3d(**options: Any) -> nn.Module:
    from mmtok.losses.discriminator3d import PatchGAN3D

    return PatchGAN3D(**options)


register_discriminator("patchgan", _patchgan)
register_discriminator("patchgan3d", _patchgan3d)


def hinge_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """Discriminator hinge loss: mean(relu(1 - real)) + mean(relu(1 + fake)), halved."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def lsgan_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """Discriminator least-squares loss: mean((1 - real)^2) + mean(fake^2)."""
    return (1.0 - logits_real).pow(2).mean() + logits_fake.pow(2).mean()


def gan_d_loss(kind: str, logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """``hinge`` (:func:`hinge_d_loss`) or ``lsgan`` (:func:`lsgan_d_loss`) discriminator loss."""
    return hinge_d_loss(logits_real, logits_fake) if kind == "hinge" else lsgan_d_loss(logits_real, logits_fake)


def gan_g_loss(kind: str, logits_fake: Tensor) -> Tensor:
    """Generator loss: ``hinge`` -mean(fake); ``lsgan`` mean((1 - fake)^2)."""
    return -logits_fake.mean() if kind == "hinge" else (1.0 - logits_fake).pow(2).mean()


def feature_matching_loss(features_fake: list[list[Tensor]], features_real: list[list[Tensor]]) -> Tensor:
    """L1 between hidden features of D(recon) and D(x) (real detached): the mean over the
    layers of each sub-discriminator, summed over sub-discriminators (MelGAN / DAC style)."""
    total: Tensor | None = None
    for ff, fr in zip(features_fake, features_real, strict=True):
        if len(ff) != len(fr):
            raise ValueError(f"feature lists differ in length: {len(ff)} vs {len(fr)}")
        if not ff:
            continue
        sub = sum((a.float() - b.detach().float()).abs().mean() for a, b in zip(ff, fr)) / len(ff)
        total = sub if total is None else total + sub
    if total is None:
        raise ValueError("feature matching needs a discriminator that returns hidden features (a DiscriminatorOutput)")
    return total


def lecam_reg(logits_real: Tensor, logits_fake: Tensor, ema_real: Tensor, ema_fake: Tensor) -> Tensor:
    """LeCAM regulariser (Tseng et al. 2021): keeps D's predictions near the other side's EMA."""
    return F.relu(logits_real - ema_fake).pow(2).mean() + F.relu(ema_real - logits_fake).pow(2).mean()


def adaptive_weight(rec_loss: Tensor, gan_loss: Tensor, last_layer: Tensor, max_weight: float = 1e4) -> Tensor:
    """||d rec / d W|| / ||d gan / d W|| at the decoder's last layer ``W`` (VQGAN), detached."""
    g_rec = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
    w = g_rec.float().norm() / (g_gan.float().norm() + 1e-4)
    return w.clamp(0.0, max_weight).detach()


@dataclass
class GeneratorTerms:
    """The adversarial part of the generator loss: ``weight * gan + feature_matching_weight *
    feature_matching``. All 0-dim; all 0 before the GAN start step."""

    gan: Tensor
    weight: Tensor  # the effective (adaptive) GAN weight, detached
    feature_matching: Tensor
    feature_matching_weight: Tensor

    @property
    def total(self) -> Tensor:
        return self.weight * self.gan + self.feature_matching_weight * self.feature_matching


class AdversarialLoss(nn.Module):
    """Generator and discriminator terms around ``discriminator``.

    The discriminator returns logits (a Tensor, one sub-discriminator) or a
    :class:`DiscriminatorOutput` (several); GAN losses are summed over sub-discriminators (DAC).

    Args:
        discriminator: any module mapping a batch to real/fake logits or a DiscriminatorOutput.
        weight: generator GAN-loss weight.
        start_step: the GAN and feature-matching terms weigh 0 before this step.
        adaptive: scale ``weight`` by the ratio of reconstruction to GAN gradient norms at
            the decoder's last layer (needs ``last_layer``).
        lecam_weight / lecam_decay: LeCAM regulariser in the discriminator loss and the EMA
            decay of the mean logits it uses. Only for single-output discriminators (the
            EMAs of one logit scale would not fit several sub-discriminators).
        loss: ``"hinge"`` (D: halved hinge; G: -mean(fake)) or ``"lsgan"`` (D: mean((1 - real)^2)
            + mean(fake^2); G: mean((1 - fake)^2)).
        feature_matching_weight: weight of the L1 between hidden features of D(recon) and D(x)
            (:func:`feature_matching_loss`); needs a discriminator that returns features.
    """

    def __init__(self, discriminator: nn.Module, weight: float = 0.1, start_step: int = 0, adaptive: bool = True,
                 lecam_weight: float = 0.0, lecam_decay: float = 0.999, loss: str = "hinge",
                 feature_matching_weight: float = 0.0) -> None:
        super().__init__()
        if weight < 0 or lecam_weight < 0 or feature_matching_weight < 0:
            raise ValueError(f"weight, lecam_weight and feature_matching_weight must be >= 0, got {weight}, {lecam_weight}, "
                             f"{feature_matching_weight}")
        if start_step < 0:
            raise ValueError(f"start_step must be >= 0, got {start_step}")
        if not 0.0 <= lecam_decay < 1.0:
            raise ValueError(f"lecam_decay must be in [0, 1), got {lecam_decay}")
        if loss not in GAN_LOSSES:
            raise ValueError(f"GAN loss must be one of {GAN_LOSSES}, got {loss!r}")
        self.discriminator = discriminator
        self.weight, self.start_step, self.adaptive = float(weight), int(start_step), bool(adaptive)
        self.lecam_weight, self.lecam_decay = float(lecam_weight), float(lecam_decay)
        self.loss, self.feature_matching_weight = loss, float(feature_matching_weight)
        self.register_buffer("ema_logits_real", torch.zeros(()))
        self.register_buffer("ema_logits_fake", torch.zeros(()))
        self.register_buffer("ema_initialised", torch.zeros((), dtype=torch.bool))

    def active(self, step: int) -> bool:
        return step >= self.start_step

    def generator_terms(self, recon: Tensor, rec_loss: Tensor, step: int, last_layer: Tensor | None,
                        x: Tensor | None = None) -> GeneratorTerms:
        """GAN and feature-matching terms for the generator (D's parameters get no gradient).

        recon: the reconstruction (with grad); rec_loss: the weighted reconstruction loss (for
        the adaptive weight); x: the targets, needed when ``feature_matching_weight > 0``.
        """
        zero = recon.new_zeros((), dtype=torch.float32)
        if not self.active(step):
            return GeneratorTerms(zero, zero, zero, zero)
        use_fm = self.feature_matching_weight > 0
        if use_fm and x is None:
            raise ValueError("feature matching needs the targets: generator_terms(..., x=x)")
        d = self.discriminator
        flags = [p.requires_grad for p in d.parameters()]
        d.requires_grad_(False)  # the generator step must not write into D's gradients
        try:
            fake = as_discriminator_output(d(recon))
            gan = sum(gan_g_loss(self.loss, logit.float()) for logit in fake.logits)
            fm = zero
            if use_fm:
                with torch.no_grad():
                    real = as_discriminator_output(d(x.detach()))
                fm = feature_matching_loss(fake.features, real.features)
        finally:
            for p, f in zip(d.parameters(), flags):
                p.requires_grad_(f)
        weight = torch.tensor(self.weight, device=recon.device)
        if self.adaptive and torch.is_grad_enabled() and recon.requires_grad:
            if last_layer is None:
                raise ValueError(
                    "adaptive GAN weight needs last_layer (pass last_layer=tok.last_layer_weight) "
                    "or build AdversarialLoss(adaptive=False)"
                )
            weight = self.weight * adaptive_weight(rec_loss, gan, last_layer)
        fm_weight = torch.tensor(self.feature_matching_weight, device=recon.device)
        return GeneratorTerms(gan, weight, fm, fm_weight)

    def discriminator_loss(self, x: Tensor, recon_detached: Tensor, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        """(total, terms) for the discriminator's optimizer; the total weighs 0 before ``start_step``.

        terms: d_loss (summed over sub-discriminators), lecam, logits_real, logits_fake (the
        mean over sub-discriminators of their batch-mean logits).
        """
        real = as_discriminator_output(self.discriminator(x.detach()))
        fake = as_discriminator_output(self.discriminator(recon_detached.detach()))
        if len(real.logits) != len(fake.logits):
            raise ValueError(f"discriminator gave {len(real.logits)} real but {len(fake.logits)} fake logits")
        reals, fakes = [t.float() for t in real.logits], [t.float() for t in fake.logits]
        d_loss = sum(gan_d_loss(self.loss, r, f) for r, f in zip(reals, fakes))
        mean_real = sum(r.detach().mean() for r in reals) / len(reals)
        mean_fake = sum(f.detach().mean() for f in fakes) / len(fakes)
        lecam = d_loss.new_zeros(())
        active = self.active(step)
        if self.lecam_weight > 0:
            if len(reals) > 1:
                raise ValueError(f"LeCAM needs a single-output discriminator, this one has {len(reals)} sub-discriminators; "
                                 "set lecam_weight=0")
            lecam = lecam_reg(reals[0], fakes[0], self.ema_logits_real, self.ema_logits_fake)
        if active and self.training:
            self._update_ema(mean_real, mean_fake)
        total = (d_loss + self.lecam_weight * lecam) * (1.0 if active else 0.0)
        terms = {"d_loss": d_loss.detach(), "lecam": lecam.detach(), "logits_real": mean_real, "logits_fake": mean_fake}
        return total, terms

    @torch.no_grad()
    def _update_ema(self, real: Tensor, fake: Tensor) -> None:
        if not bool(self.ema_initialised):
            self.ema_logits_real.copy_(real)
            self.ema_logits_fake.copy_(fake)
            self.ema_initialised.fill_(True)
        else:
            self.ema_logits_real.lerp_(real, 1 - self.lecam_decay)
            self.ema_logits_fake.lerp_(fake, 1 - self.lecam_decay)
