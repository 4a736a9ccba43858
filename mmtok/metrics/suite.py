"""Metric suites: what a modality measures on its reconstructions, registered by modality.

The reconstruction loop (``mmtok.metrics.reconstruction``) is the same for every modality:
encode, decode at each prefix length, time both, count codes, reduce across ranks. What
depends on what an item is (pixels, waveforms, clips) lives in the modality's suite: its
metrics and their reductions, the protocol fields that make numbers comparable, its report
sections, its sample files and its command-line options.

    register_metric_suite("audio", "mmtok.metrics.audio.suite:AudioSuite")   # or the class itself
    suite_cls = metric_suite(tok.modality)
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor


@dataclass(frozen=True)
class MetricInfo:
    """A reported number: report key, human label, unit, and which direction is better."""

    key: str
    label: str
    unit: str = ""
    lower_is_better: bool = False

    @property
    def title(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label


class MetricSuite:
    """Base of the per-modality metric suites; one instance per evaluation.

    Class attributes:
        modality: the ``Tokenizer.modality`` it serves.
        item / unit: the noun of one item in report keys (``num_{item}s``, ``tokens_per_{item}``,
            ``bits_per_{item}``, ``encode_{item}s_per_s``) and its short form (progress, "img/s").
        metrics: the quality metrics of every row (full length and each prefix), headline order.
        rates: bitrate fields derived from bits per item (e.g. bits per pixel).

    Every rank calls, in this order (``compute`` is collective)::

        suite = Cls(tok, lengths=..., num_items=..., device=..., rank=..., world_size=..., out_dir=..., **options)
        suite.check_dataset(dataset)        # before any network loads
        suite.setup(identity)               # networks, reference statistics
        for each batch: suite.add_batch(x, keys); suite.add_reconstruction(k, rec) per length k
        suite.close()                       # also after an error
        rows = suite.compute(num_items)     # {k: {metric: value}}, values complete on rank 0
        suite.write_rank_outputs(out)       # then a barrier, then on rank 0: write_outputs(out, report)
    """

    modality: ClassVar[str]
    item: ClassVar[str] = "item"
    unit: ClassVar[str] = "item"
    metrics: ClassVar[tuple[MetricInfo, ...]] = ()
    rates: ClassVar[tuple[MetricInfo, ...]] = ()

    def __init__(self, tok: Any, *, lengths: Sequence[int], num_items: int, device: torch.device,
                 rank: int = 0, world_size: int = 1, out_dir: str | os.PathLike | None = None) -> None:
        self.tok, self.lengths, self.num_items, self.device = tok, list(lengths), int(num_items), device
        self.rank, self.world_size = rank, world_size
        self.out_dir = Path(out_dir) if out_dir is not None else None

    # --- the evaluation --------------------------------------------------------------------
    def check_dataset(self, dataset: Any) -> None:
        """Raise ``ValueError`` if the dataset cannot deliver what the tokenizer expects."""

    def setup(self, identity: dict[str, Any]) -> None:
        """Load networks and reference statistics (``identity``: ``dataset_identity`` of the data)."""

    def add_batch(self, x: Tensor, keys: list[str]) -> None:  # pragma: no cover - abstract
        """Originals of one batch (already on the device, in [-1, 1])."""
        raise NotImplementedError

    def add_reconstruction(self, k: int, rec: Tensor) -> None:  # pragma: no cover - abstract
        """The last batch decoded from ``k`` tokens (``k == lengths[-1]``: the full code)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release open files (called after the last batch, or after an error)."""

    def compute(self, num_items: int) -> dict[int, dict[str, Any]]:  # pragma: no cover - abstract
        """Per length, the ``metrics`` values (collective; complete on rank 0)."""
        raise NotImplementedError

    # --- the report (rank 0) --------------------------------------------------------------
    def protocol_fields(self, identity: dict[str, Any], num_items: int) -> dict[str, Any]:  # pragma: no cover
        """What makes the numbers comparable (hashed into ``protocol.id``)."""
        raise NotImplementedError

    def rate_fields(self, bits_per_item: float) -> dict[str, float]:
        """The ``rates`` for a code of ``bits_per_item`` bits."""
        return {}

    def sections(self) -> dict[str, Any]:
        """Extra top-level report sections (after ``prefix``)."""
        return {}

    def throughput_fields(self, throughput: dict[str, Any]) -> dict[str, Any]:
        """Extra ``throughput`` entries derived from the measured rates (audio: real-time factors)."""
        return {}

    @classmethod
    def protocol_summary(cls, report: dict[str, Any]) -> str:
        """One line: N, preprocessing and dataset (console and report.md)."""
        return f"N = {report[f'num_{cls.item}s']} {cls.item}s, dataset `{dataset_name(report['protocol'])}`"

    @classmethod
    def protocol_lines(cls, report: dict[str, Any]) -> list[str]:
        """Markdown bullet lines under "## Protocol" in report.md."""
        return [f"- dataset: `{report['protocol'].get('dataset')}`"]

    # --- outputs ---------------------------------------------------------------------------
    def write_rank_outputs(self, out: Path) -> None:
        """This rank's part of the sample files (before the barrier)."""

    def write_outputs(self, out: Path, report: dict[str, Any]) -> dict[str, str]:
        """Rank 0: merge the sample files; returns ``{role: file name}`` for ``report["files"]``."""
        return {}

    # --- command line ----------------------------------------------------------------------
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Options of ``mmtok eval`` for this modality."""

    @classmethod
    def options_from_args(cls, args: argparse.Namespace) -> dict[str, Any]:
        """Keyword arguments of the suite from the parsed options."""
        return {}

    @classmethod
    def preprocessing_from_args(cls, args: argparse.Namespace) -> dict[str, Any]:
        """Overrides of ``tok.preprocessing()`` for the dataset opener."""
        return {}


def dataset_name(protocol: dict[str, Any]) -> str:
    """The dataset's spec string (or kind) from a report's protocol."""
    ds = protocol.get("dataset") or {}
    return str(ds.get("spec", ds.get("kind")))


_SUITES: dict[str, type[MetricSuite] | str] = {}


def register_metric_suite(modality: str, suite: type[MetricSuite] | str) -> None:
    """Evaluate tokenizers of ``modality`` with ``suite``: a ``MetricSuite`` subclass, or
    ``"module:Class"`` (imported on first use, so registering costs nothing)."""
    if not isinstance(suite, str) and not (isinstance(suite, type) and issubclass(suite, MetricSuite)):
        raise TypeError(f"suite must be a MetricSuite subclass or 'module:Class', got {suite!r}")
    _SUITES[modality] = suite


def metric_suite(modality: str) -> type[MetricSuite]:
    """The suite class registered for ``modality``; ``ValueError`` naming the known ones otherwise."""
    if modality not in _SUITES:
        raise ValueError(f"no metric suite for {modality!r} tokenizers; registered modalities: {list_metric_suites()}")
    suite = _SUITES[modality]
    if isinstance(suite, str):
        module, _, name = suite.partition(":")
        suite = _SUITES[modality] = getattr(import_module(module), name)
    return suite


def list_metric_suites() -> list[str]:
    """Modalities with a registered metric suite."""
    return sorted(_SUITES)


register_metric_suite("image", "mmtok.metrics.image.suite:ImageSuite")
register_metric_suite("audio", "mmtok.metrics.audio.suite:AudioSuite")
register_metric_suite("video", "mmtok.metrics.video.suite:VideoSuite")
