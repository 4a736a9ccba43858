#!/usr/bin/env python
"""Do the tiny 1D presets learn? Train on real photo crops for a fixed CPU-time budget and
compare with trivial baselines on held-out crops, old and new settings side by side.

Each row trains one tiny TiTok-style preset at 64x64 (patch 8) on ``photos`` (random crops
of the top 75% of the scikit-image sample photos) for ``--budget-min`` CPU minutes of one
thread (process CPU time, so other load on the machine does not change the result), then
encodes and decodes ``--val`` held-out crops (``photos_val``: the bottom 25%, never seen in
training). The table gives the PSNR, its margin over each image's mean colour
(:func:`mmtok.metrics.baselines.mean_colour`), the distinct codes used on the held-out set /
codebook size, and the CPU minutes spent training. "old" rows are the settings before the
fix (no latent standardisation, VQ restart threshold 2.0 and the old recipe's optimiser) at
the same budget; "new" rows are the recipes (``configs/image/titok_t_{fsq,vq}_photos.yaml``:
``latent_norm="batch"`` etc. as overrides, batch 16, L2 loss only); "prev" rows the recipes
before (batch 32, L1 + L2).

    python eval/bench_learn_1d.py                    # 10 CPU min per row, 2 rows at a time
    python eval/bench_learn_1d.py --budget-min 3 --jobs 1
    python eval/bench_learn_1d.py --rows fsq_new vq_new

Rows run in subprocesses (``--jobs`` at a time, one torch thread each); the JSON goes to
``runs/bench_learn_1d/<time>.json`` (``--json`` to choose).
"""

from __future__ import annotations

import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # eval/benchlib.py
from benchlib import learn_bench_args, run_learn_rows, set_threads, train_for_cpu_budget, write_learn_json  # noqa: E402

RES, PATCH = 64, 8

# The recipes' settings (mmtok/configs/image/titok_t_{fsq,vq}_photos.yaml), the ones before them
# (PREV: batch 32, L1 + L2) and the old ones. The candidate rows below vary PREV.
NEW_OPTIM = dict(batch=32, lr=1e-3, warmup_steps=100, betas=(0.9, 0.99), weight_decay=1e-4, min_lr_ratio=0.1,
                 l1=1.0, l2=1.0, ema=0.99)
RECIPE_OPTIM = dict(NEW_OPTIM, batch=16, l1=0.0)
OLD_OPTIM = dict(batch=8, lr=2e-4, warmup_steps=100, betas=(0.9, 0.99), weight_decay=1e-4, min_lr_ratio=0.1,
                 l1=1.0, l2=1.0, ema=0.99)  # titok_t32_fsq_synthetic.yaml, the only tiny recipe before
# the preset fields that changed, at their old values
OLD_FSQ = dict(latent_norm="none", qk_norm=False)
OLD_VQ = dict(latent_norm="none", qk_norm=False,
              quantizer={"type": "vq", "codebook_size": 1024, "commitment_weight": 0.25, "use_cosine_sim": True,
                         "kmeans_init": True, "kmeans_iters": 10, "threshold_ema_dead_code": 2.0})

# the candidate fix (option-gated, not yet the preset default): standardised latents, qk_norm,
# a VQ dead-code threshold below the mean count per code at batch 32 x 64 tokens
NEW_FSQ = dict(latent_norm="batch", qk_norm=True)
NEW_VQ = dict(latent_norm="batch", quantizer={**OLD_VQ["quantizer"], "threshold_ema_dead_code": 0.1})

ROWS: dict[str, dict[str, Any]] = {
    "fsq_old": dict(label="titok_t64_fsq, old settings", preset="titok_t64_fsq", overrides=OLD_FSQ, optim=OLD_OPTIM),
    "fsq_new": dict(label="titok_t64_fsq, latent_norm=batch + qk_norm, batch 16, L2", preset="titok_t64_fsq",
                    overrides=NEW_FSQ, optim=RECIPE_OPTIM),
    "fsq_prev": dict(label="titok_t64_fsq, latent_norm=batch + qk_norm, batch 32, L1 + L2", preset="titok_t64_fsq",
                     overrides=NEW_FSQ, optim=NEW_OPTIM),
    "vq_old": dict(label="titok_t64_vq, old settings", preset="titok_t64_vq", overrides=OLD_VQ, optim=OLD_OPTIM),
    "vq_new": dict(label="titok_t64_vq, latent_norm=batch + restart 0.1, batch 16, L2", preset="titok_t64_vq",
                   overrides=NEW_VQ, optim=RECIPE_OPTIM),
    "vq_prev": dict(label="titok_t64_vq, latent_norm=batch + restart 0.1, batch 32, L1 + L2", preset="titok_t64_vq",
                    overrides=NEW_VQ, optim=NEW_OPTIM),
    # candidates (not in the default rows)
    "vq_lc": dict(label="titok_t64_vq, prev + 3x3 conv after the patch head", preset="titok_t64_vq",
                  overrides=dict(NEW_VQ, decoder_head="linear_conv"), optim=NEW_OPTIM),
    "vq_lr2e3": dict(label="titok_t64_vq, prev, lr 2e-3", preset="titok_t64_vq", overrides=NEW_VQ,
                     optim=dict(NEW_OPTIM, lr=2e-3)),
    "fsq_lc": dict(label="titok_t64_fsq, prev + 3x3 conv after the patch head", preset="titok_t64_fsq",
                   overrides=dict(NEW_FSQ, decoder_head="linear_conv"), optim=NEW_OPTIM),
    "vq_l2": dict(label="titok_t64_vq, prev, L2 loss only (no L1)", preset="titok_t64_vq", overrides=NEW_VQ,
                  optim=dict(NEW_OPTIM, l1=0.0)),
    "vq_bf16": dict(label="titok_t64_vq, prev, bf16 autocast", preset="titok_t64_vq", overrides=NEW_VQ,
                    optim=dict(NEW_OPTIM, bf16=True)),
    "fsq_l2_b8": dict(label="titok_t64_fsq, prev, L2 loss only, batch 8", preset="titok_t64_fsq", overrides=NEW_FSQ,
                      optim=dict(NEW_OPTIM, l1=0.0, batch=8)),
    "fsq_l2": dict(label="titok_t64_fsq, prev, L2 loss only (no L1)", preset="titok_t64_fsq", overrides=NEW_FSQ,
                   optim=dict(NEW_OPTIM, l1=0.0)),
}


