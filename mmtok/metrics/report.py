"""Report outputs of an evaluation: streamed ADM-style ``.npz``, Markdown, plots and image grids."""

from __future__ import annotations

import math
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor


class RawImageWriter:
    """Append uint8 (B, 3, H, W) batches to a raw NHWC byte file (one per rank)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "wb")
        self.count = 0
        self.hw: tuple[int, int] | None = None

    def write(self, images: Tensor) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        hw = (int(images.shape[2]), int(images.shape[3]))
        if self.hw is not None and hw != self.hw:
            raise ValueError(f"image size changed from {self.hw} to {hw}")
        self.hw = hw
        self._f.write(images.permute(0, 2, 3, 1).contiguous().cpu().numpy().tobytes())
        self.count += images.shape[0]

    def close(self) -> None:
        if not self._f.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()


def write_npz_from_raw(parts: list[Path], n: int, hw: tuple[int, int], out: str | os.PathLike) -> Path:
    """Stream raw NHWC uint8 parts into ``out`` as ``arr_0`` (N, H, W, 3), written atomically.

    Uncompressed zip entries, readable by ``np.load`` and the ADM / guided-diffusion evaluator.
    """
    from mmtok.checkpoint import atomic_write

    expected = n * hw[0] * hw[1] * 3
    got = sum(p.stat().st_size for p in parts)
    if got != expected:
        raise RuntimeError(f"raw image parts hold {got} bytes, expected {expected} for {n} images of {hw}")

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            with zf.open("arr_0.npy", "w", force_zip64=True) as f:
                header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False, "shape": (n, hw[0], hw[1], 3)}
                np.lib.format.write_array_header_1_0(f, header)
                for p in parts:
                    with open(p, "rb") as src:
                        shutil.copyfileobj(src, f, length=1 << 22)

    return atomic_write(out, write)


def save_image_grid(rows: list[Tensor], path: str | os.PathLike, pad: int = 2) -> Path:
    """Save rows of uint8 (B, 3, H, W) images as one PNG grid (one tensor per row)."""
    from PIL import Image

    from mmtok.checkpoint import atomic_write

    b = max(r.shape[0] for r in rows)
    h, w = rows[0].shape[-2:]
    canvas = np.full((len(rows) * (h + pad) + pad, b * (w + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        arr = row.permute(0, 2, 3, 1).cpu().numpy()
        for j in range(arr.shape[0]):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            canvas[y : y + h, x : x + w] = arr[j]
    return atomic_write(path, lambda p: Image.fromarray(canvas).save(p, format="PNG"))


def plot_prefix_curve(rows: list[dict[str, Any]], path: str | os.PathLike, title: str = "") -> Path:
    """PNG of quality vs number of tokens (rFID, PSNR, SSIM, LPIPS: whichever were measured)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from mmtok.checkpoint import atomic_write

    keys = [k for k in ("rfid", "psnr", "ssim", "lpips") if any(r.get(k) is not None and not _nan(r.get(k)) for r in rows)]
    labels = {"rfid": "rFID (lower is better)", "psnr": "PSNR dB", "ssim": "SSIM", "lpips": "LPIPS (lower is better)"}
    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(3.6 * max(1, len(keys)), 3.2), squeeze=False)
    x = [r["tokens"] for r in rows]
    for ax, k in zip(axes[0], keys):
        ax.plot(x, [r.get(k) for r in rows], marker="o")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("tokens")
        ax.set_title(labels[k], fontsize=9)
        ax.grid(alpha=0.3)
        ax.ticklabel_format(axis="y", useOffset=False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out = atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)
    return out


def _nan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None or _nan(v):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v)


def markdown_report(report: dict[str, Any]) -> str:
    """Human-readable Markdown of an evaluation report (protocol next to every number)."""
    tk, m, proto = report["tokenizer"], report["metrics"], report["protocol"]
    lines = [
        f"# Reconstruction evaluation: {tk.get('variant') or tk.get('family')}",
        "",
        f"- checkpoint: `{report.get('checkpoint')}`",
        f"- protocol id: `{proto['id']}` (N = {proto['num_images']} images, {proto['resolution'][0]}x{proto['resolution'][1]}, "
        f"crop {proto.get('crop')}, dataset `{proto['dataset'].get('spec', proto['dataset'].get('kind'))}`)",
        f"- tokens per image: {tk['num_tokens']} (token shape {tuple(tk['token_shape'])}), codebook {tk['codebook_size']}, "
        f"{_fmt(m['bits_per_image'])} bits/image, {_fmt(m['bits_per_pixel'])} bits/pixel",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    for k, label in (("rfid", "rFID"), ("psnr", "PSNR (dB)"), ("ssim", "SSIM"), ("lpips", "LPIPS")):
        lines.append(f"| {label} | {_fmt(m.get(k))} |")
    cb = report["codebook"]
    lines += [
        f"| codebook usage | {_fmt(cb['usage'])} ({_fmt(cb['used_codes'])} / {cb['codebook_size']} codes) |",
        f"| codebook perplexity | {_fmt(cb['perplexity'])} |",
        f"| code entropy (bits) | {_fmt(cb['entropy_bits'])} of {_fmt(math.log2(max(2, cb['codebook_size'])))} |",
    ]
    tp = report["throughput"]
    lines += [
        "",
        f"Throughput on {tp['device']} (batch {tp['batch_size']}, {tp['world_size']} process(es)): "
        f"encode {_fmt(tp['encode_images_per_s'])} img/s, decode {_fmt(tp['decode_images_per_s'])} img/s, "
        f"whole evaluation {_fmt(tp['eval_images_per_s'])} img/s (features and metrics included).",
    ]
    if report.get("prefix"):
        lines += ["", "## Quality vs number of tokens (prefix decoding)", "",
                  "| tokens | bits/pixel | rFID | PSNR | SSIM | LPIPS |", "|---|---|---|---|---|---|"]
        for r in report["prefix"]:
            lines.append(f"| {r['tokens']} | {_fmt(r['bits_per_pixel'])} | {_fmt(r.get('rfid'))} | {_fmt(r.get('psnr'))} | "
                         f"{_fmt(r.get('ssim'))} | {_fmt(r.get('lpips'))} |")
    if report.get("skipped"):
        lines += ["", f"Skipped {len(report['skipped'])} unreadable item(s); first: `{report['skipped'][0]}`"]
    fe = proto.get("feature_extractor") or {}
    lines += [
        "",
        "## Protocol",
        "",
        f"- rFID features: {fe.get('name', 'not computed')}"
        + (f", weights `{fe['weights_file']}` sha256 `{fe['weights_sha256'][:16]}`" if fe.get("weights_sha256") else ""),
        f"- resize: {fe.get('resize', '–')}",
        f"- statistics: {proto['statistics']}",
        f"- reference statistics: {report['reference_stats']['source']}",
        f"- PSNR/SSIM: per image on uint8 pixels (data range 255), averaged; SSIM Gaussian 11x11, sigma 1.5",
        f"- LPIPS: {report.get('lpips', {}).get('description', 'not computed')}",
        f"- dataset: `{proto['dataset']}`",
        "",
    ]
    return "\n".join(lines)
