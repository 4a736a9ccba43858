"""Measurement helpers shared by the benchmarks in ``eval/``: peak memory (CPU RSS high-water
mark or CUDA max allocated) around a call, device synchronisation, glibc heap settings."""

from __future__ import annotations

import contextlib
import os
import sys
import ctypes
import gc
import re
import threading
from collections.abc import Iterator
from typing import Any

import torch

MB = 2**20


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)

def _read_hwm() -> int | None:
    """Peak RSS (VmHWM) in bytes, or None off Linux."""
    try:
        with open("/proc/self/status") as f:
            m = re.search(r"VmHWM:\s+(\d+) kB", f.read())
        return int(m.group(1)) * 1024 if m else None
    except OSError:
        return None

def _reset_hwm() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _read_hwm() is not None
    except OSError:
        return False

def set_mmap_threshold(nbytes: int) -> bool:
    """glibc: serve allocations >= ``nbytes`` by mmap and stop the threshold from rising
    (its default dynamic threshold keeps freed activations of up to 32 MB in the heap, which
    shows up as RSS that grows with the number of windows). False when not glibc."""
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(-3, int(nbytes)))  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False

def release_memory() -> None:
    """Collect garbage and hand free heap pages back to the OS, so a delta of RSS is the call's."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)

@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[dict[str, float]]:
    """Yields a dict whose ``"mb"`` is, after the block, the peak memory it added: CUDA max
    allocated, or peak RSS (VmHWM, or a 2 ms polling thread) above the RSS before it."""
    out: dict[str, float] = {}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        yield out
        torch.cuda.synchronize(device)
        out["mb"] = (torch.cuda.max_memory_allocated(device) - base) / MB
        return
    release_memory()
    base = _rss()
    if _reset_hwm():
        yield out
        out["mb"] = (max(_read_hwm() or 0, _rss()) - base) / MB
        return
    peak, stop = [base], threading.Event()

    def poll() -> None:
        while not stop.wait(0.002):
            peak[0] = max(peak[0], _rss())

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    try:
        yield out
    finally:
        stop.set()
        t.join()
        out["mb"] = (max(peak[0], _rss()) - base) / MB

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def table(head: list[str], body: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    return "\n".join(lines)

def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)

def load_average() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None
