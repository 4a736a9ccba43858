"""FSQ: finite scalar quantization (wraps vector_quantize_pytorch.FSQ). No codebook, no aux loss."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from torch import Tensor
from vector_quantize_pytorch import FSQ as _FSQ

from mmtok.quantize.base import Quantizer


def check_levels(levels: list[int] | tuple[int, ...]) -> list[int]:
    """FSQ levels as a list of ints >= 2 (a clear error otherwise)."""
    out = [int(v) for v in levels]
    if not out or any(v < 2 for v in out):
        raise ValueError(f"FSQ levels must be a non-empty list of ints >= 2, got {list(levels)}")
    return out


class FSQ(Quantizer):
    """Finite scalar quantization with per-channel ``levels`` (codebook size = prod(levels)).

    FlexTok and Cosmos use levels [8, 8, 8, 5, 5, 5] (64,000 codes). The input size
    defaults to ``len(levels)`` (``default_dim``): one latent channel per level.
    """

    kind = "fsq"

    def __init__(self, dim: int, levels: list[int] | tuple[int, ...] = (8, 8, 8, 5, 5, 5), dead_window: int = 100) -> None:
        levels = check_levels(levels)
        super().__init__(dim, math.prod(levels), dead_window=dead_window)
        self.levels = levels
        self.fsq = _FSQ(levels=levels, dim=dim, preserve_symmetry=any(v == 2 for v in levels))

    @classmethod
    def default_dim(cls, spec: Mapping[str, Any]) -> int:
        return len(cls.option(spec, "levels"))

    def _quantize(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q, codes = self.fsq(z)
        return q, codes.long(), z.new_zeros(())

    def _decode(self, codes: Tensor) -> Tensor:
        return self.fsq.indices_to_codes(codes)
