"""Tokenizer training losses: LPIPS, PatchGAN discriminator, and one ``TokenizerLoss``."""

from mmtok.losses.discriminator import PatchGANDiscriminator
from mmtok.losses.perceptual import LPIPS, resolve_trunk_weights, trunk_cache_path
from mmtok.losses.tokenizer_loss import LossTerms, TokenizerLoss, adaptive_weight, hinge_d_loss, lecam_reg

__all__ = [
    "LPIPS",
    "PatchGANDiscriminator",
    "TokenizerLoss",
    "LossTerms",
    "adaptive_weight",
    "hinge_d_loss",
    "lecam_reg",
    "resolve_trunk_weights",
    "trunk_cache_path",
]
