"""LFQ: lookup-free (binary) quantization with entropy loss; BSQ is LFQ on the unit sphere."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from torch import Tensor
from vector_quantize_pytorch import LFQ as _LFQ

from mmtok.quantize.base import Quantizer


class LFQ(Quantizer):
    """Each token becomes log2(codebook_size) sign bits (Open-MAGVIT2); the entropy loss pushes
    per-sample entropy down and batch entropy up (on by default: ``entropy_loss_weight=0.1``).
    ``spherical=True`` l2-normalises the projected input and the codes (BSQ). The input size
    defaults to log2(codebook_size) (``default_dim``): no projection."""

    kind = "lfq"

    def __init__(
        self,
        dim: int,
        codebook_size: int = 2**14,
        entropy_loss_weight: float = 0.1,
        commitment_loss_weight: float = 0.25,
        diversity_gamma: float = 1.0,
        spherical: bool = False,
        dead_window: int = 100,
    ) -> None:
        if codebook_size < 2 or not math.log2(codebook_size).is_integer():
            raise ValueError(f"LFQ codebook_size must be a power of two >= 2, got {codebook_size}")
        super().__init__(dim, codebook_size, dead_window=dead_window)
        self.spherical = spherical
        self.lfq = _LFQ(
            dim=dim,
            codebook_size=codebook_size,
            entropy_loss_weight=entropy_loss_weight,
            commitment_loss_weight=commitment_loss_weight,
            diversity_gamma=diversity_gamma,
            spherical=spherical,
        )

    @classmethod
    def default_dim(cls, spec: Mapping[str, Any]) -> int:
        return int(math.log2(int(cls.option(spec, "codebook_size"))))

    def _quantize(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q, codes, loss = self.lfq(z)
        return q, codes.long(), loss.sum()

    def _decode(self, codes: Tensor) -> Tensor:
        return self.lfq.indices_to_codes(codes)


class BSQ(LFQ):
    """Binary spherical quantization: LFQ with the projected input and codes on the unit sphere."""

    kind = "bsq"

    def __init__(
        self,
        dim: int,
        codebook_size: int = 2**14,
        entropy_loss_weight: float = 0.1,
        commitment_loss_weight: float = 0.25,
        diversity_gamma: float = 1.0,
        dead_window: int = 100,
    ) -> None:
        super().__init__(dim, codebook_size, entropy_loss_weight, commitment_loss_weight, diversity_gamma,
                         spherical=True, dead_window=dead_window)
