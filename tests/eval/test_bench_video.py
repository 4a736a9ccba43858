"""Smoke test of eval/bench_video.py: its helpers on causal3d_tiny, one measurement each."""

from __future__ import annotations

import importlib.util
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "eval" / "bench_video.py"


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("bench_video", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(mod)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convs: extra threads only contend with other jobs
    yield mod
    torch.set_num_threads(threads)
    sys.modules.pop(spec.name, None)


def test_clip_and_frame_folding(bench: ModuleType) -> None:
    x = bench.clip(5, 16)
    assert x.shape == (1, 3, 5, 16, 16) and x.dtype == torch.float32 and x.abs().max() <= 1
    y = bench.frames_to_batch(torch.cat([x, -x]))
    assert y.shape == (10, 3, 16, 16)
    assert torch.equal(y[3], x[0, :, 3]) and torch.equal(y[5 + 2], -x[0, :, 2])


def test_baseline_matches_the_3d_widths(bench: ModuleType) -> None:
    tok = bench.Spec("causal3d_tiny").build()
    base = bench.build_baseline(tok)
    c, b = tok.config, base.config
    assert (b.base_channels, tuple(b.channel_mult), b.num_res_blocks, b.z_channels) == (
        c.base_channels, tuple(c.channel_mult), c.num_res_blocks, c.z_channels)
    assert base.codebook_sizes == tok.codebook_sizes and base.factor == tok.spatial_factor
    lfq = bench.Spec("causal3d_tiny", {"quantizer": {"type": "lfq", "codebook_size": 256}}).build()
    assert bench.conv_key(tok) == bench.conv_key(lfq)  # one 2D baseline per conv stack
    assert bench.Spec("causal3d_4x8x8_fsq", {"base_channels": 32}).label == "causal3d_4x8x8_fsq (base_channels=32)"


def test_measurements_and_ratio_on_the_tiny_model(bench: ModuleType) -> None:
    cpu = torch.device("cpu")
    tok = bench.Spec("causal3d_tiny").build()
    x = bench.clip(9, 32)
    row, codes = bench.bench_model(tok, x, cpu, timing=(0.0, 1, 1))
    assert codes.shape == (1, 3, 8, 8) and row["frames"] == 9 and row["size"] == 32
    for key in ("encode", "decode"):
        assert row[key]["fps"] > 0 and row[key]["repeats"] == 1 and math.isfinite(row[key]["peak_mb"])
    stats = bench.clip_stats(tok, codes, 9, 9)
    assert stats["tokens"] == 192 and stats["bits"] == pytest.approx(192 * math.log2(1000))
    base = bench.build_baseline(tok)
    brow, bcodes = bench.bench_model(base, bench.frames_to_batch(x[:, :, :3]), cpu, timing=(0.0, 1, 1))
    assert bcodes.shape == (3, 8, 8) and brow["frames"] == 3
    assert bench.clip_stats(base, bcodes, 9, 3)["tokens"] == 9 * 64  # per-frame grids of the whole clip
    # 4x the pixels: 4 x SIZE_SLACK the time
    assert bench.estimate_seconds(row, 64) == pytest.approx(
        4 * bench.SIZE_SLACK * (row["encode"]["seconds"] + row["decode"]["seconds"]))
    key, info = bench.conv_key(tok), {"params_m": 0.2, "compression": "4x4x4", **stats}
    rows = [{"model": "3d", "kind": "3D", "key": key, **info, **row},
            {"model": "2d", "kind": "2D", "key": key, **info, **brow},
            {"model": "x", "kind": "3D", "key": None, "size": 64, "skipped": "skipped: est."}]
    enc, dec = bench.ratios(rows)[0]
    assert enc == pytest.approx(row["encode"]["fps"] / brow["encode"]["fps"])
    text = bench.render_throughput(rows)
    assert text.count("\n") == 4 and "skipped: est." in text


def test_budget_skips_a_row_that_cannot_fit(bench: ModuleType) -> None:
    spec = bench.Spec("causal3d_tiny")
    done = [{"model": spec.label, "kind": "3D", "key": None, "size": 32, "device": "cpu", "precision": "fp32",
             "encode": {"seconds": 100.0, "repeats": 1}, "decode": {"seconds": 100.0, "repeats": 1}}]
    plan = bench.Plan([(spec, 64)])
    rows = bench.section_throughput(plan, [torch.device("cpu")], 0.0, deadline=time.perf_counter() + 5, done=done)
    assert len(rows) == 1 and rows[0]["skipped"].startswith("skipped: est. 1000 s")


def test_windows_and_tiling_on_the_tiny_model(bench: ModuleType) -> None:
    tok = bench.Spec("causal3d_tiny").build()
    rows = bench.bench_windows(tok, bench.clip(17, 32), torch.device("cpu"), windows=(8, 16), decode=True)
    assert [(r["op"], r["windows"]) for r in rows] == [("encode", 1), ("encode", 2), ("encode", 1),
                                                         ("decode", 1), ("decode", 2), ("decode", 1)]
    assert all(r["differing"] == 0 for r in rows if r["op"] == "encode")
    assert all(r["max_err"] < 1e-4 for r in rows if r["op"] == "decode")
    assert "| yes |" in bench.render_windows([{"model": "m", **r} for r in rows])
    tiles = bench.section_tiling([(bench.Spec("causal3d_tiny"), 32, 1)], torch.device("cpu"))
    assert tiles[0]["tiles"] == [3, 3] and tiles[0]["size"] == 64
    assert "3x3" in bench.render_tiling(tiles)


def test_side_by_side_row_on_the_tiny_model(bench: ModuleType) -> None:
    row = bench.side_by_side(bench.Spec("causal3d_tiny"), 32, 5, 1, torch.device("cpu"))
    assert row["rounds"] == 1 and row["frames"] == 5 and row["ratio_enc"] > 0 and row["ratio_dec"] > 0
    assert row["flops_enc_3d"] > row["flops_enc_2d"] > 0 and row["flops_dec_3d"] > row["flops_dec_2d"] > 0
    text = bench.render_side_by_side([row])
    assert text.count("\n") == 2 and "causal3d_tiny" in text
