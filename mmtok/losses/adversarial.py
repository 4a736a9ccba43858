"""The adversarial part of tokenizer training, with a pluggable discriminator.

``AdversarialLoss`` owns any discriminator module (``forward(x) -> logits``: a PatchGAN for
images; a 3D patch or multi-scale STFT discriminator plugs in the same way), the hinge
loss, the adaptive generator weight at the decoder's last layer, the GAN start step and
the LeCAM regulariser. Discriminators are built by name with :func:`build_discriminator`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_DISCRIMINATORS: dict[str, Callable[..., nn.Module]] = {}


def register_discriminator(name: str, factory: Callable[..., nn.Module]) -> None:
    """``factory(in_channels=..., **options) -> nn.Module`` mapping a batch to logits."""
    _DISCRIMINATORS[name] = factory


def build_discriminator(name: str, **options: Any) -> nn.Module:
    if name not in _DISCRIMINATORS:
        raise ValueError(f"unknown discriminator {name!r}; known: {sorted(_DISCRIMINATORS)}")
    return _DISCRIMINATORS[name](**options)


def _patchgan(**options: Any) -> nn.Module:
    from mmtok.losses.discriminator import PatchGANDiscriminator

    return PatchGANDiscriminator(**options)


register_discriminator("patchgan", _patchgan)


def hinge_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """Discriminator hinge loss: mean(relu(1 - real)) + mean(relu(1 + fake)), halved."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def lecam_reg(logits_real: Tensor, logits_fake: Tensor, ema_real: Tensor, ema_fake: Tensor) -> Tensor:
    """LeCAM regulariser (Tseng et al. 2021): keeps D's predictions near the other side's EMA."""
    return F.relu(logits_real - ema_fake).pow(2).mean() + F.relu(ema_real - logits_fake).pow(2).mean()


def adaptive_weight(rec_loss: Tensor, gan_loss: Tensor, last_layer: Tensor, max_weight: float = 1e4) -> Tensor:
    """||d rec / d W|| / ||d gan / d W|| at the decoder's last layer ``W`` (VQGAN), detached."""
    g_rec = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
    w = g_rec.float().norm() / (g_gan.float().norm() + 1e-4)
    return w.clamp(0.0, max_weight).detach()


class AdversarialLoss(nn.Module):
    """Generator and discriminator terms around ``discriminator``.

    Args:
        discriminator: any module mapping a batch to real/fake logits.
        weight: generator hinge-loss weight.
        start_step: the GAN terms weigh 0 before this step.
        adaptive: scale ``weight`` by the ratio of reconstruction to GAN gradient norms at
            the decoder's last layer (needs ``last_layer``).
        lecam_weight / lecam_decay: LeCAM regulariser in the discriminator loss and the EMA
            decay of the mean logits it uses.
    """

    def __init__(self, discriminator: nn.Module, weight: float = 0.1, start_step: int = 0, adaptive: bool = True,
                 lecam_weight: float = 0.0, lecam_decay: float = 0.999) -> None:
        super().__init__()
        if weight < 0 or lecam_weight < 0:
            raise ValueError(f"weight and lecam_weight must be >= 0, got {weight}, {lecam_weight}")
        if start_step < 0:
            raise ValueError(f"start_step must be >= 0, got {start_step}")
        if not 0.0 <= lecam_decay < 1.0:
            raise ValueError(f"lecam_decay must be in [0, 1), got {lecam_decay}")
        self.discriminator = discriminator
        self.weight, self.start_step, self.adaptive = float(weight), int(start_step), bool(adaptive)
        self.lecam_weight, self.lecam_decay = float(lecam_weight), float(lecam_decay)
        self.register_buffer("ema_logits_real", torch.zeros(()))
        self.register_buffer("ema_logits_fake", torch.zeros(()))
        self.register_buffer("ema_initialised", torch.zeros((), dtype=torch.bool))

    def active(self, step: int) -> bool:
        return step >= self.start_step

    def generator_terms(self, recon: Tensor, rec_loss: Tensor, step: int, last_layer: Tensor | None) -> tuple[Tensor, Tensor]:
        """(gan, effective weight) for the generator; both 0 before ``start_step``."""
        zero = recon.new_zeros((), dtype=torch.float32)
        if not self.active(step):
            return zero, zero
        d = self.discriminator
        flags = [p.requires_grad for p in d.parameters()]
        d.requires_grad_(False)  # the generator step must not write into D's gradients
        try:
            gan = -d(recon).float().mean()
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
        return gan, weight

    def discriminator_loss(self, x: Tensor, recon_detached: Tensor, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        """(total, terms) for the discriminator's optimizer; the total weighs 0 before ``start_step``.

        terms: d_loss, lecam, logits_real, logits_fake (batch means).
        """
        logits_real = self.discriminator(x.detach()).float()
        logits_fake = self.discriminator(recon_detached.detach()).float()
        d_loss = hinge_d_loss(logits_real, logits_fake)
        lecam = d_loss.new_zeros(())
        active = self.active(step)
        if self.lecam_weight > 0:
            lecam = lecam_reg(logits_real, logits_fake, self.ema_logits_real, self.ema_logits_fake)
        if active and self.training:
            self._update_ema(logits_real.detach().mean(), logits_fake.detach().mean())
        total = (d_loss + self.lecam_weight * lecam) * (1.0 if active else 0.0)
        terms = {"d_loss": d_loss.detach(), "lecam": lecam.detach(),
                 "logits_real": logits_real.detach().mean(), "logits_fake": logits_fake.detach().mean()}
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
