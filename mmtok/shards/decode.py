"""Token shards back to media (``mmtok decode``) and shard statistics (``mmtok inspect``)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmtok.shards.format import ShardMetadata, check_compatible, load_metadata, read_shard, resolve_shards


def iter_shard_items(source: str | Path, batch_size: int = 64) -> Iterator[dict[str, Any]]:
    """Batches of stored items in storage order: ``{"codes": (B, *token_shape) int64, "key", "aug", "label", "path"}``.

    Items of one batch share a token shape (a batch is cut where the shape changes).
    """
    files, _ = resolve_shards(source)
    for f in files:
        t = read_shard(f).to_pydict()
        rows = len(t["key"])
        start = 0
        while start < rows:
            shape = t["shape"][start]
            end = start + 1
            while end < rows and end - start < batch_size and t["shape"][end] == shape:
                end += 1
            codes = torch.tensor(np.asarray(t["codes"][start:end], dtype=np.int64)).reshape(end - start, *shape)
            yield {"codes": codes, "key": t["key"][start:end], "aug": t["aug"][start:end],
                   "label": t["label"][start:end], "path": t["path"][start:end]}
            start = end


def load_for_shards(meta: ShardMetadata, checkpoint: str | Path | None = None, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Load the tokenizer that made the shards (default: the recorded checkpoint path), verifying its hash."""
    import mmtok
    from mmtok.shards.encode import checkpoint_identity

    path = checkpoint or meta.checkpoint_path
    if not path:
        raise ValueError("the shards record no checkpoint path; pass the checkpoint that made them")
    if not Path(path).exists():
        raise FileNotFoundError(f"checkpoint {path} not found; pass the checkpoint that made the shards")
    ident = checkpoint_identity(path)
    check_compatible(meta.to_dict(), {k: ident[k] for k in ("family", "config_hash", "checkpoint_hash")},
                     where=f"shards (decoding with checkpoint {path})")
    return mmtok.load_tokenizer(path, device=device, modality=meta.modality)


