"""Residual quantizers: RVQ (VQ per level) and ResidualFSQ, with quantizer dropout and an
explicit number of levels at inference.

Greedy residual quantization fixes level i before level i+1 is computed, so the first n
levels of an N-level encoding are exactly the n-level encoding: running fewer levels is
slicing the codes and summing fewer codewords. ``n_levels`` (attribute or argument) is
always honoured, in training and in eval; unlike DAC's ``n_quantizers`` it is never
silently ignored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from vector_quantize_pytorch import ResidualFSQ as _ResidualFSQ
from vector_quantize_pytorch import ResidualVQ as _ResidualVQ

from mmtok.quantize.base import Quantizer, check_tokens, eval_mode, full_precision
from mmtok.quantize.fsq import check_levels
from mmtok.quantize.vq import KMeansInit, library_options


class _Residual(Quantizer):
    """Shared by the residual quantizers: ``num_levels`` levels of ``codebook_size`` codes;
    subclasses set ``self.n_levels`` (validated by the setter) and implement ``_raw``."""

    is_residual = True

    @property
    def n_levels(self) -> int:
        """Residual levels used by forward/encode (default: all)."""
        return self._n_levels

    @n_levels.setter
    def n_levels(self, value: int | None) -> None:
        value = self.num_levels if value is None else int(value)
        if not 1 <= value <= self.num_levels:
            raise ValueError(f"n_levels must be in [1, {self.num_levels}], got {value}")
        self._n_levels = value

    @property
    def num_codebooks(self) -> int:
        return self.n_levels

    def _raw(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def _quantize(self, z: Tensor, n_levels: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
        n = self.n_levels if n_levels is None else n_levels
        q, codes, loss = self._raw(z)
        codes = codes.long()
        if n < self.num_levels:
            codes = codes[..., :n]
            # Quantized output of the first n levels, keeping the straight-through gradient.
            q_n = self._decode(codes)
            q = z + (q_n - z).detach()
        return q, codes, loss

    def _decode(self, codes: Tensor) -> Tensor:
        pad = self.num_levels - codes.shape[-1]
        if pad > 0:  # missing levels contribute nothing (-1 = masked in the wrapped class)
            codes = F.pad(codes, (0, pad), value=-1)
        return self.inner.get_output_from_indices(codes)

    @torch.no_grad()
    def encode(self, z: Tensor, n_levels: int | None = None) -> Tensor:
        """(B, N, D) -> (B, N, n_levels) ids; ``n_levels`` overrides the attribute for this call."""
        check_tokens(z, self.dim)
        if n_levels is not None and not 1 <= n_levels <= self.num_levels:
            raise ValueError(f"n_levels must be in [1, {self.num_levels}], got {n_levels}")
        with eval_mode(self), full_precision(z.device.type):
            return self._quantize(z.float(), n_levels)[1]

    def check_codes(self, codes: Tensor) -> None:
        super().check_codes(codes)
        if not 1 <= codes.shape[-1] <= self.num_levels:
            raise ValueError(f"codes have {codes.shape[-1]} levels; this quantizer has {self.num_levels}")


class RVQ(_Residual):
    """Residual VQ (SoundStream / EnCodec / DAC). Quantizer dropout: in training, a random
    number of levels in [dropout_min_levels, num_levels] is used per step (DAC uses p=0.5).
    The codebook options are VQ's (``mmtok.quantize.VQ``).

    ``eval_lookup="expanded"`` (Euclidean codebooks only): in eval mode the nearest codes are
    found here, with the expanded squared distance ``|r|^2 - 2 r.e + |e|^2`` in EnCodec's
    arithmetic, so codes converted from EnCodec equal its own bit for bit (the library's
    ``cdist`` differs in the last float bits, which flips rare near-ties). Training is unchanged.
    """

    kind = "rvq"

    def __init__(
        self,
        dim: int,
        num_levels: int = 8,
        codebook_size: int = 1024,
        codebook_dim: int | None = None,
        use_cosine_sim: bool = False,
        ema_update: bool = True,
        decay: float = 0.99,
        kmeans_init: bool = False,
        kmeans_iters: int = 10,
        threshold_ema_dead_code: float = 0.0,
        commitment_weight: float = 0.25,
        quantizer_dropout: bool = True,
        dropout_min_levels: int = 1,
        rotation_trick: bool = False,
        n_levels: int | None = None,
        dead_window: int = 100,
        eval_lookup: str = "library",
    ) -> None:
        super().__init__(dim, codebook_size, num_levels, dead_window)
        if eval_lookup not in ("library", "expanded"):
            raise ValueError(f"eval_lookup must be 'library' or 'expanded', got {eval_lookup!r}")
        if eval_lookup == "expanded" and use_cosine_sim:
            raise ValueError("eval_lookup='expanded' is the Euclidean lookup; it needs use_cosine_sim=False")
        self.eval_lookup = eval_lookup
        self.n_levels = n_levels
        self.inner = _ResidualVQ(
            dim=dim,
            num_quantizers=num_levels,
            quantize_dropout=quantizer_dropout and num_levels > 1,
            quantize_dropout_cutoff_index=max(0, dropout_min_levels - 1),
            **library_options(locals()),
        )
        self.kmeans = KMeansInit(self.inner)

    @classmethod
    def default_dim(cls, spec: Mapping[str, Any]) -> int | None:
        return cls.option(spec, "codebook_dim")

    def _raw(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if self.eval_lookup == "expanded" and not self.training:
            return self._expanded_lookup(z)
        with self.kmeans.deferred(self.training):
            q, codes, losses = self.inner(z)
        return q, codes, losses.sum()

    def _expanded_lookup(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Eval-mode greedy residual search over every level with the expanded squared distance."""
        x = self.inner.project_in(z)
        residual, out, codes = x, torch.zeros_like(x), []
        for layer in self.inner.layers:
            embed = layer._codebook.embed[0]  # (K, d)
            r, et = residual.reshape(-1, embed.shape[-1]), embed.t()
            neg = -(r.pow(2).sum(1, keepdim=True) - (2 * r) @ et + et.pow(2).sum(0, keepdim=True))
            ids = neg.max(dim=-1).indices
            q = F.embedding(ids, embed).reshape(residual.shape)
            residual = residual - q
            out = out + q
            codes.append(ids.reshape(residual.shape[:-1]))
        return self.inner.project_out(out), torch.stack(codes, dim=-1), z.new_zeros(())


class ResidualFSQ(_Residual):
    """Residual FSQ: each level quantizes the residual with FSQ ``levels`` (scaled per level).
    The input size defaults to ``len(levels)`` (``default_dim``)."""

    kind = "rfsq"

    def __init__(
        self,
        dim: int,
        levels: list[int] | tuple[int, ...] = (8, 5, 5, 5),
        num_levels: int = 4,
        quantizer_dropout: bool = True,
        dropout_min_levels: int = 1,
        n_levels: int | None = None,
        dead_window: int = 100,
    ) -> None:
        levels = check_levels(levels)
        super().__init__(dim, math.prod(levels), num_levels, dead_window)
        self.n_levels = n_levels
        self.levels = levels
        self.inner = _ResidualFSQ(
            dim=dim,
            levels=self.levels,
            num_quantizers=num_levels,
            quantize_dropout=quantizer_dropout and num_levels > 1,
            quantize_dropout_cutoff_index=max(0, dropout_min_levels - 1),
        )

    @classmethod
    def default_dim(cls, spec: Mapping[str, Any]) -> int:
        return len(cls.option(spec, "levels"))

    def _raw(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q, codes = self.inner(z)
        return q, codes, z.new_zeros(())
