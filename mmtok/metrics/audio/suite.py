"""The audio metric suite: mel / STFT distance, SI-SDR, PESQ-WB and STOI per clip, kbps, real-time
factors, and WAV / spectrogram samples."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Subset

from mmtok.metrics.audio.quality import PESQ_RATE, mel_distance, pesq_wb, si_sdr, spectral_parameters, stft_distance, stoi
from mmtok.metrics.audio.samples import AudioSamples
from mmtok.metrics.reduce import MeanMetric, all_reduce
from mmtok.metrics.suite import MetricInfo, MetricSuite, dataset_name

SIGNAL = ("reconstructions clamped to [-1, 1] before every metric; metrics over the whole segment (zero-padded "
          "tails included); PESQ and STOI on the mono mixdown (mean over channels)")
SI_SDR = "zero-mean, per channel then averaged over channels, float64, torchmetrics' epsilon guards"


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:  # pragma: no cover - installed in every supported environment
        return None


class _FiniteMean:
    """Mean of the finite values, and the count of the others (items the metric could not score)."""

    def __init__(self) -> None:
        self.mean, self.failed = MeanMetric(), 0

    def update(self, values: Tensor) -> None:
        ok = torch.isfinite(values)
        self.mean.update(values[ok])
        self.failed += int((~ok).sum())

    def compute(self) -> tuple[float, int]:
        return self.mean.compute(), int(all_reduce(torch.tensor([float(self.failed)], dtype=torch.float64))[0])


class AudioSuite(MetricSuite):
    """Metrics of waveform reconstructions ``(B, C, S)``, one value per clip, averaged.

    Options (keyword arguments of ``evaluate_reconstruction``):
        pesq: wideband PESQ (needs a sample rate >= 16 kHz; other rates are resampled to 16 kHz).
        stoi: STOI (pystoi, not the extended variant).
        num_samples: (original, reconstruction) WAV pairs and spectrogram PNGs written to ``samples/``.

    Rows are kept per decoded length ``k`` of the loop (prefix lengths, or residual levels
    for RVQ codecs when the loop passes level counts), so quality-vs-bitrate curves need
    nothing audio-specific. PESQ / STOI failures (silence, too short) are not averaged in
    and are counted under ``metric_failures``.
    """

    modality = "audio"
    item = "clip"
    unit = "clip"
    metrics = (
        MetricInfo("mel_distance", "mel distance", lower_is_better=True),
        MetricInfo("stft_distance", "STFT distance", lower_is_better=True),
        MetricInfo("si_sdr", "SI-SDR", unit="dB"),
        MetricInfo("pesq", "PESQ-WB"),
        MetricInfo("stoi", "STOI"),
    )
    rates = (MetricInfo("kbps", "kbps"),)

    def __init__(self, tok: Any, *, lengths: Sequence[int], num_items: int, device: torch.device, rank: int = 0,
                 world_size: int = 1, out_dir: str | os.PathLike | None = None, pesq: bool = True, stoi: bool = True,
                 num_samples: int = 8) -> None:
        super().__init__(tok, lengths=lengths, num_items=num_items, device=device, rank=rank,
                         world_size=world_size, out_dir=out_dir)
        prep = tok.preprocessing()
        self.sample_rate = int(prep["sample_rate"])
        self.channels = int(prep.get("channels", 1))
        seg = prep.get("segment_length")
        self.segment_length: int | None = int(seg) if seg is not None else None
        # PESQ-WB scores 16 kHz speech; lower rates hold no wideband content to score
        self.use_pesq = bool(pesq) and self.sample_rate >= PESQ_RATE
        self.use_stoi = bool(stoi)
        self.mel = {k: MeanMetric() for k in self.lengths}
        self.stft = {k: MeanMetric() for k in self.lengths}
        self.si_sdr = {k: MeanMetric() for k in self.lengths}
        self.pesq = {k: _FiniteMean() for k in self.lengths} if self.use_pesq else None
        self.stoi = {k: _FiniteMean() for k in self.lengths} if self.use_stoi else None
        self.samples = AudioSamples(num_samples, self.sample_rate)
        self.data_facts: dict[str, Any] = {}
        self.failures: dict[str, int] = {}
        self._x: Tensor | None = None
        self._keys: list[str] = []

    def _mismatch(self, what: str, got: Any, want: Any) -> ValueError:
        return ValueError(f"the dataset yields {what} {got} but the tokenizer expects {want} (its preprocessing()); "
                          "open the dataset with open_dataset(spec, modality='audio', **tok.preprocessing())")

    # --- the evaluation --------------------------------------------------------------------
    def check_dataset(self, dataset: Any) -> None:
        base = dataset.dataset if isinstance(dataset, Subset) else dataset
        for name, want in (("sample_rate", self.sample_rate), ("channels", self.channels),
                           ("segment_length", self.segment_length)):
            got = getattr(base, name, None)
            if isinstance(got, int) and want is not None and got != want:
                raise self._mismatch(name, got, want)
        describe = getattr(base, "describe", None)
        if callable(describe):
            self.data_facts = dict(describe())

    def add_batch(self, x: Tensor, keys: list[str]) -> None:
        if x.ndim != 3:
            raise ValueError(f"the dataset yields items of shape {tuple(x.shape[1:])}, expected (channels, samples)")
        if x.shape[1] != self.channels:
            raise self._mismatch("channels", int(x.shape[1]), self.channels)
        if self.segment_length is None:
            self.segment_length = int(x.shape[-1])
        elif x.shape[-1] != self.segment_length:
            raise self._mismatch("segment_length", int(x.shape[-1]), self.segment_length)
        self._x, self._keys = x.float(), keys

    def add_reconstruction(self, k: int, rec: Tensor) -> None:
        x = self._x
        assert x is not None
        rec = rec.float().clamp(-1.0, 1.0)
        self.mel[k].update(mel_distance(rec, x, self.sample_rate))
        self.stft[k].update(stft_distance(rec, x))
        self.si_sdr[k].update(si_sdr(rec, x))
        if self.pesq is not None:
            self.pesq[k].update(pesq_wb(rec, x, self.sample_rate))
        if self.stoi is not None:
            self.stoi[k].update(stoi(rec, x, self.sample_rate))
        if k == self.lengths[-1] and self.rank == 0:
            self.samples.add(self._keys, x, rec)

    def compute(self, num_items: int) -> dict[int, dict[str, Any]]:
        rows: dict[int, dict[str, Any]] = {}
        full = self.lengths[-1]
        for k in self.lengths:
            row: dict[str, Any] = {"mel_distance": self.mel[k].compute(), "stft_distance": self.stft[k].compute(),
                                   "si_sdr": self.si_sdr[k].compute(), "pesq": None, "stoi": None}
            for name, acc in (("pesq", self.pesq), ("stoi", self.stoi)):
                if acc is not None:
                    row[name], failed = acc[k].compute()
                    if k == full:
                        self.failures[name] = failed
            rows[k] = row
        return rows

    # --- the report ------------------------------------------------------------------------
    def _pesq_protocol(self) -> dict[str, Any] | None:
        if not self.use_pesq:
            return None
        return {"mode": "wb", "sample_rate": PESQ_RATE, "package": f"pesq {_package_version('pesq')}",
                "resampled_from": self.sample_rate if self.sample_rate != PESQ_RATE else None,
                "resampler": "torchaudio.functional.resample (sinc, Hann, width 6, rolloff 0.99)"}

    def _stoi_protocol(self) -> dict[str, Any] | None:
        if not self.use_stoi:
            return None
        return {"variant": "stoi", "extended": False, "package": f"pystoi {_package_version('pystoi')}",
                "internal_rate": 10000}

    def protocol_fields(self, identity: dict[str, Any], num_items: int) -> dict[str, Any]:
        return {
            "sample_rate": self.sample_rate,
            "segment_length": self.segment_length,
            "channels": self.channels,
            "num_clips": int(num_items),
            "dataset": identity,
            "preprocessing": self.data_facts,
            "signal": SIGNAL,
            "si_sdr": SI_SDR,
            **spectral_parameters(),
            "pesq": self._pesq_protocol(),
            "stoi": self._stoi_protocol(),
        }

    @property
    def segment_seconds(self) -> float:
        if self.segment_length is None:
            raise ValueError("segment_length is unknown before the first batch")
        return self.segment_length / self.sample_rate

    def rate_fields(self, bits_per_item: float) -> dict[str, float]:
        return {"kbps": bits_per_item / self.segment_seconds / 1000.0}

    def throughput_fields(self, throughput: dict[str, Any]) -> dict[str, float | None]:
        """Real-time factors (seconds of audio per second of compute) from the loop's clips/s."""
        out: dict[str, float | None] = {}
        for stage in ("encode", "decode"):
            per_s = throughput.get(f"{stage}_{self.item}s_per_s")
            out[f"{stage}_real_time_factor"] = per_s * self.segment_seconds if per_s is not None else None
        return out

    def sections(self) -> dict[str, Any]:
        return {"metric_failures": {"pesq": self.failures.get("pesq"), "stoi": self.failures.get("stoi"),
                                    "note": "clips PESQ / STOI could not score (silence, too short); not averaged in"}}

    @classmethod
    def protocol_summary(cls, report: dict[str, Any]) -> str:
        p = report["protocol"]
        seconds = p["segment_length"] / p["sample_rate"]
        seg = (p.get("preprocessing") or {}).get("segment")
        return (f"N = {p['num_clips']} clips of {seconds:.3g} s at {p['sample_rate']} Hz, {p['channels']} channel(s)"
                + (f", segment {seg}" if seg else "") + f", dataset `{dataset_name(p)}`")

    @classmethod
    def protocol_lines(cls, report: dict[str, Any]) -> list[str]:
        p = report["protocol"]
        mel, st = p["mel_distance"], p["stft_distance"]
        pq, so = p.get("pesq"), p.get("stoi")
        fails = report.get("metric_failures") or {}
        return [
            f"- signal: {p['signal']}",
            f"- mel distance: {mel['definition']}; windows {mel['window_lengths']}, mels {mel['n_mels']}",
            f"- STFT distance: {st['definition']}; FFT {st['fft_sizes']}, hop {st['hop_sizes']}, window {st['win_lengths']}",
            f"- SI-SDR: {p['si_sdr']}",
            "- PESQ: " + (f"{pq['mode']} at {pq['sample_rate']} Hz ({pq['package']})"
                          + (f", resampled from {pq['resampled_from']} Hz" if pq.get("resampled_from") else "")
                          + f"; {fails.get('pesq') or 0} clip(s) not scorable" if pq else "not computed"),
            "- STOI: " + (f"{so['variant']} ({so['package']}, internal {so['internal_rate']} Hz); "
                          f"{fails.get('stoi') or 0} clip(s) not scorable" if so else "not computed"),
            f"- preprocessing: {p.get('preprocessing')}",
            f"- dataset: `{p['dataset']}`",
        ]

    # --- outputs ---------------------------------------------------------------------------
    def write_outputs(self, out: Path, report: dict[str, Any]) -> dict[str, str]:
        return self.samples.write(out)

    # --- command line ----------------------------------------------------------------------
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("audio (mel / STFT distance, SI-SDR, PESQ, STOI)")
        g.add_argument("--no-pesq", action="store_true", help="skip wideband PESQ")
        g.add_argument("--no-stoi", action="store_true", help="skip STOI")
        g.add_argument("--num-samples", type=int, default=8,
                       help="(original, reconstruction) WAV pairs and spectrogram PNGs written to <out>/samples")
        g.add_argument("--segment", choices=["start", "chunks"], default=None,
                       help="which segments of each file are clips: the first one (default) or all consecutive ones")

    @classmethod
    def options_from_args(cls, args: argparse.Namespace) -> dict[str, Any]:
        return {"pesq": not args.no_pesq, "stoi": not args.no_stoi, "num_samples": args.num_samples}

    @classmethod
    def preprocessing_from_args(cls, args: argparse.Namespace) -> dict[str, Any]:
        return {"segment": args.segment or "start"}
