#!/usr/bin/env python
"""Does the tiny video preset learn? Train ``causal3d_tiny`` for a fixed CPU-time budget and
compare with trivial baselines on held-out real moving content, old and new side by side.

Clips are 17 frames of 32x32 (4x4x4: 5 x 8 x 8 codes). Held out: ``--val`` ``photos_val``
clips (camera pans / zooms over the bottom 25% of the scikit-image sample photos, never
seen in training). Columns: PSNR, its margin over each pixel's clip mean
(:func:`mmtok.metrics.baselines.clip_mean`) and over the true first frame repeated
(:func:`~mmtok.metrics.baselines.copy_first_frame`: given frame 0 losslessly), distinct codes
used on the held-out set / codebook size, CPU minutes of training (process CPU time, 1 thread).

Rows: ``old``: the preset before the fix (per-frame GroupNorm with one channel per group =
InstanceNorm on the 8..16-channel maps, default ResBlock init) with the old main recipe
(synthetic clips, batch 4, lr 2e-3); ``fixed``: the fixed preset trained on photo pans from
scratch (batch 4, lr 2e-3); ``new``: the two-stage recipe ``configs/image/vqgan_tiny_f4_photos.yaml``
then ``configs/video/causal3d_tiny_photos.yaml``: a third of the budget trains the 2D twin
(``vqgan_tiny_f4_fsq``) on photo crops (batch 32), the (2+1)D video model is inflated from it
and trained on the pans for the rest.

    python eval/bench_learn_video.py                   # 15 CPU min per row, 2 rows at a time
    python eval/bench_learn_video.py --budget-min 3 --jobs 1

Rows run in subprocesses (one torch thread each); JSON to ``runs/bench_learn_video/<time>.json``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # eval/benchlib.py
from benchlib import learn_bench_args, run_learn_rows, set_threads, train_for_cpu_budget, write_learn_json  # noqa: E402

RES, FRAMES = 32, 17
PRESET = "causal3d_tiny"

NEW_OPTIM = dict(data="photos", batch=4, lr=2e-3, warmup_steps=20, betas=(0.9, 0.99), weight_decay=0.0,
                 min_lr_ratio=0.1, l1=1.0, l2=1.0, ema=0.99)
OLD_OPTIM = dict(NEW_OPTIM, data="synthetic")
FSQ_64K = {"type": "fsq", "levels": [8, 8, 8, 5, 5, 5]}
OLD_PRESET = dict(norm_min_group_channels=1, zero_init_residual=False)

ROWS: dict[str, dict[str, Any]] = {
    "old": dict(label=f"{PRESET}, old preset + old recipe (synthetic)", overrides=OLD_PRESET, optim=OLD_OPTIM),
    "new": dict(label=f"{PRESET}, 2+1D, inflated from 2D (1/3 budget) + photos recipe", overrides=dict(conv="2+1d"),
                optim=NEW_OPTIM, pretrain_2d=dict(frac=1 / 3, batch=32)),
    "fixed": dict(label=f"{PRESET} (fixed) + photos recipe, from scratch", overrides={}, optim=NEW_OPTIM),
    "old_photos": dict(label=f"{PRESET}, old preset + photos recipe", overrides=OLD_PRESET, optim=NEW_OPTIM),
    # candidates (not in the default rows)
    "lr4e3": dict(label=f"{PRESET} + photos recipe, lr 4e-3", overrides={}, optim=dict(NEW_OPTIM, lr=4e-3)),
    "batch8": dict(label=f"{PRESET} + photos recipe, batch 8", overrides={}, optim=dict(NEW_OPTIM, batch=8)),
    "w16": dict(label=f"{PRESET} + photos recipe, base width 16", overrides=dict(base_channels=16), optim=NEW_OPTIM),
    "w16_2p1d": dict(label=f"{PRESET} + photos recipe, base width 16, 2+1D convs",
                     overrides=dict(base_channels=16, conv="2+1d"), optim=NEW_OPTIM),
    "2p1d": dict(label=f"{PRESET} + photos recipe, 2+1D convs", overrides=dict(conv="2+1d"), optim=NEW_OPTIM),
    "2p1d_lr3e3": dict(label=f"{PRESET} + photos recipe, 2+1D convs, lr 3e-3", overrides=dict(conv="2+1d"),
                       optim=dict(NEW_OPTIM, lr=3e-3)),
    "fsq64k": dict(label=f"{PRESET} + photos recipe, FSQ [8, 8, 8, 5, 5, 5]", overrides=dict(quantizer=FSQ_64K),
                   optim=NEW_OPTIM),
    "fsq64k_2p1d": dict(label=f"{PRESET} + photos recipe, FSQ [8, 8, 8, 5, 5, 5], 2+1D convs",
                        overrides=dict(quantizer=FSQ_64K, conv="2+1d"), optim=NEW_OPTIM),
    "2p1d_ln": dict(label=f"{PRESET} + photos recipe, 2+1D convs, latent_norm batch",
                    overrides=dict(conv="2+1d", latent_norm="batch"), optim=NEW_OPTIM),
    "2p1d_ln_z4": dict(label=f"{PRESET} + photos recipe, 2+1D convs, latent_norm batch, z_channels 4",
                       overrides=dict(conv="2+1d", latent_norm="batch", z_channels=4), optim=NEW_OPTIM),
    "fsq64k_2p1d_ln": dict(label=f"{PRESET} + photos recipe, FSQ [8, 8, 8, 5, 5, 5], 2+1D convs, latent_norm batch",
                           overrides=dict(quantizer=FSQ_64K, conv="2+1d", latent_norm="batch"), optim=NEW_OPTIM),
    "2p1d_ln_l2": dict(label=f"{PRESET} + photos recipe, 2+1D convs, latent_norm batch, L2 loss only",
                       overrides=dict(conv="2+1d", latent_norm="batch"), optim=dict(NEW_OPTIM, l1=0.0)),
    "2p1d_l2": dict(label=f"{PRESET} + photos recipe, 2+1D convs, L2 loss only", overrides=dict(conv="2+1d"),
                    optim=dict(NEW_OPTIM, l1=0.0)),
    # 2D pre-training then inflation: a third of the budget trains the 2D VQGAN of the same widths on
    # photo crops (one frame per sample), inflate_into makes it the 3D model (latent frame j
    # from frame 4j, decoded to 4 copies), the rest of the budget fine-tunes that on the pans
    "inflate": dict(label=f"{PRESET} + photos recipe, 1/3 budget 2D pre-training, inflated", overrides={},
                    optim=NEW_OPTIM, pretrain_2d=dict(frac=1 / 3, batch=32)),
    "inflate_half": dict(label=f"{PRESET} + photos recipe, 2+1D convs, 1/2 budget 2D pre-training, inflated",
                         overrides=dict(conv="2+1d"), optim=NEW_OPTIM, pretrain_2d=dict(frac=1 / 2, batch=32)),
    "2p1d_bf16": dict(label=f"{PRESET} + photos recipe, 2+1D convs, bf16 autocast", overrides=dict(conv="2+1d"),
                      optim=dict(NEW_OPTIM, bf16=True)),
    "2p1d_r2": dict(label=f"{PRESET} + photos recipe, 2+1D convs, 2 res blocks",
                    overrides=dict(conv="2+1d", num_res_blocks=2), optim=NEW_OPTIM),
}


def held_out(n: int, seed: int = 0):
    """(n, 3, 17, 32, 32) held-out photo-pan clips in [-1, 1]."""
    import torch

    from mmtok.data import open_dataset

    ds = open_dataset(f"photos_val:{n}", "video", resolution=RES, num_frames=FRAMES, seed=seed)
    return torch.stack([ds[i]["x"] for i in range(len(ds))])


def build(overrides: dict[str, Any]):
    import mmtok

    return mmtok.create_tokenizer(PRESET, num_frames=FRAMES, **overrides)


def evaluate(tok, x) -> dict[str, float]:
    import torch

    from mmtok.metrics.baselines import psnr

    tok.eval()
    recon, codes = [], []
    with torch.no_grad():
        for chunk in x.split(16):
            c = tok.encode(chunk)
            codes.append(c)
            recon.append(tok.decode(c))
    used = int(torch.unique(torch.cat(codes)).numel())
    return {"psnr": psnr(torch.cat(recon), x), "used_codes": used, "codebook_size": int(tok.codebook_size),
            "usage": used / tok.codebook_size}


def train(overrides: dict[str, Any], o: dict[str, Any], budget_s: float, seed: int = 0,
          pretrain_2d: dict[str, Any] | None = None):
    """Train for ``budget_s`` process CPU seconds (cosine over the budget after a warmup in steps).
    ``pretrain_2d`` (``frac``, ``batch``): that fraction of the budget first trains the 2D twin
    (``vqgan_tiny_f4_fsq``) on photo crops; the video model is then inflated from it
    (``inflate_into``, as ``model.inflate_from`` does) and trained for the rest."""
    import torch

    from mmtok.data import open_dataset

    torch.manual_seed(seed)
    tok = build(overrides)
    spent = steps_2d = 0
    if pretrain_2d:
        import mmtok
        from mmtok.video.inflate import inflate_into

        img = mmtok.create_tokenizer("vqgan_tiny_f4_fsq")
        images = open_dataset(f"{o['data']}:1048576", "image", resolution=RES, seed=seed)
        img, steps_2d, spent = train_for_cpu_budget(img, images, dict(o, batch=pretrain_2d["batch"]),
                                                    budget_s * pretrain_2d["frac"])
        inflate_into(tok, img)
    data = open_dataset(f"{o['data']}:1048576", "video", resolution=RES, num_frames=FRAMES, seed=seed)
    model, steps, cpu = train_for_cpu_budget(tok, data, o, budget_s - spent)
    return model, steps + steps_2d, cpu + spent


def train_row(spec: dict[str, Any], budget_s: float, val: int, seed: int) -> dict[str, Any]:
    set_threads()
    model, steps, cpu = train(spec["overrides"], spec["optim"], budget_s, seed, spec.get("pretrain_2d"))
    return {**evaluate(model, held_out(val)), "label": spec["label"], "row": spec.get("row"), "steps": steps,
            "clips": steps * spec["optim"]["batch"], "cpu_min": cpu / 60, "overrides": spec["overrides"],
            "optim": spec["optim"]}


def static_rows(val: int, seed: int) -> list[dict[str, Any]]:
    import torch

    from mmtok.metrics.baselines import clip_mean, copy_first_frame, psnr

    set_threads()
    x = held_out(val)
    torch.manual_seed(seed)
    none = {"used_codes": None, "codebook_size": None, "usage": None, "cpu_min": 0.0}
    return [
        {"label": "clip mean (baseline)", "row": "clip_mean", "psnr": psnr(clip_mean(x), x), **none},
        {"label": "copy first frame (baseline, lossless frame 0)", "row": "copy_first_frame",
         "psnr": psnr(copy_first_frame(x), x), **none},
        {**evaluate(build({}), x), "label": f"{PRESET} untrained", "row": "untrained", "cpu_min": 0.0},
    ]


def print_table(rows: list[dict[str, Any]], budget_min: float, val: int) -> None:
    base = next(r["psnr"] for r in rows if r["row"] == "clip_mean")
    first = next(r["psnr"] for r in rows if r["row"] == "copy_first_frame")
    print(f"\n{PRESET} at {FRAMES}x{RES}x{RES} (5x8x8 codes), {budget_min:g} CPU min per trained row (1 thread); "
          f"{val} held-out photos_val pan/zoom clips")
    print("\n| method | PSNR (dB) | vs clip mean (dB) | vs copy-first-frame (dB) | codes used / codebook | CPU min |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        codes = "-" if r["used_codes"] is None else f"{r['used_codes']} / {r['codebook_size']} ({100 * r['usage']:.0f}%)"
        print(f"| {r['label']} | {r['psnr']:.2f} | {r['psnr'] - base:+.2f} | {r['psnr'] - first:+.2f} | {codes} "
              f"| {r['cpu_min']:.1f} |")


def main(argv: list[str] | None = None) -> int:
    p = learn_bench_args(__doc__.split("\n\n")[0], "bench_learn_video", list(ROWS), ["old", "new"], 15.0, 64, "clips (>= 64)")
    args = p.parse_args(argv)
    results = run_learn_rows(__file__, args, ROWS, train_row)
    if results is None:  # a child process: its row is printed
        return 0
    rows = static_rows(args.val, args.seed) + [results[n] for n in args.rows]
    print_table(rows, args.budget_min, args.val)
    write_learn_json(args, "bench_learn_video", rows, resolution=RES, frames=FRAMES)
    return 0

if __name__ == "__main__":
    sys.exit(main())
