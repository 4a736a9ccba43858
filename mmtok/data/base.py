"""Shared pieces of the image datasets: item dicts, error items, epoch-aware augmentation."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch.utils.data import Dataset

from mmtok.data.transforms import CROPS, item_rng

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")


class ImageDataset(Dataset):
    """Base of the map-style image datasets.

    ``__getitem__`` returns ``{"image": (3,R,R) float in [-1,1], "key", "path", "label"}``
    or, for an unreadable item, ``{"image": None, "key", "path", "error"}``.
    Random crop / flip are drawn from ``item_rng(seed, epoch, index)``; call
    ``set_epoch(e)`` before each epoch (the loader from ``make_loader`` does it).
    """

    def __init__(self, resolution: int, crop: str = "center", flip: bool = False, seed: int = 0) -> None:
        if not isinstance(resolution, int) or resolution <= 0:
            raise ValueError(f"resolution must be a positive int, got {resolution!r}")
        if crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
        self.resolution, self.crop, self.flip, self.seed = resolution, crop, bool(flip), int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _rng(self, index: int) -> np.random.Generator | None:
        if self.crop == "random" or self.flip:
            return item_rng(self.seed, self.epoch, index)
        return None

    @staticmethod
    def error_item(key: str, path: str, exc: BaseException) -> dict[str, Any]:
        return {"image": None, "key": key, "path": path, "error": f"{type(exc).__name__}: {exc}"}
