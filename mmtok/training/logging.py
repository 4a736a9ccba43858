"""Run logging: JSONL metrics, TensorBoard, optional wandb, codebook-usage window,
reconstruction grids."""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mmtok.checkpoint import atomic_write

log = logging.getLogger("mmtok.train")


def get_logger(run_dir: str | Path | None = None, main_process: bool = True) -> logging.Logger:
    """The ``mmtok.train`` logger: stderr on the main process, plus ``run_dir/train.log``."""
    log.setLevel(logging.INFO if main_process else logging.WARNING)
    log.propagate = False
    for h in list(log.handlers):  # a new run in the same process replaces the previous handlers
        log.removeHandler(h)
        if isinstance(h, logging.FileHandler):
            h.close()
    h = logging.StreamHandler()  # bound to the current sys.stderr
    h.setFormatter(logging.Formatter("[%(asctime)s %(levelname)s] %(message)s", "%H:%M:%S"))
    log.addHandler(h)
    if run_dir is not None and main_process:
        fh = logging.FileHandler(Path(run_dir) / "train.log")
        fh.setFormatter(logging.Formatter("[%(asctime)s %(levelname)s] %(message)s"))
        log.addHandler(fh)
    return log


class MetricWriter:
    """Writes one JSON line per log step to ``metrics.jsonl`` and mirrors scalars to
    TensorBoard (``run_dir/tb``) and wandb when enabled. ``truncate_after(step)`` drops
    lines a resumed run will write again, so the file reads as one uninterrupted run."""

    def __init__(self, run_dir: str | Path, tensorboard: bool = True, wandb: bool = False,
                 wandb_project: str = "mmtok", config: dict[str, Any] | None = None, enabled: bool = True) -> None:
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.jsonl"
        self.tb = None
        self.wandb = None
        if not enabled:
            return
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(Path(run_dir) / "tb"))
            except ImportError:  # pragma: no cover - tensorboard is a pinned dependency
                log.warning("tensorboard is not installed; TensorBoard logging is off")
        if wandb:
            try:
                import wandb as _wandb

                self.wandb = _wandb.init(project=wandb_project, dir=str(run_dir), config=config, resume="allow",
                                         name=Path(run_dir).name)
            except ImportError:
                log.warning("logging.wandb is on but wandb is not installed (pip install wandb); skipping it")

    def truncate_after(self, step: int) -> None:
        if not self.enabled or not self.path.is_file():
            return
        keep = [ln for ln in self.path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= step]
        atomic_write(self.path, lambda p: p.write_text("".join(k + "\n" for k in keep)))

    def write(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        order = sorted(scalars, key=lambda k: (not k.startswith("loss/"), not k.startswith("disc/"), k))
        row = {"step": step, **{k: (scalars[k] if math.isfinite(scalars[k]) else str(scalars[k])) for k in order}}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(k, v, step)
        if self.wandb is not None:
            self.wandb.log(scalars, step=step)

    def add_image(self, tag: str, grid: Tensor, step: int) -> None:
        if self.enabled and self.tb is not None:
            self.tb.add_image(tag, grid, step)
        if self.enabled and self.wandb is not None:
            import wandb as _wandb

            self.wandb.log({tag: _wandb.Image(grid.permute(1, 2, 0).numpy())}, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of ``run_dir/metrics.jsonl``."""
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


class CodeUsage:
    """Histogram of code ids over a logging window.

    ``usage`` = distinct codes / min(codebook size, tokens seen): 1.0 means no code was
    repeated that could have been avoided, so small windows are not mistaken for collapse.
    ``perplexity`` = exp(entropy) of the window's code distribution.
    """

    def __init__(self, codebook_size: int) -> None:
        self.codebook_size = int(codebook_size)
        self.hist = torch.zeros(self.codebook_size, dtype=torch.long)

    @torch.no_grad()
    def update(self, codes: Tensor) -> None:
        ids = codes.detach().reshape(-1)
        ids = ids[(ids >= 0) & (ids < self.codebook_size)].long().cpu()
        self.hist += torch.bincount(ids, minlength=self.codebook_size)

    def compute(self, reset: bool = True) -> dict[str, float]:
        total = int(self.hist.sum())
        if total == 0:
            return {}
        p = self.hist.double() / total
        ent = float(-(p[p > 0] * p[p > 0].log()).sum())
        out = {
            "codebook/usage": int((self.hist > 0).sum()) / min(self.codebook_size, total),
            "codebook/perplexity": math.exp(ent),
            "codebook/used_codes": float((self.hist > 0).sum()),
        }
        if reset:
            self.hist.zero_()
        return out


@torch.no_grad()
def reconstruction_grid(model: Any, images: Tensor, prefix_lengths: list[int] | None = None) -> Tensor:
    """Inputs in the first row, reconstructions below; nested models get one row per
    prefix length in ``prefix_lengths`` (decoding ``codes[:, :k]``).

    images: (N, 3, H, W) in [-1, 1] -> grid (3, H', W') float in [0, 1].
    """
    from torchvision.utils import make_grid

    was = model.training
    model.eval()
    try:
        codes = model.encode(images)
        rows = [images]
        if prefix_lengths:
            for k in prefix_lengths:
                rows.append(model.decode(codes[:, :k]))
        else:
            rows.append(model.decode(codes))
    finally:
        model.train(was)
    stacked = torch.cat([r.float().clamp(-1, 1).cpu() for r in rows]) * 0.5 + 0.5
    return make_grid(stacked, nrow=images.shape[0], padding=2, pad_value=1.0)


def prefix_lengths_for(num_tokens: int) -> list[int]:
    """Powers of two up to ``num_tokens`` (and ``num_tokens`` itself)."""
    ks = [2**i for i in range(int(math.log2(max(1, num_tokens))) + 1)]
    return sorted(set(k for k in ks if k <= num_tokens) | {num_tokens})


def save_grid_png(grid: Tensor, path: str | Path) -> Path:
    """(3, H, W) in [0, 1] -> PNG, written atomically."""
    from PIL import Image

    arr = grid.mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    return atomic_write(path, lambda p: Image.fromarray(arr).save(p, format="PNG"))
