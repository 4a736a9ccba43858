"""Quality of a flow decoder vs its number of sampling steps (and vs token prefix length).

    report = evaluate_flow_steps(tok, dataset, steps=[4, 8, 25], out_dir="runs/x/eval", cfg_scale=1.0, seed=0)

One :func:`~mmtok.metrics.reconstruction.evaluate_reconstruction` pass per step count: the
largest count decodes every prefix length (the usual ``report.md`` / ``prefix_curve.png`` in
``out_dir``), the others decode all tokens only (their reports under ``out_dir/steps_<n>/``).
``report.md`` then gets a table of every metric vs the number of steps, ``report.json`` the
rows under ``flow_steps`` and ``flow_steps.png`` the curves. Metrics whose weights are absent
are skipped as in the plain evaluation (``fid=False`` / ``lpips=None``: PSNR / SSIM only).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from mmtok.metrics.report import _fmt, plot_prefix_curve
from mmtok.metrics.suite import metric_suite


def supports_flow_steps(tok: Any) -> bool:
    """Whether ``tok.decode`` takes ``steps`` / ``cfg_scale`` / ``seed`` (a flow decoder)."""
    import inspect

    params = inspect.signature(tok.decode).parameters
    return all(k in params for k in ("steps", "cfg_scale", "seed"))


def evaluate_flow_steps(tokenizer: Any, dataset: Dataset, *, steps: Sequence[int], out_dir: str | os.PathLike | None,
                        cfg_scale: float | None = None, seed: int = 0, prefix_lengths: Sequence[int] | str | None = "auto",
                        **kwargs: Any) -> dict[str, Any]:
    """The report of the largest step count, plus ``flow_steps``: one row of metrics per step count."""
    from mmtok.metrics.reconstruction import evaluate_reconstruction

    if not supports_flow_steps(tokenizer):
        raise ValueError(f"{type(tokenizer).__name__} has no flow decoder: decode() takes no steps / cfg_scale / seed")
    counts = sorted({int(s) for s in steps})
    if not counts or counts[0] < 1:
        raise ValueError(f"flow steps must be positive integers, got {list(steps)}")
    suite = metric_suite(tokenizer.modality)
    out = Path(out_dir) if out_dir is not None else None
    rows: list[dict[str, Any]] = []
    main: dict[str, Any] = {}
    for n in counts:
        last = n == counts[-1]
        opts = {"steps": n, "cfg_scale": cfg_scale, "seed": seed}
        where = out if (last or out is None) else out / f"steps_{n}"
        rep = evaluate_reconstruction(tokenizer, dataset, prefix_lengths=prefix_lengths if last else None,
                                      out_dir=where, decode_options=opts, **kwargs)
        if not rep:  # not rank 0
            continue
        tp = rep["throughput"]
        rows.append({"rung": n, "steps": n, **{q.key: rep["metrics"].get(q.key) for q in suite.metrics},
                     "decode_per_s": tp.get(f"decode_{suite.item}s_per_s")})
        if last:
            main = rep
    if not main:
        return {}
    main["flow_steps"] = rows
    main["flow_sampling"] = {"cfg_scale": cfg_scale, "seed": seed, "scheduler": "FlowMatchEulerDiscreteScheduler"}
    if out is not None:
        _write(main, out, suite)
    return main


def flow_steps_markdown(report: dict[str, Any], suite: Any) -> str:
    rows, s = report["flow_steps"], report["flow_sampling"]
    shown = [q for q in suite.metrics if any(r.get(q.key) is not None for r in rows)]
    cfg = "the model's default" if s["cfg_scale"] is None else f"{s['cfg_scale']:g}"
    lines = ["", "## Flow decoder: quality vs sampling steps", "",
             f"All tokens; Euler steps of {s['scheduler']}, CFG scale {cfg}, seed {s['seed']} (the same seed gives "
             f"the same {suite.item}s). The prefix-length table above uses {rows[-1]['steps']} steps.", "",
             "| steps | " + " | ".join(q.label for q in shown) + f" | decode {suite.item}s/s |",
             "|---|" + "---|" * (len(shown) + 1)]
    for r in rows:
        lines.append(f"| {r['steps']} | " + " | ".join(_fmt(r.get(q.key)) for q in shown) + f" | {_fmt(r['decode_per_s'])} |")
    missing = [q.label for q in suite.metrics if q not in shown]
    if missing:
        lines += ["", f"Not measured: {', '.join(missing)} (weights absent or disabled; see the protocol above)."]
    lines += ["", "![quality vs flow steps](flow_steps.png)", ""]
    return "\n".join(lines)


def _write(report: dict[str, Any], out: Path, suite: Any) -> None:
    md = out / "report.md"
    md.write_text(md.read_text() + flow_steps_markdown(report, suite))
    js = out / "report.json"
    data = json.loads(js.read_text())
    data["flow_steps"], data["flow_sampling"] = report["flow_steps"], report["flow_sampling"]
    js.write_text(json.dumps(data, indent=2, default=str))
    plot_prefix_curve(report["flow_steps"], out / "flow_steps.png", suite.metrics,
                      title=f"{report.get('tokenizer', {}).get('variant') or ''} quality vs flow steps", unit="flow steps")
