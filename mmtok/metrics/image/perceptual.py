"""LPIPS (VGG) of reconstructions, per number of kept tokens.

The network is ``mmtok.losses.LPIPS`` (shared with the training losses), imported only when
LPIPS is measured; the hash of its weights goes into the protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from mmtok.metrics.protocol import module_sha256
from mmtok.metrics.reduce import MeanMetric

NOT_COMPUTED = {"description": "not computed"}


class LPIPSMetric:
    """Mean VGG LPIPS between reconstructions and originals, both taken from uint8 pixels.

    Args:
        weights: ``mmtok.losses.LPIPS`` weights ("auto", "random", a path).
        lengths: the prefix lengths evaluated (one mean each).
    """

    def __init__(self, weights: str, lengths: Sequence[int]) -> None:
        self.weights = str(weights)
        self.means = {k: MeanMetric() for k in lengths}
        self.net: Any = None
        self.description: dict[str, Any] = NOT_COMPUTED

    def setup(self, device: torch.device) -> None:
        from mmtok.layers.lpips import LPIPS

        # built from a fixed seed, outside the caller's RNG stream: "random" weights are the same
        # network in every run (real weights overwrite every parameter, so they are unaffected)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net = LPIPS(net="vgg", weights=self.weights)
        self.net = net.to(device).eval()
        sha = module_sha256(self.net)
        self.description = {
            "description": f"VGG LPIPS, weights '{self.weights}' (state sha256 {sha[:16]}), inputs in [-1, 1] from uint8 pixels",
            "weights": self.weights,
            "state_sha256": sha,
            "trunk_verified": bool(net.trunk_verified),
        }

    def update(self, k: int, rec: Tensor, real: Tensor) -> None:
        """``rec`` / ``real``: (B, 3, H, W) in [-1, 1], already rounded to uint8 levels."""
        self.means[k].update(self.net(rec, real).flatten())

    def compute(self) -> dict[int, float]:
        """Mean per length over all ranks (collective)."""
        return {k: m.compute() for k, m in self.means.items()}
