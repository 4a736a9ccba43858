"""Collation, deterministic per-rank sampling and a resumable batch stream."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch protocol items of any modality; unreadable items (``x is None``) are dropped and reported.

    Returns ``{"x": (B, ...) or None when every item failed, "key": [...], "path": [...],
    "label": LongTensor (B,), "meta": [dict, ...], "errors": [(path, message), ...]}``.
    """
    good = [it for it in items if it.get("x") is not None]
    errors = [(str(it.get("path", it.get("key", "?"))), str(it.get("error", "unreadable"))) for it in items if it.get("x") is None]
    if not good:
        return {"x": None, "key": [], "path": [], "label": torch.zeros(0, dtype=torch.long), "meta": [], "errors": errors}
    shapes = {tuple(it["x"].shape) for it in good}
    if len(shapes) != 1:
        raise ValueError(f"cannot batch items of different shapes {sorted(shapes)}; set a fixed size in the preprocessing")
    return {
        "x": torch.stack([it["x"] for it in good]),
        "key": [it["key"] for it in good],
        "path": [it["path"] for it in good],
        "label": torch.tensor([int(it.get("label", 0)) for it in good], dtype=torch.long),
        "meta": [dict(it.get("meta") or {}) for it in good],
        "errors": errors,
    }


class ShardedSampler(Sampler[int]):
    """Indices of one rank: an epoch-seeded permutation (or identity), split round-robin.

    The permutation depends only on ``(seed, epoch)``, so every rank agrees without
    communication and a resumed run sees the same order. ``start`` skips the first
    ``start`` indices of this rank (a mid-epoch resume reads nothing it skips).
    Without ``drop_last`` the list is padded by wrapping around so all ranks get the same
    number of items.
    """

    def __init__(self, num_items: int, shuffle: bool = False, seed: int = 0, rank: int = 0, world_size: int = 1, drop_last: bool = False) -> None:
        if num_items <= 0:
            raise ValueError("cannot sample from an empty dataset")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} out of range for world_size {world_size}")
        self.num_items, self.shuffle, self.seed, self.rank, self.world_size, self.drop_last = num_items, shuffle, seed, rank, world_size, drop_last
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = int(epoch), int(start)

    def rank_indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(hash((int(self.seed), int(self.epoch))) & 0x7FFF_FFFF_FFFF_FFFF)
            order = torch.randperm(self.num_items, generator=g).tolist()
        else:
            order = list(range(self.num_items))
        if self.drop_last:
            order = order[: len(order) - len(order) % self.world_size]
        else:
            pad = (-len(order)) % self.world_size
            order = order + (order * (pad // len(order) + 1))[:pad]
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.rank_indices()[self.start :])

    def __len__(self) -> int:
        return max(0, len(self.rank_indices()) - self.start)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int = 0,
    shuffle: bool = False,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = False,
    epoch: int = 0,
    start_batch: int = 0,
    pin_memory: bool | None = None,
) -> DataLoader:
    """DataLoader with ``collate``, a ``ShardedSampler`` and its own RNG.

    The loader never draws from the global torch RNG (it owns a generator seeded from
    ``seed`` and ``rank``), so model randomness is unaffected by data loading and a
    resumed run is exact. ``epoch`` / ``start_batch`` position it (see ``BatchStream``).
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    sampler = ShardedSampler(len(dataset), shuffle, seed, rank, world_size, drop_last)
    sampler.set_epoch(epoch, start_batch * batch_size)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    gen = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(rank) * 7919 + int(epoch)) & 0x7FFF_FFFF)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        drop_last=drop_last,
        generator=gen,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        persistent_workers=False,
        prefetch_factor=4 if num_workers > 0 else None,
    )


class BatchStream:
    """Endless batches over epochs with a saveable position ``(epoch, batch)``.

    ``state_dict()`` after consuming a batch, then ``BatchStream(..., state)`` later,
    continues with exactly the next batch (no data is read to skip ahead).
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        num_workers: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
        state: dict[str, int] | None = None,
    ) -> None:
        self.dataset, self.batch_size, self.num_workers = dataset, batch_size, num_workers
        self.shuffle, self.seed, self.rank, self.world_size, self.drop_last = shuffle, seed, rank, world_size, drop_last
        self.epoch = int((state or {}).get("epoch", 0))
        self.batch = int((state or {}).get("batch", 0))
        per_rank = len(dataset) // world_size if drop_last else -(-len(dataset) // world_size)
        self.batches_per_epoch = per_rank // batch_size if drop_last else -(-per_rank // batch_size)
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"dataset of {len(dataset)} items gives no full batch of {batch_size} per rank on {world_size} rank(s)"
            )
        self._it: Iterator[dict[str, Any]] | None = None

    def _open(self) -> None:
        loader = make_loader(self.dataset, self.batch_size, self.num_workers, self.shuffle, self.seed, self.rank,
                             self.world_size, self.drop_last, epoch=self.epoch, start_batch=self.batch)
        self._it = iter(loader)

    def __iter__(self) -> "BatchStream":
        return self

    def __next__(self) -> dict[str, Any]:
        while True:
            if self._it is None:
                self._open()
            try:
                out = next(self._it)  # type: ignore[arg-type]
            except StopIteration:
                self.epoch, self.batch, self._it = self.epoch + 1, 0, None
                continue
            self.batch += 1
            return out

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch": self.batch}
