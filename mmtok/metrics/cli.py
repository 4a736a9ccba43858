"""``mmtok eval``: evaluate a tokenizer checkpoint on a dataset (any modality with a metric suite).

    mmtok eval runs/x/final --data /data/imagenet/val --num-images 50000 --batch-size 64
    torchrun --nproc_per_node 8 eval/reconstruct.py runs/x/final --data "/data/val-{0000..0063}.tar"

The checkpoint's modality picks the metric suite (``mmtok.metrics.suite``), which adds its
own options; the dataset is opened with ``tok.preprocessing()``. Writes the report files into
``--out`` (default: ``<run dir>/eval/<checkpoint>-<data>-<N>``). Errors are one line
``mmtok eval: error: ...`` (exit 2 for bad input, 1 otherwise); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from mmtok.metrics.suite import MetricSuite, list_metric_suites, metric_suite

PROG = "mmtok eval"
USER_ERRORS = (FileNotFoundError, NotADirectoryError, ValueError, TypeError, KeyError)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only where it says something (not None / False, not already in the help)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """Common options, then one option group per registered metric suite."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Reconstruct a dataset with a tokenizer checkpoint and score it under a pinned protocol.",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("checkpoint", help="checkpoint directory written by save_pretrained (e.g. runs/x/final)")
    p.add_argument("--data", required=True, help="dataset spec: 'synthetic[:N]', a folder, or tar shards (file, glob, {a..b} list)")
    p.add_argument("--out", default=None, help="output directory (default: <checkpoint>/../eval/<name>-<data>-<N>)")
    suites = [metric_suite(m) for m in list_metric_suites()]
    names = sorted({f"--num-{s.item}s" for s in suites} - {"--num-items"})
    p.add_argument("--num-items", *names, dest="num_items", type=int, default=None,
                   help="evaluate the first N items (default: all)")
    p.add_argument("--batch-size", type=int, default=32, help="items per batch per process")
    p.add_argument("--device", default=None, help="cuda, cuda:1 or cpu (default: cuda when available)")
    p.add_argument("--num-workers", type=int, default=0, help="data loader worker processes")
    p.add_argument("--prefixes", default="auto",
                   help="nested tokenizers: 'auto' (1,2,4,...,K), 'none', or comma-separated lengths like 1,8,32")
    p.add_argument("--flow-steps", default=None,
                   help="flow decoders: comma-separated sampling step counts, e.g. 4,8,25 (report.md gets quality vs steps)")
    p.add_argument("--cfg-scale", type=float, default=None, help="flow decoders: guidance scale (default: the model's)")
    p.add_argument("--seed", type=int, default=0, help="flow decoders: sampling seed")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    for suite in suites:
        suite.add_arguments(p)
    return p


def parse_prefixes(s: str) -> list[int] | str | None:
    """'auto' | 'none' | '1,8,32' -> the ``prefix_lengths`` argument of ``evaluate_reconstruction``."""
    s = s.strip().lower()
    if s in ("auto", ""):
        return "auto"
    if s == "none":
        return None
    try:
        return [int(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--prefixes must be 'auto', 'none' or comma-separated integers, got {s!r}") from None


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s.strip("/")).strip("_")[-60:] or "data"


def default_out_dir(checkpoint: str, data: str, num_items: int | None) -> Path:
    """``<checkpoint parent>/eval/<checkpoint name>-<data>-<N>``: next to the checkpoint, never inside it."""
    ckpt = Path(checkpoint).resolve()
    return ckpt.parent / "eval" / f"{ckpt.name}-{_slug(data)}-{num_items or 'all'}"


def _init_distributed() -> bool:
    """Join the process group a launcher (torchrun) asks for; True when this call created it."""
    import torch
    import torch.distributed as dist

    from mmtok.distributed import is_initialized, launched_world_size

    if launched_world_size() <= 1 or is_initialized():
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        import os

        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend=backend)
    return True


def _fmt(v: Any) -> str:
    return "–" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))


