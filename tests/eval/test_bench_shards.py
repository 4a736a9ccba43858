"""Smoke test of eval/bench_shards.py: paired rounds print one table with every pipeline variant."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

from mmtok.shards.encode import default_workers

SCRIPT = Path(__file__).resolve().parents[2] / "eval" / "bench_shards.py"


def test_bench_prints_side_by_side_table(capsys) -> None:
    spec = importlib.util.spec_from_file_location("bench_shards", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    threads = torch.get_num_threads()
    try:
        spec.loader.exec_module(mod)
        assert mod.main(["--device", "cpu", "--batch-size", "4", "--encode-batches", "3", "--shard-size", "8",
                         "--repeats", "2", "--skip", "read", "rss", "--also-workers", "1", "--per-item-decode",
                         "--threads", "1"]) == 0
    finally:
        sys.modules.pop(spec.name, None)
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert out.count("round ") == 2 and "per-item decoding" in out and "workers=1" in out
    for row in ("encode, model only (items/s)", "encode, full pipeline (items/s)", "pipeline / model-only "):
        assert row in out
    assert "median of 2 paired rounds" in out


def test_default_workers_by_device() -> None:
    assert default_workers("cpu") == 0  # the background decode thread
