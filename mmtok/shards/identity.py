"""Which tokenizer a checkpoint holds, as shard metadata records it (no model is loaded)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmtok.io import file_sha256

# What a trainer pins: the fields of ``checkpoint_identity`` that ``expected_metadata`` returns.
EXPECTED_FIELDS = ("tokenizer", "family", "modality", "config_hash", "checkpoint_hash")


def checkpoint_identity(checkpoint: str | Path) -> dict[str, Any]:
    """Tokenizer identity of a checkpoint directory: name, family, modality, hashes, version, path."""
    from mmtok.checkpoint import WEIGHTS_NAME, _resolve, read_checkpoint_config

    d = _resolve(checkpoint)
    cfg = read_checkpoint_config(d)
    return {
        "tokenizer": cfg.get("variant") or cfg["family"],
        "family": cfg["family"],
        "modality": cfg.get("modality"),
        "config_hash": cfg.get("config_hash", ""),
        "checkpoint_hash": file_sha256(d / WEIGHTS_NAME),
        "mmtok_version": cfg.get("mmtok_version", ""),
        "checkpoint_path": str(Path(d).resolve()),
    }


def expected_metadata(checkpoint: str | Path) -> dict[str, Any]:
    """What a trainer should demand of shards made from ``checkpoint`` (pass as ``TokenDataset(expect=...)``)."""
    ident = checkpoint_identity(checkpoint)
    return {k: ident[k] for k in EXPECTED_FIELDS}
