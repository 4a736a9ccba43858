"""Video samples of an evaluation, under ``samples/``: per clip an MP4 and a GIF of the original and
its reconstruction side by side, and a PNG strip (original frames above reconstructed ones); and
``per_frame.png``, mean PSNR / SSIM / LPIPS at each frame index.

The writers (``save_video``, ``save_gif``, ``save_frame_strip_png``) come from ``mmtok.data.video``,
imported when samples are written.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mmtok.io import atomic_write

SAMPLES_DIR = "samples"
DEFAULT_FPS = 8.0  # when neither the data nor the tokenizer says the clips' frame rate
PER_FRAME_PLOT = "per_frame.png"
_PER_FRAME_PANELS = (("psnr", "PSNR (dB)"), ("ssim", "SSIM"), ("lpips", "LPIPS (lower is better)"))


def sample_stem(key: str) -> str:
    """A file-name stem for an item key (``"ucf/v_Run_g01_c01.avi@0"`` -> ``"ucf_v_Run_g01_c01.avi@0"``)."""
    return re.sub(r"[^\w@.+-]+", "_", key).strip("._") or "clip"


def side_by_side(orig: Tensor, recon: Tensor) -> Tensor:
    """(3, T, H, W) pair -> (3, T, H, 2W): original on the left, reconstruction on the right."""
    return torch.cat([orig, recon], dim=-1)


class VideoSamples:
    """The first ``num_samples`` (original, reconstruction) pairs of this rank (uint8, on the CPU);
    rank 0 writes them (``write``).

    Args:
        num_samples: clips to keep.
        fps: frame rate of the written MP4 / GIF.
    """

    def __init__(self, num_samples: int, fps: float | None = None) -> None:
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        self.num_samples = int(num_samples)
        self.fps = float(fps) if fps else DEFAULT_FPS
        self.pairs: list[tuple[str, Tensor, Tensor]] = []

    def add(self, keys: list[str], orig: Tensor, recon: Tensor) -> None:
        """uint8 originals and full-code reconstructions (B, 3, T, H, W) of one batch."""
        need = self.num_samples - len(self.pairs)
        for i in range(min(need, len(keys))):
            self.pairs.append((keys[i], orig[i].detach().cpu().clone(), recon[i].detach().cpu().clone()))

    def write(self, out: Path) -> tuple[dict[str, str], list[str]]:
        """``samples/<stem>.mp4`` / ``.gif`` (side by side) and ``samples/<stem>_frames.png``.

        Returns ``({role: relative path}, errors)``: a format that cannot be written (e.g. no video
        encoder installed) is skipped with a warning and listed in ``errors``, so the report survives.
        """
        if not self.pairs:
            return {}, []
        from mmtok.data.transforms import to_model_range

        try:
            from mmtok.data.video import save_frame_strip_png, save_gif, save_video
        except ImportError as e:
            msg = f"{SAMPLES_DIR}/: the video writers of mmtok.data.video are unavailable ({e})"
            warnings.warn(f"could not write samples: {msg}", stacklevel=2)
            return {}, [msg]
        files: dict[str, str] = {}
        errors: list[str] = []
        used: set[str] = set()
        for i, (key, orig, recon) in enumerate(self.pairs):
            stem = sample_stem(key)
            while stem in used:  # two keys with the same file name
                stem += "_"
            used.add(stem)
            o, r = to_model_range(orig), to_model_range(recon)
            pair = side_by_side(o, r)
            jobs: list[tuple[str, str, Any]] = [
                ("video", f"{stem}.mp4", lambda p: save_video(p, pair, self.fps)),
                ("gif", f"{stem}.gif", lambda p: save_gif(p, pair, self.fps)),
                ("frames", f"{stem}_frames.png", lambda p: save_frame_strip_png(p, [o, r])),
            ]
            for role, name, write in jobs:
                rel = f"{SAMPLES_DIR}/{name}"
                try:
                    (out / SAMPLES_DIR).mkdir(parents=True, exist_ok=True)
                    write(out / rel)
                except (ImportError, OSError, RuntimeError, ValueError) as e:
                    msg = f"{rel}: {type(e).__name__}: {e}"
                    warnings.warn(f"could not write sample {msg}", stacklevel=2)
                    errors.append(msg)
                    continue
                files[f"sample{i}_{role}"] = rel
        return files, errors


def plot_per_frame(curves: dict[str, Any], path: str | os.PathLike, title: str = "") -> Path:
    """PNG of the per-frame means (``curves``: ``{"frame": [...], "psnr": [...], ...}``), one panel per
    metric that was measured."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    shown = [(k, label) for k, label in _PER_FRAME_PANELS if curves.get(k)]
    fig, axes = plt.subplots(1, max(1, len(shown)), figsize=(3.6 * max(1, len(shown)), 3.2), squeeze=False)
    frames = curves["frame"]
    for ax, (key, label) in zip(axes[0], shown):
        ax.plot(frames, curves[key], marker="o", markersize=3)
        ax.set_xlabel("frame index")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
        ax.ticklabel_format(axis="y", useOffset=False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out = atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)
    return out
