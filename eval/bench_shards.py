"""Benchmark of the token shard pipeline; prints one table of figures measured side by side.

    python eval/bench_shards.py                      # CPU defaults (tiny tokenizer, 32x32)
    python eval/bench_shards.py --device cuda --model titok_s128_fsq --resolution 256 --batch-size 128

(1) encode throughput: the full pipeline (decoding + encode + shard writing, with the
    library's default decode setting: on a CPU the background decode thread) vs the model
    alone on pre-loaded batches of the same size, in paired rounds (median of the per-round
    ratios); target pipeline >= 90% of model-only. ``--also-workers 1`` adds one decode worker
    process, ``--per-item-decode`` the pipeline without batched decoding, all measured in the
    same rounds.
(2) TokenDataset read throughput in tokens/s for shuffled batches from local disk;
    target >= 50M tokens/s per process.
(3) peak RSS while encoding 10x and 40x more items than one batch: it must stay flat.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import torch


class PeakRSS:
    """Samples the RSS of this process plus the unique memory of its children (data workers) in a thread."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self.proc = psutil.Process()

    def _rss(self) -> int:
        # Children (forked data workers) share most pages with this process: count only
        # their unique memory (USS), so shared pages are not counted twice.
        total = self.proc.memory_info().rss
        for c in self.proc.children(recursive=True):
            try:
                total += c.memory_full_info().uss
            except psutil.Error:
                pass
        return total

    def __enter__(self) -> "PeakRSS":
        self.peak = self._rss()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()


def bench_encode(ckpt: Path, args, work: Path) -> dict[str, float]:
    from mmtok.data import collate
    from mmtok.shards.encode import EncodeResult, open_job

    n = args.batch_size * args.encode_batches
    out = work / "enc"
    job = open_job(ckpt, f"synthetic:{n}", out, batch_size=args.batch_size, shard_size=args.shard_size,
                   num_workers=args.workers, device=args.device, precision=args.precision)
    se = job.encoder
    sync = torch.cuda.synchronize if se.runner.device.type == "cuda" else (lambda: None)
    # Model only: the same batches, already decoded and in memory.
    batches = [collate([job.dataset[i] for i in b])["x"] for s in range(job.num_shards) for b in job.batches_of(s)]
    se.encode_batch(batches[0])  # warm-up

    def model_only() -> float:
        sync()
        t = time.perf_counter()
        for x in batches:
            se.encode_batch(x).cpu()
        sync()
        return time.perf_counter() - t

    def pipeline(workers: int | None = None, per_item: bool = False) -> float:
        # Workers (or the decode thread) decode, the model encodes, a thread writes shards (into a fresh folder).
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        job.num_workers = args.workers if workers is None else workers
        if per_item:  # the dataset's batched decoding switched off: one __getitem__ per item
            job.dataset.__getitems__ = None
        sync()
        t = time.perf_counter()
        try:
            job.run(list(range(job.num_shards)), EncodeResult(out, 0, 1, job.num_shards))
        finally:
            job.dataset.__dict__.pop("__getitems__", None)
            job.num_workers = args.workers
        sync()
        return time.perf_counter() - t

    # Extra pipeline variants measured in the same rounds (rows of their own, no target).
    variants = [(f"workers={w}", w, False) for w in args.also_workers]
    if args.per_item_decode:
        variants.append(("per-item decoding", args.workers, True))
    # Paired rounds: model-only then the pipeline(s), back to back, so a change of machine load
    # hits all alike; the figures are medians over rounds (ratios: medians of per-round ratios).
    pipeline()  # warm-up (imports, first shard write), as the model had one
    for _, w, per_item in variants:
        pipeline(w, per_item)
    rounds, extra = [], {name: [] for name, _, _ in variants}
    for k in range(args.repeats):
        cpu0 = cpu_seconds()
        m = model_only()
        cpu1 = cpu_seconds()
        p = pipeline()
        cpu2 = cpu_seconds()
        rounds.append((m, p, cpu1 - cpu0, cpu2 - cpu1))
        line = f"round {k + 1}: model only {n / m:.1f} items/s, pipeline {n / p:.1f} items/s ({m / p:.1%})"
        for name, w, per_item in variants:
            q = pipeline(w, per_item)
            extra[name].append(m / q)
            line += f", {name} {n / q:.1f} items/s ({m / q:.1%})"
        print(line, flush=True)
    shutil.rmtree(out)
    med = lambda v: float(np.median(v))  # noqa: E731
    return {"items": n, "model_ips": med([n / r[0] for r in rounds]), "pipe_ips": med([n / r[1] for r in rounds]),
            "ratio": med([r[0] / r[1] for r in rounds]), "model_cpu_ms": med([r[2] for r in rounds]) / n * 1e3,
            "pipe_cpu_ms": med([r[3] for r in rounds]) / n * 1e3, "precision": se.meta.precision,
            "variants": {name: med(v) for name, v in extra.items()}}


