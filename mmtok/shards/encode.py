"""Encode a dataset into token shards: batched, multi-rank, resumable, error-tolerant.

Assignment: the sorted input is cut into shards of ``shard_size`` source items; shard ``i``
holds items ``[i * shard_size, (i + 1) * shard_size)`` and belongs to rank
``i % world_size``. A shard's content therefore does not depend on the number of ranks,
ranks never coordinate, and each rank writes its own files. Every shard is written
atomically; a rerun skips shards already on disk, so a killed run resumed gives the same
shards as an uninterrupted one. The last rank to finish writes ``manifest.json`` and
``errors.jsonl`` (concurrent writers produce identical files).

Data loading runs in DataLoader worker processes and writing in a background thread, so
the accelerator only waits on the model.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from mmtok.shards.format import (
    IDENTITY_FIELDS,
    SHARD_RE,
    ShardMetadata,
    ShardMismatchError,
    build_table,
    check_compatible,
    codes_dtype_for,
    file_sha256,
    read_shard_meta,
    shard_name,
    write_manifest,
    write_shard,
)

MAX_CROPS = 5  # center + four corners


@dataclass
class EncodeResult:
    """Summary of one rank's encode run."""

    output_dir: Path
    rank: int
    world_size: int
    num_shards: int
    shards_written: list[int] = field(default_factory=list)
    shards_skipped: list[int] = field(default_factory=list)
    items_written: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    manifest: dict[str, Any] | None = None

    @property
    def items_per_second(self) -> float:
        return self.items_written / self.seconds if self.seconds > 0 else 0.0


def aug_names(crops: int, flip: bool) -> list[str]:
    """Augmentation copies made of every item, in row order: e.g. ``["orig", "flip"]``."""
    base = ["orig"] if crops == 1 else [f"crop{c}" for c in range(crops)]
    return [n for b in base for n in ([b, f"{b}+flip" if crops > 1 else "flip"] if flip else [b])]


def make_views(x: Tensor, resolution: int, crops: int, flip: bool) -> list[Tensor]:
    """x: (B, 3, R', R') -> the augmentation views (B, 3, R, R) in :func:`aug_names` order.

    With ``crops > 1`` the crops are center, top-left, top-right, bottom-left, bottom-right.
    """
    H, W = x.shape[-2:]
    r = resolution
    if crops == 1:
        bases = [x]
    else:
        cy, cx = (H - r) // 2, (W - r) // 2
        corners = [(cy, cx), (0, 0), (0, W - r), (H - r, 0), (H - r, W - r)][:crops]
        bases = [x[..., y: y + r, xx: xx + r] for y, xx in corners]
    views = []
    for b in bases:
        views.append(b)
        if flip:
            views.append(torch.flip(b, dims=[-1]))
    return views


def checkpoint_identity(checkpoint: str | Path) -> dict[str, Any]:
    """Tokenizer identity of a checkpoint directory: name, family, modality, hashes, version."""
    from mmtok.checkpoint import WEIGHTS_NAME, _resolve, read_checkpoint_config

    d = _resolve(checkpoint)
    cfg = read_checkpoint_config(d)
    return {
        "tokenizer": cfg.get("variant") or cfg["family"],
        "family": cfg["family"],
        "modality": cfg.get("modality", "image"),
        "config_hash": cfg.get("config_hash", ""),
        "checkpoint_hash": file_sha256(d / WEIGHTS_NAME),
        "mmtok_version": cfg.get("mmtok_version", ""),
        "checkpoint_path": str(Path(d).resolve()),
    }


def expected_metadata(checkpoint: str | Path) -> dict[str, Any]:
    """What a trainer should demand of shards made from ``checkpoint`` (pass as ``TokenDataset(expect=...)``)."""
    ident = checkpoint_identity(checkpoint)
    return {k: ident[k] for k in ("tokenizer", "family", "modality", "config_hash", "checkpoint_hash")}


