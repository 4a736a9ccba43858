"""Procedural synthetic video: moving shapes, camera pans, zooms and colour fades.

Every clip is a pure function of ``(seed, index)``: no files, no network; the default video
data of the CPU main job and the tests. A scene is drawn in world coordinates (a smooth
textured background and bouncing squares / discs) and seen through a camera; time runs
from 0 to 1 over the clip, so an index gives the same motion at any resolution and any
number of frames (sampled more or less densely). Rendering is vectorised over
``(T, H, W)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mmtok.data.base import make_item
from mmtok.data.synthetic import _soft
from mmtok.data.transforms import item_rng
from mmtok.data.video import VideoDataset

KINDS = ("shapes", "pan", "zoom", "fade")
SYNTHETIC_FPS = 8.0
_TAG = 0x766964  # separates the video streams of a seed from the image ones


def _bounce(p0: float, vel: float, t: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Position at times ``t`` of a point moving at ``vel`` inside [lo, hi], reflected at the walls."""
    span = max(hi - lo, 1e-6)
    y = np.mod(p0 - lo + vel * t, 2 * span)
    return lo + np.where(y < span, y, 2 * span - y)


def _background(X: np.ndarray, Y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Smooth texture at world points (..., ) -> (..., 3) in [0, 1]: a two-colour gradient plus waves."""
    c0, c1, tint = rng.uniform(0.05, 0.95, size=(3, 3)).astype(np.float32)
    a = rng.uniform(0, 2 * np.pi)
    g = np.clip(0.5 + 0.6 * ((X - 0.5) * np.cos(a) + (Y - 0.5) * np.sin(a)), 0.0, 1.0)[..., None]
    img = c0 * (1 - g) + c1 * g
    wave = np.zeros_like(X)
    n = int(rng.integers(2, 4))
    for _ in range(n):
        f, d, ph = rng.uniform(1.5, 5.0), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        wave += np.sin(2 * np.pi * f * (X * np.cos(d) + Y * np.sin(d)) + ph)
    wave = (0.5 + 0.5 * wave / n)[..., None]
    amp = np.float32(rng.uniform(0.2, 0.45))
    return img * (1 - amp * wave) + tint * amp * wave


def render_video(seed: int, index: int, resolution: int, num_frames: int) -> tuple[np.ndarray, int]:
    """One synthetic clip: (T, H, W, 3) float32 in [0, 1] and its kind (index into ``KINDS``)."""
    rng = np.random.default_rng([_TAG, int(seed), int(index)])
    kind = int(rng.integers(len(KINDS)))
    T, R = int(num_frames), int(resolution)
    t = (np.arange(T, dtype=np.float32) / max(T - 1, 1))[:, None, None]  # (T, 1, 1) in [0, 1]
    c = (np.arange(R, dtype=np.float32) + 0.5) / R
    v, u = np.meshgrid(c, c, indexing="ij")  # (H, W): u = x, v = y

    # camera: world = centre + (screen - 0.5) / zoom + pan
    zoom = np.ones_like(t)
    pan_x, pan_y = np.zeros_like(t), np.zeros_like(t)
    if KINDS[kind] == "pan":
        speed, d = rng.uniform(0.25, 0.6), rng.uniform(0, 2 * np.pi)
        pan_x, pan_y = speed * np.cos(d) * t, speed * np.sin(d) * t
    elif KINDS[kind] == "zoom":
        rate = rng.uniform(0.4, 0.9) * (1 if rng.random() < 0.5 else -1)
        zoom = np.exp(rate * t)
    cx, cy = rng.uniform(0.4, 0.6, size=2)
    X = cx + (u - 0.5) / zoom + pan_x  # (T, H, W)
    Y = cy + (v - 0.5) / zoom + pan_y
    img = _background(X, Y, rng)  # (T, H, W, 3)

    # bouncing squares / discs in world coordinates
    px = 1.0 / (R * zoom)  # one pixel in world units
    num_shapes = int(rng.integers(1, 4))
    for _ in range(num_shapes):
        r = rng.uniform(0.08, 0.18)
        x0, y0 = rng.uniform(r, 1 - r, size=2)
        speed, d = rng.uniform(0.3, 1.2), rng.uniform(0, 2 * np.pi)
        xs = _bounce(x0, speed * np.cos(d), t, r, 1 - r)
        ys = _bounce(y0, speed * np.sin(d), t, r, 1 - r)
        if rng.random() < 0.5:  # disc
            sdf = np.hypot(X - xs, Y - ys) - r
        else:  # square, turning
            a = rng.uniform(0, np.pi / 2) + rng.uniform(-1.5, 1.5) * t
            dx, dy = X - xs, Y - ys
            sdf = np.maximum(np.abs(dx * np.cos(a) + dy * np.sin(a)), np.abs(-dx * np.sin(a) + dy * np.cos(a))) - r
        cov = _soft(sdf, px)[..., None]
        col = rng.uniform(0, 1, size=3).astype(np.float32)
        img = img * (1 - cov) + col * cov

    if KINDS[kind] == "fade":  # fade in from / out to a colour
        colour = rng.uniform(0, 1, size=3).astype(np.float32)
        a = (t if rng.random() < 0.5 else 1 - t)[..., None]
        img = img * a + colour * (1 - a)
    return np.clip(img, 0.0, 1.0).astype(np.float32), kind


class SyntheticVideo(VideoDataset):
    """Deterministic procedural clips of ``num_frames`` frames (kinds: ``KINDS``; ``label`` is the
    kind index, ``meta["kind"]`` its name). Keys are ``synthetic/000123``; values in [-1, 1];
    the same ``meta`` fields as ``VideoFolder`` (a clip is a whole item at ``SYNTHETIC_FPS``, which
    ``fps`` / ``describe()`` report).
    ``flip`` flips a clip horizontally with probability 1/2 (``item_rng(seed, epoch, index)``).
    """

    def __init__(self, num_items: int = 1024, resolution: int | None = 32, num_frames: int | None = 8, seed: int = 0,
                 flip: bool = False) -> None:
        super().__init__(resolution, num_frames, fps=SYNTHETIC_FPS, clip="start", flip=flip, seed=seed)
        if not isinstance(num_items, int) or isinstance(num_items, bool) or num_items <= 0:
            raise ValueError(f"num_items must be a positive int, got {num_items!r}")
        self.num_items = num_items

    def __len__(self) -> int:
        return self.num_items

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.num_items:
            raise IndexError(f"index {index} out of range for {self.num_items} synthetic clips")
        arr, kind = render_video(self.seed, index, self.resolution, self.num_frames)
        x = torch.from_numpy(arr).permute(3, 0, 1, 2).mul(2.0).sub(1.0).contiguous()  # (3, T, R, R) in [-1, 1]
        if self.flip and item_rng(self.seed, self.epoch, index).random() < 0.5:
            x = x.flip(-1)
        key = f"synthetic/{index:06d}"
        meta = {"start_frame": 0, "fps": SYNTHETIC_FPS, "source_fps": SYNTHETIC_FPS,
                "num_source_frames": self.num_frames, "frame_stride": 1, "kind": KINDS[kind]}
        return make_item(x, key, key, kind, meta)

    def __repr__(self) -> str:
        return (f"SyntheticVideo(num_items={self.num_items}, resolution={self.resolution}, "
                f"num_frames={self.num_frames}, seed={self.seed})")
