"""Reconstruction terms as named parts: ``weight * term(recon, x)``, logged as ``loss/<name>``.

A modality adds its own terms by name (images: ``perceptual`` = LPIPS; audio adds mel /
STFT terms) with :func:`register_loss_term`; the training loop builds the terms whose
weight is non-zero from the config, with no modality branches.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor, nn

_TERMS: dict[str, Callable[..., nn.Module]] = {}


def register_loss_term(name: str, factory: Callable[..., nn.Module]) -> None:
    """``factory(**options) -> module`` whose ``forward(recon, x)`` returns a 0-dim loss."""
    _TERMS[name] = factory


def loss_term_names() -> list[str]:
    return sorted(_TERMS)


def build_loss_term(name: str, context: Mapping[str, Any] | None = None, **options: Any) -> nn.Module:
    """Build a registered term. ``context`` holds facts about the data (a tokenizer's
    ``preprocessing()``, e.g. ``sample_rate``); each is passed only to factories that name it
    as a parameter and only when ``options`` do not set it."""
    if name not in _TERMS:
        raise ValueError(f"unknown loss term {name!r}; known: {loss_term_names()}")
    factory = _TERMS[name]
    if context:
        named = {p.name for p in inspect.signature(factory).parameters.values()
                 if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        options = {**{k: v for k, v in context.items() if k in named}, **options}
    return factory(**options)


class PixelLoss(nn.Module):
    """Mean absolute (``l1``) or squared (``l2``) error over every element, in fp32; any layout."""

    def __init__(self, kind: str = "l1") -> None:
        super().__init__()
        if kind not in ("l1", "l2"):
            raise ValueError(f"PixelLoss kind must be 'l1' or 'l2', got {kind!r}")
        self.kind = kind

    def forward(self, recon: Tensor, x: Tensor) -> Tensor:
        diff = recon.float() - x.float()
        return diff.abs().mean() if self.kind == "l1" else diff.pow(2).mean()


class PerceptualLoss(nn.Module):
    """Mean LPIPS distance between reconstruction and target images (B, 3, H, W) in [-1, 1], or
    between the frames of clips (B, 3, T, H, W)."""

    def __init__(self, weights: str = "auto", net: str = "vgg") -> None:
        super().__init__()
        from mmtok.layers.lpips import LPIPS

        self.lpips = LPIPS(net=net, weights=weights)

    def forward(self, recon: Tensor, x: Tensor) -> Tensor:
        if recon.ndim == 5:  # clips (B, C, T, H, W): the mean over every frame
            recon, x = (v.transpose(1, 2).flatten(0, 1) for v in (recon, x))
        return self.lpips(recon.float(), x.float()).mean()


register_loss_term("l1", lambda **_: PixelLoss("l1"))
register_loss_term("l2", lambda **_: PixelLoss("l2"))
register_loss_term("perceptual", lambda weights="auto", net="vgg", **_: PerceptualLoss(weights=weights, net=net))