def print_summary(report: dict[str, Any], suite: type[MetricSuite], out: Path) -> None:
    """The headline numbers, one row per prefix length, and where the report and skipped items are."""
    m, cb, tp, item = report["metrics"], report["codebook"], report["throughput"], suite.item
    print(f"protocol {report['protocol']['id']}: {suite.protocol_summary(report)}")
    cols = [(q.label, m[q.key]) for q in suite.metrics] + [("usage", cb["usage"]), ("ppl", cb["perplexity"])]
    cols += [(r.label, m[r.key]) for r in suite.rates]
    cols += [("enc/s", tp[f"encode_{item}s_per_s"]), ("dec/s", tp[f"decode_{item}s_per_s"])]
    width = [max(9, len(name) + 1) for name, _ in cols]
    print("".join(f"{name:>{w}}" for (name, _), w in zip(cols, width)))
    print("".join(f"{_fmt(v):>{w}}" for (_, v), w in zip(cols, width)))
    for r in report.get("prefix", []):
        print(f"  {report.get('ladder_unit', 'tokens')} {r['rung']:>4}: " + "  ".join(f"{q.label} {_fmt(r.get(q.key))}" for q in suite.metrics))
    print(f"report: {out / 'report.md'}")
    if report["skipped"]:
        path, err = report["skipped"][0]
        print(f"skipped {len(report['skipped'])} unreadable item(s), e.g. {path}: {err}; "
              f"the full list is under 'skipped' in {out / 'report.json'}")


def _run(args: argparse.Namespace) -> int:
    from mmtok.checkpoint import load_tokenizer, read_checkpoint_config
    from mmtok.data import open_dataset
    from mmtok.distributed import rank_world
    from mmtok.metrics.reconstruction import evaluate_reconstruction

    prefixes = parse_prefixes(args.prefixes)
    modality = read_checkpoint_config(args.checkpoint)["modality"]
    suite_cls = metric_suite(modality)  # before loading any weights
    tok = load_tokenizer(args.checkpoint, modality=modality)
    preprocessing = {**tok.preprocessing(), **suite_cls.preprocessing_from_args(args)}
    dataset = open_dataset(args.data, modality=modality, **preprocessing)
    out = Path(args.out) if args.out else default_out_dir(args.checkpoint, args.data, args.num_items)
    common = dict(batch_size=args.batch_size, num_items=args.num_items, device=args.device, prefix_lengths=prefixes,
                  out_dir=out, dataset_spec=args.data, num_workers=args.num_workers, progress=not args.no_progress,
                  checkpoint=str(args.checkpoint), **suite_cls.options_from_args(args))
    if args.flow_steps:
        from mmtok.metrics.flow_sweep import evaluate_flow_steps

        steps = [int(s) for s in args.flow_steps.split(",") if s.strip()]
        report = evaluate_flow_steps(tok, dataset, steps=steps, cfg_scale=args.cfg_scale, seed=args.seed, **common)
    else:
        decode_options = None
        if args.cfg_scale is not None or args.seed:
            from mmtok.metrics.flow_sweep import supports_flow_steps

            if not supports_flow_steps(tok):
                raise ValueError("--cfg-scale / --seed apply to flow decoders only")
            decode_options = {"cfg_scale": args.cfg_scale, "seed": args.seed}
        report = evaluate_reconstruction(tok, dataset, decode_options=decode_options, **common)
    if rank_world(env=False)[0] == 0:
        print_summary(report, suite_cls, out)
    return 0


def _one_line(e: BaseException) -> str:
    msg = " ".join(str(e).split())
    return msg if isinstance(e, USER_ERRORS) and msg else f"{type(e).__name__}: {msg}"


def eval_main(argv: list[str] | None = None) -> int:
    """``mmtok eval [options]``: 0 on success, 2 on bad input, 1 on other failures."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, or a usage error argparse already printed
        return int(e.code or 0)
    import torch.distributed as dist

    started = False
    try:
        started = _init_distributed()
        return _run(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if args.debug:
            raise
        hint = "" if isinstance(e, USER_ERRORS) else " (run with --debug for the traceback)"
        print(f"{PROG}: error: {_one_line(e)}{hint}", file=sys.stderr)
        return 2 if isinstance(e, USER_ERRORS) else 1
    finally:
        if started:
            dist.destroy_process_group()
