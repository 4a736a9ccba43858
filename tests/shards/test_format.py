"""Shard format: exact round trips, dtype choice, metadata checks, manifest."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmtok.shards import ShardMismatchError, TokenDataset, load_metadata, read_shard, read_shard_meta, resolve_shards
from mmtok.shards.format import build_table, check_compatible, codes_dtype_for, shard_name, write_manifest, write_shard


def test_round_trip_exact_and_readable_by_plain_parquet(tmp_path, meta_factory):
    meta = meta_factory()
    rng = np.random.default_rng(0)
    codes = [rng.integers(0, 100, size=(8,)) for _ in range(5)]
    t = build_table(meta, [f"k{i}" for i in range(5)], codes, labels=[1, None, 3, 4, 5],
                    captions=["a cat", None, "", "x", "y"], paths=[f"/p/{i}" for i in range(5)])
    write_shard(tmp_path / shard_name(0), t)
    back = read_shard(tmp_path / shard_name(0))
    assert back.schema.field("codes").type.value_type == "uint16"
    for i, c in enumerate(codes):
        assert back.column("codes")[i].as_py() == c.tolist()
        assert back.column("shape")[i].as_py() == [8]
    assert back.column("label").to_pylist() == [1, None, 3, 4, 5]
    assert back.column("caption").to_pylist() == ["a cat", None, "", "x", "y"]
    # Any Parquet reader sees the same rows, and the footer carries the metadata.
    plain = pq.read_table(tmp_path / shard_name(0)).to_pandas()
    assert list(plain["key"]) == [f"k{i}" for i in range(5)]
    doc = read_shard_meta(tmp_path / shard_name(0))
    assert doc["tokenizer"] == "fake_t8" and doc["num_items"] == 5


def test_codes_dtype_follows_codebook_size(tmp_path, meta_factory):
    assert codes_dtype_for([65536]) == "uint16"
    assert codes_dtype_for([65537]) == "int32"
    meta = meta_factory(codebook_sizes=[2**18], codes_dtype="int32", token_shape=[4])
    codes = [np.array([0, 1, 2**18 - 1, 70000])]
    write_shard(tmp_path / shard_name(0), build_table(meta, ["a"], codes))
    back = read_shard(tmp_path / shard_name(0))
    assert back.schema.field("codes").type.value_type == "int32"
    assert back.column("codes")[0].as_py() == [0, 1, 2**18 - 1, 70000]


def test_out_of_range_codes_and_length_mismatch_raise(meta_factory):
    meta = meta_factory()
    with pytest.raises(ValueError, match="out of range"):
        build_table(meta, ["a"], [np.array([0, 100])])
    with pytest.raises(ValueError, match="out of range"):
        build_table(meta, ["a"], [np.array([-1, 3])])
    with pytest.raises(ValueError, match="labels has 1 entries for 2 keys"):
        build_table(meta, ["a", "b"], [np.zeros(8, int)] * 2, labels=[1])


def test_variable_length_and_grid_shapes_round_trip(tmp_path, meta_factory):
    meta = meta_factory(token_shape=[-1])
    codes = [np.arange(6).reshape(2, 3), np.arange(4), np.arange(12).reshape(3, 4) % 100]
    write_shard(tmp_path / shard_name(0), build_table(meta, ["a", "b", "c"], codes))
    back = read_shard(tmp_path / shard_name(0))
    assert back.column("shape").to_pylist() == [[2, 3], [4], [3, 4]]
    ds = TokenDataset(tmp_path, shuffle=False)
    for i, c in enumerate(codes):
        np.testing.assert_array_equal(ds.codes(i), c)


def test_mismatched_metadata_is_refused(tmp_path, shard_factory, meta_factory):
    root = shard_factory(tmp_path / "a", [[8] * 4, [8] * 4])
    meta = load_metadata(resolve_shards(root)[0], expect={"tokenizer": "fake_t8"})
    assert meta.vocab_size == 100
    with pytest.raises(ShardMismatchError, match=r"tokenizer: 'fake_t8' \(expected 'titok_s128_fsq'\)"):
        TokenDataset(root, expect={"tokenizer": "titok_s128_fsq"})
    with pytest.raises(ShardMismatchError, match="preprocessing.resolution"):
        TokenDataset(root, expect={"preprocessing": {"resolution": 256}})
    # Mixing shards from two tokenizers in one folder is refused too.
    other = meta_factory(checkpoint_hash="cd" * 32)
    write_shard(root / shard_name(2), build_table(other, ["z"], [np.zeros(8, int)]))
    (root / "manifest.json").unlink()
    with pytest.raises(ShardMismatchError, match="checkpoint_hash"):
        TokenDataset(root)


def test_non_shard_inputs_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TokenDataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no token shards"):
        TokenDataset(tmp_path / "empty")
    pq.write_table(pa.table({"x": [1]}), tmp_path / "shard-000000.parquet")
    with pytest.raises(ShardMismatchError, match="no mmtok metadata"):
        TokenDataset(tmp_path)


def test_manifest_waits_for_all_shards_and_collects_errors(tmp_path, meta_factory):
    meta = meta_factory()
    errs = [{"path": "/bad.jpg", "error": "OSError: truncated", "shard": 1}]
    write_shard(tmp_path / shard_name(1), build_table(meta, ["b"], [np.zeros(8, int)], extra_meta={"errors": errs}))
    assert write_manifest(tmp_path, num_expected=2) is None
    assert not (tmp_path / "manifest.json").exists()
    write_shard(tmp_path / shard_name(0), build_table(meta, ["a", "c"], [np.ones(8, int)] * 2, extra_meta={"errors": []}))
    m = write_manifest(tmp_path, num_expected=2)
    assert m["num_items"] == 3 and [s["num_items"] for s in m["shards"]] == [2, 1]
    assert json.loads((tmp_path / "errors.jsonl").read_text().strip()) == errs[0]
    # A manifest that lists a vanished shard is an error, not a silent partial read.
    (tmp_path / shard_name(1)).unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        resolve_shards(tmp_path)


def test_check_compatible_lists_every_problem():
    with pytest.raises(ShardMismatchError) as e:
        check_compatible({"tokenizer": "a", "token_shape": [32]}, {"tokenizer": "b", "token_shape": (64,), "config_hash": "x"})
    msg = str(e.value)
    assert "tokenizer" in msg and "token_shape" in msg and "config_hash: missing" in msg
    check_compatible({"token_shape": [32]}, {"token_shape": (32,)})  # tuples and lists compare equal
