"""Datasets and loaders: image folders, WebDataset-style tar shards, procedural synthetic images.

Every image dataset yields ``{"image": (3,H,W) float in [-1,1], "key", "path", "label"}``;
an unreadable file yields ``{"image": None, "key", "path", "error"}`` and
``collate_images`` drops it and reports ``(path, message)`` in the batch's ``"errors"``.

    ds = mmtok.data.open_image_dataset("synthetic:4096", resolution=32)
    loader = mmtok.data.make_loader(ds, batch_size=16, shuffle=True, seed=0)
"""

from __future__ import annotations

import glob
from pathlib import Path

from mmtok.data.base import IMAGE_EXTENSIONS, ImageDataset
from mmtok.data.folder import ImageFolder
from mmtok.data.loader import BatchStream, ShardedSampler, collate_images, make_loader
from mmtok.data.synthetic import SyntheticImages
from mmtok.data.tar import TarShardImages, expand_braces
from mmtok.data.transforms import resize_crop, to_model_range, to_uint8


def open_image_dataset(spec: str | Path, resolution: int, crop: str = "center", flip: bool = False, seed: int = 0) -> ImageDataset:
    """Dataset from a spec string.

    ``"synthetic"`` / ``"synthetic:N"`` -> ``SyntheticImages`` (N items, default 1024);
    a directory -> ``ImageFolder``; a ``.tar`` file, glob or brace list
    (``/data/shard-{0000..0127}.tar``) -> ``TarShardImages``. A missing path raises
    ``FileNotFoundError``; a source without images raises ``ValueError``.
    """
    s = str(spec).strip()
    if not s:
        raise ValueError("empty dataset spec; use 'synthetic[:N]', an image folder or a tar shard pattern")
    if s == "synthetic" or s.startswith("synthetic:"):
        n = s.partition(":")[2]
        try:
            num = int(n) if n else 1024
        except ValueError:
            raise ValueError(f"bad synthetic dataset spec {s!r}; use 'synthetic' or 'synthetic:N'") from None
        return SyntheticImages(num_items=num, resolution=resolution, seed=seed, flip=flip)
    p = Path(s).expanduser()
    if p.is_dir():
        return ImageFolder(p, resolution, crop=crop, flip=flip, seed=seed)
    if s.endswith(".tar") or "{" in s or glob.has_magic(s) or p.suffix == ".tar":
        if not ("{" in s or glob.has_magic(s)) and not p.exists():
            raise FileNotFoundError(f"tar shard not found: {p}")
        return TarShardImages(s, resolution, crop=crop, flip=flip, seed=seed)
    if not p.exists():
        raise FileNotFoundError(f"dataset path not found: {p} (expected 'synthetic[:N]', an image folder or .tar shards)")
    raise ValueError(f"unsupported dataset source {p}: expected an image folder or .tar shards")


__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageDataset",
    "SyntheticImages",
    "ImageFolder",
    "TarShardImages",
    "open_image_dataset",
    "collate_images",
    "make_loader",
    "ShardedSampler",
    "BatchStream",
    "to_model_range",
    "to_uint8",
    "resize_crop",
    "expand_braces",
]
