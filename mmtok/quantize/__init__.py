"""Shared quantizers: one protocol (``Quantizer``), one output dataclass (``QuantizerOutput``).

    q = mmtok.quantize.build({"type": "fsq", "levels": [8, 8, 8, 5, 5, 5]}, dim=256)
    out = q(z)                 # z: (B, N, D) channel-last
    codes = q.encode(z); z_q = q.decode(codes)
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from mmtok.quantize.base import Quantizer, QuantizerOutput, check_tokens
from mmtok.quantize.factorized import FactorizedRVQ
from mmtok.quantize.fmap import codes_to_grid, from_channel_last, grid_to_codes, to_channel_last
from mmtok.quantize.fsq import FSQ
from mmtok.quantize.lfq import BSQ, LFQ
from mmtok.quantize.nested import NestedDropout, NestedDropoutOutput
from mmtok.quantize.residual import RVQ, ResidualFSQ
from mmtok.quantize.stats import all_reduce_histogram, code_histogram, histogram_summary
from mmtok.quantize.vq import VQ

# VQ options of every registered preset (image and audio): l2-normalised (cosine) lookup,
# codes k-means initialised on the first batch and restarted from batch vectors when their
# EMA cluster size falls below the threshold (without them real data uses a handful of codes).
ROBUST_VQ: dict[str, Any] = {"use_cosine_sim": True, "kmeans_init": True, "kmeans_iters": 10, "threshold_ema_dead_code": 2.0}

QUANTIZERS: dict[str, type[Quantizer]] = {cls.kind: cls for cls in (VQ, RVQ, FSQ, ResidualFSQ, LFQ, BSQ, FactorizedRVQ)}


def list_quantizers() -> list[str]:
    return sorted(QUANTIZERS)


def resolve(spec: Mapping[str, Any]) -> tuple[type[Quantizer], dict[str, Any]]:
    """``{"type": KIND, **options}`` -> (quantizer class, options), the options checked
    against that class's own constructor. Unknown types or options raise a ``ValueError``
    naming the valid ones."""
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise ValueError(f"a quantizer config is a mapping with a 'type' key (one of {list_quantizers()}), got {spec!r}")
    kind = str(spec["type"]).lower()
    if kind not in QUANTIZERS:
        raise ValueError(f"unknown quantizer type {spec['type']!r}; choose from {list_quantizers()}")
    cls = QUANTIZERS[kind]
    params = {k: v for k, v in spec.items() if k != "type"}
    valid = sorted(p for p in inspect.signature(cls.__init__).parameters if p != "self")
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for quantizer {kind!r}; valid: {valid}")
    return cls, params


def default_dim(spec: Mapping[str, Any]) -> int | None:
    """The input size D a quantizer config implies (its ``dim``, else the class's
    ``default_dim``: FSQ / ResidualFSQ ``len(levels)``, LFQ / BSQ ``log2(codebook_size)``,
    VQ / RVQ ``codebook_dim``); None when the model must give it."""
    cls, params = resolve(spec)
    return params["dim"] if "dim" in params else cls.default_dim(params)


def build(spec: Mapping[str, Any], dim: int | None = None) -> Quantizer:
    """Build a quantizer from a config mapping ``{"type": KIND, **kwargs}`` (as written in YAML).

    ``dim`` fills the input size when the mapping does not give it; without either the
    class's ``default_dim`` is used. Unknown types or keys raise a ``ValueError`` naming
    the valid ones.
    """
    cls, params = resolve(spec)
    if "dim" not in params:
        params["dim"] = dim if dim is not None else cls.default_dim(params)
    if params["dim"] is None:
        raise ValueError(f"quantizer {cls.kind!r} needs 'dim' (it has no default input size for {dict(spec)!r})")
    return cls(**params)


__all__ = [
    "ROBUST_VQ",
    "Quantizer",
    "QuantizerOutput",
    "VQ",
    "RVQ",
    "FactorizedRVQ",
    "FSQ",
    "ResidualFSQ",
    "LFQ",
    "BSQ",
    "NestedDropout",
    "NestedDropoutOutput",
    "QUANTIZERS",
    "build",
    "default_dim",
    "resolve",
    "list_quantizers",
    "check_tokens",
    "to_channel_last",
    "from_channel_last",
    "codes_to_grid",
    "grid_to_codes",
    "code_histogram",
    "all_reduce_histogram",
    "histogram_summary",
]
