"""Factorised residual VQ (DAC / Improved RVQGAN): every level projects the residual into a
small space with its own weight-normed 1x1 conv, picks the code nearest by l2-normalised
(cosine) distance, and projects the raw codeword back with its own 1x1 conv.

    q = FactorizedRVQ(dim=1024, num_levels=9, codebook_size=1024, codebook_dim=8)

Unlike ``RVQ`` (one shared projection around vector-quantize-pytorch's residual loop, the
residual in the projected space), the residual here lives in the input space and each
level has its own projections and bias, which is the layout of DAC's checkpoints
(``mmtok convert`` maps them one to one). Codebooks are learned by gradient: ``loss =
commitment_weight * ||z_e - sg(c)||^2 + codebook_weight * ||c - sg(z_e)||^2`` per level.
Quantizer dropout (training): the first ``quantizer_dropout`` fraction of the batch keeps a
random number of levels in ``[dropout_min_levels, n_levels]``; dropped levels' codes are -1.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from mmtok.quantize.residual import _Residual


class FactorizedLevel(nn.Module):
    """One level: ``in_proj`` (D -> d), codebook (K x d), ``out_proj`` (d -> D), on (B, D, N) maps."""

    def __init__(self, dim: int, codebook_size: int, codebook_dim: int) -> None:
        super().__init__()
        self.in_proj = weight_norm(nn.Conv1d(dim, codebook_dim, 1))
        self.out_proj = weight_norm(nn.Conv1d(codebook_dim, dim, 1))
        self.codebook = nn.Embedding(codebook_size, codebook_dim)

    def nearest(self, z_e: Tensor) -> Tensor:
        """(B, d, N) projected latents -> (B, N) ids of the codes nearest after l2 normalisation."""
        b, d, _ = z_e.shape
        e = F.normalize(z_e.transpose(1, 2).reshape(-1, d))
        c = F.normalize(self.codebook.weight)
        sq_dist = e.pow(2).sum(1, keepdim=True) - (2 * e) @ c.t() + c.pow(2).sum(1, keepdim=True).t()
        return (-sq_dist).max(1).indices.reshape(b, -1)

    def forward(self, residual: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, D, N) -> (quantized (B, D, N) with straight-through gradient, ids (B, N), loss per item (B,) unweighted
        as (commitment, codebook) stacked on dim 0)."""
        z_e = self.in_proj(residual)
        ids = self.nearest(z_e)
        c = self.codebook(ids).transpose(1, 2)  # (B, d, N) raw codewords
        if self.training:
            losses = torch.stack([F.mse_loss(z_e, c.detach(), reduction="none").mean((1, 2)),
                                  F.mse_loss(c, z_e.detach(), reduction="none").mean((1, 2))])
        else:
            losses = z_e.new_zeros(2, z_e.shape[0])
        z_q = z_e + (c - z_e).detach()
        return self.out_proj(z_q), ids, losses

    def decode(self, ids: Tensor) -> Tensor:
        """(B, N) ids -> (B, D, N)."""
        return self.out_proj(self.codebook(ids).transpose(1, 2))


class FactorizedRVQ(_Residual):
    """Residual VQ with per-level factorised projections (DAC's quantizer); see the module docstring.

    Args:
        dim: input size D; num_levels: residual levels; codebook_size: codes K per level;
        codebook_dim: lookup size d; commitment_weight / codebook_weight: loss weights (DAC:
        0.25 / 1.0); quantizer_dropout: fraction of a training batch whose level count is
        drawn at random (DAC: 0.5; 0 disables); dropout_min_levels: the fewest levels kept.
    """

    kind = "factorized_rvq"

    def __init__(
        self,
        dim: int,
        num_levels: int = 9,
        codebook_size: int = 1024,
        codebook_dim: int = 8,
        commitment_weight: float = 0.25,
        codebook_weight: float = 1.0,
        quantizer_dropout: float = 0.5,
        dropout_min_levels: int = 1,
        n_levels: int | None = None,
        dead_window: int = 100,
    ) -> None:
        super().__init__(dim, codebook_size, num_levels, dead_window)
        if not 0.0 <= float(quantizer_dropout) <= 1.0:
            raise ValueError(f"quantizer_dropout is a fraction of the batch in [0, 1], got {quantizer_dropout!r}")
        if not 1 <= dropout_min_levels <= num_levels:
            raise ValueError(f"dropout_min_levels must be in [1, {num_levels}], got {dropout_min_levels}")
        self.n_levels = n_levels
        self.codebook_dim = int(codebook_dim)
        self.commitment_weight, self.codebook_weight = float(commitment_weight), float(codebook_weight)
        self.quantizer_dropout, self.dropout_min_levels = float(quantizer_dropout), int(dropout_min_levels)
        self.levels = nn.ModuleList(FactorizedLevel(dim, codebook_size, codebook_dim) for _ in range(num_levels))

    @classmethod
    def default_dim(cls, spec: Mapping[str, Any]) -> int | None:
        return None  # the projections map any D: the model gives it

    def _kept_levels(self, b: int, n: int, device: torch.device) -> Tensor:
        """(B,) levels kept per item: ``n``, or random for the dropout share of a training batch."""
        keep = torch.full((b,), n, device=device)
        m = int(b * self.quantizer_dropout) if self.training and n > self.dropout_min_levels else 0
        if m:
            keep[:m] = torch.randint(self.dropout_min_levels, n + 1, (m,), device=device)
        return keep

    def _quantize(self, z: Tensor, n_levels: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
        n = self.n_levels if n_levels is None else n_levels
        x = z.transpose(1, 2)  # (B, D, N): the encoder's own layout
        keep = self._kept_levels(x.shape[0], n, x.device)
        out, residual, codes = torch.zeros_like(x), x, []
        loss = x.new_zeros(())
        weights = x.new_tensor([self.commitment_weight, self.codebook_weight])
        for i in range(n):
            q_i, ids, losses = self.levels[i](residual)
            on = i < keep  # (B,)
            out = out + q_i * on[:, None, None]
            residual = residual - q_i
            codes.append(ids.masked_fill(~on[:, None], -1))
            if self.training:
                loss = loss + ((weights @ losses) * on).mean()
        return out.transpose(1, 2), torch.stack(codes, dim=-1), loss

    def _decode(self, codes: Tensor) -> Tensor:
        out: Tensor | float = 0.0
        for i in range(codes.shape[-1]):
            ids = codes[..., i]
            dropped = ids < 0
            q_i = self.levels[i].decode(ids.clamp(min=0))
            out = out + (q_i.masked_fill(dropped[:, None], 0.0) if bool(dropped.any()) else q_i)
        return out.transpose(1, 2)


__all__ = ["FactorizedRVQ", "FactorizedLevel"]
