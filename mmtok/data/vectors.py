"""Synthetic feature vectors for quantizer demos, tests and benchmarks."""

from __future__ import annotations

import torch
from torch import Tensor


def clustered_vectors(
    num: int,
    dim: int,
    num_clusters: int = 64,
    spread: float = 0.05,
    seed: int = 0,
    centers: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """``num`` vectors drawn around ``num_clusters`` random unit-norm centres.

    Returns ``(x, centers)`` with x of shape (num, dim). Pass ``centers`` back in to draw
    more samples from the same mixture.
    """
    g = torch.Generator().manual_seed(seed)
    if centers is None:
        centers = torch.randn(num_clusters, dim, generator=g)
        centers = centers / centers.norm(dim=-1, keepdim=True)
    idx = torch.randint(len(centers), (num,), generator=g)
    x = centers[idx] + spread * torch.randn(num, dim, generator=g)
    return x, centers
