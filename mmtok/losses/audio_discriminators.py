"""Waveform discriminators (HiFi-GAN / DAC style) for audio ``(B, C, S)`` in [-1, 1].

- :class:`MultiPeriodDiscriminator` (``mpd``): one 2D conv stack per period over the waveform
  folded to ``(S / p, p)``.
- :class:`MultiResolutionSTFTDiscriminator` (``mrstft``): one 2D conv stack per STFT size over
  the complex spectrogram (real / imag channels), optionally split into frequency bands.
- :class:`CombinedDiscriminator`; ``audio`` = MPD + multi-band MR-STFT (DAC's pair).

Channels: every channel is judged as its own mono waveform (folded into the batch), so the
same discriminator serves mono and stereo data; ``in_channels`` only validates inputs.
Outputs are :class:`DiscriminatorOutput` (logits and hidden features per sub-discriminator),
which :class:`~mmtok.losses.adversarial.AdversarialLoss` turns into GAN and feature-matching terms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from mmtok.losses.adversarial import DiscriminatorOutput, register_discriminator

DAC_BANDS: tuple[tuple[float, float], ...] = ((0.0, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))
MPD_PERIODS: tuple[int, ...] = (2, 3, 5, 7, 11)
MPD_CHANNELS: tuple[int, ...] = (32, 128, 512, 1024, 1024)
MRSTFT_FFT_SIZES: tuple[int, ...] = (2048, 1024, 512)


def _scaled(channels: Sequence[int] | int, width: float) -> Any:
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    if isinstance(channels, int):
        return max(1, round(channels * width))
    return tuple(max(1, round(c * width)) for c in channels)


def _fold_channels(x: Tensor, in_channels: int, name: str) -> Tensor:
    """(B, C, S) -> (B*C, 1, S)."""
    if x.ndim != 3 or x.shape[1] != in_channels:
        raise ValueError(f"{name} expects waveforms (B, {in_channels}, S), got {tuple(x.shape)}")
    return x.reshape(-1, 1, x.shape[-1])


class PeriodDiscriminator(nn.Module):
    """(N, 1, S) -> logits (N, 1, frames, period) and hidden features; HiFi-GAN's sub-discriminator."""

    def __init__(self, period: int, channels: Sequence[int] = MPD_CHANNELS) -> None:
        super().__init__()
        if period < 1:
            raise ValueError(f"period must be >= 1, got {period}")
        self.period = int(period)
        chans = (1, *channels)
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(cin, cout, (5, 1), (3, 1) if i < len(channels) - 1 else (1, 1), padding=(2, 0)))
            for i, (cin, cout) in enumerate(zip(chans[:-1], chans[1:]))
        )
        self.post = weight_norm(nn.Conv2d(chans[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        pad = (-x.shape[-1]) % self.period
        if pad:
            x = F.pad(x, (0, pad), mode="reflect" if pad < x.shape[-1] else "constant")
        h = x.reshape(x.shape[0], 1, -1, self.period)  # (N, 1, S / p, p)
        feats = []
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.1)
            feats.append(h)
        return self.post(h), feats


class MultiPeriodDiscriminator(nn.Module):
    """(B, C, S) -> :class:`DiscriminatorOutput` with one logit map per period.

    Args:
        in_channels: data channels (each judged as a mono waveform).
        periods: HiFi-GAN's primes (2, 3, 5, 7, 11).
        channels: conv widths (stride 3 along time for all but the last), times ``width``.
        width: channel multiplier (1 = HiFi-GAN / DAC, ~41M parameters).
    """

    def __init__(self, in_channels: int = 1, periods: Sequence[int] = MPD_PERIODS, channels: Sequence[int] = MPD_CHANNELS,
                 width: float = 1.0) -> None:
        super().__init__()
        if not periods or not channels:
            raise ValueError(f"periods and channels must be non-empty, got {periods}, {channels}")
        self.in_channels = int(in_channels)
        chans = _scaled(channels, width)
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, chans) for p in periods)

    def forward(self, x: Tensor) -> DiscriminatorOutput:
        h = _fold_channels(x, self.in_channels, "MultiPeriodDiscriminator")
        outs = [d(h) for d in self.discriminators]
        return DiscriminatorOutput([o[0] for o in outs], [o[1] for o in outs])


