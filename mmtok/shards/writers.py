"""Sample writers: decoded items to files, one writer class per modality.

``mmtok decode`` picks the writer registered for the shards' modality; a modality plugs in
its own (WAV for audio, MP4 for video) with ``register_sample_writer(modality, cls)``.
A writer is built as ``cls(out_dir, meta)`` (``meta``: the shards' :class:`ShardMetadata`,
e.g. for a sample rate in ``meta.modality_info``) and writes decoded batches
(``{"recon": (B, ...) in [-1, 1], "key": [...], "aug": [...]}``) as
``<key>[__<aug>]<extension>``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from torch import Tensor

from mmtok.shards.format import ShardMetadata

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

    def __init__(self, out_dir: str | Path, meta: ShardMetadata) -> None:
        self.out, self.meta = Path(out_dir), meta
        self.out.mkdir(parents=True, exist_ok=True)

    def write(self, path: Path, x: Tensor) -> None:  # pragma: no cover - abstract
        """Write one decoded item ``x`` (float in [-1, 1], the modality's layout) to ``path``."""
        raise NotImplementedError

    def write_batch(self, batch: Mapping[str, Any]) -> list[Path]:
        """Write every item of a decoded batch; returns the paths written."""
        paths = []
        for x, key, aug in zip(batch["recon"], batch["key"], batch["aug"]):
            path = self.out / f"{sample_name(key, aug)}{self.extension}"
            self.write(path, x)
            paths.append(path)
        return paths


class PNGWriter(SampleWriter):
    """Images (3, H, W) -> 8-bit RGB PNG."""

    extension = ".png"

    def write(self, path: Path, x: Tensor) -> None:
        from PIL import Image

        from mmtok.data import to_uint8

        Image.fromarray(to_uint8(x).permute(1, 2, 0).numpy()).save(path)


class WAVWriter(SampleWriter):
    """Audio (C, S) -> 16-bit PCM WAV at the shards' sample rate (``modality_info["sample_rate"]``)."""

    extension = ".wav"

    def __init__(self, out_dir: str | Path, meta: ShardMetadata) -> None:
        super().__init__(out_dir, meta)
        rate = meta.modality_info.get("sample_rate")
        if not isinstance(rate, int) or rate <= 0:
            raise ValueError("these audio shards record no sample_rate in their metadata (modality_info); "
                             "re-encode them with this version of mmtok")
        self.sample_rate = rate

    def write(self, path: Path, x: Tensor) -> None:
        from mmtok.data.audio import save_wav

        save_wav(path, x, self.sample_rate)


register_sample_writer("image", PNGWriter)
register_sample_writer("audio", WAVWriter)
