"""Sample writers: decoded items to files, one writer class per modality.

``mmtok decode`` picks the writer registered for the shards' modality; a modality plugs in
its own (WAV for audio, MP4 for video) with ``register_sample_writer(modality, cls)``.
A writer is built as ``cls(out_dir, meta, join=False)`` (``meta``: the shards'
:class:`ShardMetadata`, e.g. for a sample rate in ``meta.modality_info``) and writes decoded
batches (``{"recon": (B, ...) in [-1, 1], "key": [...], "aug": [...], "length": [...]}``) as
``<key>[__<aug>]<extension>``, each item trimmed to its valid ``length`` when the shards
record one; :meth:`SampleWriter.close` writes what is still held. Writers with ``joins =
True`` (WAV) can instead put the chunks ``<source>@<offset>`` of each source back together.
Decoded batches may carry per-item facts a writer needs (``"fps"``: the frame rate of each
video clip).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from mmtok.shards.format import ShardMetadata, split_chunk_key

_WRITERS: dict[str, type["SampleWriter"]] = {}


def register_sample_writer(modality: str, cls: type["SampleWriter"]) -> None:
    """Make ``mmtok decode`` write items of ``modality`` with ``cls``."""
    _WRITERS[modality] = cls


def sample_writer_for(modality: str) -> type["SampleWriter"]:
    """The writer class registered for ``modality`` (a clear error naming the known ones otherwise)."""
    if modality not in _WRITERS:
        raise ValueError(f"no sample writer for {modality!r} shards; known: {sorted(_WRITERS)} "
                         "(register one with mmtok.shards.register_sample_writer)")
    return _WRITERS[modality]


def sample_name(key: str, aug: str) -> str:
    """File stem of an item: the key with unsafe characters replaced, plus ``__<aug>`` for copies."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("_") or "item"
    return name if aug in ("orig", "") else f"{name}__{re.sub(r'[^A-Za-z0-9._-]+', '_', aug)}"


class SampleWriter:
    """Base: names the files; subclasses set ``extension`` and implement :meth:`write`."""

    extension: ClassVar[str]
    joins: ClassVar[bool] = False  # can put the chunks of one source back together (``join=True``)

    def __init__(self, out_dir: str | Path, meta: ShardMetadata, join: bool = False) -> None:
        if join and not self.joins:
            raise ValueError(f"{meta.modality} items cannot be joined (join is for chunked audio shards)")
        self.out, self.meta, self.join = Path(out_dir), meta, bool(join)
        self.out.mkdir(parents=True, exist_ok=True)

    def write(self, path: Path, x: Tensor) -> None:  # pragma: no cover - abstract
        """Write one decoded item ``x`` (float in [-1, 1], the modality's layout) to ``path``."""
        raise NotImplementedError

    def write_batch(self, batch: Mapping[str, Any]) -> list[Path]:
        """Write every item of a decoded batch (trimmed to its valid ``length``); returns the paths written."""
        paths = []
        lengths = batch.get("length") or [None] * len(batch["key"])
        for x, key, aug, n in zip(batch["recon"], batch["key"], batch["aug"], lengths):
            path = self.out / f"{sample_name(key, aug)}{self.extension}"
            self.write(path, x if n is None else x[..., : int(n)])
            paths.append(path)
        return paths

    def close(self) -> list[Path]:
        """Write what is still held (joined sources); returns the paths written."""
        return []


class PNGWriter(SampleWriter):
    """Images (3, H, W) -> 8-bit RGB PNG."""

    extension = ".png"

    def write(self, path: Path, x: Tensor) -> None:
        from PIL import Image

        from mmtok.data import to_uint8

        Image.fromarray(to_uint8(x).permute(1, 2, 0).numpy()).save(path)


