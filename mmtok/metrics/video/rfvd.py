"""rFVD of reconstructions: Fréchet distance between Gaussian fits of I3D logits of the original
clips and of their reconstructions, per rung of the rate ladder (this run's originals are the reference)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from mmtok.metrics.fid import FeatureStats, GaussianStats, fid_from_stats

OWN_REFERENCE = "dataset clips of this run (same N, frames, fps, resolution, crop)"
STATISTICS = ("float64 sums all-reduced across ranks; unbiased covariance (N-1); Tr sqrt(S1 S2) by "
              "scipy.linalg.sqrtm, or exactly via the N x N low-rank form when N <= feature dim (400)")


class RFVD:
    """Streaming rFVD for each rung ``k``.

    Args:
        weights: I3D weights path or "auto" (``mmtok.metrics.video.i3d``).
        method: matrix square-root route of ``mmtok.metrics.fid.frechet_distance``.
        lengths: the rungs evaluated.
    """

    def __init__(self, *, weights: str | os.PathLike | None, method: str = "auto", lengths: Sequence[int]) -> None:
        from mmtok.metrics.video.i3d import FEATURE_DIM

        self.weights, self.method = weights, method
        self.real = FeatureStats(FEATURE_DIM)
        self.rec = {k: FeatureStats(FEATURE_DIM) for k in lengths}
        self.net: Any = None
        self.features: dict[str, Any] | None = None
        self.ref: GaussianStats | None = None
        self.reference = OWN_REFERENCE

    def setup(self, device: torch.device) -> None:
        """Load the I3D network (raises ``FileNotFoundError`` naming the weights file when absent)."""
        from mmtok.metrics.video.i3d import get_i3d

        self.net = get_i3d(self.weights, device=device)
        self.features = self.net.describe()

    def add_real(self, real: Tensor) -> None:
        """uint8 (B, 3, T, H, W) originals."""
        self.real.update(self.net(real))

    def add_reconstruction(self, k: int, rec: Tensor) -> None:
        """uint8 (B, 3, T, H, W) reconstructions of rung ``k``."""
        self.rec[k].update(self.net(rec))

    def compute(self, rank: int) -> dict[int, float | None]:
        """rFVD per rung (collective; values on rank 0, None elsewhere)."""
        rec = {k: acc.compute() for k, acc in self.rec.items()}
        self.ref = self.real.compute()
        if rank != 0:
            return {k: None for k in rec}
        return {k: fid_from_stats(s, self.ref, method=self.method) for k, s in rec.items()}
