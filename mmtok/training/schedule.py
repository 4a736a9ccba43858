"""Learning-rate schedule as a pure function of the step (nothing to checkpoint but the step)."""

from __future__ import annotations

import math

import torch


def lr_at(step: int, base_lr: float, total_steps: int, warmup_steps: int = 0, kind: str = "cosine", min_lr_ratio: float = 0.1) -> float:
    """LR for optimiser step ``step`` (0-based): linear warmup then cosine to ``base_lr * min_lr_ratio``
    (``kind="constant"`` stays at ``base_lr`` after warmup)."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if kind == "constant":
        return base_lr
    if kind != "cosine":
        raise ValueError(f"unknown schedule kind {kind!r}")
    span = max(1, total_steps - warmup_steps)
    t = min(1.0, (step - warmup_steps) / span)
    return base_lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
