"""Pixel-range conversion and resize / crop / flip transforms for image datasets.

Random transforms take an explicit ``numpy.random.Generator`` so that an item's
augmentation depends only on (seed, epoch, index): the same on every worker layout and
after a resume.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

CROPS = ("center", "random")


def to_model_range(x: Tensor | np.ndarray) -> Tensor:
    """uint8 in [0, 255] or float in [0, 1] -> float32 in [-1, 1] (same shape).

    Raises on float input outside [0, 1] (a tensor already in [-1, 1] is not silently
    converted twice).
    """
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, Tensor):
        raise TypeError(f"expected a tensor or numpy array, got {type(x).__name__}")
    if x.dtype == torch.uint8:
        return x.float().div(127.5).sub(1.0)
    if not torch.is_floating_point(x):
        raise TypeError(f"expected uint8 or float pixels, got {x.dtype}")
    if x.numel():
        lo, hi = float(x.min()), float(x.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(f"float pixels must lie in [0, 1] for to_model_range, got [{lo:.3g}, {hi:.3g}]")
    return x.float().mul(2.0).sub(1.0)


def to_uint8(x: Tensor) -> Tensor:
    """Float in [-1, 1] -> uint8 in [0, 255] (clamped, rounded); inverse of ``to_model_range``."""
    if not torch.is_floating_point(x):
        raise TypeError(f"expected a float tensor in [-1, 1], got {x.dtype}")
    return x.detach().float().add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)


def resize_crop(img: Image.Image, resolution: int, crop: str = "center", rng: np.random.Generator | None = None) -> Image.Image:
    """Resize the shorter side to ``resolution`` (bicubic, antialiased) then crop a square.

    crop: "center" or "random" (random needs ``rng``).
    """
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
    if resolution <= 0:
        raise ValueError(f"resolution must be positive, got {resolution}")
    w, h = img.size
    scale = resolution / min(w, h)
    nw, nh = max(resolution, round(w * scale)), max(resolution, round(h * scale))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=None)
    if crop == "random":
        if rng is None:
            raise ValueError("crop='random' needs a random generator")
        left = int(rng.integers(0, nw - resolution + 1))
        top = int(rng.integers(0, nh - resolution + 1))
    else:
        left, top = (nw - resolution) // 2, (nh - resolution) // 2
    return img.crop((left, top, left + resolution, top + resolution))


def pil_to_tensor(img: Image.Image) -> Tensor:
    """PIL image -> (3, H, W) float32 in [-1, 1]."""
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return to_model_range(torch.from_numpy(arr.copy()).permute(2, 0, 1))


def load_image(img: Image.Image, resolution: int, crop: str, flip: bool, rng: np.random.Generator | None) -> Tensor:
    """Decode + resize/crop (+ random horizontal flip) -> (3, R, R) in [-1, 1]."""
    img.load()
    img = img.convert("RGB")
    img = resize_crop(img, resolution, crop, rng)
    x = pil_to_tensor(img)
    if flip:
        if rng is None:
            raise ValueError("flip=True needs a random generator")
        if rng.random() < 0.5:
            x = x.flip(-1)
    return x


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """Per-item generator: augmentation is a pure function of (seed, epoch, index)."""
    return np.random.default_rng([int(seed), int(epoch), int(index)])


class ImageViews:
    """Augmentation copies an encode run stores next to each image: a horizontal flip and
    up to five crops (center, then the corners) of ``resolution`` taken from the image
    loaded at ``resolution * crop_scale``.

    ``names`` gives the copies in row order (e.g. ``["orig", "flip"]``); ``views(x)`` maps a
    batch (B, 3, R', R') to that many (B, 3, R, R) batches; ``load_preprocessing`` is what the
    dataset must deliver (the larger size when cropping).
    """

    MAX_CROPS = 5

    def __init__(self, resolution: int, crops: int = 1, flip: bool = False, crop_scale: float = 1.125) -> None:
        if not 1 <= crops <= self.MAX_CROPS:
            raise ValueError(f"crops must be in [1, {self.MAX_CROPS}], got {crops}")
        if crops > 1 and crop_scale <= 1.0:
            raise ValueError(f"crop_scale must be > 1 for multi-crop, got {crop_scale}")
        self.resolution, self.crops, self.flip, self.crop_scale = int(resolution), int(crops), bool(flip), float(crop_scale)

    @property
    def names(self) -> list[str]:
        base = ["orig"] if self.crops == 1 else [f"crop{c}" for c in range(self.crops)]
        return [n for b in base for n in ([b, f"{b}+flip" if self.crops > 1 else "flip"] if self.flip else [b])]

    @property
    def load_preprocessing(self) -> dict[str, Any]:
        res = self.resolution if self.crops == 1 else int(round(self.resolution * self.crop_scale))
        return {"resolution": res}

    def describe(self) -> dict[str, Any]:
        return {"augmentations": self.names, "crop_scale": self.crop_scale if self.crops > 1 else None}

    def views(self, x: Tensor) -> list[Tensor]:
        H, W = x.shape[-2:]
        r = self.resolution
        if self.crops == 1:
            bases = [x]
        else:
            cy, cx = (H - r) // 2, (W - r) // 2
            corners = [(cy, cx), (0, 0), (0, W - r), (H - r, 0), (H - r, W - r)][: self.crops]
            bases = [x[..., y: y + r, xx: xx + r] for y, xx in corners]
        out = []
        for b in bases:
            out.append(b)
            if self.flip:
                out.append(torch.flip(b, dims=[-1]))
        return out
