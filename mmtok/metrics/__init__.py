"""Metrics: FID with a pinned protocol, PSNR / SSIM, codebook statistics, reconstruction eval.

    from mmtok.metrics import evaluate_reconstruction
    report = evaluate_reconstruction(tok, dataset, inception_weights="auto", out_dir="runs/x/eval")

Heavy dependencies (torch-fidelity, torchmetrics, matplotlib) are imported lazily.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    # FID math and streaming statistics
    "GaussianStats": "mmtok.metrics.fid",
    "FeatureStats": "mmtok.metrics.fid",
    "frechet_distance": "mmtok.metrics.fid",
    "fid_from_stats": "mmtok.metrics.fid",
    "stats_from_features": "mmtok.metrics.fid",
    # Inception features
    "InceptionFeatures": "mmtok.metrics.inception",
    "get_inception": "mmtok.metrics.inception",
    "INCEPTION_WEIGHTS_NAME": "mmtok.metrics.inception",
    "default_weights_path": "mmtok.metrics.inception",
    "resolve_weights": "mmtok.metrics.inception",
    "save_random_inception_weights": "mmtok.metrics.inception",
    # per-image metrics
    "to_uint8_images": "mmtok.metrics.image",
    "psnr_per_image": "mmtok.metrics.image",
    "ssim_per_image": "mmtok.metrics.image",
    "MeanMetric": "mmtok.metrics.image",
    # codebook
    "CodebookHistogram": "mmtok.metrics.codebook",
    # protocol
    "protocol_fingerprint": "mmtok.metrics.protocol",
    "dataset_identity": "mmtok.metrics.protocol",
    "reference_key": "mmtok.metrics.protocol",
    "ReferenceStatsCache": "mmtok.metrics.protocol",
    "default_cache_dir": "mmtok.metrics.protocol",
    "module_sha256": "mmtok.metrics.protocol",
    # evaluation loop and reports
    "evaluate_reconstruction": "mmtok.metrics.reconstruction",
    "default_prefix_lengths": "mmtok.metrics.reconstruction",
    "markdown_report": "mmtok.metrics.report",
    "write_npz_from_raw": "mmtok.metrics.report",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mmtok.metrics' has no attribute {name!r}")
