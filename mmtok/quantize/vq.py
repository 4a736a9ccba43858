"""VQ: nearest-neighbour vector quantization (wraps vector_quantize_pytorch.VectorQuantize)."""

from __future__ import annotations

import torch
from torch import Tensor
from vector_quantize_pytorch import VectorQuantize

from mmtok.quantize.base import Quantizer


class VQ(Quantizer):
    """Single-codebook VQ.

    Args:
        dim: input feature size D.
        codebook_size: number of codes K.
        codebook_dim: low-dimensional lookup space (factorised codes); None = ``dim``.
        use_cosine_sim: l2-normalise inputs and codes (TiTok / LlamaGen style lookup).
        ema_update: EMA codebook updates (True) or a codebook learned by gradient (False).
        decay: EMA decay.
        kmeans_init: initialise codes by k-means on the first training batch.
        threshold_ema_dead_code: restart codes whose EMA cluster size falls below this
            with random batch vectors (0 disables restarts).
        commitment_weight: weight of ||z - sg(q)||^2.
        rotation_trick: gradient through the rotation trick instead of straight-through.
    """

    kind = "vq"

    def __init__(
        self,
        dim: int,
        codebook_size: int = 4096,
        codebook_dim: int | None = None,
        use_cosine_sim: bool = True,
        ema_update: bool = True,
        decay: float = 0.99,
        kmeans_init: bool = False,
        kmeans_iters: int = 10,
        threshold_ema_dead_code: float = 0.0,
        commitment_weight: float = 0.25,
        rotation_trick: bool = False,
        dead_window: int = 100,
    ) -> None:
        super().__init__(dim, dead_window)
        if codebook_size < 2:
            raise ValueError(f"codebook_size must be >= 2, got {codebook_size}")
        self._codebook_size = codebook_size
        self.vq = VectorQuantize(
            dim=dim,
            codebook_size=codebook_size,
            codebook_dim=codebook_dim,
            use_cosine_sim=use_cosine_sim,
            ema_update=ema_update,
            learnable_codebook=not ema_update,
            decay=decay,
            kmeans_init=kmeans_init,
            kmeans_iters=kmeans_iters,
            threshold_ema_dead_code=threshold_ema_dead_code,
            commitment_weight=commitment_weight,
            rotation_trick=rotation_trick,
            channel_last=True,
        )

    @property
    def codebook_size(self) -> int:
        return self._codebook_size

    def _quantize(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q, codes, loss = self.vq(z)
        return q, codes.long(), loss.sum()

    def _decode(self, codes: Tensor) -> Tensor:
        return self.vq.get_output_from_indices(codes)
