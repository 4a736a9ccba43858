"""Recursive image folder dataset (jpg / jpeg / png / webp / tif / tiff)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


from mmtok.data.base import IMAGE_EXTENSIONS, ImageDataset, make_item
from mmtok.data.transforms import load_image, open_image


class ImageFolder(ImageDataset):
    """All images under ``root`` (recursive, sorted by relative path: deterministic order).

    ``label`` is the index of the first-level sub-folder (sorted), 0 for files directly in
    ``root``; ``key`` is the relative path without extension. An unreadable file yields an
    error item (see ``ImageDataset``) instead of raising.
    """

    def __init__(self, root: str | Path, resolution: int, crop: str = "center", flip: bool = False, seed: int = 0) -> None:
        super().__init__(resolution, crop, flip, seed)
        self.root = Path(root).expanduser()
        if not self.root.exists():
            raise FileNotFoundError(f"image folder not found: {self.root}")
        if not self.root.is_dir():
            raise NotADirectoryError(f"not a directory: {self.root}")
        self.files = sorted(
            (p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()),
            key=lambda p: p.relative_to(self.root).as_posix(),
        )
        if not self.files:
            raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {self.root}")
        classes = sorted({p.relative_to(self.root).parts[0] for p in self.files if len(p.relative_to(self.root).parts) > 1})
        self.class_to_idx = {c: i for i, c in enumerate(classes)}

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.files[index]
        rel = path.relative_to(self.root)
        key = rel.with_suffix("").as_posix()
        label = self.class_to_idx.get(rel.parts[0], 0) if len(rel.parts) > 1 else 0
        try:
            with open_image(path) as img:
                x = load_image(img, self.resolution, self.crop, self.flip, self._rng(index))
        except Exception as e:  # corrupt / truncated / unreadable: reported, never fatal
            return self.error_item(key, str(path), e)
        return make_item(x, key, str(path), label)

    def __repr__(self) -> str:
        return f"ImageFolder({str(self.root)!r}, {len(self)} images, resolution={self.resolution}, crop={self.crop!r}, flip={self.flip})"
