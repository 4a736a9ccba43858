"""Video tokenizer benchmark: speed and memory of the causal 3D presets next to a per-frame 2D
baseline, windowed long clips and spatial tiling, measured in one run and printed as Markdown.

1. throughput  encode / decode frames per second and peak memory of each ``causal3d_*`` preset
               (batch 1, 17 frames) at 128 px (``image_size=128``) and 256 px, next to a per-frame
               2D baseline: ``vqgan_f8_vq`` built with the preset's widths (base channels, channel
               mults, res blocks, z channels, mid attention) and quantizer, run on the frames
               folded into the batch. ``3D/2D`` = 3D fps / 2D fps: the cost of the temporal axis.
               Params, compression, tokens and bits per clip (at the row's size, 17 frames).
               CPU fp32; CUDA fp32 and bf16 autocast (peak = ``torch.cuda.max_memory_allocated``
               above the allocation before the call). Models over 10M parameters: one timed call
               after a warm-up on a small input; smaller ones: median of >= 3 calls.
               On CPU the 2D baseline of a large model runs ``1 + temporal_factor`` frames (fps is
               per frame; its peak memory is that batch's) unless ``--frames-2d`` / ``--all``.
               The 256 px rows run last, each only when its estimate (its 128 px time x 5) fits
               in what is left of ``--budget-min``; skipped rows say so. ``--all``: every preset
               at both sizes, no budget.
2. windows     a 129-frame clip: whole-clip ``encode`` vs ``encode_long`` with windows of 16 and
               32 frames (causal state carried across windows): time, fps, peak memory, codes
               equal to the whole-clip codes; decode rows (``decode_long`` windows of 4 / 8
               latent frames, max error vs ``decode``) for models under 10M parameters, or all
               with ``--all``.
3. tiling      ``tiling_report`` on frames twice the training size: codes changed by
               ``encode_tiled``, ``decode_tiled`` error in the blend zones vs tile interiors.

Weights are untrained (seed 0) and inputs are synthetic clips (``render_video``): the numbers
measure speed, memory and the windowing / tiling mechanics, not reconstruction quality.
CPU peak memory = peak RSS above the RSS before the call (Linux VmHWM reset through
/proc/self/clear_refs; else a polling thread).

    python eval/bench_video.py                    # about 9 min on 2 busy cores (budget-limited)
    python eval/bench_video.py --quick            # causal3d_tiny + a base_channels=32 preset, < 2 min
    python eval/bench_video.py --all --json bench_video.json
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

import mmtok
from mmtok.data.synthetic_video import render_video
from mmtok.quantize import from_channel_last, grid_to_codes
from mmtok.tokenizer import Tokenizer
from mmtok.video import tiling_report

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # eval/benchlib.py
from benchlib import _log, _sync, load_average, peak_memory, release_memory, set_mmap_threshold, table  # noqa: E402

PRESETS = ("causal3d_4x8x8_fsq", "causal3d_4x16x16_fsq", "causal3d_4x8x8_lfq", "causal3d_4x8x8_vq")
LARGE_DEFAULT = ("causal3d_4x8x8_fsq", "causal3d_4x16x16_fsq")  # the presets that also get 256 px rows
REDUCED = {"base_channels": 32}  # the CPU stand-in for a full-width preset
BASELINE_2D = "vqgan_f8_vq"
BIG_PARAMS = 10e6
SIZE_SLACK = 1.25  # time at 2x the size ~ 4 x 1.25 (conv cost ~ pixels, mid attention ~ pixels^2)
MB = 2**20


# --- timing --------------------------------------------------------------------------------


@dataclass
class Measurement:
    seconds: float  # median seconds per call
    fps: float  # frames per second of compute
    peak_mb: float
    repeats: int


def measure(fn: Callable[[], object], frames: int, device: torch.device, min_time: float = 0.0,
            min_repeats: int = 1, max_repeats: int = 1) -> Measurement:
    """Median time of ``fn`` (already warmed up) over at least ``min_repeats`` calls and until
    ``min_time`` has passed (at most ``max_repeats``); peak memory over all calls. ``frames``:
    frames handled by one call."""
    times: list[float] = []
    with peak_memory(device) as mem:
        start = time.perf_counter()
        while len(times) < min_repeats or (time.perf_counter() - start < min_time and len(times) < max_repeats):
            t = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - t)
    sec = statistics.median(times)
    return Measurement(sec, frames / sec, mem["mb"], len(times))


def timing_for(tok: Tokenizer, min_time: float, device: torch.device) -> tuple[float, int, int]:
    """(min_time, min_repeats, max_repeats): on CPU 1 call for models over 10M parameters;
    otherwise >= 3 calls and ``min_time`` seconds."""
    big = tok.num_parameters() > BIG_PARAMS and device.type == "cpu"
    return (0.0, 1, 1) if big else (min_time, 3, 20)


# --- inputs and models -----------------------------------------------------------------------
def clip(frames: int, size: int, index: int = 0, seed: int = 0) -> Tensor:
    """(1, 3, frames, size, size) float32 synthetic clip in [-1, 1] (moving shapes, pans, zooms)."""
    arr, _ = render_video(seed, index, size, frames)
    return torch.from_numpy(arr).permute(3, 0, 1, 2)[None].mul(2.0).sub(1.0).contiguous()


def frames_to_batch(x: Tensor) -> Tensor:
    """(B, C, T, H, W) clip -> (B * T, C, H, W) images, frame order kept."""
    b, c, t, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)


@dataclass
class Spec:
    """A registered preset plus overrides (``image_size`` excluded: set per row)."""

    preset: str
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        extra = ", ".join(f"{k}={v}" for k, v in self.overrides.items())
        return f"{self.preset} ({extra})" if extra else self.preset

    def build(self, **extra: Any) -> Tokenizer:
        torch.manual_seed(0)
        return mmtok.create_tokenizer(self.preset, **{**self.overrides, **extra}).eval()


def baseline_overrides(tok: Tokenizer) -> dict[str, Any]:
    """``vqgan_f8_vq`` overrides that give the 2D model of a causal 3D tokenizer: the same
    widths, depth, latent channels, mid attention and quantizer (3x3 convs instead of 3x3x3)."""
    c = tok.config
    return {"image_size": int(c.image_size), "base_channels": int(c.base_channels),
            "channel_mult": tuple(c.channel_mult), "num_res_blocks": int(c.num_res_blocks),
            "z_channels": int(c.z_channels), "mid_attention": bool(c.mid_attention), "quantizer": dict(c.quantizer)}


def conv_key(tok: Tokenizer) -> tuple[Any, ...]:
    """The 2D baseline a 3D tokenizer is compared with: its conv stack (the quantizer aside)."""
    o = baseline_overrides(tok)
    return (o["base_channels"], o["channel_mult"], o["num_res_blocks"], o["z_channels"], o["mid_attention"])


def build_baseline(tok: Tokenizer) -> Tokenizer:
    torch.manual_seed(0)
    return mmtok.create_tokenizer(BASELINE_2D, **baseline_overrides(tok)).eval()


def clip_stats(tok: Tokenizer, codes: Tensor, clip_frames: int, frames: int) -> dict[str, float]:
    """Tokens and bits of one ``clip_frames``-frame clip from ``codes`` of ``frames`` frames
    (3D: (1, t, h, w) codes of the clip; 2D: (frames, h, w), one grid per frame)."""
    per_call = math.prod(codes.shape[1:]) if codes.ndim == 4 else math.prod(codes.shape)
    tokens = per_call if codes.ndim == 4 else per_call * clip_frames // frames
    return {"tokens": int(tokens), "bits": float(tokens * sum(math.log2(k) for k in tok.codebook_sizes))}


# --- 0. side by side: 3D vs the per-frame 2D baseline, interleaved ----------------------------
def conv_flops(tok: Tokenizer, frames: int, size: int, video: bool) -> tuple[float, float]:
    """(encode, decode) FLOPs of ``tok``'s encoder / decoder (the quantizer aside, it is tiny) on
    one ``frames``-frame clip (``video``) or a batch of ``frames`` images, counted on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    c = int(tok.config.in_channels)
    x = torch.empty((1, c, frames, size, size) if video else (frames, c, size, size), device="meta")
    flops = []
    for part in (tok.encoder, tok.decoder):
        m = copy.deepcopy(part).to("meta")
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            x = m(x)
        flops.append(float(fc.get_total_flops()))
        del m
    return flops[0], flops[1]