def held_out(n: int, seed: int = 0):
    """(n, 3, 64, 64) held-out crops in [-1, 1]."""
    import torch

    from mmtok.data import open_dataset

    ds = open_dataset(f"photos_val:{n}", "image", resolution=RES, seed=seed)
    return torch.stack([ds[i]["x"] for i in range(len(ds))])


@__import__("functools").lru_cache(maxsize=1)
def _train_set(n: int, seed: int):
    from mmtok.data import open_dataset

    return open_dataset(f"photos:{n}", "image", resolution=RES, flip=True, seed=seed)


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
    codes_t = torch.cat(codes)
    used = int(torch.unique(codes_t).numel())
    return {"psnr": psnr(torch.cat(recon), x), "used_codes": used, "codebook_size": int(tok.codebook_size),
            "usage": used / tok.codebook_size}


def build(preset: str, overrides: dict[str, Any]):
    import mmtok

    return mmtok.create_tokenizer(preset, image_size=RES, patch_size=PATCH, **overrides)


def train_row(spec: dict[str, Any], budget_s: float, val: int, seed: int) -> dict[str, Any]:
    """Train one row for ``budget_s`` process CPU seconds; evaluate on ``val`` held-out crops.
    The cosine schedule runs on CPU time (warmup in steps), so it ends with the budget."""
    import torch

    set_threads()
    torch.manual_seed(seed)
    o = spec["optim"]
    tok = build(spec["preset"], spec["overrides"])
    data = _train_set(1 << 20, seed)
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    model, step, cpu_s = train_for_cpu_budget(tok, data, o, budget_s, order=perm)
    cpu_min = cpu_s / 60
    res = evaluate(model, held_out(val))
    return {**res, "label": spec["label"], "row": spec.get("row"), "steps": step, "images": step * o["batch"],
            "cpu_min": cpu_min, "preset": spec["preset"], "overrides": spec["overrides"], "optim": o}


def static_rows(val: int, seed: int) -> list[dict[str, Any]]:
    """Mean colour and the untrained (fixed) presets."""
    import torch

    from mmtok.metrics.baselines import mean_colour, psnr

    set_threads()
    x = held_out(val)
    rows = [{"label": "mean colour (baseline)", "row": "mean_colour", "psnr": psnr(mean_colour(x), x), "used_codes": None,
             "codebook_size": None, "usage": None, "cpu_min": 0.0}]
    for name in ("fsq_new", "vq_new"):
        spec = ROWS[name]
        torch.manual_seed(seed)
        tok = build(spec["preset"], spec["overrides"])
        rows.append({**evaluate(tok, x), "label": f"{spec['preset']} untrained", "row": f"untrained_{name}", "cpu_min": 0.0})
    return rows


def print_table(rows: list[dict[str, Any]], budget_min: float, val: int) -> None:
    base = next(r["psnr"] for r in rows if r["row"] == "mean_colour")
    print(f"\n1D tokenizers at {RES}x{RES} (patch {PATCH}) trained on photos for {budget_min:g} CPU min (1 thread); "
          f"{val} held-out photos_val crops")
    print("\n| model | PSNR (dB) | vs mean colour (dB) | codes used / codebook | CPU min |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        codes = "-" if r["used_codes"] is None else f"{r['used_codes']} / {r['codebook_size']} ({100 * r['usage']:.0f}%)"
        print(f"| {r['label']} | {r['psnr']:.2f} | {r['psnr'] - base:+.2f} | {codes} | {r['cpu_min']:.1f} |")


def main(argv: list[str] | None = None) -> int:
    p = learn_bench_args(__doc__.split("\n\n")[0], "bench_learn_1d", list(ROWS), ["fsq_old", "fsq_new", "vq_old", "vq_new"], 10.0, 512, "crops (>= 256)")
    args = p.parse_args(argv)
    results = run_learn_rows(__file__, args, ROWS, train_row)
    if results is None:  # a child process: its row is printed
        return 0
    rows = static_rows(args.val, args.seed) + [results[n] for n in args.rows]
    print_table(rows, args.budget_min, args.val)
    write_learn_json(args, "bench_learn_1d", rows, resolution=RES, patch=PATCH)
    return 0

if __name__ == "__main__":
    sys.exit(main())
