"""The item protocol every dataset of every modality yields, and the image dataset base.

An item is a dict::

    {"x": Tensor | None,   # the model input of one item (image (3, H, W), audio (C, S), video (3, T, H, W)) in [-1, 1]
     "key": str,           # stable id (shard rows, reports, error lists)
     "path": str,          # where it came from (file, tar member, "synthetic/000123")
     "label": int,         # class id (0 when the source has none)
     "meta": dict,         # modality-specific facts (e.g. audio offset / sample rate); JSON-friendly
     "error": str}         # only when x is None: why the item could not be read

``mmtok.data.collate`` batches items of any modality.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch.utils.data import Dataset

from mmtok.data.transforms import CROPS, item_rng

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff")


def make_item(x: Any, key: str, path: str, label: int = 0, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """A readable item in the protocol's shape."""
    return {"x": x, "key": key, "path": path, "label": int(label), "meta": dict(meta or {})}


def error_item(key: str, path: str, exc: BaseException | str) -> dict[str, Any]:
    """An unreadable item: ``x`` is None and ``error`` says why (batches report it, never fail)."""
    msg = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    return {"x": None, "key": key, "path": path, "label": 0, "meta": {}, "error": msg}


class ImageDataset(Dataset):
    """Base of the map-style image datasets.

    ``__getitem__`` returns an item (``x``: (3, R, R) float in [-1, 1]) or, for an
    unreadable file, an error item (see the module docstring).
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

    error_item = staticmethod(error_item)
