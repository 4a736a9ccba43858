"""FSQ: finite scalar quantization (wraps vector_quantize_pytorch.FSQ). No codebook, no aux loss."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from torch import Tensor
from vector_quantize_pytorch import FSQ as _FSQ

from mmtok.quantize.base import Quantizer, check_finite


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
        # ``_quantize`` follows the wrapped forward for exactly this configuration
        assert self.fsq.num_codebooks == 1 and not self.fsq.orthogonal_rotation and not self.fsq.channel_first

    @classmethod
    def default_dim(cls, spec: Mapping[str, Any]) -> int:
        return len(cls.option(spec, "levels"))

    # The NaN/inf check runs on the projected (B, N, len(levels)) latent instead of the
    # (B, N, D) input: a NaN or inf anywhere in a row of z makes that row of the linear map
    # non-finite (x * w is NaN/inf for any w when x is), and it is D / len(levels) times smaller.
    checks_finite_itself = True

    def _quantize(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        # The steps of the wrapped module's forward for this configuration (channel-last input,
        # one codebook, no rotation), called one by one so the finite check can see the
        # projected latent and the einops reshapes of the generic path are skipped; the same
        # operations in the same order, so outputs are bitwise those of ``self.fsq(z)``.
        f = self.fsq
        h = f.project_in(z)
        check_finite(h, "z", source=z)
        zq = f.quantize(h)
        codes = f.codes_to_indices(zq)
        zq = f.maybe_apply_noise(zq)
        return f.project_out(zq), codes.long(), z.new_zeros(())

    def _decode(self, codes: Tensor) -> Tensor:
        return self.fsq.indices_to_codes(codes)
