"""``evaluate_reconstruction``: reconstruct a dataset with a tokenizer and score it.

The loop is the same for every modality: each rank takes a strided shard of the items,
encodes each batch, decodes it at every prefix length, times encode and decode, counts the
codes in one dataset-level histogram (one level per ``tok.num_codebooks``) and hands the
originals and reconstructions to the metric suite registered for ``tok.modality``
(``mmtok.metrics.suite``). Counts, histograms and the suite's statistics are reduced across
ranks; rank 0 writes ``report.json`` and ``report.md`` (``mmtok.metrics.report``), the suite's
sample files and, for nested tokenizers, ``prefix_curve.png``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from mmtok.distributed import barrier, rank_world
from mmtok.metrics.codebook import CodebookHistogram
from mmtok.metrics.protocol import dataset_identity, protocol_fingerprint
from mmtok.metrics.reduce import all_gather_objects, all_reduce
from mmtok.metrics.report import write_report
from mmtok.metrics.suite import MetricSuite, metric_suite


def evaluate_reconstruction(
    tokenizer: Any,
    dataset: Dataset,
    *,
    batch_size: int = 32,
    num_items: int | None = None,
    device: str | torch.device | None = None,
    prefix_lengths: Sequence[int] | str | None = "auto",
    out_dir: str | os.PathLike | None = None,
    dataset_spec: str | None = None,
    num_workers: int = 0,
    progress: bool = True,
    checkpoint: str | None = None,
    decode_options: dict[str, Any] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Reconstruct ``dataset`` with ``tokenizer`` and return the report dict (also written to ``out_dir``).

    Args:
        tokenizer: an ``mmtok.tokenizer.Tokenizer`` of a modality with a metric suite (put in eval mode here).
        dataset: yields ``mmtok.data`` items (``{"x", "key", "path", ...}``) in the tokenizer's
            preprocessing; unreadable items are skipped and listed in the report.
        batch_size: items per batch and per process.
        num_items: evaluate the first N items only (deterministic order); None = all. The suite's
            own name for it is accepted too (``num_{item}s``: ``num_images`` for images).
        device: defaults to CUDA (``cuda:LOCAL_RANK``) when available, else CPU.
        prefix_lengths: for nested tokenizers: "auto" (``tok.prefix_lengths()``), explicit lengths
            (the full length is always added), or None (full length only).
        out_dir: where to write the report files (rank 0); None = return the dict only.
        dataset_spec: the string the dataset was opened from (recorded in the fingerprint).
        checkpoint: recorded in the report.
        decode_options: keyword arguments of every ``tok.decode`` call, recorded in the report
            (flow decoders: ``steps``, ``cfg_scale``, ``seed``).
        **options: the options of the modality's suite (image: ``fid``, ``inception_weights``, ``lpips``,
            ``fid_method``, ``reference_stats``, ``cache_dir``, ``use_cache``, ``save_npz``;
            see ``mmtok.metrics.image.suite.ImageSuite``).

    Under ``torch.distributed`` every rank takes a strided shard of the items; sums,
    histograms and feature statistics are all-reduced, and rank 0 writes the outputs.
    """
    suite_cls = metric_suite(tokenizer.modality)
    alias = f"num_{suite_cls.item}s"
    if alias in options:
        n = options.pop(alias)
        if num_items is not None and n != num_items:
            raise ValueError(f"num_items={num_items} and {alias}={n} disagree; pass one of them")
        num_items = n
    subset, total = _first_items(dataset, num_items, batch_size)
    rank, world = rank_world(env=False)
    device = _default_device() if device is None else torch.device(device)
    tok = tokenizer.to(device).eval()
    lengths = resolve_prefix_lengths(tok, prefix_lengths)
    suite = suite_cls(tok, lengths=lengths, num_items=total, device=device, rank=rank, world_size=world,
                      out_dir=out_dir, **options)
    suite.check_dataset(dataset)  # before any network loads
    ident = dataset_identity(subset, dataset_spec)
    suite.setup(ident)
    shard = Subset(subset, list(range(rank, total, world))) if world > 1 else subset
    hist = CodebookHistogram(tok.codebook_size, tok.num_codebooks)
    try:
        run = _reconstruct(tok, suite, hist, shard, lengths, batch_size=batch_size, num_workers=num_workers,
                           device=device, progress=progress and rank == 0, decode_options=decode_options)
    finally:
        suite.close()
    n, skipped, times = _reduce_pass(run)
    if n == 0:
        raise ValueError(f"no readable {suite.item}s among {total} items; first error: {skipped[0] if skipped else 'none'}")
    codebook = hist.compute()
    rows = suite.compute(n)
    report: dict[str, Any] = {}
    if rank == 0:
        report = _report(tok, suite, rows, n=n, codebook=codebook, times=times, skipped=skipped, identity=ident,
                         batch_size=batch_size, world=world, device=device, checkpoint=checkpoint)
        if decode_options:
            report["decode_options"] = dict(decode_options)
    if out_dir is not None:
        _write_outputs(report, Path(out_dir), suite, rank)
    return report


