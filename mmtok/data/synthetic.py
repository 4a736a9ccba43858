"""Procedural synthetic images (gradients, textures, shapes) at any resolution.

Every item is a pure function of ``(seed, index)``: the dataset needs no files and no
network, and is the default data of the CPU main job and the tests. The geometry is drawn
in resolution-independent coordinates, so the same index gives the same picture at 32 or
256 pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mmtok.data.base import ImageDataset, make_item

SHAPES = ("circle", "rectangle", "triangle", "ellipse")
TEXTURES = ("none", "stripes", "checker", "waves")


def _soft(d: np.ndarray, px: float) -> np.ndarray:
    """Signed distance (negative inside) -> anti-aliased coverage in [0, 1]."""
    return np.clip(0.5 - d / px, 0.0, 1.0)


def render(seed: int, index: int, resolution: int) -> tuple[np.ndarray, int]:
    """One synthetic image: (H, W, 3) float32 in [0, 1] and its label (index into SHAPES)."""
    arr, labels = render_batch(seed, [index], resolution)
    return arr[0], labels[0]


def _gather(rows: list[dict[str, Any]], name: str, dtype: Any) -> np.ndarray:
    """Per-item values of ``name`` stacked for broadcasting against (n, H, W[, 3]) arrays."""
    a = np.asarray([r[name] for r in rows], dtype=dtype)
    return a.reshape(len(rows), 1, 1, *a.shape[1:])


def _draw(seed: int, index: int) -> dict[str, Any]:
    """The random parameters of one image, drawn in exactly the order :func:`render` draws them."""
    rng = np.random.default_rng([int(seed), int(index)])
    p: dict[str, Any] = {}
    p["c0"], p["c1"] = rng.uniform(0, 1, size=(2, 3)).astype(np.float32)
    p["linear"] = bool(rng.random() < 0.7)
    if p["linear"]:
        a = rng.uniform(0, 2 * np.pi)
        p["cos"], p["sin"] = np.cos(a), np.sin(a)
    else:
        p["rx"], p["ry"] = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8)
    p["texture"] = TEXTURES[int(rng.integers(len(TEXTURES)))]
    if p["texture"] != "none":
        freq = rng.uniform(3, 10)
        a = rng.uniform(0, np.pi)
        p["freq"], p["tcos"], p["tsin"] = freq, np.cos(a), np.sin(a)
        p["w2pif"] = 2 * np.pi * freq
        tint = rng.uniform(0, 1, size=3).astype(np.float32)
        amp = rng.uniform(0.15, 0.4)
        p["amp"], p["tint_amp"] = amp, tint * amp
    n = int(rng.integers(1, 4))
    kinds = [int(rng.integers(len(SHAPES))) for _ in range(n)]
    shapes = []
    for k in reversed(kinds):
        s: dict[str, Any] = {"kind": SHAPES[k]}
        s["cx"], s["cy"] = rng.uniform(0.2, 0.8, size=2)
        size = rng.uniform(0.12, 0.32)
        s["size"] = size
        if s["kind"] in ("ellipse", "rectangle"):
            other = size * (rng.uniform(0.35, 0.8) if s["kind"] == "ellipse" else rng.uniform(0.5, 1.0))
            t = rng.uniform(0, np.pi) if s["kind"] == "ellipse" else rng.uniform(0, np.pi / 2)
            s["other"], s["cos"], s["sin"] = other, np.cos(t), np.sin(t)
            s["scale"] = min(size, other)
        elif s["kind"] == "triangle":
            t0 = rng.uniform(0, 2 * np.pi)
            s["tri"] = [(np.cos(a), np.sin(a)) for a in (t0 + k * 2 * np.pi / 3 for k in range(3))]
        s["col"] = rng.uniform(0, 1, size=3).astype(np.float32)
        shapes.append(s)
    p["shapes"], p["label"] = shapes, kinds[0]
    return p


def _shape_sdf_batch(kind: str, u: np.ndarray, v: np.ndarray, rows: list[dict[str, Any]]) -> np.ndarray:
    """:func:`_shape_sdf` of ``len(rows)`` shapes of one kind at once: (n, H, W) float64."""
    cx, cy = _gather(rows, "cx", np.float64), _gather(rows, "cy", np.float64)
    size = _gather(rows, "size", np.float64)
    if kind == "circle":
        return np.hypot(u - cx, v - cy) - size
    if kind == "triangle":
        d = None
        for k in range(3):
            c = np.asarray([r["tri"][k][0] for r in rows]).reshape(-1, 1, 1)
            s = np.asarray([r["tri"][k][1] for r in rows]).reshape(-1, 1, 1)
            e = (u - cx) * c + (v - cy) * s - size * 0.5
            d = e if d is None else np.maximum(d, e)
        return d
    other, c, s = _gather(rows, "other", np.float64), _gather(rows, "cos", np.float64), _gather(rows, "sin", np.float64)
    x = (u - cx) * c + (v - cy) * s
    y = -(u - cx) * s + (v - cy) * c
    if kind == "ellipse":
        return (np.hypot(x / size, y / other) - 1.0) * _gather(rows, "scale", np.float64)
    return np.maximum(np.abs(x) - size, np.abs(y) - other)


def render_batch(seed: int, indices: Sequence[int], resolution: int) -> tuple[np.ndarray, list[int]]:
    """:func:`render` of many images at once, bit-identical: (N, H, W, 3) float32 in [0, 1] and the labels.

    The per-item parameters are drawn exactly as :func:`render` draws them; the array work
    runs once per group of items that take the same branch, in the same dtypes.
    """
    params = [_draw(seed, i) for i in indices]
    r = resolution
    c = (np.arange(r, dtype=np.float32) + 0.5) / r
    v, u = np.meshgrid(c, c, indexing="ij")
    px = 1.0 / r
    img = np.empty((len(params), r, r, 3), np.float64)  # the first shape promotes every image to float64
    groups: dict[tuple[bool, str], list[int]] = {}
    for j, p in enumerate(params):
        groups.setdefault((p["linear"], p["texture"]), []).append(j)
    for (linear, texture), idx in groups.items():
        rows = [params[j] for j in idx]
        if linear:
            t = (u - 0.5) * _gather(rows, "cos", np.float64) + (v - 0.5) * _gather(rows, "sin", np.float64) + 0.5
        else:  # python floats meet float32 arrays: float32 math
            t = np.hypot(u - _gather(rows, "rx", np.float32), v - _gather(rows, "ry", np.float32)) * 1.4
        t = np.clip(t, 0, 1)[..., None]
        g = _gather(rows, "c0", np.float32) * (1 - t) + _gather(rows, "c1", np.float32) * t
        if texture != "none":
            if texture == "stripes":
                arg = u * _gather(rows, "tcos", np.float64) + v * _gather(rows, "tsin", np.float64)
                pat = 0.5 + 0.5 * np.sign(np.sin(_gather(rows, "w2pif", np.float64) * arg))
            elif texture == "checker":
                f = _gather(rows, "freq", np.float32)
                pat = ((np.floor(u * f) + np.floor(v * f)) % 2).astype(np.float32)
            else:
                f = _gather(rows, "freq", np.float32)
                pat = 0.5 + 0.5 * np.sin(u * _gather(rows, "w2pif", np.float32)
                                         + 3 * np.sin(np.float32(2 * np.pi) * v * f / np.float32(3)))
            amp = _gather(rows, "amp", pat.dtype)[..., None]
            g = g * (1 - amp * pat[..., None]) + _gather(rows, "tint_amp", np.float32) * pat[..., None]
        img[idx] = g
    for layer in range(3):
        by_kind: dict[str, list[int]] = {}
        for j, p in enumerate(params):
            if layer < len(p["shapes"]):
                by_kind.setdefault(p["shapes"][layer]["kind"], []).append(j)
        for kind, idx in by_kind.items():
            rows = [params[j]["shapes"][layer] for j in idx]
            cov = _soft(_shape_sdf_batch(kind, u, v, rows), px)[..., None]
            img[idx] = img[idx] * (1 - cov) + _gather(rows, "col", np.float32) * cov
    return np.clip(img, 0.0, 1.0).astype(np.float32), [p["label"] for p in params]


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

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """``[self[i] for i in indices]``, bit-identical, rendered as one batch (``DataLoader`` batches call this)."""
        indices = [int(i) for i in indices]
        for index in indices:
            if not 0 <= index < self.num_items:
                raise IndexError(f"index {index} out of range for {self.num_items} synthetic images")
        if not indices:
            return []
        arr, labels = render_batch(self.seed, indices, self.resolution)
        xs = torch.from_numpy(arr).permute(0, 3, 1, 2).mul(2.0).sub(1.0).contiguous()  # (N, 3, R, R) in [-1, 1]
        items = []
        for x, index, label in zip(xs, indices, labels):
            rng = self._rng(index)
            if rng is not None and rng.random() < 0.5:
                x = x.flip(-1)
            key = f"synthetic/{index:06d}"
            items.append(make_item(x, key, key, label))
        return items

    def __repr__(self) -> str:
        return f"SyntheticImages(num_items={self.num_items}, resolution={self.resolution}, seed={self.seed})"
