#!/usr/bin/env python
"""Training-step benchmark: images/s, peak memory and model FLOPs utilisation (MFU).

One training step = tokenizer forward + TokenizerLoss (L1 + L2 + quantizer; no LPIPS / GAN
unless --lpips) + backward + AdamW step, the generator step of train/tokenizer.py.
Every row runs in its own subprocess so peak memory (CUDA max allocated, or CPU peak
RSS) belongs to that row alone; rows of one model are measured side by side in one run so
ratios (torch.compile vs eager) are comparable.

    python eval/bench_train.py                        # CPU: tiny and S-size TiTok
    python eval/bench_train.py --device cuda          # GPU: bf16, compile off/on, MFU
    python eval/bench_train.py --models titok_b64_fsq --device cuda --batch 64

MFU = (model FLOPs of one step, counted with torch.utils.flop_counter) / step time / peak
dense bf16 FLOP/s of the GPU (--peak-tflops, or a table for H100/H200/A100/L40S/4090).

Codebook usage on real photos (``--usage``, CPU, a few minutes): the tiny presets train
side by side for ``--usage-steps`` steps (default 300) on seeded random 32x32 crops of the
scikit-image sample photos (top 80% of each photo); the table gives, on held-out crops
(bottom 20%), the distinct codes used / codebook size, the perplexity and the PSNR. The
VQ preset runs with and without dead-code restart (and without k-means too) to show what
the robust defaults buy.

    python eval/bench_train.py --usage
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "GH200": 989.0, "A100": 312.0, "L40S": 362.0, "4090": 165.0, "A10": 125.0}

# (model, resolution, per-device batch on CPU, on GPU)
DEFAULT_MODELS = {
    "titok_t32_fsq": (32, 16, 256),
    "titok_s128_fsq": (256, 2, 64),
}


def _peak_tflops(name: str, override: float | None) -> float | None:
    if override:
        return override
    for key, v in PEAK_BF16_TFLOPS.items():
        if key in name:
            return v
    return None


def run_one(model_name: str, resolution: int, batch: int, device: str, precision: str, compile_: bool,
            steps: int, warmup: int, threads: int | None, lpips: bool) -> dict[str, Any]:
    """Measure one configuration in this process; returns a result row."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import mmtok
    from mmtok.losses import TokenizerLoss

    if device == "cpu" and threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    dev = torch.device(device)
    tok = mmtok.create_tokenizer(model_name, image_size=resolution).to(dev).train()
    loss_fn = TokenizerLoss(l1_weight=1.0, l2_weight=1.0, perceptual_weight=1.0 if lpips else 0.0,
                            perceptual="random" if lpips else None, gan_weight=0.0).to(dev)
    opt = torch.optim.AdamW(tok.parameters(), lr=1e-4, fused=dev.type == "cuda")
    model = torch.compile(tok) if compile_ else tok
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    x = (torch.rand(batch, 3, resolution, resolution, device=dev) * 2 - 1)

    def step() -> None:
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            out = model(x)
            total = loss_fn.generator_loss(x, out, 0).total
        total.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    # model FLOPs of one step (forward + backward), counted on the eager module
    flops = None
    try:
        with FlopCounterMode(display=False) as fc:
            with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
                out = tok(x)
                total = loss_fn.generator_loss(x, out, 0).total
            total.backward()
        flops = float(fc.get_total_flops())
        opt.zero_grad(set_to_none=True)
    except Exception as e:  # pragma: no cover - counting is best effort
        print(f"flop counting failed: {e}", file=sys.stderr)

    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    sync()
    warm_s = time.perf_counter() - t0
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    dt = (time.perf_counter() - t0) / steps
    if dev.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
        dev_name = torch.cuda.get_device_name()
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        dev_name = f"CPU x{torch.get_num_threads()} threads"
    return {
        "model": model_name, "params_m": tok.num_parameters() / 1e6, "resolution": resolution, "batch": batch,
        "device": dev_name, "precision": precision, "compile": compile_, "step_ms": dt * 1e3,
        "images_per_s": batch / dt, "peak_mb": peak_mb, "gflop_per_image": flops / batch / 1e9 if flops else None,
        "achieved_tflops": flops / dt / 1e12 if flops else None, "warmup_s": warm_s,
    }


