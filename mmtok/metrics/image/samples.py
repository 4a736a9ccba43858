"""Image samples of an evaluation: the reconstructions as an ADM-style ``.npz`` (streamed to
disk per rank, merged by rank 0) and a PNG grid of originals over their reconstructions."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mmtok.io import atomic_write, atomic_write_text

GRID_IMAGES = 8  # originals (top row) and reconstructions (bottom row) in recon_grid.png


class RawImageWriter:
    """Append uint8 (B, 3, H, W) batches to a raw NHWC byte file (one per rank)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "wb")
        self.count = 0
        self.hw: tuple[int, int] | None = None

    def write(self, images: Tensor) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        hw = (int(images.shape[2]), int(images.shape[3]))
        if self.hw is not None and hw != self.hw:
            raise ValueError(f"image size changed from {self.hw} to {hw}")
        self.hw = hw
        self._f.write(images.permute(0, 2, 3, 1).contiguous().cpu().numpy().tobytes())
        self.count += images.shape[0]

    def close(self) -> None:
        if not self._f.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()


def write_npz_from_raw(parts: list[Path], n: int, hw: tuple[int, int], out: str | os.PathLike) -> Path:
    """Stream raw NHWC uint8 parts into ``out`` as ``arr_0`` (N, H, W, 3), written atomically.

    Uncompressed zip entries, readable by ``np.load`` and the ADM / guided-diffusion evaluator.
    """
    expected = n * hw[0] * hw[1] * 3
    got = sum(p.stat().st_size for p in parts)
    if got != expected:
        raise RuntimeError(f"raw image parts hold {got} bytes, expected {expected} for {n} images of {hw}")

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            with zf.open("arr_0.npy", "w", force_zip64=True) as f:
                header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False, "shape": (n, hw[0], hw[1], 3)}
                np.lib.format.write_array_header_1_0(f, header)
                for p in parts:
                    with open(p, "rb") as src:
                        shutil.copyfileobj(src, f, length=1 << 22)

    return atomic_write(out, write)


def save_image_grid(rows: list[Tensor], path: str | os.PathLike, pad: int = 2) -> Path:
    """Save rows of uint8 (B, 3, H, W) images as one PNG grid (one tensor per row)."""
    from PIL import Image

    b = max(r.shape[0] for r in rows)
    h, w = rows[0].shape[-2:]
    canvas = np.full((len(rows) * (h + pad) + pad, b * (w + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        arr = row.permute(0, 2, 3, 1).cpu().numpy()
        for j in range(arr.shape[0]):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            canvas[y : y + h, x : x + w] = arr[j]
    return atomic_write(path, lambda p: Image.fromarray(canvas).save(p, format="PNG"))


class ImageSamples:
    """Reconstructions of one rank on disk (``.reconstructions.rank{r}.u8`` / ``.keys``) and the
    first ``GRID_IMAGES`` pairs in memory; rank 0 merges them into the output files.

    Args:
        out_dir: where the files go (None: grid and npz are not written).
        rank: this process's rank.
        save_npz: stream the reconstructions for ``reconstructions.npz``.
    """

    def __init__(self, out_dir: Path | None, rank: int, save_npz: bool) -> None:
        self.out_dir, self.rank, self.save_npz = out_dir, rank, save_npz
        self.writer: RawImageWriter | None = None
        self.keys: list[str] = []
        self.grid: tuple[list[Tensor], list[Tensor]] = ([], [])

    @staticmethod
    def _part(out: Path, rank: int, suffix: str) -> Path:
        return out / f".reconstructions.rank{rank}.{suffix}"

    def open(self) -> None:
        if self.save_npz and self.out_dir is not None:
            self.writer = RawImageWriter(self._part(self.out_dir, self.rank, "u8"))

    def add(self, keys: list[str], real: Tensor, rec: Tensor) -> None:
        """uint8 originals and full-length reconstructions (B, 3, H, W) of one batch."""
        if self.writer is not None:
            self.writer.write(rec)
        need = GRID_IMAGES - sum(g.shape[0] for g in self.grid[0])
        if need > 0:
            self.grid[0].append(real[:need].cpu())
            self.grid[1].append(rec[:need].cpu())
        self.keys.extend(keys)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def write_rank(self, out: Path) -> None:
        if self.writer is not None:
            self._part(out, self.rank, "keys").write_text("".join(k + "\n" for k in self.keys))

    def merge(self, out: Path, num_items: int, world_size: int, hw: tuple[int, int]) -> dict[str, str]:
        """Rank 0, after every rank's ``write_rank``: the npz, its key list and the grid."""
        files: dict[str, str] = {}
        if self.writer is not None:
            parts = [self._part(out, r, "u8") for r in range(world_size)]
            key_parts = [self._part(out, r, "keys") for r in range(world_size)]
            write_npz_from_raw(parts, num_items, hw, out / "reconstructions.npz")
            atomic_write_text(out / "reconstructions_keys.txt", "".join(p.read_text() for p in key_parts))
            for p in parts + key_parts:
                p.unlink(missing_ok=True)
            files["npz"] = "reconstructions.npz"
            files["npz_keys"] = "reconstructions_keys.txt"
        if self.grid[0]:
            save_image_grid([torch.cat(self.grid[0]), torch.cat(self.grid[1])], out / "recon_grid.png")
            files["grid"] = "recon_grid.png"
        return files
