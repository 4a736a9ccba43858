"""Per-item audio quality metrics on waveform batches ``(B, C, S)`` (estimate first, reference second).

- :func:`si_sdr`: scale-invariant SDR in dB (zero-mean, per channel, averaged over channels)
- :func:`mel_distance` / :func:`stft_distance`: the spectral distances of ``mmtok.losses.spectral``
  (DAC multi-scale log-mel L1; Parallel-WaveGAN multi-resolution STFT), one value per item
- :func:`pesq_wb`: wideband PESQ (the ``pesq`` package) at 16 kHz, other rates resampled
- :func:`stoi`: STOI (``pystoi``, ``extended=False``; it resamples to 10 kHz itself)

PESQ and STOI see the mono mixdown (mean over channels) and return NaN for an item they
cannot score (silence, too short); callers count those.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor

PESQ_RATE = 16000


def _check(est: Tensor, ref: Tensor) -> None:
    if ref.ndim != 3 or est.shape != ref.shape:
        raise ValueError(f"expected estimate and reference of the same shape (B, C, S), got {tuple(est.shape)} and {tuple(ref.shape)}")


def si_sdr(est: Tensor, ref: Tensor, zero_mean: bool = True) -> Tensor:
    """Scale-invariant SDR in dB: est, ref (B, C, S) -> (B,) (mean over channels).

    ``10 log10(|a r|^2 / |a r - e|^2)`` with ``a = <e, r> / |r|^2`` in float64, with the
    epsilon guards of ``torchmetrics`` (identical signals give a large finite value).
    """
    _check(est, ref)
    e, r = est.double(), ref.double()
    if zero_mean:
        e, r = e - e.mean(-1, keepdim=True), r - r.mean(-1, keepdim=True)
    eps = torch.finfo(torch.float64).eps
    alpha = ((e * r).sum(-1, keepdim=True) + eps) / (r.pow(2).sum(-1, keepdim=True) + eps)
    target = alpha * r
    val = (target.pow(2).sum(-1) + eps) / ((target - e).pow(2).sum(-1) + eps)
    return (10 * torch.log10(val)).mean(-1)


def spectral_parameters() -> dict[str, Any]:
    """The parameters of :func:`mel_distance` / :func:`stft_distance` (recorded in eval protocols)."""
    from mmtok.losses import spectral as sp

    return {
        "mel_distance": {"definition": "sum over scales of mean |log10 max(mel, 1e-5) - log10 max(mel_ref, 1e-5)|; "
                                       "magnitude mels (slaney), Hann, hop = window / 4",
                         "n_mels": list(sp.DAC_N_MELS), "window_lengths": list(sp.DAC_WINDOW_LENGTHS)},
        "stft_distance": {"definition": "mean over resolutions of spectral convergence + mean |log |X| - log |X_ref||, "
                                        "Hann, magnitudes floored at sqrt(1e-7)",
                          "fft_sizes": list(sp.PWG_FFT_SIZES), "hop_sizes": list(sp.PWG_HOP_SIZES),
                          "win_lengths": list(sp.PWG_WIN_LENGTHS)},
    }


def mel_distance(est: Tensor, ref: Tensor, sample_rate: int) -> Tensor:
    """Multi-scale log-mel L1 (DAC's), est, ref (B, C, S) -> (B,); 0 for identical signals.
    Needs S > 1024 (the largest window / 2)."""
    from mmtok.losses.spectral import mel_distance as _mel

    _check(est, ref)
    return _mel(ref, est, sample_rate, reduction="none")


def stft_distance(est: Tensor, ref: Tensor) -> Tensor:
    """Multi-resolution STFT distance (spectral convergence + log-magnitude L1), est, ref (B, C, S) -> (B,).
    Needs S > 1024 (the largest FFT / 2)."""
    from mmtok.losses.spectral import stft_distance as _stft

    _check(est, ref)
    return _stft(ref, est, reduction="none")


def _mono(x: Tensor, sample_rate: int, rate: int | None = None) -> np.ndarray:
    """(B, C, S) -> (B, S') float64 numpy mono mixdown, resampled to ``rate`` when given."""
    m = x.detach().float().mean(1).cpu()
    if rate is not None and rate != sample_rate:
        from torchaudio.functional import resample

        m = resample(m, int(sample_rate), int(rate))
    return m.double().numpy()


def pesq_wb(est: Tensor, ref: Tensor, sample_rate: int) -> Tensor:
    """Wideband PESQ (MOS-LQO, about -0.5 to 4.64): est, ref (B, C, S) -> (B,) float64.

    Mono mixdown, resampled to 16 kHz with ``torchaudio.functional.resample`` when
    ``sample_rate`` differs. NaN where PESQ refuses the item (no utterance found, shorter
    than 1/4 s, ...).
    """
    from pesq import PesqError, pesq

    _check(est, ref)
    e, r = _mono(est, sample_rate, PESQ_RATE), _mono(ref, sample_rate, PESQ_RATE)
    out = np.full(len(e), math.nan)
    for i in range(len(e)):
        if not np.any(r[i]):  # a silent reference has no utterance to score
            continue
        try:
            out[i] = pesq(PESQ_RATE, r[i], e[i], "wb")
        except (PesqError, ValueError):
            pass
    return torch.from_numpy(out)


def stoi(est: Tensor, ref: Tensor, sample_rate: int) -> Tensor:
    """STOI in [0, 1] (``pystoi``, ``extended=False``): est, ref (B, C, S) -> (B,) float64.

    Mono mixdown at ``sample_rate`` (pystoi resamples to 10 kHz). NaN where pystoi cannot
    score the item (fewer than 30 non-silent frames of the reference: silence, < ~0.4 s).
    """
    from pystoi import stoi as _stoi

    _check(est, ref)
    e, r = _mono(est, sample_rate), _mono(ref, sample_rate)
    out = np.full(len(e), math.nan)
    for i in range(len(e)):
        if not np.any(r[i]):  # a silent reference has no frames to score
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            v = float(_stoi(r[i], e[i], int(sample_rate), extended=False))
        if not any("Not enough STFT frames" in str(w.message) for w in caught) and math.isfinite(v):
            out[i] = v
    return torch.from_numpy(out)