@contextlib.contextmanager
def old_conv3d_path() -> Iterator[None]:
    """Within: the causal 3D layers as before the temporal-GEMM change (every (k_t, 1, 1) conv a
    oneDNN conv3d on a padded copy, the residual sum a separate pass, ``conv="2+1d"`` maps of
    128+ channels NCDHW like the 3x3x3 stacks'); the same math, to time old and new side by side."""
    from mmtok.layers import conv3d as c3

    saved = c3.TIME_GEMM, c3.FACTORIZED_CHANNELS_LAST_MAX
    c3.TIME_GEMM, c3.FACTORIZED_CHANNELS_LAST_MAX = False, c3.CHANNELS_LAST_MAX
    try:
        yield
    finally:
        c3.TIME_GEMM, c3.FACTORIZED_CHANNELS_LAST_MAX = saved


def side_by_side(spec: Spec, size: int, frames: int, rounds: int, device: torch.device,
                 old: bool = False) -> dict[str, Any]:
    """3D encode, 2D encode, 3D decode, 2D decode, ``rounds`` times in turn (after a warm-up on a
    small crop), so both models see the same machine load; the 2D baseline (``vqgan_f8_vq`` with
    the preset's widths) runs all ``frames`` frames folded into the batch. Ratios: the median
    over rounds of 3D fps / 2D fps; FLOP ratio: 3D FLOPs / 2D FLOPs of the clip. ``old``: the 3D
    model also runs on the previous layer code (``old_conv3d_path``) in each round (its codes
    checked equal to the new path's), for before / after ratios from the same rounds."""
    tok = spec.build(image_size=size).to(device)
    base = build_baseline(tok).to(device)
    x = clip(frames, size).to(device)
    xb = frames_to_batch(x)
    f3 = conv_flops(tok, frames, size, video=True)
    f2 = conv_flops(base, frames, size, video=False)
    xl = xb.contiguous(memory_format=torch.channels_last)
    times: dict[str, list[float]] = {k: [] for k in ("enc3", "enc2", "enc2cl", "dec3", "dec2", "dec2cl", "enc3o", "dec3o")}
    old_codes_equal = True
    with torch.inference_mode():
        s = min(64, size)
        tok.decode(tok.encode(x[:, :, : 1 + tok.temporal_factor, :s, :s]))
        base.decode(base.encode(xb[:2, :, :s, :s]))
        c3, c2 = tok.encode(x[:, :, : 1 + tok.temporal_factor]), base.encode(xb[:2])
        for _ in range(rounds):
            for key, fn in (("enc3", lambda: tok.encode(x)), ("enc2", lambda: base.encode(xb)),
                            ("enc2cl", lambda: base.encode(xl))):
                t = time.perf_counter()
                out = fn()
                _sync(device)
                times[key].append(time.perf_counter() - t)
                if key == "enc3":
                    c3 = out
                elif key == "enc2":
                    c2 = out
            if old:
                with old_conv3d_path():
                    t = time.perf_counter()
                    c3o = tok.encode(x)
                    _sync(device)
                    times["enc3o"].append(time.perf_counter() - t)
                    old_codes_equal &= bool(torch.equal(c3o, c3))
                    t = time.perf_counter()
                    tok.decode(c3)
                    _sync(device)
                    times["dec3o"].append(time.perf_counter() - t)
            c2l = c2.contiguous()
            for key, fn in (("dec3", lambda: tok.decode(c3)), ("dec2", lambda: base.decode(c2)),
                            ("dec2cl", lambda: _decode_channels_last(base, c2l))):
                t = time.perf_counter()
                fn()
                _sync(device)
                times[key].append(time.perf_counter() - t)
    ratio = {k: statistics.median(times[f"{k}2"][i] / times[f"{k}3"][i] for i in range(rounds)) for k in ("enc", "dec")}
    ratio_cl = {k: statistics.median(times[f"{k}2cl"][i] / times[f"{k}3"][i] for i in range(rounds))
                for k in ("enc", "dec")}
    ratio_old = {k: statistics.median(times[f"{k}2"][i] / times[f"{k}3o"][i] for i in range(rounds)) if old else None
                 for k in ("enc", "dec")}
    row = {"model": spec.label, "size": size, "frames": frames, "rounds": rounds, "device": device.type,
           "params_m": tok.num_parameters() / 1e6, "params_2d_m": base.num_parameters() / 1e6,
           **{f"{k}_fps": frames / statistics.median(v) for k, v in times.items() if v},
           "ratio_enc_old": ratio_old["enc"], "ratio_dec_old": ratio_old["dec"],
           "old_codes_equal": old_codes_equal if old else None,
           "ratio_enc": ratio["enc"], "ratio_dec": ratio["dec"],
           "ratio_enc_2d_cl": ratio_cl["enc"], "ratio_dec_2d_cl": ratio_cl["dec"],
           "flops_enc_3d": f3[0], "flops_dec_3d": f3[1], "flops_enc_2d": f2[0], "flops_dec_2d": f2[1],
           "load": load_average()}
    del tok, base
    release_memory()
    return row