# (row label, registered tiny preset, quantizer option overrides)
USAGE_ROWS = [
    ("titok_t32_vq", "titok_t32_vq", {}),
    ("titok_t32_vq, restart off", "titok_t32_vq", {"threshold_ema_dead_code": 0.0}),
    ("titok_t32_vq, restart + k-means off", "titok_t32_vq", {"threshold_ema_dead_code": 0.0, "kmeans_init": False}),
    ("titok_t32_fsq", "titok_t32_fsq", {}),
    ("titok_t32_lfq", "titok_t32_lfq", {}),
]
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")


def photo_crops(n: int, held_out: bool, seed: int, size: int = 32, short_side: int = 256):
    """(n, 3, size, size) float32 crops in [-1, 1] of the scikit-image sample photos (each
    resized to ``short_side``): from the top 80% of each photo, or the bottom 20% (held out)."""
    import skimage.data
    import torch
    import torch.nn.functional as F

    photos = []
    for name in PHOTOS:
        img = torch.from_numpy(getattr(skimage.data, name)()).permute(2, 0, 1)[None].float() / 127.5 - 1
        scale = short_side / min(img.shape[-2:])
        img = F.interpolate(img, scale_factor=scale, mode="bilinear", antialias=True, align_corners=False)[0]
        split = int(img.shape[1] * 0.8)
        photos.append(img[:, split:] if held_out else img[:, :split])
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        img = photos[i % len(photos)]
        top = int(torch.randint(0, img.shape[1] - size + 1, (1,), generator=g))
        left = int(torch.randint(0, img.shape[2] - size + 1, (1,), generator=g))
        out.append(img[:, top : top + size, left : left + size])
    return torch.stack(out).clamp(-1, 1)


