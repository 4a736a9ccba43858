"""AR generator benchmark: training tokens/s (and MFU on a GPU) and sampling tokens/s with and
without the KV cache. Random weights and random token ids (speed only, nothing is downloaded).

1. train    ``ARGenerator.loss`` + backward + AdamW step on (batch, length) random codes with
            class labels: tokens/s = batch * length / median step time. CPU fp32 eager for
            ``tiny`` and ``s``; with CUDA also bf16 autocast, eager and ``torch.compile``, for
            ``s`` and ``b``, with MFU = 6 * params * tokens/s / peak dense bf16 FLOP/s
            (``--peak-tflops`` or a table by GPU name; params include the embeddings).
2. sample   ``mmtok.ar.sample`` of ``--num`` sequences (default 8) of ``--length`` tokens
            (default 256), top-k 100, with the KV cache (one position per step) and without it
            (a full forward of the prefix per step): generated tokens/s and the cache speed-up.
            With ``--quick`` (or ``--estimate-nocache``) the CPU no-cache run of ``s`` is
            estimated: the forward of a prefix of p positions is timed at a few p, the per-step
            times are linearly interpolated over all steps and summed (forward only, without the
            filtering / drawing cost, so the estimate -- and the speed-up -- err low).

Then the target: KV cache >= 5x faster than no cache at 256 tokens, met / not met per model.

    python eval/bench_ar.py                  # about 4 min on 2 cores
    python eval/bench_ar.py --quick          # fewer steps and probe lengths, about 1 min
    python eval/bench_ar.py --json bench_ar.json --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from mmtok.ar import AR_SIZES, ARGenerator, sample

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "GH200": 989.0, "A100": 312.0, "L40S": 362.0,
                    "4090": 165.0, "A10": 125.0}
TARGET_SPEEDUP = 5.0


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def set_threads(spec: str) -> str:
    """Torch intra-op threads from ``spec`` (an int or "auto"): "auto" keeps torch's default on
    an idle box and drops to 1 thread when the 1-min load average says other jobs hold cores
    (oversubscribed threads make small ops much slower). Returns how it was chosen."""
    if spec != "auto":
        torch.set_num_threads(int(spec))
        return "--threads"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if load is None:
        return "torch default"
    if load >= 0.75:
        torch.set_num_threads(1)
        return f"auto: load {load:.2f}, 1 thread"
    return f"auto: load {load:.2f}, torch default"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_tflops(name: str, override: float | None) -> float | None:
    if override:
        return override
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU x{torch.get_num_threads()} threads"


def _build(size: str, vocab: int, length: int, classes: int, device: torch.device) -> ARGenerator:
    torch.manual_seed(0)
    return AR_SIZES[size](vocab, length, num_classes=classes).to(device)


def _timed(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int) -> float:
    """Median seconds of fn() over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# --- 1. training ---------------------------------------------------------------------------
def bench_train(size: str, device: torch.device, bf16: bool, compile_: bool, batch: int, length: int,
                vocab: int, classes: int, warmup: int, steps: int, peak_override: float | None) -> dict[str, Any]:
    model = _build(size, vocab, length, classes, device).train()
    fwd = torch.compile(model) if compile_ else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    g = torch.Generator(device="cpu").manual_seed(0)
    ids = torch.randint(0, vocab, (batch, length), generator=g).to(device)
    labels = torch.randint(0, classes, (batch,), generator=g).to(device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = fwd(ids, labels)
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), ids.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    dt = _timed(step, device, warmup, steps)
    params = model.num_params()
    tok_s = batch * length / dt
    name = _device_name(device)
    peak = _peak_tflops(name, peak_override) if device.type == "cuda" else None
    return {"model": size, "params_m": params / 1e6, "device": name, "precision": "bf16" if bf16 else "fp32",
            "compile": compile_, "batch": batch, "length": length, "step_ms": 1e3 * dt, "tokens_per_s": tok_s,
            "tflops": 6 * params * tok_s / 1e12, "mfu": 6 * params * tok_s / (peak * 1e12) if peak else None}


