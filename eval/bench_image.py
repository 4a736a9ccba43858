"""Image tokenizer throughput: encode / decode images per second, parameters and model FLOPs.

Every variant runs in the same process on the same inputs, one after another; the table
shows medians over repeated timed calls and each variant's speed relative to the first
row (the reference, by default ``titok_s128_fsq``, whose published counterpart TiTok-S-128
has 51.8M parameters and encodes / decodes ~8 img/s at batch 8, 256x256, on a 2-core CPU).

CPU (always): fp32, ``torch.inference_mode``. GPU (when CUDA is present, with the default
``--device auto`` or ``--device cuda``): bf16 autocast with the encoder and decoder wrapped by ``torch.compile``, and
model FLOPs utilisation (MFU) against the GPU's dense bf16 peak.

    python eval/bench_image.py                       # representative set, CPU
    python eval/bench_image.py --variants titok_t32_fsq,flextok_t32_fsq --batch 16
    python eval/bench_image.py --variants all --image-size 64 --tiny
    python eval/bench_image.py --device cuda --batch 64
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

import mmtok

DEFAULT_VARIANTS = [
    "titok_s128_fsq",
    "flextok_s128_fsq",
    "titok_s128_vq",
    "titok_b64_vq",
    "titok_l32_fsq",
    "vqgan_f16_vq",
    "vqgan_f8_vq",
    "titok_t32_fsq",
    "flextok_t32_fsq",
    "vqgan_t_f8_vq",
]

# Dense bf16 tensor-core peaks (TFLOP/s) by device-name substring, for MFU.
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "4090": 165.0, "L4": 121.0}


def gpu_peak_tflops(name: str, override: float | None) -> float | None:
    if override:
        return override
    for key, value in BF16_PEAK_TFLOPS.items():
        if key in name:
            return value
    return None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_call(fn: Callable[[], object], device: torch.device, min_time: float, min_iters: int, warmup: int) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_iters or time.perf_counter() - start < min_time:
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
        if len(times) >= 200:
            break
    return statistics.median(times)


def count_flops(fn: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as fc:
        fn()
    return int(fc.get_total_flops())


def build(name: str, image_size: int | None, tiny: bool) -> mmtok.Tokenizer:
    overrides: dict[str, object] = {}
    if image_size:
        overrides["image_size"] = image_size
    if tiny:
        if name.startswith(("titok", "flextok")):
            overrides.update(encoder_width=64, encoder_depth=1, encoder_heads=2, decoder_width=64, decoder_depth=1, decoder_heads=2)
        else:
            overrides.update(base_channels=16, num_res_blocks=1, z_channels=16)
    return mmtok.create_tokenizer(name, **overrides)


def bench_variant(name: str, args: argparse.Namespace, device: torch.device) -> dict[str, object]:
    torch.manual_seed(0)
    tok = build(name, args.image_size, args.tiny).to(device).eval()
    size = tok.config.image_size
    x = torch.rand(args.batch, 3, size, size, generator=torch.Generator().manual_seed(0)).mul(2).sub(1).to(device)
    params = tok.num_parameters()
    on_gpu = device.type == "cuda"
    if on_gpu and args.compile:
        tok.encoder.compile()
        tok.decoder.compile()
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=on_gpu)

    with torch.no_grad(), autocast:  # FLOP counting (module hooks) does not work under inference_mode
        codes = tok.encode(x)
        enc_flops = count_flops(lambda: tok.encode(x)) if not (on_gpu and args.compile) else None
        dec_flops = count_flops(lambda: tok.decode(codes)) if not (on_gpu and args.compile) else None
    with torch.inference_mode(), autocast:
        t_enc = time_call(lambda: tok.encode(x), device, args.min_time, args.min_iters, args.warmup)
        t_dec = time_call(lambda: tok.decode(codes), device, args.min_time, args.min_iters, args.warmup)
    if enc_flops is None:  # FLOPs of the compiled modules: count on an eager copy
        ref = build(name, args.image_size, args.tiny).to(device).eval()
        with torch.no_grad(), autocast:
            enc_flops = count_flops(lambda: ref.encode(x))
            dec_flops = count_flops(lambda: ref.decode(codes))
        del ref
    row = {
        "variant": name,
        "px": size,
        "params_m": params / 1e6,
        "tokens": "x".join(str(s) for s in tok.token_shape),
        "bits": tok.bits_per_image,
        "enc_gflop": enc_flops / args.batch / 1e9,
        "dec_gflop": dec_flops / args.batch / 1e9,
        "enc_ips": args.batch / t_enc,
        "dec_ips": args.batch / t_dec,
    }
    if on_gpu:
        peak = gpu_peak_tflops(torch.cuda.get_device_name(device), args.peak_tflops)
        if peak:
            row["enc_mfu"] = enc_flops / t_enc / (peak * 1e12)
            row["dec_mfu"] = dec_flops / t_dec / (peak * 1e12)
    else:
        row["enc_gflops"] = enc_flops / t_enc / 1e9
        row["dec_gflops"] = dec_flops / t_dec / 1e9
    return row


def render(rows: list[dict[str, object]], device: torch.device) -> str:
    ref = rows[0]
    util = ("enc MFU", "dec MFU") if device.type == "cuda" else ("enc GFLOP/s", "dec GFLOP/s")
    head = ["variant", "px", "params (M)", "tokens", "bits/img", "enc GFLOP/img", "dec GFLOP/img",
            "enc img/s", "dec img/s", "enc x ref", "dec x ref", *util]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if device.type == "cuda":
            u = [f"{r['enc_mfu']:.1%}" if "enc_mfu" in r else "n/a", f"{r['dec_mfu']:.1%}" if "dec_mfu" in r else "n/a"]
        else:
            u = [f"{r['enc_gflops']:.1f}", f"{r['dec_gflops']:.1f}"]
        cells = [
            str(r["variant"]), str(r["px"]), f"{r['params_m']:.1f}", str(r["tokens"]), f"{r['bits']:.0f}",
            f"{r['enc_gflop']:.2f}", f"{r['dec_gflop']:.2f}", f"{r['enc_ips']:.1f}", f"{r['dec_ips']:.1f}",
            f"{r['enc_ips'] / ref['enc_ips']:.2f}", f"{r['dec_ips'] / ref['dec_ips']:.2f}", *u,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                   help="comma-separated registered names, or 'all' (every image variant); the first is the reference row")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--image-size", type=int, default=None, help="override every variant's image_size")
    p.add_argument("--tiny", action="store_true", help="shrink widths/depths (smoke runs; not the real models)")
    p.add_argument("--device", default="auto", help="cpu, cuda, or auto (CPU, then the GPU when there is one)")
    p.add_argument("--threads", type=int, default=None, help="CPU intra-op threads (default: torch's)")
    p.add_argument("--no-compile", dest="compile", action="store_false", help="GPU: run eager instead of torch.compile")
    p.add_argument("--peak-tflops", type=float, default=None, help="GPU bf16 peak for MFU when the device is not known")
    p.add_argument("--min-time", type=float, default=2.0, help="seconds of timed calls per measurement (at least)")
    p.add_argument("--min-iters", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    args = p.parse_args(argv)

    if args.device == "auto":  # CPU always, plus the GPU when there is one
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    else:
        devices = [args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        p.error("--device cuda requested but CUDA is not available")
    if args.threads:
        torch.set_num_threads(args.threads)
    names = mmtok.list_tokenizers(modality="image") if args.variants == "all" else [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [n for n in names if n not in mmtok.list_tokenizers()]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; see mmtok.list_tokenizers(modality='image')")

    for dev_name in devices:
        device = torch.device(dev_name)
        warmup = args.warmup
        if device.type == "cuda":
            args.warmup = max(args.warmup, 3)  # compilation happens in the first calls
            where = torch.cuda.get_device_name(device)
            mode = "bf16 autocast" + (" + torch.compile" if args.compile else "")
        else:
            where, mode = f"CPU, {torch.get_num_threads()} threads", "fp32"
        load = f", load avg {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores" if hasattr(os, "getloadavg") else ""
        header = f"{where}, {mode}, batch {args.batch}{load}; reference row: {names[0]}"
        print(f"# bench_image: {header}", file=sys.stderr)
        rows = []
        for name in names:
            rows.append(bench_variant(name, args, device))
            r = rows[-1]
            print(f"  {name}: enc {r['enc_ips']:.1f} img/s, dec {r['dec_ips']:.1f} img/s", file=sys.stderr, flush=True)
        print(f"\n{header}\n")
        print(render(rows, device))
        args.warmup = warmup
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
