"""WebDataset-style tar shards as a map-style dataset.

A sample is the group of members sharing a key (``dir/name`` up to the first dot of the
file name): one image (``.jpg/.jpeg/.png/.webp``) and optionally a class id
(``.cls``/``.cls.txt``/``.label``). We read the tar files with Python's ``tarfile`` rather
than the ``webdataset`` package because the latter is stream-only (an IterableDataset):
random access is what gives every source the same sampler, deterministic per-rank
shuffling and an exact mid-epoch resume. The header scan at start-up only walks the tar
headers (it seeks over the member data), and items are then read with one seek each.
"""

from __future__ import annotations

import glob
import io
import os
import re
import tarfile
from pathlib import Path
from typing import Any


from mmtok.data.base import IMAGE_EXTENSIONS, ImageDataset, make_item
from mmtok.data.transforms import load_image, open_image

_LABEL_EXTS = ("cls", "cls.txt", "label", "label.txt")
_BRACE = re.compile(r"\{([^{}]*)\}")


def expand_braces(pattern: str) -> list[str]:
    """``shard-{000..002}.tar`` -> 3 names; ``{a,b}`` lists too (nested braces expand left to right)."""
    m = _BRACE.search(pattern)
    if m is None:
        return [pattern]
    body = m.group(1)
    rng = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if rng:
        a, b = rng.group(1), rng.group(2)
        width = len(a) if a.startswith("0") or len(a) == len(b) else 0
        options = [str(i).zfill(width) for i in range(int(a), int(b) + 1)]
    else:
        options = body.split(",")
    out: list[str] = []
    for opt in options:
        out.extend(expand_braces(pattern[: m.start()] + opt + pattern[m.end():]))
    return out


def resolve_shards(pattern_or_list: str | Path | list[str | Path]) -> list[Path]:
    """A tar path, glob, brace pattern or list of those -> sorted existing shard paths."""
    items = pattern_or_list if isinstance(pattern_or_list, (list, tuple)) else [pattern_or_list]
    paths: list[Path] = []
    for item in items:
        for pat in expand_braces(str(item)):
            pat = os.path.expanduser(pat)
            if glob.has_magic(pat):
                matches = sorted(glob.glob(pat))
                if not matches:
                    raise FileNotFoundError(f"no tar shards match {pat!r}")
                paths.extend(Path(p) for p in matches)
            else:
                if not Path(pat).is_file():
                    raise FileNotFoundError(f"tar shard not found: {pat}")
                paths.append(Path(pat))
    if not paths:
        raise FileNotFoundError(f"no tar shards given ({pattern_or_list!r})")
    return paths


def _split_key(name: str) -> tuple[str, str]:
    d, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{d}/{stem}" if d else stem), (ext.lower() if dot else "")


class TarShardImages(ImageDataset):
    """Images stored in WebDataset-style tar shards (random access after a header scan).

    Samples keep shard order, then member order within a shard. ``key`` is
    ``<shard stem>/<sample key>``; ``path`` is ``<shard path>:<member name>``. A sample
    without an image is skipped at indexing time (counted in ``skipped_members``); an
    undecodable image yields an error item.
    """

    def __init__(
        self,
        pattern_or_list: str | Path | list[str | Path],
        resolution: int,
        crop: str = "center",
        flip: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(resolution, crop, flip, seed)
        self.shards = resolve_shards(pattern_or_list)
        # (shard index, key, image member offset, size, member name, label)
        self.samples: list[tuple[int, str, int, int, str, int]] = []
        self.skipped_members = 0
        for si, shard in enumerate(self.shards):
            self._index_shard(si, shard)
        if not self.samples:
            raise ValueError(f"no images found in {len(self.shards)} tar shard(s): {[str(s) for s in self.shards[:3]]}")
        self._handles: dict[int, Any] = {}
        self._pid = os.getpid()

    def _index_shard(self, si: int, shard: Path) -> None:
        groups: dict[str, dict[str, tarfile.TarInfo]] = {}
        order: list[str] = []
        try:
            with tarfile.open(shard, "r:") as tf:
                for m in tf:
                    if not m.isfile():
                        continue
                    key, ext = _split_key(m.name)
                    if key not in groups:
                        groups[key] = {}
                        order.append(key)
                    groups[key][ext] = m
                labels = {}
                for key in order:
                    for le in _LABEL_EXTS:
                        if le in groups[key]:
                            f = tf.extractfile(groups[key][le])
                            try:
                                labels[key] = int(f.read().decode().strip()) if f else 0
                            except ValueError:
                                labels[key] = 0
                            break
        except (tarfile.TarError, OSError) as e:
            raise ValueError(f"cannot read tar shard {shard}: {e}") from e
        for key in order:
            members = groups[key]
            img = next((members[e] for e in members if "." + e in IMAGE_EXTENSIONS), None)
            if img is None:
                self.skipped_members += 1
                continue
            self.samples.append((si, key, img.offset_data, img.size, img.name, labels.get(key, 0)))

    def __len__(self) -> int:
        return len(self.samples)

    def _read(self, si: int, offset: int, size: int) -> bytes:
        if os.getpid() != self._pid:  # forked worker: never share file offsets with the parent
            self._handles, self._pid = {}, os.getpid()
        fh = self._handles.get(si)
        if fh is None:
            fh = self._handles[si] = open(self.shards[si], "rb")
        fh.seek(offset)
        return fh.read(size)

    def __getitem__(self, index: int) -> dict[str, Any]:
        si, key, offset, size, name, label = self.samples[index]
        full_key = f"{self.shards[si].stem}/{key}"
        path = f"{self.shards[si]}:{name}"
        try:
            data = self._read(si, offset, size)
            with open_image(io.BytesIO(data)) as img:
                x = load_image(img, self.resolution, self.crop, self.flip, self._rng(index))
        except Exception as e:  # corrupt member: reported, never fatal
            return self.error_item(full_key, path, e)
        return make_item(x, full_key, path, label)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state

    def __repr__(self) -> str:
        return f"TarShardImages({len(self.shards)} shard(s), {len(self)} images, resolution={self.resolution})"
