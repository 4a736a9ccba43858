"""Process-group facts in one place: rank, world size, main process, barrier.

Every room asks here instead of probing ``torch.distributed`` itself. Outside an
initialised process group the launcher's ``RANK`` / ``WORLD_SIZE`` environment variables
are used (so a ``torchrun`` job that never initialises a group still splits its work).
"""

from __future__ import annotations

import os

import torch.distributed as dist


def is_initialized() -> bool:
    """True inside an initialised ``torch.distributed`` process group."""
    return dist.is_available() and dist.is_initialized()


def rank_world(env: bool = True) -> tuple[int, int]:
    """(rank, world size): the process group's, else (with ``env``) ``RANK`` / ``WORLD_SIZE``, else (0, 1)."""
    if is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if env:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    return 0, 1


def is_distributed() -> bool:
    """True when collectives are needed: an initialised group of more than one process."""
    return is_initialized() and dist.get_world_size() > 1


def launched_world_size() -> int:
    """Number of processes the launcher started (``WORLD_SIZE``; 1 for a plain ``python``)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def barrier() -> None:
    """Wait for every rank (no-op outside a multi-process group)."""
    if is_distributed():
        dist.barrier()
