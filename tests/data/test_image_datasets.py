"""Datasets: synthetic, image folder, tar shards, spec dispatch, pixel-range helpers."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmtok.data import (
    ImageFolder,
    SyntheticImages,
    TarShardImages,
    collate,
    expand_braces,
    make_loader,
    open_image_dataset,
    to_model_range,
    to_uint8,
)


def test_synthetic_is_deterministic_in_range_and_resolution_free() -> None:
    a, b = SyntheticImages(8, 32, seed=1), SyntheticImages(8, 32, seed=1)
    for i in range(8):
        x, y = a[i], b[i]
        assert torch.equal(x["x"], y["x"]) and x["key"] == f"synthetic/{i:06d}"
        assert x["x"].shape == (3, 32, 32) and x["x"].dtype == torch.float32
        assert -1 <= float(x["x"].min()) and float(x["x"].max()) <= 1
        assert 0 <= x["label"] < 4
    assert not torch.equal(a[0]["x"], SyntheticImages(8, 32, seed=2)[0]["x"])
    assert not torch.equal(a[0]["x"], a[1]["x"])
    # the same picture at a higher resolution: downsampling 128 -> 32 is close to the 32px render
    big = SyntheticImages(8, 128, seed=1)[3]["x"]
    small = a[3]["x"]
    down = torch.nn.functional.avg_pool2d(big[None], 4)[0]
    assert big.shape == (3, 128, 128) and (down - small).abs().mean() < 0.08
    # varied content: pixel std is not degenerate
    assert torch.stack([a[i]["x"] for i in range(8)]).std() > 0.2
    with pytest.raises(IndexError):
        a[8]
    with pytest.raises(ValueError, match="num_items"):
        SyntheticImages(0)


def test_image_folder_order_labels_and_corrupt_files(image_folder: Path) -> None:
    ds = ImageFolder(image_folder, resolution=32)
    assert len(ds) == 8  # 6 good + 2 bad images; notes.txt is not an image
    rel = [p.relative_to(image_folder).as_posix() for p in ds.files]
    assert rel == sorted(rel)
    items = [ds[i] for i in range(len(ds))]
    bad = [it for it in items if it["x"] is None]
    assert sorted(Path(it["path"]).name for it in bad) == ["zz_corrupt.jpg", "zz_truncated.png"]
    assert all(it["error"] for it in bad)
    good = [it for it in items if it["x"] is not None]
    assert {it["label"] for it in good if it["key"].startswith("cats/")} == {0}
    assert {it["label"] for it in good if it["key"].startswith("dogs/")} == {1}
    assert all(it["x"].shape == (3, 32, 32) for it in good)
    # the loader drops the bad items and reports them with their paths
    batches = list(make_loader(ds, batch_size=4))
    assert sum(b["x"].shape[0] for b in batches) == 6
    errors = [e for b in batches for e in b["errors"]]
    assert sorted(Path(p).name for p, _ in errors) == ["zz_corrupt.jpg", "zz_truncated.png"]


def test_image_folder_with_worker_processes_matches_in_process(image_folder: Path) -> None:
    ds = ImageFolder(image_folder, resolution=16, crop="random", flip=True, seed=3)
    a = list(make_loader(ds, batch_size=3, shuffle=True, seed=5))
    b = list(make_loader(ds, batch_size=3, shuffle=True, seed=5, num_workers=2))
    assert [x["key"] for x in a] == [x["key"] for x in b]
    assert all((x["x"] is None and y["x"] is None) or torch.equal(x["x"], y["x"]) for x, y in zip(a, b))
    assert [x["errors"] for x in a] == [x["errors"] for x in b] and sum(len(x["errors"]) for x in b) == 2


def test_missing_or_empty_sources_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        open_image_dataset(tmp_path / "missing", 32)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="no images"):
        open_image_dataset(tmp_path / "empty", 32)
    with pytest.raises(FileNotFoundError):
        open_image_dataset(tmp_path / "shards-*.tar", 32)
    with pytest.raises(ValueError, match="synthetic"):
        open_image_dataset("synthetic:many", 32)
    with pytest.raises(ValueError, match="crop"):
        ImageFolder(tmp_path, 32, crop="middle")


def _png(color: tuple[int, int, int], size=(40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def _write_shard(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> None:
    with tarfile.open(path, "w") as tf:
        for key, files in samples:
            for ext, data in files.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))


def test_tar_shards_brace_patterns_labels_and_corrupt_members(tmp_path: Path) -> None:
    for s in range(3):
        samples = [(f"s{s}/{i:04d}", {"png": _png((80 * s, 10 * i, 50)), "cls": str(s * 10 + i).encode()}) for i in range(2)]
        if s == 1:
            samples.append(("s1/broken", {"jpg": b"garbage", "cls": b"7"}))
            samples.append(("s1/textonly", {"txt": b"caption without image"}))
        _write_shard(tmp_path / f"shard-{s:03d}.tar", samples)
    assert expand_braces(str(tmp_path / "shard-{000..002}.tar")) == [str(tmp_path / f"shard-{s:03d}.tar") for s in range(3)]
    ds = open_image_dataset(str(tmp_path / "shard-{000..002}.tar"), 24)
    assert isinstance(ds, TarShardImages) and len(ds) == 7 and ds.skipped_members == 1
    items = [ds[i] for i in range(len(ds))]
    good = [it for it in items if it["x"] is not None]
    assert [it["label"] for it in good] == [0, 1, 10, 11, 20, 21]
    assert good[0]["key"] == "shard-000/s0/0000" and good[0]["x"].shape == (3, 24, 24)
    # the decoded pixels are the stored colour
    assert torch.allclose(good[2]["x"][:, 0, 0], to_model_range(torch.tensor([80, 0, 50], dtype=torch.uint8)), atol=1e-6)
    bad = [it for it in items if it["x"] is None]
    assert len(bad) == 1 and bad[0]["path"].endswith(":s1/broken.jpg")
    # glob and list forms give the same dataset; workers read through their own file handles
    assert len(open_image_dataset(str(tmp_path / "shard-*.tar"), 24)) == 7
    batches = list(make_loader(TarShardImages([tmp_path / "shard-000.tar", tmp_path / "shard-001.tar"], 24), 2, num_workers=2))
    assert sum(b["x"].shape[0] for b in batches if b["x"] is not None) == 4 and sum(len(b["errors"]) for b in batches) == 1


def test_pixel_range_round_trip_and_errors() -> None:
    u8 = torch.arange(256, dtype=torch.uint8).reshape(1, 16, 16)
    x = to_model_range(u8)
    assert x.dtype == torch.float32 and float(x.min()) == -1.0 and float(x.max()) == 1.0
    assert torch.equal(to_uint8(x), u8)  # exact round trip
    assert torch.equal(to_uint8(to_model_range(np.full((2, 2), 0.5, dtype=np.float32))), torch.full((2, 2), 128, dtype=torch.uint8))
    assert torch.equal(to_uint8(torch.tensor([-3.0, 5.0])), torch.tensor([0, 255], dtype=torch.uint8))  # clamps
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        to_model_range(torch.tensor([0.0, 255.0]))
    with pytest.raises(TypeError):
        to_uint8(u8)


def test_collate_all_bad_batch() -> None:
    out = collate([{"x": None, "key": "k", "path": "p", "error": "boom"}])
    assert out["x"] is None and out["errors"] == [("p", "boom")]