@torch.inference_mode()
def decode_shards(
    source: str | Path,
    checkpoint: str | Path | None = None,
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    limit: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Decode shards batch by batch: yields ``{"recon": (B, 3, H, W) in [-1, 1], "key", "aug", ...}``.

    The tokenizer is the one recorded in the shards (or ``checkpoint``), and must have the
    same weights (checkpoint hash), else :class:`~mmtok.shards.ShardMismatchError`.
    """
    files, _ = resolve_shards(source)
    meta = load_metadata(files)
    if meta.modality != "image":
        raise NotImplementedError(f"decoding {meta.modality} shards is not supported yet (only image tokenizers)")
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tok = load_for_shards(meta, checkpoint, dev)
    done = 0
    for batch in iter_shard_items(files, batch_size):
        if limit is not None and done >= limit:
            return
        if limit is not None:
            batch = {k: v[: limit - done] for k, v in batch.items()}
        batch["recon"] = tok.decode(batch["codes"].to(dev)).float().cpu()
        done += len(batch["key"])
        yield batch


def _safe_name(key: str, aug: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("_") or "item"
    return name if aug in ("orig", "") else f"{name}__{re.sub(r'[^A-Za-z0-9._-]+', '_', aug)}"


def decode_to_images(source: str | Path, out_dir: str | Path, checkpoint: str | Path | None = None, *,
                     batch_size: int = 64, device: str | None = None, limit: int | None = None,
                     progress: bool = True) -> int:
    """Write every decoded item as ``OUT/<key>[__<aug>].png``; returns the number written."""
    from PIL import Image

    from mmtok.data import to_uint8

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(unit="img", desc="decode")
    n = 0
    for batch in decode_shards(source, checkpoint, batch_size=batch_size, device=device, limit=limit):
        imgs = to_uint8(batch["recon"]).permute(0, 2, 3, 1).numpy()
        for img, key, aug in zip(imgs, batch["key"], batch["aug"]):
            Image.fromarray(img).save(out / f"{_safe_name(key, aug)}.png")
            n += 1
        if bar is not None:
            bar.update(len(imgs))
    if bar is not None:
        bar.close()
    return n


def shard_stats(source: str | Path, top: int = 10) -> dict[str, Any]:
    """Metadata, item / token counts, per-shard counts and token usage of a shard set."""
    files, manifest = resolve_shards(source)
    meta = load_metadata(files)
    V = meta.vocab_size
    counts = np.zeros(V, np.int64)
    per_shard, items, lengths, augs = [], 0, set(), {}
    for f in files:
        t = read_shard(f, ["codes", "aug"])
        codes = t.column("codes").combine_chunks()
        vals = codes.values.to_numpy(zero_copy_only=False)
        counts += np.bincount(vals, minlength=V)[:V]
        lengths.update(np.unique(np.diff(codes.offsets.to_numpy())).tolist())
        for a in t.column("aug").to_pylist():
            augs[a] = augs.get(a, 0) + 1
        per_shard.append({"file": f.name, "num_items": t.num_rows})
        items += t.num_rows
    total = int(counts.sum())
    p = counts[counts > 0] / max(total, 1)
    entropy = float(-(p * np.log2(p)).sum()) if total else 0.0
    order = np.argsort(-counts, kind="stable")[:top]
    return {
        "metadata": meta.to_dict(),
        "num_shards": len(files),
        "num_items": items,
        "num_tokens": total,
        "num_errors": (manifest or {}).get("num_errors"),
        "sequence_lengths": sorted(lengths),
        "augmentations": augs,
        "codes_used": int((counts > 0).sum()),
        "usage": float((counts > 0).mean()) if V else 0.0,
        "entropy_bits": entropy,
        "perplexity": float(2 ** entropy),
        "top_codes": [(int(i), int(counts[i])) for i in order if counts[i] > 0],
        "histogram": counts,
        "shards": per_shard,
    }


def format_stats(stats: Mapping[str, Any], bins: int = 16, width: int = 40) -> str:
    """Human-readable report of :func:`shard_stats` with a text histogram of token ids."""
    m = stats["metadata"]
    lines = [
        f"tokenizer       {m['tokenizer']} ({m['family']}, {m['modality']})",
        f"checkpoint      sha256 {m['checkpoint_hash'][:16]}...  config {m['config_hash']}  at {m['checkpoint_path']}",
        f"mmtok version   {m['mmtok_version']}   format {m['format']} v{m['format_version']}",
        f"codebook sizes  {m['codebook_sizes']}   token shape {m['token_shape']}   dtype {m['codes_dtype']}",
        f"preprocessing   {m['preprocessing']}",
        f"source          {m['source']}   precision {m['precision']}",
        f"shards          {stats['num_shards']}   items {stats['num_items']}   tokens {stats['num_tokens']}"
        + (f"   errors {stats['num_errors']}" if stats.get("num_errors") is not None else ""),
        f"augmentations   {stats['augmentations']}",
        f"sequence length {stats['sequence_lengths']}",
        f"token usage     {stats['codes_used']}/{m['codebook_sizes'][0] if m['codebook_sizes'] else 0} codes "
        f"({100 * stats['usage']:.1f}%), entropy {stats['entropy_bits']:.2f} bits, perplexity {stats['perplexity']:.1f}",
        f"top codes       {stats['top_codes']}",
        "token id histogram:",
    ]
    hist = np.asarray(stats["histogram"])
    V = len(hist)
    nb = max(1, min(bins, V))
    edges = np.linspace(0, V, nb + 1).astype(int)
    sums = [int(hist[a:b].sum()) for a, b in zip(edges[:-1], edges[1:])]
    peak = max(sums) if sums and max(sums) > 0 else 1
    w = len(str(V))
    for (a, b), s in zip(zip(edges[:-1], edges[1:]), sums):
        bar = "#" * int(math.ceil(width * s / peak)) if s else ""
        lines.append(f"  [{a:>{w}}, {b:>{w}})  {bar:<{width}} {s}")
    return "\n".join(lines)