class STFTDiscriminator(nn.Module):
    """(N, 1, S) -> logits (N, 1, frames, bins') over one complex STFT (hop n_fft / 4, Hann).

    With ``bands``, the frequency axis is split into fractional bands, each with its own conv
    stack (DAC's multi-band design); the band outputs are concatenated along frequency before
    the final conv. Hidden features: every band's activations, then the concatenation.
    """

    def __init__(self, n_fft: int, channels: int = 32, bands: Sequence[Sequence[float]] | None = None) -> None:
        super().__init__()
        if n_fft < 16:
            raise ValueError(f"n_fft must be >= 16, got {n_fft}")
        self.n_fft, self.hop = int(n_fft), int(n_fft) // 4
        n_bins = self.n_fft // 2 + 1
        fractions = [(0.0, 1.0)] if bands is None else [(float(a), float(b)) for a, b in bands]
        for a, b in fractions:
            if not 0.0 <= a < b <= 1.0:
                raise ValueError(f"bands must be fractions 0 <= lo < hi <= 1, got {fractions}")
        self.bands = [(int(a * n_bins), int(b * n_bins)) for a, b in fractions]
        if any(hi <= lo for lo, hi in self.bands):
            raise ValueError(f"band {fractions} is empty at n_fft={n_fft}")
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)

        def stack() -> nn.ModuleList:
            return nn.ModuleList([
                weight_norm(nn.Conv2d(2, channels, (3, 9), padding=(1, 4))),
                *(weight_norm(nn.Conv2d(channels, channels, (3, 9), (1, 2), padding=(1, 4))) for _ in range(3)),
                weight_norm(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))),
            ])

        self.band_convs = nn.ModuleList(stack() for _ in self.bands)
        self.post = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        with torch.autocast(device_type=x.device.type, enabled=False):
            spec = torch.stft(x.float().squeeze(1), self.n_fft, self.hop, window=self.window, center=True,
                              pad_mode="reflect", return_complex=True)  # (N, bins, frames)
        h = torch.view_as_real(spec).permute(0, 3, 2, 1)  # (N, 2, frames, bins)
        feats, outs = [], []
        for (lo, hi), convs in zip(self.bands, self.band_convs):
            b = h[..., lo:hi]
            for conv in convs:
                b = F.leaky_relu(conv(b), 0.1)
                feats.append(b)
            outs.append(b)
        h = torch.cat(outs, dim=-1)
        return self.post(h), feats


class MultiResolutionSTFTDiscriminator(nn.Module):
    """(B, C, S) -> :class:`DiscriminatorOutput` with one logit map per STFT size.

    Args:
        in_channels: data channels (each judged as a mono waveform).
        fft_sizes: STFT sizes (hop = size / 4); inputs need more than max(fft_sizes) / 2 samples.
        bands: None (whole spectrum), ``"dac"`` (:data:`DAC_BANDS`) or fractional (lo, hi) bands.
        channels: conv width of each stack, times ``width``.
    """

    def __init__(self, in_channels: int = 1, fft_sizes: Sequence[int] = MRSTFT_FFT_SIZES,
                 bands: Sequence[Sequence[float]] | str | None = None, channels: int = 32, width: float = 1.0) -> None:
        super().__init__()
        if not fft_sizes:
            raise ValueError("fft_sizes must be non-empty")
        if isinstance(bands, str):
            if bands != "dac":
                raise ValueError(f"bands must be None, 'dac' or a list of (lo, hi) fractions, got {bands!r}")
            bands = DAC_BANDS
        self.in_channels = int(in_channels)
        self.min_samples = max(fft_sizes) // 2 + 1
        ch = _scaled(int(channels), width)
        self.discriminators = nn.ModuleList(STFTDiscriminator(int(n), ch, bands) for n in fft_sizes)

    def forward(self, x: Tensor) -> DiscriminatorOutput:
        h = _fold_channels(x, self.in_channels, "MultiResolutionSTFTDiscriminator")
        if h.shape[-1] < self.min_samples:
            raise ValueError(f"MultiResolutionSTFTDiscriminator needs >= {self.min_samples} samples, got {h.shape[-1]}")
        outs = [d(h) for d in self.discriminators]
        return DiscriminatorOutput([o[0] for o in outs], [o[1] for o in outs])


class CombinedDiscriminator(nn.Module):
    """Several discriminators as one: their sub-discriminator logits and features concatenated.
    A member returning a plain tensor counts as one sub-discriminator without features."""

    def __init__(self, *discriminators: nn.Module) -> None:
        super().__init__()
        if not discriminators:
            raise ValueError("CombinedDiscriminator needs at least one discriminator")
        self.discriminators = nn.ModuleList(discriminators)

    def forward(self, x: Tensor) -> DiscriminatorOutput:
        logits: list[Tensor] = []
        features: list[list[Tensor]] = []
        for d in self.discriminators:
            o = d(x)
            if isinstance(o, Tensor):
                logits.append(o)
                features.append([])
            else:
                logits += o.logits
                features += o.features if o.features else [[] for _ in o.logits]
        return DiscriminatorOutput(logits, features)


def _audio(in_channels: int = 1, width: float = 1.0, periods: Sequence[int] = MPD_PERIODS,
           mpd_channels: Sequence[int] = MPD_CHANNELS, fft_sizes: Sequence[int] = MRSTFT_FFT_SIZES,
           bands: Sequence[Sequence[float]] | str | None = "dac", mrstft_channels: int = 32) -> CombinedDiscriminator:
    return CombinedDiscriminator(
        MultiPeriodDiscriminator(in_channels, periods, mpd_channels, width),
        MultiResolutionSTFTDiscriminator(in_channels, fft_sizes, bands, mrstft_channels, width),
    )


register_discriminator("mpd", lambda **options: MultiPeriodDiscriminator(**options))
register_discriminator("mrstft", lambda **options: MultiResolutionSTFTDiscriminator(**options))
register_discriminator("audio", _audio)
