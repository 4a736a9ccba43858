"""Token shards: encode whole datasets once, feed autoregressive generators, refuse mismatched data.

Rooms: ``format`` (Parquet layout, metadata, checks), ``identity`` (what a checkpoint is),
``encoder`` (``ShardEncoder``: tokenizer + views + batches -> shards), ``encode`` (the
driver: opens the dataset, splits ranks, resumes), ``ray_engine``, ``decode`` + ``writers``
(shards -> media files, one writer per modality), ``stats`` (``mmtok inspect``),
``dataset`` (``TokenDataset`` for AR training), ``cli``.

    mmtok encode runs/tok/final data/train tokens/          # -> tokens/shard-*.parquet + manifest.json
    ds = mmtok.shards.TokenDataset("tokens/", batch_size=64,
                                   expect=mmtok.shards.expected_metadata("runs/tok/final"))
"""

from importlib import import_module
from typing import Any

from mmtok.shards.dataset import TokenDataset, TokenLoader
from mmtok.shards.format import (
    ERRORS_NAME,
    IDENTITY_FIELDS,
    MANIFEST_NAME,
    ShardMetadata,
    ShardMismatchError,
    build_table,
    check_compatible,
    load_metadata,
    read_shard,
    read_shard_meta,
    resolve_shards,
    write_manifest,
    write_shard,
)

# Modules that load torch models / optional deps are imported on first use.
_LAZY = {
    "encode_dataset": "mmtok.shards.encode",
    "open_job": "mmtok.shards.encode",
    "EncodeJob": "mmtok.shards.encode",
    "NoReadableItemsError": "mmtok.shards.encode",
    "read_errors": "mmtok.shards.encode",
    "ShardEncoder": "mmtok.shards.encoder",
    "EncodeResult": "mmtok.shards.encoder",
    "expected_metadata": "mmtok.shards.identity",
    "checkpoint_identity": "mmtok.shards.identity",
    "decode_shards": "mmtok.shards.decode",
    "decode_to_files": "mmtok.shards.decode",
    "iter_shard_items": "mmtok.shards.decode",
    "register_sample_writer": "mmtok.shards.writers",
    "sample_writer_for": "mmtok.shards.writers",
    "SampleWriter": "mmtok.shards.writers",
    "shard_stats": "mmtok.shards.stats",
    "encode_with_ray": "mmtok.shards.ray_engine",
    "TinyGPT": "mmtok.ar",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mmtok.shards' has no attribute {name!r}")


__all__ = [
    "TokenDataset",
    "TokenLoader",
    "ShardMetadata",
    "ShardMismatchError",
    "IDENTITY_FIELDS",
    "MANIFEST_NAME",
    "ERRORS_NAME",
    "build_table",
    "write_shard",
    "read_shard",
    "read_shard_meta",
    "resolve_shards",
    "load_metadata",
    "check_compatible",
    "write_manifest",
    *_LAZY,
]
