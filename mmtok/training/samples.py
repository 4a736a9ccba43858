"""Samples a run writes while it trains, per modality: people would rather look (or listen).

A modality registers a sample logger class with :func:`register_sample_logger`; the loop
builds it once with a fixed batch of items and calls ``write(model, step)`` every
``logging.image_every`` steps. Images: a PNG grid, inputs in the first row and
reconstructions below (one row per prefix length for nested tokenizers), mirrored to
TensorBoard. Audio: WAV pairs and a spectrogram PNG per step. Video registers an MP4 logger
the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from mmtok.io import atomic_write

_LOGGERS: dict[str, type] = {}


def register_sample_logger(modality: str, cls: type) -> None:
    _LOGGERS[modality] = cls


def sample_logger_for(modality: str) -> type:
    if modality not in _LOGGERS:
        raise ValueError(f"no sample logger for modality {modality!r}; known: {sorted(_LOGGERS)}")
    return _LOGGERS[modality]


@torch.no_grad()
def reconstruction_grid(model: Any, images: Tensor, prefix_lengths: list[int] | None = None) -> Tensor:
    """Inputs in the first row, reconstructions below; with ``prefix_lengths`` one row per
    length ``k`` (decoding ``codes[:, :k]``).

    images: (N, 3, H, W) in [-1, 1] -> grid (3, H', W') float in [0, 1].
    """
    from torchvision.utils import make_grid

    was = model.training
    model.eval()
    try:
        codes = model.encode(images)
        rows = [images] + [model.decode(codes[:, :k]) for k in (prefix_lengths or [codes.shape[1]])]
    finally:
        model.train(was)
    stacked = torch.cat([r.float().clamp(-1, 1).cpu() for r in rows]) * 0.5 + 0.5
    return make_grid(stacked, nrow=images.shape[0], padding=2, pad_value=1.0)


def save_grid_png(grid: Tensor, path: str | Path) -> Path:
    """(3, H, W) in [0, 1] -> PNG, written atomically."""
    from PIL import Image

    arr = grid.mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    return atomic_write(path, lambda p: Image.fromarray(arr).save(p, format="PNG"))


class ImageSampleLogger:
    """PNG reconstruction grids under ``run_dir/samples`` (and TensorBoard ``reconstructions``)."""

    # items for the grid are read without random augmentation, the same at every step
    preprocessing: ClassVar[dict[str, Any]] = {"crop": "center", "flip": False}

    def __init__(self, tok: Any, batch: Tensor, run_dir: str | Path, writer: Any) -> None:
        self.batch, self.dir, self.writer = batch, Path(run_dir) / "samples", writer
        self.prefixes = tok.prefix_lengths() if tok.is_nested else None

    def write(self, model: Any, step: int) -> Path:
        grid = reconstruction_grid(model, self.batch, self.prefixes)
        path = save_grid_png(grid, self.dir / f"step_{step:08d}.png")
        self.writer.add_image("reconstructions", grid, step)
        return path

    def describe(self, path: Path) -> str:
        return f"  recon grid:   {path.resolve()}   (top row inputs, below reconstructions)"


class AudioSampleLogger:
    """WAV pairs under ``run_dir/samples/step_XXXXXXXX/`` (``clip<i>_orig.wav``, ``clip<i>_recon.wav``)
    and a log-mel spectrogram PNG of the first clip (original above reconstruction)."""

    # the first segment of each file, the same clips at every step
    preprocessing: ClassVar[dict[str, Any]] = {"segment": "start"}

    def __init__(self, tok: Any, batch: Tensor, run_dir: str | Path, writer: Any) -> None:
        self.batch, self.dir, self.writer = batch, Path(run_dir) / "samples", writer
        self.sample_rate = int(tok.sample_rate)

    @torch.no_grad()
    def write(self, model: Any, step: int) -> Path:
        from mmtok.data.audio import save_wav
        from mmtok.metrics.audio.samples import save_spectrogram_png

        was = model.training
        model.eval()
        try:
            rec = model.decode(model.encode(self.batch))[..., : self.batch.shape[-1]].float().clamp(-1, 1).cpu()
        finally:
            model.train(was)
        out = self.dir / f"step_{step:08d}"
        for i, (x, r) in enumerate(zip(self.batch.cpu(), rec)):
            save_wav(out / f"clip{i}_orig.wav", x, self.sample_rate)
            save_wav(out / f"clip{i}_recon.wav", r, self.sample_rate)
        save_spectrogram_png(out / "spectrogram.png", self.batch[0].cpu(), rec[0], self.sample_rate, title=f"step {step}")
        return out

    def describe(self, path: Path) -> str:
        return f"  audio:        {path.resolve()}   (clip<i>_orig.wav / clip<i>_recon.wav, spectrogram.png)"


class VideoSampleLogger:
    """Per step under ``run_dir/samples/step_XXXXXXXX/``: ``strip.png`` (each clip's frames in a
    row, original above reconstruction) and ``clip<i>.mp4`` (original | reconstruction side by
    side)."""

    preprocessing: ClassVar[dict[str, Any]] = {"clip": "start", "crop": "center", "flip": False}
    fps: ClassVar[float] = 8.0

    def __init__(self, tok: Any, batch: Tensor, run_dir: str | Path, writer: Any) -> None:
        self.batch, self.dir, self.writer = batch, Path(run_dir) / "samples", writer

    @torch.no_grad()
    def write(self, model: Any, step: int) -> Path:
        from mmtok.data.video import save_frame_strip_png, save_video

        was = model.training
        model.eval()
        try:
            rec = model.decode(model.encode(self.batch)).float().clamp(-1, 1).cpu()
        finally:
            model.train(was)
        out = self.dir / f"step_{step:08d}"
        orig = self.batch.float().cpu()
        rows = [r for pair in zip(orig, rec) for r in pair]
        save_frame_strip_png(out / "strip.png", rows)
        for i, (x, r) in enumerate(zip(orig, rec)):
            save_video(out / f"clip{i}.mp4", torch.cat([x, r], dim=-1), self.fps)
        return out

    def describe(self, path: Path) -> str:
        return f"  video:        {path.resolve()}   (strip.png: original above reconstruction; clip<i>.mp4 side by side)"


register_sample_logger("image", ImageSampleLogger)
register_sample_logger("video", VideoSampleLogger)
register_sample_logger("audio", AudioSampleLogger)
