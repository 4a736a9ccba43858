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


def learn_bench_args(description: str, name: str, rows: list[str], default_rows: list[str], budget_min: float,
                     val: int, what: str) -> Any:
    """The command line shared by the ``bench_learn_*`` scripts (one trained row per child process)."""
    import argparse

    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget-min", type=float, default=budget_min, help="CPU minutes of training per row (1 thread)")
    p.add_argument("--val", type=int, default=val, help=f"held-out {what}")
    p.add_argument("--rows", nargs="*", default=default_rows, choices=rows)
    p.add_argument("--jobs", type=int, default=2, help="rows trained at once (one process, one thread each)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help=f"default: runs/{name}/<time>.json")
    p.add_argument("--_one", default=None, help=argparse.SUPPRESS)
    return p


def run_learn_rows(script: str, args: Any, rows: dict[str, dict[str, Any]], train_row: Any) -> dict[str, dict[str, Any]] | None:
    """Train ``args.rows`` in child processes of ``script`` (``args.jobs`` at a time, 1 thread each).

    In a child (``--_one``) prints ``train_row(spec, budget_s, val, seed)`` as JSON and returns
    None; in the parent returns row name -> that dict.
    """
    import json
    import subprocess
    import time

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args._one:  # child: one trained row as JSON on the last stdout line
        spec = json.loads(args._one)
        print(json.dumps(train_row(spec["spec"], spec["budget_s"], spec["val"], spec["seed"])))
        return None
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    pending = [(name, json.dumps({"spec": {**rows[name], "row": name}, "budget_s": args.budget_min * 60,
                                  "val": args.val, "seed": args.seed})) for name in args.rows]
    running: list[tuple[str, subprocess.Popen]] = []
    results: dict[str, dict[str, Any]] = {}
    while pending or running:
        while pending and len(running) < max(1, args.jobs):
            name, spec = pending.pop(0)
            print(f"training {name} ({args.budget_min:g} CPU min) ...", file=sys.stderr, flush=True)
            running.append((name, subprocess.Popen([sys.executable, script, "--_one", spec], env=env,
                                                   stdout=subprocess.PIPE, text=True)))
        for name, proc in list(running):
            if proc.poll() is None:
                continue
            running.remove((name, proc))
            out = proc.stdout.read() if proc.stdout else ""
            if proc.returncode != 0:
                raise SystemExit(f"row {name} failed (exit {proc.returncode})")
            results[name] = json.loads(out.strip().splitlines()[-1])
            print(f"  {name}: {results[name]['psnr']:.2f} dB, {results[name]['used_codes']} codes", file=sys.stderr)
        time.sleep(1.0)
    return results


def write_learn_json(args: Any, name: str, rows: list[dict[str, Any]], **facts: Any) -> None:
    import json
    import time
    from pathlib import Path

    path = Path(args.json or f"runs/{name}/{time.strftime('%Y%m%d-%H%M%S')}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"budget_min": args.budget_min, "val": args.val, **facts, "rows": rows}, indent=2))
    print(f"\nwrote {path}")


def set_threads() -> None:
    """One torch thread (intra- and inter-op) for a learning-bench row. The inter-op count can be
    set only once per process, before any parallel work: a second row in the same process (the
    slow tests run several) keeps the one already set."""
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass


def train_for_cpu_budget(tok: Any, data: Any, o: dict[str, Any], budget_s: float,
                         order: Any = None) -> tuple[Any, int, float]:
    """Train ``tok`` on ``data`` (items in index order) with L1 + L2 + its own loss until ``budget_s``
    seconds of process CPU time are spent; the cosine schedule is spread over that budget.

    ``o``: lr, betas, weight_decay, warmup_steps, min_lr_ratio, batch, l1, l2, ema (0 = off),
    optionally ``bf16`` (forward under CPU bf16 autocast, as ``precision: bf16`` trains).
    ``order``: item indices to read in turn (default 0, 1, 2, ...).
    Returns (the EMA model if any, else the model; steps; CPU seconds used).
    """
    import time

    from mmtok.training.ema import EMA
    from mmtok.training.schedule import lr_at

    tok.train()
    ema = EMA(tok, o["ema"], warmup=True) if o.get("ema") else None
    opt = torch.optim.AdamW(tok.parameters(), lr=o["lr"], betas=tuple(o["betas"]), weight_decay=o["weight_decay"])
    t0, step, total = time.process_time(), 0, 10_000
    while (used := time.process_time() - t0) < budget_s:
        w = o["warmup_steps"]
        s = step if step < w else w + int((total - w) * used / budget_s)
        for group in opt.param_groups:
            group["lr"] = lr_at(s, o["lr"], total, w, "cosine", o["min_lr_ratio"])
        at = [step * o["batch"] + i for i in range(o["batch"])]
        x = torch.stack([data[int(order[j]) if order is not None else j]["x"] for j in at])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(o.get("bf16"))):
            out = tok(x)
        recon = out.recon.float()
        loss = o["l1"] * (recon - x).abs().mean() + o["l2"] * (recon - x).pow(2).mean() + out.loss.float()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tok.parameters(), 1.0)
        opt.step()
        if ema is not None:
            ema.update(tok)
        step += 1
    return (ema.module if ema is not None else tok), step, time.process_time() - t0
