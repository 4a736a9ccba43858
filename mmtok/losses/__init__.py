"""Tokenizer training losses as parts: reconstruction terms (L1 / L2, LPIPS, mel / STFT, ...),
an adversarial part with a pluggable discriminator (PatchGAN, 3D PatchGAN for clips; audio MPD / MR-STFT), and
``TokenizerLoss`` composing them."""

from mmtok.losses.adversarial import (
    AdversarialLoss,
    DiscriminatorOutput,
    GeneratorTerms,
    adaptive_weight,
    as_discriminator_output,
    build_discriminator,
    feature_matching_loss,
    gan_d_loss,
    gan_g_loss,
    hinge_d_loss,
    lecam_reg,
    lsgan_d_loss,
    register_discriminator,
)
from mmtok.losses.audio_discriminators import (
    CombinedDiscriminator,
    MultiPeriodDiscriminator,
    MultiResolutionSTFTDiscriminator,
)
from mmtok.losses.discriminator import PatchGANDiscriminator
from mmtok.losses.discriminator3d import PatchGAN3D
from mmtok.layers.lpips import LPIPS, resolve_trunk_weights, trunk_cache_path
from mmtok.losses.spectral import MultiResolutionSTFTLoss, MultiScaleMelLoss, mel_distance, stft_distance
from mmtok.losses.waveform import CorrelationLoss, GainLoss, SISDRLoss
from mmtok.losses.terms import PerceptualLoss, PixelLoss, build_loss_term, loss_term_names, register_loss_term
from mmtok.losses.tokenizer_loss import LossTerms, TokenizerLoss

__all__ = [
    "LPIPS",
    "PatchGANDiscriminator",
    "PatchGAN3D",
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
    "lsgan_d_loss",
    "gan_d_loss",
    "gan_g_loss",
    "feature_matching_loss",
    "lecam_reg",
    "DiscriminatorOutput",
    "GeneratorTerms",
    "as_discriminator_output",
    "MultiPeriodDiscriminator",
    "MultiResolutionSTFTDiscriminator",
    "CombinedDiscriminator",
    "MultiScaleMelLoss",
    "MultiResolutionSTFTLoss",
    "SISDRLoss",
    "GainLoss",
    "CorrelationLoss",
    "mel_distance",
    "stft_distance",
    "resolve_trunk_weights",
    "trunk_cache_path",
]
