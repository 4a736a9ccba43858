"""Real photographic data with no download: crops of, and camera moves over, the sample photos
that the scikit-image wheel ships.

``photos[:N]`` (train) and ``photos_val[:N]`` (held out) are specs of ``open_dataset`` for
images *and* videos:

- image: random square crops (scale jitter: the crop side is 1-2x the resolution, resized with
  antialiasing) of the train or held-out region of each photo;
- video: a camera pans (0.3-1.5 output pixels per frame, any direction) and slowly zooms over
  the same regions, so consecutive frames differ by real sub-pixel motion of real texture.

The split is spatial: the top 75% of every photo is train, the bottom 25% held out, so no
held-out pixel is ever seen in training. Every item is a pure function of
``(seed, index)``; ``flip`` adds a horizontal flip drawn from ``item_rng(seed, epoch, index)``.
scikit-image is an optional dependency (``pip install scikit-image`` or ``mmtok[eval]``);
without it the dataset fails with that message.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mmtok.data.base import ImageDataset, make_item
from mmtok.data.transforms import item_rng
from mmtok.data.video import VideoDataset

# colour photos first; grey texture photos are used as 3 equal channels
PHOTO_FILES = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "hubble_deep_field.jpg", "ihc.png",
               "motorcycle_left.png", "retina.jpg", "brick.png", "camera.png", "grass.png", "gravel.png")
SHORT_SIDE = 384  # every photo is resized so its short side has this many pixels
TRAIN_FRACTION = 0.75
SPLITS = ("train", "val")
PHOTO_FPS = 8.0
_TAG = 0x70686F  # separates the photo streams of a seed from the other datasets'


def _skimage_data_dir() -> Path:
    try:
        import skimage.data
    except ImportError:
        raise ImportError("the 'photos' dataset reads the sample photos shipped with scikit-image: "
                          "pip install scikit-image (or mmtok[eval])") from None
    return Path(skimage.data.__file__).parent


@lru_cache(maxsize=4)
def load_photo_regions(split: str) -> tuple[Tensor, ...]:
    """The ``split`` region of each sample photo: (3, h, w) float32 in [-1, 1], short side of the
    whole photo = ``SHORT_SIDE``."""
    from PIL import Image

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = _skimage_data_dir()
    out = []
    for name in PHOTO_FILES:
        path = root / name
        if not path.is_file():  # a scikit-image build without this photo: use the others
            continue
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.float32)
        img = torch.from_numpy(arr).permute(2, 0, 1)[None] / 127.5 - 1.0
        scale = SHORT_SIDE / min(img.shape[-2:])
        img = F.interpolate(img, scale_factor=scale, mode="bilinear", antialias=True, align_corners=False)[0]
        cut = int(round(img.shape[1] * TRAIN_FRACTION))
        out.append((img[:, :cut] if split == "train" else img[:, cut:]).clamp(-1, 1).contiguous())
    if not out:
        raise FileNotFoundError(f"no sample photos found in {root}")
    return tuple(out)


def _parse_split(name: str) -> str:
    return "val" if name == "photos_val" else "train"


def _shrink(region: Tensor, factor: float) -> Tensor:
    """``region`` (3, h, w) scaled by ``factor`` <= 1 with antialiasing (a no-op at 1)."""
    if factor >= 0.999:
        return region
    return F.interpolate(region[None], scale_factor=factor, mode="bilinear", antialias=True, align_corners=False,
                         recompute_scale_factor=False)[0]


class PhotoCrops(ImageDataset):
    """Random square crops of the scikit-image sample photos (see the module docstring).

    Keys are ``photos/train/000123`` / ``photos/val/000123``; ``label`` is the photo index.
    """

    def __init__(self, num_items: int = 1024, resolution: int = 32, split: str = "train", seed: int = 0,
                 flip: bool = False) -> None:
        super().__init__(resolution, crop="center", flip=flip, seed=seed)
        if not isinstance(num_items, int) or isinstance(num_items, bool) or num_items <= 0:
            raise ValueError(f"num_items must be a positive int, got {num_items!r}")
        self.num_items, self.split = num_items, split
        self.regions = load_photo_regions(split)
        small = min(min(r.shape[1:]) for r in self.regions)
        if small < resolution:
            raise ValueError(f"resolution {resolution} is larger than the smallest {split} photo region ({small} px)")

    def __len__(self) -> int:
        return self.num_items

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.num_items:
            raise IndexError(f"index {index} out of range for {self.num_items} photo crops")
        rng = np.random.default_rng([_TAG, self.seed, index])
        p = int(rng.integers(len(self.regions)))
        region = self.regions[p]
        h, w = region.shape[1:]
        r = self.resolution
        side = int(rng.integers(r, min(2 * r, h, w) + 1))
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = region[:, top : top + side, left : left + side]
        if side != r:
            crop = F.interpolate(crop[None], size=(r, r), mode="bilinear", antialias=True, align_corners=False)[0]
        x = crop.clamp(-1, 1).contiguous()
        if self.flip and item_rng(self.seed, self.epoch, index).random() < 0.5:
            x = x.flip(-1)
        key = f"photos/{self.split}/{index:06d}"
        return make_item(x, key, key, p, {"photo": PHOTO_FILES[p] if p < len(PHOTO_FILES) else str(p)})

    def __repr__(self) -> str:
        return f"PhotoCrops(num_items={self.num_items}, resolution={self.resolution}, split={self.split!r}, seed={self.seed})"


def render_pan(region: Tensor, resolution: int, num_frames: int, rng: np.random.Generator) -> tuple[Tensor, dict[str, Any]]:
    """A camera move over ``region`` (3, h, w): (3, T, R, R) in [-1, 1] and its parameters.

    The view side in photo pixels is 1-2x ``resolution``; the camera moves 0.3-1.5 output pixels
    per frame in a random direction and zooms by up to +-15% over the clip; frames are bilinear
    samples of the antialiased, pre-shrunk region (no aliasing, sub-pixel motion).
    """
    R, T = int(resolution), int(num_frames)
    h, w = region.shape[1:]
    side = float(rng.uniform(R, min(2 * R, h, w)))
    shrink = R / side
    src = _shrink(region, shrink)  # one output pixel = one src pixel at zoom 1
    sh, sw = src.shape[1:]
    speed = float(rng.uniform(0.3, 1.5))
    angle = float(rng.uniform(0, 2 * np.pi))
    zoom_end = float(rng.uniform(0.85, 1.15))
    t = torch.arange(T, dtype=torch.float32)
    zoom = zoom_end ** (t / max(T - 1, 1))  # view side = R / zoom src pixels
    dx, dy = speed * np.cos(angle) * t, speed * np.sin(angle) * t
    half = R / (2 * zoom.min().item())  # largest half-view
    span_x = (float(dx.min()), float(dx.max()))
    span_y = (float(dy.min()), float(dy.max()))
    lo_x, hi_x = half - span_x[0], sw - half - span_x[1]
    lo_y, hi_y = half - span_y[0], sh - half - span_y[1]
    if hi_x < lo_x or hi_y < lo_y:  # the move does not fit: slow it down to a still view
        dx, dy = torch.zeros(T), torch.zeros(T)
        lo_x, hi_x, lo_y, hi_y = half, sw - half, half, sh - half
    cx = float(rng.uniform(lo_x, max(lo_x, hi_x))) + dx  # (T,) centre in src pixels
    cy = float(rng.uniform(lo_y, max(lo_y, hi_y))) + dy
    offs = (torch.arange(R, dtype=torch.float32) + 0.5 - R / 2)  # (R,) output pixel centres
    gx = (cx[:, None] + offs[None] / zoom[:, None]) / sw * 2 - 1  # (T, R) in normalised coords
    gy = (cy[:, None] + offs[None] / zoom[:, None]) / sh * 2 - 1
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)  # (T, R, R, 2)
    frames = F.grid_sample(src[None].expand(T, -1, -1, -1), grid, mode="bilinear", padding_mode="border",
                           align_corners=False)  # (T, 3, R, R)
    meta = {"speed_px_per_frame": round(speed, 4), "direction_rad": round(angle, 4), "zoom_end": round(zoom_end, 4)}
    return frames.permute(1, 0, 2, 3).clamp(-1, 1).contiguous(), meta


class PhotoPanVideo(VideoDataset):
    """Clips of a camera panning and zooming over the sample photos (see :func:`render_pan`).

    Keys are ``photos/train/000123``; ``label`` is the photo index; ``meta`` has the
    ``VideoFolder`` fields plus the camera speed, direction and zoom.
    """

    def __init__(self, num_items: int = 1024, resolution: int | None = 32, num_frames: int | None = 8,
                 split: str = "train", seed: int = 0, flip: bool = False) -> None:
        super().__init__(resolution, num_frames, fps=PHOTO_FPS, clip="start", flip=flip, seed=seed)
        if not isinstance(num_items, int) or isinstance(num_items, bool) or num_items <= 0:
            raise ValueError(f"num_items must be a positive int, got {num_items!r}")
        self.num_items, self.split = num_items, split
        self.regions = load_photo_regions(split)
        small = min(min(r.shape[1:]) for r in self.regions)
        if small < self.resolution:
            raise ValueError(f"resolution {self.resolution} is larger than the smallest {split} photo region ({small} px)")

    def __len__(self) -> int:
        return self.num_items

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.num_items:
            raise IndexError(f"index {index} out of range for {self.num_items} photo clips")
        rng = np.random.default_rng([_TAG, 1, self.seed, index])
        p = int(rng.integers(len(self.regions)))
        x, cam = render_pan(self.regions[p], self.resolution, self.num_frames, rng)
        if self.flip and item_rng(self.seed, self.epoch, index).random() < 0.5:
            x = x.flip(-1)
        key = f"photos/{self.split}/{index:06d}"
        meta = {"start_frame": 0, "fps": PHOTO_FPS, "source_fps": PHOTO_FPS, "num_source_frames": self.num_frames,
                "frame_stride": 1, "photo": PHOTO_FILES[p] if p < len(PHOTO_FILES) else str(p), **cam}
        return make_item(x, key, key, p, meta)

    def __repr__(self) -> str:
        return (f"PhotoPanVideo(num_items={self.num_items}, resolution={self.resolution}, "
                f"num_frames={self.num_frames}, split={self.split!r}, seed={self.seed})")


def parse_photo_spec(spec: str) -> tuple[str, int] | None:
    """``"photos[:N]"`` / ``"photos_val[:N]"`` -> (split, N); None for any other spec."""
    name, _, n = spec.partition(":")
    if name not in ("photos", "photos_val") or Path(spec).exists():
        return None
    try:
        num = int(n) if n else 1024
    except ValueError:
        raise ValueError(f"bad photo dataset spec {spec!r}; use 'photos[:N]' or 'photos_val[:N]'") from None
    return _parse_split(name), num
