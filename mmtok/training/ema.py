"""Exponential moving average of a model's weights.

Parameters are averaged. Buffers (state a model updates itself, outside the optimiser) are
copied from the live model by default: an EMA-updated codebook (``embed`` / ``embed_avg`` /
``cluster_size``), k-means-initialised or dead-code-restarted, is already a running average,
and averaging it again blends restarted codes with the ones they replaced. Measured on the
tiny RVQ speech codec after 600 steps (decay 0.99): averaged buffers gave SI-SDR -2.9 dB and
output RMS 0.38 of the input on held-out speech, copied buffers -0.7 dB and 0.79, the same as
the live model. ``buffers="average"`` keeps the old behaviour (floating buffers averaged).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def _full(t: torch.Tensor) -> torch.Tensor:
    """A plain tensor (gathers a sharded DTensor, as FSDP2 parameters are)."""
    t = t.detach()
    return t.full_tensor() if hasattr(t, "full_tensor") else t


BUFFER_MODES = ("copy", "average")


class EMA(nn.Module):
    """``ema.module`` is a frozen copy of the model updated as ``w_ema <- d * w_ema + (1 - d) * w``.

    With ``warmup`` the decay is ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so
    early averages are not dominated by the random init. ``buffers``: ``"copy"`` (default:
    every buffer is copied from the model) or ``"average"`` (floating buffers averaged like
    parameters, integer ones copied). ``state_dict()`` holds the averaged weights and the
    update count.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True, buffers: str = "copy") -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        if buffers not in BUFFER_MODES:
            raise ValueError(f"EMA buffers must be one of {BUFFER_MODES}, got {buffers!r}")
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.warmup, self.buffers = decay, warmup, buffers
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def current_decay(self) -> float:
        n = int(self.num_updates)
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Blend ``model``'s current weights in (``model`` must have the same structure)."""
        d = self.current_decay()
        ema_p = dict(self.module.named_parameters())
        ema_b = dict(self.module.named_buffers())
        floats_e, floats_m = [], []
        for name, p in model.named_parameters():
            floats_e.append(ema_p[name])
            floats_m.append(_full(p).to(ema_p[name].device, ema_p[name].dtype))
        for name, b in model.named_buffers():
            e = ema_b.get(name)
            if e is None:
                continue
            if self.buffers == "average" and torch.is_floating_point(e):
                floats_e.append(e)
                floats_m.append(_full(b).to(e.device, e.dtype))
            else:
                e.copy_(_full(b))
        if floats_e:
            torch._foreach_lerp_(floats_e, floats_m, 1.0 - d)
        self.num_updates += 1

    def train(self, mode: bool = True) -> "EMA":  # the copy always stays in eval mode
        super().train(mode)
        self.module.eval()
        return self
