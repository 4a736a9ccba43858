"""Dataset-level codebook statistics: usage, perplexity and entropy from a code histogram.

The histogram and its summary are ``mmtok.quantize.stats`` (the one implementation the
quantizers' own metrics use too); this accumulates it over a dataset.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from mmtok.distributed import is_distributed
from mmtok.quantize.stats import all_reduce_histogram, code_histogram, histogram_summary, level_ids
from mmtok.tokenizer import as_codes

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
        codes = as_codes(codes)
        if codes.numel() and int(codes.max()) >= self.codebook_size:
            raise ValueError(f"code id {int(codes.max())} >= codebook_size {self.codebook_size}")
        if self.dense:
            self.hist += code_histogram(codes, self.codebook_size, self.num_levels).cpu().double()
            return
        ids = level_ids(codes, self.codebook_size, self.num_levels).cpu()
        ids, counts = torch.unique(ids[ids < self.num_levels * self.codebook_size], return_counts=True)
        for i, n in zip(ids.tolist(), counts.tolist()):
            d = self.sparse[i // self.codebook_size]
            d[i % self.codebook_size] = d.get(i % self.codebook_size, 0) + n

    def _counts(self, reduce: bool) -> Tensor:
        """(levels, M) float64 counts: the dense histogram, or the nonzero counts of each level."""
        if self.dense:
            hist = self.hist.clone()
            return all_reduce_histogram(hist) if reduce else hist
        dicts = self.sparse
        if reduce and is_distributed():
            gathered: list[list[dict[int, int]]] = [None] * dist.get_world_size()  # type: ignore[list-item]
            dist.all_gather_object(gathered, dicts)
            dicts = [{} for _ in range(self.num_levels)]
            for part in gathered:
                for q, d in enumerate(part):
                    for i, n in d.items():
                        dicts[q][i] = dicts[q].get(i, 0) + n
        width = max([len(d) for d in dicts] + [1])
        counts = torch.zeros(self.num_levels, width, dtype=torch.float64)
        for q, d in enumerate(dicts):
            counts[q, : len(d)] = torch.tensor(sorted(d.values()), dtype=torch.float64)
        return counts

    def compute(self, reduce: bool = True) -> dict[str, float]:
        """usage (fraction of ids used), used_codes, perplexity (exp of entropy), entropy in bits,
        entropy normalised by log2(K), averaged over levels; plus the number of counted codes."""
        counts = self._counts(reduce)
        summary = histogram_summary(counts, self.codebook_size)
        return {
            "codebook_size": self.codebook_size,
            "levels": self.num_levels,
            "codes_counted": int(counts.sum()),
            **{k: float(v) for k, v in summary.items()},
        }
