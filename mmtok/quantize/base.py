"""The quantizer protocol shared by every method, its output dataclass and codebook metrics."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mmtok.distributed import is_distributed
from mmtok.quantize.stats import all_reduce_histogram, bincount_levels, histogram_summary, level_ids
from mmtok.tokenizer import as_codes


class LazyMetrics(Mapping[str, Tensor]):
    """A read-only mapping computed on first access, so a training step that never reads the
    codebook metrics does not pay for the codebook-sized histogram."""

    def __init__(self, compute: Callable[[], dict[str, Tensor]]) -> None:
        self._compute: Callable[[], dict[str, Tensor]] | None = compute
        self._data: dict[str, Tensor] | None = None

    def _get(self) -> dict[str, Tensor]:
        if self._data is None:
            assert self._compute is not None
            self._data, self._compute = self._compute(), None
        return self._data

    def __getitem__(self, key: str) -> Tensor:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())

    def __repr__(self) -> str:
        return f"LazyMetrics({self._get()!r})"


@dataclass
class QuantizerOutput:
    """quantized: (B, N, D) with straight-through gradient, in the input dtype.
    codes:     (B, N) or (B, N, Q) int64 ids in [0, codebook_size) (-1 marks a residual level
               dropped by quantizer dropout in training).
    loss:      0-dim fp32 tensor, already weighted (commitment / codebook / entropy terms).
    metrics:   detached 0-dim tensors: usage, perplexity, dead_codes (a mapping computed on
               first read; eager and all-reduced under torch.distributed).
    """

    quantized: Tensor
    codes: Tensor
    loss: Tensor
    metrics: Mapping[str, Tensor] = field(default_factory=dict)


def check_tokens(z: Tensor, dim: int, name: str = "z", finite: bool = True) -> None:
    """Validate a channel-last (B, N, D) float input; raise a clear error otherwise.

    ``finite=False`` skips the NaN/inf check, for a quantizer that runs ``check_finite`` on a
    smaller tensor derived from ``z`` (see ``FSQ``)."""
    if not isinstance(z, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(z).__name__}")
    if z.ndim != 3:
        raise ValueError(
            f"{name} must be channel-last (B, N, D), got shape {tuple(z.shape)}; "
            "use mmtok.quantize.to_channel_last() for (B, D, ...) feature maps"
        )
    if z.shape[-1] != dim:
        raise ValueError(f"{name} has feature dim {z.shape[-1]}, but the quantizer was built with dim={dim}")
    if not torch.is_floating_point(z):
        raise TypeError(f"{name} must be a floating tensor, got {z.dtype}")
    if finite:
        check_finite(z, name)


def check_finite(t: Tensor, name: str = "z", source: Tensor | None = None) -> None:
    """Raise ``ValueError("<name> contains NaN or inf")`` when ``t`` has a NaN or inf.

    ``source``: the tensor the error is about, when ``t`` is derived from it (a linear map of
    it, whose rows are non-finite wherever the source rows are); a non-finite ``t`` is then
    confirmed on ``source`` itself, so a huge but finite input that overflows is not refused.
    """
    z = t if source is None else source
    if z.is_cuda:
        t = z  # on the GPU the full check is cheap and never syncs; no overflow corner case
    # A sum is finite iff no element is NaN/inf (barring overflow of huge finite values, which
    # the exact check below then rules out); one reduction is much cheaper than isfinite().all().
    total = t.detach().sum()
    if t.is_cuda:
        # No host sync on the hot path: the device raises asynchronously.
        torch._assert_async(torch.isfinite(total), f"{name} contains NaN or inf")
    elif not bool(torch.isfinite(total)) and not bool(torch.isfinite(z).all()):
        raise ValueError(f"{name} contains NaN or inf")


@contextmanager
def full_precision(device_type: str):
    """Disable autocast so quantization math runs in fp32."""
    if torch.is_autocast_enabled(device_type):
        with torch.autocast(device_type=device_type, enabled=False):
            yield
    else:
        yield


@contextmanager
def eval_mode(module: nn.Module):
    was = module.training
    module.train(False)
    try:
        yield
    finally:
        module.train(was)


class Quantizer(nn.Module):
    """Protocol: ``forward(z) -> QuantizerOutput``, ``encode``, ``decode``, sizes and metrics.

    Subclasses call ``super().__init__(dim, codebook_size, num_levels, dead_window)`` and
    implement ``_quantize(z) -> (quantized, codes, loss)`` and ``_decode(codes)`` on fp32
    channel-last tensors; this class adds input checks, fp32 under autocast, dtype
    restoration and codebook metrics (histograms all-reduced under torch.distributed).

    The dead-code tracker (when each of the ``num_levels * codebook_size`` codes was last
    used, and the training-step count) is module state: the buffers ``_last_used`` and
    ``_step`` are saved by ``state_dict()`` and restored on load, so a resumed run counts
    dead codes as the uninterrupted one would. Checkpoints written before these buffers
    existed load with the tracker reset to zero.
    """

    kind: ClassVar[str] = ""
    is_residual: ClassVar[bool] = False
    TRACKER_BUFFERS: ClassVar[tuple[str, ...]] = ("_last_used", "_step")
    # True when ``_quantize`` checks the input for NaN/inf itself (on a cheaper derived tensor)
    checks_finite_itself: ClassVar[bool] = False

    def __init__(self, dim: int, codebook_size: int, num_levels: int = 1, dead_window: int = 100) -> None:
        super().__init__()
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        if codebook_size < 2:
            raise ValueError(f"codebook_size must be >= 2, got {codebook_size}")
        if num_levels < 1:
            raise ValueError(f"num_levels must be >= 1, got {num_levels}")
        self.dim = dim
        self._codebook_size = int(codebook_size)
        self.num_levels = int(num_levels)
        self.dead_window = dead_window
        # +1: the spare bin that absorbs -1 (dropped residual level)
        self.register_buffer("_last_used", torch.zeros(self.num_levels * self._codebook_size + 1, dtype=torch.long))
        self.register_buffer("_step", torch.zeros((), dtype=torch.long))

    @classmethod
    def default_dim(cls, spec: Mapping[str, Any]) -> int | None:
        """Input size D implied by the options ``spec`` (without ``type``); None when the
        model must give it (e.g. VQ without ``codebook_dim``)."""
        return None

    @classmethod
    def option(cls, spec: Mapping[str, Any], name: str) -> Any:
        """``spec[name]``, else this class's own default for it (from its ``__init__``)."""
        if name in spec:
            return spec[name]
        return inspect.signature(cls.__init__).parameters[name].default

    # --- to implement ----------------------------------------------------------------
    def _quantize(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def _decode(self, codes: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    @property
    def codebook_size(self) -> int:
        """Codes per level K."""
        return self._codebook_size

    @property
    def num_codebooks(self) -> int:
        """Number of code ids per token (residual levels in use)."""
        return 1

    @property
    def bits_per_token(self) -> float:
        return self.num_codebooks * math.log2(self.codebook_size)

    # --- protocol ----------------------------------------------------------------------
    def forward(self, z: Tensor) -> QuantizerOutput:
        check_tokens(z, self.dim, finite=not self.checks_finite_itself)
        with full_precision(z.device.type):
            q, codes, loss = self._quantize(z.float())
        metrics = self.code_metrics(codes)
        return QuantizerOutput(quantized=q.to(z.dtype), codes=codes, loss=loss.float().reshape(()), metrics=metrics)

    @torch.no_grad()
    def encode(self, z: Tensor) -> Tensor:
        """Token ids for ``z`` (B, N, D); side-effect free (runs in eval mode)."""
        check_tokens(z, self.dim, finite=not self.checks_finite_itself)
        with eval_mode(self), full_precision(z.device.type):
            return self._quantize(z.float())[1]

    def decode(self, codes: Tensor) -> Tensor:
        """(B, N) or (B, N, Q) ids of any integer dtype -> (B, N, D) fp32 quantized vectors."""
        codes = as_codes(codes, self._step.device)
        self.check_codes(codes)
        with full_precision(codes.device.type):
            return self._decode(codes)

    def check_codes(self, codes: Tensor) -> None:
        if not isinstance(codes, Tensor) or codes.is_floating_point() or codes.is_complex():
            raise TypeError("codes must be an integer tensor")
        expected = 2 if self.num_codebooks == 1 and not self.is_residual else 3
        if codes.ndim != expected:
            raise ValueError(f"codes must have {expected} dims for {type(self).__name__}, got shape {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.codebook_size}), got [{int(codes.min())}, {int(codes.max())}]")

    # --- metrics -----------------------------------------------------------------------
    @torch.no_grad()
    def code_metrics(self, codes: Tensor) -> Mapping[str, Tensor]:
        """usage (fraction of codes used in the batch), perplexity, dead_codes.

        Residual codes are counted per level and averaged. ``dead_codes`` counts codes not
        used during the last ``dead_window`` training steps (in eval: not used in the batch).
        Under torch.distributed (world > 1) the histogram is all-reduced, eagerly, so every
        rank takes part in the collective; otherwise usage and perplexity are computed on
        first read.
        """
        K = self.codebook_size
        codes = codes.detach()
        levels = codes.shape[-1] if codes.ndim == 3 else 1
        spare = self.num_levels * K  # tracker layout: level i -> bins [i*K, (i+1)*K)
        ids = level_ids(codes, K, levels, spare=spare)

        def summary(hist: Tensor, dead: Tensor | None) -> dict[str, Tensor]:
            s = histogram_summary(hist, K)
            used = (hist > 0).sum(-1)
            return {"usage": s["usage"], "perplexity": s["perplexity"],
                    "dead_codes": (K - used if dead is None else dead).float().mean()}

        if is_distributed():
            hist = all_reduce_histogram(bincount_levels(ids, K, levels))
            dead = self._track_dead(hist.reshape(-1) > 0, levels) if self.training else None
            return summary(hist, dead)
        # the dead-code count is read lazily too: read it in the step that produced it
        dead = self._track_dead(ids, levels, lazy=True) if self.training else None
        return LazyMetrics(lambda: summary(bincount_levels(ids, K, levels), None if dead is None else dead()))

    def _track_dead(self, used: Tensor, levels: int, lazy: bool = False) -> Tensor | Callable[[], Tensor]:
        """Mark codes as used at this step (``used``: a bool mask over the first levels*K
        codes, or flat code ids); return per-level counts of codes unused for
        ``dead_window`` steps (or, with ``lazy``, a function computing them)."""
        n = levels * self.codebook_size
        self._step += 1
        if used.dtype == torch.bool:
            self._last_used[:n].masked_fill_(used, self._step)
        else:
            self._last_used.index_fill_(0, used, self._step)
        # a snapshot of the cutoff (the step buffer moves on); the counts read the live
        # buffer, so the lazy count belongs to the step that produced it
        last_used, cutoff = self._last_used[:n], self._step - self.dead_window

        def count() -> Tensor:
            return (last_used <= cutoff).reshape(levels, self.codebook_size).sum(-1)

        return count if lazy else count()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        """Checkpoints without the dead-code tracker (older files) load with it reset to zero."""
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)
        for name in self.TRACKER_BUFFERS:
            key = prefix + name
            if key not in state_dict and key in missing_keys:
                missing_keys.remove(key)
                getattr(self, name).zero_()