# --- 2. sampling ---------------------------------------------------------------------------
def _nocache_estimate(model: ARGenerator, num: int, length: int, device: torch.device, probes: list[int],
                      repeats: int) -> float:
    """Seconds of a no-cache sampling run, from forward times at a few prefix lengths
    (step i forwards i + 1 positions), interpolated linearly over every step and summed."""
    g = torch.Generator().manual_seed(0)
    labels = torch.zeros(num, dtype=torch.long, device=device)
    at: dict[int, float] = {}
    with torch.no_grad():
        for p in probes:
            ids = torch.randint(0, model.config.vocab_size, (num, p), generator=g).to(device)
            at[p] = _timed(lambda ids=ids: model(ids, labels), device, 1, repeats)
    xs = sorted(at)
    total = 0.0
    for n in range(1, length + 1):
        j = next(k for k in range(1, len(xs)) if xs[k] >= n) if n > xs[0] else 1
        x0, x1 = xs[j - 1], xs[j]
        total += at[x0] + (at[x1] - at[x0]) * (n - x0) / (x1 - x0)
    return total


def bench_sample(size: str, device: torch.device, num: int, length: int, vocab: int, classes: int,
                 estimate_nocache: bool, probes: list[int], repeats: int) -> dict[str, Any]:
    model = _build(size, vocab, length, classes, device).eval()
    bf16 = device.type == "cuda"
    labels = torch.arange(num) % classes

    def run(cache: bool) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            sample(model, num, length, labels=labels, top_k=100, use_cache=cache,
                   generator=torch.Generator().manual_seed(0))

    with torch.no_grad():  # warm-up: a short run of each path
        sample(model, num, 8, labels=labels, generator=torch.Generator().manual_seed(0))
        sample(model, num, 8, labels=labels, use_cache=False, generator=torch.Generator().manual_seed(0))
    t_cache = _timed(lambda: run(True), device, 0, repeats)
    if estimate_nocache:
        t_nocache = _nocache_estimate(model, num, length, device, probes, repeats)
    else:
        t_nocache = _timed(lambda: run(False), device, 0, 1)
    tokens = num * length
    return {"model": size, "params_m": model.num_params() / 1e6, "device": _device_name(device),
            "precision": "bf16" if bf16 else "fp32", "num": num, "length": length,
            "cache_s": t_cache, "nocache_s": t_nocache, "cache_tokens_per_s": tokens / t_cache,
            "nocache_tokens_per_s": tokens / t_nocache, "speedup": t_nocache / t_cache,
            "nocache_estimated": estimate_nocache}