def cpu_seconds() -> float:
    """CPU seconds used so far by this process (all threads) and its finished children (data workers)."""
    import resource

    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def bench_read(args, work: Path) -> dict[str, float]:
    from mmtok.shards import TokenDataset
    from mmtok.shards.format import ShardMetadata, build_table, shard_name, write_manifest, write_shard

    meta = ShardMetadata(tokenizer="bench", family="Bench", modality="image", config_hash="0", checkpoint_hash="0",
                         codebook_sizes=[args.read_vocab], token_shape=[args.read_tokens], codes_dtype="uint16")
    root = work / "read"
    rng = np.random.default_rng(0)
    per_shard = args.read_items // args.read_shards
    t = time.perf_counter()
    for s in range(args.read_shards):
        codes = rng.integers(0, args.read_vocab, size=(per_shard, args.read_tokens), dtype=np.uint16)
        keys = [f"k{s}_{i}" for i in range(per_shard)]
        write_shard(root / shard_name(s), build_table(meta, keys, list(codes), extra_meta={"errors": []}))
    write_manifest(root, args.read_shards)
    write_s = time.perf_counter() - t
    size_mb = sum(f.stat().st_size for f in root.glob("*.parquet")) / 2**20

    t = time.perf_counter()
    ds = TokenDataset(root, batch_size=args.read_batch, seed=0, bos_id=args.read_vocab)
    open_s = time.perf_counter() - t
    res = {"read_items": ds.num_items, "read_tokens": ds.num_tokens, "disk_mb": size_mb, "write_s": write_s, "open_s": open_s}
    for name, kw in (("batches", {}), ("packed", {"seq_len": args.read_tokens * 4})):
        d = TokenDataset(root, batch_size=args.read_batch, seed=0, bos_id=args.read_vocab, **kw) if kw else ds
        toks, t = 0, time.perf_counter()
        for i, b in enumerate(d):
            toks += b["input_ids"].numel()
            if i + 1 >= args.read_steps:
                break
        res[f"{name}_tps"] = toks / (time.perf_counter() - t)
    shutil.rmtree(root)
    return res


