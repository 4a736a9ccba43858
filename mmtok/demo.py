"""``mmtok demo``: small CPU-friendly demonstrations on built-in synthetic data."""

from __future__ import annotations

import argparse
import sys
import time

import torch
from torch import nn

QUANTIZER_DEMO = {
    "VQ (restart)": {"type": "vq", "codebook_size": 256, "codebook_dim": 8, "threshold_ema_dead_code": 1.0},
    "VQ (no restart)": {"type": "vq", "codebook_size": 256, "codebook_dim": 8},
    "RVQ 4 levels": {"type": "rvq", "num_levels": 4, "codebook_size": 256, "threshold_ema_dead_code": 1.0},
    "FSQ [8,5,5,5]": {"type": "fsq", "levels": [8, 5, 5, 5]},
    "ResidualFSQ 3x[8,5,5,5]": {"type": "rfsq", "levels": [8, 5, 5, 5], "num_levels": 3},
    "LFQ 2^10": {"type": "lfq", "codebook_size": 1024},
    "BSQ 2^10": {"type": "bsq", "codebook_size": 1024},
}


def quantizer_demo(steps: int = 200, seed: int = 0) -> list[dict]:
    """Train a tiny MLP autoencoder around each quantizer on clustered synthetic vectors and
    print codebook usage, perplexity and reconstruction error (eval mode, held-out data)."""
    from mmtok.data.vectors import clustered_vectors
    from mmtok.quantize import build

    in_dim, lat = 32, 16
    _, centers = clustered_vectors(1, in_dim, num_clusters=512, seed=seed)
    x_test, _ = clustered_vectors(8192, in_dim, centers=centers, seed=seed + 10_000)
    base = (x_test - x_test.mean(0)).square().mean().item()
    rows = []
    print(f"quantizer demo: {steps} steps, MLP autoencoder {in_dim}->{lat}->quantizer->{in_dim}, "
          f"512-cluster synthetic vectors; recon MSE of predicting the mean = {base:.4f}")
    print(f"\n| quantizer | codes | bits/token | usage | perplexity | recon MSE | secs |\n|---|---:|---:|---:|---:|---:|---:|")
    for name, cfg in QUANTIZER_DEMO.items():
        torch.manual_seed(seed)
        enc = nn.Sequential(nn.Linear(in_dim, 64), nn.GELU(), nn.Linear(64, lat))
        dec = nn.Sequential(nn.Linear(lat, 64), nn.GELU(), nn.Linear(64, in_dim))
        q = build(cfg, dim=lat)
        params = [*enc.parameters(), *dec.parameters(), *q.parameters()]
        opt = torch.optim.Adam(params, lr=3e-3)
        t0 = time.perf_counter()
        for s in range(steps):
            x, _ = clustered_vectors(512, in_dim, centers=centers, seed=seed + 1 + s)
            out = q(enc(x)[None])
            loss = (dec(out.quantized[0]) - x).square().mean() + out.loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        q.eval()
        with torch.no_grad():
            out = q(enc(x_test)[None])
            mse = (dec(out.quantized[0]) - x_test).square().mean().item()
        row = {
            "quantizer": name,
            "codebook_size": q.codebook_size,
            "bits_per_token": q.bits_per_token,
            "usage": out.metrics["usage"].item(),
            "perplexity": out.metrics["perplexity"].item(),
            "mse": mse,
            "seconds": time.perf_counter() - t0,
        }
        rows.append(row)
        print(f"| {name} | {row['codebook_size']} | {row['bits_per_token']:.1f} | {row['usage']:.3f} | "
              f"{row['perplexity']:.1f} | {mse:.4f} | {row['seconds']:.1f} |", flush=True)
    return rows


MAIN_JOB_RECIPE = "image/titok_t32_fsq_synthetic"  # shipped in the package: mmtok/configs/image/


def main(argv: list[str] | None = None) -> int:
    """``mmtok demo``: the main job (train a tiny 1D tokenizer on synthetic images, CPU);
    ``mmtok demo quantizers``: the quantizer comparison."""
    p = argparse.ArgumentParser(
        prog="mmtok demo",
        description="Small demonstrations on built-in synthetic data. Default: train a tiny 1D tokenizer "
        f"(built-in recipe {MAIN_JOB_RECIPE}) on CPU in a few minutes and print where the checkpoint, "
        "reconstruction grid and metrics are.",
    )
    p.add_argument("what", nargs="?", default="train", choices=["train", "quantizers"])
    p.add_argument("--steps", type=int, default=None, help="training steps (train: the recipe's 2000; quantizers: 200)")
    p.add_argument("--run-dir", default="runs/demo_titok_t32_fsq", help="train: run directory (resumes if it exists)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="train: extra config override, e.g. --set optim.batch_size=32 (repeatable)")
    args = p.parse_args(argv)
    if args.what == "quantizers":
        quantizer_demo(steps=args.steps or 200)
        return 0
    from mmtok.training.cli import train_main

    overrides = [f"run_dir={args.run_dir}", *(["schedule.total_steps=%d" % args.steps] if args.steps else []), *args.overrides]
    print(f"mmtok demo: training {MAIN_JOB_RECIPE} on CPU-friendly synthetic images -> {args.run_dir}", flush=True)
    return train_main([MAIN_JOB_RECIPE, *overrides])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
