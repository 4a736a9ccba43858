"""Base class and output dataclass shared by every image / video / audio tokenizer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import Tensor, nn


@dataclass
class TokenizerOutput:
    """What ``tok(x)`` returns for training.

    recon:   reconstruction, same shape as the input, in [-1, 1] (not clamped in training)
    codes:   int token ids (layout per modality, residual level last)
    loss:    0-dim tensor, the tokenizer's own auxiliary loss (quantizer terms)
    metrics: detached 0-dim tensors (codebook usage, perplexity, ...)
    """

    recon: Tensor
    codes: Tensor
    loss: Tensor
    metrics: dict[str, Tensor] = field(default_factory=dict)


class Tokenizer(nn.Module, PyTorchModelHubMixin):
    """Common protocol: ``encode``, ``decode``, ``forward``, ``save_pretrained``.

    Subclasses set ``config_class`` (their family's dataclass) and ``modality`` and are
    constructed from a config instance: ``Cls(config)``. ``mmtok.load_tokenizer`` rebuilds
    any subclass registered with ``mmtok.registry.register_family`` from its ``config.json``.
    """

    config_class: ClassVar[type]
    modality: ClassVar[str] = "image"

    def __init__(self, config: Any) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} expects a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        self.variant_name: str | None = None

    # --- protocol -----------------------------------------------------------------
    def encode(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def decode(self, codes: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def num_tokens(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def codebook_size(self) -> int:
        """Codes per token id; by default the ``quantizer`` submodule's."""
        quantizer = getattr(self, "quantizer", None)
        if quantizer is None:  # pragma: no cover - subclasses without a quantizer override this
            raise NotImplementedError(f"{type(self).__name__} must define codebook_size")
        return quantizer.codebook_size

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    # --- persistence ----------------------------------------------------------------
    def save_pretrained(self, save_directory: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Write ``model.safetensors`` + ``config.json`` (family, variant, config, mmtok version)."""
        from mmtok.checkpoint import save_pretrained

        save_pretrained(self, save_directory, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, **kwargs: Any) -> "Tokenizer":  # type: ignore[override]
        from mmtok.checkpoint import load_tokenizer

        tok = load_tokenizer(pretrained_model_name_or_path, **kwargs)
        if not isinstance(tok, cls):
            raise TypeError(f"{pretrained_model_name_or_path} holds a {type(tok).__name__}, not a {cls.__name__}")
        return tok


def check_range(x: Tensor, name: str = "input", tol: float = 1e-3) -> None:
    """Raise if ``x`` is not a floating tensor with finite values in [-1, 1]."""
    if not torch.is_floating_point(x):
        raise TypeError(
            f"{name} must be a float tensor in [-1, 1], got dtype {x.dtype}; "
            "convert uint8 data with mmtok.data.to_model_range()"
        )
    if x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)})")
    lo, hi = torch.aminmax(x.detach())
    lo, hi = float(lo), float(hi)
    if not (lo == lo and hi == hi) or lo in (float("inf"), float("-inf")) or hi in (float("inf"), float("-inf")):
        raise ValueError(f"{name} contains NaN or inf")
    if lo < -1 - tol or hi > 1 + tol:
        hint = " (looks like [0, 255] data)" if hi > 2 else ""
        raise ValueError(f"{name} must lie in [-1, 1], got values in [{lo:.3g}, {hi:.3g}]{hint}")
