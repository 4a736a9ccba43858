"""Dataset-level codebook statistics: usage, perplexity and entropy from a code histogram."""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import Tensor

DENSE_LIMIT = 1 << 24  # larger codebooks are counted sparsely


class CodebookHistogram:
    """Histogram of code ids over a whole dataset, per residual level.

    Args:
        codebook_size: number of ids per level (K).
        num_levels: residual levels Q (codes of shape (..., Q)); 1 for plain codes.

    ``update(codes)`` takes int codes (B, ...) or (B, ..., Q) when ``num_levels > 1``;
    negative ids (dropped levels) are ignored. ``compute()`` all-reduces across ranks.
    """

    def __init__(self, codebook_size: int, num_levels: int = 1) -> None:
        if codebook_size < 1 or num_levels < 1:
            raise ValueError(f"codebook_size and num_levels must be >= 1, got {codebook_size}, {num_levels}")
        self.codebook_size = int(codebook_size)
        self.num_levels = int(num_levels)
        self.dense = self.codebook_size <= DENSE_LIMIT
        self.hist = torch.zeros(self.num_levels, self.codebook_size, dtype=torch.float64) if self.dense else None
        self.sparse: list[dict[int, int]] = [{} for _ in range(self.num_levels)]

    @torch.no_grad()
    def update(self, codes: Tensor) -> None:
        if codes.is_floating_point():
            raise TypeError(f"codes must be integers, got {codes.dtype}")
        flat = codes.reshape(-1, self.num_levels) if self.num_levels > 1 else codes.reshape(-1, 1)
        if flat.numel() and int(flat.max()) >= self.codebook_size:
            raise ValueError(f"code id {int(flat.max())} >= codebook_size {self.codebook_size}")
        flat = flat.long().cpu()
        for q in range(self.num_levels):
            ids = flat[:, q]
            ids = ids[ids >= 0]
            if self.dense:
                self.hist[q] += torch.bincount(ids, minlength=self.codebook_size).double()
            else:
                u, c = torch.unique(ids, return_counts=True)
                d = self.sparse[q]
                for i, n in zip(u.tolist(), c.tolist()):
                    d[i] = d.get(i, 0) + n

    def _counts(self, reduce: bool) -> list[Tensor]:
        if self.dense:
            hist = self.hist.clone()
            if reduce and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
                dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else hist.device
                h = hist.to(dev)
                dist.all_reduce(h)
                hist = h.cpu()
            return [hist[q][hist[q] > 0] for q in range(self.num_levels)]
        dicts = self.sparse
        if reduce and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered: list[list[dict[int, int]]] = [None] * dist.get_world_size()  # type: ignore[list-item]
            dist.all_gather_object(gathered, dicts)
            merged = [dict() for _ in range(self.num_levels)]
            for part in gathered:
                for q, d in enumerate(part):
                    for i, n in d.items():
                        merged[q][i] = merged[q].get(i, 0) + n
            dicts = merged
        return [torch.tensor(sorted(d.values()), dtype=torch.float64) for d in dicts]

    def compute(self, reduce: bool = True) -> dict[str, float]:
        """usage (fraction of ids used), used_codes, perplexity (exp of entropy), entropy in bits,
        entropy normalised by log2(K), averaged over levels; plus the number of counted codes."""
        per_level = []
        total = 0
        for counts in self._counts(reduce):
            n = float(counts.sum())
            total += int(n)
            if n == 0:
                per_level.append((0.0, 0, 0.0))
                continue
            p = counts / n
            h_bits = float(-(p * torch.log2(p)).sum())
            per_level.append((counts.numel() / self.codebook_size, counts.numel(), h_bits))
        k_bits = math.log2(self.codebook_size) if self.codebook_size > 1 else 1.0
        L = len(per_level)
        return {
            "codebook_size": self.codebook_size,
            "levels": self.num_levels,
            "codes_counted": total,
            "usage": sum(u for u, _, _ in per_level) / L,
            "used_codes": sum(c for _, c, _ in per_level) / L,
            "entropy_bits": sum(h for _, _, h in per_level) / L,
            "perplexity": sum(2.0**h for _, _, h in per_level) / L,
            "normalized_entropy": sum(h for _, _, h in per_level) / L / k_bits,
        }
