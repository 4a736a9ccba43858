"""Fixtures for the token shard tests: tiny random-init checkpoints and hand-made shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mmtok.shards.format import ShardMetadata, build_table, shard_name, write_manifest, write_shard


def fake_meta(**over) -> ShardMetadata:
    d = dict(tokenizer="fake_t8", family="Fake", modality="image", config_hash="c0ffee", checkpoint_hash="ab" * 32,
             codebook_sizes=[100], token_shape=[8], codes_dtype="uint16",
             preprocessing={"resolution": 32, "crop": "center", "augmentations": ["orig"]})
    d.update(over)
    return ShardMetadata(**d)


def make_shards(root: Path, lengths: list[list[int]], meta: ShardMetadata | None = None, seed: int = 0) -> Path:
    """Write shards whose items have the given token counts; codes are random in the vocab."""
    meta = meta or fake_meta()
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    n = 0
    for si, lens in enumerate(lengths):
        keys = [f"item/{n + j:05d}" for j in range(len(lens))]
        codes = [rng.integers(0, meta.vocab_size, size=(L,)) for L in lens]
        table = build_table(meta, keys, codes, labels=[(n + j) % 7 for j in range(len(lens))],
                            paths=[f"/src/{k}.png" for k in keys], extra_meta={"shard_index": si, "errors": []})
        write_shard(root / shard_name(si), table)
        n += len(lens)
    write_manifest(root, len(lengths))
    return root


def _saved_tiny_tokenizer(tmp_path_factory, name: str, seed: int) -> Path:
    """A random-init ``titok_t32_fsq`` (weights from ``seed``) saved under a temp dir."""
    import mmtok

    torch.manual_seed(seed)
    path = tmp_path_factory.mktemp("ckpt") / name
    mmtok.create_tokenizer("titok_t32_fsq").save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    return _saved_tiny_tokenizer(tmp_path_factory, "titok_t32", seed=0)


@pytest.fixture(scope="session")
def other_ckpt(tmp_path_factory) -> Path:
    return _saved_tiny_tokenizer(tmp_path_factory, "titok_t32_other", seed=1)


@pytest.fixture
def shard_factory():
    """``shard_factory(root, lengths, meta=None, seed=0)`` writes shards (see ``make_shards``)."""
    return make_shards


@pytest.fixture
def meta_factory():
    """``meta_factory(**overrides)`` -> a ShardMetadata for hand-made shards."""
    return fake_meta