def _resolve_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None and world_size is not None:
        return int(rank), int(world_size)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _pick_device(device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
    return torch.device("cpu")


class _Encoder:
    """Runs ``tok.encode`` in the chosen precision (bf16 autocast only when it leaves codes unchanged)."""

    def __init__(self, tok: torch.nn.Module, device: torch.device, precision: str) -> None:
        if precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {precision!r}")
        self.tok, self.device, self.precision = tok, device, precision

    def calibrate(self, probe: Tensor | None) -> str:
        """Resolve ``auto``: bf16 on CUDA if the probe batch gives identical codes, else fp32."""
        if self.precision != "auto":
            return self.precision
        if self.device.type != "cuda" or probe is None:
            self.precision = "fp32"
            return self.precision
        self.precision = "fp32"
        ref = self(probe)
        self.precision = "bf16"
        same = torch.equal(ref, self(probe))
        self.precision = "bf16" if same else "fp32"
        return self.precision

    @torch.inference_mode()
    def __call__(self, x: Tensor) -> Tensor:
        x = x.to(self.device, non_blocking=True)
        ctx = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.precision == "bf16" else nullcontext()
        with ctx:
            return self.tok.encode(x)


@dataclass
class _ShardBuffer:
    index: int
    expected_batches: int
    batches: int = 0
    keys: list[str] = field(default_factory=list)
    augs: list[str] = field(default_factory=list)
    codes: list[Tensor] = field(default_factory=list)  # (B * copies, *token_shape) int64 on the encode device
    labels: list[int] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


class ShardEncoder:
    """Loaded tokenizer + dataset + shard metadata: encodes and writes given shards.

    :func:`encode_dataset` (one process per rank) and the Ray engine (one per model actor)
    both drive this class, so every engine writes the same shards. Arguments as in
    :func:`encode_dataset`.
    """

    def __init__(
        self,
        checkpoint: str | Path,
        input: str | Path,
        output_dir: str | Path,
        *,
        resolution: int | None = None,
        crop: str = "center",
        flip: bool = False,
        crops: int = 1,
        crop_scale: float = 1.125,
        batch_size: int = 64,
        shard_size: int = 4096,
        num_workers: int = 2,
        device: str | torch.device | None = None,
        precision: str = "auto",
        compression: str = "zstd",
        seed: int = 0,
    ) -> None:
        import mmtok
        from mmtok.data import collate_images, open_image_dataset

        if batch_size < 1 or shard_size < 1:
            raise ValueError(f"batch_size and shard_size must be >= 1, got {batch_size} and {shard_size}")
        if not 1 <= crops <= MAX_CROPS:
            raise ValueError(f"crops must be in [1, {MAX_CROPS}], got {crops}")
        if crops > 1 and crop_scale <= 1.0:
            raise ValueError(f"crop_scale must be > 1 for multi-crop, got {crop_scale}")
        ident = checkpoint_identity(checkpoint)
        if ident["modality"] != "image":
            raise NotImplementedError(f"encoding {ident['modality']} datasets is not supported yet (only image tokenizers)")
        self.device = dev = _pick_device(device)
        self.tok = tok = mmtok.load_tokenizer(checkpoint, device=dev, modality="image")
        res = int(resolution or getattr(tok.config, "image_size", 0) or 0)
        if res <= 0:
            raise ValueError("resolution is required: the tokenizer config has no image_size")
        load_res = res if crops == 1 else int(round(res * crop_scale))
        self.source = str(Path(input).resolve()) if Path(input).exists() else str(input)
        self.dataset = open_image_dataset(str(input), load_res, crop=crop, flip=False, seed=seed)
        self.num_items = n = len(self.dataset)
        self.num_shards = (n + shard_size - 1) // shard_size
        self.out = Path(output_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.res, self.crops, self.flip, self.augs = res, crops, flip, aug_names(crops, flip)
        self.batch_size, self.shard_size, self.num_workers, self.compression = batch_size, shard_size, num_workers, compression
        self._collate = collate_images

        # Probe batch: the first batch of shard 0 (the same on every rank and every rerun)
        # decides, on CUDA, whether bf16 is safe.
        self.enc = _Encoder(tok, dev, precision)
        probe = collate_images([self.dataset[i] for i in range(min(batch_size, n))])["image"]
        if probe is not None:
            probe = make_views(probe, res, crops, False)[0]
        chosen = self.enc.calibrate(probe)
        if hasattr(tok, "token_shape"):
            self.token_shape = list(tok.token_shape)
        elif probe is not None:
            self.token_shape = list(self.enc(probe).shape[1:])
        else:
            raise ValueError("cannot determine the token shape: the first batch of the input is unreadable")
        sizes = [int(tok.codebook_size)]
        self.meta = ShardMetadata(
            tokenizer=ident["tokenizer"], family=ident["family"], modality="image",
            config_hash=ident["config_hash"], checkpoint_hash=ident["checkpoint_hash"],
            codebook_sizes=sizes, token_shape=self.token_shape, codes_dtype=codes_dtype_for(sizes),
            preprocessing={"resolution": res, "crop": crop, "augmentations": self.augs,
                           "crop_scale": crop_scale if crops > 1 else None, "seed": seed},
            mmtok_version=mmtok.__version__, checkpoint_path=ident["checkpoint_path"], source=self.source,
            shard_size=shard_size, precision=chosen,
        )

    def batches_of(self, shard: int) -> list[list[int]]:
        """Dataset indices of shard ``shard``, cut into forward batches (never across shards)."""
        lo, hi = shard * self.shard_size, min((shard + 1) * self.shard_size, self.num_items)
        return [list(range(s, min(s + self.batch_size, hi))) for s in range(lo, hi, self.batch_size)]

    def is_finished(self, shard: int) -> bool:
        """True if the shard file exists (and matches this run); removes torn temp files of it."""
        path = self.out / shard_name(shard)
        for tmp in self.out.glob(f".{shard_name(shard)}.*.tmp"):  # torn write of a killed run
            tmp.unlink(missing_ok=True)
        if not path.is_file():
            return False
        doc = read_shard_meta(path)
        try:
            check_compatible(doc, self.meta.identity(), where=f"existing shard {path}")
            check_compatible(doc, {"shard_size": self.shard_size, "source": self.source}, where=f"existing shard {path}")
        except ShardMismatchError as e:
            raise ShardMismatchError(f"{e} Use an empty output directory for a different encode.") from None
        return True

    def _flush(self, buf: _ShardBuffer) -> None:
        codes = torch.cat(buf.codes).numpy() if buf.codes else np.zeros((0, *self.token_shape), np.int64)
        table = build_table(self.meta, buf.keys, list(codes), augs=buf.augs, labels=buf.labels, paths=buf.paths,
                            extra_meta={"shard_index": buf.index, "errors": buf.errors})
        write_shard(self.out / shard_name(buf.index), table, compression=self.compression)

    def encode_shards(self, shards: Sequence[int], result: EncodeResult, progress: bool = False) -> EncodeResult:
        """Encode and write ``shards`` (in order): workers decode images, a thread writes shards."""
        plan = {i: self.batches_of(i) for i in shards}
        batches = [b for i in shards for b in plan[i]]
        shard_of_batch = [i for i in shards for _ in plan[i]]
        buffers = {i: _ShardBuffer(i, len(plan[i])) for i in shards}
        loader = DataLoader(self.dataset, batch_sampler=batches, num_workers=self.num_workers, collate_fn=self._collate,
                            pin_memory=self.device.type == "cuda", persistent_workers=False,
                            prefetch_factor=4 if self.num_workers > 0 else None) if batches else []
        bar = None
        todo = sum(len(b) for b in batches)
        if progress and todo:
            from tqdm.auto import tqdm

            bar = tqdm(total=todo, unit="img", desc=f"encode {self.out.name}", dynamic_ncols=True)
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmtok-shard-writer")
        inflight: list[Future] = []
        try:
            for bi, batch in enumerate(loader):
                buf = buffers[shard_of_batch[bi]]
                buf.errors.extend({"path": p, "error": m, "shard": buf.index} for p, m in batch["errors"])
                if batch["image"] is not None:
                    views = make_views(batch["image"], self.res, self.crops, self.flip)
                    # Codes stay on the device until the shard is complete: no host sync per batch.
                    codes = torch.stack([self.enc(v) for v in views], dim=1)  # (B, copies, *token_shape)
                    B = codes.shape[0]
                    buf.codes.append(codes.reshape(B * len(views), *codes.shape[2:]))
                    buf.keys.extend(k for k in batch["key"] for _ in self.augs)
                    buf.augs.extend(self.augs * B)
                    buf.labels.extend(int(lab) for lab in batch["label"].tolist() for _ in self.augs)
                    buf.paths.extend(p for p in batch["path"] for _ in self.augs)
                buf.batches += 1
                if bar is not None:
                    bar.update(len(batches[bi]))
                if buf.batches == buf.expected_batches:
                    for f in inflight:  # surface write errors early; at most two shards in flight
                        if f.done() or len(inflight) >= 2:
                            f.result()
                    inflight = [f for f in inflight if not f.done()]
                    done = buffers.pop(buf.index)
                    done.codes = [torch.cat(done.codes).cpu()] if done.codes else []
                    inflight.append(writer.submit(self._flush, done))
                    result.shards_written.append(buf.index)
                    result.items_written += len(buf.keys)
                    result.errors.extend(buf.errors)
            for f in inflight:
                f.result()
        finally:
            writer.shutdown(wait=True)
            if bar is not None:
                bar.close()
        return result


def encode_dataset(
    checkpoint: str | Path,
    input: str | Path,
    output_dir: str | Path,
    *,
    resolution: int | None = None,
    crop: str = "center",
    flip: bool = False,
    crops: int = 1,
    crop_scale: float = 1.125,
    batch_size: int = 64,
    shard_size: int = 4096,
    num_workers: int = 2,
    device: str | torch.device | None = None,
    precision: str = "auto",
    rank: int | None = None,
    world_size: int | None = None,
    compression: str = "zstd",
    progress: bool = True,
    seed: int = 0,
) -> EncodeResult:
    """Encode every image of ``input`` with the tokenizer at ``checkpoint`` into ``output_dir`` shards.

    Args:
        checkpoint: a ``save_pretrained`` directory.
        input: dataset spec for :func:`mmtok.data.open_image_dataset` (folder, tar shards,
            ``synthetic:N``).
        resolution: input size (default: the tokenizer's ``image_size``).
        crop: how a source image is cropped to a square ("center" or "random").
        flip / crops / crop_scale: augmentation copies stored next to the original: a
            horizontal flip, and ``crops`` (<= 5) crops of ``resolution`` taken from the image
            resized to ``resolution * crop_scale`` (center, then the corners).
        batch_size: images per forward pass; shard_size: source items per shard.
        num_workers: image-decoding worker processes.
        precision: "fp32", "bf16", or "auto" (bf16 on CUDA when the codes of a probe batch
            equal the fp32 ones; fp32 on CPU).
        rank / world_size: this process's share (default: torch.distributed, then the
            RANK / WORLD_SIZE environment variables, then 0 / 1).
    Returns:
        :class:`EncodeResult` for this rank (plus the manifest if this rank finished last).
    """
    t0 = time.perf_counter()
    rank, world_size = _resolve_rank(rank, world_size)
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size), got {rank} of {world_size}")
    se = ShardEncoder(checkpoint, input, output_dir, resolution=resolution, crop=crop, flip=flip, crops=crops,
                      crop_scale=crop_scale, batch_size=batch_size, shard_size=shard_size, num_workers=num_workers,
                      device=device, precision=precision, compression=compression, seed=seed)
    result = EncodeResult(output_dir=se.out, rank=rank, world_size=world_size, num_shards=se.num_shards)
    pending = []
    for i in range(rank, se.num_shards, world_size):
        (result.shards_skipped if se.is_finished(i) else pending).append(i)
    se.encode_shards(pending, result, progress=progress and rank == 0)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        if rank == 0:
            result.manifest = write_manifest(se.out, se.num_shards)
    else:
        result.manifest = write_manifest(se.out, se.num_shards)  # None until every rank is done
    result.seconds = time.perf_counter() - t0
    return result


def finished_shards(output_dir: str | Path) -> list[int]:
    """Indices of the shards already written in ``output_dir``."""
    return sorted(int(m.group(1)) for p in Path(output_dir).iterdir() if (m := SHARD_RE.match(p.name)))


def read_errors(output_dir: str | Path) -> list[dict[str, Any]]:
    """Entries of ``errors.jsonl`` (skipped inputs with their error message)."""
    p = Path(output_dir) / "errors.jsonl"
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


__all__: Sequence[str] = (
    "EncodeResult", "ShardEncoder", "encode_dataset", "checkpoint_identity", "expected_metadata", "aug_names", "make_views",
    "finished_shards", "read_errors", "IDENTITY_FIELDS",
)
