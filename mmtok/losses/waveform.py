"""Waveform terms for audio codecs ``(B, C, S)`` in [-1, 1]: what the spectral terms cannot see.

Mel / STFT magnitudes carry the spectral envelope only: a codec trained on them alone
learns no phase (SI-SDR far below 0 dB) and drifts in level. These terms add it back:

- :class:`SISDRLoss` (registered term ``sisdr``): the negative scale-invariant SDR in dB,
  ``-10 log10(|a x|^2 / |a x - y|^2)`` with ``a = <y, x> / |x|^2`` (zero-mean), per channel,
  averaged. It asks for the waveform (phase) but, being scale-invariant, never for a
  smaller output (a waveform L1 / L2 under uncertain phase shrinks the output towards 0).
- :class:`CorrelationLoss` (registered term ``corr``): ``1 - rho`` with ``rho`` the Pearson
  correlation of output and target (zero-mean, per channel). SI-SDR is a function of it alone,
  ``10 log10(rho^2 / (1 - rho^2))``, so both ask for the same waveform, but this one is bounded
  (in [0, 2]) and its gradient does not grow as the correlation falls: the dB form's gradient
  scales like ``1 / rho`` near 0, and at weights >= 0.15 it drove short runs to an output
  uncorrelated with the input (SI-SDR -44 dB).
- :class:`GainLoss` (registered term ``gain``): ``|log10 rms(y) - log10 rms(x)|`` per
  channel (rms over the whole item, floored at ``eps``), the level the SI-SDR term ignores.

Silent targets are left out of both (items x channels whose reference rms is below
``min_rms``): SI-SDR against digital silence is undefined, and its gradient (like that of a
log level against a floor) grows as the output shrinks, which pushed short runs to collapse
to a constant output; the mel term still asks for silence there. Both run in fp32 with
autocast disabled; ``forward(recon, x)`` returns a 0-dim loss (0 when every target is silent).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmtok.losses.terms import register_loss_term


def _check(recon: Tensor, x: Tensor, what: str) -> None:
    if x.ndim != 3 or recon.shape != x.shape:
        raise ValueError(f"{what} expects waveforms (B, C, S) of one shape, got {tuple(recon.shape)} and {tuple(x.shape)}")


def _masked_mean(v: Tensor, keep: Tensor) -> Tensor:
    """Mean of ``v`` over ``keep`` (same shape, bool); 0 (with a graph) when nothing is kept."""
    return (v * keep).sum() / keep.sum().clamp_min(1)


class _CentredTerm(nn.Module):
    """Shared by the scale-invariant terms: options, and the per-item-and-channel values of
    ``term(y, r)`` on zero-mean fp32 copies, averaged over the non-silent targets."""

    def __init__(self, eps: float = 1e-8, min_rms: float = 1e-3) -> None:
        super().__init__()
        if eps <= 0 or min_rms < 0:
            raise ValueError(f"need eps > 0 and min_rms >= 0, got {eps}, {min_rms}")
        self.eps, self.min_rms = float(eps), float(min_rms)

    def term(self, y: Tensor, r: Tensor) -> Tensor:  # (B, C, S) x 2, zero-mean -> (B, C)
        raise NotImplementedError

    def forward(self, recon: Tensor, x: Tensor) -> Tensor:  # (B, C, S) x 2 -> 0-dim
        _check(recon, x, type(self).__name__)
        with torch.autocast(device_type=x.device.type, enabled=False):
            y, r = recon.float(), x.float()
            y, r = y - y.mean(-1, keepdim=True), r - r.mean(-1, keepdim=True)
            keep = r.pow(2).mean(-1) >= self.min_rms**2
            return _masked_mean(self.term(y, r), keep)


class SISDRLoss(_CentredTerm):
    """Negative SI-SDR in dB, mean over the items and channels whose target rms >= ``min_rms``."""

    def term(self, y: Tensor, r: Tensor) -> Tensor:
        a = (y * r).sum(-1, keepdim=True) / (r.pow(2).sum(-1, keepdim=True) + self.eps)
        target = a * r
        ratio = (target.pow(2).sum(-1) + self.eps) / ((target - y).pow(2).sum(-1) + self.eps)
        return -10 * torch.log10(ratio)


class CorrelationLoss(_CentredTerm):
    """``1 - rho`` (Pearson correlation over time, zero-mean), mean over the items and channels
    whose target rms >= ``min_rms``."""

    def term(self, y: Tensor, r: Tensor) -> Tensor:
        return 1 - (y * r).sum(-1) / (y.pow(2).sum(-1).mul(r.pow(2).sum(-1)).add(self.eps).sqrt())


class GainLoss(nn.Module):
    """``|log10 rms(recon) - log10 rms(x)|`` per item and channel, averaged over the targets
    with rms >= ``min_rms`` (rms floored at ``eps``)."""

    def __init__(self, eps: float = 1e-4, min_rms: float = 1e-3) -> None:
        super().__init__()
        if eps <= 0 or min_rms < 0:
            raise ValueError(f"need eps > 0 and min_rms >= 0, got {eps}, {min_rms}")
        self.eps, self.min_rms = float(eps), float(min_rms)

    def forward(self, recon: Tensor, x: Tensor) -> Tensor:  # (B, C, S) x 2 -> 0-dim
        _check(recon, x, "GainLoss")
        with torch.autocast(device_type=x.device.type, enabled=False):
            def level(v: Tensor) -> Tensor:
                return v.float().pow(2).mean(-1).add(self.eps**2).log10() / 2

            keep = x.float().pow(2).mean(-1) >= self.min_rms**2
            return _masked_mean((level(recon) - level(x)).abs(), keep)


def _sisdr_term(sample_rate: int | None = None, **options: float) -> SISDRLoss:
    """``sample_rate`` is accepted (and unused) so configs can pass it to every audio term."""
    return SISDRLoss(**options)


def _corr_term(sample_rate: int | None = None, **options: float) -> CorrelationLoss:
    return CorrelationLoss(**options)


def _gain_term(sample_rate: int | None = None, **options: float) -> GainLoss:
    return GainLoss(**options)


register_loss_term("sisdr", _sisdr_term)
register_loss_term("corr", _corr_term)
register_loss_term("gain", _gain_term)