def _decode_channels_last(tok: Tokenizer, codes: Tensor) -> Tensor:
    """A 2D VQGAN's decode with its decoder fed a channels-last (NHWC) latent map, which its
    convs then keep: the channels-last 2D reference."""
    h, w = codes.shape[1:3]
    z = from_channel_last(tok.quantizer.decode(grid_to_codes(codes, 2)), (h, w))
    return tok.decoder(z.contiguous(memory_format=torch.channels_last)).clamp(-1, 1)


def render_side_by_side(rows: list[dict[str, Any]]) -> str:
    head = ["model", "clip", "params 3D / 2D (M)", "3D enc fps", "2D enc fps", "3D/2D enc", "3D dec fps", "2D dec fps",
            "3D/2D dec", "3D/2D-NHWC enc / dec", "FLOPs 3D/2D enc", "FLOPs 3D/2D dec", "rounds", "load"]
    body = [[r["model"], f"{r['frames']}x{r['size']}^2", f"{r['params_m']:.1f} / {r['params_2d_m']:.1f}",
             f"{r['enc3_fps']:.2f}", f"{r['enc2_fps']:.2f}", f"{r['ratio_enc']:.2f}", f"{r['dec3_fps']:.2f}",
             f"{r['dec2_fps']:.2f}", f"{r['ratio_dec']:.2f}",
             f"{r['ratio_enc_2d_cl']:.2f} / {r['ratio_dec_2d_cl']:.2f}", f"{r['flops_enc_3d'] / r['flops_enc_2d']:.2f}",
             f"{r['flops_dec_3d'] / r['flops_dec_2d']:.2f}", r["rounds"], _fmt_load(r["load"])] for r in rows]
    if any(r.get("ratio_enc_old") is not None for r in rows):  # --side-old: the previous layer code, same rounds
        head.insert(-2, "old layers 3D/2D enc / dec (codes equal)")
        for r, row in zip(rows, body):
            row.insert(-2, "-" if r.get("ratio_enc_old") is None else
                       f"{r['ratio_enc_old']:.2f} / {r['ratio_dec_old']:.2f} ({r['old_codes_equal']})")
    return table(head, body)


