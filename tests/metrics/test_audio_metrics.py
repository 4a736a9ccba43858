"""Audio metrics: SI-SDR against torchmetrics, identity / noise behaviour of every metric, PESQ / STOI
failures, and the AudioSuite end to end through evaluate_reconstruction."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass

import pytest
import soundfile as sf
import torch
from torch import nn

from mmtok.data import SyntheticAudio
from mmtok.metrics import evaluate_reconstruction, metric_suite
from mmtok.metrics.audio.quality import mel_distance, pesq_wb, si_sdr, stft_distance, stoi
from mmtok.metrics.audio.suite import AudioSuite
from mmtok.metrics.protocol import protocol_fingerprint
from mmtok.tokenizer import Tokenizer, check_range

SR = 16000


def speechlike(n: int, seconds: float = 1.0, sr: int = SR) -> torch.Tensor:
    """(n, 1, S) voiced 'syllables': harmonic series with vibrato under a 4 Hz envelope."""
    t = torch.arange(int(seconds * sr), dtype=torch.float64) / sr
    out = []
    for i in range(n):
        f0 = 110 + 25 * i
        phase = 2 * math.pi * torch.cumsum(f0 * (1 + 0.03 * torch.sin(2 * math.pi * 5 * t)), 0) / sr
        x = sum(torch.sin(h * phase) / h for h in range(1, 30) if h * f0 < 0.45 * sr)
        x = x * (0.5 - 0.5 * torch.cos(2 * math.pi * 4 * t)) ** 2
        out.append(0.5 * x / x.abs().max())
    return torch.stack(out)[:, None].float()


def _noisy(x: torch.Tensor, level: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return (x + level * torch.randn(x.shape, generator=g)).clamp(-1, 1)


def test_si_sdr_matches_torchmetrics() -> None:
    from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio

    g = torch.Generator().manual_seed(0)
    ref = torch.randn(3, 2, 1000, generator=g, dtype=torch.float64)
    est = ref * 0.7 + 0.3 * torch.randn(3, 2, 1000, generator=g, dtype=torch.float64) + 0.1
    expect = scale_invariant_signal_distortion_ratio(est, ref, zero_mean=True).mean(-1)
    torch.testing.assert_close(si_sdr(est, ref), expect, atol=1e-4, rtol=0)
    torch.testing.assert_close(si_sdr(3.0 * est, ref), si_sdr(est, ref))  # scale invariant


def test_identical_signals() -> None:
    x = speechlike(2)
    assert torch.all(mel_distance(x, x, SR) == 0) and torch.all(stft_distance(x, x) == 0)
    assert torch.all(si_sdr(x, x) > 100)
    assert torch.all(pesq_wb(x, x, SR) > 4.4)
    assert torch.all(stoi(x, x, SR) > 0.99)


def test_every_metric_worsens_with_noise() -> None:
    x = speechlike(2)
    rows = []
    for level in (0.0, 1e-3, 3e-3, 1e-2):
        y = _noisy(x, level)
        rows.append([mel_distance(y, x, SR).mean(), stft_distance(y, x).mean(), -si_sdr(y, x).mean(),
                     -pesq_wb(y, x, SR).mean(), -stoi(y, x, SR).mean()])
    for m in range(5):
        col = [float(r[m]) for r in rows]
        assert all(a < b for a, b in zip(col, col[1:])), (m, col)


def test_pesq_and_stoi_return_nan_for_unscorable_clips() -> None:
    silent = torch.zeros(2, 1, SR)
    assert torch.isnan(pesq_wb(silent, silent, SR)).all() and torch.isnan(stoi(silent, silent, SR)).all()
    short = speechlike(1, seconds=0.1)
    assert torch.isnan(pesq_wb(short, short, SR)).all() and torch.isnan(stoi(short, short, SR)).all()
    x = speechlike(1, sr=24000)  # other rates: PESQ resamples to 16 kHz, STOI to 10 kHz
    assert pesq_wb(x, x, 24000).item() > 4.4 and stoi(x, x, 24000).item() > 0.99


@dataclass
class FrameCodecConfig:
    sample_rate: int = SR
    segment_length: int = 8000
    frame: int = 2


class FrameCodec(Tokenizer):
    """(B, 1, S) -> (B, S / frame) codes: each frame's mean on 256 levels; decode repeats it."""

    config_class = FrameCodecConfig
    modality = "audio"

    def __init__(self, config: FrameCodecConfig) -> None:
        super().__init__(config)
        self.anchor = nn.Parameter(torch.zeros(()))

    @property
    def token_shape(self):
        return (self.config.segment_length // self.config.frame,)

    @property
    def codebook_sizes(self):
        return (256,)

    def preprocessing(self):
        return {"sample_rate": self.config.sample_rate, "channels": 1, "segment_length": self.config.segment_length}

    def check_input(self, x):
        if x.ndim != 3 or x.shape[1:] != (1, self.config.segment_length):
            raise ValueError(f"expected (B, 1, {self.config.segment_length}), got {tuple(x.shape)}")
        check_range(x)

    def encode(self, x):
        m = x[:, 0].unflatten(-1, (-1, self.config.frame)).mean(-1)
        return ((m + 1) * 127.5).round().long().clamp(0, 255)

    def decode(self, codes):
        return (codes.float() / 127.5 - 1).repeat_interleave(self.config.frame, dim=-1)[:, None]


def test_audio_suite_end_to_end(tmp_path) -> None:
    assert metric_suite("audio") is AudioSuite
    tok = FrameCodec(FrameCodecConfig())
    ds = SyntheticAudio(5, SR, 1, 8000, seed=0)
    rep = evaluate_reconstruction(tok, ds, batch_size=3, out_dir=tmp_path, progress=False, num_samples=2)
    m = rep["metrics"]
    assert rep["num_clips"] == 5 and m["tokens_per_clip"] == 4000
    assert m["kbps"] == pytest.approx(4000 * 8 / 0.5 / 1000)
    assert 0 < m["mel_distance"] < 10 and 0 < m["stft_distance"] and m["si_sdr"] > 10
    assert 1.0 <= m["pesq"] <= 4.65 and (m["stoi"] is None or math.isnan(m["stoi"]) or 0 < m["stoi"] <= 1)
    assert isinstance(rep["metric_failures"]["pesq"], int) and isinstance(rep["metric_failures"]["stoi"], int)
    p = rep["protocol"]
    assert (p["sample_rate"], p["segment_length"], p["channels"], p["num_clips"]) == (SR, 8000, 1, 5)
    assert p["pesq"]["mode"] == "wb" and p["pesq"]["resampled_from"] is None and p["stoi"]["extended"] is False
    assert p["mel_distance"]["window_lengths"] and p["preprocessing"]["segment"] == "start"
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["metrics"]["si_sdr"] == pytest.approx(m["si_sdr"])
    files = saved["files"]
    assert files["sample0_orig"] == "samples/synthetic_000000_orig.wav" and files["sample1_spec"].endswith("_spec.png")
    assert sum(k.startswith("sample") for k in files) == 6
    for role in ("orig", "recon"):
        info = sf.info(tmp_path / files[f"sample0_{role}"])
        assert info.samplerate == SR and info.frames == 8000 and info.channels == 1
    orig, _ = sf.read(tmp_path / files["sample0_orig"], dtype="float32")
    torch.testing.assert_close(torch.from_numpy(orig), ds[0]["x"][0], atol=1 / 32767, rtol=0)
    assert (tmp_path / files["sample0_spec"]).read_bytes()[:4] == b"\x89PNG"
    md = (tmp_path / "report.md").read_text()
    assert "| mel distance |" in md and "PESQ: wb at 16000 Hz" in md and "kbps" in md


def _suite(tok, lengths=(4000,), **options) -> AudioSuite:
    return AudioSuite(tok, lengths=list(lengths), num_items=4, device=torch.device("cpu"), **options)


def test_suite_keeps_one_row_per_length() -> None:
    tok = FrameCodec(FrameCodecConfig(segment_length=SR))
    suite = _suite(tok, lengths=(1, 2), num_samples=0)
    x = speechlike(2)
    suite.add_batch(x, ["a", "b"])
    suite.add_reconstruction(1, _noisy(x, 1e-2))
    suite.add_reconstruction(2, _noisy(x, 1e-3))
    rows = suite.compute(2)
    assert set(rows) == {1, 2}
    for key in ("si_sdr", "pesq", "stoi"):
        assert rows[1][key] < rows[2][key]
    for key in ("mel_distance", "stft_distance"):
        assert rows[1][key] > rows[2][key]


def test_suite_options_protocol_and_checks() -> None:
    tok = FrameCodec(FrameCodecConfig())
    on, off = _suite(tok), _suite(tok, pesq=False, stoi=False)
    ident = {"kind": "SyntheticAudio"}
    assert protocol_fingerprint(on.protocol_fields(ident, 4))["id"] != protocol_fingerprint(off.protocol_fields(ident, 4))["id"]
    assert off.protocol_fields(ident, 4)["pesq"] is None
    assert _suite(FrameCodec(FrameCodecConfig(sample_rate=8000))).use_pesq is False  # no wideband content below 16 kHz
    assert on.throughput_fields({"encode_clips_per_s": 10.0, "decode_clips_per_s": None}) == {
        "encode_real_time_factor": 5.0, "decode_real_time_factor": None}
    with pytest.raises(ValueError, match="sample_rate 8000"):
        on.check_dataset(SyntheticAudio(2, 8000, 1, 8000))
    with pytest.raises(ValueError, match="segment_length"):
        on.add_batch(torch.zeros(1, 1, 4000), ["a"])
    parser = argparse.ArgumentParser()
    AudioSuite.add_arguments(parser)
    args = parser.parse_args(["--no-pesq", "--num-samples", "3"])
    assert AudioSuite.options_from_args(args) == {"pesq": False, "stoi": True, "num_samples": 3}
    assert AudioSuite.preprocessing_from_args(args) == {"segment": "start"}
    assert AudioSuite.preprocessing_from_args(parser.parse_args(["--segment", "chunks"])) == {"segment": "chunks"}


def test_pesq_and_stoi_equal_the_reference_packages() -> None:
    """The wrappers give exactly what pesq / pystoi give on the same mono arrays."""
    import numpy as np
    from pesq import pesq
    from pystoi import stoi as reference_stoi

    ref = speechlike(2, seconds=2.0)
    est = _noisy(ref, 0.02)
    got_pesq, got_stoi = pesq_wb(est, ref, SR), stoi(est, ref, SR)
    for i in range(2):
        r, e = ref[i, 0].numpy().astype(np.float64), est[i, 0].numpy().astype(np.float64)
        assert got_pesq[i].item() == pytest.approx(pesq(SR, r, e, "wb"), abs=1e-6)
        assert got_stoi[i].item() == pytest.approx(reference_stoi(r, e, SR, extended=False), abs=1e-6)
