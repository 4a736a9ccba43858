"""Base class and output dataclass shared by every image / video / audio tokenizer."""

from __future__ import annotations

import math
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
    """The contract every image / video / audio tokenizer fills.

    Subclasses set ``config_class`` (their family's dataclass) and ``modality`` (no
    default) and are constructed from a config instance: ``Cls(config)``.
    ``mmtok.load_tokenizer`` rebuilds any subclass registered with
    ``mmtok.registry.register_family`` from its ``config.json``.

    What the layers above (training loop, eval loop, shard encoder, AR data) read is
    declared here, so none of them probes a tokenizer with ``getattr``:

    - ``encode(x) -> codes``, ``decode(codes) -> x``, ``forward(x) -> TokenizerOutput``
    - ``check_input(x)``: shape / range / dtype / rate errors, before any work
    - ``token_shape``: the code grid of one item (residual level last when there are several)
    - ``codebook_sizes``: one entry per residual level; ``num_codebooks``; ``bits_per_item``
    - ``is_nested`` / ``prefix_lengths()``: prefix-decodable 1D tokens
    - ``rate_ladder()`` / ``truncate_codes(codes, k)`` / ``bits_at(k)`` / ``ladder_unit``: the code
      sizes quality is reported at (token prefixes, or residual levels for RVQ codecs)
    - ``last_layer_weight``: the decoder's output weight (adaptive GAN weight)
    - ``preprocessing()``: what a dataset must deliver (image: ``resolution``; audio:
      ``sample_rate``), passed to ``mmtok.data.open_dataset``
    - ``describe()``: modality facts recorded in shard metadata and eval reports
      (audio adds ``sample_rate`` / ``frame_rate``)
    - ``joint_modalities()`` / ``joint_preprocessing(m)`` / ``from_joint(x, m)``: batches of another
      modality the model also trains on (a video tokenizer trains on images as 1-frame clips)
    """

    config_class: ClassVar[type]
    modality: ClassVar[str]

    def __init__(self, config: Any) -> None:
        super().__init__()
        if not isinstance(getattr(type(self), "modality", None), str):
            raise TypeError(f"{type(self).__name__} must set the class attribute 'modality' ('image', 'video' or 'audio')")
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} expects a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        self.variant_name: str | None = None

    # --- protocol -----------------------------------------------------------------
    def encode(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def decode(self, codes: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def check_input(self, x: Tensor) -> None:  # pragma: no cover - abstract
        """Raise ``TypeError`` / ``ValueError`` saying what to fix if ``x`` cannot be encoded.

        Dtype policy, the same for every tokenizer: ``x`` must be float32 with values in
        [-1, 1]. Other dtypes are refused, never converted: integer data (uint8 images)
        raises a ``TypeError`` naming ``mmtok.data.to_model_range``; float64 / float16 /
        bfloat16 raise a ``TypeError`` saying to call ``x.float()`` (reduced precision is
        chosen with ``torch.autocast``, which keeps the input float32).
        """
        raise NotImplementedError

    @property
    def token_shape(self) -> tuple[int, ...]:  # pragma: no cover - abstract
        """Code grid of one item at the training size, without the residual-level axis."""
        raise NotImplementedError

    @property
    def last_layer_weight(self) -> Tensor:  # pragma: no cover - abstract
        """The decoder's last weight (the adaptive GAN weight balances gradients there)."""
        raise NotImplementedError

    def preprocessing(self) -> dict[str, Any]:  # pragma: no cover - abstract
        """Keyword arguments for ``mmtok.data.open_dataset`` that make items fit this model."""
        raise NotImplementedError

    # --- derived facts (override where they differ) -----------------------------------
    @property
    def num_tokens(self) -> int:
        """Token positions per item (product of ``token_shape``)."""
        return int(math.prod(self.token_shape))

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        """Codes per id, one entry per residual level (by default the ``quantizer``'s)."""
        quantizer = getattr(self, "quantizer", None)
        if quantizer is None:  # pragma: no cover - subclasses without a quantizer override this
            raise NotImplementedError(f"{type(self).__name__} must define codebook_sizes")
        return (int(quantizer.codebook_size),) * int(quantizer.num_codebooks)

    @property
    def codebook_size(self) -> int:
        """Largest codebook of any level (the id range a code may take)."""
        return max(self.codebook_sizes)

    @property
    def num_codebooks(self) -> int:
        """Residual levels (code ids per token position)."""
        return len(self.codebook_sizes)

    @property
    def codes_shape(self) -> tuple[int, ...]:
        """Shape of one item's codes: ``token_shape`` plus the level axis when there are several."""
        return self.token_shape if self.num_codebooks == 1 else (*self.token_shape, self.num_codebooks)

    @property
    def bits_per_item(self) -> float:
        """Bits of one item's codes at the training size."""
        return self.num_tokens * sum(math.log2(k) for k in self.codebook_sizes)

    @property
    def is_nested(self) -> bool:
        """True when every prefix ``codes[:, :k]`` decodes (ordered 1D tokens)."""
        return False

    def prefix_lengths(self) -> list[int]:
        """Prefix lengths worth reporting for a nested tokenizer (1, 2, 4, ..., K); ``[K]`` otherwise."""
        return prefix_lengths(self.num_tokens) if self.is_nested else [self.num_tokens]

    # --- the rate ladder: quality is reported at each rung, the full code last ---------------
    @property
    def ladder_unit(self) -> str:
        """What a rung counts: "tokens" (a prefix of ordered tokens) or "levels" (residual levels)."""
        return "tokens"

    def rate_ladder(self) -> list[int]:
        """Code sizes to report quality at, the full code last (default: ``prefix_lengths()``;
        residual codecs: levels 1..Q)."""
        return self.prefix_lengths()

    def truncate_codes(self, codes: Tensor, k: int) -> Tensor:
        """The codes of rung ``k`` (default: the first ``k`` tokens, ``codes[:, :k]``)."""
        return codes if k == self.rate_ladder()[-1] else codes[:, :k]

    def bits_at(self, k: int) -> float:
        """Bits of one item's codes at rung ``k`` (default: ``bits_per_item * k / full``)."""
        return self.bits_per_item * k / self.rate_ladder()[-1]

    # --- joint training: batches of another modality the model also trains on --------------
    def joint_modalities(self) -> tuple[str, ...]:
        """Other modalities whose batches this tokenizer trains on too (video: ``("image",)``)."""
        return ()

    def joint_preprocessing(self, modality: str) -> dict[str, Any]:
        """What a dataset of ``modality`` must deliver for joint training."""
        raise ValueError(f"{type(self).__name__} does not train on {modality} batches "
                         f"(joint modalities: {list(self.joint_modalities()) or 'none'})")

    def from_joint(self, x: Tensor, modality: str) -> Tensor:
        """A batch of ``modality`` in this tokenizer's own layout (video: images as 1-frame clips)."""
        raise ValueError(f"{type(self).__name__} does not train on {modality} batches")

    def describe(self) -> dict[str, Any]:
        """Modality-independent facts plus the modality's own (``preprocessing()``)."""
        return {
            "modality": self.modality,
            "family": type(self).__name__,
            "variant": self.variant_name,
            "token_shape": list(self.token_shape),
            "codebook_sizes": list(self.codebook_sizes),
            "bits_per_item": float(self.bits_per_item),
            "is_nested": bool(self.is_nested),
            **self.preprocessing(),
        }

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


def prefix_lengths(num_tokens: int) -> list[int]:
    """1, 2, 4, ... below ``num_tokens``, then ``num_tokens`` itself (the one prefix-length ladder)."""
    if num_tokens < 1:
        raise ValueError(f"num_tokens must be >= 1, got {num_tokens}")
    return [2**i for i in range(int(math.log2(num_tokens)) + 1) if 2**i < num_tokens] + [int(num_tokens)]


def as_codes(codes: Any, device: torch.device | None = None) -> Tensor:
    """Any integer tensor (int64, int32, uint16 as stored in shards, ...) -> int64 on ``device``.

    Raises ``TypeError`` for float / bool / complex input or non-tensors.
    """
    if not isinstance(codes, Tensor) or codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
        got = codes.dtype if isinstance(codes, Tensor) else type(codes).__name__
        raise TypeError(f"codes must be an integer tensor (as returned by encode), got {got}")
    # uint16/uint32 lack most kernels (min/max, indexing): widen on the CPU side first
    if codes.dtype in (torch.uint16, torch.uint32, torch.uint64):
        codes = codes.cpu().to(torch.int64)
    return codes.to(device=device, dtype=torch.int64) if device is not None else codes.to(torch.int64)


def check_range(x: Tensor, name: str = "input", tol: float = 1e-3) -> None:
    """Raise if ``x`` is not a float32 tensor with finite values in [-1, 1] (the dtype policy
    of ``Tokenizer.check_input``)."""
    if not torch.is_floating_point(x):
        raise TypeError(
            f"{name} must be a float32 tensor in [-1, 1], got dtype {x.dtype}; "
            "convert uint8 data with mmtok.data.to_model_range()"
        )
    if x.dtype != torch.float32:
        raise TypeError(
            f"{name} must be float32, got {x.dtype}; call x.float() "
            "(use torch.autocast for reduced-precision compute)"
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
