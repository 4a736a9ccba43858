"""Image fixtures for the data tests (small files written to a temp dir)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """root/{cats,dogs}/*.{png,jpg,webp} (6 good images of different sizes), plus a
    corrupt jpg, a truncated png and a non-image file."""
    root = tmp_path / "imgs"
    for cls, n in (("cats", 3), ("dogs", 3)):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            img = Image.new("RGB", (48 + 8 * i, 40), (50 * i, 100 if cls == "cats" else 200, 30))
            ext = ("png", "jpg", "webp")[i]
            img.save(root / cls / f"{cls}_{i}.{ext}")
    (root / "dogs" / "zz_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    good = (root / "cats" / "cats_0.png").read_bytes()
    (root / "cats" / "zz_truncated.png").write_bytes(good[: len(good) // 2])
    (root / "cats" / "notes.txt").write_text("not an image")
    return root