# --- main ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer steps / probe lengths (~1 min on 2 cores)")
    p.add_argument("--sections", default="train,sample", help="comma-separated: train, sample")
    p.add_argument("--vocab", type=int, default=4096, help="codebook size (default 4096)")
    p.add_argument("--classes", type=int, default=1000, help="class labels (default 1000)")
    p.add_argument("--length", type=int, default=256, help="tokens per sequence (default 256, 16x16 VQ grid)")
    p.add_argument("--num", type=int, default=8, help="sequences sampled at once (default 8)")
    p.add_argument("--estimate-nocache", action="store_true",
                   help="estimate the CPU no-cache run of 's' from a few prefix lengths (default with --quick)")
    p.add_argument("--threads", default="auto", help="CPU intra-op threads, or 'auto' (1 when the box is loaded)")
    p.add_argument("--peak-tflops", type=float, default=None, help="peak dense bf16 TFLOP/s of the GPU for MFU")
    p.add_argument("--no-gpu", action="store_true", help="CPU rows only even when CUDA is present")
    p.add_argument("--json", default=None, help="write the raw numbers here")
    args = p.parse_args(argv)
    q = args.quick
    sections = set(args.sections.split(","))
    threads_note = set_threads(args.threads)
    cpu = torch.device("cpu")
    gpu = torch.device("cuda") if torch.cuda.is_available() and not args.no_gpu else None
    meta = {"torch": torch.__version__, "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "threads_choice": threads_note, "quick": q,
            "gpu": torch.cuda.get_device_name(gpu) if gpu else None, "vocab": args.vocab, "length": args.length}
    print(f"# AR generator benchmark\n\ntorch {torch.__version__}, {torch.get_num_threads()} threads "
          f"({threads_note}), vocab {args.vocab}, {args.classes} classes, {args.length} tokens"
          + (f", GPU {meta['gpu']}" if gpu else ", no GPU") + (", --quick" if q else ""), flush=True)
    out: dict[str, Any] = {"meta": meta, "train": [], "sample": []}
    t_start = time.perf_counter()

    if "train" in sections:
        plan: list[tuple[str, torch.device, bool, bool, int, int, int]] = [  # size, dev, bf16, compile, batch, warm, steps
            ("tiny", cpu, False, False, 8, 1, 3 if q else 8),
            ("s", cpu, False, False, 2, 1, 1 if q else 3),
        ]
        if gpu:
            for size, batch in (("s", 64), ("b", 32)):
                plan += [(size, gpu, True, False, batch, 3, 10), (size, gpu, True, True, batch, 3, 10)]
        for size, dev, bf16, comp, batch, warm, steps in plan:
            _log(f"train {size} {dev.type} {'bf16' if bf16 else 'fp32'}{' compile' if comp else ''} batch {batch}")
            try:
                out["train"].append(bench_train(size, dev, bf16, comp, batch, args.length, args.vocab, args.classes,
                                                warm, steps, args.peak_tflops))
            except Exception as e:  # e.g. no compiler toolchain for torch.compile
                out["train"].append({"model": size, "device": str(dev), "compile": comp, "error": repr(e)[:200]})
        print("\n## Training (loss + backward + AdamW)\n")
        print("| model | params M | device | prec | compile | batch x len | step ms | tokens/s | TFLOP/s (6NT) | MFU |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in out["train"]:
            if "error" in r:
                print(f"| {r['model']} | - | {r['device']} | - | {r['compile']} | - | - | error: {r['error']} | - | - |")
                continue
            mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "-"
            print(f"| {r['model']} | {r['params_m']:.1f} | {r['device']} | {r['precision']} | {r['compile']} | "
                  f"{r['batch']} x {r['length']} | {r['step_ms']:.0f} | {r['tokens_per_s']:,.0f} | "
                  f"{r['tflops']:.3f} | {mfu} |")

    if "sample" in sections:
        probes = [1, args.length // 2, args.length] if q else [1, args.length // 4, args.length // 2,
                                                                 3 * args.length // 4, args.length]
        plan2: list[tuple[str, torch.device, bool]] = [("tiny", cpu, False), ("s", cpu, q or args.estimate_nocache)]
        if gpu:
            plan2 += [("s", gpu, False), ("b", gpu, False)]
        for size, dev, est in plan2:
            _log(f"sample {size} {dev.type}{' (no-cache estimated)' if est else ''}")
            out["sample"].append(bench_sample(size, dev, args.num, args.length, args.vocab, args.classes, est,
                                              probes, 1 if q else 2))
        print(f"\n## Sampling ({args.num} x {args.length} tokens, top-k 100)\n")
        print("| model | params M | device | prec | KV cache s | tokens/s | no cache s | tokens/s | speed-up |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in out["sample"]:
            est = " (est.)" if r["nocache_estimated"] else ""
            print(f"| {r['model']} | {r['params_m']:.1f} | {r['device']} | {r['precision']} | {r['cache_s']:.2f} | "
                  f"{r['cache_tokens_per_s']:,.0f} | {r['nocache_s']:.2f}{est} | {r['nocache_tokens_per_s']:,.0f} | "
                  f"{r['speedup']:.1f}x |")
        print(f"\n## Target\n\n| target | model | device | measured | result |\n|---|---|---|---|---|")
        for r in out["sample"]:
            ok = r["speedup"] >= TARGET_SPEEDUP
            print(f"| KV cache >= {TARGET_SPEEDUP:.0f}x faster than no cache at {r['length']} tokens | {r['model']} | "
                  f"{r['device']} | {r['speedup']:.1f}x{' (no cache est.)' if r['nocache_estimated'] else ''} | "
                  f"{'met' if ok else 'not met'} |")

    meta["seconds"] = time.perf_counter() - t_start
    print(f"\n{meta['seconds']:.0f} s in all", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