def resolve_prefix_lengths(tok: Any, prefix_lengths: Sequence[int] | str | None) -> list[int]:
    """Sorted rungs of the rate ladder to decode, the full code last: "auto" = ``tok.rate_ladder()``
    (token prefixes of a nested tokenizer, residual levels of an RVQ codec, else just the full
    code), None = the full code only, or explicit rungs (tokenizers with a ladder only)."""
    ladder = [int(k) for k in tok.rate_ladder()]
    full = ladder[-1]
    if prefix_lengths is None:
        return [full]
    if isinstance(prefix_lengths, str):
        if prefix_lengths != "auto":
            raise ValueError(f"prefix_lengths must be 'auto', None or a list of ints, got {prefix_lengths!r}")
        return ladder
    if len(ladder) == 1 and not tok.is_nested:
        raise ValueError(f"{type(tok).__name__} has no rate ladder (neither nested tokens nor residual levels); "
                         "prefix_lengths must be None or 'auto'")
    lengths = sorted({int(k) for k in prefix_lengths})
    bad = [k for k in lengths if not 1 <= k <= full]
    if bad:
        raise ValueError(f"prefix lengths ({tok.ladder_unit}) {bad} outside [1, {full}]")
    return lengths if full in lengths else [*lengths, full]


def _first_items(dataset: Dataset, num_items: int | None, batch_size: int) -> tuple[Dataset, int]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    total = len(dataset)  # type: ignore[arg-type]
    if total == 0:
        raise ValueError("the dataset is empty: nothing to evaluate")
    if num_items is None:
        return dataset, total
    if num_items < 1:
        raise ValueError(f"num_items must be >= 1, got {num_items}")
    if num_items > total:
        raise ValueError(f"num_items={num_items} but the dataset holds only {total} items")
    return Subset(dataset, list(range(num_items))), num_items


def _default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[Tensor], Tensor], arg: Tensor, device: torch.device) -> tuple[Tensor, float]:
    """``fn(arg)`` and its seconds, with device synchronisation on both sides."""
    _sync(device)
    t0 = time.perf_counter()
    out = fn(arg)
    _sync(device)
    return out, time.perf_counter() - t0


@dataclass
class _Pass:
    """What one rank's pass over its shard measured."""

    seen: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    encode_s: float = 0.0
    decode_s: float = 0.0  # full-length decodes only
    wall_s: float = 0.0


def _reconstruct(tok: Any, suite: MetricSuite, hist: CodebookHistogram, shard: Dataset, lengths: list[int], *,
                 batch_size: int, num_workers: int, device: torch.device, progress: bool,
                 decode_options: dict[str, Any] | None = None) -> _Pass:
    """Encode every batch of ``shard``, decode it at each length, feed the suite and the histogram."""
    from tqdm.auto import tqdm

    from mmtok.data.loader import make_loader

    full = lengths[-1]
    run = _Pass()
    loader = make_loader(shard, batch_size=batch_size, num_workers=num_workers, shuffle=False)
    bar = tqdm(total=len(shard), desc="eval", unit=suite.unit, disable=not progress)  # type: ignore[arg-type]
    t_start = time.perf_counter()
    with torch.inference_mode():
        for batch in loader:
            run.skipped.extend(batch["errors"])
            bar.update(len(batch["key"]) + len(batch["errors"]))
            x = batch["x"]
            if x is None or x.shape[0] == 0:
                continue
            x = x.to(device, non_blocking=True).float()
            tok.check_input(x)
            suite.add_batch(x, batch["key"])
            codes, seconds = _timed(tok.encode, x, device)
            run.encode_s += seconds
            hist.update(codes)
            for k in lengths:
                rec, seconds = _timed(lambda c: tok.decode(c, **(decode_options or {})), tok.truncate_codes(codes, k), device)
                if k == full:
                    run.decode_s += seconds
                if rec.shape != x.shape:
                    raise RuntimeError(f"decode returned shape {tuple(rec.shape)} for input {tuple(x.shape)}")
                suite.add_reconstruction(k, rec)
            run.seen += x.shape[0]
    _sync(device)
    run.wall_s = time.perf_counter() - t_start
    bar.close()
    return run