def usage_row(label: str, preset: str, quantizer: dict[str, Any], steps: int, batch: int, seed: int) -> dict[str, Any]:
    """Train one tiny preset on photo crops; codebook usage and PSNR on held-out crops."""
    import torch

    import mmtok
    from mmtok.metrics import CodebookHistogram

    torch.manual_seed(seed)
    base = mmtok.create_tokenizer(preset).config.quantizer
    tok = mmtok.create_tokenizer(preset, quantizer={**base, **quantizer}).train()
    opt = torch.optim.AdamW(tok.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.0)
    train = photo_crops(steps * batch // 4, held_out=False, seed=seed)  # each crop seen ~4 times
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for _ in range(steps):
        x = train[torch.randint(0, len(train), (batch,), generator=g)]
        out = tok(x)
        loss = (out.recon - x).abs().mean() + (out.recon - x).pow(2).mean() + out.loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    train_s = time.perf_counter() - t0
    tok.eval()
    held = photo_crops(1024, held_out=True, seed=seed + 1)
    hist = CodebookHistogram(tok.codebook_size, tok.num_codebooks)
    mse = []
    with torch.no_grad():
        for x in held.split(256):
            codes = tok.encode(x)
            hist.update(codes)
            mse.append((tok.decode(codes) - x).pow(2).flatten(1).mean(1))
    mse = torch.cat(mse)
    psnr = float((10 * torch.log10(4.0 / mse.clamp_min(1e-10))).mean())  # peak-to-peak 2 in [-1, 1]
    stats = hist.compute()
    return {"label": label, "codebook_size": tok.codebook_size, "used_codes": stats["used_codes"],
            "usage": stats["usage"], "perplexity": stats["perplexity"], "psnr": psnr, "train_s": train_s}


def print_usage_table(rows: list[dict[str, Any]], steps: int, batch: int) -> None:
    print(f"\nCodebook usage after {steps} steps (batch {batch}) on 32x32 photo crops; held-out: 1024 crops")
    print("\n| tokenizer | codebook | codes used | usage | perplexity | held-out PSNR (dB) | train s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['label']} | {r['codebook_size']} | {r['used_codes']:.0f} | {100 * r['usage']:.1f}% | "
              f"{r['perplexity']:.1f} | {r['psnr']:.2f} | {r['train_s']:.0f} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=list(DEFAULT_MODELS), help="registered tokenizer names")
    p.add_argument("--device", default="cuda" if _cuda() else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--batch", type=int, default=None, help="per-step batch (default: per model and device)")
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 3 on CPU, 20 on GPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 1 on CPU, 5 on GPU)")
    p.add_argument("--precision", nargs="*", default=None, help="default: no on CPU, bf16 on GPU")
    p.add_argument("--compile", nargs="*", choices=["off", "on"], default=None, help="default: off on CPU, off and on on GPU")
    p.add_argument("--threads", type=int, default=None, help="CPU torch threads (default: torch's)")
    p.add_argument("--lpips", action="store_true", help="include the LPIPS perceptual loss (random trunk) in the step")
    p.add_argument("--peak-tflops", type=float, default=None, help="peak dense bf16 TFLOP/s of the GPU for MFU")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    p.add_argument("--usage", action="store_true", help="codebook usage of the tiny presets on photo crops (CPU)")
    p.add_argument("--usage-steps", type=int, default=300)
    p.add_argument("--usage-batch", type=int, default=32)
    p.add_argument("--_one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args._one:  # child process: one row as JSON on the last stdout line
        spec = json.loads(args._one)
        print(json.dumps(run_one(**spec)))
        return 0

    if args.usage:
        rows = [usage_row(label, preset, q, args.usage_steps, args.usage_batch, seed=0) for label, preset, q in USAGE_ROWS]
        print_usage_table(rows, args.usage_steps, args.usage_batch)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=2)
        return 0

    gpu = args.device == "cuda"
    steps = args.steps or (20 if gpu else 3)
    warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)
    precisions = args.precision or (["bf16"] if gpu else ["no"])
    compiles = [c == "on" for c in (args.compile or (["off", "on"] if gpu else ["off"]))]
    rows = []
    for name in args.models:
        res_d, b_cpu, b_gpu = DEFAULT_MODELS.get(name, (args.resolution or 256, 2, 32))
        res = args.resolution or res_d
        batch = args.batch or (b_gpu if gpu else b_cpu)
        for prec in precisions:
            for comp in compiles:
                spec = dict(model_name=name, resolution=res, batch=batch, device=args.device, precision=prec,
                            compile_=comp, steps=steps, warmup=warmup, threads=args.threads, lpips=args.lpips)
                print(f"[bench] {name} {res}px batch {batch} {args.device} {prec} compile={comp} ...", file=sys.stderr, flush=True)
                proc = subprocess.run([sys.executable, __file__, "--_one", json.dumps(spec)], capture_output=True, text=True)
                if proc.returncode != 0:
                    print(proc.stderr[-2000:], file=sys.stderr)
                    rows.append({**spec, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"})
                    continue
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))

    print("\n| model | params | res | device | prec | compile | batch | img/s | step ms | peak mem MB | GFLOP/img | TFLOP/s | MFU | vs eager |")
    print("|---|---:|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    eager = {}
    for r in rows:
        if "error" in r:
            print(f"| {r['model_name']} | | {r['resolution']} | {r['device']} | {r['precision']} | {r['compile_']} | {r['batch']} | failed: {r['error'][:60]} |")
            continue
        key = (r["model"], r["precision"], r["batch"])
        if not r["compile"]:
            eager[key] = r["images_per_s"]
        peak = _peak_tflops(r["device"], args.peak_tflops) if gpu else None
        mfu = f"{100 * r['achieved_tflops'] / peak:.1f}%" if peak and r["achieved_tflops"] else "-"
        ratio = f"{r['images_per_s'] / eager[key]:.2f}x" if key in eager else "-"
        gf = f"{r['gflop_per_image']:.2f}" if r["gflop_per_image"] else "-"
        tf = f"{r['achieved_tflops']:.3f}" if r["achieved_tflops"] else "-"
        print(f"| {r['model']} | {r['params_m']:.1f}M | {r['resolution']} | {r['device']} | {r['precision']} | "
              f"{'on' if r['compile'] else 'off'} | {r['batch']} | {r['images_per_s']:.1f} | {r['step_ms']:.0f} | "
              f"{r['peak_mb']:.0f} | {gf} | {tf} | {mfu} | {ratio} |")
    if not gpu:
        print("\nGPU rows: run with --device cuda on a CUDA machine (bf16, compile off/on, MFU).")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # pragma: no cover
        return False


if __name__ == "__main__":
    sys.exit(main())
