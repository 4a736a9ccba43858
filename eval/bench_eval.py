"""Benchmark: evaluation throughput (images/s) of ``mmtok eval``, feature extraction included.

Measured side by side in one run, per device (CPU, and CUDA when present):
  reconstruct        tokenizer encode + decode only
  inception          FID features (TF-compatible resize to 299 + Inception-v3) of one image set
  psnr+ssim          per-image PSNR and SSIM
  lpips              VGG LPIPS
  eval (cached ref)  evaluate_reconstruction with cached reference statistics (recon features only)
  eval (fresh ref)   evaluate_reconstruction computing reference statistics too (the first run)
and, optionally (--frechet), the time of one Fréchet distance at D = 2048 per square-root route.

    python eval/bench_eval.py --tokenizer titok_t32_fsq --num-images 32 --batch-size 8

Random Inception / LPIPS weights are used unless paths are given: the cost is the same.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(fn, n_images: int, device: torch.device, repeats: int = 1) -> float:
    fn()  # warm-up (kernel selection, lazy init)
    _sync(device)
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return n_images * repeats / (time.perf_counter() - t)


def bench_device(args, device: torch.device, inception_path: str, lpips_weights: str) -> list[tuple[str, float]]:
    import mmtok
    from mmtok.data import open_dataset, to_uint8
    from mmtok.layers.lpips import LPIPS
    from mmtok.metrics import InceptionFeatures, evaluate_reconstruction
    from mmtok.metrics.image import psnr_per_image, ssim_per_image

    tok = mmtok.create_tokenizer(args.tokenizer).to(device).eval()
    spec = f"synthetic:{args.num_images}"
    ds = open_dataset(spec, modality=tok.modality, **tok.preprocessing())
    x = torch.stack([ds[i]["x"] for i in range(args.batch_size)]).to(device)
    b = x.shape[0]
    inc = InceptionFeatures(inception_path, device=device)
    lp = LPIPS(net="vgg", weights=lpips_weights).to(device).eval()
    u8 = to_uint8(x)
    with torch.inference_mode():
        rec = tok.decode(tok.encode(x))
        r8 = to_uint8(rec)
        rows = [
            ("reconstruct (encode+decode)", _rate(lambda: tok.decode(tok.encode(x)), b, device, args.repeats)),
            ("inception features", _rate(lambda: inc(u8), b, device, args.repeats)),
            ("psnr+ssim", _rate(lambda: (psnr_per_image(r8, u8), ssim_per_image(r8, u8)), b, device, args.repeats)),
            ("lpips", _rate(lambda: lp(rec.clamp(-1, 1), x), b, device, args.repeats)),
        ]
    with tempfile.TemporaryDirectory() as tmp:
        kw = dict(batch_size=args.batch_size, device=device, inception_weights=inception_path, lpips=lpips_weights,
                  prefix_lengths=None, out_dir=None, cache_dir=tmp, progress=False, dataset_spec=spec)
        fresh = evaluate_reconstruction(tok, ds, **kw)["throughput"]["eval_images_per_s"]
        cached = evaluate_reconstruction(tok, ds, **kw)["throughput"]["eval_images_per_s"]
    rows += [("eval, cached reference stats", cached), ("eval, fresh reference stats", fresh)]
    return rows


def bench_frechet(n_small: int = 64) -> list[tuple[str, float]]:
    import numpy as np

    from mmtok.metrics.fid import frechet_distance, stats_from_features

    rng = np.random.default_rng(0)
    d = 2048
    big = stats_from_features(rng.normal(size=(d + 512, d)))
    big2 = stats_from_features(rng.normal(loc=0.1, size=(d + 512, d)))
    small = stats_from_features(rng.normal(size=(n_small, d)))
    out = []
    for method, a in (("sqrtm", big2), ("eigh", big2), ("lowrank", small)):
        t = time.perf_counter()
        frechet_distance(a.mu, a.sigma, big.mu, big.sigma, method=method, factor1=a.factor)
        out.append((f"frechet distance D=2048, {method}" + (f" (N={n_small})" if method == "lowrank" else ""), time.perf_counter() - t))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", default="titok_t32_fsq")
    p.add_argument("--num-images", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=2, help="timed repeats of each component (after one warm-up)")
    p.add_argument("--devices", default="auto", help="comma list (cpu,cuda) or 'auto' (cpu + cuda when present)")
    p.add_argument("--inception-weights", default=None, help="real weights path (default: random weights, same cost)")
    p.add_argument("--lpips-weights", default="random")
    p.add_argument("--frechet", action="store_true", help="also time one D=2048 Fréchet distance per method")
    args = p.parse_args(argv)

    from mmtok.metrics.image.inception import save_random_inception_weights

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if args.devices == "auto" else args.devices.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        inception = args.inception_weights or str(save_random_inception_weights(Path(tmp) / "inception.pth"))
        results = {dev: bench_device(args, torch.device(dev), inception, args.lpips_weights) for dev in devices}
    names = [n for n, _ in next(iter(results.values()))]
    print(f"\nevaluation throughput, {args.tokenizer}, batch {args.batch_size}, {args.num_images} images "
          f"(cpu threads: {torch.get_num_threads()})")
    header = f"{'component':<32}" + "".join(f"{d + ' img/s':>14}" for d in devices) + "".join(
        f"{d + ' vs recon':>14}" for d in devices)
    print(header)
    print("-" * len(header))
    for i, name in enumerate(names):
        line = f"{name:<32}" + "".join(f"{results[d][i][1]:>14.2f}" for d in devices)
        line += "".join(f"{results[d][i][1] / results[d][0][1]:>13.3f}x" for d in devices)
        print(line)
    if len(devices) > 1:
        print(f"\n{devices[1]} / {devices[0]} speed-up, eval with cached reference: "
              f"{results[devices[1]][4][1] / results[devices[0]][4][1]:.1f}x")
    if args.frechet:
        rows = bench_frechet()
        print(f"\n{'Fréchet distance':<44}{'seconds':>10}{'vs sqrtm':>10}")
        for name, sec in rows:
            print(f"{name:<44}{sec:>10.3f}{sec / rows[0][1]:>9.3f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
