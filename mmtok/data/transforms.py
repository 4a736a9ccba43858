"""Pixel-range conversion and resize / crop / flip transforms for image datasets.

Random transforms take an explicit ``numpy.random.Generator`` so that an item's
augmentation depends only on (seed, epoch, index): the same on every worker layout and
after a resume.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

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


def _resize_crop_box(
    size: tuple[int, int], resolution: int, crop: str, rng: np.random.Generator | None
) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """(resized size, crop box) for ``resize_crop``; draws from ``rng`` only for a random crop."""
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
    if resolution <= 0:
        raise ValueError(f"resolution must be positive, got {resolution}")
    w, h = size
    scale = resolution / min(w, h)
    nw, nh = max(resolution, round(w * scale)), max(resolution, round(h * scale))
    if crop == "random":
        if rng is None:
            raise ValueError("crop='random' needs a random generator")
        left = int(rng.integers(0, nw - resolution + 1))
        top = int(rng.integers(0, nh - resolution + 1))
    else:
        left, top = (nw - resolution) // 2, (nh - resolution) // 2
    return (nw, nh), (left, top, left + resolution, top + resolution)


def _apply_resize_crop(img: Image.Image, size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    if size != img.size:
        img = img.resize(size, Image.Resampling.BICUBIC, reducing_gap=None)
    return img.crop(box)


def resize_crop(img: Image.Image, resolution: int, crop: str = "center", rng: np.random.Generator | None = None) -> Image.Image:
    """Resize the shorter side to ``resolution`` (bicubic, antialiased) then crop a square.

    crop: "center" or "random" (random needs ``rng``).
    """
    size, box = _resize_crop_box(img.size, resolution, crop, rng)
    return _apply_resize_crop(img, size, box)


DEFAULT_BACKGROUND: tuple[int, int, int] = (255, 255, 255)
"""Colour (8-bit RGB) that transparent pixels are composited over: white."""

_PLAIN_8BIT_MODES = frozenset({"1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"})
_ALPHA_8BIT_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})
_INT_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})


def _check_background(background: tuple[int, int, int]) -> tuple[int, int, int]:
    bg = tuple(background)
    if len(bg) != 3 or not all(isinstance(v, (int, np.integer)) and 0 <= v <= 255 for v in bg):
        raise ValueError(f"background must be an (r, g, b) triple of ints in [0, 255], got {background!r}")
    return (int(bg[0]), int(bg[1]), int(bg[2]))


def _is_plain_8bit(img: Image.Image) -> bool:
    """8-bit colour without alpha or transparency: Pillow's ``convert("RGB")`` is exact."""
    return img.mode in _PLAIN_8BIT_MODES and "transparency" not in img.info


def _rgb8(img: Image.Image, background: tuple[int, int, int]) -> Image.Image | None:
    """8-bit source -> 8-bit RGB image (transparency composited); None for 16-bit / float modes."""
    if _is_plain_8bit(img):
        return img.convert("RGB")
    mode = img.mode
    if mode in ("La", "RGBa"):  # premultiplied: rgb + bg * (1 - a)
        px = np.asarray(img, dtype=np.float64)
        out = px[..., :-1] + np.asarray(background, np.float64) * (255.0 - px[..., -1:]) / 255.0
        return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))
    if mode in _ALPHA_8BIT_MODES or mode in _PLAIN_8BIT_MODES:  # straight alpha or palette / colour-key transparency
        rgba = img if mode == "RGBA" else img.convert("RGBA")
        # over an opaque background this is exactly round(rgb * a + bg * (1 - a)) per channel
        return Image.alpha_composite(Image.new("RGBA", img.size, (*background, 255)), rgba).convert("RGB")
    return None


def _int_full_scale(img: Image.Image) -> int:
    """Value that maps to 1.0 for an integer grayscale image: 2**32 - 1 for a TIFF that declares
    32 bits per sample, otherwise 65535 (Pillow's ``I`` / ``I;16*`` modes hold 16-bit data: PNG and
    PGM/PPM sources are at most 16 bits, and Pillow rescales a PGM maxval to 65535)."""
    tags = getattr(img, "tag_v2", None)
    bits = tags.get(258) if tags is not None else None
    if isinstance(bits, tuple):
        bits = bits[0] if bits else None
    return 2**32 - 1 if img.mode == "I" and bits == 32 else 65535


