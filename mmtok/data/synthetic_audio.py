"""Procedural synthetic audio: harmonic tones, chirps, AM/FM tones, noise bursts, click trains.

Every item is a pure function of ``(seed, index)``: no files, no network; the default audio
data of the CPU main job and the tests. Tones, sweeps and clicks are drawn in seconds, so an
index gives the same sound at any sample rate (partials above 0.45 x the rate are left
out); noise is drawn per sample and differs between rates.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mmtok.data.audio import AudioDataset
from mmtok.data.base import make_item

KINDS = ("tones", "chirp", "am_fm", "noise", "clicks")
MAX_PEAK = 0.9


def _envelope(t: np.ndarray, start: float, attack: float, decay: float, stop: float | None = None) -> np.ndarray:
    """Linear attack from ``start``, then exponential decay (time constant ``decay``), zero before ``start``
    and (with a 5 ms release) after ``stop``."""
    u = t - start
    env = np.where(u < 0, 0.0, np.minimum(u / max(attack, 1e-4), 1.0) * np.exp(-np.maximum(u - attack, 0.0) / decay))
    if stop is not None:
        env = env * np.clip((stop - t) / 0.005, 0.0, 1.0)
    return env


def _tones(t: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    dur, out = t[-1] + 1 / sr, np.zeros_like(t)
    n = int(rng.integers(1, 4))
    for i in range(n):
        f0 = float(np.exp(rng.uniform(np.log(80), np.log(1000))))
        start = dur * i / n + rng.uniform(0, 0.1 * dur / n)
        env = _envelope(t, start, rng.uniform(0.002, 0.03), rng.uniform(0.05, 0.6) * dur, start + dur / n * rng.uniform(0.6, 1.0))
        tilt = rng.uniform(0.6, 2.0)
        h = np.arange(1, int(rng.integers(1, 9)) + 1)
        h = h[h * f0 < 0.45 * sr]
        phases = rng.uniform(0, 2 * np.pi, size=len(h))
        partials = np.sin(2 * np.pi * f0 * h[:, None] * t[None] + phases[:, None]) / h[:, None] ** tilt
        out += env * partials.sum(0)
    return out


def _chirp(t: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    dur = t[-1] + 1 / sr
    lo, hi = 100.0, min(8000.0, 0.45 * sr)
    f0, f1 = np.exp(rng.uniform(np.log(lo), np.log(hi), size=2))
    if rng.random() < 0.5:  # linear sweep
        phase = f0 * t + (f1 - f0) * t**2 / (2 * dur)
    else:  # exponential sweep
        k = f1 / f0
        phase = f0 * t if abs(np.log(k)) < 1e-6 else f0 * dur / np.log(k) * (k ** (t / dur) - 1)
    fade = np.clip(np.minimum(t, dur - t) / 0.01, 0, 1)
    return np.sin(2 * np.pi * phase) * fade


def _am_fm(t: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    fc = float(np.exp(rng.uniform(np.log(200), np.log(min(2000, 0.3 * sr)))))
    fm, dev = rng.uniform(2, 12), rng.uniform(0, 0.2) * fc
    fa, depth = rng.uniform(1, 8), rng.uniform(0.2, 1.0)
    phase = 2 * np.pi * fc * t - dev / fm * np.cos(2 * np.pi * fm * t)
    am = (1 + depth * np.sin(2 * np.pi * fa * t + rng.uniform(0, 2 * np.pi))) / (1 + depth)
    return am * np.sin(phase)


def _noise(t: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    S, dur = len(t), t[-1] + 1 / sr
    spec = np.fft.rfft(rng.standard_normal(S))
    f = np.fft.rfftfreq(S, 1 / sr)
    fc = float(np.exp(rng.uniform(np.log(300), np.log(min(4000, 0.4 * sr)))))
    bw = fc * rng.uniform(0.2, 1.5)
    noise = np.fft.irfft(spec * np.exp(-0.5 * ((f - fc) / bw) ** 2), n=S)
    env = np.zeros_like(t)
    for _ in range(int(rng.integers(1, 5))):
        start = rng.uniform(0, 0.8 * dur)
        env += _envelope(t, start, rng.uniform(0.002, 0.02), rng.uniform(0.02, 0.3) * dur, start + rng.uniform(0.1, 0.5) * dur)
    return noise * env


def _clicks(t: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    S, dur = len(t), t[-1] + 1 / sr
    rate = rng.uniform(2, 40)
    times = np.arange(rng.uniform(0, 1 / rate), dur, 1 / rate)
    train = np.zeros(S)
    train[np.minimum((times * sr).astype(np.int64), S - 1)] = rng.uniform(0.5, 1.0, size=len(times))
    kt = np.arange(int(0.01 * sr)) / sr  # 10 ms decaying ring per click
    ring = np.exp(-kt / rng.uniform(0.0005, 0.003)) * np.cos(2 * np.pi * rng.uniform(500, min(5000, 0.4 * sr)) * kt)
    return np.convolve(train, ring)[:S]


_RENDER = {"tones": _tones, "chirp": _chirp, "am_fm": _am_fm, "noise": _noise, "clicks": _clicks}


def render_audio(seed: int, index: int, sample_rate: int, channels: int, length: int) -> tuple[np.ndarray, int]:
    """One synthetic clip: (channels, length) float32 with peak in [0.3, 0.9], and its kind index (``KINDS``)."""
    rng = np.random.default_rng([int(seed), int(index)])
    kind = int(rng.integers(len(KINDS)))
    t = np.arange(length, dtype=np.float64) / sample_rate
    mono = _RENDER[KINDS[kind]](t, sample_rate, rng)
    out = np.empty((channels, length))
    for c in range(channels):  # channels differ by gain and a delay of up to 1 ms
        d = int(rng.integers(0, max(1, sample_rate // 1000))) if c else 0
        out[c, d:] = mono[: length - d] * (rng.uniform(0.6, 1.0) if c else 1.0)
        out[c, :d] = 0.0
    peak = float(np.abs(out).max())
    if peak > 0:
        out *= rng.uniform(0.3, MAX_PEAK) / peak
    return out.astype(np.float32), kind


class SyntheticAudio(AudioDataset):
    """Deterministic procedural clips of ``segment_length`` samples (kinds: ``KINDS``; ``label`` is
    the kind index, ``meta["kind"]`` its name). Keys are ``synthetic/000123``; amplitude within
    [-0.9, 0.9]; the same ``meta`` fields as ``AudioFolder`` (offset 0, nothing padded or clipped).
    """

    def __init__(self, num_items: int = 1024, sample_rate: int = 16000, channels: int = 1,
                 segment_length: int | None = 8000, seed: int = 0) -> None:
        super().__init__(sample_rate, channels, segment_length, segment="start", resample=False, min_rms=0.0, seed=seed)
        if not isinstance(num_items, int) or num_items <= 0:
            raise ValueError(f"num_items must be a positive int, got {num_items!r}")
        self.num_items = num_items

    def __len__(self) -> int:
        return self.num_items

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.num_items:
            raise IndexError(f"index {index} out of range for {self.num_items} synthetic clips")
        arr, kind = render_audio(self.seed, index, self.sample_rate, self.channels, self.segment_length)
        key = f"synthetic/{index:06d}"
        meta = {"offset": 0, "sample_rate": self.sample_rate, "length": self.segment_length,
                "source_sample_rate": self.sample_rate, "source_channels": self.channels, "clipped": 0,
                "kind": KINDS[kind]}
        return make_item(torch.from_numpy(arr), key, key, kind, meta)

    def __repr__(self) -> str:
        return (f"SyntheticAudio(num_items={self.num_items}, sample_rate={self.sample_rate}, channels={self.channels}, "
                f"segment_length={self.segment_length}, seed={self.seed})")
