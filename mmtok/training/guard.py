"""Non-finite loss guard: no host sync per step; checked before anything is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


class NonFiniteLossError(RuntimeError):
    """Raised when a training loss is NaN/inf; the last good checkpoint stays intact."""


class NonFiniteGuard:
    """Records on the device whether (and at which step first) a loss was non-finite;
    :meth:`check` reduces across ranks and raises :class:`NonFiniteLossError`."""

    def __init__(self, accelerator: Any, device: torch.device) -> None:
        self.accelerator = accelerator
        self.bad = torch.zeros((), dtype=torch.bool, device=device)
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self.last_terms: dict[str, Any] = {}

    def observe(self, loss: torch.Tensor, step: int) -> None:
        self.bad = self.bad | ~torch.isfinite(loss.detach())
        self.first_bad = torch.where(self.bad & (self.first_bad < 0), torch.full_like(self.first_bad, step), self.first_bad)

    def check(self, last_ckpt: Path | None) -> None:
        if float(self.accelerator.reduce(self.bad.float(), reduction="sum")) == 0:
            return
        where = f"the last good checkpoint is {last_ckpt}" if last_ckpt else "no checkpoint was written yet"
        terms = ", ".join(f"{k}={float(v):.4g}" for k, v in self.last_terms.items() if k.startswith("loss/"))
        raise NonFiniteLossError(
            f"non-finite loss at step {int(self.first_bad)} (last step: {terms}); stopped without saving, {where}. "
            "Lower optim.lr, raise schedule.warmup_steps or use precision=no to find the cause."
        )
