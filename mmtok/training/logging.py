"""Run logging: JSONL metrics, TensorBoard, optional wandb, the log window (loss sums and
codebook usage)."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mmtok.io import atomic_write

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


class MetricWindow:
    """Running sums of a log window (device tensors, no host sync per step) and the
    window's codebook histogram (one per residual level, ``mmtok.metrics.CodebookHistogram``).

    ``codebook/usage`` here is distinct codes / min(codebook size, tokens seen) per level,
    so a small window is not mistaken for collapse; ``codebook/perplexity`` is exp(entropy).
    Both are saved in checkpoints (``state_dict``) so resumed logs match an uninterrupted run.
    """

    def __init__(self, codebook_size: int, num_levels: int = 1) -> None:
        from mmtok.metrics.codebook import CodebookHistogram

        self.codebook_size, self.num_levels = int(codebook_size), int(num_levels)
        self.codes = CodebookHistogram(self.codebook_size, self.num_levels)
        self.sums: dict[str, Any] = {}
        self.steps = 0
        self.t0 = time.perf_counter()

    def add(self, terms: dict[str, Any]) -> None:
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.steps += 1

    def flush(self, accelerator: Any, items_per_step: int, extra: dict[str, float]) -> dict[str, float]:
        """Window means (averaged over processes in one collective) + codebook stats + ``extra``; resets."""
        keys = sorted(self.sums)
        scalars: dict[str, float] = {}
        n = max(1, self.steps)
        if keys:
            dev = accelerator.device
            vec = torch.stack([torch.as_tensor(self.sums[k], dtype=torch.float32, device=dev).reshape(()) for k in keys])
            vec = accelerator.reduce(vec, reduction="mean") if accelerator.num_processes > 1 else vec
            scalars = dict(zip(keys, (vec / n).tolist()))
        dt = time.perf_counter() - self.t0
        scalars.update(self.codebook_scalars())
        scalars.update(extra)
        scalars["perf/items_per_s"] = items_per_step * self.steps / max(dt, 1e-9)
        self.sums, self.steps, self.t0 = {}, 0, time.perf_counter()
        self.codes = type(self.codes)(self.codebook_size, self.num_levels)
        return scalars

    def codebook_scalars(self) -> dict[str, float]:
        st = self.codes.compute(reduce=False)
        if st["codes_counted"] == 0:
            return {}
        per_level = st["codes_counted"] / self.num_levels
        return {
            "codebook/usage": st["used_codes"] / min(self.codebook_size, per_level),
            "codebook/perplexity": st["perplexity"],
            "codebook/used_codes": float(st["used_codes"]),
        }

    @staticmethod
    def warn_collapse(log: logging.Logger, step: int, scalars: dict[str, float], threshold: float) -> None:
        u = scalars.get("codebook/usage")
        if u is not None and u < threshold:
            log.warning(
                "codebook collapse: step %d uses %.1f%% of the codes it could (%d distinct, perplexity %.1f), below logging.collapse_threshold=%.0f%%",
                step, 100 * u, int(scalars["codebook/used_codes"]), scalars["codebook/perplexity"], 100 * threshold,
            )

    def state_dict(self) -> dict[str, Any]:
        c = self.codes
        codes = {"hist": c.hist.clone()} if c.dense else {"sparse": [dict(d) for d in c.sparse]}
        return {"sums": {k: float(v) for k, v in self.sums.items()}, "steps": self.steps, "codes": codes}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sums, self.steps = dict(state["sums"]), int(state["steps"])
        if "hist" in state["codes"]:
            self.codes.hist.copy_(state["codes"]["hist"])
        else:
            self.codes.sparse = [dict(d) for d in state["codes"]["sparse"]]
