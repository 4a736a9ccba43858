"""Encode a dataset into token shards: the driver behind ``mmtok encode`` (one process per rank).

The driver opens what the encoder is fed; the :class:`~mmtok.shards.encoder.ShardEncoder`
turns batches into shards. :func:`open_job` loads the tokenizer, builds the modality's
augmentation views (``mmtok.data.views_for(tok.modality, ...)``), opens the dataset with
what the views need (``mmtok.data.open_dataset(spec, modality=tok.modality,
**views.load_preprocessing, ...)``) and plans the shards; :func:`encode_dataset` picks this
rank's shards, skips finished ones and feeds the rest as shard-tagged batches.

Assignment: the sorted input is cut into shards of ``shard_size`` source items; shard ``i``
holds items ``[i * shard_size, (i + 1) * shard_size)`` and belongs to rank
``i % world_size``. A shard's content therefore does not depend on the number of ranks,
ranks never coordinate, and each rank writes its own files. Every shard is written
atomically; a rerun skips shards already on disk, so a killed run resumed gives the same
shards as an uninterrupted one. The last rank to finish writes ``manifest.json`` and
``errors.jsonl`` (concurrent writers produce identical files).

Data loading runs in DataLoader worker processes (or, with ``num_workers=0``, in one
background thread that decodes the next batches while the model runs) and writing in a
background thread, so the model only waits on itself.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from mmtok.shards.encoder import EncodeResult, ShardEncoder
from mmtok.shards.format import ERRORS_NAME, IDENTITY_FIELDS, SHARD_RE, write_errors, write_manifest
from mmtok.shards.identity import checkpoint_identity, expected_metadata

# Named modality options of ``encode_dataset`` / ``mmtok encode`` and the dict each one
# joins: "preprocessing" overrides the tokenizer's ``preprocessing()``, "views" goes to
# ``mmtok.data.views_for``, "dataset" to ``mmtok.data.open_dataset``. Options of other
# modalities can always be given as those three dicts.
OPTION_GROUPS = {"resolution": "preprocessing", "crop": "dataset", "flip": "views", "crops": "views",
                 "crop_scale": "views", "segment": "dataset", "num_frames": "preprocessing", "fps": "dataset",
                 "frame_stride": "dataset", "clip": "dataset"}

# Clip datasets (opened with ``num_frames``) always record their timeline, defaults included, read
# from the dataset's ``describe()``: a rerun with another stride or rate is refused, and the
# rate is known to ``mmtok decode`` / ``mmtok inspect``.
TIMELINE_FIELDS = ("frame_stride", "fps")


class NoReadableItemsError(ValueError):
    """Every input of an encode was unreadable: nothing to write."""


def split_options(preprocessing: Mapping[str, Any] | None = None, view_options: Mapping[str, Any] | None = None,
                  dataset_options: Mapping[str, Any] | None = None, **named: Any) -> dict[str, dict[str, Any]]:
    """Named options (``OPTION_GROUPS``; None = the modality's default) merged into the three dicts."""
    groups = {"preprocessing": dict(preprocessing or {}), "views": dict(view_options or {}),
              "dataset": dict(dataset_options or {})}
    for k, v in named.items():
        if k not in OPTION_GROUPS:
            raise TypeError(f"unknown encode option {k!r}; named options are {sorted(OPTION_GROUPS)}, others go in "
                            "preprocessing= / view_options= / dataset_options=")
        if v is not None:
            groups[OPTION_GROUPS[k]][k] = v
    return groups


def pick_device(device: str | torch.device | None) -> torch.device:
    """``device``, else ``cuda:$LOCAL_RANK`` when CUDA is available, else the CPU."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
    return torch.device("cpu")


@dataclass
class EncodeJob:
    """A dataset cut into shards and the :class:`ShardEncoder` that writes them."""

    encoder: ShardEncoder
    dataset: Any
    batch_size: int
    shard_size: int
    num_workers: int = 0

    @property
    def num_items(self) -> int:
        return len(self.dataset)

    @property
    def num_shards(self) -> int:
        return -(-self.num_items // self.shard_size)

    def batches_of(self, shard: int) -> list[list[int]]:
        """Dataset indices of shard ``shard``, cut into forward batches (never across shards)."""
        lo, hi = shard * self.shard_size, min((shard + 1) * self.shard_size, self.num_items)
        return [list(range(s, min(s + self.batch_size, hi))) for s in range(lo, hi, self.batch_size)]

    def batches(self, shards: Sequence[int]) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(shard, batch)`` for every batch of ``shards`` in order.

        ``num_workers > 0``: decoded by DataLoader worker processes. ``num_workers == 0``: decoded
        by one background thread that keeps ``PREFETCH`` batches ready while the model runs
        (no process start, no copies between processes: the best choice when the model holds the
        CPU cores itself). Either way a dataset's ``__getitems__`` (batched decoding) is used when
        it has one, and batches are pinned for a CUDA device.
        """
        from mmtok.data import collate

        plan = [(i, b) for i in shards for b in self.batches_of(i)]
        if not plan:
            return iter(())
        pin = self.encoder.runner.device.type == "cuda"
        if self.num_workers == 0:
            return _prefetched(self.dataset, plan, pin=pin)
        loader = DataLoader(self.dataset, batch_sampler=[b for _, b in plan], num_workers=self.num_workers,
                            collate_fn=collate, pin_memory=pin,
                            persistent_workers=False, prefetch_factor=4)
        return ((i, batch) for (i, _), batch in zip(plan, loader))

    def run(self, shards: Sequence[int], result: EncodeResult, progress: bool = False) -> EncodeResult:
        """Encode and write ``shards`` (shards without a readable item are held, see ``ShardEncoder``)."""
        total = sum(min(self.shard_size, self.num_items - i * self.shard_size) for i in shards)
        return self.encoder.encode_shards(self.batches(shards), result, total=total, progress=progress)


PREFETCH = 4  # batches the decode thread keeps ready (num_workers=0)


def default_workers(device: str | torch.device | None = None) -> int:
    """Decode workers for an encode on ``device`` (None: the one :func:`pick_device` picks).

    CUDA: up to 8 worker processes (the CPU cores only decode). CPU: 0, the background decode
    thread: the model holds the cores itself, and a worker process adds its start-up and the
    hand-over of every batch between processes. Measured with ``eval/bench_shards.py`` on a quiet
    2-core machine (``titok_t32_fsq``, batch 32, medians of 5 paired rounds, two runs): 92.8% and
    95.9% of model-only throughput with the thread, 81.6% and 97.6% with one worker process.
    """
    if pick_device(device).type == "cuda":
        return max(1, min(8, (os.cpu_count() or 1) - 1))
    return 0


def fetch_batch(dataset: Any, indices: Sequence[int], pin: bool = False) -> dict[str, Any]:
    """Decode and collate ``dataset`` items ``indices`` (batched through ``__getitems__`` when the dataset has it)."""
    from mmtok.data import collate

    getitems = getattr(dataset, "__getitems__", None)
    batch = collate(getitems(list(indices)) if getitems is not None else [dataset[i] for i in indices])
    if pin and batch["x"] is not None:
        batch["x"] = batch["x"].pin_memory()
    return batch


def _prefetched(dataset: Any, plan: Sequence[tuple[int, list[int]]], pin: bool = False,
                depth: int = PREFETCH) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(shard, batch)`` of ``plan`` in order, decoded ``depth`` batches ahead by one background thread."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmtok-decode")
    pending: deque = deque()
    todo = iter(plan)
    try:
        for shard, idx in todo:
            pending.append((shard, pool.submit(fetch_batch, dataset, idx, pin)))
            if len(pending) >= depth:
                break
        while pending:
            shard, fut = pending.popleft()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append((nxt[0], pool.submit(fetch_batch, dataset, nxt[1], pin)))
            yield shard, fut.result()
    finally:
        for _, fut in pending:
            fut.cancel()
        pool.shutdown(wait=True)


