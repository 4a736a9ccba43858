"""VQ: nearest-neighbour vector quantization (wraps vector_quantize_pytorch.VectorQuantize)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from vector_quantize_pytorch import VectorQuantize
from vector_quantize_pytorch.vector_quantize_pytorch import Codebook

from mmtok.quantize.base import Quantizer

# Constructor options of VQ / RVQ handed to vector-quantize-pytorch under the same name.
LIBRARY_OPTIONS = (
    "codebook_size", "codebook_dim", "use_cosine_sim", "ema_update", "decay", "kmeans_init",
    "kmeans_iters", "threshold_ema_dead_code", "commitment_weight", "rotation_trick",
)


def library_options(args: Mapping[str, Any]) -> dict[str, Any]:
    """The VQ options among ``args`` (a constructor's ``locals()``) as vector-quantize-pytorch
    keyword arguments; without EMA updates the codebook is learned by gradient."""
    return {**{k: args[k] for k in LIBRARY_OPTIONS}, "learnable_codebook": not args["ema_update"]}


class KMeansInit:
    """k-means initialisation that happens in training only.

    vector-quantize-pytorch runs its k-means on the first batch it sees, in eval mode too,
    and starts from an all-zero codebook. Here the codebooks start random (as without
    k-means) and an eval-mode call (``encode``, validation) uses them as they are: k-means
    waits for the first training batch, so ``encode`` stays side-effect free.
    """

    def __init__(self, module: nn.Module) -> None:
        # codebooks built with kmeans_init=True are the ones not initialised yet
        self.codebooks = [m for m in module.modules() if isinstance(m, Codebook) and not bool(m.initted)]
        with torch.no_grad():
            for cb in self.codebooks:
                nn.init.kaiming_uniform_(cb.embed)
                if cb.use_cosine_sim:
                    cb.embed.copy_(F.normalize(cb.embed, dim=-1))
                cb.embed_avg.copy_(cb.embed)

    @contextmanager
    def deferred(self, training: bool) -> Iterator[None]:
        """Within: in eval mode, uninitialised codebooks skip k-means (their flag is restored)."""
        waiting = [] if training else [cb for cb in self.codebooks if not bool(cb.initted)]
        for cb in waiting:
            cb.initted.fill_(True)
        try:
            yield
        finally:
            for cb in waiting:
                cb.initted.fill_(False)


class VQ(Quantizer):
    """Single-codebook VQ.

    Args:
        dim: input feature size D (``default_dim``: ``codebook_dim`` when given, else the
            model must say).
        codebook_size: number of codes K.
        codebook_dim: low-dimensional lookup space (factorised codes); None = ``dim``.
        use_cosine_sim: l2-normalise inputs and codes (TiTok / LlamaGen style lookup).
        ema_update: EMA codebook updates (True) or a codebook learned by gradient (False).
        decay: EMA decay.
        kmeans_init: initialise codes by k-means (``kmeans_iters`` rounds; cosine k-means for
            a cosine-sim codebook) on the first training batch.
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
        super().__init__(dim, codebook_size, dead_window=dead_window)
        self.vq = VectorQuantize(dim=dim, channel_last=True, **library_options(locals()))
        self.kmeans = KMeansInit(self.vq)

    @classmethod
    def default_dim(cls, spec: Mapping[str, Any]) -> int | None:
        return cls.option(spec, "codebook_dim")

    def _quantize(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        with self.kmeans.deferred(self.training):
            q, codes, loss = self.vq(z)
        return q, codes.long(), loss.sum()

    def _decode(self, codes: Tensor) -> Tensor:
        return self.vq.get_output_from_indices(codes)
