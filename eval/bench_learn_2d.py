#!/usr/bin/env python
"""Does the tiny 2D preset learn? Train ``vqgan_t_f8_vq`` on real photo crops for a fixed
CPU-time budget and compare with trivial baselines on held-out crops, old and new settings
side by side.

Each trained row runs at 64x64 (f8: an 8x8 code grid) on ``photos`` (random crops of the top
75% of the scikit-image sample photos) for ``--budget-min`` CPU minutes of one thread
(process CPU time), then encodes and decodes ``--val`` held-out crops (``photos_val``, the
bottom 25%, never seen in training). Columns: PSNR, its margin over each image's mean colour
(:func:`mmtok.metrics.baselines.mean_colour`), distinct codes used on the held-out set /
codebook size, CPU minutes of training. "old settings" is the preset before the fix
(GroupNorm with up to 32 groups = InstanceNorm on 32-channel maps, default ResBlock init,
1024 codes with dead-code threshold 2.0) trained with the loop's default optimiser (batch 16,
lr 1e-4, L1); "fixed" is the preset as shipped with ``configs/image/vqgan_t_f8_photos.yaml``.

    python eval/bench_learn_2d.py                    # 10 CPU min per row, 2 rows at a time
    python eval/bench_learn_2d.py --budget-min 3 --jobs 1

Rows run in subprocesses (one torch thread each); JSON to ``runs/bench_learn_2d/<time>.json``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # eval/benchlib.py
from benchlib import learn_bench_args, run_learn_rows, set_threads, train_for_cpu_budget, write_learn_json  # noqa: E402

RES = 64
PRESET = "vqgan_t_f8_vq"

# mmtok/configs/image/vqgan_t_f8_photos.yaml, and the training loop's defaults (the old recipe)
NEW_OPTIM = dict(batch=16, lr=4e-4, warmup_steps=50, betas=(0.9, 0.99), weight_decay=1e-4, min_lr_ratio=0.1,
                 l1=1.0, l2=1.0, ema=0.99)
OLD_OPTIM = dict(batch=16, lr=1e-4, warmup_steps=100, betas=(0.9, 0.99), weight_decay=1e-4, min_lr_ratio=0.1,
                 l1=1.0, l2=0.0, ema=0.999)
OLD_PRESET = dict(norm_min_group_channels=1, zero_init_residual=False,
                  quantizer={"type": "vq", "codebook_size": 1024, "codebook_dim": 8, "use_cosine_sim": True,
                             "kmeans_init": True, "kmeans_iters": 10, "threshold_ema_dead_code": 2.0})

ROWS: dict[str, dict[str, Any]] = {
    "old": dict(label=f"{PRESET}, old settings", overrides=OLD_PRESET, optim=OLD_OPTIM),
    "new": dict(label=f"{PRESET} (fixed)", overrides={}, optim=NEW_OPTIM),
}


def held_out(n: int, seed: int = 0):
    """(n, 3, 64, 64) held-out crops in [-1, 1]."""
    import torch

    from mmtok.data import open_dataset

    ds = open_dataset(f"photos_val:{n}", "image", resolution=RES, seed=seed)
    return torch.stack([ds[i]["x"] for i in range(len(ds))])


def build(overrides: dict[str, Any]):
    import mmtok

    return mmtok.create_tokenizer(PRESET, image_size=RES, **overrides)


def evaluate(tok, x) -> dict[str, float]:
    """PSNR and distinct codes of ``tok`` (eval mode) on held-out images ``x``."""
    import torch

    from mmtok.metrics.baselines import psnr

    tok.eval()
    recon, codes = [], []
    with torch.no_grad():
        for chunk in x.split(64):
            c = tok.encode(chunk)
            codes.append(c)
            recon.append(tok.decode(c))
    used = int(torch.unique(torch.cat(codes)).numel())
    return {"psnr": psnr(torch.cat(recon), x), "used_codes": used, "codebook_size": int(tok.codebook_size),
            "usage": used / tok.codebook_size}


def train(overrides: dict[str, Any], o: dict[str, Any], budget_s: float, seed: int = 0):
    """Train for ``budget_s`` process CPU seconds (cosine over the CPU budget after a warmup in
    steps); returns (model to evaluate: EMA when on, steps, CPU seconds)."""
    import torch

    from mmtok.data import open_dataset

    torch.manual_seed(seed)
    tok = build(overrides)
    data = open_dataset("photos:1048576", "image", resolution=RES, flip=True, seed=seed)
    return train_for_cpu_budget(tok, data, o, budget_s)


def train_row(spec: dict[str, Any], budget_s: float, val: int, seed: int) -> dict[str, Any]:
    set_threads()
    model, steps, cpu = train(spec["overrides"], spec["optim"], budget_s, seed)
    return {**evaluate(model, held_out(val)), "label": spec["label"], "row": spec.get("row"), "steps": steps,
            "images": steps * spec["optim"]["batch"], "cpu_min": cpu / 60, "overrides": spec["overrides"],
            "optim": spec["optim"]}


def static_rows(val: int, seed: int) -> list[dict[str, Any]]:
    """Mean colour and the untrained (fixed) preset."""
    import torch

    from mmtok.metrics.baselines import mean_colour, psnr

    set_threads()
    x = held_out(val)
    torch.manual_seed(seed)
    return [
        {"label": "mean colour (baseline)", "row": "mean_colour", "psnr": psnr(mean_colour(x), x), "used_codes": None,
         "codebook_size": None, "usage": None, "cpu_min": 0.0},
        {**evaluate(build({}), x), "label": f"{PRESET} untrained", "row": "untrained", "cpu_min": 0.0},
    ]


def print_table(rows: list[dict[str, Any]], budget_min: float, val: int) -> None:
    base = next(r["psnr"] for r in rows if r["row"] == "mean_colour")
    print(f"\n{PRESET} at {RES}x{RES} (8x8 codes) trained on photos for {budget_min:g} CPU min (1 thread); "
          f"{val} held-out photos_val crops")
    print("\n| method | PSNR (dB) | vs mean colour (dB) | codes used / codebook | CPU min |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        codes = "-" if r["used_codes"] is None else f"{r['used_codes']} / {r['codebook_size']} ({100 * r['usage']:.0f}%)"
        print(f"| {r['label']} | {r['psnr']:.2f} | {r['psnr'] - base:+.2f} | {codes} | {r['cpu_min']:.1f} |")


def main(argv: list[str] | None = None) -> int:
    p = learn_bench_args(__doc__.split("\n\n")[0], "bench_learn_2d", list(ROWS), list(ROWS), 10.0, 256, "crops (>= 256)")
    args = p.parse_args(argv)
    results = run_learn_rows(__file__, args, ROWS, train_row)
    if results is None:  # a child process: its row is printed
        return 0
    rows = static_rows(args.val, args.seed) + [results[n] for n in args.rows]
    print_table(rows, args.budget_min, args.val)
    write_learn_json(args, "bench_learn_2d", rows, resolution=RES)
    return 0

if __name__ == "__main__":
    sys.exit(main())
