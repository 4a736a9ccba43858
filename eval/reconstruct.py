"""Evaluate an image tokenizer checkpoint: rFID, PSNR, SSIM, LPIPS, codebook stats, throughput.

    mmtok eval runs/x/final --data /data/imagenet/val --num-images 50000 --batch-size 64
    python eval/reconstruct.py runs/x/final --data synthetic:256 --inception-weights PATH
    torchrun --nproc_per_node 8 eval/reconstruct.py runs/x/final --data "/data/val-{0000..0063}.tar"

Writes report.json, report.md, reconstructions.npz (ADM format), recon_grid.png and, for
nested tokenizers, prefix_curve.png into --out (default: <run dir>/eval/<checkpoint>-<data>-<N>).
The logic lives in ``mmtok.metrics.evaluate_reconstruction``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mmtok eval",
        description="Reconstruct a dataset with an image tokenizer checkpoint and score it under a pinned protocol.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("checkpoint", help="checkpoint directory written by save_pretrained (e.g. runs/x/final)")
    p.add_argument("--data", required=True, help="'synthetic[:N]', an image folder, or tar shards (file, glob, {a..b} list)")
    p.add_argument("--out", default=None, help="output directory (default: <checkpoint>/../eval/<name>-<data>-<N>)")
    p.add_argument("--num-images", type=int, default=None, help="evaluate the first N images (default: all)")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch per process")
    p.add_argument("--resolution", type=int, default=None, help="image resolution (default: the tokenizer's image_size)")
    p.add_argument("--crop", choices=["center", "random"], default="center", help="crop applied after the short-side resize")
    p.add_argument("--device", default=None, help="cuda, cuda:1 or cpu (default: cuda when available)")
    p.add_argument("--num-workers", type=int, default=0, help="data loader worker processes")
    p.add_argument("--inception-weights", default="auto",
                   help="path of weights-inception-2015-12-05-6726825d.pth, or 'auto' for the torch hub cache")
    p.add_argument("--no-fid", action="store_true", help="skip rFID (no Inception weights needed)")
    p.add_argument("--fid-method", choices=["auto", "sqrtm", "eigh", "lowrank"], default="auto",
                   help="matrix square-root route (all give the same value; see mmtok.metrics.fid)")
    p.add_argument("--reference-stats", default=None,
                   help=".npz with mu/sigma of Inception pool3 features (e.g. an ADM reference batch) to score against")
    p.add_argument("--lpips-weights", default="auto", help="'auto' (local cache), 'random' (tests only), a path, or 'none'")
    p.add_argument("--prefixes", default="auto",
                   help="nested tokenizers: 'auto' (1,2,4,...,K), 'none', or comma-separated lengths like 1,8,32")
    p.add_argument("--no-npz", action="store_true", help="do not write reconstructions.npz")
    p.add_argument("--cache-dir", default=None, help="reference statistics cache (default: ~/.cache/mmtok/fid_refs)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write cached reference statistics")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _parse_prefixes(s: str) -> list[int] | str | None:
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


def default_out_dir(checkpoint: str, data: str, num_images: int | None) -> Path:
    ckpt = Path(checkpoint).resolve()
    return ckpt.parent / "eval" / f"{ckpt.name}-{_slug(data)}-{num_images or 'all'}"


def _init_distributed() -> bool:
    import torch
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend=backend)
    return True


def _print_summary(report: dict) -> None:
    m, p = report["metrics"], report["protocol"]
    f = lambda v: "–" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))  # noqa: E731
    print(f"protocol {p['id']}: N={p['num_images']} {p['resolution'][0]}x{p['resolution'][1]} crop={p['crop']}")
    print(f"{'rFID':>8} {'PSNR':>8} {'SSIM':>8} {'LPIPS':>8} {'usage':>8} {'ppl':>9} {'bpp':>8} {'enc/s':>8} {'dec/s':>8}")
    cb, tp = report["codebook"], report["throughput"]
    print(f"{f(m['rfid']):>8} {f(m['psnr']):>8} {f(m['ssim']):>8} {f(m['lpips']):>8} {f(cb['usage']):>8} "
          f"{f(cb['perplexity']):>9} {f(m['bits_per_pixel']):>8} {f(tp['encode_images_per_s']):>8} {f(tp['decode_images_per_s']):>8}")
    for r in report.get("prefix", []):
        print(f"  tokens {r['tokens']:>4}: rFID {f(r['rfid'])}  PSNR {f(r['psnr'])}  SSIM {f(r['ssim'])}  LPIPS {f(r['lpips'])}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch.distributed as dist

    from mmtok.checkpoint import load_tokenizer
    from mmtok.data import open_image_dataset
    from mmtok.metrics import evaluate_reconstruction

    started = False
    try:
        started = _init_distributed()
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        prefixes = _parse_prefixes(args.prefixes)
        tok = load_tokenizer(args.checkpoint, modality="image")
        resolution = args.resolution or int(getattr(tok.config, "image_size", 0) or 0)
        if resolution <= 0:
            raise ValueError("the tokenizer has no image_size; pass --resolution")
        dataset = open_image_dataset(args.data, resolution=resolution, crop=args.crop)
        out = Path(args.out) if args.out else default_out_dir(args.checkpoint, args.data, args.num_images)
        report = evaluate_reconstruction(
            tok, dataset,
            batch_size=args.batch_size, num_images=args.num_images, device=args.device,
            fid=not args.no_fid, inception_weights=args.inception_weights, fid_method=args.fid_method,
            lpips=None if args.lpips_weights.lower() == "none" else args.lpips_weights,
            prefix_lengths=prefixes, out_dir=out, save_npz=not args.no_npz,
            cache_dir=args.cache_dir, use_cache=not args.no_cache, dataset_spec=args.data,
            num_workers=args.num_workers, progress=not args.no_progress, checkpoint=str(args.checkpoint),
            reference_stats=args.reference_stats,
        )
        if rank == 0:
            _print_summary(report)
            print(f"report: {out / 'report.md'}")
        return 0
    except (FileNotFoundError, NotADirectoryError, ValueError, TypeError, KeyError) as e:
        print(f"mmtok eval: error: {e}", file=sys.stderr)
        return 2
    finally:
        if started:
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
