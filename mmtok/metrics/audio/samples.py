"""Audio samples of an evaluation: the first clips as ``<key>_orig.wav`` / ``<key>_recon.wav`` pairs
and a log-mel spectrogram PNG of each (original above reconstruction), under ``samples/``."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mmtok.data.audio import save_wav
from mmtok.io import atomic_write

SAMPLES_DIR = "samples"
SPEC_MELS = 80
SPEC_RANGE_DB = 80.0


def sample_stem(key: str) -> str:
    """A file-name stem for an item key (``"speech/en-us/000001@16000"`` -> ``"speech_en-us_000001@16000"``)."""
    return re.sub(r"[^\w@.+-]+", "_", key).strip("._") or "clip"


def log_mel_db(x: Tensor, sample_rate: int, n_mels: int = SPEC_MELS) -> np.ndarray:
    """Mono (S,) waveform -> (n_mels, frames) power mel spectrogram in dB (Hann, ~64 ms window, 75% overlap)."""
    from torchaudio.transforms import MelSpectrogram

    n_fft = 1 << max(8, round(np.log2(0.064 * sample_rate)))
    mel = MelSpectrogram(sample_rate, n_fft=n_fft, hop_length=n_fft // 4, n_mels=n_mels, power=2.0, norm="slaney",
                         mel_scale="slaney")
    return (10 * torch.log10(mel(x.detach().float().cpu()) + 1e-10)).numpy()


def save_spectrogram_png(path: str | os.PathLike, orig: Tensor, recon: Tensor, sample_rate: int, title: str = "") -> Path:
    """PNG of the log-mel spectrograms of ``orig`` (top) and ``recon`` (bottom), both (C, S), channels
    averaged, on one colour scale (the original's top ``SPEC_RANGE_DB`` dB)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    specs = [log_mel_db(a.float().mean(0), sample_rate) for a in (orig, recon)]
    vmax = float(specs[0].max())
    dur = orig.shape[-1] / sample_rate
    fig, axes = plt.subplots(2, 1, figsize=(7, 4.6), sharex=True)
    for ax, spec, name in zip(axes, specs, ("original", "reconstruction")):
        im = ax.imshow(spec, origin="lower", aspect="auto", extent=(0, dur, 0, spec.shape[0]), cmap="magma",
                       vmin=vmax - SPEC_RANGE_DB, vmax=vmax)
        ax.set_ylabel("mel bin")
        ax.set_title(name, fontsize=9)
    axes[-1].set_xlabel("seconds")
    fig.colorbar(im, ax=list(axes), label="dB", shrink=0.8)
    if title:
        fig.suptitle(title, fontsize=9)
    out = atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=100))
    plt.close(fig)
    return out


class AudioSamples:
    """The first ``num_samples`` (original, reconstruction) pairs of this rank, kept on the CPU;
    rank 0 writes them (``write``)."""

    def __init__(self, num_samples: int, sample_rate: int) -> None:
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        self.num_samples, self.sample_rate = int(num_samples), int(sample_rate)
        self.pairs: list[tuple[str, Tensor, Tensor]] = []

    def add(self, keys: list[str], orig: Tensor, recon: Tensor) -> None:
        """orig, recon: (B, C, S) of one batch (recon already clamped to [-1, 1])."""
        need = self.num_samples - len(self.pairs)
        for i in range(min(need, len(keys))):
            self.pairs.append((keys[i], orig[i].detach().cpu().clone(), recon[i].detach().cpu().clone()))

    def write(self, out: Path) -> dict[str, str]:
        """``samples/<stem>_{orig,recon}.wav`` and ``samples/<stem>_spec.png``; returns ``{role: relative path}``."""
        files: dict[str, str] = {}
        used: set[str] = set()
        for i, (key, orig, recon) in enumerate(self.pairs):
            stem = sample_stem(key)
            while stem in used:  # two keys with the same file name
                stem += "_"
            used.add(stem)
            for role, x in (("orig", orig), ("recon", recon)):
                rel = f"{SAMPLES_DIR}/{stem}_{role}.wav"
                save_wav(out / rel, x, self.sample_rate)
                files[f"sample{i}_{role}"] = rel
            rel = f"{SAMPLES_DIR}/{stem}_spec.png"
            save_spectrogram_png(out / rel, orig, recon, self.sample_rate, title=key)
            files[f"sample{i}_spec"] = rel
        return files