class WAVWriter(SampleWriter):
    """Audio (C, S) -> 16-bit PCM WAV at the shards' sample rate (``modality_info["sample_rate"]``).

    ``join=True``: one ``<source>[__<aug>].wav`` per source file; each chunk ``<source>@<offset>``
    (trimmed to its valid length) is placed at its offset, gaps (skipped chunks) are silence.
    Chunks of a source must arrive consecutively (storage order guarantees it).
    """

    extension = ".wav"
    joins = True

    def __init__(self, out_dir: str | Path, meta: ShardMetadata, join: bool = False) -> None:
        super().__init__(out_dir, meta, join)
        rate = meta.modality_info.get("sample_rate")
        if not isinstance(rate, int) or rate <= 0:
            raise ValueError("these audio shards record no sample_rate in their metadata (modality_info); "
                             "re-encode them with this version of mmtok")
        self.sample_rate = rate
        self._group: tuple[str, str] | None = None
        self._parts: list[tuple[int, Tensor]] = []  # (offset, valid samples (C, n)) of the current source
        self._done: set[tuple[str, str]] = set()

    def write(self, path: Path, x: Tensor) -> None:
        from mmtok.data.audio import save_wav

        save_wav(path, x, self.sample_rate)

    def write_batch(self, batch: Mapping[str, Any]) -> list[Path]:
        if not self.join:
            return super().write_batch(batch)
        paths = []
        lengths = batch.get("length") or [None] * len(batch["key"])
        for x, key, aug, n in zip(batch["recon"], batch["key"], batch["aug"], lengths):
            source, offset = split_chunk_key(key)
            group = (source, aug)
            if group != self._group:
                paths += self.close()
                if group in self._done:
                    raise ValueError(f"chunks of {source!r} are not consecutive in the shards; cannot join them")
                self._group = group
            self._parts.append((offset or 0, x if n is None else x[..., : int(n)]))
        return paths

    def close(self) -> list[Path]:
        if self._group is None:
            return []
        end = max(o + x.shape[-1] for o, x in self._parts)
        wav = torch.zeros(self._parts[0][1].shape[0], end, dtype=self._parts[0][1].dtype)
        for o, x in self._parts:
            wav[:, o: o + x.shape[-1]] = x
        path = self.out / f"{sample_name(*self._group)}{self.extension}"
        self.write(path, wav)
        self._done.add(self._group)
        self._group, self._parts = None, []
        return [path]


DEFAULT_FPS = 8.0  # video shards that record no frame rate (rows nor timeline): mmtok's synthetic clip rate


def shard_fps(meta: ShardMetadata) -> float:
    """Clip frame rate from the shards' timeline (``preprocessing`` fps / frame_stride), else ``DEFAULT_FPS``."""
    prep = meta.preprocessing or {}
    fps, stride = prep.get("fps"), prep.get("frame_stride") or 1
    if isinstance(fps, (int, float)) and not isinstance(fps, bool) and fps > 0:
        return float(fps) / int(stride)
    return DEFAULT_FPS


class MP4Writer(SampleWriter):
    """Video clips (3, T, H, W) -> H.264 MP4 (``mmtok.data.video.save_video``: yuv420p, quality ``crf``).

    Frame rate of each clip, first found of: the row's ``fps`` column (the clip's own rate, as
    encoded), the shards' timeline (``preprocessing["fps"] / preprocessing["frame_stride"]``),
    else :data:`DEFAULT_FPS` (8 fps, the rate of mmtok's synthetic clips: shards made without
    a recorded rate, e.g. by hand). yuv420p halves the chroma resolution (what every player
    expects); odd frame sizes are padded by one edge row / column (see ``save_video``).
    """

    extension = ".mp4"
    crf: ClassVar[int] = 18

    def __init__(self, out_dir: str | Path, meta: ShardMetadata, join: bool = False) -> None:
        super().__init__(out_dir, meta, join)
        self.fps = shard_fps(meta)

    def write(self, path: Path, x: Tensor, fps: float | None = None) -> None:
        from mmtok.data.video import save_video

        save_video(path, x, float(fps or self.fps), crf=self.crf)

    def write_batch(self, batch: Mapping[str, Any]) -> list[Path]:
        paths = []
        rates = batch.get("fps") or [None] * len(batch["key"])
        for x, key, aug, fps in zip(batch["recon"], batch["key"], batch["aug"], rates):
            path = self.out / f"{sample_name(key, aug)}{self.extension}"
            self.write(path, x, fps)
            paths.append(path)
        return paths


register_sample_writer("image", PNGWriter)
register_sample_writer("audio", WAVWriter)
register_sample_writer("video", MP4Writer)
