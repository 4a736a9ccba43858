"""Video datasets (folders of video files), clip sampling, and the video file writers / reader.

Decoding uses PyAV (its wheel bundles FFmpeg). Every item is ``x``: float32
``(3, num_frames, R, R)`` in [-1, 1], with ``meta``::

    {"start_frame": first frame of the clip on the (resampled) timeline,
     "fps": frame rate of the clip's own frames (timeline fps / frame_stride: play it at this rate),
     "source_fps": the file's frame rate, "num_source_frames": frames in the file,
     "frame_stride": the stride between the clip's frames on the timeline}

The policy is explicit, never a silent guess:

- timeline: a file's frames are indexed ``0 .. N-1`` at its average frame rate (presentation
  order; a frame's index is ``round((pts - start) * source_fps)``). With ``fps`` set, the
  timeline is resampled to that rate: target frame ``j`` (time ``j / fps``) is the nearest
  source frame ``round(j * source_fps / fps)``; the resampled timeline has
  ``ceil(N * fps / source_fps)`` frames. Without ``fps`` the timeline is the source frames.
- clip: ``num_frames`` frames ``start, start + s, ..., start + (T - 1) * s`` of the timeline
  (``s = frame_stride``), spanning ``(T - 1) * s + 1`` timeline frames. ``"random"`` draws
  ``start`` from ``item_rng(seed, epoch, index)`` (training), ``"start"`` takes ``start = 0``
  (evaluation), ``"chunks"`` makes every consecutive non-overlapping clip of every file an
  item (keyed ``"<file>@<start_frame>"``): clip ``c`` starts at ``c * T * s``, so the clips
  together hold the timeline frames ``0, s, 2s, ...`` in order, cut into groups of ``T``;
  a file has ``floor(ceil(N_timeline / s) / T)`` clips (``floor(N_timeline / T)`` for
  ``s = 1``), and a tail of fewer than ``T`` sampled frames is left out. The chunk index
  is built from container metadata (the stream's frame count, or a packet count when the
  container has none: demuxing only, no decoding).
- spatial: each frame is resized so its shorter side is ``resolution`` then cropped to a
  square, exactly as images are (Pillow bicubic with antialiasing,
  ``mmtok.data.transforms.resize_crop``); a random crop is one box for the whole clip.
  ``flip`` flips the whole clip horizontally with probability 1/2.
- decoding: only what a clip needs is decoded: the reader seeks to the keyframe at or
  before the clip's first frame, decodes forward and stops after its last frame, keeping
  only the clip's (resized) frames, so long files cost bounded memory.
- errors: an unreadable file (corrupt, truncated, zero bytes, not a video, no video
  stream), a file shorter than the clip (the message gives its frame count and what the
  clip needs), or a file that ends before a frame its metadata declares, is an error
  item (``x = None`` and ``"error"``), never an exception.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from mmtok.data.base import error_item, make_item
from mmtok.data.transforms import CROPS, _apply_resize_crop, _resize_crop_box, item_rng, to_model_range, to_uint8
from mmtok.io import atomic_write

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov")
CLIPS = ("random", "start", "chunks")
VIDEO_CODECS = ("libx264", "mpeg4")
_CONTAINERS = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov", ".avi": "avi"}


# --- stream facts and the timeline -----------------------------------------------------------
@dataclass(frozen=True)
class VideoInfo:
    """Facts of a file's first video stream: frame count, average frame rate, frame size."""

    num_frames: int
    fps: float
    width: int
    height: int


