"""``evaluate_reconstruction``: reconstruct a dataset with an image tokenizer and score it.

Metrics: rFID (torch-fidelity-compatible Inception features, float64 statistics, reduced
across ranks, cached reference statistics), PSNR, SSIM, LPIPS, dataset-level codebook
usage / perplexity / entropy, tokens per image, bits per pixel, encode / decode
throughput; for nested (prefix-decodable) 1D tokenizers, the same metrics per prefix length.
Outputs (rank 0): ``report.json``, ``report.md``, ``reconstructions.npz`` (ADM format,
``arr_0`` uint8 (N, H, W, 3)), ``recon_grid.png`` and, for nested tokenizers, ``prefix_curve.png``.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import Dataset, Subset

from mmtok.metrics.codebook import CodebookHistogram
from mmtok.metrics.fid import FeatureStats, GaussianStats, fid_from_stats
from mmtok.metrics.image import MeanMetric, psnr_per_image, ssim_per_image, to_uint8_images
from mmtok.metrics.protocol import ReferenceStatsCache, dataset_identity, module_sha256, protocol_fingerprint, reference_key
from mmtok.metrics.report import RawImageWriter, markdown_report, plot_prefix_curve, save_image_grid, write_npz_from_raw

GRID_IMAGES = 8


def default_prefix_lengths(num_tokens: int) -> list[int]:
    """1, 2, 4, ... up to ``num_tokens`` (which is always included)."""
    out = [2**i for i in range(int(math.log2(num_tokens)) + 1) if 2**i < num_tokens]
    return out + [num_tokens]


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _expected_size(tok: Any) -> tuple[int, int] | None:
    size = getattr(getattr(tok, "config", None), "image_size", None)
    if size is None:
        return None
    if isinstance(size, int):
        return (size, size)
    return (int(size[0]), int(size[1]))


def _lpips_module(weights: str | None, device: torch.device) -> tuple[Any, dict[str, Any]] | tuple[None, dict[str, Any]]:
    if weights is None or str(weights).lower() == "none":
        return None, {"description": "not computed"}
    try:
        from mmtok.losses import LPIPS
    except ImportError as e:  # pragma: no cover - depends on the losses package
        raise ImportError(f"LPIPS needs mmtok.losses.LPIPS ({e}); pass lpips=None to skip it") from e
    net = LPIPS(net="vgg", weights=weights).to(device).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    sha = module_sha256(net)
    desc = {
        "description": f"VGG LPIPS, weights '{weights}' (state sha256 {sha[:16]}), inputs in [-1, 1] from uint8 pixels",
        "weights": str(weights),
        "state_sha256": sha,
    }
    return net, desc


def _from_uint8(x: Tensor) -> Tensor:
    return x.float() / 127.5 - 1.0


def evaluate_reconstruction(
    tokenizer: Any,
    dataset: Dataset,
    *,
    batch_size: int = 32,
    num_images: int | None = None,
    device: str | torch.device | None = None,
    fid: bool = True,
    inception_weights: str | os.PathLike | None = "auto",
    lpips: str | None = "auto",
    prefix_lengths: Sequence[int] | str | None = "auto",
    out_dir: str | os.PathLike | None = None,
    save_npz: bool = True,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    dataset_spec: str | None = None,
    num_workers: int = 0,
    progress: bool = True,
    checkpoint: str | None = None,
    fid_method: str = "auto",
    reference_stats: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Reconstruct ``dataset`` with ``tokenizer`` and return the report dict (also written to ``out_dir``).

    Args:
        tokenizer: an image ``mmtok.tokenizer.Tokenizer`` (put in eval mode here).
        dataset: yields ``{"image": (3, H, W) in [-1, 1], "key", "path", ...}`` (``mmtok.data``);
            error items (unreadable files) are skipped and listed in the report.
        batch_size: images per batch and per process.
        num_images: evaluate the first N images only (deterministic order); None = all.
        device: defaults to CUDA (``cuda:LOCAL_RANK``) when available, else CPU.
        fid: compute rFID (needs the Inception weights, see ``mmtok.metrics.inception``).
        inception_weights: weights path, or "auto" for the torch hub cache.
        lpips: weights spec for ``mmtok.losses.LPIPS`` ("auto", "random", a path) or None to skip.
        prefix_lengths: for nested tokenizers: "auto" (1, 2, 4, ..., K), explicit lengths, or None.
        out_dir: where to write the report files (rank 0); None = return the dict only.
        save_npz: write ``reconstructions.npz`` (needs ``out_dir``).
        cache_dir / use_cache: reference-statistics cache (default ``~/.cache/mmtok/fid_refs``).
        dataset_spec: the string the dataset was opened from (recorded in the fingerprint).
        checkpoint: recorded in the report.
        fid_method: matrix square-root route of ``mmtok.metrics.fid.frechet_distance``
            ("auto": exact low-rank route when N <= 2048, else scipy.linalg.sqrtm).
        reference_stats: an ``.npz`` with ``mu`` and ``sigma`` of the same Inception pool3
            features (e.g. an ADM reference batch) to score against instead of the dataset's own
            images; its SHA-256 goes into the fingerprint.

    Under ``torch.distributed`` every rank takes a strided shard of the images; sums,
    histograms and feature statistics are all-reduced, and rank 0 writes the outputs.
    """
    from mmtok.data import make_loader

    if getattr(tokenizer, "modality", None) != "image":
        raise ValueError(
            f"evaluate_reconstruction needs an image tokenizer, got modality {getattr(tokenizer, 'modality', None)!r} "
            f"({type(tokenizer).__name__})"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    total = len(dataset)  # type: ignore[arg-type]
    if total == 0:
        raise ValueError("the dataset is empty: nothing to evaluate")
    if num_images is not None:
        if num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {num_images}")
        if num_images > total:
            raise ValueError(f"num_images={num_images} but the dataset holds only {total} images")
        dataset = Subset(dataset, list(range(num_images)))
        total = num_images
    from mmtok.metrics.fid import METHODS

    if fid_method not in METHODS:
        raise ValueError(f"fid_method must be one of {METHODS}, got {fid_method!r}")
    if fid and total < 2:
        raise ValueError("rFID needs at least 2 images; pass more images or fid=False")

    rank, world = _rank_world()
    if device is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(device)
    tok = tokenizer.to(device).eval()

    # --- what to measure ----------------------------------------------------------------
    num_tokens = int(tok.num_tokens)
    token_shape = tuple(getattr(tok, "token_shape", (num_tokens,)))
    nested = bool(getattr(tok, "is_nested", False))
    if nested and prefix_lengths is not None:
        lengths = default_prefix_lengths(num_tokens) if prefix_lengths == "auto" else sorted({int(k) for k in prefix_lengths})
        bad = [k for k in lengths if not 1 <= k <= num_tokens]
        if bad:
            raise ValueError(f"prefix lengths {bad} outside [1, {num_tokens}]")
        if num_tokens not in lengths:
            lengths.append(num_tokens)
    else:
        if prefix_lengths not in (None, "auto") and not nested:
            raise ValueError(f"{type(tok).__name__} is not nested (prefix-decodable); prefix_lengths must be None or 'auto'")
        lengths = [num_tokens]
    bits_per_image = float(tok.bits_per_image)
    codebook_size = int(tok.codebook_size)
    expected_hw = _expected_size(tok)
    base = dataset.dataset if isinstance(dataset, Subset) else dataset
    res_attr = getattr(base, "resolution", None)
    if expected_hw is not None and isinstance(res_attr, int) and (res_attr, res_attr) != expected_hw:
        raise ValueError(  # fail before loading any network
            f"the dataset yields {res_attr}x{res_attr} images but the tokenizer expects "
            f"{expected_hw[0]}x{expected_hw[1]} (its image_size); open the dataset at resolution {expected_hw[0]}"
        )

    inception = None
    features_desc: dict[str, Any] | None = None
    if fid:
        from mmtok.metrics.inception import get_inception

        inception = get_inception(inception_weights, device=device)
        features_desc = inception.describe()
    lpips_net, lpips_desc = _lpips_module(lpips, device)

    # --- data ---------------------------------------------------------------------------
    shard = Subset(dataset, list(range(rank, total, world))) if world > 1 else dataset
    loader = make_loader(shard, batch_size=batch_size, num_workers=num_workers, shuffle=False)
    ident = dataset_identity(dataset, dataset_spec)
    resolution = expected_hw or (0, 0)

    # reference statistics: reused when the dataset + protocol were seen before
    external_ref: dict[str, Any] | None = None
    ref_stats: GaussianStats | None = None
    if fid and reference_stats is not None:
        from mmtok.metrics.inception import file_sha256

        ref_path = Path(reference_stats)
        if not ref_path.is_file():
            raise FileNotFoundError(f"reference statistics file not found: {ref_path}")
        ref_stats = GaussianStats.load(ref_path)
        if ref_stats.mu.shape != (2048,):
            raise ValueError(f"{ref_path} holds {ref_stats.mu.shape[0]}-d statistics; Inception pool3 features are 2048-d")
        external_ref = {"path": str(ref_path.resolve()), "sha256": file_sha256(ref_path), "n": ref_stats.n}
    ref_cache = ReferenceStatsCache(cache_dir) if (fid and use_cache and external_ref is None) else None
    ref_key = reference_key(features_desc, ident, resolution, total) if fid else None
    if external_ref is not None:
        ref_key = None
    if ref_cache is not None:
        hit = [ref_cache.get(ref_key) is not None if rank == 0 else False]
        if world > 1:
            dist.broadcast_object_list(hit, src=0)
        if hit[0] and rank == 0:
            ref_stats = ref_cache.get(ref_key)
        ref_hit = bool(hit[0])
    else:
        ref_hit = external_ref is not None
    ref_acc = FeatureStats() if (fid and not ref_hit) else None
    rec_acc = {k: FeatureStats() for k in lengths} if fid else {}
    psnr = {k: MeanMetric() for k in lengths}
    ssim = {k: MeanMetric() for k in lengths}
    lp = {k: MeanMetric() for k in lengths} if lpips_net is not None else {}
    hist: CodebookHistogram | None = None

    out_path = Path(out_dir) if out_dir is not None else None
    writer = RawImageWriter(out_path / f".reconstructions.rank{rank}.u8") if (save_npz and out_path is not None) else None
    keys: list[str] = []
    skipped: list[tuple[str, str]] = []
    grid_real: list[Tensor] = []
    grid_rec: list[Tensor] = []
    enc_time = dec_time = 0.0
    seen = 0

    try:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(shard), desc="eval", unit="img", disable=not progress or rank != 0)  # type: ignore[arg-type]
        t_start = time.perf_counter()
        with torch.inference_mode():
            for batch in loader:
                skipped.extend(batch.get("errors", []))
                x = batch.get("image")
                bar.update(len(batch.get("key", [])) + len(batch.get("errors", [])))
                if x is None or x.shape[0] == 0:
                    continue
                if x.ndim != 4 or x.shape[1] != 3:
                    raise ValueError(f"the dataset yields images of shape {tuple(x.shape[1:])}, expected (3, H, W)")
                if expected_hw is not None and tuple(x.shape[-2:]) != expected_hw:
                    raise ValueError(
                        f"the dataset yields {x.shape[-2]}x{x.shape[-1]} images but the tokenizer expects "
                        f"{expected_hw[0]}x{expected_hw[1]} (its image_size); open the dataset at resolution {expected_hw[0]}"
                    )
                if expected_hw is None:
                    expected_hw = resolution = (int(x.shape[-2]), int(x.shape[-1]))
                x = x.to(device, non_blocking=True).float()
                real_u8 = to_uint8_images(x)
                real_q = _from_uint8(real_u8)

                _sync(device)
                t0 = time.perf_counter()
                codes = tok.encode(x)
                _sync(device)
                enc_time += time.perf_counter() - t0
                if hist is None:
                    extra = codes.ndim - 1 - len(token_shape)
                    levels = int(codes.shape[-1]) if extra == 1 else 1
                    hist = CodebookHistogram(codebook_size, levels)
                hist.update(codes)

                if ref_acc is not None:
                    ref_acc.update(inception(real_u8))
                for k in lengths:
                    _sync(device)
                    t0 = time.perf_counter()
                    rec = tok.decode(codes if k == num_tokens else codes[:, :k])
                    _sync(device)
                    if k == num_tokens:
                        dec_time += time.perf_counter() - t0
                    if rec.shape != x.shape:
                        raise RuntimeError(f"decode returned shape {tuple(rec.shape)} for input {tuple(x.shape)}")
                    rec_u8 = to_uint8_images(rec)
                    psnr[k].update(psnr_per_image(rec_u8, real_u8))
                    ssim[k].update(ssim_per_image(rec_u8, real_u8))
                    if lpips_net is not None:
                        lp[k].update(lpips_net(_from_uint8(rec_u8), real_q).flatten())
                    if fid:
                        rec_acc[k].update(inception(rec_u8))
                    if k == num_tokens:
                        if writer is not None:
                            writer.write(rec_u8)
                        need = GRID_IMAGES - sum(g.shape[0] for g in grid_real)
                        if need > 0:
                            grid_real.append(real_u8[:need].cpu())
                            grid_rec.append(rec_u8[:need].cpu())
                keys.extend(batch["key"])
                seen += x.shape[0]
        _sync(device)
        wall = time.perf_counter() - t_start
        bar.close()
    finally:
        if writer is not None:
            writer.close()

    # --- reduce across ranks ------------------------------------------------------------
    counts = torch.tensor([seen, len(skipped), enc_time, dec_time, wall], dtype=torch.float64)
    if world > 1:
        dev = device if dist.get_backend() == "nccl" else torch.device("cpu")
        c = counts.to(dev)
        dist.all_reduce(c[:2])
        dist.all_reduce(c[2:], op=dist.ReduceOp.MAX)
        counts = c.cpu()
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, skipped)
        skipped = [s for part in gathered for s in part]
    n_images = int(counts[0])
    if n_images == 0:
        raise ValueError(f"no readable images among {total} items; first error: {skipped[0] if skipped else 'none'}")
    levels = hist.num_levels if hist is not None else 0
    if world > 1:  # a rank that saw no images still joins the reductions with the same shape
        lv = torch.tensor([levels], dtype=torch.long, device=device if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(lv, op=dist.ReduceOp.MAX)
        levels = int(lv.item())
    if hist is None:
        hist = CodebookHistogram(codebook_size, max(1, levels))
    codebook = hist.compute()

    rows = []
    for k in lengths:
        rows.append({
            "tokens": k,
            "bits_per_image": bits_per_image * k / num_tokens,
            "bits_per_pixel": bits_per_image * k / num_tokens / (resolution[0] * resolution[1]),
            "psnr": psnr[k].compute(),
            "ssim": ssim[k].compute(),
            "lpips": lp[k].compute() if lp else None,
            "_stats": rec_acc[k].compute() if fid else None,
        })
    if ref_acc is not None:
        computed_ref = ref_acc.compute()
        if n_images < 2:
            raise ValueError("rFID needs at least 2 readable images")
        ref_stats = computed_ref
    ref_source = "not computed"

    report: dict[str, Any] = {}
    if rank == 0:
        import mmtok

        if fid:
            assert ref_stats is not None
            if external_ref is not None:
                ref_source = f"external file {external_ref['path']} (sha256 {external_ref['sha256'][:16]}, N={external_ref['n']})"
            elif ref_hit:
                ref_source = f"cached {ref_cache.path(ref_key)}"  # type: ignore[union-attr]
            else:
                ref_source = "computed in this run"
                if ref_cache is not None and n_images == total:
                    ref_cache.put(ref_key, ref_stats, {"feature_extractor": features_desc, "dataset": ident,
                                                       "resolution": list(resolution), "num_images": total})
                    ref_source += f", cached as {ref_cache.path(ref_key)}"
            for r in rows:
                r["rfid"] = fid_from_stats(r["_stats"], ref_stats, method=fid_method)
        for r in rows:
            r.pop("_stats", None)
            r.setdefault("rfid", None)
        full = rows[-1]
        protocol = protocol_fingerprint(
            features_desc, ident, resolution, n_images,
            extra={"lpips": lpips_desc.get("state_sha256"), "reference_key": ref_key, "fid_method": fid_method,
                   "reference": external_ref or ("dataset images (same N, crop, resolution)" if fid else None)},
        )
        cfg = getattr(tok, "config", None)
        try:
            from mmtok.config import config_hash, to_dict

            cfg_hash = config_hash(to_dict(cfg)) if cfg is not None else None
        except Exception:  # pragma: no cover - non-dataclass configs
            cfg_hash = None
        dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
        report = {
            "mmtok_version": mmtok.__version__,
            "checkpoint": checkpoint,
            "tokenizer": {
                "family": type(tok).__name__,
                "variant": getattr(tok, "variant_name", None),
                "config_hash": cfg_hash,
                "num_tokens": num_tokens,
                "token_shape": list(token_shape),
                "codebook_size": codebook_size,
                "bits_per_image": bits_per_image,
                "is_nested": nested,
                "num_parameters": int(sum(p.numel() for p in tok.parameters())),
            },
            "protocol": protocol,
            "num_images": n_images,
            "metrics": {
                "rfid": full["rfid"],
                "psnr": full["psnr"],
                "ssim": full["ssim"],
                "lpips": full["lpips"],
                "tokens_per_image": num_tokens,
                "bits_per_image": bits_per_image,
                "bits_per_pixel": full["bits_per_pixel"],
            },
            "codebook": codebook,
            "throughput": {
                "device": dev_name,
                "batch_size": batch_size,
                "world_size": world,
                "encode_images_per_s": n_images / counts[2].item() if counts[2] > 0 else None,
                "decode_images_per_s": n_images / counts[3].item() if counts[3] > 0 else None,
                "eval_images_per_s": n_images / counts[4].item() if counts[4] > 0 else None,
                "eval_seconds": counts[4].item(),
            },
            "prefix": rows if nested and len(rows) > 1 else [],
            "reference_stats": {"source": ref_source, "key": ref_key},
            "lpips": lpips_desc,
            "skipped": [list(s) for s in skipped],
            "files": {},
        }
    if out_path is not None:
        _write_outputs(report, out_path, rank, world, writer, keys, grid_real, grid_rec, resolution)
    return report


def _write_outputs(report: dict[str, Any], out: Path, rank: int, world: int, writer: RawImageWriter | None,
                   keys: list[str], grid_real: list[Tensor], grid_rec: list[Tensor], hw: tuple[int, int]) -> None:
    from mmtok.checkpoint import atomic_write_json, atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    if writer is not None:
        (out / f".reconstructions.rank{rank}.keys").write_text("".join(k + "\n" for k in keys))
    if world > 1:
        dist.barrier()
    if rank == 0:
        files = report["files"]
        if writer is not None:
            parts = [out / f".reconstructions.rank{r}.u8" for r in range(world)]
            key_parts = [out / f".reconstructions.rank{r}.keys" for r in range(world)]
            write_npz_from_raw(parts, report["num_images"], hw, out / "reconstructions.npz")
            atomic_write_text(out / "reconstructions_keys.txt", "".join(p.read_text() for p in key_parts))
            for p in parts + key_parts:
                p.unlink(missing_ok=True)
            files["npz"] = "reconstructions.npz"
            files["npz_keys"] = "reconstructions_keys.txt"
        if grid_real:
            save_image_grid([torch.cat(grid_real), torch.cat(grid_rec)], out / "recon_grid.png")
            files["grid"] = "recon_grid.png"
        if report["prefix"]:
            title = f"{report['tokenizer'].get('variant') or report['tokenizer']['family']} (protocol {report['protocol']['id']})"
            plot_prefix_curve(report["prefix"], out / "prefix_curve.png", title=title)
            files["prefix_plot"] = "prefix_curve.png"
        files["json"] = "report.json"
        files["markdown"] = "report.md"
        atomic_write_json(out / "report.json", _finite_or_none(json.loads(json.dumps(report, default=_json_default))))
        atomic_write_text(out / "report.md", markdown_report(report))
    if world > 1:
        dist.barrier()


def _finite_or_none(obj: Any) -> Any:
    """NaN / inf -> None recursively, so report.json is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj


def _json_default(o: Any) -> Any:
    if isinstance(o, Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    return str(o)
