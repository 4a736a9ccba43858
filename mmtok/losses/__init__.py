"""Tokenizer training losses as parts: reconstruction terms (L1 / L2, LPIPS, ...), an
adversarial part with a pluggable discriminator, and ``TokenizerLoss`` composing them."""

from mmtok.losses.adversarial import (
    AdversarialLoss,
    adaptive_weight,
    build_discriminator,
    hinge_d_loss,
    lecam_reg,
    register_discriminator,
)
from mmtok.losses.discriminator import PatchGANDiscriminator
from mmtok.layers.lpips import LPIPS, resolve_trunk_weights, trunk_cache_path
from mmtok.losses.terms import PerceptualLoss, PixelLoss, build_loss_term, loss_term_names, register_loss_term
from mmtok.losses.tokenizer_loss import LossTerms, TokenizerLoss

__all__ = [
    "LPIPS",
    "PatchGANDiscriminator",
    "TokenizerLoss",
    "LossTerms",
    "AdversarialLoss",
    "PixelLoss",
    "PerceptualLoss",
    "register_loss_term",
    "build_loss_term",
    "loss_term_names",
    "register_discriminator",
    "build_discriminator",
    "adaptive_weight",
    "hinge_d_loss",
    "lecam_reg",
    "resolve_trunk_weights",
    "trunk_cache_path",
]