def open_job(
    checkpoint: str | Path,
    input: str | Path,
    output_dir: str | Path,
    *,
    batch_size: int = 64,
    shard_size: int = 4096,
    num_workers: int | None = None,
    device: str | torch.device | None = None,
    precision: str = "auto",
    compression: str = "zstd",
    seed: int = 0,
    preprocessing: Mapping[str, Any] | None = None,
    view_options: Mapping[str, Any] | None = None,
    dataset_options: Mapping[str, Any] | None = None,
    **named: Any,
) -> EncodeJob:
    """Load the tokenizer, build its views, open the dataset, make the :class:`EncodeJob`.

    Args:
        checkpoint: a ``save_pretrained`` directory.
        input: dataset spec for ``mmtok.data.open_dataset`` in the tokenizer's modality
            (image: folder, tar shards, ``synthetic:N``).
        output_dir: the shard folder.
        batch_size: items per forward pass; shard_size: source items per shard.
        num_workers: decoding worker processes; 0: one background decode thread in this process;
            None: :func:`default_workers` for the device.
        device: default ``cuda:$LOCAL_RANK`` when CUDA is available, else the CPU.
        precision: "fp32", "bf16", or "auto" (bf16 on CUDA when the codes of a probe batch
            equal the fp32 ones; fp32 on CPU).
        compression: Parquet codec.
        seed: seed of random dataset transforms (recorded).
        preprocessing: overrides of ``tok.preprocessing()`` (image: ``{"resolution": 256}``).
        view_options: augmentation copies, for ``mmtok.data.views_for`` (image: ``flip``,
            ``crops`` (<= 5: center, then corners), ``crop_scale``).
        dataset_options: more ``open_dataset`` options (image: ``crop`` "center" / "random").
        **named: options by name (image: ``resolution``, ``crop``, ``flip``, ``crops``, ``crop_scale``;
            audio: ``segment`` ("chunks", the default: every file in consecutive items; "start");
            video: ``resolution``, ``num_frames``, ``crop``, ``flip``, ``fps`` (resample every file's
            timeline to this rate), ``frame_stride``, ``clip`` ("chunks", the default: every file in
            consecutive clips keyed ``<file>@<start_frame>``; "start"; "random");
            see ``OPTION_GROUPS``), None meaning the default.

    Video encodes record each clip's frame rate in the ``fps`` column and the timeline
    (``frame_stride``, ``fps``) in ``preprocessing`` (see :mod:`mmtok.shards.format`).
    """
    import mmtok
    from mmtok.data import collate, open_dataset, views_for

    if batch_size < 1 or shard_size < 1:
        raise ValueError(f"batch_size and shard_size must be >= 1, got {batch_size} and {shard_size}")
    opts = split_options(preprocessing, view_options, dataset_options, **named)
    if num_workers is None:
        num_workers = default_workers(device)
    ident = checkpoint_identity(checkpoint)
    tok = mmtok.load_tokenizer(checkpoint, device=pick_device(device))
    prep = {**tok.preprocessing(), **opts["preprocessing"]}
    try:
        views = views_for(tok.modality, **prep, **opts["views"])
        load = {**views.load_preprocessing, **opts["dataset"]}
        dataset = open_dataset(str(input), modality=tok.modality, **load, seed=seed)
    except TypeError as e:  # an option of another modality (e.g. --segment for an image tokenizer)
        m = re.search(r"unexpected keyword argument '(\w+)'", str(e))
        if m is None:
            raise
        raise ValueError(f"option {m.group(1)!r} does not apply to {tok.modality} data ({e})") from None
    probe = None
    if precision == "auto" and tok.device.type == "cuda":
        # The first batch of the dataset (the same on every rank and every rerun) decides whether bf16 is safe.
        x = collate([dataset[i] for i in range(min(batch_size, len(dataset)))])["x"]
        probe = views.views(x)[0] if x is not None else None
    # Recorded: the tokenizer's preprocessing, what the views add to it (audio: segment="chunks"), dataset options.
    added = {k: v for k, v in views.load_preprocessing.items() if k not in prep}
    recorded = {**prep, **added, **opts["dataset"], "seed": seed}
    clips = "num_frames" in load  # clips of a video timeline: record the timeline and each clip's rate
    if clips and callable(getattr(dataset, "describe", None)):
        facts = dataset.describe()
        recorded.update({k: facts[k] for k in TIMELINE_FIELDS if k in facts})
    encoder = ShardEncoder(
        tok, views, output_dir, identity=ident, preprocessing=recorded,
        source=str(Path(input).resolve()) if Path(input).exists() else str(input), shard_size=shard_size,
        precision=precision, probe=probe, compression=compression,
        store_length="segment_length" in load,  # fixed-length segments of longer signals (audio): keep valid lengths
        store_fps=clips,
    )
    return EncodeJob(encoder, dataset, batch_size, shard_size, num_workers)


