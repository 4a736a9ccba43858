"""Protocol fingerprints, dataset identity and the cache of reference (real-item) feature statistics.

A metric is only comparable to another measured under the same protocol: feature network
and its weights, preprocessing, number of items and the exact dataset. Every report carries
a fingerprint of these (the fields come from the modality's metric suite), and reference
statistics are cached under the hash of the same fields, so they are reused only when
nothing that changes them moved.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from mmtok.io import atomic_write_json
from mmtok.metrics.fid import GaussianStats

PROTOCOL_VERSION = 1


def canonical_hash(obj: Any, length: int = 16) -> str:
    """Short SHA-256 of the canonical (sorted-key) JSON of ``obj``."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def module_sha256(module: nn.Module) -> str:
    """SHA-256 of a module's state dict (sorted names, raw tensor bytes): identifies its weights."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        t = t.detach().cpu().contiguous()
        h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _files_digest(paths: list[Path], root: Path | None = None) -> str:
    h = hashlib.sha256()
    for p in paths:
        name = p.relative_to(root).as_posix() if root is not None else p.name
        try:
            size = p.stat().st_size
        except OSError:
            size = -1
        h.update(f"{name}\t{size}\n".encode())
    return h.hexdigest()[:16]


def dataset_identity(dataset: Dataset, spec: str | None = None) -> dict[str, Any]:
    """What identifies the items a dataset yields: kind, source, listing digest, size, preprocessing.

    Folders (datasets with ``files`` and ``root``) are identified by the digest of their
    sorted relative paths and file sizes, tar shards by shard names and sizes, synthetic data
    by count and seed. A ``Subset`` (first N items) records its indices' digest.
    """
    indices = None
    base = dataset
    if isinstance(dataset, Subset):
        indices = list(dataset.indices)
        base = dataset.dataset
    ident: dict[str, Any] = {"kind": type(base).__name__}
    if spec is not None:
        ident["spec"] = str(spec)
    for attr in ("resolution", "crop", "flip", "seed", "num_items"):
        if hasattr(base, attr):
            ident[attr] = getattr(base, attr)
    if hasattr(base, "files") and hasattr(base, "root"):
        ident["root"] = str(Path(base.root).resolve())
        ident["listing_sha256"] = _files_digest(list(base.files), Path(base.root))
    elif hasattr(base, "shards"):
        shards = [Path(s) for s in base.shards]
        ident["shards"] = [s.name for s in shards][:8] + ([f"... {len(shards)} shards"] if len(shards) > 8 else [])
        ident["listing_sha256"] = _files_digest(shards)
    ident["source_items"] = len(base)  # type: ignore[arg-type]
    if indices is not None:
        ident["subset"] = {"count": len(indices), "indices_sha256": canonical_hash(indices)}
    return ident


def protocol_fingerprint(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The ``protocol`` dict of a report: the version, a metric suite's ``fields`` (what makes
    its numbers comparable), and ``id``, a hash of all of them."""
    fp: dict[str, Any] = {"version": PROTOCOL_VERSION, **fields}
    fp["id"] = canonical_hash(fp)
    return fp


def reference_key(features: dict[str, Any], dataset: dict[str, Any], resolution: tuple[int, ...], num_items: int) -> str:
    """Cache key of a reference-statistics file: everything that changes the real items' features
    (feature network and weights, dataset identity, preprocessing size, number of items)."""
    return canonical_hash({"v": PROTOCOL_VERSION, "f": features, "d": dataset, "r": list(resolution), "n": int(num_items)}, 24)


def default_cache_dir() -> Path:
    """``$MMTOK_CACHE_DIR/fid_refs`` or ``~/.cache/mmtok/fid_refs``."""
    root = os.environ.get("MMTOK_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "mmtok")
    return Path(root).expanduser() / "fid_refs"


class ReferenceStatsCache:
    """Reference FID statistics on disk: ``<dir>/<key>.npz`` (mu, sigma, n) + ``<key>.json``."""

    def __init__(self, cache_dir: str | os.PathLike | None = None) -> None:
        self.dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()

    def path(self, key: str) -> Path:
        return self.dir / f"{key}.npz"

    def get(self, key: str) -> GaussianStats | None:
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            return GaussianStats.load(p)
        except (OSError, ValueError, KeyError):  # a torn / foreign file: recompute
            return None

    def put(self, key: str, stats: GaussianStats, description: dict[str, Any]) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        stats.save(self.path(key), key=key)
        atomic_write_json(self.dir / f"{key}.json", {"key": key, "n": stats.n, **description})
        return self.path(key)