# --- 1. throughput -------------------------------------------------------------------------
def bench_model(tok: Tokenizer, x: Tensor, device: torch.device, precision: str = "fp32",
                timing: tuple[float, int, int] = (0.0, 1, 1)) -> tuple[dict[str, Any], Tensor]:
    """Encode / decode fps and peak memory of ``tok`` on ``x`` ((1, C, T, H, W) for a video
    tokenizer, (N, C, H, W) frames for an image one). Warm-up: on CPU one encode + decode of a
    small crop (1 + temporal_factor frames of <= 64 px); on CUDA of ``x`` itself. Returns the
    row and the codes of the timed encode."""
    x = x.to(device)
    video = x.ndim == 5
    frames = x.shape[0] * x.shape[2] if video else x.shape[0]
    if device.type == "cuda":
        warm = x
    else:
        s = min(64, x.shape[-1])
        warm = x[:, :, : 1 + tok.temporal_factor, :s, :s] if video else x[:1, :, :s, :s]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    out: list[Tensor] = []
    with torch.inference_mode(), autocast:
        tok.decode(tok.encode(warm))
        _sync(device)
        enc = measure(lambda: out.append(tok.encode(x)), frames, device, *timing)
        codes = out[-1]
        out.clear()
        dec = measure(lambda: tok.decode(codes), frames, device, *timing)
    row = {"device": device.type, "precision": precision, "frames": frames, "size": int(x.shape[-1]),
           "encode": asdict(enc), "decode": asdict(dec), "load": load_average()}
    return row, codes.cpu()


def estimate_seconds(row: dict[str, Any], size: int) -> float:
    """Encode + decode seconds of ``row``'s model at ``size`` px, from ``row``'s measurement."""
    scale = (size / row["size"]) ** 2 * (SIZE_SLACK if size > row["size"] else 1.0)
    return (row["encode"]["seconds"] * row["encode"]["repeats"]
            + row["decode"]["seconds"] * row["decode"]["repeats"]) * scale


@dataclass
class Plan:
    """What the throughput section runs: ``(spec, size)`` jobs, in order."""

    jobs: list[tuple[Spec, int]]
    clip_frames: int | None = None  # None: the preset's num_frames
    frames_2d: int | None = None  # None: the clip on CUDA / small models, else 1 + temporal_factor
    all_2d_frames: bool = False


def frames_2d_for(tok: Tokenizer, device: torch.device, clip_frames: int, plan: Plan) -> int:
    if plan.frames_2d is not None:
        return min(plan.frames_2d, clip_frames)
    if plan.all_2d_frames or device.type == "cuda" or tok.num_parameters() <= BIG_PARAMS:
        return clip_frames
    return 1 + tok.temporal_factor


