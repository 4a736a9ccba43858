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
    rows = bench.bench_stream(tok, x, chunk_frames=4, repeats=1)
    assert len(rows) == 1  # eager only without compile
    s = rows[0]
    assert s["codes_equal"] and s["max_abs_err"] < 1e-4 and s["chunks"] == 5 and s["latency_ms"] == 10.0
    q = bench.quality(bench.reconstruct(tok, x, n_q=2), x, tok.sample_rate)
    assert set(q) >= {"mel", "stft", "si_sdr", "pesq", "stoi"} and q["mel"] > 0
    assert "| a |" in bench.table(["a"], [[1]])


def _row(model: str, batch: int, enc_s: float, dec_s: float, *, params: float = 70.0, kbps: float = 6.0,
         levels: int = 8, reference: bool = False) -> dict:
    m = lambda s: {"seconds": s, "rtf": batch / s, "peak_mb": 1.0, "repeats": 1}  # noqa: E731
    return {"model": model, "reference": reference, "params_m": params, "kbps": kbps, "levels": levels,
            "sample_rate": 24000, "frame_rate": 75.0, "device": "cpu", "precision": "fp32", "batch": batch,
            "seconds": 1.0, "encode": m(enc_s), "decode": m(dec_s)}


def test_reference_codecs_and_targets(bench: ModuleType, tmp_path: Path) -> None:
    # no baselines folder and (in the test env) no dac / encodec: a reason, not an exception
    for name in ("dac_24khz", "encodec_24khz"):
        ref = bench.build_reference(name, str(tmp_path / "absent"))
        if isinstance(ref, str):
            assert ref.startswith(("not installed", "import failed")) and "bench-deps" in ref
    assert "unknown" in bench.build_reference("nope", None)
    thr = [_row("rvq_codec_24k", 1, 0.5, 0.5), _row("istft_codec_24k_75hz", 1, 0.2, 0.2, kbps=0.9, levels=1),
           _row("dac_24khz", 1, 1.0, 1.0, reference=True), _row("dac_24khz_1q", 1, 1.0, 0.8, kbps=0.75, levels=1,
                                                               reference=True),
           {"model": "encodec_24khz", "reference": True, "missing": "not installed (pip ...)"}]
    assert bench.round_trip_rtf(thr[0]) == 1.0
    md = bench.render_throughput(thr)
    assert "dac_24khz (reference)" in md and "not installed" in md
    stream = [{"model": "m", "chunk_frames": 16, "rtf": 9.5, "rtf_wall": 9.0, "offline_rtf": 10.0,
               "overhead": 10 / 9.5 - 1, "overhead_wall": 10 / 9 - 1, "pairs": 3}]
    rows = [{"model": "t", "mode": "whole", "seconds": 60.0, "file_mb": 3.7,
             "encode": {"peak_mb": 300.0}, "decode": {"peak_mb": 300.0}}]
    for secs, peak in ((60.0, 50.0), (600.0, 55.0)):
        rows.append({"model": "t", "mode": "windowed", "batch_size": 1, "windows": int(secs // 10), "seconds": secs,
                     "file_mb": 3.7 * secs / 60, "encode": {"peak_mb": peak}, "decode": {"peak_mb": peak}})
    long_ = {"rows": rows, "short_seconds": 60.0, "long_seconds": 600.0, "batch_sizes": [1]}
    out = bench.render_targets({"throughput": thr, "streaming": stream, "long": long_})
    lines = out.splitlines()
    assert lines[0].startswith("- single-codebook") and lines[0].endswith(": met (1/1 comparisons)")
    assert "vs dac_24khz_1q" in lines[1] and "4.50x" in lines[1]  # 1 / 0.4 s vs 1 / 1.8 s
    rvq = next(i for i, s in enumerate(lines) if s.startswith("- RVQ"))
    assert lines[rvq].endswith(": met (1/1 comparisons)") and "= 2.00x" in lines[rvq + 1]
    assert any(s.startswith("- streaming") and s.endswith(": met (1/1 comparisons)") for s in lines)
    assert any(s.startswith("- peak RSS flat") and s.endswith(": met (1/1 comparisons)") for s in lines)
    rows[-1]["encode"]["peak_mb"] = 500.0  # grows with the file: not flat
    assert not bench.flatness(long_)[0]["flat"]
    assert "not measured" in bench.render_targets({})
