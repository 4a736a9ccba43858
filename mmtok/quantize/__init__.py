"""Shared quantizers: one protocol (``Quantizer``), one output dataclass (``QuantizerOutput``).

    q = mmtok.quantize.build({"type": "fsq", "levels": [8, 8, 8, 5, 5, 5]}, dim=256)
    out = q(z)                 # z: (B, N, D) channel-last
    codes = q.encode(z); z_q = q.decode(codes)
"""

from __future__ import annotations

import inspect
from typing import Any

from mmtok.quantize.base import Quantizer, QuantizerOutput, check_tokens
from mmtok.quantize.fmap import codes_to_grid, from_channel_last, grid_to_codes, to_channel_last
from mmtok.quantize.fsq import FSQ
from mmtok.quantize.lfq import BSQ, LFQ
from mmtok.quantize.nested import NestedDropout, NestedDropoutOutput
from mmtok.quantize.residual import RVQ, ResidualFSQ
from mmtok.quantize.vq import VQ

QUANTIZERS: dict[str, type[Quantizer]] = {cls.kind: cls for cls in (VQ, RVQ, FSQ, ResidualFSQ, LFQ, BSQ)}


def list_quantizers() -> list[str]:
    return sorted(QUANTIZERS)


def build(cfg: dict[str, Any], dim: int | None = None) -> Quantizer:
    """Build a quantizer from a config mapping ``{"type": KIND, **kwargs}`` (as written in YAML).

    ``dim`` fills the input size when the mapping does not give it. Unknown types or keys
    raise a ``ValueError`` naming the valid ones.
    """
    if not isinstance(cfg, dict) or "type" not in cfg:
        raise ValueError(f"a quantizer config is a mapping with a 'type' key (one of {list_quantizers()}), got {cfg!r}")
    params = {k: v for k, v in cfg.items() if k != "type"}
    kind = str(cfg["type"]).lower()
    if kind not in QUANTIZERS:
        raise ValueError(f"unknown quantizer type {cfg['type']!r}; choose from {list_quantizers()}")
    cls = QUANTIZERS[kind]
    if dim is not None:
        params.setdefault("dim", dim)
    valid = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "kwargs")]
    if kind == "bsq":
        valid = sorted(set(valid) | set(inspect.signature(LFQ.__init__).parameters) - {"self", "kwargs", "spherical"})
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for quantizer {kind!r}; valid: {sorted(valid)}")
    if "dim" not in params:
        raise ValueError(f"quantizer {kind!r} needs 'dim'")
    return cls(**params)


__all__ = [
    "Quantizer",
    "QuantizerOutput",
    "VQ",
    "RVQ",
    "FSQ",
    "ResidualFSQ",
    "LFQ",
    "BSQ",
    "NestedDropout",
    "NestedDropoutOutput",
    "QUANTIZERS",
    "build",
    "list_quantizers",
    "check_tokens",
    "to_channel_last",
    "from_channel_last",
    "codes_to_grid",
    "grid_to_codes",
]
