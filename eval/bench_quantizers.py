"""Forward+backward time of each mmtok quantizer vs the raw vector-quantize-pytorch module it wraps.

Both sides run the *same* module instance (the wrapper's inner module called directly vs
through the wrapper), on the same input, in adjacent A/B pairs (alternating which goes
first) so machine noise hits both alike; the table reports median times and the median of
the per-pair ratios wrapper / raw (target <= 1.05).

    python eval/bench_quantizers.py [--threads 1 --batch 16 --tokens 256 --dim 256 --iters 30] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

import mmtok.quantize as Q

CONFIGS = {
    "VQ (4096 x 12-d, cosine, EMA)": {"type": "vq", "codebook_size": 4096, "codebook_dim": 12},
    "RVQ (8 x 1024)": {"type": "rvq", "num_levels": 8, "codebook_size": 1024, "codebook_dim": 8, "quantizer_dropout": False},
    "FSQ [8,8,8,5,5,5]": {"type": "fsq", "levels": [8, 8, 8, 5, 5, 5]},
    "ResidualFSQ (4 x [8,5,5,5])": {"type": "rfsq", "levels": [8, 5, 5, 5], "num_levels": 4, "quantizer_dropout": False},
    "LFQ (2^10, entropy)": {"type": "lfq", "codebook_size": 2**10},
    "BSQ (2^10)": {"type": "bsq", "codebook_size": 2**10},
}


def inner(q: Q.Quantizer) -> torch.nn.Module:
    for attr in ("vq", "inner", "fsq", "lfq"):
        if hasattr(q, attr):
            return getattr(q, attr)
    raise AttributeError(type(q).__name__)


def step_wrapper(q: Q.Quantizer, z: torch.Tensor) -> None:
    out = q(z)
    (out.quantized.square().mean() + out.loss).backward()


def step_raw(m: torch.nn.Module, z: torch.Tensor) -> None:
    res = m(z)
    qz, loss = res[0], (res[2] if len(res) > 2 else None)
    total = qz.square().mean()
    if loss is not None:
        total = total + loss.sum()
    total.backward()


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def bench(name: str, cfg: dict, args: argparse.Namespace, device: torch.device) -> tuple[str, float, float, float, int]:
    torch.manual_seed(0)
    q = Q.build(cfg, dim=args.dim).to(device).train()
    raw = inner(q)
    z = torch.randn(args.batch, args.tokens, args.dim, device=device, requires_grad=True)
    for _ in range(args.warmup):
        step_wrapper(q, z)
        step_raw(raw, z)
    tw, tr = [], []
    start = time.perf_counter()
    i = 0
    # at least --iters pairs, more for fast quantizers (up to --budget seconds, 400 pairs)
    while i < args.iters or (time.perf_counter() - start < args.budget and i < 400):
        if i % 2:  # alternate which side runs first, so order effects cancel
            tr.append(timed(lambda: step_raw(raw, z), device))
            tw.append(timed(lambda: step_wrapper(q, z), device))
        else:
            tw.append(timed(lambda: step_wrapper(q, z), device))
            tr.append(timed(lambda: step_raw(raw, z), device))
        i += 1
    # median of per-pair ratios: adjacent runs share the machine's momentary load
    ratio = statistics.median(a / b for a, b in zip(tw, tr))
    return name, statistics.median(tw) * 1e3, statistics.median(tr) * 1e3, ratio, i


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--tokens", type=int, default=256)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--iters", type=int, default=20, help="minimum A/B pairs per quantizer")
    p.add_argument("--budget", type=float, default=3.0, help="seconds per quantizer for extra pairs")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="CPU threads (the same for both sides)")
    p.add_argument("--device", action="append", default=None, help="cpu and/or cuda (default: cpu, plus cuda when available)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    print(f"input (B, N, D) = ({args.batch}, {args.tokens}, {args.dim}); forward+backward in training mode; ms = medians, ratio = median of per-pair ratios; torch {torch.__version__}, {torch.get_num_threads()} threads")
    worst = 0.0
    for dev in devices:
        device = torch.device(dev)
        print(f"\n| device | quantizer | mmtok ms | raw vector-quantize-pytorch ms | ratio | pairs |")
        print("|---|---|---:|---:|---:|---:|")
        for name, cfg in CONFIGS.items():
            n, w, r, ratio, pairs = bench(name, cfg, args, device)
            worst = max(worst, ratio)
            print(f"| {dev} | {n} | {w:.2f} | {r:.2f} | {ratio:.3f} | {pairs} |", flush=True)
    print(f"\nworst ratio {worst:.3f} (target <= 1.05)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
