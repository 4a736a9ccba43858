"""The video metric suite: rFVD (I3D logits), PSNR, SSIM and LPIPS per frame on uint8 pixels,
per-frame curves, bits per pixel, and MP4 / GIF / PNG-strip samples."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Subset

from mmtok.data.transforms import to_model_range, to_uint8
from mmtok.metrics.fid import METHODS
from mmtok.metrics.image.perceptual import NOT_COMPUTED, LPIPSMetric
from mmtok.metrics.image.quality import psnr_per_image, ssim_per_image
from mmtok.metrics.reduce import all_reduce
from mmtok.metrics.suite import MetricInfo, MetricSuite, dataset_name
from mmtok.metrics.video.rfvd import OWN_REFERENCE, RFVD, STATISTICS
from mmtok.metrics.video.samples import PER_FRAME_PLOT, VideoSamples, plot_per_frame

PIXELS = "reconstructions clamped to [-1, 1] and rounded to uint8 before every metric (rFVD included)"
FRAME_METRICS = ("per frame on uint8 pixels (data range 255), averaged over every frame of every clip; "
                 "SSIM Gaussian 11x11, sigma 1.5")
FRAME_CHUNK = 64  # frames per LPIPS forward pass
DEFAULT_NUM_SAMPLES = 4


def fold_frames(x: Tensor) -> Tensor:
    """(B, C, T, H, W) -> (B * T, C, H, W), clip-major (frame t of clip b at row b * T + t)."""
    return x.transpose(1, 2).flatten(0, 1)


class _FrameMeans:
    """Float64 sums per frame index of (B, T) values; the overall mean weighs every frame equally."""

    def __init__(self) -> None:
        self.sums: Tensor | None = None
        self.count = 0

    def update(self, values: Tensor) -> None:
        v = values.detach().double().cpu()
        self.sums = v.sum(0) if self.sums is None else self.sums + v.sum(0)
        self.count += v.shape[0]

    def compute(self, num_frames: int) -> tuple[float, list[float]]:
        """(mean over all frames, mean at each frame index), all-reduced across ranks (collective)."""
        sums = self.sums if self.sums is not None else torch.zeros(num_frames, dtype=torch.float64)
        t = all_reduce(torch.cat([sums, torch.tensor([float(self.count)], dtype=torch.float64)]))
        n = float(t[-1])
        if n == 0:
            return float("nan"), [float("nan")] * num_frames
        curve = (t[:-1] / n).tolist()
        return float(sum(curve) / len(curve)), curve


class _FrameLPIPS(LPIPSMetric):
    """``LPIPSMetric`` that also returns the per-frame values (frames folded into the batch, in chunks)."""

    def update_frames(self, k: int, rec: Tensor, real: Tensor) -> Tensor:
        """``rec`` / ``real``: (N, 3, H, W) frames in [-1, 1] from uint8 pixels -> (N,) LPIPS."""
        values = torch.cat([self.net(r, x).flatten() for r, x in zip(rec.split(FRAME_CHUNK), real.split(FRAME_CHUNK))])
        self.means[k].update(values)
        return values


def _size(resolution: Any) -> tuple[int, int] | None:
    if resolution is None:
        return None
    if isinstance(resolution, int):
        return (resolution, resolution)
    h, w = resolution
    return (int(h), int(w))


class VideoSuite(MetricSuite):
    """Metrics of clip reconstructions ``(B, 3, T, H, W)`` (every metric sees the uint8 pixels a user would save).

    Options (keyword arguments of ``evaluate_reconstruction``):
        fvd: compute rFVD (needs the I3D weights, see ``mmtok.metrics.video.i3d``; at least 2 clips).
        i3d_weights: weights path, or "auto" for the torch hub cache.
        fid_method: matrix square-root route of the Fréchet distance (see ``mmtok.metrics.fid``).
        lpips: ``mmtok.losses.LPIPS`` weights ("auto", "random", a path) or None to skip.
        num_samples: clips written to ``samples/`` (MP4 + GIF side by side, PNG frame strip).

    PSNR / SSIM / LPIPS are computed per frame and averaged over all frames; their means at each
    frame index are the ``per_frame`` report section and ``per_frame.png`` (full code).
    """

    modality = "video"
    item = "clip"
    unit = "clip"
    metrics = (
        MetricInfo("rfvd", "rFVD", lower_is_better=True),
        MetricInfo("psnr", "PSNR", unit="dB"),
        MetricInfo("ssim", "SSIM"),
        MetricInfo("lpips", "LPIPS", lower_is_better=True),
    )
    rates = (MetricInfo("bits_per_pixel", "bits/pixel"),)

    def __init__(self, tok: Any, *, lengths: Sequence[int], num_items: int, device: torch.device, rank: int = 0,
                 world_size: int = 1, out_dir: str | os.PathLike | None = None, fvd: bool = True,
                 i3d_weights: str | os.PathLike | None = "auto", fid_method: str = "auto", lpips: str | None = "auto",
                 num_samples: int = DEFAULT_NUM_SAMPLES) -> None:
        super().__init__(tok, lengths=lengths, num_items=num_items, device=device, rank=rank,
                         world_size=world_size, out_dir=out_dir)
        if fid_method not in METHODS:
            raise ValueError(f"fid_method must be one of {METHODS}, got {fid_method!r}")
        if fvd and num_items < 2:
            raise ValueError("rFVD needs at least 2 clips; pass more clips or fvd=False (--no-fvd)")
        prep = tok.preprocessing()
        self.size = _size(prep.get("resolution"))
        frames = prep.get("num_frames")
        self.num_frames: int | None = int(frames) if frames is not None else None
        self.fps: float | None = prep.get("fps")
        self.frame_stride: int | None = prep.get("frame_stride")
        self.fid_method = fid_method
        self.rfvd = RFVD(weights=i3d_weights, method=fid_method, lengths=self.lengths) if fvd else None
        self.lpips = _FrameLPIPS(lpips, self.lengths) if lpips is not None and str(lpips).lower() != "none" else None
        self.psnr = {k: _FrameMeans() for k in self.lengths}
        self.ssim = {k: _FrameMeans() for k in self.lengths}
        self.lpips_frames = {k: _FrameMeans() for k in self.lengths}
        self.samples = VideoSamples(num_samples)
        self.data_facts: dict[str, Any] = {}
        self.per_frame: dict[str, Any] = {}
        self._real: Tensor | None = None  # uint8 originals (B, 3, T, H, W) of the current batch
        self._real_q: Tensor | None = None  # their frames (B * T, 3, H, W) in [-1, 1] (LPIPS input)
        self._keys: list[str] = []

    def _mismatch(self, what: str, got: Any, want: Any) -> ValueError:
        return ValueError(f"the dataset yields {what} {got} but the tokenizer expects {want} (its preprocessing()); "
                          "open the dataset with open_dataset(spec, modality='video', **tok.preprocessing())")

    # --- the evaluation --------------------------------------------------------------------
    def check_dataset(self, dataset: Any) -> None:
        base = dataset.dataset if isinstance(dataset, Subset) else dataset
        res = getattr(base, "resolution", None)  # any map-style dataset may be passed
        res = _size(res) if isinstance(res, (int, tuple, list)) else None
        if res is not None and self.size is not None and res != self.size:
            raise self._mismatch("frames of", f"{res[0]}x{res[1]}", f"{self.size[0]}x{self.size[1]}")
        frames = getattr(base, "num_frames", None)
        if isinstance(frames, int) and self.num_frames is not None and frames != self.num_frames:
            raise self._mismatch("clips of", f"{frames} frames", f"{self.num_frames} frames")
        describe = getattr(base, "describe", None)
        if callable(describe):
            self.data_facts = dict(describe())
        for name in ("fps", "frame_stride"):  # data-side facts win over the tokenizer's defaults
            value = self.data_facts.get(name, getattr(base, name, None))
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                setattr(self, name, value)

    def setup(self, identity: dict[str, Any]) -> None:
        if self.rfvd is not None:
            self.rfvd.setup(self.device)
        if self.lpips is not None:
            self.lpips.setup(self.device)
        if self.fps:  # a clip's own frame rate: the timeline rate over the stride between its frames
            self.samples.fps = float(self.fps) / (self.frame_stride or 1)

    def add_batch(self, x: Tensor, keys: list[str]) -> None:
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"the dataset yields items of shape {tuple(x.shape[1:])}, expected clips (3, T, H, W)")
        t, hw = int(x.shape[2]), (int(x.shape[3]), int(x.shape[4]))
        if self.size is None:
            self.size = hw
        elif hw != self.size:
            raise self._mismatch("frames of", f"{hw[0]}x{hw[1]}", f"{self.size[0]}x{self.size[1]}")
        if self.num_frames is None:
            self.num_frames = t
        elif t != self.num_frames:
            raise self._mismatch("clips of", f"{t} frames", f"{self.num_frames} frames")
        self._real, self._keys = to_uint8(x), keys
        self._real_q = to_model_range(fold_frames(self._real)) if self.lpips is not None else None
        if self.rfvd is not None:
            self.rfvd.add_real(self._real)

    def add_reconstruction(self, k: int, rec: Tensor) -> None:
        real, rec_u8 = self._real, to_uint8(rec)
        assert real is not None
        b, t = real.shape[0], real.shape[2]
        real_f, rec_f = fold_frames(real), fold_frames(rec_u8)
        self.psnr[k].update(psnr_per_image(rec_f, real_f).view(b, t))
        self.ssim[k].update(ssim_per_image(rec_f, real_f).view(b, t))
        if self.lpips is not None:
            self.lpips_frames[k].update(self.lpips.update_frames(k, to_model_range(rec_f), self._real_q).view(b, t))
        if self.rfvd is not None:
            self.rfvd.add_reconstruction(k, rec_u8)
        if k == self.lengths[-1] and self.rank == 0:
            self.samples.add(self._keys, real, rec_u8)

    def compute(self, num_items: int) -> dict[int, dict[str, Any]]:
        t = int(self.num_frames or 0)
        psnr = {k: m.compute(t) for k, m in self.psnr.items()}
        ssim = {k: m.compute(t) for k, m in self.ssim.items()}
        lp = {k: m.compute(t) for k, m in self.lpips_frames.items()} if self.lpips is not None else {}
        rfvd = self.rfvd.compute(self.rank) if self.rfvd is not None else {}
        full = self.lengths[-1]
        self.per_frame = {
            "frame": list(range(t)),
            "psnr": psnr[full][1],
            "ssim": ssim[full][1],
            "lpips": lp[full][1] if lp else None,
            "note": "means over clips at each frame index, full code",
        }
        return {k: {"psnr": psnr[k][0], "ssim": ssim[k][0], "lpips": lp[k][0] if lp else None, "rfvd": rfvd.get(k)}
                for k in self.lengths}

    # --- the report ------------------------------------------------------------------------
    def protocol_fields(self, identity: dict[str, Any], num_items: int) -> dict[str, Any]:
        rfvd = self.rfvd
        return {
            "feature_extractor": rfvd.features if rfvd is not None else None,
            "statistics": STATISTICS,
            "num_frames": self.num_frames,
            "fps": self.fps,
            "frame_stride": self.frame_stride,
            "clip": self.data_facts.get("clip"),
            "resolution": list(self.size) if self.size is not None else None,
            "crop": identity.get("crop"),
            "num_clips": int(num_items),
            "dataset": identity,
            "preprocessing": self.data_facts,
            "pixels": PIXELS,
            "frame_metrics": FRAME_METRICS,
            "lpips": self.lpips.description.get("state_sha256") if self.lpips is not None else None,
            "fid_method": self.fid_method,
            "reference": OWN_REFERENCE if rfvd is not None else None,
        }

    def rate_fields(self, bits_per_item: float) -> dict[str, float]:
        if self.size is None or not self.num_frames:
            raise ValueError("the clip size is unknown before the first batch")
        return {"bits_per_pixel": bits_per_item / (self.num_frames * self.size[0] * self.size[1])}

    def sections(self) -> dict[str, Any]:
        return {
            "per_frame": self.per_frame,
            "lpips": self.lpips.description if self.lpips is not None else NOT_COMPUTED,
        }

    @classmethod
    def protocol_summary(cls, report: dict[str, Any]) -> str:
        p = report["protocol"]
        res = p.get("resolution") or ["?", "?"]
        fps = f" at {p['fps']:g} fps" if isinstance(p.get("fps"), (int, float)) else ""
        return (f"N = {p['num_clips']} clips of {p['num_frames']} frames{fps}, {res[0]}x{res[1]}, crop {p.get('crop')}, "
                f"dataset `{dataset_name(p)}`")

    @classmethod
    def protocol_lines(cls, report: dict[str, Any]) -> list[str]:
        p = report["protocol"]
        fe = p.get("feature_extractor") or {}
        weights = (f", weights `{fe['weights_file']}` sha256 `{fe['weights_sha256'][:16]}` ({fe.get('verification')})"
                   if fe.get("weights_sha256") else "")
        return [
            f"- rFVD features: {fe.get('name', 'not computed')}" + (f", {fe['feature_layer']}" if fe else "") + weights,
            f"- I3D input: {fe.get('resize', '–')}; {fe.get('input', '–')}",
            f"- rFVD reference: {p.get('reference') or 'not computed'}; statistics: {p['statistics']}",
            f"- clips: {p['num_frames']} frames, fps {p.get('fps')}, frame stride {p.get('frame_stride')}, "
            f"clip selection {p.get('clip')}",
            f"- PSNR/SSIM/LPIPS: {p['frame_metrics']}",
            f"- LPIPS: {report['lpips'].get('description', 'not computed')}",
            f"- pixels: {p['pixels']}",
            f"- dataset: `{p['dataset']}`",
        ]

    # --- outputs ---------------------------------------------------------------------------
    def write_outputs(self, out: Path, report: dict[str, Any]) -> dict[str, str]:
        files, errors = self.samples.write(out)
        if errors:
            report["sample_errors"] = errors
        if self.per_frame.get("frame"):
            tk = report["tokenizer"]
            plot_per_frame(self.per_frame, out / PER_FRAME_PLOT,
                           title=f"{tk.get('variant') or tk['family']} (protocol {report['protocol']['id']})")
            files["per_frame_plot"] = PER_FRAME_PLOT
        return files

    # --- command line ----------------------------------------------------------------------
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("video (rFVD, PSNR, SSIM, LPIPS per frame)")

        def add(*flags: str, **kw: Any) -> None:
            # options another suite already defines (--lpips-weights, --num-samples) are shared
            if not any(f in parser._option_string_actions for f in flags):
                g.add_argument(*flags, **kw)

        add("--i3d-weights", default="auto",
            help="path of i3d_pretrained_400.pt (pytorch-i3d layout), or 'auto' for the torch hub cache")
        add("--no-fvd", action="store_true", help="skip rFVD (no I3D weights needed)")
        add("--lpips-weights", default="auto", help="'auto' (local cache), 'random' (tests only), a path, or 'none'")
        add("--num-samples", type=int, default=None,
            help=f"clips written to <out>/samples as MP4 + GIF + PNG strip (video default: {DEFAULT_NUM_SAMPLES})")
        add("--fps", type=float, default=None, help="resample every video to this frame rate (default: its own)")
        add("--frame-stride", type=int, default=None, help="take every n-th frame of the timeline (default: 1)")
        add("--clip", choices=["start", "chunks"], default=None,
            help="which clips of each video are items: the first one (default) or all consecutive ones")

    @classmethod
    def options_from_args(cls, args: argparse.Namespace) -> dict[str, Any]:
        lpips = getattr(args, "lpips_weights", "auto")
        n = getattr(args, "num_samples", None)
        return {
            "fvd": not getattr(args, "no_fvd", False),
            "i3d_weights": getattr(args, "i3d_weights", "auto"),
            "fid_method": getattr(args, "fid_method", "auto"),
            "lpips": None if lpips is None or str(lpips).lower() == "none" else lpips,
            "num_samples": DEFAULT_NUM_SAMPLES if n is None else int(n),
        }

    @classmethod
    def preprocessing_from_args(cls, args: argparse.Namespace) -> dict[str, Any]:
        given = {"fps": getattr(args, "fps", None), "frame_stride": getattr(args, "frame_stride", None),
                 "resolution": getattr(args, "resolution", None), "crop": getattr(args, "crop", None)}
        return {"clip": getattr(args, "clip", None) or "start", **{k: v for k, v in given.items() if v is not None}}