def _open(path: str | os.PathLike) -> Any:
    import av

    return av.open(str(path), mode="r")


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Frame count, rate and size from container metadata (a packet count when the container
    does not store the frame count: demuxed, not decoded). Raises on unreadable files."""
    with _open(path) as c:
        if not c.streams.video:
            raise ValueError("no video stream in the file")
        st = c.streams.video[0]
        rate = st.average_rate or st.guessed_rate or st.base_rate
        if not rate or float(rate) <= 0:
            raise ValueError("the video stream has no frame rate")
        n = int(st.frames or 0)
        if n <= 0:
            n = sum(1 for p in c.demux(st) if p.size > 0)
        if n <= 0:
            raise ValueError("the video stream has no frames")
        cc = st.codec_context
        return VideoInfo(num_frames=n, fps=float(rate), width=int(cc.width), height=int(cc.height))


def timeline_length(num_source_frames: int, source_fps: float, fps: float | None = None) -> int:
    """Frames of the timeline: the source frames, or ``ceil(N * fps / source_fps)`` resampled ones."""
    if fps is None:
        return int(num_source_frames)
    return max(0, math.ceil(num_source_frames * fps / source_fps - 1e-9))


def source_indices(timeline: Sequence[int] | np.ndarray, num_source_frames: int, source_fps: float,
                   fps: float | None = None) -> np.ndarray:
    """Source frame of each timeline frame: itself, or the nearest one in time after resampling."""
    t = np.asarray(timeline, dtype=np.int64)
    if fps is None:
        return t
    return np.minimum(np.floor(t * (source_fps / fps) + 0.5 + 1e-9).astype(np.int64), num_source_frames - 1)


def num_chunks(timeline_frames: int, num_frames: int, frame_stride: int = 1) -> int:
    """Consecutive non-overlapping clips of a timeline (see the module docstring)."""
    sampled = -(-timeline_frames // frame_stride)  # frames 0, s, 2s, ... on the timeline
    return sampled // num_frames


def read_frames(path: str | os.PathLike, indices: Sequence[int], transform: Callable[[Any], Any] | None = None,
                fps: float | None = None) -> list[Any]:
    """The source frames ``indices`` (any order, repeats allowed) of a file, decoded forward from
    the keyframe at or before the first of them; stops after the last.

    ``transform`` maps each needed ``av.VideoFrame`` (default: to an (H, W, 3) uint8 RGB array);
    only transformed frames are kept. ``fps`` is the stream's rate when known (saves a probe).
    A frame index missing from the stream (a timestamp gap) takes the next decoded frame.
    Raises ``ValueError`` when the stream ends before the last index.
    """
    if transform is None:
        transform = lambda f: f.to_ndarray(format="rgb24")  # noqa: E731
    order = [int(i) for i in indices]
    wanted = sorted(set(order))
    if not wanted or wanted[0] < 0:
        raise ValueError(f"read_frames needs non-negative frame indices, got {order[:8]}")
    for seek in ([True, False] if wanted[0] > 0 else [False]):
        got = _decode(path, wanted, transform, fps, seek)
        if got is not None:
            return [got[i] for i in order]
    raise AssertionError("unreachable")  # pragma: no cover


def _decode(path: str | os.PathLike, wanted: list[int], transform: Callable[[Any], Any], fps: float | None,
            seek: bool) -> dict[int, Any] | None:
    """One pass of ``read_frames``; None when a seek cannot be trusted (retry from the start)."""
    out: dict[int, Any] = {}
    with _open(path) as c:
        if not c.streams.video:
            raise ValueError("no video stream in the file")
        st = c.streams.video[0]
        rate = fps or float(st.average_rate or st.guessed_rate or st.base_rate or 0)
        if rate <= 0:
            raise ValueError("the video stream has no frame rate")
        tb, t0 = st.time_base, st.start_time or 0
        if seek:
            target = t0 + math.floor((wanted[0] - 0.5) / rate / tb)
            c.seek(max(int(target), int(t0)), stream=st, backward=True, any_frame=False)
        p, count, last_idx = 0, 0, -1
        for frame in c.decode(st):
            if frame.pts is None:
                if seek:
                    return None
                idx = count
            else:
                idx = round(float((frame.pts - t0) * tb) * rate)
            if seek and count == 0 and idx > wanted[0]:
                return None
            count += 1
            last_idx = max(last_idx, idx)
            if idx < wanted[p]:
                continue
            img = transform(frame)
            while p < len(wanted) and wanted[p] <= idx:
                out[wanted[p]] = img
                p += 1
            if p == len(wanted):
                return out
    raise ValueError(f"the video ends at frame {last_idx + 1 if last_idx >= 0 else 0}: it has no frame {wanted[p]} "
                     "(truncated, or shorter than its metadata says)")


# --- datasets --------------------------------------------------------------------------------
def _positive_int(name: str, v: Any) -> int:
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v <= 0:
        raise ValueError(f"{name} must be a positive int, got {v!r}")
    return int(v)


class VideoDataset(Dataset):
    """Base of the video datasets: the preprocessing every clip is delivered in.

    Random clips, crops and flips are drawn from ``item_rng(seed, epoch, index)``; call
    ``set_epoch(e)`` before each epoch (``make_loader`` does it).
    """

    def __init__(self, resolution: int | None, num_frames: int | None, frame_stride: int = 1, fps: float | None = None,
                 crop: str = "center", clip: str = "random", flip: bool = False, seed: int = 0) -> None:
        if resolution is None or num_frames is None:
            raise ValueError("video datasets need resolution and num_frames: the tokenizer's preprocessing() gives "
                             "them, or pass resolution= and num_frames=")
        self.resolution = _positive_int("resolution", resolution)
        self.num_frames = _positive_int("num_frames", num_frames)
        self.frame_stride = _positive_int("frame_stride", frame_stride)
        if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0
                                or not math.isfinite(fps)):
            raise ValueError(f"fps must be a positive number or None, got {fps!r}")
        if crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
        if clip not in CLIPS:
            raise ValueError(f"clip must be one of {CLIPS}, got {clip!r}")
        self.fps = None if fps is None else float(fps)
        self.crop, self.clip, self.flip, self.seed = crop, clip, bool(flip), int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @property
    def clip_span(self) -> int:
        """Timeline frames one clip spans: ``(num_frames - 1) * frame_stride + 1``."""
        return (self.num_frames - 1) * self.frame_stride + 1

    def describe(self) -> dict[str, Any]:
        """The preprocessing of the items (recorded by evaluations and encodes)."""
        return {"resolution": self.resolution, "num_frames": self.num_frames, "frame_stride": self.frame_stride,
                "fps": self.fps, "crop": self.crop, "clip": self.clip, "flip": self.flip}

    error_item = staticmethod(error_item)


class VideoFolder(VideoDataset):
    """All video files under ``root`` (``VIDEO_EXTENSIONS``, recursive, sorted by relative path).

    ``label`` is the index of the first-level sub-folder (sorted), 0 for files directly in
    ``root``; ``key`` is the relative path without extension (``"<rel>@<start_frame>"`` in
    ``"chunks"`` mode). See the module docstring for the timeline, clip, resize and error
    policy. ``max_items`` keeps the first N items.
    """

    def __init__(self, root: str | Path, resolution: int | None, num_frames: int | None, frame_stride: int = 1,
                 fps: float | None = None, crop: str = "center", clip: str = "random", flip: bool = False,
                 seed: int = 0, max_items: int | None = None) -> None:
        super().__init__(resolution, num_frames, frame_stride, fps, crop, clip, flip, seed)
        self.root = Path(root).expanduser()
        if not self.root.exists():
            raise FileNotFoundError(f"video folder not found: {self.root}")
        if not self.root.is_dir():
            raise NotADirectoryError(f"not a directory: {self.root}")
        if max_items is not None and (not isinstance(max_items, int) or max_items <= 0):
            raise ValueError(f"max_items must be a positive int, got {max_items!r}")
        files = sorted((p for p in self.root.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()),
                       key=lambda p: p.relative_to(self.root).as_posix())
        if not files:
            raise ValueError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) found under {self.root}")
        self.max_items = max_items
        classes = sorted({p.relative_to(self.root).parts[0] for p in files if len(p.relative_to(self.root).parts) > 1})
        self.class_to_idx = {c: i for i, c in enumerate(classes)}
        self._infos: dict[int, VideoInfo] = {}
        if clip == "chunks":
            self.files, self._chunks = self._chunk_index(files, max_items)
        else:
            self.files, self._chunks = (files[:max_items] if max_items else files), None

    def _chunk_index(self, files: list[Path], max_items: int | None) -> tuple[list[Path], np.ndarray]:
        """(file index, start frame) of every clip; a file without a clip (unreadable, too
        short) gets one entry that reads as its error item."""
        rows: list[tuple[int, int]] = []
        step = self.num_frames * self.frame_stride
        for fi, p in enumerate(files):
            if max_items is not None and len(rows) >= max_items:
                files = files[:fi]
                break
            try:
                info = self._infos[fi] = probe_video(p)
                n = num_chunks(timeline_length(info.num_frames, info.fps, self.fps), self.num_frames, self.frame_stride)
            except Exception:  # reported by __getitem__ as an error item
                n = 0
            rows.extend((fi, c * step) for c in range(max(n, 1)))
        rows = rows[:max_items] if max_items is not None else rows
        return files, np.asarray(rows, dtype=np.int64).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self._chunks) if self._chunks is not None else len(self.files)

    def _info(self, fi: int) -> VideoInfo:
        if fi not in self._infos:
            self._infos[fi] = probe_video(self.files[fi])
        return self._infos[fi]

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        if self._chunks is not None:
            fi, start = (int(v) for v in self._chunks[index])
        else:
            fi, start = index, None
        path = self.files[fi]
        rel = path.relative_to(self.root)
        base = rel.with_suffix("").as_posix()
        key = base if start is None else f"{base}@{start}"
        label = self.class_to_idx.get(rel.parts[0], 0) if len(rel.parts) > 1 else 0
        try:
            return self._read(fi, index, key, label, start)
        except Exception as e:  # corrupt / truncated / not a video: reported, never fatal
            return self.error_item(key, str(path), e)

    def _read(self, fi: int, index: int, key: str, label: int, start: int | None) -> dict[str, Any]:
        path, info = self.files[fi], self._info(fi)
        T, s, R = self.num_frames, self.frame_stride, self.resolution
        n = timeline_length(info.num_frames, info.fps, self.fps)
        if n < self.clip_span:
            at = "" if self.fps is None else f" ({n} at {self.fps:g} fps)"
            msg = (f"video too short: {info.num_frames} frames at {info.fps:g} fps{at}; the clip needs "
                   f"{self.clip_span} (num_frames={T}, frame_stride={s})")
            return self.error_item(key, str(path), msg)
        random = self.clip == "random" or self.crop == "random" or self.flip
        rng = item_rng(self.seed, self.epoch, index) if random else None
        if start is None:
            start = int(rng.integers(0, n - self.clip_span + 1)) if self.clip == "random" else 0
        src = source_indices(start + np.arange(T) * s, info.num_frames, info.fps, self.fps)
        geometry: list[Any] = []

        def transform(frame: Any) -> np.ndarray:
            img = frame.to_image()  # RGB
            if not geometry:  # one resize + crop box for the whole clip
                geometry.extend(_resize_crop_box(img.size, R, self.crop, rng))
            return np.asarray(_apply_resize_crop(img, *geometry), dtype=np.uint8)

        frames = read_frames(path, src.tolist(), transform, fps=info.fps)
        x = to_model_range(torch.from_numpy(np.stack(frames)).permute(3, 0, 1, 2))  # (3, T, R, R)
        if self.flip and rng.random() < 0.5:
            x = x.flip(-1)
        clip_fps = (self.fps or info.fps) / s
        meta = {"start_frame": int(start), "fps": clip_fps, "source_fps": info.fps,
                "num_source_frames": info.num_frames, "frame_stride": s}
        return make_item(x.contiguous(), key, str(path), label, meta)

    def __repr__(self) -> str:
        return (f"VideoFolder({str(self.root)!r}, {len(self)} items, resolution={self.resolution}, "
                f"num_frames={self.num_frames}, frame_stride={self.frame_stride}, fps={self.fps}, clip={self.clip!r})")


def open_video_dataset(spec: str | Path, *, resolution: int | None = None, num_frames: int | None = None,
                       frame_stride: int = 1, fps: float | None = None, crop: str = "center", clip: str = "random",
                       flip: bool = False, seed: int = 0, max_items: int | None = None) -> VideoDataset:
    """Video dataset from a spec string.

    ``"synthetic"`` / ``"synthetic:N"`` -> ``SyntheticVideo`` (N clips, default 1024; clips are
    whole items: ``frame_stride`` / ``fps`` / ``crop`` / ``clip`` do not apply); ``"photos[:N]"`` /
    ``"photos_val[:N]"`` -> ``PhotoPanVideo`` (camera moves over real photos); a directory ->
    ``VideoFolder``. ``resolution`` / ``num_frames`` come from ``tok.preprocessing()``. A missing
    path raises ``FileNotFoundError``; a folder without videos or a bad option ``ValueError``;
    an unknown option ``TypeError``.
    """
    from mmtok.data.synthetic_video import SyntheticVideo

    s = str(spec).strip()
    if not s:
        raise ValueError("empty dataset spec; use 'synthetic[:N]' or a video folder")
    if clip not in CLIPS:
        raise ValueError(f"clip must be one of {CLIPS}, got {clip!r}")
    if s == "synthetic" or (s.startswith("synthetic:") and not Path(s).is_dir()):
        n = s.partition(":")[2]
        try:
            num = int(n) if n else 1024
        except ValueError:
            raise ValueError(f"bad synthetic dataset spec {s!r}; use 'synthetic' or 'synthetic:N'") from None
        num = min(num, max_items) if max_items else num
        return SyntheticVideo(num_items=num, resolution=resolution, num_frames=num_frames, seed=seed, flip=flip)
    from mmtok.data.photos import PhotoPanVideo, parse_photo_spec

    photo = parse_photo_spec(s)
    if photo is not None:
        num = min(photo[1], max_items) if max_items else photo[1]
        return PhotoPanVideo(num_items=num, resolution=resolution, num_frames=num_frames, split=photo[0], seed=seed,
                             flip=flip)
    p = Path(s).expanduser()
    if p.is_dir():
        return VideoFolder(p, resolution, num_frames, frame_stride, fps, crop, clip, flip, seed, max_items)
    if not p.exists():
        raise FileNotFoundError(f"dataset path not found: {p} (expected 'synthetic[:N]' or a video folder)")
    raise ValueError(f"unsupported video dataset source {p}: expected a video folder or 'synthetic[:N]'")


class VideoViews:
    """The views contract of ``mmtok.data.views_for`` for video: ``"orig"`` (+ ``"flip"``, the
    whole clip flipped horizontally, with ``flip=True``).

    Takes the tokenizer's preprocessing (``resolution``, ``num_frames``, and ``frame_stride`` /
    ``fps`` when a tokenizer fixes them) and hands it back as ``load_preprocessing`` with
    ``clip="chunks"``: an encode covers every video completely, in consecutive clips keyed
    ``<file>@<start_frame>``. Any other option raises ``ValueError``.
    """

    def __init__(self, resolution: int | None = None, num_frames: int | None = None, flip: bool = False,
                 frame_stride: int | None = None, fps: float | None = None, **options: Any) -> None:
        if options:
            raise ValueError(f"unsupported video view option(s) {sorted(options)}; video views take the preprocessing "
                             "(resolution, num_frames, frame_stride, fps) and flip")
        given = {"resolution": resolution, "num_frames": num_frames, "frame_stride": frame_stride, "fps": fps}
        self._prep = {k: v for k, v in given.items() if v is not None}
        self.flip = bool(flip)

    @property
    def names(self) -> list[str]:
        return ["orig", "flip"] if self.flip else ["orig"]

    @property
    def load_preprocessing(self) -> dict[str, Any]:
        return {**self._prep, "clip": "chunks"}

    def describe(self) -> dict[str, Any]:
        return {"augmentations": list(self.names)}

    def views(self, x: Tensor) -> list[Tensor]:
        """(B, 3, T, H, W) -> one (B, 3, T, H, W) batch per name."""
        return [x, x.flip(-1)] if self.flip else [x]


# --- files -----------------------------------------------------------------------------------
def _frames_uint8(frames: Tensor | np.ndarray, what: str) -> np.ndarray:
    """(3, T, H, W) float in [-1, 1] -> (T, H, W, 3) uint8 (clamped, rounded)."""
    x = frames if isinstance(frames, Tensor) else torch.from_numpy(np.asarray(frames, dtype=np.float32))
    if x.ndim != 4 or x.shape[0] != 3:
        raise ValueError(f"{what} expects frames (3, T, H, W), got shape {tuple(x.shape)}")
    if x.shape[1] == 0:
        raise ValueError(f"{what} got no frames (T = 0)")
    return to_uint8(x).permute(1, 2, 3, 0).contiguous().cpu().numpy()


def _rate(fps: float) -> Fraction:
    if isinstance(fps, bool) or not isinstance(fps, (int, float, Fraction)) or not fps > 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    return Fraction(fps).limit_denominator(1001)


def save_video(path: str | os.PathLike, frames: Tensor | np.ndarray, fps: float, codec: str = "libx264",
               crf: int = 18, qscale: int = 3) -> Path:
    """Write ``frames`` (3, T, H, W) float in [-1, 1] as a yuv420p video, atomically.

    Container from the suffix: ``.mp4``, ``.mkv``, ``.mov``, ``.avi``. ``codec``: ``"libx264"``
    (H.264, quality ``crf``, 0-51, lower is better) or ``"mpeg4"`` (MPEG-4 part 2, fixed quantiser
    ``qscale``, 1-31, lower is better). yuv420p needs even sizes: an odd height or width is padded
    by one row / column repeating the edge, so the file is ``(H + H % 2, W + W % 2)``.
    """
    import av

    path = Path(path)
    fmt = _CONTAINERS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"save_video writes {sorted(_CONTAINERS)} files, got {path.name!r}")
    if codec not in VIDEO_CODECS:
        raise ValueError(f"codec must be one of {VIDEO_CODECS}, got {codec!r}")
    if codec == "libx264" and not 0 <= crf <= 51:
        raise ValueError(f"crf must be in [0, 51], got {crf}")
    if codec == "mpeg4" and not 1 <= qscale <= 31:
        raise ValueError(f"qscale must be in [1, 31], got {qscale}")
    arr = _frames_uint8(frames, "save_video")
    _, H, W, _ = arr.shape
    if H % 2 or W % 2:
        arr = np.pad(arr, ((0, 0), (0, H % 2), (0, W % 2), (0, 0)), mode="edge")
    rate = _rate(fps)

    def write(tmp: Path) -> None:
        with av.open(str(tmp), mode="w", format=fmt) as c:
            st = c.add_stream(codec, rate=rate)
            st.width, st.height, st.pix_fmt = arr.shape[2], arr.shape[1], "yuv420p"
            if codec == "libx264":
                st.options = {"crf": str(int(crf)), "preset": "medium"}
            else:
                st.codec_context.qmin = st.codec_context.qmax = int(qscale)
                st.bit_rate = 1 << 30  # the fixed quantiser decides the size
            for img in arr:
                frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
                c.mux(st.encode(frame))
            c.mux(st.encode(None))

    return atomic_write(path, write)


def load_video(path: str | os.PathLike, max_frames: int | None = None) -> tuple[Tensor, float]:
    """A whole file (or its first ``max_frames``) -> ((3, T, H, W) float32 in [-1, 1], fps).
    Raises on unreadable files."""
    frames: list[np.ndarray] = []
    with _open(path) as c:
        if not c.streams.video:
            raise ValueError(f"no video stream in {path}")
        st = c.streams.video[0]
        fps = float(st.average_rate or st.guessed_rate or st.base_rate or 0)
        for frame in c.decode(st):
            frames.append(frame.to_ndarray(format="rgb24"))
            if max_frames is not None and len(frames) >= max_frames:
                break
    if not frames:
        raise ValueError(f"no frames decoded from {path}")
    return to_model_range(torch.from_numpy(np.stack(frames)).permute(3, 0, 1, 2).contiguous()), fps


def save_gif(path: str | os.PathLike, frames: Tensor | np.ndarray, fps: float, loop: int = 0) -> Path:
    """Write ``frames`` (3, T, H, W) float in [-1, 1] as an animated GIF (Pillow, adaptive
    palette per frame; GIF delays are multiples of 10 ms), atomically. ``loop=0`` repeats forever."""
    arr = _frames_uint8(frames, "save_gif")
    duration = max(10, round(1000.0 / float(_rate(fps)) / 10) * 10)
    images = [Image.fromarray(f) for f in arr]

    def write(tmp: Path) -> None:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=loop,
                       optimize=False, disposal=1)

    return atomic_write(path, write)


def save_frame_strip_png(path: str | os.PathLike, rows: Sequence[Tensor | np.ndarray], pad: int = 2,
                         max_frames: int | None = None) -> Path:
    """Rows of clips (each (3, T, H, W) float in [-1, 1], e.g. original above reconstruction) as
    one PNG: one row per clip, one column per frame, ``pad`` white pixels between cells. Rows
    share H and W; a row with fewer frames leaves its last cells white. Written atomically."""
    if not rows:
        raise ValueError("save_frame_strip_png needs at least one row")
    arrs = [_frames_uint8(r, "save_frame_strip_png") for r in rows]
    sizes = {a.shape[1:3] for a in arrs}
    if len(sizes) != 1:
        raise ValueError(f"rows must share the frame size, got {sorted(sizes)}")
    h, w = arrs[0].shape[1:3]
    t = max(a.shape[0] for a in arrs) if max_frames is None else min(max_frames, max(a.shape[0] for a in arrs))
    canvas = np.full((len(arrs) * (h + pad) + pad, t * (w + pad) + pad, 3), 255, np.uint8)
    for i, a in enumerate(arrs):
        for j in range(min(t, a.shape[0])):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            canvas[y: y + h, x: x + w] = a[j]
    return atomic_write(path, lambda p: Image.fromarray(canvas).save(p, format="PNG"))
