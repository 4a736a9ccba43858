"""Token shards back to media (``mmtok decode``), for any modality.

Codes are read as stored (uint16 / int32) and widened with ``mmtok.tokenizer.as_codes``;
the tokenizer that made the shards decodes them, and the sample writer registered for the
shards' modality (:mod:`mmtok.shards.writers`: PNG for images, WAV for audio, MP4 for video)
writes the files. Rows of segmented inputs carry their valid length (the optional ``length``
column): writers trim the zero-padded tail, and audio chunks can be joined back into one file
per source. Rows of video clips carry their frame rate (the optional ``fps`` column), the
rate their MP4 is written at.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from mmtok.shards.format import ShardMetadata, check_compatible, load_metadata, read_shard, resolve_shards
from mmtok.shards.identity import checkpoint_identity
from mmtok.shards.writers import sample_writer_for
from mmtok.tokenizer import as_codes

SourceLike = str | Path | Sequence[str | Path]


def _runs(shapes: list[list[int]], batch_size: int) -> Iterator[tuple[int, int]]:
    """(start, end) row ranges of at most ``batch_size`` rows that share a shape."""
    start = 0
    while start < len(shapes):
        end = start + 1
        while end < len(shapes) and end - start < batch_size and shapes[end] == shapes[start]:
            end += 1
        yield start, end
        start = end


def iter_shard_items(source: SourceLike, batch_size: int = 64) -> Iterator[dict[str, Any]]:
    """Batches of stored items in storage order: ``{"codes": (B, *codes_shape) int64, "key", "aug", "label", "path",
    "length", "fps"}`` (``length``: valid input samples per item; ``fps``: frame rate of each clip; None where the
    shards do not record them).

    Items of one batch share a codes shape (a batch is cut where the shape changes).
    """
    files, _ = resolve_shards(source)
    for f in files:
        t = read_shard(f)
        if t.num_rows == 0:
            continue
        codes = t.column("codes").combine_chunks()
        offsets = codes.offsets.to_numpy()
        values = codes.values.to_numpy(zero_copy_only=False)  # the stored dtype (uint16 / int32)
        shapes = t.column("shape").to_pylist()
        cols = {k: t.column(k).to_pylist() for k in ("key", "aug", "label", "path")}
        for k in ("length", "fps"):  # optional columns
            cols[k] = t.column(k).to_pylist() if k in t.schema.names else [None] * t.num_rows
        for start, end in _runs(shapes, batch_size):
            flat = torch.from_numpy(values[offsets[start]: offsets[end]].copy())
            yield {"codes": as_codes(flat).reshape(end - start, *shapes[start]),
                   **{k: v[start:end] for k, v in cols.items()}}


def load_for_shards(meta: ShardMetadata, checkpoint: str | Path | None = None, device: str | torch.device = "cpu") -> Any:
    """Load the tokenizer that made the shards (default: the recorded checkpoint path), verifying its hash."""
    import mmtok

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
    source: SourceLike,
    checkpoint: str | Path | None = None,
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    limit: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Decode shards batch by batch: yields ``{"recon": (B, ...) float in [-1, 1] on the CPU, "codes", "key", "aug", ...}``.

    ``recon`` has the modality's layout (image (B, 3, H, W); audio (B, C, S), untrimmed: ``length``
    says how many samples of each item are real; video (B, 3, T, H, W), ``fps`` the rate of each
    clip). The tokenizer is the one
    recorded in the shards (or ``checkpoint``), and must have the same weights (checkpoint
    hash), else :class:`~mmtok.shards.ShardMismatchError`.
    """
    files, _ = resolve_shards(source)
    meta = load_metadata(files)
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tok = load_for_shards(meta, checkpoint, dev)
    done = 0
    for batch in iter_shard_items(files, batch_size):
        if limit is not None:
            if done >= limit:
                return
            batch = {k: v[: limit - done] for k, v in batch.items()}
        batch["recon"] = tok.decode(as_codes(batch["codes"], dev)).float().cpu()
        done += len(batch["key"])
        yield batch


def decode_to_files(source: SourceLike, out_dir: str | Path, checkpoint: str | Path | None = None, *,
                    batch_size: int = 64, device: str | torch.device | None = None, limit: int | None = None,
                    join: bool = False, progress: bool = True) -> int:
    """Write every decoded item as ``OUT/<key>[__<aug>].<ext>`` with the modality's sample writer; returns the
    number of files written.

    ``join`` (audio): one file per source instead, its chunks ``<source>@<offset>`` placed at their
    offsets (chunks of a file are consecutive in storage order).
    """
    files, _ = resolve_shards(source)
    meta = load_metadata(files)
    writer = sample_writer_for(meta.modality)(out_dir, meta, join=join)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(unit="item", desc="decode")
    n = 0
    try:
        for batch in decode_shards(files, checkpoint, batch_size=batch_size, device=device, limit=limit):
            n += len(writer.write_batch(batch))
            if bar is not None:
                bar.update(len(batch["key"]))
        n += len(writer.close())
    finally:
        if bar is not None:
            bar.close()
    return n