def section_throughput(plan: Plan, devices: list[torch.device], min_time: float,
                       deadline: float | None = None, done: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Each job: the 3D row, then the 2D baseline row of its conv stack at that size (once per
    stack, size, device, precision). With ``deadline`` (a ``time.perf_counter`` value) a row
    whose estimate from an earlier row of the same model (``done`` and this call's) does not
    fit is skipped: ``{"skipped": reason}``."""
    rows: list[dict[str, Any]] = []
    earlier = list(done or [])
    seen_2d: set[tuple[Any, ...]] = {(r["key"], r["size"], r["device"], r["precision"])
                                     for r in earlier if r["kind"] == "2D" and "skipped" not in r}

    def fits(label: str, size: int) -> str | None:
        if deadline is None:
            return None
        prior = [r for r in earlier + rows if r["model"] == label and "skipped" not in r and r["size"] < size]
        if not prior:
            return None
        est = sum(estimate_seconds(r, size) for r in prior if r["size"] == prior[0]["size"])
        left = deadline - time.perf_counter()
        return None if est <= left else f"skipped: est. {est:.0f} s > {max(left, 0):.0f} s left of the budget"

    for spec, size in plan.jobs:
        label = spec.label
        why = fits(label, size)
        tok = None if why else spec.build(image_size=size)
        if tok is None:
            rows.append({"model": label, "kind": "3D", "size": size, "skipped": why, "key": None})
            _log(f"  {label} {size} px: {why}")
            continue
        frames = plan.clip_frames or int(tok.config.num_frames)
        x = clip(frames, size)
        key = conv_key(tok)
        info = {"params_m": tok.num_parameters() / 1e6, "compression": "x".join(map(str, tok.compression))}
        for device in devices:
            tok.to(device)
            for precision in ["fp32"] + (["bf16"] if device.type == "cuda" else []):
                r, codes = bench_model(tok, x, device, precision, timing_for(tok, min_time, device))
                rows.append({"model": label, "kind": "3D", "key": key, **info, **r,
                             **clip_stats(tok, codes, frames, frames)})
                _log(f"  {label} {size} px {device.type} {precision}: enc {r['encode']['fps']:.2f} fps, "
                     f"dec {r['decode']['fps']:.2f} fps")
        base_label = f"{BASELINE_2D} 2D per frame ({label} widths)"
        todo = [(d, p) for d in devices for p in ["fp32"] + (["bf16"] if d.type == "cuda" else [])
                if (key, size, d.type, p) not in seen_2d]
        why = fits(base_label, size) if todo else None
        if why:
            rows.append({"model": base_label, "kind": "2D", "size": size, "skipped": why, "key": key})
            _log(f"  {base_label} {size} px: {why}")
            todo = []
        if todo:
            base = build_baseline(tok)
            info2 = {"params_m": base.num_parameters() / 1e6, "compression": f"1x{base.factor}x{base.factor}"}
            for device, precision in todo:
                n = frames_2d_for(tok, device, frames, plan)
                base.to(device)
                timing = timing_for(base, min_time, device)
                r, codes = bench_model(base, frames_to_batch(x[:, :, :n]), device, precision, timing)
                rows.append({"model": base_label, "kind": "2D", "key": key, **info2, **r,
                             **clip_stats(base, codes, frames, n)})
                seen_2d.add((key, size, device.type, precision))
                _log(f"  {base_label} {size} px {device.type} {precision} ({n} frames): "
                     f"enc {r['encode']['fps']:.2f} fps, dec {r['decode']['fps']:.2f} fps")
            del base
        del tok
        release_memory()
    return rows


def ratios(rows: list[dict[str, Any]]) -> dict[int, tuple[float, float]]:
    """Row index of each measured 3D row -> (3D / 2D encode fps, 3D / 2D decode fps)."""
    base = {(r["key"], r["size"], r["device"], r["precision"]): r for r in rows
            if r["kind"] == "2D" and "skipped" not in r}
    out = {}
    for i, r in enumerate(rows):
        b = base.get((r["key"], r["size"], r.get("device"), r.get("precision")))
        if r["kind"] == "3D" and "skipped" not in r and b is not None:
            out[i] = (r["encode"]["fps"] / b["encode"]["fps"], r["decode"]["fps"] / b["decode"]["fps"])
    return out


def _fmt_load(load: float | None) -> str:
    return "-" if load is None else f"{load:.1f}"


def render_throughput(rows: list[dict[str, Any]]) -> str:
    head = ["model", "size", "device", "prec", "frames", "params (M)", "compression", "tokens/clip", "bits/clip",
            "enc fps", "dec fps", "3D/2D enc", "3D/2D dec", "enc peak MB", "dec peak MB", "enc s", "dec s", "load"]
    rat = ratios(rows)
    order = sorted(range(len(rows)), key=lambda i: (rows[i]["size"], i))
    body = []
    for i in order:
        r = rows[i]
        if "skipped" in r:
            body.append([r["model"], r["size"], r["skipped"]] + [""] * (len(head) - 3))
            continue
        ra = rat.get(i)
        body.append([r["model"], r["size"], r["device"], r["precision"], r["frames"], f"{r['params_m']:.1f}",
                     r["compression"], r["tokens"], f"{r['bits']:.0f}", f"{r['encode']['fps']:.2f}",
                     f"{r['decode']['fps']:.2f}", f"{ra[0]:.2f}" if ra else "-", f"{ra[1]:.2f}" if ra else "-",
                     f"{r['encode']['peak_mb']:.0f}", f"{r['decode']['peak_mb']:.0f}",
                     f"{r['encode']['seconds']:.2f}", f"{r['decode']['seconds']:.2f}", _fmt_load(r["load"])])
    return table(head, body)


# --- 2. windowed long clips --------------------------------------------------------------------
def bench_windows(tok: Tokenizer, x: Tensor, device: torch.device, windows: tuple[int, ...] = (16, 32),
                  decode: bool = False) -> list[dict[str, Any]]:
    """Whole-clip ``encode`` vs ``encode_long(window=w)`` of one clip (1, C, T, H, W): seconds,
    fps, peak memory, codes equal to the whole-clip codes; with ``decode`` also ``decode`` vs
    ``decode_long(window=w // temporal_factor)`` of the whole-clip codes (max |difference|)."""
    x = x.to(device)
    frames, f = x.shape[2], tok.temporal_factor
    rows: list[dict[str, Any]] = []
    out: list[Tensor] = []
    with torch.inference_mode():
        tok.decode(tok.encode(x[:, :, : 1 + f, :64, :64]))  # warm-up
        m = measure(lambda: out.append(tok.encode(x)), frames, device)
        whole = out.pop()
        rows.append({"op": "encode", "method": "whole clip", "window": None, "windows": 1, **asdict(m),
                     "differing": 0, "max_err": None, "load": load_average()})
        for w in windows:
            m = measure(lambda: out.append(tok.encode_long(x, window=w)), frames, device)
            codes = out.pop()
            differing = int((codes != whole).sum()) if codes.shape == whole.shape else -1
            rows.append({"op": "encode", "method": f"encode_long window={w}", "window": w,
                         "windows": math.ceil((frames - 1) / w), **asdict(m), "differing": differing, "max_err": None,
                         "load": load_average()})
        if decode:
            m = measure(lambda: out.append(tok.decode(whole)), frames, device)
            ref = out.pop()
            rows.append({"op": "decode", "method": "whole clip", "window": None, "windows": 1, **asdict(m),
                         "differing": None, "max_err": 0.0, "load": load_average()})
            for w in windows:
                lw = w // f
                m = measure(lambda: out.append(tok.decode_long(whole, window=lw)), frames, device)
                y = out.pop()
                err = float((y - ref).abs().max()) if y.shape == ref.shape else math.inf
                rows.append({"op": "decode", "method": f"decode_long window={lw} latents ({w} frames)", "window": w,
                             "windows": math.ceil((whole.shape[1] - 1) / lw), **asdict(m), "differing": None,
                             "max_err": err, "load": load_average()})
    for r in rows:
        r.update(frames=frames, size=int(x.shape[-1]), device=device.type, latents=int(whole.shape[1]))
    return rows


def section_windows(specs: list[tuple[Spec, int, int]], device: torch.device, decode_all: bool,
                    windows: tuple[int, ...] = (16, 32)) -> list[dict[str, Any]]:
    """``(spec, size, frames)`` each: ``bench_windows`` rows labelled with the model."""
    rows = []
    for spec, size, frames in specs:
        tok = spec.build(image_size=size).to(device)
        decode = decode_all or tok.num_parameters() <= BIG_PARAMS
        for r in bench_windows(tok, clip(frames, size, index=1), device, windows, decode):
            rows.append({"model": spec.label, "params_m": tok.num_parameters() / 1e6, **r})
            _log(f"  {spec.label} {r['op']} {r['method']}: {r['seconds']:.1f} s, peak {r['peak_mb']:.0f} MB")
        del tok
        release_memory()
    return rows


def render_windows(rows: list[dict[str, Any]]) -> str:
    head = ["model", "frames x size", "op", "method", "windows", "s", "fps", "peak MB", "peak / whole",
            "codes equal", "max abs err vs whole", "load"]
    whole = {(r["model"], r["op"]): r["peak_mb"] for r in rows if r["window"] is None}
    body = []
    for r in rows:
        ref = whole.get((r["model"], r["op"]), 0.0)
        d = r["differing"]
        eq = "-" if d is None else "yes" if d == 0 else "NO (shape)" if d < 0 else f"NO ({d} differ)"
        body.append([r["model"], f"{r['frames']}x{r['size']}^2", r["op"], r["method"], r["windows"],
                     f"{r['seconds']:.2f}", f"{r['fps']:.1f}", f"{r['peak_mb']:.0f}",
                     f"{r['peak_mb'] / ref:.2f}" if ref > 0 else "-", eq,
                     "-" if r["max_err"] is None else f"{r['max_err']:.1e}", _fmt_load(r["load"])])
    return table(head, body)


# --- 3. spatial tiling -------------------------------------------------------------------------
def section_tiling(specs: list[tuple[Spec, int, int]], device: torch.device) -> list[dict[str, Any]]:
    """``(spec, training size, frames)`` each: ``tiling_report`` (default tile = the training
    size, overlap a quarter of it) on frames of twice the training size."""
    rows = []
    for spec, size, frames in specs:
        tok = spec.build(image_size=size).to(device)
        x = clip(frames, 2 * size, index=2).to(device)
        t = time.perf_counter()
        with torch.inference_mode():
            rep = tiling_report(tok, x)
        rows.append({"model": spec.label, "train_size": size, "size": 2 * size, "frames": frames,
                     "seconds": time.perf_counter() - t, **rep})
        _log(f"  {spec.label}: boundary / interior {rep['boundary_to_interior']:.2f}")
        del tok
        release_memory()
    return rows


def render_tiling(rows: list[dict[str, Any]]) -> str:
    head = ["model", "frames x size (train size)", "tiles", "codes changed", "mean err boundary", "mean err interior",
            "boundary / interior", "max err boundary", "max err interior", "s"]
    body = [[r["model"], f"{r['frames']}x{r['size']}^2 ({r['train_size']})", "x".join(map(str, r["tiles"])),
             f"{r['differing_codes']} ({100 * r['differing_fraction']:.1f} %)", f"{r['decode_mean_err_boundary']:.2e}",
             f"{r['decode_mean_err_interior']:.2e}", f"{r['boundary_to_interior']:.2f}",
             f"{r['decode_max_err_boundary']:.2e}", f"{r['decode_max_err_interior']:.2e}", f"{r['seconds']:.1f}"]
            for r in rows]
    return table(head, body)


# --- output --------------------------------------------------------------------------------


def set_threads(spec: str) -> str:
    """Set torch's intra-op threads from ``spec`` (an int or "auto"); returns how it was chosen.
    "auto": torch's default, reduced to the cores the 1-min load average leaves free (at least 1)."""
    default = torch.get_num_threads()
    if spec != "auto":
        torch.set_num_threads(int(spec))
        return "--threads"
    load, cores = load_average(), os.cpu_count() or default
    if load is None:
        return "torch default"
    free = max(1, min(default, cores - int(round(load))))
    if free < default:
        torch.set_num_threads(free)
        return f"auto: load avg {load:.2f} leaves {free} of {cores} cores free (torch default {default})"
    return f"auto: torch default, load avg {load:.2f} on {cores} cores"


def _csv(s: str) -> list[str]:
    return [v.strip() for v in s.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="causal3d_tiny (32 px) and causal3d_4x8x8_fsq with base_channels=32 (128 px) only, < 2 min")
    p.add_argument("--all", action="store_true",
                   help="every preset at 128 and 256 px, 2D baselines on the whole clip, windowed decode rows "
                        "for every model, no time budget")
    p.add_argument("--models", default=None, help="comma-separated presets for the 128 px rows (default: all four)")
    p.add_argument("--large-models", default=None,
                   help="comma-separated presets for the 256 px rows (default: the two FSQ presets; --all: all)")
    p.add_argument("--sections", default="throughput,windows,tiling", help="subset of throughput,windows,tiling")
    p.add_argument("--device", default="auto", help="cpu, cuda, cpu,cuda, or auto (CUDA when present, else CPU)")
    p.add_argument("--threads", default="auto",
                   help="CPU intra-op threads, or 'auto': torch's default, fewer when the 1-min load average says "
                        "other jobs hold cores")
    p.add_argument("--budget-min", type=float, default=9.0,
                   help="wall-clock budget: 256 px rows whose estimate does not fit in what is left are skipped")
    p.add_argument("--frames-2d", type=int, default=None,
                   help="frames the 2D baseline folds into its batch (default: the clip, or 1 + temporal_factor "
                        "for models over 10M parameters on CPU)")
    p.add_argument("--min-time", type=float, default=None, help="seconds of timed calls per small-model measurement")
    p.add_argument("--long-frames", type=int, default=129, help="frames of the windowed clip (1 + 16n)")
    p.add_argument("--long-base-channels", type=int, default=None,
                   help="base width of the windowed / tiled preset (default: 32 on CPU, the preset's on CUDA)")
    p.add_argument("--mmap-threshold-kb", type=int, default=0,
                   help="glibc only: fix malloc's mmap threshold (e.g. 1024) so peak RSS tracks live memory, not "
                        "the heap glibc keeps; 0 = the allocator's default")
    p.add_argument("--side-by-side", default=None, metavar="PRESETS",
                   help="comma-separated presets (name or name:key=int,...) for the interleaved 3D vs 2D table, "
                        "e.g. causal3d_4x8x8_fsq,causal3d_4x8x8_fsq:base_channels=32; with --sections side")
    p.add_argument("--side-size", type=int, default=128, help="frame size of the side-by-side rows")
    p.add_argument("--side-frames", type=int, default=17, help="frames of the side-by-side clip")
    p.add_argument("--side-rounds", type=int, default=2, help="interleaved rounds per side-by-side row")
    p.add_argument("--side-old", action="store_true",
                   help="side by side: also time the 3D model on the previous layer code (old_conv3d_path) each round")
    p.add_argument("--json", default=None, help="write the raw numbers here")
    args = p.parse_args(argv)

    q = args.quick
    sections = set(_csv(args.sections))
    bad = sections - {"throughput", "windows", "tiling", "side"}
    if bad:
        p.error(f"unknown section(s) {sorted(bad)}")
    if args.long_frames < 17 or (args.long_frames - 1) % 16:
        p.error("--long-frames must be 1 + a multiple of 16 (windows of 16 and 32 frames)")
    known = set(mmtok.list_tokenizers())
    names = _csv(args.models) if args.models else list(PRESETS)
    large = _csv(args.large_models) if args.large_models else (list(names) if args.all else
                                                                [n for n in LARGE_DEFAULT if n in names])
    unknown = [n for n in names + large if n not in known]
    if unknown:
        p.error(f"unknown preset(s) {unknown}; see mmtok.list_tokenizers(modality='video')")
    if args.device == "auto":
        devices = [torch.device("cuda" if torch.cuda.is_available() else "cpu")]
    else:
        devices = [torch.device(d) for d in _csv(args.device)]
        if any(d.type == "cuda" for d in devices) and not torch.cuda.is_available():
            p.error("--device cuda requested but CUDA is not available")
    main_device = devices[-1]
    threads_note = set_threads(args.threads)
    mmap_kb = args.mmap_threshold_kb
    if mmap_kb and not set_mmap_threshold(1024 * mmap_kb):
        mmap_kb = 0
    min_time = args.min_time if args.min_time is not None else (0.3 if q else 1.0)
    width = args.long_base_channels
    if width is None:
        width = 0 if main_device.type == "cuda" else REDUCED["base_channels"]
    reduced = Spec("causal3d_4x8x8_fsq", {"base_channels": width} if width else {})
    tiny = Spec("causal3d_tiny")

    if q:
        jobs = [(tiny, 32), (reduced, 128)]
    else:
        jobs = [(Spec(n), 128) for n in names] + [(Spec(n), 256) for n in large]
    small_jobs = [j for j in jobs if j[1] <= 128]
    large_jobs = [j for j in jobs if j[1] > 128]
    plan = Plan(small_jobs, frames_2d=args.frames_2d, all_2d_frames=args.all)
    long_frames = 65 if q and args.long_frames == 129 else args.long_frames
    window_specs = [(tiny, 32, 129), (reduced, 128, long_frames)]
    tiling_specs = [(tiny, 32, 9), (Spec("causal3d_tiny", {"norm": "layer", "mid_attention": False}), 32, 9),
                    (reduced, 128, 5)]

    load = load_average()
    meta = {"load_avg_1min": load, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "threads_choice": threads_note, "mmap_threshold_kb": mmap_kb, "torch": torch.__version__,
            "python": platform.python_version(),
            "quick": q, "all": args.all, "budget_min": None if args.all else args.budget_min,
            "devices": [d.type for d in devices],
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    print(f"# bench_video: load avg (1 min) {load if load is None else f'{load:.2f}'} on {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads ({threads_note})"
          + (f", GPU {meta['cuda']}" if meta["cuda"] else "")
          + (f", malloc mmap threshold {mmap_kb} KB" if mmap_kb else "")
          + (", --quick" if q else "") + (", --all" if args.all else ""),
          flush=True)
    results: dict[str, Any] = {"meta": meta}
    t_start = time.perf_counter()
    deadline = None if args.all else t_start + 60 * args.budget_min

    rows: list[dict[str, Any]] = []
    if "side" in sections:
        _log("side by side")
        side = []
        for item in _csv(args.side_by_side or "causal3d_4x8x8_fsq"):
            name, _, extra = item.partition(":")
            over = {k: int(v) for k, v in (kv.split("=") for kv in extra.split(";") if kv)} if extra else {}
            side.append(side_by_side(Spec(name, over), args.side_size, args.side_frames, args.side_rounds, main_device,
                                     old=args.side_old))
            r = side[-1]
            _log(f"  {r['model']}: 3D/2D enc {r['ratio_enc']:.2f}, dec {r['ratio_dec']:.2f}")
        results["side"] = side
        print(f"\n## 0. 3D vs per-frame 2D, interleaved ({main_device.type}, batch 1 clip vs its frames as a 2D batch; "
              "3D/2D = median over rounds of 3D fps / 2D fps; FLOPs of encoder / decoder convs, attention and norms)\n")
        print(render_side_by_side(side), flush=True)
    if "throughput" in sections:
        _log("throughput (up to 128 px)")
        rows = section_throughput(plan, devices, min_time)
    if "windows" in sections:
        _log("windows")
        results["windows"] = section_windows(window_specs, main_device, args.all)
    if "tiling" in sections:
        _log("tiling")
        results["tiling"] = section_tiling(tiling_specs, main_device)
    if "throughput" in sections and large_jobs:
        _log("throughput (256 px, budget-limited)" if deadline else "throughput (256 px)")
        plan.jobs = large_jobs
        rows += section_throughput(plan, devices, min_time, deadline, done=rows)

    if rows:
        results["throughput"] = rows
        print("\n## 1. Encode / decode speed (batch 1; fps = frames per second of compute; 3D/2D = 3D fps / fps of the "
              f"per-frame {BASELINE_2D} with the same widths; frames = frames per call; tokens / bits per "
              "clip of the preset's length; peak = memory added by the call; load = 1-min load avg after the row, "
              "this run included)\n")
        print(render_throughput(rows), flush=True)
    if "windows" in sections:
        print(f"\n## 2. Windowed vs whole clip ({main_device.type}; encode_long carries the causal state; "
              "codes equal = identical to the whole-clip encode; peak = memory added by the call"
              + (f"; {reduced.label} stands in for the full-width preset, too slow on CPU" if width else "") + ")\n")
        print(render_windows(results["windows"]), flush=True)
    if "tiling" in sections:
        print(f"\n## 3. Spatial tiling (tiling_report, {main_device.type}; frames 2x the training size; "
              "tile = training size, overlap = a quarter; boundary = pixels two tiles blend, interior = the rest; "
              "err = |tiled - whole|)\n")
        print(render_tiling(results["tiling"]), flush=True)

    meta["wall_seconds"] = time.perf_counter() - t_start
    meta["load_avg_1min_end"] = load_average()
    end = meta["load_avg_1min_end"]
    skipped = sum("skipped" in r for r in rows)
    print(f"\n- notes: {torch.get_num_threads()} torch thread(s) ({threads_note}); load avg (1 min) "
          f"{load if load is None else f'{load:.2f}'} at the start, {end if end is None else f'{end:.2f}'} at the end; "
          f"untrained weights (seed 0), synthetic clips; total {meta['wall_seconds']:.0f} s"
          + (f"; {skipped} row(s) skipped by the {args.budget_min:g} min budget (--all runs them)" if skipped else ""),
          flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
