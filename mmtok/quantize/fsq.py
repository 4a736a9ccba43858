"""FSQ: finite scalar quantization (wraps vector_quantize_pytorch.FSQ). No codebook, no aux loss."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from vector_quantize_pytorch import FSQ as _FSQ

from mmtok.quantize.base import Quantizer


class FSQ(Quantizer):
    """Finite scalar quantization with per-channel ``levels`` (codebook size = prod(levels)).

    FlexTok and Cosmos use levels [8, 8, 8, 5, 5, 5] (64,000 codes).
    """

    kind = "fsq"

    def __init__(self, dim: int, levels: list[int] | tuple[int, ...] = (8, 8, 8, 5, 5, 5), dead_window: int = 100) -> None:
        super().__init__(dim, dead_window)
        levels = [int(v) for v in levels]
        if not levels or any(v < 2 for v in levels):
            raise ValueError(f"FSQ levels must be a non-empty list of ints >= 2, got {levels}")
        self.levels = levels
        self.fsq = _FSQ(levels=levels, dim=dim, preserve_symmetry=any(v == 2 for v in levels))
        self._codebook_size = math.prod(levels)

    @property
    def codebook_size(self) -> int:
        return self._codebook_size

    def _quantize(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q, codes = self.fsq(z)
        return q, codes.long(), z.new_zeros(())

    def _decode(self, codes: Tensor) -> Tensor:
        return self.fsq.indices_to_codes(codes)
