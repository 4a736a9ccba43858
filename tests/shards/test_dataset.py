"""TokenDataset: deterministic shuffles, exact resume, rank/worker splits, specials, packing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmtok.shards import TokenDataset


def _all(it):
    return [ {k: v.clone() for k, v in b.items()} for b in it]


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            assert torch.equal(x[k], y[k]), k


@pytest.fixture
def shards(tmp_path, shard_factory):
    return shard_factory(tmp_path / "s", [[8] * 10, [8] * 10, [8] * 7])  # 27 items


def test_epoch_permutation_is_deterministic_and_complete(shards):
    ds = TokenDataset(shards, seed=3)
    e0 = [int(s["index"]) for s in ds]
    e1 = [int(s["index"]) for s in ds]  # the next epoch
    assert sorted(e0) == list(range(27)) and sorted(e1) == list(range(27))
    assert e0 != e1
    again = TokenDataset(shards, seed=3)
    assert [int(s["index"]) for s in again] == e0
    assert [int(s["index"]) for s in TokenDataset(shards, seed=4)] != e0
    assert [int(s["index"]) for s in TokenDataset(shards, shuffle=False)] == list(range(27))


def test_samples_hold_the_stored_codes_with_offset_and_specials(shards):
    plain = TokenDataset(shards, shuffle=False)
    ds = TokenDataset(shards, shuffle=False, vocab_offset=1000, bos_id=5000, eos_id=5001)
    for i in (0, 13, 26):
        raw = plain[i]["input_ids"]
        s = ds[i]["input_ids"]
        assert s[0] == 5000 and s[-1] == 5001
        assert torch.equal(s[1:-1], raw + 1000)
        assert torch.equal(raw, torch.from_numpy(plain.codes(i).astype(np.int64)))
    assert ds.vocab_size == 5002
    assert plain.key(13) == ("item/00013", "orig")
    with pytest.raises(ValueError, match="collides"):
        TokenDataset(shards, vocab_offset=1000, bos_id=1050)
    with pytest.raises(IndexError):
        plain[27]


def test_resume_mid_epoch_gives_exactly_the_same_batches(shards):
    ref_ds = TokenDataset(shards, batch_size=4, seed=7, bos_id=100)
    ref = _all(ref_ds) + _all(ref_ds)  # two epochs
    ds = TokenDataset(shards, batch_size=4, seed=7, bos_id=100)
    it = iter(ds)
    got = [next(it) for _ in range(3)]
    state = ds.state_dict()
    assert state["epoch"] == 0 and state["position"] == 3
    resumed = TokenDataset(shards, batch_size=4, seed=7, bos_id=100)
    resumed.load_state_dict(state)
    got += _all(resumed) + _all(resumed)
    _same(got, ref)


def test_resume_with_worker_processes_matches_in_process(shards):
    ref = _all(TokenDataset(shards, batch_size=2, seed=1))
    ds = TokenDataset(shards, batch_size=2, seed=1)
    loader = ds.loader(num_workers=2)
    got = []
    for b in loader:
        got.append(b)
        if len(got) == 5:
            break
    state = loader.state_dict()
    assert state["position"] == 5
    ds2 = TokenDataset(shards, batch_size=2, seed=1)
    ds2.load_state_dict(state)
    got += list(ds2.loader(num_workers=2))
    _same(got, ref)
    assert ds2.state_dict()["epoch"] == 1 and ds2.state_dict()["position"] == 0


def test_state_from_other_settings_is_refused(shards):
    st = TokenDataset(shards, batch_size=4, seed=0).state_dict()
    with pytest.raises(ValueError, match="seed=0 vs 1"):
        TokenDataset(shards, batch_size=4, seed=1).load_state_dict(st)


def test_ranks_split_items_disjointly_and_evenly(shards):
    parts = [[int(s["index"]) for s in TokenDataset(shards, seed=2, rank=r, world_size=3)] for r in range(3)]
    assert all(len(p) == 9 for p in parts)
    flat = sorted(sum(parts, []))
    assert flat == list(range(27))
    parts2 = [[int(s["index"]) for s in TokenDataset(shards, seed=2, rank=r, world_size=2)] for r in range(2)]
    assert len(parts2[0]) == len(parts2[1]) == 13 and not set(parts2[0]) & set(parts2[1])


@pytest.mark.parametrize("lengths", [[[3, 7, 1, 5], [9, 2, 6]], [[4] * 5, [4] * 4]], ids=["variable", "fixed"])
def test_packing_cuts_the_item_stream_into_exact_chunks(tmp_path, shard_factory, lengths):
    root = shard_factory(tmp_path / "v", lengths, seed=1)
    ds = TokenDataset(root, seed=5, seq_len=5, bos_id=200, eos_id=201)
    order = ds._rank_items(0)
    stream = np.concatenate([ds[int(i)]["input_ids"].numpy() for i in order])
    chunks = [s for s in ds]
    assert len(chunks) == len(stream) // 5 == len(ds) // 1
    got = np.concatenate([c["input_ids"].numpy() for c in chunks])
    np.testing.assert_array_equal(got, stream[: len(got)])
    for c in chunks:  # a new segment starts right after every EOS
        ids, seg = c["input_ids"].numpy(), c["segment_ids"].numpy()
        for j in range(1, 5):
            assert (seg[j] == seg[j - 1] + 1) == (ids[j - 1] == 201)
    # Batched packing with resume.
    b = TokenDataset(root, seed=5, seq_len=5, batch_size=2, bos_id=200, eos_id=201)
    full = _all(b)
    assert len(full) == len(chunks) // 2
    b2 = TokenDataset(root, seed=5, seq_len=5, batch_size=2, bos_id=200, eos_id=201)
    it = iter(b2)
    first = [next(it)]
    b3 = TokenDataset(root, seed=5, seq_len=5, batch_size=2, bos_id=200, eos_id=201)
    b3.load_state_dict(b2.state_dict())
    _same(first + _all(b3), full)


def test_variable_length_batches_are_padded(tmp_path, shard_factory):
    root = shard_factory(tmp_path / "v", [[3, 7, 1, 5]])
    ds = TokenDataset(root, batch_size=4, shuffle=False, eos_id=300)
    (b,) = list(ds)
    assert b["input_ids"].shape == (4, 8)
    assert b["lengths"].tolist() == [4, 8, 2, 6]
    assert (b["input_ids"][0, 4:] == 300).all()
