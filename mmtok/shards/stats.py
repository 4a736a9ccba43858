"""Shard statistics (``mmtok inspect``): item / token counts, token usage (per level for residual codes)
and the modality facts recorded in the metadata (audio: sample rate, frame rate, levels, kbps; video:
compression, latent grid, frames per clip, frame rates)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from mmtok.shards.format import load_metadata, read_shard, resolve_shards


def shard_stats(source: str | Path, top: int = 10) -> dict[str, Any]:
    """Metadata, item / token counts, per-shard counts and token usage of a shard set."""
    files, manifest = resolve_shards(source)
    meta = load_metadata(files)
    V, Q = meta.vocab_size, meta.num_codebooks
    counts = np.zeros(V, np.int64)
    level_counts = np.zeros((Q, V), np.int64)  # residual codes: usage of each level's codebook
    per_shard, items, lengths, augs, padded, any_length = [], 0, set(), {}, 0, False
    rates: dict[float, int] = {}  # clip frame rate -> rows (video shards with an ``fps`` column)
    any_fps = False
    for f in files:
        names = pq.read_schema(str(f)).names
        has_length, has_fps = "length" in names, "fps" in names
        t = read_shard(f, ["codes", "aug"] + (["length"] if has_length else []) + (["fps"] if has_fps else []))
        codes = t.column("codes").combine_chunks()
        vals = codes.values.to_numpy(zero_copy_only=False)
        counts += np.bincount(vals, minlength=V)[:V]
        if Q > 1 and vals.size % Q == 0:
            lv = vals.reshape(-1, Q)
            for q in range(Q):
                level_counts[q] += np.bincount(lv[:, q], minlength=V)[:V]
        if has_length:
            any_length = True
            seg = meta.preprocessing.get("segment_length")
            padded += sum(1 for n in t.column("length").to_pylist() if n is not None and seg and n < seg)
        if has_fps:
            any_fps = True
            for r in t.column("fps").drop_null().to_pylist():
                rates[round(r, 6)] = rates.get(round(r, 6), 0) + 1
        lengths.update(np.unique(np.diff(codes.offsets.to_numpy())).tolist())
        for a in t.column("aug").to_pylist():
            augs[a] = augs.get(a, 0) + 1
        per_shard.append({"file": f.name, "num_items": t.num_rows})
        items += t.num_rows
    total = int(counts.sum())
    p = counts[counts > 0] / max(total, 1)
    entropy = float(-(p * np.log2(p)).sum()) if total else 0.0
    order = np.argsort(-counts, kind="stable")[:top]
    extra: dict[str, Any] = {}
    if Q > 1:
        sizes = meta.codebook_sizes
        extra["level_usage"] = [float((level_counts[q, : sizes[q]] > 0).mean()) for q in range(Q)]
    if any_length:
        extra["num_padded"] = padded  # items whose input segment was zero-padded (the last chunk of a file)
    if any_fps:
        extra["fps"] = {f"{r:g}": n for r, n in sorted(rates.items())}  # items per clip frame rate
    return {
        "metadata": meta.to_dict(),
        "num_shards": len(files),
        "num_items": items,
        "num_tokens": total,
        "num_errors": (manifest or {}).get("num_errors"),
        "sequence_lengths": sorted(lengths),
        "augmentations": augs,
        "codes_used": int((counts > 0).sum()),
        "usage": float((counts > 0).mean()) if V else 0.0,
        "entropy_bits": entropy,
        "perplexity": float(2 ** entropy),
        "top_codes": [(int(i), int(counts[i])) for i in order if counts[i] > 0],
        "histogram": counts,
        "shards": per_shard,
        **extra,
    }


def _modality_lines(m: Mapping[str, Any], stats: Mapping[str, Any]) -> list[str]:
    """Report lines for the modality facts the metadata records (audio: rate, frames, levels, bitrate)."""
    info = m.get("modality_info") or {}
    lines = []
    if "sample_rate" in info:
        facts = [f"{info['sample_rate']} Hz"]
        if "frame_rate" in info:
            facts.append(f"{float(info['frame_rate']):g} frames/s")
        if "hop_length" in info:
            facts.append(f"hop {info['hop_length']}")
        facts.append(f"{len(m['codebook_sizes'])} level{'s' if len(m['codebook_sizes']) > 1 else ''} "
                     f"x {max(m['codebook_sizes'])} codes")
        if "kbps" in info:
            facts.append(f"{float(info['kbps']):.2f} kbps")
        seg = (m.get("preprocessing") or {}).get("segment_length")
        if seg:
            facts.append(f"items of {seg} samples ({seg / info['sample_rate']:g} s, {m['preprocessing'].get('segment', '?')})")
        lines.append("audio           " + ", ".join(facts))
    if "compression" in info:
        lines.append("video           " + ", ".join(_video_facts(m, info, stats)))
    if "level_usage" in stats:
        lines.append("level usage     " + "  ".join(f"q{q} {100 * u:.1f}%" for q, u in enumerate(stats["level_usage"])))
    if "num_padded" in stats:
        lines.append(f"padded items    {stats['num_padded']} (zero-padded ends; valid lengths in the 'length' column)")
    return lines


def _video_facts(m: Mapping[str, Any], info: Mapping[str, Any], stats: Mapping[str, Any]) -> list[str]:
    """Compression, latent grid, frames per clip and frame rates of video shards."""
    prep = m.get("preprocessing") or {}
    ct, ch, cw = info["compression"]
    facts = [f"compression {ct}x{ch}x{cw} (t x h x w)" + (", causal" if info.get("causal") else ""),
             "latent grid " + "x".join(str(v) for v in m["token_shape"]) + " (t x h x w)"]
    frames, res = prep.get("num_frames", info.get("num_frames")), prep.get("resolution", info.get("resolution"))
    if frames:
        facts.append(f"{frames} frames" + (f" of {res}x{res} px" if isinstance(res, int) else "") + " per clip")
    if (prep.get("frame_stride") or 1) > 1:
        facts.append(f"frame stride {prep['frame_stride']}")
    if prep.get("fps"):
        facts.append(f"timeline {float(prep['fps']):g} fps")  # the dataset's rate (resampled with --fps)
    rates = stats.get("fps") or {}
    if rates:
        facts.append("clips at " + ", ".join(f"{r} fps" + (f" ({n})" if len(rates) > 1 else "") for r, n in rates.items()))
    if prep.get("clip"):
        facts.append(f"clips: {prep['clip']}")
    return facts


def format_stats(stats: Mapping[str, Any], bins: int = 16, width: int = 40) -> str:
    """Human-readable report of :func:`shard_stats` with a text histogram of token ids."""
    m = stats["metadata"]
    lines = [
        f"tokenizer       {m['tokenizer']} ({m['family']}, {m['modality']})",
        f"checkpoint      sha256 {m['checkpoint_hash'][:16]}...  config {m['config_hash']}  at {m['checkpoint_path']}",
        f"mmtok version   {m['mmtok_version']}   format {m['format']} v{m['format_version']}",
        f"codebook sizes  {m['codebook_sizes']}   token shape {m['token_shape']}   dtype {m['codes_dtype']}",
        f"preprocessing   {m['preprocessing']}",
        f"modality info   {m.get('modality_info')}",
        *_modality_lines(m, stats),
        f"source          {m['source']}   precision {m['precision']}",
        f"shards          {stats['num_shards']}   items {stats['num_items']}   tokens {stats['num_tokens']}"
        + (f"   errors {stats['num_errors']}" if stats.get("num_errors") is not None else ""),
        f"augmentations   {stats['augmentations']}",
        f"sequence length {stats['sequence_lengths']}",
        f"token usage     {stats['codes_used']}/{len(stats['histogram'])} codes "
        f"({100 * stats['usage']:.1f}%), entropy {stats['entropy_bits']:.2f} bits, perplexity {stats['perplexity']:.1f}",
        f"top codes       {stats['top_codes']}",
        "token id histogram:",
    ]
    hist = np.asarray(stats["histogram"])
    V = len(hist)
    nb = max(1, min(bins, V))
    edges = np.linspace(0, V, nb + 1).astype(int)
    sums = [int(hist[a:b].sum()) for a, b in zip(edges[:-1], edges[1:])]
    peak = max(sums) if sums and max(sums) > 0 else 1
    w = len(str(V))
    for (a, b), s in zip(zip(edges[:-1], edges[1:]), sums):
        bar = "#" * int(math.ceil(width * s / peak)) if s else ""
        lines.append(f"  [{a:>{w}}, {b:>{w}})  {bar:<{width}} {s}")
    return "\n".join(lines)
