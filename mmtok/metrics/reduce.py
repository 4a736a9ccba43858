"""Reductions across ranks for metric accumulators, and a distributed running mean.

Outside a multi-process group every function returns its input unchanged, so the same
metric code runs in one process and under ``torchrun``. Collective calls must be made by
every rank in the same order.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from mmtok.distributed import is_distributed

_OPS = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}


def _reduce_device() -> torch.device:
    """NCCL reduces CUDA tensors, every other backend CPU tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce(t: Tensor, op: str = "sum") -> Tensor:
    """``op`` ("sum" or "max") of ``t`` over all ranks, as a new tensor on ``t``'s device."""
    if not is_distributed():
        return t
    r = t.detach().to(_reduce_device(), copy=True)
    dist.all_reduce(r, op=_OPS[op])
    return r.to(t.device)


def all_gather_objects(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` (``[obj]`` in one process)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


class MeanMetric:
    """Running sum / count in float64 for per-item values; ``compute`` all-reduces across ranks."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def update(self, values: Tensor) -> None:
        v = values.detach().double().flatten()
        self.total += float(v.sum())
        self.count += v.numel()

    def compute(self, reduce: bool = True) -> float:
        """Mean over every rank's values (NaN when there are none)."""
        t = torch.tensor([self.total, float(self.count)], dtype=torch.float64)
        if reduce:
            t = all_reduce(t)
        total, count = float(t[0]), float(t[1])
        if count == 0:
            return float("nan")
        return total / count
