"""The image metric suite: rFID, PSNR, SSIM and LPIPS on uint8 pixels, bits per pixel, the
ADM-format ``reconstructions.npz`` and ``recon_grid.png``."""

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
from mmtok.metrics.image.rfid import RFID
from mmtok.metrics.image.samples import ImageSamples
from mmtok.metrics.reduce import MeanMetric
from mmtok.metrics.suite import MetricInfo, MetricSuite, dataset_name

STATISTICS = ("float64 sums all-reduced across ranks; unbiased covariance (N-1); Tr sqrt(S1 S2) by "
              "scipy.linalg.sqrtm, or exactly via the N x N low-rank form when N <= feature dim")
PIXELS = "reconstructions clamped to [-1, 1] and rounded to uint8 before every metric"


class ImageSuite(MetricSuite):
    """Metrics of image reconstructions (every metric sees the uint8 pixels a user would save).

    Options (keyword arguments of ``evaluate_reconstruction``):
        fid: compute rFID (needs the Inception weights, see ``mmtok.metrics.image.inception``).
        inception_weights: weights path, or "auto" for the torch hub cache.
        fid_method: matrix square-root route ("auto": exact low-rank route when N <= 2048, else sqrtm).
        reference_stats: ``.npz`` with ``mu`` / ``sigma`` to score against instead of the dataset's images.
        cache_dir / use_cache: reference-statistics cache (default ``~/.cache/mmtok/fid_refs``).
        lpips: ``mmtok.losses.LPIPS`` weights ("auto", "random", a path) or None to skip.
        save_npz: write ``reconstructions.npz`` (needs ``out_dir``).
    """

    modality = "image"
    item = "image"
    unit = "img"
    metrics = (
        MetricInfo("rfid", "rFID", lower_is_better=True),
        MetricInfo("psnr", "PSNR", unit="dB"),
        MetricInfo("ssim", "SSIM"),
        MetricInfo("lpips", "LPIPS", lower_is_better=True),
    )
    rates = (MetricInfo("bits_per_pixel", "bits/pixel"),)

    def __init__(self, tok: Any, *, lengths: Sequence[int], num_items: int, device: torch.device, rank: int = 0,
                 world_size: int = 1, out_dir: str | os.PathLike | None = None, fid: bool = True,
                 inception_weights: str | os.PathLike | None = "auto", fid_method: str = "auto",
                 reference_stats: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                 use_cache: bool = True, lpips: str | None = "auto", save_npz: bool = True) -> None:
        super().__init__(tok, lengths=lengths, num_items=num_items, device=device, rank=rank,
                         world_size=world_size, out_dir=out_dir)
        if fid_method not in METHODS:
            raise ValueError(f"fid_method must be one of {METHODS}, got {fid_method!r}")
        if fid and num_items < 2:
            raise ValueError("rFID needs at least 2 images; pass more images or fid=False")
        r = int(tok.preprocessing()["resolution"])
        self.size = (r, r)
        self.fid_method = fid_method
        self.rfid = RFID(weights=inception_weights, method=fid_method, reference_stats=reference_stats,
                         cache_dir=cache_dir, use_cache=use_cache, lengths=self.lengths) if fid else None
        self.lpips = LPIPSMetric(lpips, self.lengths) if lpips is not None and str(lpips).lower() != "none" else None
        self.psnr = {k: MeanMetric() for k in self.lengths}
        self.ssim = {k: MeanMetric() for k in self.lengths}
        self.samples = ImageSamples(self.out_dir, rank, save_npz)
        self._real: Tensor | None = None  # uint8 originals of the current batch
        self._real_q: Tensor | None = None  # the same in [-1, 1] (LPIPS input)
        self._keys: list[str] = []

    def _size_error(self, h: int, w: int) -> ValueError:
        return ValueError(f"the dataset yields {h}x{w} images but the tokenizer expects {self.size[0]}x{self.size[1]} "
                          f"(its preprocessing()); open the dataset at resolution {self.size[0]}")

    # --- the evaluation --------------------------------------------------------------------
    def check_dataset(self, dataset: Any) -> None:
        base = dataset.dataset if isinstance(dataset, Subset) else dataset
        res = getattr(base, "resolution", None)  # any map-style dataset may be passed
        if isinstance(res, int) and (res, res) != self.size:
            raise self._size_error(res, res)

    def setup(self, identity: dict[str, Any]) -> None:
        if self.rfid is not None:
            self.rfid.setup(self.device, identity, self.size, self.num_items, self.rank)
        if self.lpips is not None:
            self.lpips.setup(self.device)
        self.samples.open()

    def add_batch(self, x: Tensor, keys: list[str]) -> None:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"the dataset yields images of shape {tuple(x.shape[1:])}, expected (3, H, W)")
        if tuple(x.shape[-2:]) != self.size:
            raise self._size_error(int(x.shape[-2]), int(x.shape[-1]))
        self._real, self._keys = to_uint8(x), keys
        self._real_q = to_model_range(self._real) if self.lpips is not None else None
        if self.rfid is not None:
            self.rfid.add_real(self._real)

    def add_reconstruction(self, k: int, rec: Tensor) -> None:
        real, rec_u8 = self._real, to_uint8(rec)
        assert real is not None
        self.psnr[k].update(psnr_per_image(rec_u8, real))
        self.ssim[k].update(ssim_per_image(rec_u8, real))
        if self.lpips is not None:
            self.lpips.update(k, to_model_range(rec_u8), self._real_q)
        if self.rfid is not None:
            self.rfid.add_reconstruction(k, rec_u8)
        if k == self.lengths[-1]:
            self.samples.add(self._keys, real, rec_u8)

    def close(self) -> None:
        self.samples.close()

    def compute(self, num_items: int) -> dict[int, dict[str, Any]]:
        psnr = {k: m.compute() for k, m in self.psnr.items()}
        ssim = {k: m.compute() for k, m in self.ssim.items()}
        lp = self.lpips.compute() if self.lpips is not None else {}
        rfid = self.rfid.compute(num_items, self.rank) if self.rfid is not None else {}
        return {k: {"psnr": psnr[k], "ssim": ssim[k], "lpips": lp.get(k), "rfid": rfid.get(k)} for k in self.lengths}

    # --- the report ------------------------------------------------------------------------
    def protocol_fields(self, identity: dict[str, Any], num_items: int) -> dict[str, Any]:
        rfid = self.rfid
        return {
            "feature_extractor": rfid.features if rfid is not None else None,
            "statistics": STATISTICS,
            "resolution": list(self.size),
            "crop": identity.get("crop"),
            "num_images": int(num_items),
            "dataset": identity,
            "pixels": PIXELS,
            "lpips": self.lpips.description.get("state_sha256") if self.lpips is not None else None,
            "reference_key": rfid.key if rfid is not None else None,
            "fid_method": self.fid_method,
            "reference": rfid.reference if rfid is not None else None,
        }

    def rate_fields(self, bits_per_item: float) -> dict[str, float]:
        return {"bits_per_pixel": bits_per_item / (self.size[0] * self.size[1])}

    def sections(self) -> dict[str, Any]:
        rfid = self.rfid
        return {
            "reference_stats": {"source": rfid.source if rfid is not None else "not computed",
                                "key": rfid.key if rfid is not None else None},
            "lpips": self.lpips.description if self.lpips is not None else NOT_COMPUTED,
        }

    @classmethod
    def protocol_summary(cls, report: dict[str, Any]) -> str:
        p = report["protocol"]
        return (f"N = {p['num_images']} images, {p['resolution'][0]}x{p['resolution'][1]}, crop {p.get('crop')}, "
                f"dataset `{dataset_name(p)}`")

    @classmethod
    def protocol_lines(cls, report: dict[str, Any]) -> list[str]:
        proto = report["protocol"]
        fe = proto.get("feature_extractor") or {}
        return [
            f"- rFID features: {fe.get('name', 'not computed')}"
            + (f", weights `{fe['weights_file']}` sha256 `{fe['weights_sha256'][:16]}`" if fe.get("weights_sha256") else ""),
            f"- resize: {fe.get('resize', '–')}",
            f"- statistics: {proto['statistics']}",
            f"- reference statistics: {report['reference_stats']['source']}",
            "- PSNR/SSIM: per image on uint8 pixels (data range 255), averaged; SSIM Gaussian 11x11, sigma 1.5",
            f"- LPIPS: {report['lpips'].get('description', 'not computed')}",
            f"- dataset: `{proto['dataset']}`",
        ]

    # --- outputs ---------------------------------------------------------------------------
    def write_rank_outputs(self, out: Path) -> None:
        self.samples.write_rank(out)

    def write_outputs(self, out: Path, report: dict[str, Any]) -> dict[str, str]:
        return self.samples.merge(out, report["num_images"], self.world_size, self.size)

    # --- command line ----------------------------------------------------------------------
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("images (rFID, PSNR, SSIM, LPIPS)")
        g.add_argument("--resolution", type=int, default=None, help="image resolution (default: the tokenizer's)")
        g.add_argument("--crop", choices=["center", "random"], default=None,
                       help="crop after the short-side resize (default: center)")
        g.add_argument("--inception-weights", default="auto",
                       help="path of weights-inception-2015-12-05-6726825d.pth, or 'auto' for the torch hub cache")
        g.add_argument("--no-fid", action="store_true", help="skip rFID (no Inception weights needed)")
        g.add_argument("--fid-method", choices=list(METHODS), default="auto",
                       help="matrix square-root route (all give the same value; see mmtok.metrics.fid)")
        g.add_argument("--reference-stats", default=None,
                       help=".npz with mu/sigma of Inception pool3 features (e.g. an ADM reference batch) to score against")
        g.add_argument("--lpips-weights", default="auto", help="'auto' (local cache), 'random' (tests only), a path, or 'none'")
        g.add_argument("--no-npz", action="store_true", help="do not write reconstructions.npz")
        g.add_argument("--cache-dir", default=None, help="reference statistics cache (default: ~/.cache/mmtok/fid_refs)")
        g.add_argument("--no-cache", action="store_true", help="neither read nor write cached reference statistics")

    @classmethod
    def options_from_args(cls, args: argparse.Namespace) -> dict[str, Any]:
        return {
            "fid": not args.no_fid, "inception_weights": args.inception_weights, "fid_method": args.fid_method,
            "reference_stats": args.reference_stats, "save_npz": not args.no_npz,
            "lpips": None if args.lpips_weights.lower() == "none" else args.lpips_weights,
            "cache_dir": args.cache_dir, "use_cache": not args.no_cache,
        }

    @classmethod
    def preprocessing_from_args(cls, args: argparse.Namespace) -> dict[str, Any]:
        given = {"resolution": args.resolution, "crop": args.crop}
        return {k: v for k, v in given.items() if v is not None}