def encode_dataset(
    checkpoint: str | Path,
    input: str | Path,
    output_dir: str | Path,
    *,
    rank: int | None = None,
    world_size: int | None = None,
    progress: bool = True,
    **options: Any,
) -> EncodeResult:
    """Encode every item of ``input`` with the tokenizer at ``checkpoint`` into ``output_dir`` shards.

    ``rank`` / ``world_size``: this process's share (default: ``mmtok.distributed.rank_world()``);
    ``progress``: a progress bar on rank 0. ``options`` are those of :func:`open_job`
    (batch_size, shard_size, num_workers, device, precision, compression, seed, and the
    modality options: ``preprocessing`` / ``view_options`` / ``dataset_options`` dicts or
    the named image options ``resolution``, ``crop``, ``flip``, ``crops``, ``crop_scale``, the
    audio option ``segment`` and the video options ``num_frames``, ``fps``, ``frame_stride``,
    ``clip``). Audio files are cut into consecutive chunks by default (keys ``<file>@<offset>``;
    each row's valid sample count in the ``length`` column); so are videos (keys
    ``<file>@<start_frame>``; each clip's frame rate in the ``fps`` column).

    Returns:
        :class:`EncodeResult` for this rank (plus the manifest if this rank finished last).
    Raises:
        NoReadableItemsError: every input was unreadable (one rank: no shard is written,
            ``errors.jsonl`` lists them; several ranks: raised by the manifest writer).
    """
    from mmtok.distributed import barrier, is_initialized, rank_world

    t0 = time.perf_counter()
    if rank is None or world_size is None:
        rank, world_size = rank_world()
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size), got {rank} of {world_size}")
    job = open_job(checkpoint, input, output_dir, **options)
    se = job.encoder
    result = EncodeResult(output_dir=se.out, rank=rank, world_size=world_size, num_shards=job.num_shards)
    pending = []
    for i in range(rank, job.num_shards, world_size):
        (pending if se.existing(i) is None else result.shards_skipped).append(i)
    job.run(pending, result, progress=progress and rank == 0)
    if world_size == 1 and not result.shards_skipped and result.items_written == 0:
        write_errors(se.out, result.errors)  # the whole dataset was seen: write no empty shard
        raise no_items_error(se.out, len(result.errors), input)
    se.write_held(result)
    result.shards_written.sort()
    if is_initialized():
        barrier()
        result.manifest = write_manifest(se.out, job.num_shards) if rank == 0 else None
    else:
        result.manifest = write_manifest(se.out, job.num_shards)  # None until every rank is done
    if result.manifest is not None and result.manifest["num_items"] == 0:
        raise no_items_error(se.out, result.manifest["num_errors"], input)
    result.seconds = time.perf_counter() - t0
    return result


def no_items_error(output_dir: str | Path, num_skipped: int, input: str | Path) -> NoReadableItemsError:
    """The error for an encode whose inputs were all unreadable: how many, and where they are listed."""
    return NoReadableItemsError(f"no readable item in {input}: all {num_skipped} inputs were skipped as unreadable; "
                               f"they are listed in {Path(output_dir) / ERRORS_NAME}")


def finished_shards(output_dir: str | Path) -> list[int]:
    """Indices of the shards already written in ``output_dir``."""
    return sorted(int(m.group(1)) for p in Path(output_dir).iterdir() if (m := SHARD_RE.match(p.name)))


def read_errors(output_dir: str | Path) -> list[dict[str, Any]]:
    """Entries of ``errors.jsonl`` (skipped inputs with their error message)."""
    p = Path(output_dir) / ERRORS_NAME
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


__all__: Sequence[str] = (
    "EncodeResult", "EncodeJob", "ShardEncoder", "default_workers", "NoReadableItemsError", "OPTION_GROUPS", "encode_dataset", "open_job",
    "split_options", "TIMELINE_FIELDS", "checkpoint_identity", "expected_metadata", "finished_shards", "read_errors",
    "IDENTITY_FIELDS",
)
