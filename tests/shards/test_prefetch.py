"""Decode overlap of the encode pipeline: the background decode thread and batched synthetic
rendering give exactly the bytes of worker processes and per-item decoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mmtok.data import SyntheticImages
from mmtok.data.synthetic import render, render_batch
from mmtok.shards import encode_dataset
from mmtok.shards.encode import _prefetched, fetch_batch


@pytest.mark.parametrize("resolution", [8, 17, 32])
def test_render_batch_is_bit_identical(resolution: int) -> None:
    idx = list(range(60)) + [4321]
    batch, labels = render_batch(3, idx, resolution)
    for k, i in enumerate(idx):
        ref, lab = render(3, i, resolution)
        assert lab == labels[k] and ref.dtype == batch[k].dtype
        assert np.array_equal(ref.view(np.uint32), batch[k].view(np.uint32))


def test_getitems_equals_getitem_with_flips() -> None:
    ds = SyntheticImages(80, 16, seed=2, flip=True)
    items = ds.__getitems__([5, 70, 0, 33])
    for i, it in zip([5, 70, 0, 33], items):
        ref = ds[i]
        assert torch.equal(ref["x"], it["x"]) and (ref["key"], ref["label"]) == (it["key"], it["label"])
    with pytest.raises(IndexError):
        ds.__getitems__([1, 80])


class _Boom(SyntheticImages):
    def __getitem__(self, index):  # a dataset without batched decoding that fails mid-way
        if index == 9:
            raise RuntimeError("decoder crashed")
        return super().__getitem__(index)

    __getitems__ = None


def test_prefetch_thread_keeps_order_and_raises() -> None:
    ds = SyntheticImages(20, 8)
    plan = [(i // 2, list(range(4 * i, 4 * i + 4))) for i in range(5)]
    got = list(_prefetched(ds, plan, depth=2))
    assert [s for s, _ in got] == [s for s, _ in plan]
    for (_, idx), (_, b) in zip(plan, got):
        assert torch.equal(b["x"], fetch_batch(ds, idx)["x"])
        assert b["key"] == [f"synthetic/{i:06d}" for i in idx]
    with pytest.raises(RuntimeError, match="decoder crashed"):
        list(_prefetched(_Boom(20, 8), plan, depth=2))
    early = _prefetched(ds, plan, depth=3)
    next(early)
    early.close()  # stopping early cancels what is pending and joins the thread


def test_thread_and_worker_decoding_write_identical_shards(tiny_ckpt: Path, tmp_path: Path) -> None:
    kw = dict(batch_size=3, shard_size=7, flip=True, progress=False)
    a = encode_dataset(tiny_ckpt, "synthetic:17", tmp_path / "thread", num_workers=0, **kw)
    b = encode_dataset(tiny_ckpt, "synthetic:17", tmp_path / "workers", num_workers=1, **kw)
    assert a.items_written == b.items_written == 34
    names = sorted(p.name for p in (tmp_path / "thread").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "workers").iterdir())
    for n in names:
        assert (tmp_path / "thread" / n).read_bytes() == (tmp_path / "workers" / n).read_bytes(), n
