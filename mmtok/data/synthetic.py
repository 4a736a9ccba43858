"""Procedural synthetic images (gradients, textures, shapes) at any resolution.

Every item is a pure function of ``(seed, index)``: the dataset needs no files and no
network, and is the default data of the CPU main job and the tests. The geometry is drawn
in resolution-independent coordinates, so the same index gives the same picture at 32 or
256 pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mmtok.data.base import ImageDataset, make_item

SHAPES = ("circle", "rectangle", "triangle", "ellipse")
TEXTURES = ("none", "stripes", "checker", "waves")


def _soft(d: np.ndarray, px: float) -> np.ndarray:
    """Signed distance (negative inside) -> anti-aliased coverage in [0, 1]."""
    return np.clip(0.5 - d / px, 0.0, 1.0)


def _shape_sdf(kind: str, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    cx, cy = rng.uniform(0.2, 0.8, size=2)
    size = rng.uniform(0.12, 0.32)
    if kind == "circle":
        return np.hypot(u - cx, v - cy) - size
    if kind == "ellipse":
        a, b = size, size * rng.uniform(0.35, 0.8)
        t = rng.uniform(0, np.pi)
        x = (u - cx) * np.cos(t) + (v - cy) * np.sin(t)
        y = -(u - cx) * np.sin(t) + (v - cy) * np.cos(t)
        return (np.hypot(x / a, y / b) - 1.0) * min(a, b)
    if kind == "rectangle":
        hw, hh = size, size * rng.uniform(0.5, 1.0)
        t = rng.uniform(0, np.pi / 2)
        x = (u - cx) * np.cos(t) + (v - cy) * np.sin(t)
        y = -(u - cx) * np.sin(t) + (v - cy) * np.cos(t)
        return np.maximum(np.abs(x) - hw, np.abs(y) - hh)
    # triangle: intersection of three half-planes around the centre
    t0 = rng.uniform(0, 2 * np.pi)
    d = np.full_like(u, -np.inf)
    for k in range(3):
        a = t0 + k * 2 * np.pi / 3
        d = np.maximum(d, (u - cx) * np.cos(a) + (v - cy) * np.sin(a) - size * 0.5)
    return d


def render(seed: int, index: int, resolution: int) -> tuple[np.ndarray, int]:
    """One synthetic image: (H, W, 3) float32 in [0, 1] and its label (index into SHAPES)."""
    rng = np.random.default_rng([int(seed), int(index)])
    r = resolution
    c = (np.arange(r, dtype=np.float32) + 0.5) / r
    v, u = np.meshgrid(c, c, indexing="ij")  # (H, W) each, u = x, v = y
    px = 1.0 / r

    # background: linear or radial gradient between two colours
    c0, c1 = rng.uniform(0, 1, size=(2, 3)).astype(np.float32)
    if rng.random() < 0.7:
        a = rng.uniform(0, 2 * np.pi)
        t = (u - 0.5) * np.cos(a) + (v - 0.5) * np.sin(a) + 0.5
    else:
        t = np.hypot(u - rng.uniform(0.2, 0.8), v - rng.uniform(0.2, 0.8)) * 1.4
    t = np.clip(t, 0, 1)[..., None]
    img = c0 * (1 - t) + c1 * t

    # texture overlay
    texture = TEXTURES[int(rng.integers(len(TEXTURES)))]
    if texture != "none":
        freq = rng.uniform(3, 10)
        a = rng.uniform(0, np.pi)
        if texture == "stripes":
            pat = 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * freq * (u * np.cos(a) + v * np.sin(a))))
        elif texture == "checker":
            pat = ((np.floor(u * freq) + np.floor(v * freq)) % 2).astype(np.float32)
        else:
            pat = 0.5 + 0.5 * np.sin(2 * np.pi * freq * u + 3 * np.sin(2 * np.pi * v * freq / 3))
        tint = rng.uniform(0, 1, size=3).astype(np.float32)
        amp = rng.uniform(0.15, 0.4)
        img = img * (1 - amp * pat[..., None]) + tint * amp * pat[..., None]

    # one to three shapes; the first (drawn last, on top) gives the label
    n = int(rng.integers(1, 4))
    kinds = [int(rng.integers(len(SHAPES))) for _ in range(n)]
    for k in reversed(kinds):
        cov = _soft(_shape_sdf(SHAPES[k], u, v, rng), px)[..., None]
        col = rng.uniform(0, 1, size=3).astype(np.float32)
        img = img * (1 - cov) + col * cov
    return np.clip(img, 0.0, 1.0).astype(np.float32), kinds[0]


class SyntheticImages(ImageDataset):
    """Deterministic procedural images: gradients, textures (stripes, checker, waves) and
    anti-aliased shapes. ``label`` is the top shape (0 circle, 1 rectangle, 2 triangle,
    3 ellipse). Keys are ``synthetic/000123``.
    """

    def __init__(self, num_items: int = 1024, resolution: int = 32, seed: int = 0, flip: bool = False) -> None:
        super().__init__(resolution, crop="center", flip=flip, seed=seed)
        if not isinstance(num_items, int) or num_items <= 0:
            raise ValueError(f"num_items must be a positive int, got {num_items!r}")
        self.num_items = num_items

    def __len__(self) -> int:
        return self.num_items

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.num_items:
            raise IndexError(f"index {index} out of range for {self.num_items} synthetic images")
        arr, label = render(self.seed, index, self.resolution)
        x = torch.from_numpy(arr).permute(2, 0, 1).mul(2.0).sub(1.0).contiguous()  # (3, R, R) in [-1, 1]
        rng = self._rng(index)
        if rng is not None and rng.random() < 0.5:
            x = x.flip(-1)
        key = f"synthetic/{index:06d}"
        return make_item(x, key, key, label)

    def __repr__(self) -> str:
        return f"SyntheticImages(num_items={self.num_items}, resolution={self.resolution}, seed={self.seed})"
