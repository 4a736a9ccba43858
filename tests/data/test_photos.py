"""The real-photo datasets: deterministic, in range, train / held-out disjoint, moving clips."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("skimage")

from mmtok.data import open_dataset  # noqa: E402
from mmtok.data.photos import load_photo_regions  # noqa: E402


def test_photo_crops_are_deterministic_real_and_in_range():
    a = open_dataset("photos:16", "image", resolution=32)
    b = open_dataset("photos:16", "image", resolution=32)
    assert len(a) == 16
    for i in (0, 7, 15):
        x = a[i]["x"]
        assert x.shape == (3, 32, 32) and x.min() >= -1 and x.max() <= 1
        assert torch.equal(x, b[i]["x"])
    xs = torch.stack([a[i]["x"] for i in range(16)])
    # real photos: far from constant, and the crops differ from each other
    assert xs.std(dim=(2, 3)).mean() > 0.03
    assert (xs[1:] - xs[:-1]).abs().mean() > 0.05
    assert not torch.equal(open_dataset("photos:4", "image", resolution=32, seed=1)[0]["x"], a[0]["x"])


def test_train_and_held_out_regions_are_disjoint():
    train, val = load_photo_regions("train"), load_photo_regions("val")
    assert len(train) == len(val) >= 8
    for t, v in zip(train, val):
        assert t.shape[2] == v.shape[2] and t.shape[1] > 2 * v.shape[1]
    ds = open_dataset("photos_val:3", "image", resolution=64)
    assert ds[0]["key"].startswith("photos/val/")
    with pytest.raises(ValueError, match="larger than the smallest"):
        open_dataset("photos_val:3", "image", resolution=200)
    with pytest.raises(ValueError, match="bad photo dataset spec"):
        open_dataset("photos:abc", "image", resolution=32)


def test_photo_pan_clips_move():
    ds = open_dataset("photos:8", "video", resolution=32, num_frames=9)
    moving = 0
    for i in range(8):
        item = ds[i]
        x = item["x"]
        assert x.shape == (3, 9, 32, 32) and x.min() >= -1 and x.max() <= 1
        assert item["meta"]["speed_px_per_frame"] >= 0.3
        assert torch.equal(x, ds[i]["x"])
        step = (x[:, 1:] - x[:, :-1]).abs().mean()
        drift = (x[:, -1] - x[:, 0]).abs().mean()
        moving += int(drift > step > 0)
    assert moving >= 6  # the camera moves: the last frame is further from the first than one step

