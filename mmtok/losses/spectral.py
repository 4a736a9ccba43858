"""Spectral reconstruction losses for audio waveforms ``(B, C, S)`` in [-1, 1].

- :class:`MultiScaleMelLoss` (registered term ``mel``): DAC-style L1 between log10 mel
  magnitudes at several window sizes, summed over the scales.
- :class:`MultiResolutionSTFTLoss` (registered term ``stft``): Parallel-WaveGAN-style
  spectral convergence + log-magnitude L1, averaged over the resolutions.

Both run in fp32 with autocast disabled and fold channels into the batch. The functional
forms :func:`mel_distance` / :func:`stft_distance` compute the same numbers without
gradients (``reduction="none"`` gives one value per item) for metric suites.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch
from torch import Tensor, nn

from mmtok.losses.terms import register_loss_term

DAC_N_MELS: tuple[int, ...] = (5, 10, 20, 40, 80, 160, 320)
DAC_WINDOW_LENGTHS: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048)
PWG_FFT_SIZES: tuple[int, ...] = (512, 1024, 2048)
PWG_HOP_SIZES: tuple[int, ...] = (50, 120, 240)
PWG_WIN_LENGTHS: tuple[int, ...] = (240, 600, 1200)


def _check_pair(recon: Tensor, x: Tensor, what: str, min_len: int) -> None:
    if x.ndim != 3:
        raise ValueError(f"{what} expects waveforms (B, C, S), got target shape {tuple(x.shape)}")
    if recon.shape != x.shape:
        raise ValueError(f"{what}: reconstruction shape {tuple(recon.shape)} differs from target shape {tuple(x.shape)}")
    if x.shape[-1] <= min_len:
        raise ValueError(f"{what} needs more than {min_len} samples per item (largest window / 2), got {x.shape[-1]}")


def _fold(x: Tensor) -> Tensor:
    """(B, C, S) -> (B*C, S) in fp32."""
    return x.float().reshape(-1, x.shape[-1])


def _per_item(v: Tensor, batch: int, reduction: str) -> Tensor:
    """v: (B*C,) per folded row -> mean over rows (0-dim) or per item (B,)."""
    if reduction == "mean":
        return v.mean()
    if reduction == "none":
        return v.reshape(batch, -1).mean(dim=1)
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


class MultiScaleMelLoss(nn.Module):
    """``sum_s log_weight * |log10(max(m_s(recon), eps)^pow) - log10(max(m_s(x), eps)^pow)|
    + mag_weight * |m_s(recon) - m_s(x)|`` (means over mel bins and frames), where ``m_s`` is the
    magnitude mel spectrogram of scale ``s`` (window ``w_s``, hop ``w_s // 4``, Hann, slaney mels).

    Args:
        sample_rate: sample rate of the waveforms (sets the mel filterbanks).
        n_mels / window_lengths: one entry per scale (DAC: 5..320 mels, windows 32..2048).
        clamp_eps: floor of the mel magnitudes before the log.
        mag_weight / log_weight: weights of the linear and log-magnitude L1 (DAC: 0 / 1).
        pow: exponent applied to the clamped magnitudes before the log.
        f_min / f_max: mel band edges in Hz (f_max None = Nyquist).
    """

    def __init__(self, sample_rate: int, n_mels: Sequence[int] = DAC_N_MELS, window_lengths: Sequence[int] = DAC_WINDOW_LENGTHS,
                 clamp_eps: float = 1e-5, mag_weight: float = 0.0, log_weight: float = 1.0, pow: float = 1.0,
                 f_min: float = 0.0, f_max: float | None = None) -> None:
        super().__init__()
        from torchaudio.transforms import MelSpectrogram  # heavy import, only for audio runs

        n_mels, window_lengths = tuple(int(n) for n in n_mels), tuple(int(w) for w in window_lengths)
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be > 0, got {sample_rate}")
        if not n_mels or len(n_mels) != len(window_lengths):
            raise ValueError(f"n_mels {n_mels} and window_lengths {window_lengths} need one entry per scale")
        if min(window_lengths) < 4 or min(n_mels) < 1:
            raise ValueError(f"window lengths must be >= 4 and n_mels >= 1, got {window_lengths}, {n_mels}")
        if clamp_eps <= 0 or mag_weight < 0 or log_weight < 0:
            raise ValueError(f"clamp_eps must be > 0 and weights >= 0, got {clamp_eps}, {mag_weight}, {log_weight}")
        self.sample_rate, self.n_mels, self.window_lengths = int(sample_rate), n_mels, window_lengths
        self.clamp_eps, self.pow = float(clamp_eps), float(pow)
        self.mag_weight, self.log_weight = float(mag_weight), float(log_weight)
        self.mels = nn.ModuleList(
            MelSpectrogram(self.sample_rate, n_fft=w, win_length=w, hop_length=w // 4, f_min=f_min, f_max=f_max, n_mels=n,
                           power=1.0, center=True, pad_mode="reflect", norm="slaney", mel_scale="slaney")
            for n, w in zip(n_mels, window_lengths)
        )

    def distance(self, recon: Tensor, x: Tensor, reduction: str = "mean") -> Tensor:
        """recon, x: (B, C, S) -> 0-dim (``mean``) or (B,) (``none``)."""
        _check_pair(recon, x, "MultiScaleMelLoss", max(self.window_lengths) // 2)
        with torch.autocast(device_type=x.device.type, enabled=False):
            r, t = _fold(recon), _fold(x)
            total = r.new_zeros(r.shape[0])
            for mel in self.mels:
                mr, mt = mel(r), mel(t)  # (B*C, n_mels, frames)
                if self.log_weight > 0:
                    lr = mr.clamp(min=self.clamp_eps).pow(self.pow).log10()
                    lt = mt.clamp(min=self.clamp_eps).pow(self.pow).log10()
                    total = total + self.log_weight * (lr - lt).abs().mean(dim=(1, 2))
                if self.mag_weight > 0:
                    total = total + self.mag_weight * (mr - mt).abs().mean(dim=(1, 2))
        return _per_item(total, x.shape[0], reduction)

    def forward(self, recon: Tensor, x: Tensor) -> Tensor:
        """recon, x: (B, C, S) -> 0-dim loss."""
        return self.distance(recon, x)


class MultiResolutionSTFTLoss(nn.Module):
    """Mean over resolutions of ``sc_weight * SC + mag_weight * L1(log |STFT|)`` (Parallel WaveGAN).

    SC (spectral convergence) = ``||M(x) - M(recon)||_F / ||M(x)||_F`` per waveform (channels
    are separate waveforms; batch-size independent, unlike a whole-batch norm);
    magnitudes ``M = sqrt(max(re^2 + im^2, 1e-7))`` with a Hann window.

    Args:
        fft_sizes / hop_sizes / win_lengths: one entry per resolution (defaults: PWG's).
        sc_weight / mag_weight: weights of the two parts.
    """

    def __init__(self, fft_sizes: Sequence[int] = PWG_FFT_SIZES, hop_sizes: Sequence[int] = PWG_HOP_SIZES,
                 win_lengths: Sequence[int] = PWG_WIN_LENGTHS, sc_weight: float = 1.0, mag_weight: float = 1.0) -> None:
        super().__init__()
        fft_sizes, hop_sizes, win_lengths = (tuple(int(v) for v in s) for s in (fft_sizes, hop_sizes, win_lengths))
        if not fft_sizes or not len(fft_sizes) == len(hop_sizes) == len(win_lengths):
            raise ValueError(f"fft_sizes {fft_sizes}, hop_sizes {hop_sizes}, win_lengths {win_lengths}: one entry per resolution")
        for n, h, w in zip(fft_sizes, hop_sizes, win_lengths):
            if not (0 < w <= n and h > 0):
                raise ValueError(f"need 0 < win_length <= fft_size and hop > 0, got fft {n}, hop {h}, win {w}")
        if sc_weight < 0 or mag_weight < 0:
            raise ValueError(f"weights must be >= 0, got {sc_weight}, {mag_weight}")
        self.fft_sizes, self.hop_sizes, self.win_lengths = fft_sizes, hop_sizes, win_lengths
        self.sc_weight, self.mag_weight = float(sc_weight), float(mag_weight)
        for i, w in enumerate(win_lengths):
            self.register_buffer(f"window{i}", torch.hann_window(w), persistent=False)

    def _mag(self, x: Tensor, i: int) -> Tensor:
        """(N, S) -> (N, freq, frames) magnitudes."""
        spec = torch.stft(x, self.fft_sizes[i], self.hop_sizes[i], self.win_lengths[i], getattr(self, f"window{i}"),
                          center=True, pad_mode="reflect", return_complex=True)
        return (spec.real.pow(2) + spec.imag.pow(2)).clamp(min=1e-7).sqrt()

    def distance(self, recon: Tensor, x: Tensor, reduction: str = "mean") -> Tensor:
        """recon, x: (B, C, S) -> 0-dim (``mean``) or (B,) (``none``)."""
        _check_pair(recon, x, "MultiResolutionSTFTLoss", max(self.fft_sizes) // 2)
        with torch.autocast(device_type=x.device.type, enabled=False):
            r, t = _fold(recon), _fold(x)
            total = r.new_zeros(r.shape[0])
            for i in range(len(self.fft_sizes)):
                mr, mt = self._mag(r, i), self._mag(t, i)
                sc = (mt - mr).flatten(1).norm(dim=1) / mt.flatten(1).norm(dim=1)
                log_l1 = (mt.log() - mr.log()).abs().mean(dim=(1, 2))
                total = total + self.sc_weight * sc + self.mag_weight * log_l1
        return _per_item(total / len(self.fft_sizes), x.shape[0], reduction)

    def forward(self, recon: Tensor, x: Tensor) -> Tensor:
        """recon, x: (B, C, S) -> 0-dim loss."""
        return self.distance(recon, x)


@lru_cache(maxsize=8)
def _mel_module(sample_rate: int, n_mels: tuple[int, ...], window_lengths: tuple[int, ...], device: str) -> MultiScaleMelLoss:
    return MultiScaleMelLoss(sample_rate, n_mels, window_lengths).to(device)


@lru_cache(maxsize=8)
def _stft_module(fft_sizes: tuple[int, ...], hop_sizes: tuple[int, ...], win_lengths: tuple[int, ...],
                 device: str) -> MultiResolutionSTFTLoss:
    return MultiResolutionSTFTLoss(fft_sizes, hop_sizes, win_lengths).to(device)


@torch.no_grad()
def mel_distance(x: Tensor, y: Tensor, sample_rate: int, n_mels: Sequence[int] = DAC_N_MELS,
                 window_lengths: Sequence[int] = DAC_WINDOW_LENGTHS, reduction: str = "mean") -> Tensor:
    """:class:`MultiScaleMelLoss` between ``x`` (reference) and ``y`` (estimate), both (B, C, S);
    0-dim (``mean``) or (B,) (``none``). Symmetric in x and y."""
    m = _mel_module(int(sample_rate), tuple(int(n) for n in n_mels), tuple(int(w) for w in window_lengths), str(x.device))
    return m.distance(y, x, reduction)


@torch.no_grad()
def stft_distance(x: Tensor, y: Tensor, fft_sizes: Sequence[int] = PWG_FFT_SIZES, hop_sizes: Sequence[int] = PWG_HOP_SIZES,
                  win_lengths: Sequence[int] = PWG_WIN_LENGTHS, reduction: str = "mean") -> Tensor:
    """:class:`MultiResolutionSTFTLoss` of estimate ``y`` against reference ``x`` (spectral
    convergence is normalised by ``x``), both (B, C, S); 0-dim (``mean``) or (B,) (``none``)."""
    sizes = (tuple(int(v) for v in s) for s in (fft_sizes, hop_sizes, win_lengths))
    m = _stft_module(*sizes, str(x.device))
    return m.distance(y, x, reduction)


def _mel_term(sample_rate: int | None = None, n_mels: Sequence[int] = DAC_N_MELS,
              window_lengths: Sequence[int] = DAC_WINDOW_LENGTHS, **options: float) -> MultiScaleMelLoss:
    if sample_rate is None:
        raise ValueError("loss term 'mel' needs sample_rate (e.g. extra_terms={'mel': (15.0, {'sample_rate': 16000})})")
    return MultiScaleMelLoss(sample_rate, n_mels, window_lengths, **options)


def _stft_term(sample_rate: int | None = None, **options: Sequence[int] | float) -> MultiResolutionSTFTLoss:
    """``sample_rate`` is accepted (and unused) so configs can pass it to every audio term."""
    return MultiResolutionSTFTLoss(**options)  # type: ignore[arg-type]


register_loss_term("mel", _mel_term)
register_loss_term("stft", _stft_term)
