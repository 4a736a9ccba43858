"""Datasets and loaders for every modality: one item protocol, one collate, one opener.

Every dataset yields ``{"x", "key", "path", "label", "meta"}`` items (``mmtok.data.base``);
an unreadable file yields ``x = None`` with an ``"error"`` and ``collate`` drops it and
reports ``(path, message)`` in the batch's ``"errors"``.

    ds = mmtok.data.open_dataset("synthetic:4096", modality="image", resolution=32)
    ds = mmtok.data.open_dataset(spec, modality=tok.modality, **tok.preprocessing())
    loader = mmtok.data.make_loader(ds, batch_size=16, shuffle=True, seed=0)

A modality plugs in with ``register_modality(name, opener, views)``: its dataset opener
(``spec, **preprocessing -> Dataset``) and its augmentation views class for encoding.
"""

from __future__ import annotations

import glob
from pathlib import Path

from collections.abc import Callable
from typing import Any

from mmtok.data.base import IMAGE_EXTENSIONS, ImageDataset, error_item, make_item
from mmtok.data.folder import ImageFolder
from mmtok.data.loader import BatchStream, ShardedSampler, collate, make_loader
from mmtok.data.synthetic import SyntheticImages
from mmtok.data.tar import TarShardImages, expand_braces
from mmtok.data.transforms import ImageViews, resize_crop, to_model_range, to_uint8


def open_image_dataset(spec: str | Path, resolution: int, crop: str = "center", flip: bool = False, seed: int = 0) -> ImageDataset:
    """Dataset from a spec string.

    ``"synthetic"`` / ``"synthetic:N"`` -> ``SyntheticImages`` (N items, default 1024);
    ``"photos[:N]"`` / ``"photos_val[:N]"`` -> ``PhotoCrops`` of the scikit-image sample photos
    (train / held-out regions, see :mod:`mmtok.data.photos`); a directory -> ``ImageFolder``; a ``.tar`` file, glob or brace list
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
    from mmtok.data.photos import PhotoCrops, parse_photo_spec

    photo = parse_photo_spec(s)
    if photo is not None:
        return PhotoCrops(num_items=photo[1], resolution=resolution, split=photo[0], seed=seed, flip=flip)
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


_MODALITIES: dict[str, tuple[Callable[..., Any], type]] = {}


def register_modality(name: str, opener: Callable[..., Any], views: type) -> None:
    """Make ``open_dataset(spec, modality=name, ...)`` and ``views_for(name, ...)`` work for a modality."""
    _MODALITIES[name] = (opener, views)


def _modality(name: str) -> tuple[Callable[..., Any], type]:
    if name not in _MODALITIES:
        raise ValueError(f"no datasets for modality {name!r}; known: {sorted(_MODALITIES)}")
    return _MODALITIES[name]


def open_dataset(spec: str | Path, modality: str = "image", **preprocessing: Any) -> Any:
    """Dataset for ``spec`` in ``modality``; ``preprocessing`` are the modality's options
    (image: ``resolution``, ``crop``, ``flip``, ``seed``; see :func:`open_image_dataset`)."""
    return _modality(modality)[0](spec, **preprocessing)


def views_for(modality: str, **options: Any) -> Any:
    """The augmentation views of ``modality`` (image: :class:`ImageViews`: flips and crops)."""
    return _modality(modality)[1](**options)


register_modality("image", open_image_dataset, ImageViews)

from mmtok.data.audio import AudioDataset, AudioFolder, AudioViews, audio_extensions, load_audio, open_audio_dataset, save_wav  # noqa: E402
from mmtok.data.synthetic_audio import SyntheticAudio  # noqa: E402

register_modality("audio", open_audio_dataset, AudioViews)

from mmtok.data.synthetic_video import SyntheticVideo  # noqa: E402
from mmtok.data.video import (  # noqa: E402
    VIDEO_EXTENSIONS, VideoDataset, VideoFolder, VideoViews, load_video, open_video_dataset, probe_video,
    save_frame_strip_png, save_gif, save_video,
)

register_modality("video", open_video_dataset, VideoViews)

__all__ = [
    "open_dataset",
    "register_modality",
    "views_for",
    "make_item",
    "error_item",
    "ImageViews",
    "IMAGE_EXTENSIONS",
    "ImageDataset",
    "SyntheticImages",
    "ImageFolder",
    "TarShardImages",
    "open_image_dataset",
    "collate",
    "make_loader",
    "ShardedSampler",
    "BatchStream",
    "to_model_range",
    "to_uint8",
    "resize_crop",
    "expand_braces",
    "AudioDataset",
    "AudioFolder",
    "AudioViews",
    "SyntheticAudio",
    "audio_extensions",
    "load_audio",
    "open_audio_dataset",
    "save_wav",
    "VIDEO_EXTENSIONS",
    "VideoDataset",
    "VideoFolder",
    "VideoViews",
    "SyntheticVideo",
    "open_video_dataset",
    "probe_video",
    "load_video",
    "save_video",
    "save_gif",
    "save_frame_strip_png",
]