def bench_rss(ckpt: Path, args, work: Path) -> dict[str, float]:
    from mmtok.shards import encode_dataset

    res = {}
    for mult in (10, 40):
        n = args.batch_size * mult
        out = work / f"rss{mult}"
        with PeakRSS() as m:
            encode_dataset(ckpt, f"synthetic:{n}", out, batch_size=args.batch_size, shard_size=args.shard_size,
                           num_workers=args.workers, device=args.device, precision=args.precision, progress=False)
        res[f"rss{mult}_mb"] = m.peak / 2**20
        shutil.rmtree(out)
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="titok_t32_fsq", help="registered tokenizer (random init)")
    p.add_argument("--resolution", type=int, default=None, help="image_size override")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", default="auto")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--encode-batches", type=int, default=64, help="batches in the throughput run")
    p.add_argument("--shard-size", type=int, default=512)
    p.add_argument("--workers", type=int, default=None,
                   help="decode workers of the pipeline row (default: the library's, default_workers: 0 = the "
                   "background decode thread on a CPU, up to 8 processes with CUDA)")
    p.add_argument("--also-workers", type=int, nargs="*", default=[],
                   help="more decode settings measured in the same rounds (0: one background decode thread)")
    p.add_argument("--per-item-decode", action="store_true",
                   help="also measure the pipeline with the dataset's batched decoding switched off")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default on CPU: cores - max(workers, 1), so decoding has its own core)")
    p.add_argument("--repeats", type=int, default=5, help="paired rounds of model-only / pipeline (median reported)")
    p.add_argument("--read-items", type=int, default=200_000)
    p.add_argument("--read-tokens", type=int, default=256)
    p.add_argument("--read-vocab", type=int, default=16384)
    p.add_argument("--read-shards", type=int, default=8)
    p.add_argument("--read-batch", type=int, default=256)
    p.add_argument("--read-steps", type=int, default=300)
    p.add_argument("--skip", nargs="*", default=[], choices=["encode", "read", "rss"])
    args = p.parse_args(argv)

    import mmtok

    if args.workers is None:
        from mmtok.shards.encode import default_workers

        args.workers = default_workers(args.device)
    if args.threads is None and not args.device.startswith("cuda"):
        args.threads = max(1, (os.cpu_count() or 1) - max(args.workers, 1))
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="mmtok-bench-shards-"))
    try:
        torch.manual_seed(0)
        over = {"image_size": args.resolution} if args.resolution else {}
        tok = mmtok.create_tokenizer(args.model, **over)
        ckpt = work / "ckpt"
        tok.save_pretrained(ckpt)
        del tok
        rows = []
        env = (f"device={args.device} ({torch.cuda.get_device_name() if args.device.startswith('cuda') else f'{os.cpu_count()} CPU cores'}), "
               f"load average {os.getloadavg()[0]:.1f}, torch threads={torch.get_num_threads()}, model={args.model}, batch={args.batch_size}, workers={args.workers}")
        if "encode" not in args.skip:
            e = bench_encode(ckpt, args, work)
            ratio = e["ratio"]
            rows += [("encode, model only (items/s)", f"{e['model_ips']:.1f}",
                      f"{e['items']} items, {e['precision']}, batches already in memory; {e['model_cpu_ms']:.2f} CPU ms/item"),
                     ("encode, full pipeline (items/s)", f"{e['pipe_ips']:.1f}",
                      f"{'decode thread' if args.workers == 0 else 'decode workers'} + encode + shard writer; {e['pipe_cpu_ms']:.2f} CPU ms/item (workers included)"),
                     ("pipeline / model-only", f"{ratio:.1%}",
                      f"median of {args.repeats} paired rounds; target >= 90% " + ("(met)" if ratio >= 0.9 else "(NOT met)"))]
            rows += [(f"pipeline / model-only, {name}", f"{r:.1%}", "same rounds") for name, r in e["variants"].items()]
        if "read" not in args.skip:
            r = bench_read(args, work)
            rows += [("TokenDataset open (s)", f"{r['open_s']:.2f}", f"{r['read_items']} items x {args.read_tokens} tokens, {r['disk_mb']:.0f} MB on disk"),
                     ("TokenDataset shuffled batches (Mtok/s)", f"{r['batches_tps'] / 1e6:.1f}",
                      f"batch {args.read_batch}, target >= 50 " + ("(met)" if r["batches_tps"] >= 50e6 else "(NOT met)")),
                     ("TokenDataset packed batches (Mtok/s)", f"{r['packed_tps'] / 1e6:.1f}", f"seq_len {args.read_tokens * 4}")]
        if "rss" not in args.skip:
            m = bench_rss(ckpt, args, work)
            growth = m["rss40_mb"] - m["rss10_mb"]
            rows += [("peak RSS, 10x batch items (MB)", f"{m['rss10_mb']:.0f}", "process RSS + data workers USS"),
                     ("peak RSS, 40x batch items (MB)", f"{m['rss40_mb']:.0f}",
                      f"growth {growth:+.0f} MB " + ("(flat)" if growth <= 0.1 * m["rss10_mb"] else "(NOT flat)"))]
        print(f"\n{env}\n")
        w = max(len(r[0]) for r in rows)
        print(f"| {'measure':<{w}} | {'value':>8} | note |")
        print(f"|{'-' * (w + 2)}|{'-' * 10}|------|")
        for name, val, note in rows:
            print(f"| {name:<{w}} | {val:>8} | {note} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
