"""Nested dropout for ordered 1D token sequences (FlexTok nested dropout, One-D-Piece tail drop).

In training each sample keeps a random prefix of k tokens and the tail is replaced by a
learned mask token, so the decoder learns to decode any prefix and information
concentrates at the head of the sequence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class NestedDropoutOutput:
    tokens: Tensor  # (B, N, D): kept prefix unchanged, tail replaced by the mask token
    keep: Tensor  # (B,) int64 number of kept tokens per sample
    mask: Tensor  # (B, N) bool, True where a token is kept


class NestedDropout(nn.Module):
    """Keep a random prefix of ``k`` of ``num_tokens`` tokens per sample in training.

    Args:
        dim: token feature size D.
        num_tokens: sequence length N.
        mode: "uniform" (k uniform in [min_keep, N]) or "pow2" (k uniform over the powers
            of two in [min_keep, N], plus N itself).
        min_keep: smallest prefix length.
        p: probability that a sample is dropped at all (the others keep all N tokens).
        per_sample: one k per sample (FlexTok) or one k per batch (One-D-Piece).
    """

    MODES = ("uniform", "pow2")

    def __init__(
        self,
        dim: int,
        num_tokens: int,
        mode: str = "uniform",
        min_keep: int = 1,
        p: float = 1.0,
        per_sample: bool = True,
    ) -> None:
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        if not 1 <= min_keep <= num_tokens:
            raise ValueError(f"min_keep must be in [1, {num_tokens}], got {min_keep}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        self.dim, self.num_tokens, self.mode, self.min_keep, self.p, self.per_sample = dim, num_tokens, mode, min_keep, p, per_sample
        self.mask_token = nn.Parameter(torch.randn(dim) * 0.02)
        choices = self.allowed_lengths()
        self.register_buffer("_choices", torch.tensor(choices, dtype=torch.long), persistent=False)

    def allowed_lengths(self) -> list[int]:
        """Every prefix length training can sample, in increasing order."""
        if self.mode == "uniform":
            return list(range(self.min_keep, self.num_tokens + 1))
        pows = [2**i for i in range(int(math.log2(self.num_tokens)) + 1) if 2**i >= self.min_keep]
        return sorted(set(pows) | {self.num_tokens})

    def sample_keep(self, batch: int, device: torch.device | None = None, generator: torch.Generator | None = None) -> Tensor:
        """(B,) prefix lengths drawn per ``mode`` (and ``p``, ``per_sample``)."""
        device = device or self._choices.device
        n = batch if self.per_sample else 1
        idx = torch.randint(len(self._choices), (n,), generator=generator, device=self._choices.device)
        keep = self._choices[idx]
        if self.p < 1.0:
            drop = torch.rand(n, generator=generator, device=self._choices.device) < self.p
            keep = torch.where(drop, keep, torch.full_like(keep, self.num_tokens))
        return keep.expand(batch).to(device) if not self.per_sample else keep.to(device)

    def forward(self, tokens: Tensor, keep: Tensor | int | None = None) -> NestedDropoutOutput:
        """Mask the tail of ``tokens`` (B, N, D). ``keep`` defaults to a random draw in
        training and to N (no-op) in eval."""
        if tokens.ndim != 3 or tokens.shape[1] != self.num_tokens or tokens.shape[2] != self.dim:
            raise ValueError(f"expected tokens of shape (B, {self.num_tokens}, {self.dim}), got {tuple(tokens.shape)}")
        b = tokens.shape[0]
        if keep is None:
            keep = self.sample_keep(b, tokens.device) if self.training else torch.full((b,), self.num_tokens, device=tokens.device)
        elif isinstance(keep, int):
            keep = torch.full((b,), keep, device=tokens.device)
        keep = keep.to(device=tokens.device, dtype=torch.long)
        if keep.shape != (b,):
            raise ValueError(f"keep must have shape ({b},), got {tuple(keep.shape)}")
        if keep.numel() and (int(keep.min()) < 1 or int(keep.max()) > self.num_tokens):
            raise ValueError(f"keep must lie in [1, {self.num_tokens}]")
        mask = torch.arange(self.num_tokens, device=tokens.device)[None, :] < keep[:, None]
        out = torch.where(mask[..., None], tokens, self.mask_token.to(tokens.dtype))
        return NestedDropoutOutput(tokens=out, keep=keep, mask=mask)

    def pad(self, prefix: Tensor) -> Tensor:
        """Complete a decoded prefix (B, k, D) to (B, N, D) with mask tokens (inference)."""
        b, k, d = prefix.shape
        if not 1 <= k <= self.num_tokens or d != self.dim:
            raise ValueError(f"prefix must be (B, k, {self.dim}) with 1 <= k <= {self.num_tokens}, got {tuple(prefix.shape)}")
        tail = self.mask_token.to(prefix.dtype).expand(b, self.num_tokens - k, d)
        return torch.cat([prefix, tail], dim=1)
