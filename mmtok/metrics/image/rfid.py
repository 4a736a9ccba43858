"""rFID of reconstructions: Inception pool3 statistics per number of kept tokens against
reference statistics of the real images (external file, cache, or this run's originals)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mmtok.io import file_sha256
from mmtok.metrics.fid import FeatureStats, GaussianStats, fid_from_stats
from mmtok.metrics.protocol import ReferenceStatsCache, reference_key
from mmtok.metrics.reduce import broadcast_object

OWN_REFERENCE = "dataset images (same N, crop, resolution)"


class RFID:
    """Streaming rFID for each prefix length.

    Args:
        weights: Inception weights path or "auto" (``mmtok.metrics.image.inception``).
        method: matrix square-root route of ``mmtok.metrics.fid.frechet_distance``.
        reference_stats: an ``.npz`` with ``mu`` / ``sigma`` of the same features to score
            against (e.g. an ADM reference batch), or None for the dataset's own images.
        cache_dir / use_cache: the reference-statistics cache (``ReferenceStatsCache``).
        lengths: the prefix lengths evaluated.
    """

    def __init__(self, *, weights: str | os.PathLike | None, method: str, reference_stats: str | os.PathLike | None,
                 cache_dir: str | os.PathLike | None, use_cache: bool, lengths: Sequence[int]) -> None:
        self.weights, self.method = weights, method
        self.reference_file = Path(reference_stats) if reference_stats is not None else None
        self.cache = ReferenceStatsCache(cache_dir) if (use_cache and reference_stats is None) else None
        self.rec = {k: FeatureStats() for k in lengths}
        self.net: Any = None
        self.features: dict[str, Any] | None = None
        self.key: str | None = None
        self.external: dict[str, Any] | None = None
        self.ref: GaussianStats | None = None
        self.ref_acc: FeatureStats | None = None
        self.hit = False
        self.source = "not computed"
        self._cache_entry: dict[str, Any] = {}

    def setup(self, device: torch.device, identity: dict[str, Any], resolution: tuple[int, int], num_items: int, rank: int) -> None:
        """Load the network and the reference statistics (collective: the cache hit is broadcast)."""
        from mmtok.metrics.image.inception import get_inception

        self.net = get_inception(self.weights, device=device)
        self.features = self.net.describe()
        if self.reference_file is not None:
            self._load_external(self.reference_file)
            self.hit = True
        else:
            self.key = reference_key(self.features, identity, resolution, num_items)
            self._cache_entry = {"feature_extractor": self.features, "dataset": identity,
                                 "resolution": list(resolution), "num_images": num_items}
        if self.cache is not None:
            cached = self.cache.get(self.key) if rank == 0 else None  # type: ignore[arg-type]
            self.hit = bool(broadcast_object(cached is not None))
            self.ref = cached
        self.ref_acc = None if self.hit else FeatureStats()

    def _load_external(self, path: Path) -> None:
        if not path.is_file():
            raise FileNotFoundError(f"reference statistics file not found: {path}")
        self.ref = GaussianStats.load(path)
        if self.ref.mu.shape != (2048,):
            raise ValueError(f"{path} holds {self.ref.mu.shape[0]}-d statistics; Inception pool3 features are 2048-d")
        self.external = {"path": str(path.resolve()), "sha256": file_sha256(path), "n": self.ref.n}

    @property
    def reference(self) -> dict[str, Any] | str:
        """What the reconstructions are scored against (protocol field)."""
        return self.external or OWN_REFERENCE

    def add_real(self, real: Tensor) -> None:
        """uint8 (B, 3, H, W) originals (ignored when the reference statistics are given)."""
        if self.ref_acc is not None:
            self.ref_acc.update(self.net(real))

    def add_reconstruction(self, k: int, rec: Tensor) -> None:
        """uint8 (B, 3, H, W) reconstructions from ``k`` tokens."""
        self.rec[k].update(self.net(rec))

    def compute(self, num_items: int, rank: int) -> dict[int, float | None]:
        """rFID per length (collective; values on rank 0, None elsewhere). Rank 0 caches reference
        statistics computed in this run when every item was read (``num_items`` == the planned N)."""
        rec = {k: acc.compute() for k, acc in self.rec.items()}
        if self.ref_acc is not None:
            self.ref = self.ref_acc.compute()
        if rank != 0:
            return {k: None for k in rec}
        assert self.ref is not None
        if self.external is not None:
            e = self.external
            self.source = f"external file {e['path']} (sha256 {e['sha256'][:16]}, N={e['n']})"
        elif self.hit:
            self.source = f"cached {self.cache.path(self.key)}"  # type: ignore[union-attr, arg-type]
        else:
            self.source = "computed in this run"
            if self.cache is not None and num_items == self._cache_entry["num_images"]:
                self.cache.put(self.key, self.ref, self._cache_entry)  # type: ignore[arg-type]
                self.source += f", cached as {self.cache.path(self.key)}"  # type: ignore[arg-type]
        return {k: fid_from_stats(s, self.ref, method=self.method) for k, s in rec.items()}
