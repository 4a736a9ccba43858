"""Metrics: a modality-agnostic reconstruction evaluation with per-modality metric suites.

    from mmtok.metrics import evaluate_reconstruction
    report = evaluate_reconstruction(tok, dataset, inception_weights="auto", out_dir="runs/x/eval")

Generic parts: ``reconstruction`` (the loop), ``suite`` (``MetricSuite``, the registry),
``fid`` (Fréchet distance, streaming feature statistics), ``codebook``, ``protocol``,
``reduce`` (cross-rank reductions), ``report`` (report.json / report.md / prefix curve),
``cli`` (``mmtok eval``). Per modality: ``mmtok.metrics.image`` (PSNR, SSIM, LPIPS, rFID).
Heavy dependencies (torch-fidelity, torchmetrics, matplotlib, LPIPS) are imported lazily.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    # the evaluation, the suites and the command line
    "evaluate_reconstruction": "mmtok.metrics.reconstruction",
    "resolve_prefix_lengths": "mmtok.metrics.reconstruction",
    "MetricSuite": "mmtok.metrics.suite",
    "MetricInfo": "mmtok.metrics.suite",
    "register_metric_suite": "mmtok.metrics.suite",
    "metric_suite": "mmtok.metrics.suite",
    "list_metric_suites": "mmtok.metrics.suite",
    "eval_main": "mmtok.metrics.cli",
    "markdown_report": "mmtok.metrics.report",
    # FID math and streaming statistics
    "GaussianStats": "mmtok.metrics.fid",
    "FeatureStats": "mmtok.metrics.fid",
    "frechet_distance": "mmtok.metrics.fid",
    "fid_from_stats": "mmtok.metrics.fid",
    "stats_from_features": "mmtok.metrics.fid",
    # audio
    "AudioSuite": "mmtok.metrics.audio.suite",
    "si_sdr": "mmtok.metrics.audio.quality",
    "mel_distance": "mmtok.metrics.audio.quality",
    "stft_distance": "mmtok.metrics.audio.quality",
    "pesq_wb": "mmtok.metrics.audio.quality",
    "stoi": "mmtok.metrics.audio.quality",
    # video
    "VideoSuite": "mmtok.metrics.video.suite",
    "I3DFeatures": "mmtok.metrics.video.i3d",
    "get_i3d": "mmtok.metrics.video.i3d",
    "save_random_i3d_weights": "mmtok.metrics.video.i3d",
    "resolve_i3d_weights": "mmtok.metrics.video.i3d",
    "I3D_WEIGHTS_NAME": "mmtok.metrics.video.i3d",
    # reductions
    "MeanMetric": "mmtok.metrics.reduce",
    # codebook
    "CodebookHistogram": "mmtok.metrics.codebook",
    # protocol
    "protocol_fingerprint": "mmtok.metrics.protocol",
    "dataset_identity": "mmtok.metrics.protocol",
    "reference_key": "mmtok.metrics.protocol",
    "ReferenceStatsCache": "mmtok.metrics.protocol",
    "default_cache_dir": "mmtok.metrics.protocol",
    "module_sha256": "mmtok.metrics.protocol",
    # the image suite and its parts
    "ImageSuite": "mmtok.metrics.image.suite",
    "psnr_per_image": "mmtok.metrics.image.quality",
    "ssim_per_image": "mmtok.metrics.image.quality",
    "InceptionFeatures": "mmtok.metrics.image.inception",
    "get_inception": "mmtok.metrics.image.inception",
    "INCEPTION_WEIGHTS_NAME": "mmtok.metrics.image.inception",
    "default_weights_path": "mmtok.metrics.image.inception",
    "resolve_weights": "mmtok.metrics.image.inception",
    "save_random_inception_weights": "mmtok.metrics.image.inception",
    "write_npz_from_raw": "mmtok.metrics.image.samples",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mmtok.metrics' has no attribute {name!r}")
