"""Report files of an evaluation, for any modality: ``report.json`` (strict JSON), ``report.md``
and ``prefix_curve.png``. The metric names, labels and protocol lines come from the suite."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from mmtok.io import atomic_write, atomic_write_json, atomic_write_text
from mmtok.metrics.suite import MetricInfo, MetricSuite


def _nan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None or _nan(v):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v)


def plot_prefix_curve(rows: list[dict[str, Any]], path: str | os.PathLike, metrics: Sequence[MetricInfo],
                      title: str = "", unit: str = "tokens") -> Path:
    """PNG of quality vs the rate ladder (number of tokens, or residual levels), one panel per
    metric of ``metrics`` that was measured."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    shown = [m for m in metrics if any(r.get(m.key) is not None and not _nan(r.get(m.key)) for r in rows)]
    fig, axes = plt.subplots(1, max(1, len(shown)), figsize=(3.6 * max(1, len(shown)), 3.2), squeeze=False)
    x = [r["rung"] for r in rows]
    for ax, m in zip(axes[0], shown):
        ax.plot(x, [r.get(m.key) for r in rows], marker="o")
        if unit == "tokens":
            ax.set_xscale("log", base=2)
        ax.set_xlabel(unit)
        ax.set_title(m.title + (" (lower is better)" if m.lower_is_better else ""), fontsize=9)
        ax.grid(alpha=0.3)
        ax.ticklabel_format(axis="y", useOffset=False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out = atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)
    return out


def markdown_report(report: dict[str, Any], suite: MetricSuite | type[MetricSuite]) -> str:
    """Human-readable Markdown of an evaluation report (protocol next to every number)."""
    item, unit = suite.item, suite.unit
    tk, m, cb, tp = report["tokenizer"], report["metrics"], report["codebook"], report["throughput"]
    rates = "".join(f", {_fmt(m[r.key])} {r.label}" for r in suite.rates)
    lines = [
        f"# Reconstruction evaluation: {tk.get('variant') or tk.get('family')}",
        "",
        f"- checkpoint: `{report.get('checkpoint')}`",
        f"- protocol id: `{report['protocol']['id']}` ({suite.protocol_summary(report)})",
        f"- tokens per {item}: {tk['num_tokens']} (token shape {tuple(tk['token_shape'])}), codebook {tk['codebook_size']}, "
        f"{_fmt(m[f'bits_per_{item}'])} bits/{item}{rates}",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {q.title} | {_fmt(m.get(q.key))} |" for q in suite.metrics),
        f"| codebook usage | {_fmt(cb['usage'])} ({_fmt(cb['used_codes'])} / {cb['codebook_size']} codes) |",
        f"| codebook perplexity | {_fmt(cb['perplexity'])} |",
        f"| code entropy (bits) | {_fmt(cb['entropy_bits'])} of {_fmt(math.log2(max(2, cb['codebook_size'])))} |",
        "",
        f"Throughput on {tp['device']} (batch {tp['batch_size']}, {tp['world_size']} process(es)): "
        f"encode {_fmt(tp[f'encode_{item}s_per_s'])} {unit}/s, decode {_fmt(tp[f'decode_{item}s_per_s'])} {unit}/s, "
        f"whole evaluation {_fmt(tp[f'eval_{item}s_per_s'])} {unit}/s (features and metrics included).",
    ]
    if report.get("prefix"):
        cols = [*suite.rates, *suite.metrics]
        unit = report.get("ladder_unit", "tokens")
        how = "prefix decoding" if unit == "tokens" else "decoding the first levels"
        lines += ["", f"## Quality vs number of {unit} ({how})", "",
                  f"| {unit} | " + " | ".join(c.label for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for r in report["prefix"]:
            lines.append(f"| {r['rung']} | " + " | ".join(_fmt(r.get(c.key)) for c in cols) + " |")
    if report.get("skipped"):
        lines += ["", f"Skipped {len(report['skipped'])} unreadable item(s); first: `{report['skipped'][0]}` "
                  "(all of them under `skipped` in report.json)"]
    lines += ["", "## Protocol", "", *suite.protocol_lines(report), ""]
    return "\n".join(lines)


def finite_or_none(obj: Any) -> Any:
    """NaN / inf -> None recursively, so report.json is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def _json_default(o: Any) -> Any:
    if isinstance(o, Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    return str(o)


def write_report(report: dict[str, Any], out: Path, suite: MetricSuite) -> None:
    """Rank 0: the suite's sample files, ``prefix_curve.png`` (prefix rows only), ``report.json``
    and ``report.md``; ``report["files"]`` lists what was written."""
    files = report["files"]
    files.update(suite.write_outputs(out, report))
    if report["prefix"]:
        tk = report["tokenizer"]
        title = f"{tk.get('variant') or tk['family']} (protocol {report['protocol']['id']})"
        plot_prefix_curve(report["prefix"], out / "prefix_curve.png", suite.metrics, title=title,
                          unit=report.get("ladder_unit", "tokens"))
        files["prefix_plot"] = "prefix_curve.png"
    files["json"] = "report.json"
    files["markdown"] = "report.md"
    atomic_write_json(out / "report.json", finite_or_none(json.loads(json.dumps(report, default=_json_default))))
    atomic_write_text(out / "report.md", markdown_report(report, suite))
