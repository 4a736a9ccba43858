"""One loss object for single-stage tokenizer training: reconstruction (L1 / L2), LPIPS,
PatchGAN hinge loss with adaptive weight and start step, LeCAM regulariser, quantizer terms.

    loss_fn = TokenizerLoss(perceptual="auto", gan_weight=0.1, gan_start_step=20_000)
    out = tok(x)
    g = loss_fn.generator_loss(x, out, step, last_layer=tok.last_layer_weight)
    g.total.backward(); opt.step()
    d = loss_fn.discriminator_loss(x, out.recon.detach(), step)
    d.total.backward(); d_opt.step()           # d_opt over loss_fn.discriminator.parameters()

Every term is returned under its name in ``terms`` (detached) so recipes log them as is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmtok.losses.discriminator import PatchGANDiscriminator
from mmtok.losses.perceptual import LPIPS
from mmtok.tokenizer import TokenizerOutput


@dataclass
class LossTerms:
    """total: 0-dim tensor to back-propagate; terms: detached 0-dim tensors by name."""

    total: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)


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


class TokenizerLoss(nn.Module):
    """Named-weight loss for tokenizer training (see module docstring).

    Args:
        l1_weight, l2_weight: pixel reconstruction weights.
        perceptual_weight: LPIPS weight (0 or ``perceptual=None`` disables it).
        gan_weight: generator hinge-loss weight (0 disables the GAN; no discriminator is built).
        gan_start_step: the GAN terms switch on at this step (before it they weigh 0).
        adaptive_gan_weight: scale ``gan_weight`` by the ratio of reconstruction to GAN
            gradient norms at the decoder's last layer (needs ``last_layer``).
        lecam_weight: LeCAM regulariser weight in the discriminator loss.
        quantizer_weight: weight of the tokenizer's own aux loss (``out.loss``).
        perceptual: "auto" / "random" / a path: LPIPS trunk weights (see ``LPIPS``); None: no LPIPS.
        perceptual_net: LPIPS trunk ("vgg", "alex", "squeeze").
        discriminator: a discriminator module; None builds a ``PatchGANDiscriminator()``
            when ``gan_weight > 0``.
        lecam_decay: EMA decay of the mean real / fake logits used by LeCAM.
    """

    def __init__(
        self,
        l1_weight: float = 1.0,
        l2_weight: float = 0.0,
        perceptual_weight: float = 1.0,
        gan_weight: float = 0.1,
        gan_start_step: int = 0,
        adaptive_gan_weight: bool = True,
        lecam_weight: float = 0.0,
        quantizer_weight: float = 1.0,
        perceptual: str | Path | None = "random",
        perceptual_net: str = "vgg",
        discriminator: nn.Module | None = None,
        lecam_decay: float = 0.999,
    ) -> None:
        super().__init__()
        for name, v in dict(
            l1_weight=l1_weight, l2_weight=l2_weight, perceptual_weight=perceptual_weight, gan_weight=gan_weight,
            lecam_weight=lecam_weight, quantizer_weight=quantizer_weight,
        ).items():
            if v < 0:
                raise ValueError(f"{name} must be >= 0, got {v}")
        if gan_start_step < 0:
            raise ValueError(f"gan_start_step must be >= 0, got {gan_start_step}")
        if not 0.0 <= lecam_decay < 1.0:
            raise ValueError(f"lecam_decay must be in [0, 1), got {lecam_decay}")
        self.l1_weight, self.l2_weight = float(l1_weight), float(l2_weight)
        self.perceptual_weight, self.gan_weight = float(perceptual_weight), float(gan_weight)
        self.gan_start_step, self.adaptive_gan_weight = int(gan_start_step), bool(adaptive_gan_weight)
        self.lecam_weight, self.quantizer_weight, self.lecam_decay = float(lecam_weight), float(quantizer_weight), float(lecam_decay)
        self.perceptual: LPIPS | None = None
        if perceptual is not None and perceptual_weight > 0:
            self.perceptual = LPIPS(net=perceptual_net, weights=perceptual)
        self.discriminator: nn.Module | None = None
        if gan_weight > 0:
            self.discriminator = discriminator if discriminator is not None else PatchGANDiscriminator()
        self.register_buffer("ema_logits_real", torch.zeros(()))
        self.register_buffer("ema_logits_fake", torch.zeros(()))
        self.register_buffer("ema_initialised", torch.zeros((), dtype=torch.bool))

    def gan_active(self, step: int) -> bool:
        return self.discriminator is not None and step >= self.gan_start_step

    @staticmethod
    def _check_pair(x: Tensor, recon: Tensor) -> None:
        if recon.shape != x.shape:
            raise ValueError(f"reconstruction shape {tuple(recon.shape)} differs from input shape {tuple(x.shape)}")

    def generator_loss(self, x: Tensor, out: TokenizerOutput, step: int, last_layer: Tensor | None = None) -> LossTerms:
        """Loss for the tokenizer's optimizer. x: (B, 3, H, W) targets; out: ``tok(x)``.

        terms: l1, l2, perceptual, gan, gan_weight (the effective weight), quantizer.
        """
        recon = out.recon
        self._check_pair(x, recon)
        diff = recon.float() - x.float()
        l1 = diff.abs().mean()
        l2 = diff.pow(2).mean()
        rec = self.l1_weight * l1 + self.l2_weight * l2
        perceptual = recon.new_zeros((), dtype=torch.float32)
        if self.perceptual is not None:
            perceptual = self.perceptual(recon.float(), x.float()).mean()
            rec = rec + self.perceptual_weight * perceptual
        gan = recon.new_zeros((), dtype=torch.float32)
        weight = recon.new_zeros((), dtype=torch.float32)
        if self.gan_active(step):
            d = self.discriminator
            flags = [p.requires_grad for p in d.parameters()]
            d.requires_grad_(False)  # the generator step must not write into D's gradients
            try:
                gan = -d(recon).float().mean()
            finally:
                for p, f in zip(d.parameters(), flags):
                    p.requires_grad_(f)
            weight = torch.tensor(self.gan_weight, device=recon.device)
            if self.adaptive_gan_weight and torch.is_grad_enabled() and recon.requires_grad:
                if last_layer is None:
                    raise ValueError(
                        "adaptive_gan_weight=True needs last_layer (pass last_layer=tok.last_layer_weight) "
                        "or build TokenizerLoss(adaptive_gan_weight=False)"
                    )
                weight = self.gan_weight * adaptive_weight(rec, gan, last_layer)
        quant = out.loss.float().reshape(())
        total = rec + weight * gan + self.quantizer_weight * quant
        terms = {"l1": l1, "l2": l2, "perceptual": perceptual, "gan": gan, "gan_weight": weight, "quantizer": quant}
        return LossTerms(total=total, terms={k: v.detach().float().reshape(()) for k, v in terms.items()})

    def discriminator_loss(self, x: Tensor, recon_detached: Tensor, step: int) -> LossTerms:
        """Hinge loss (+ LeCAM) for the discriminator's optimizer; weighs 0 before ``gan_start_step``.

        terms: d_loss, lecam, logits_real, logits_fake (batch means).
        """
        if self.discriminator is None:
            raise RuntimeError("this TokenizerLoss has no discriminator (gan_weight == 0)")
        self._check_pair(x, recon_detached)
        logits_real = self.discriminator(x.detach()).float()
        logits_fake = self.discriminator(recon_detached.detach()).float()
        d_loss = hinge_d_loss(logits_real, logits_fake)
        lecam = d_loss.new_zeros(())
        active = self.gan_active(step)
        if self.lecam_weight > 0:
            lecam = lecam_reg(logits_real, logits_fake, self.ema_logits_real, self.ema_logits_fake)
        if active and self.training:
            self._update_ema(logits_real.detach().mean(), logits_fake.detach().mean())
        total = (d_loss + self.lecam_weight * lecam) * (1.0 if active else 0.0)
        terms = {
            "d_loss": d_loss.detach(),
            "lecam": lecam.detach(),
            "logits_real": logits_real.detach().mean(),
            "logits_fake": logits_fake.detach().mean(),
        }
        return LossTerms(total=total, terms=terms)

    @torch.no_grad()
    def _update_ema(self, real: Tensor, fake: Tensor) -> None:
        if not bool(self.ema_initialised):
            self.ema_logits_real.copy_(real)
            self.ema_logits_fake.copy_(fake)
            self.ema_initialised.fill_(True)
        else:
            self.ema_logits_real.lerp_(real, 1 - self.lecam_decay)
            self.ema_logits_fake.lerp_(fake, 1 - self.lecam_decay)