def _reduce_pass(run: _Pass) -> tuple[int, list[tuple[str, str]], list[float]]:
    """(items read, skipped items, [encode, decode, wall] seconds) over all ranks (times: the slowest rank)."""
    seen = all_reduce(torch.tensor([run.seen], dtype=torch.float64))
    times = all_reduce(torch.tensor([run.encode_s, run.decode_s, run.wall_s], dtype=torch.float64), op="max")
    skipped = [s for part in all_gather_objects(run.skipped) for s in part]
    return int(seen[0]), skipped, times.tolist()


def _tokenizer_facts(tok: Any, item: str) -> dict[str, Any]:
    from mmtok.config import config_hash, to_dict

    facts = {
        "family": type(tok).__name__,
        "variant": tok.variant_name,
        "config_hash": config_hash(to_dict(tok.config)),
        "num_tokens": int(tok.num_tokens),
        "token_shape": list(tok.token_shape),
        "codebook_size": int(tok.codebook_size),
        f"bits_per_{item}": float(tok.bits_per_item),
        "is_nested": bool(tok.is_nested),
        "num_parameters": int(tok.num_parameters()),
    }
    described = {k: v for k, v in tok.describe().items() if k not in facts and k != "bits_per_item"}
    return {**facts, **described}


def _report(tok: Any, suite: MetricSuite, rows: dict[int, dict[str, Any]], *, n: int, codebook: dict[str, Any],
            times: list[float], skipped: list[tuple[str, str]], identity: dict[str, Any], batch_size: int,
            world: int, device: torch.device, checkpoint: str | None) -> dict[str, Any]:
    """The report dict (rank 0); key names take the suite's item noun (``num_images``, ...)."""
    import mmtok

    item, full, bits = suite.item, int(tok.num_tokens), float(tok.bits_per_item)
    prefix = []
    for k, values in rows.items():
        kbits = float(tok.bits_at(k))
        prefix.append({tok.ladder_unit: k, "rung": k, f"bits_per_{item}": kbits, **suite.rate_fields(kbits), **values})
    head = prefix[-1]
    enc, dec, wall = times
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    throughput = {
        "device": dev_name,
        "batch_size": batch_size,
        "world_size": world,
        f"encode_{item}s_per_s": n / enc if enc > 0 else None,
        f"decode_{item}s_per_s": n / dec if dec > 0 else None,
        f"eval_{item}s_per_s": n / wall if wall > 0 else None,
        "eval_seconds": wall,
    }
    throughput.update(suite.throughput_fields(throughput))
    return {
        "mmtok_version": mmtok.__version__,
        "checkpoint": checkpoint,
        "tokenizer": _tokenizer_facts(tok, item),
        "protocol": protocol_fingerprint(suite.protocol_fields(identity, n)),
        f"num_{item}s": n,
        "metrics": {
            **{m.key: head[m.key] for m in suite.metrics},
            f"tokens_per_{item}": full,
            f"bits_per_{item}": bits,
            **{r.key: head[r.key] for r in suite.rates},
        },
        "codebook": codebook,
        "throughput": throughput,
        "prefix": prefix if len(prefix) > 1 else [],
        "ladder_unit": tok.ladder_unit,
        **suite.sections(),
        "skipped": [list(s) for s in skipped],
        "files": {},
    }


def _write_outputs(report: dict[str, Any], out: Path, suite: MetricSuite, rank: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    suite.write_rank_outputs(out)
    barrier()
    if rank == 0:
        write_report(report, out, suite)
    barrier()