def image_to_rgb_array(img: Image.Image, background: tuple[int, int, int] = DEFAULT_BACKGROUND) -> np.ndarray:
    """Any Pillow image -> (H, W, 3) float32 RGB in [0, 1], every mode handled explicitly.

    8-bit sources give values on the k / 255 grid (8-bit in, 8-bit precision out):

    - ``1``, ``L``, ``P``, ``RGB``, ``RGBX``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``: Pillow's
      ``convert("RGB")``, then / 255.
    - Transparency is composited over ``background`` (8-bit RGB ints, default
      ``DEFAULT_BACKGROUND`` = white), rounded to 8 bits: ``round(rgb * a + bg * (1 - a))`` for
      straight alpha (``LA``, ``PA``, ``RGBA``, and any mode above with a ``transparency`` entry in
      ``img.info``: palette or colour-key transparency from PNG tRNS / GIF, applied by Pillow's
      ``convert("RGBA")``), ``round(rgb + bg * (1 - a))`` for premultiplied ``La`` / ``RGBa``.

    Higher-precision sources stay in float:

    - ``I;16``, ``I;16B``, ``I;16L``, ``I;16N``, ``I`` (grayscale integers): divided by the full
      scale of the source bit depth, 65535 (16-bit PNG / TIFF / PGM), or 2**32 - 1 for a TIFF that
      declares 32 bits per sample. The rule never looks at the pixel values, so a dark 16-bit
      image stays dark; values outside [0, full scale] raise ``ValueError``. A colour-key
      ``transparency`` value is composited like alpha 0. (Pillow opens a 16-bit *grayscale* PNG as
      ``I;16`` but a 16-bit *RGB(A)* PNG as 8-bit ``RGB(A)``, keeping only the high byte, so such
      files have lost their low 8 bits before this function sees them.)
    - ``F`` (32-bit float, e.g. TIFF): taken as already in [0, 1] (clipped, with 1e-3 slack);
      NaN / inf or values outside [0, 1] raise ``ValueError`` rather than being rescaled.

    Any other mode raises ``ValueError`` naming it.
    """
    background = _check_background(background)
    rgb8 = _rgb8(img, background)
    if rgb8 is not None:
        return np.asarray(rgb8, dtype=np.float32) / np.float32(255.0)
    mode = img.mode
    if mode in _INT_MODES:
        v = np.asarray(img).astype(np.float64)
        full = _int_full_scale(img)
        if v.size and (v.min() < 0 or v.max() > full):
            raise ValueError(f"{mode} image with values in [{v.min():.0f}, {v.max():.0f}]; expected [0, {full}]")
        gray = (v / full)[..., None]
        key = img.info.get("transparency")
        if isinstance(key, int):
            alpha = (v != key)[..., None].astype(np.float64)
            gray = gray * alpha + np.asarray(background) / 255.0 * (1.0 - alpha)
        return np.broadcast_to(gray, (*v.shape, 3)).astype(np.float32)
    if mode == "F":
        v = np.asarray(img, dtype=np.float32)
        if not np.isfinite(v).all():
            raise ValueError("float image contains NaN or inf; mmtok expects [0, 1] float images")
        if v.size and (v.min() < -1e-3 or v.max() > 1 + 1e-3):
            raise ValueError(f"float image with values in [{v.min():.4g}, {v.max():.4g}]; mmtok expects [0, 1] float images")
        return np.repeat(np.clip(v, 0.0, 1.0)[..., None], 3, axis=-1)
    raise ValueError(f"unsupported image mode {mode!r}")


def _uint8_to_tensor(img: Image.Image) -> Tensor:
    arr = np.asarray(img, dtype=np.uint8)
    return to_model_range(torch.from_numpy(arr.copy()).permute(2, 0, 1))


def pil_to_tensor(img: Image.Image) -> Tensor:
    """PIL image (any mode, converted by ``image_to_rgb_array``) -> (3, H, W) float32 in [-1, 1]."""
    rgb8 = _rgb8(img, DEFAULT_BACKGROUND)
    if rgb8 is not None:
        return _uint8_to_tensor(rgb8)
    return to_model_range(torch.from_numpy(image_to_rgb_array(img)).permute(2, 0, 1))


def load_image(img: Image.Image, resolution: int, crop: str, flip: bool, rng: np.random.Generator | None) -> Tensor:
    """Decode + resize/crop (+ random horizontal flip) -> (3, R, R) in [-1, 1].

    Pixels are converted as ``image_to_rgb_array`` does (transparency over
    ``DEFAULT_BACKGROUND``). 8-bit sources become 8-bit RGB and are resized by Pillow as before;
    16-bit and float sources are resized in float (one ``F`` plane per channel, same bicubic
    filter and crop, then clipped to [0, 1]), so their precision is not truncated to 8 bits.
    """
    img.load()
    size, box = _resize_crop_box(img.size, resolution, crop, rng)
    rgb8 = _rgb8(img, DEFAULT_BACKGROUND)
    if rgb8 is not None:
        x = _uint8_to_tensor(_apply_resize_crop(rgb8, size, box))
    else:
        arr = image_to_rgb_array(img)
        planes = [_apply_resize_crop(Image.fromarray(np.ascontiguousarray(arr[..., c])), size, box) for c in range(3)]
        x = to_model_range(torch.from_numpy(np.clip(np.stack([np.asarray(p) for p in planes]), 0.0, 1.0)))
    if flip:
        if rng is None:
            raise ValueError("flip=True needs a random generator")
        if rng.random() < 0.5:
            x = x.flip(-1)
    return x


@contextmanager
def open_image(source: str | Any | IO[bytes]) -> Iterator[Image.Image]:
    """``Image.open`` that refuses decompression bombs outright: above Pillow's
    ``MAX_IMAGE_PIXELS`` (89 M pixels) it raises instead of warning and then decoding."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(source) as img:
            yield img


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
