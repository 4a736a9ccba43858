"""One loss object for single-stage tokenizer training, composed of parts:

- reconstruction terms by name (``l1``, ``l2``, ``perceptual``, ...; :mod:`mmtok.losses.terms`),
- an optional adversarial part with any discriminator, with hinge / LSGAN loss and feature
  matching (:class:`~mmtok.losses.adversarial.AdversarialLoss`),
- the tokenizer's own quantizer loss (``out.loss``).

    loss_fn = TokenizerLoss.from_weights(l1_weight=1.0, perceptual_weight=1.0, perceptual="auto",
                                         gan_weight=0.1, gan_start_step=20_000)
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
from typing import Any

import torch
from torch import Tensor, nn

from mmtok.losses.adversarial import AdversarialLoss, GeneratorTerms, build_discriminator
from mmtok.losses.terms import build_loss_term
from mmtok.tokenizer import TokenizerOutput


@dataclass
class LossTerms:
    """total: 0-dim tensor to back-propagate; terms: detached 0-dim tensors by name."""

    total: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)


class TokenizerLoss(nn.Module):
    """``sum_i w_i * term_i(recon, x) + gan_weight * gan [+ fm_weight * feature_matching]
    + quantizer_weight * out.loss``.

    Args:
        terms: name -> (weight, module or None). A ``None`` module (weight 0) is logged as 0,
            so every run of a recipe logs the same keys.
        adversarial: the GAN part, or None.
        quantizer_weight: weight of the tokenizer's own aux loss (``out.loss``).
    """

    def __init__(self, terms: dict[str, tuple[float, nn.Module | None]], adversarial: AdversarialLoss | None = None,
                 quantizer_weight: float = 1.0) -> None:
        super().__init__()
        for name, (w, _) in terms.items():
            if w < 0:
                raise ValueError(f"{name} weight must be >= 0, got {w}")
        if quantizer_weight < 0:
            raise ValueError(f"quantizer_weight must be >= 0, got {quantizer_weight}")
        self.weights = {name: float(w) for name, (w, _) in terms.items()}
        self.terms = nn.ModuleDict({name: m for name, (_, m) in terms.items() if m is not None})
        self.adversarial = adversarial
        self.quantizer_weight = float(quantizer_weight)

    @classmethod
    def from_weights(
        cls,
        l1_weight: float = 1.0,
        l2_weight: float = 0.0,
        perceptual_weight: float = 0.0,
        perceptual: str | Path | None = "auto",
        perceptual_net: str = "vgg",
        gan_weight: float = 0.0,
        gan_start_step: int = 0,
        adaptive_gan_weight: bool = True,
        lecam_weight: float = 0.0,
        lecam_decay: float = 0.999,
        quantizer_weight: float = 1.0,
        discriminator: nn.Module | None = None,
        extra_terms: dict[str, tuple[float, dict[str, Any]]] | None = None,
        gan_loss: str = "hinge",
        feature_matching_weight: float = 0.0,
        term_context: dict[str, Any] | None = None,
    ) -> "TokenizerLoss":
        """The usual recipe by named weights. ``perceptual``: LPIPS trunk weights ("auto" = the
        local torch cache, never downloaded; "random" only for tests; a path; None = no LPIPS).
        ``discriminator``: a module, or None to build a PatchGAN when ``gan_weight > 0``.
        ``extra_terms``: more registered terms, name -> (weight, options), e.g. audio
        ``{"mel": (15.0, {"sample_rate": 16000}), "stft": (1.0, {})}``.
        ``term_context``: data facts (``tok.preprocessing()``, e.g. ``sample_rate``) given to
        the extra terms that take them. ``gan_loss``: "hinge" or "lsgan"; ``feature_matching_weight``: L1 between the
        discriminator's hidden features of recon and x (needs a feature-returning
        discriminator such as ``audio``; used only when ``gan_weight > 0``)."""
        use_lpips = perceptual is not None and perceptual_weight > 0
        terms: dict[str, tuple[float, nn.Module | None]] = {
            "l1": (l1_weight, build_loss_term("l1")),
            "l2": (l2_weight, build_loss_term("l2")),
            "perceptual": (perceptual_weight, build_loss_term("perceptual", weights=str(perceptual), net=perceptual_net) if use_lpips else None),
        }
        for name, (w, opts) in (extra_terms or {}).items():
            terms[name] = (w, build_loss_term(name, term_context, **opts) if w > 0 else None)
        adv = None
        if gan_weight > 0:
            disc = discriminator if discriminator is not None else build_discriminator("patchgan")
            adv = AdversarialLoss(disc, gan_weight, gan_start_step, adaptive_gan_weight, lecam_weight, lecam_decay,
                                  loss=gan_loss, feature_matching_weight=feature_matching_weight)
        elif feature_matching_weight > 0:
            raise ValueError("feature_matching_weight > 0 needs the adversarial part (gan_weight > 0)")
        return cls(terms, adv, quantizer_weight)

    @property
    def discriminator(self) -> nn.Module | None:
        return self.adversarial.discriminator if self.adversarial is not None else None

    @discriminator.setter
    def discriminator(self, module: nn.Module) -> None:
        """Swap in the (e.g. DDP-wrapped) discriminator the recipe prepared."""
        if self.adversarial is None:
            raise RuntimeError("this TokenizerLoss has no adversarial part")
        self.adversarial.discriminator = module

    def gan_active(self, step: int) -> bool:
        return self.adversarial is not None and self.adversarial.active(step)

    @staticmethod
    def _check_pair(x: Tensor, recon: Tensor) -> None:
        if recon.shape != x.shape:
            raise ValueError(f"reconstruction shape {tuple(recon.shape)} differs from input shape {tuple(x.shape)}")

    def generator_loss(self, x: Tensor, out: TokenizerOutput, step: int, last_layer: Tensor | None = None) -> LossTerms:
        """Loss for the tokenizer's optimizer. x: targets (any modality); out: ``tok(x)``.

        terms: one per reconstruction term, then gan, gan_weight (the effective weight),
        feature_matching (only when the adversarial part has feature_matching_weight > 0, so a
        recipe's keys do not depend on the step), quantizer.
        """
        recon = out.recon
        self._check_pair(x, recon)
        rec = recon.new_zeros((), dtype=torch.float32)
        values: dict[str, Tensor] = {}
        for name, w in self.weights.items():
            if name in self.terms:
                values[name] = self.terms[name](recon, x)
                if w > 0:
                    rec = rec + w * values[name]
            else:
                values[name] = recon.new_zeros((), dtype=torch.float32)
        zero = recon.new_zeros((), dtype=torch.float32)
        adv = GeneratorTerms(zero, zero, zero, zero)
        if self.adversarial is not None:
            adv = self.adversarial.generator_terms(recon, rec, step, last_layer, x=x)
        quant = out.loss.float().reshape(())
        total = rec + adv.weight * adv.gan + self.quantizer_weight * quant
        terms = {**values, "gan": adv.gan, "gan_weight": adv.weight}
        if self.adversarial is not None and self.adversarial.feature_matching_weight > 0:
            total = total + adv.feature_matching_weight * adv.feature_matching
            terms["feature_matching"] = adv.feature_matching
        terms["quantizer"] = quant
        return LossTerms(total=total, terms={k: v.detach().float().reshape(()) for k, v in terms.items()})

    def discriminator_loss(self, x: Tensor, recon_detached: Tensor, step: int) -> LossTerms:
        """Hinge / LSGAN loss (+ LeCAM) for the discriminator's optimizer, summed over
        sub-discriminators; weighs 0 before the GAN start step."""
        if self.adversarial is None:
            raise RuntimeError("this TokenizerLoss has no discriminator (gan_weight == 0)")
        self._check_pair(x, recon_detached)
        total, terms = self.adversarial.discriminator_loss(x, recon_detached, step)
        return LossTerms(total=total, terms=terms)

    def state_buffers(self) -> dict[str, Tensor]:
        """Running state that must survive a resume (LeCAM EMAs), by name."""
        if self.adversarial is None:
            return {}
        return {k: v.detach().clone() for k, v in self.adversarial.named_buffers(recurse=False)}

    @torch.no_grad()
    def load_state_buffers(self, state: dict[str, Tensor]) -> None:
        if self.adversarial is None:
            return
        for k, v in self.adversarial.named_buffers(recurse=False):
            if k in state:
                v.copy_(state[k])
