"""Per-channel latent standardisation before a quantizer (``latent_norm: batch``).

Used by the 1D TiTok family and the causal 3D video family: the encoder's latents are brought to
zero mean and unit variance per channel, so a scalar quantizer (FSQ) sees values spread over its
levels and a VQ codebook sees a stable distribution from the first step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

LATENT_NORMS = ("none", "batch")


def check_latent_norm(latent_norm: str) -> str:
    """``latent_norm`` if it is one of ``LATENT_NORMS``, else a ``ValueError`` naming them."""
    if latent_norm not in LATENT_NORMS:
        raise ValueError(f"latent_norm must be one of {LATENT_NORMS}, got {latent_norm!r}")
    return latent_norm


def build_latent_norm(latent_norm: str, dim: int) -> "LatentNorm | None":
    """The module for ``latent_norm`` over ``dim`` channels (``None`` for ``"none"``)."""
    return LatentNorm(dim) if check_latent_norm(latent_norm) == "batch" else None


class LatentNorm(nn.Module):
    """Per-channel standardisation of (B, N, D) latents: zero mean, unit variance over B*N.

    Training forward passes (train mode, grad enabled) use the batch statistics and update
    running ones (``momentum``); everything else (``encode``, eval, ``no_grad``) uses the
    running statistics, so encoding stays side-effect free and deterministic. No affine
    parameters: the encoder cannot scale a channel into FSQ's saturated tails (where tanh's
    gradient vanishes and the channel dies), and a constant channel cannot survive.
    """

    def __init__(self, dim: int, momentum: float = 0.01, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))
        self.register_buffer("initted", torch.zeros((), dtype=torch.bool))

    def forward(self, z: Tensor) -> Tensor:
        if self.training and torch.is_grad_enabled():
            flat = z.float().reshape(-1, z.shape[-1])
            mean, var = flat.mean(0), flat.var(0, unbiased=False)
            with torch.no_grad():  # the first batch sets the statistics, later ones blend in
                m = torch.where(self.initted, self.momentum, 1.0).to(mean.dtype)
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(var.detach(), m)
                self.initted.fill_(True)
        else:
            mean, var = self.running_mean, self.running_var
        return ((z.float() - mean) * torch.rsqrt(var + self.eps)).to(z.dtype)

    def extra_repr(self) -> str:
        return f"{self.running_mean.numel()}, momentum={self.momentum}"
