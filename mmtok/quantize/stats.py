"""Codebook statistics, the one implementation: per-level code histograms and their summary.

    hist = code_histogram(codes, codebook_size=1024, num_levels=1)   # (levels, K) counts
    hist = all_reduce_histogram(hist)                                # sum over ranks
    s = histogram_summary(hist, codebook_size=1024)                  # usage, perplexity, ...

Codes are ``(...)`` ids for one level or ``(..., Q)`` for ``Q`` residual levels; ``-1``
marks a level dropped by quantizer dropout and is not counted. Quantizer metrics
(``Quantizer.code_metrics``) and dataset statistics (``mmtok.metrics.CodebookHistogram``)
are both computed here.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import Tensor

from mmtok.distributed import is_distributed

SUMMARY_KEYS = ("usage", "used_codes", "entropy_bits", "perplexity", "normalized_entropy")


def level_ids(codes: Tensor, codebook_size: int, num_levels: int, spare: int | None = None) -> Tensor:
    """Flat bin ids: code ``c`` of level ``i`` -> ``i * K + c``; a dropped level (-1) -> ``spare``.

    codes: ``(...)`` when ``num_levels == 1``, else ``(..., num_levels)``.
    ``spare`` defaults to ``num_levels * K`` (one bin past the last level).
    """
    if num_levels == 1:
        flat = codes.reshape(-1, 1)
    elif codes.shape[-1] != num_levels:
        raise ValueError(f"codes have {codes.shape[-1]} levels on the last axis, expected {num_levels}")
    else:
        flat = codes.reshape(-1, num_levels)
    spare = num_levels * codebook_size if spare is None else spare
    offsets = torch.arange(num_levels, device=flat.device) * codebook_size
    return torch.where(flat >= 0, flat + offsets, spare).reshape(-1)


def bincount_levels(ids: Tensor, codebook_size: int, num_levels: int) -> Tensor:
    """(levels, K) int64 counts of flat ``level_ids`` (ids past the last level are dropped)."""
    n = num_levels * codebook_size
    return torch.bincount(ids, minlength=n + 1)[:n].reshape(num_levels, codebook_size)


def code_histogram(codes: Tensor, codebook_size: int, num_levels: int = 1) -> Tensor:
    """(levels, K) int64 counts of ``codes`` on their device; -1 (dropped level) is ignored."""
    return bincount_levels(level_ids(codes.detach(), codebook_size, num_levels), codebook_size, num_levels)


def all_reduce_histogram(hist: Tensor) -> Tensor:
    """Sum ``hist`` over ranks under torch.distributed (in place, returned); unchanged otherwise.

    NCCL reduces CUDA tensors only: a CPU histogram makes the round trip through the GPU.
    """
    if not is_distributed():
        return hist
    if dist.get_backend() == "nccl" and not hist.is_cuda:
        on_gpu = hist.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(on_gpu)
        hist.copy_(on_gpu)
    else:
        dist.all_reduce(hist)
    return hist


def histogram_summary(hist: Tensor, codebook_size: int) -> dict[str, Tensor]:
    """Per-level statistics of ``hist`` (levels, M) counts, averaged over levels (0-dim tensors).

    ``M`` is ``K`` for a dense histogram, or any width holding the nonzero counts of a sparse
    one (zeros count as unused). Keys:

    - ``usage``: fraction of the K codes used at least once
    - ``used_codes``: number of codes used
    - ``entropy_bits``: entropy of the code distribution in bits
    - ``perplexity``: ``2 ** entropy_bits`` (effective number of codes)
    - ``normalized_entropy``: ``entropy_bits / log2(K)`` (1.0 = uniform)

    Float64 histograms are summarised in float64, anything else in float32.
    """
    dtype = torch.float64 if hist.dtype == torch.float64 else torch.float32
    counts = hist.to(dtype)
    used = (counts > 0).sum(-1).to(dtype)
    p = counts / counts.sum(-1, keepdim=True).clamp_min(1)
    entropy_nats = torch.special.entr(p).sum(-1)
    k_bits = math.log2(codebook_size) if codebook_size > 1 else 1.0
    entropy_bits = entropy_nats / math.log(2)
    return {
        "usage": (used / codebook_size).mean(),
        "used_codes": used.mean(),
        "entropy_bits": entropy_bits.mean(),
        "perplexity": entropy_nats.exp().mean(),
        "normalized_entropy": entropy_bits.mean() / k_bits,
    }
