"""Smoke test of eval/bench_audio.py: the trivial mu-law baselines and one measurement each."""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

import mmtok

SCRIPT = Path(__file__).resolve().parents[2] / "eval" / "bench_audio.py"


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("bench_audio", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop(spec.name, None)


def test_baseline_rate_matches_bitrate(bench: ModuleType) -> None:
    assert bench.baseline_rate(3.2, 4) == 800 and bench.baseline_rate(3.2, 8) == 400
    assert bench.baseline_rate(0.8, 4) * 4 == 800
    with pytest.raises(ValueError):
        bench.baseline_rate(0.001, 8)


@pytest.mark.parametrize("bits", [4, 8])
def test_mulaw_baseline_shape_range_and_rate(bench: ModuleType, bits: int) -> None:
    sr, s = 16000, 3200  # 0.2 s
    t = torch.arange(s) / sr
    x = torch.stack([0.9 * torch.sin(2 * math.pi * 100 * t), 0.5 * torch.sin(2 * math.pi * 3000 * t)])[:, None]
    y = bench.mulaw_baseline(x, sr, 3.2, bits)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert y.abs().max() <= 1
    # 100 Hz survives (below r / 2 = 400 or 200 Hz), 3 kHz is filtered out
    assert torch.corrcoef(torch.stack([y[0, 0, 800:-800], x[0, 0, 800:-800]]))[0, 1] > 0.9
    assert y[1].abs().max() < 0.05
    # a higher rate keeps a 600 Hz partial that a lower one filters out
    z = (0.45 * torch.sin(2 * math.pi * 100 * t) + 0.45 * torch.sin(2 * math.pi * 600 * t))[None, None]
    lo, hi = bench.mulaw_baseline(z, sr, 1.6 * bits / 4, bits), bench.mulaw_baseline(z, sr, 6.4 * bits / 4, bits)
    assert (hi - z).pow(2).mean() < 0.5 * (lo - z).pow(2).mean()


def test_measurements_on_a_tiny_codec(bench: ModuleType) -> None:
    torch.manual_seed(0)
    tok = mmtok.create_tokenizer("rvq_codec_tiny_causal").eval()
    row = bench.bench_codec(tok, batch=1, seconds=0.2, device=torch.device("cpu"), min_time=0.0, min_repeats=1)
    for key in ("encode", "decode"):
        assert row[key]["rtf"] > 0 and row[key]["repeats"] == 1 and math.isfinite(row[key]["peak_mb"])
    x = bench.clips(1, 0.2, tok.sample_rate)
    assert x.shape == (1, 1, 3200) and x.abs().max() <= 1
    s = bench.bench_stream(tok, x, chunk_frames=4)
    assert s["codes_equal"] and s["max_abs_err"] < 1e-4 and s["chunks"] == 5 and s["latency_ms"] == 10.0
    q = bench.quality(bench.reconstruct(tok, x, n_q=2), x, tok.sample_rate)
    assert set(q) >= {"mel", "stft", "si_sdr", "pesq", "stoi"} and q["mel"] > 0
    assert "| a |" in bench.table(["a"], [[1]])
