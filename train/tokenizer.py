#!/usr/bin/env python
"""Train a tokenizer from a YAML recipe.

    mmtok train configs/image/titok_t32_fsq_synthetic.yaml [key.sub=value ...]
    python train/tokenizer.py CONFIG [key=value ...]
    accelerate launch --num_processes 8 train/tokenizer.py CONFIG [key=value ...]

One plain loop: micro-batches with gradient accumulation -> generator step (clipping,
LR warmup + cosine, EMA) -> discriminator step (own optimiser, own start step) -> logging,
reconstruction grids, atomic checkpoints. ``resume=auto`` continues from the newest
checkpoint in ``run_dir`` exactly where it stopped (weights, optimisers, EMA, scaler,
RNG states, data position). Run layout::

    run_dir/config.yaml          resolved config
    run_dir/metrics.jsonl        one JSON line per log step (also run_dir/tb for TensorBoard)
    run_dir/samples/*.png        inputs above reconstructions (one row per prefix for nested models)
    run_dir/checkpoints/step_*/  resume state (safetensors weights + optimiser/RNG state)
    run_dir/final/               save_pretrained weights (EMA when on): mmtok.load_tokenizer(run_dir/"final")
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import Any

import torch

from mmtok.checkpoint import latest_training_state, load_training_state, save_training_state
from mmtok.config import ConfigError, config_hash, save_yaml, to_dict
from mmtok.data import BatchStream, open_image_dataset
from mmtok.training import EMA, TrainConfig, load_train_config, lr_at, rng_state, seed_everything, set_lr, set_rng_state
from mmtok.training.logging import (
    CodeUsage,
    MetricWriter,
    get_logger,
    prefix_lengths_for,
    reconstruction_grid,
    save_grid_png,
)

EXIT_NONFINITE = 3


class NonFiniteLossError(RuntimeError):
    """Raised when a training loss is NaN/inf; the last good checkpoint stays intact."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="mmtok train",
        description="Train a tokenizer from a YAML recipe (configs/image/*.yaml) with dotted key=value overrides.",
        epilog="example: mmtok train configs/image/titok_t32_fsq_synthetic.yaml schedule.total_steps=200 run_dir=runs/demo",
    )
    p.add_argument("config", help="YAML recipe")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=2e-4 model.overrides.num_tokens=64")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return p.parse_args(argv)


# --- setup helpers ---------------------------------------------------------------------------


def build_accelerator(cfg: TrainConfig, nested: bool = False) -> Any:
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is visible")
    use_cpu = cfg.device == "cpu" or not torch.cuda.is_available()
    if use_cpu and cfg.precision == "fp16":
        raise ConfigError("precision=fp16 needs a GPU; use precision=no or bf16 on CPU")
    kwargs: dict[str, Any] = {}
    if cfg.distributed == "fsdp2" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import FullyShardedDataParallelPlugin

        kwargs["fsdp_plugin"] = FullyShardedDataParallelPlugin(fsdp_version=2, reshard_after_forward=True)
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        # A single-process run may follow another one in the same interpreter (tests, the
        # demo): accelerate's process-wide state must not carry the previous precision over.
        from accelerate.state import AcceleratorState, GradientState

        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    # Nested-dropout models leave the mask token unused when a batch keeps every token.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=nested)
    return Accelerator(mixed_precision=cfg.precision, cpu=use_cpu, kwargs_handlers=[ddp], **kwargs)


def build_tokenizer(cfg: TrainConfig) -> Any:
    import mmtok

    tok = mmtok.create_tokenizer(cfg.model.name, **cfg.model.overrides)
    if tok.modality != "image":
        raise ConfigError(f"{cfg.model.name} is a {tok.modality} tokenizer; this recipe trains image tokenizers")
    if cfg.model.init_from:
        from safetensors.torch import load_model

        weights = Path(cfg.model.init_from) / "model.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(f"model.init_from: {weights} not found")
        missing, unexpected = load_model(tok, str(weights), strict=False)
        if missing or unexpected:
            raise RuntimeError(f"model.init_from weights do not fit {cfg.model.name}: missing={missing} unexpected={unexpected}")
    image_size = getattr(tok.config, "image_size", None)
    if image_size is not None and image_size != cfg.data.resolution:
        raise ConfigError(
            f"data.resolution={cfg.data.resolution} but {cfg.model.name} expects {image_size}px images; "
            f"set model.overrides.image_size={cfg.data.resolution} or data.resolution={image_size}"
        )
    return tok


def build_loss(cfg: TrainConfig) -> Any:
    from mmtok.losses import PatchGANDiscriminator, TokenizerLoss

    disc = None
    if cfg.loss.gan_weight > 0:
        disc = PatchGANDiscriminator(in_channels=3, base_channels=cfg.discriminator.base_channels, num_layers=cfg.discriminator.num_layers)
    w = cfg.loss
    return TokenizerLoss(
        l1_weight=w.l1_weight, l2_weight=w.l2_weight, perceptual_weight=w.perceptual_weight, gan_weight=w.gan_weight,
        gan_start_step=w.gan_start_step, adaptive_gan_weight=w.adaptive_gan_weight, lecam_weight=w.lecam_weight,
        quantizer_weight=w.quantizer_weight, perceptual=w.perceptual if w.perceptual_weight > 0 else None, discriminator=disc,
    )


def idle_cpu_threads() -> int:
    """Threads worth using on CPU: the cores not busy with other work (at least 1).

    On a shared machine extra threads only spin against other processes (a 2-core box
    under load trains a tiny model ~5x faster with one thread than with two).
    """
    cores = torch.get_num_threads()
    try:
        busy = os.getloadavg()[0]
    except OSError:  # pragma: no cover - platforms without load averages
        return cores
    return max(1, min(cores, int((os.cpu_count() or cores) - busy + 0.5)))


def adamw(module: torch.nn.Module, lr: float, betas: tuple[float, float], weight_decay: float, eps: float = 1e-8,
          fused: bool = False) -> torch.optim.AdamW:
    """AdamW with no weight decay on biases, norms, embeddings-as-vectors (params with < 2 dims).

    ``fused``: the single-kernel CUDA implementation (plain / DDP parameters on GPU)."""
    decay = [p for p in module.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in module.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=tuple(betas), eps=eps, fused=fused or None)


def _is_fsdp(accelerator: Any) -> bool:
    return str(accelerator.distributed_type).endswith("FSDP")


def _model_weights(accelerator: Any, prepared: torch.nn.Module, raw: torch.nn.Module) -> Any:
    """What to save as weights: the module itself, or (FSDP) the gathered full state dict."""
    return accelerator.get_state_dict(prepared) if _is_fsdp(accelerator) else raw


def _optim_state(accelerator: Any, model: torch.nn.Module, opt: Any) -> dict[str, Any]:
    if _is_fsdp(accelerator):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(model, opt.optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return opt.state_dict()


def _load_optim_state(accelerator: Any, model: torch.nn.Module, opt: Any, state: dict[str, Any]) -> None:
    if _is_fsdp(accelerator):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(model, opt.optimizer, state, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    else:
        opt.load_state_dict(state)


# --- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        cfg = load_train_config(args.config, args.overrides)
    except (ConfigError, FileNotFoundError) as e:
        print(f"mmtok train: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        import yaml

        print(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        return 0
    try:
        return train(cfg)
    except NonFiniteLossError as e:
        print(f"mmtok train: {e}", file=sys.stderr)
        return EXIT_NONFINITE


def train(cfg: TrainConfig) -> int:
    """Run (or resume) the recipe described by ``cfg``; returns 0 on success."""
    run_dir = Path(cfg.run_dir)
    ckpt_root = run_dir / "checkpoints"

    # Construction is seeded identically on every rank (and on resume): same init, same
    # random LPIPS trunk; per-rank seeds take over after construction.
    seed_everything(cfg.seed)
    tok = build_tokenizer(cfg)
    nested = bool(getattr(tok, "is_nested", False))
    accelerator = build_accelerator(cfg, nested)
    main_proc = accelerator.is_main_process
    if main_proc:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_yaml(cfg, run_dir / "config.yaml")
    accelerator.wait_for_everyone()
    log = get_logger(run_dir, main_proc)
    device = accelerator.device
    if device.type == "cpu":
        threads = cfg.cpu_threads or idle_cpu_threads()
        torch.set_num_threads(threads)
        log.info("CPU run: %d torch thread(s)", threads)

    loss_fn = build_loss(cfg).to(device)
    disc_raw = loss_fn.discriminator
    ema = EMA(tok, cfg.ema.decay, cfg.ema.warmup).to(device) if cfg.ema.enabled else None
    fused = device.type == "cuda" and not _is_fsdp(accelerator)
    tok.to(device)  # before the optimiser: fused AdamW needs its parameters on the GPU
    opt = adamw(tok, cfg.optim.lr, cfg.optim.betas, cfg.optim.weight_decay, cfg.optim.eps, fused=fused)
    disc_opt = None
    if disc_raw is not None:
        disc_opt = adamw(disc_raw, cfg.discriminator.lr, cfg.discriminator.betas, cfg.discriminator.weight_decay, fused=fused)

    model_in = torch.compile(tok) if cfg.compile else tok
    model, opt = accelerator.prepare(model_in, opt)
    disc = None
    if disc_raw is not None:
        disc, disc_opt = accelerator.prepare(disc_raw, disc_opt)
        loss_fn.discriminator = disc
    log.info(
        "model %s: %.2fM params, %d tokens x %d codes%s | %d process(es) on %s, precision=%s",
        cfg.model.name, tok.num_parameters() / 1e6, tok.num_tokens, tok.codebook_size, " (nested)" if nested else "",
        accelerator.num_processes, device, cfg.precision,
    )

    # data
    rank, world = accelerator.process_index, accelerator.num_processes
    dataset = open_image_dataset(cfg.data.train, cfg.data.resolution, crop=cfg.data.crop, flip=cfg.data.flip, seed=cfg.seed)
    log.info("data: %r", dataset)

    # resume
    start_step, stream_state, skipped, window_state = 0, None, 0, None
    usage = CodeUsage(tok.codebook_size)
    resume_dir: Path | None = None
    if cfg.resume == "auto":
        resume_dir = latest_training_state(ckpt_root)
    elif cfg.resume not in ("never", "none", "no"):
        resume_dir = Path(cfg.resume)
        if not resume_dir.is_dir():
            raise FileNotFoundError(f"resume: checkpoint directory not found: {resume_dir}")
    writer = MetricWriter(run_dir, cfg.logging.tensorboard, cfg.logging.wandb, cfg.logging.wandb_project, to_dict(cfg), enabled=main_proc)
    if resume_dir is not None:
        modules: dict[str, torch.nn.Module] = {} if _is_fsdp(accelerator) else {"model": tok}
        if ema is not None:
            modules["ema"] = ema
        if disc_raw is not None:
            modules["discriminator"] = disc_raw
        state = load_training_state(resume_dir, modules, map_location=device)
        if _is_fsdp(accelerator):
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

            set_model_state_dict(model, state["tensors"]["model"], options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
        objs, meta = state["objects"], state["meta"]
        _load_optim_state(accelerator, model, opt, objs["optimizer"])
        if disc_opt is not None:
            _load_optim_state(accelerator, disc, disc_opt, objs["disc_optimizer"])
        if accelerator.scaler is not None and "scaler" in objs:
            accelerator.scaler.load_state_dict(objs["scaler"])
        rngs = objs["rng"]
        if len(rngs) != world:
            log.warning("checkpoint has RNG states for %d process(es), this run has %d: reseeding", len(rngs), world)
            seed_everything(cfg.seed + 1000 * meta["step"] + rank)
        else:
            set_rng_state(rngs[rank])
        start_step, stream_state, skipped = int(meta["step"]), objs["data"], int(meta.get("skipped_files", 0))
        usage.hist = objs["code_hist"].clone()
        with torch.no_grad():
            for k, v in loss_fn.named_buffers(recurse=False):
                v.copy_(objs["loss_buffers"][k])
        window_state = objs["window"]
        if meta.get("config_hash") != config_hash(_resumable_part(cfg)):
            log.warning("the config differs from the one %s was saved with; continuing with the new values", resume_dir)
        writer.truncate_after(start_step)
        log.info("resumed from %s at step %d", resume_dir, start_step)
    else:
        writer.truncate_after(0)  # a fresh start in an old run dir: drop metrics of the old run
        seed_everything(cfg.seed + rank)

    stream = BatchStream(dataset, cfg.optim.batch_size, cfg.data.num_workers, shuffle=True, seed=cfg.seed, rank=rank,
                         world_size=world, drop_last=True, state=stream_state)
    grid_images = _grid_batch(dataset, cfg, device)
    grid_prefixes = prefix_lengths_for(tok.num_tokens) if nested else None

    total = cfg.schedule.total_steps
    end = min(total, cfg.stop_at_step) if cfg.stop_at_step else total
    accum = cfg.optim.grad_accum
    images_per_step = cfg.optim.batch_size * accum * world
    # running sums over a log window (saved in checkpoints so resumed logs match)
    win: dict[str, float] = dict(window_state or {})
    last_ckpt = latest_training_state(ckpt_root)
    last_grid: Path | None = None

    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=start_step, disable=not (main_proc and cfg.logging.progress), unit="step", dynamic_ncols=True)
    t_window, n_window_steps = time.perf_counter(), 0

    def next_batch() -> torch.Tensor:
        nonlocal skipped
        for _ in range(stream.batches_per_epoch + 1):
            batch = next(stream)
            for path, msg in batch["errors"]:
                skipped += 1
                log.warning("skipped unreadable image %s (%s)", path, msg)
            if batch["image"] is not None:
                return batch["image"].to(device, non_blocking=True)
        raise ValueError(f"no readable image in a whole epoch of {cfg.data.train}; see {run_dir / 'train.log'}")

    def checkpoint(step: int) -> Path:
        modules: dict[str, Any] = {"model": _model_weights(accelerator, model, tok)}
        if ema is not None:
            modules["ema"] = ema
        if disc_raw is not None:
            modules["discriminator"] = _model_weights(accelerator, disc, disc_raw)
        objects: dict[str, Any] = {
            "optimizer": _optim_state(accelerator, model, opt),
            "data": stream.state_dict(),
            "code_hist": usage.hist.clone(),
            "window": {k: float(v) for k, v in win.items()},
            "loss_buffers": {k: v.detach().clone() for k, v in loss_fn.named_buffers(recurse=False)},
        }
        if disc_opt is not None:
            objects["disc_optimizer"] = _optim_state(accelerator, disc, disc_opt)
        if accelerator.scaler is not None:
            objects["scaler"] = accelerator.scaler.state_dict()
        from accelerate.utils import gather_object

        objects["rng"] = gather_object([rng_state()]) if world > 1 else [rng_state()]
        path = ckpt_root / f"step_{step:08d}"
        if main_proc:
            meta = {"config_hash": config_hash(_resumable_part(cfg)), "skipped_files": skipped, "world_size": world}
            path = save_training_state(ckpt_root, step, modules, objects, meta, keep_last=cfg.checkpoint.keep_last)
        accelerator.wait_for_everyone()
        return path

    bad = torch.zeros((), dtype=torch.bool, device=device)
    first_bad = torch.full((), -1, dtype=torch.long, device=device)
    last_terms: dict[str, Any] = {}

    def check_finite() -> None:
        if float(accelerator.reduce(bad.float(), reduction="sum")) == 0:
            return
        bar.close()
        writer.close()
        where = f"the last good checkpoint is {last_ckpt}" if last_ckpt else "no checkpoint was written yet"
        terms = ", ".join(f"{k}={float(v):.4g}" for k, v in last_terms.items() if k.startswith("loss/"))
        raise NonFiniteLossError(
            f"non-finite loss at step {int(first_bad)} (last step: {terms}); stopped without saving, {where}. "
            "Lower optim.lr, raise schedule.warmup_steps or use precision=no to find the cause."
        )

    step = start_step
    while step < end:
        lr = lr_at(step, cfg.optim.lr, total, cfg.schedule.warmup_steps, cfg.schedule.kind, cfg.schedule.min_lr_ratio)
        set_lr(opt, lr)
        model.train()
        pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
        step_terms: dict[str, Any] = {}
        for i in range(accum):
            x = next_batch()
            # D is only a loss here (its gradients are not wanted): never sync it in this phase
            with ExitStack() as stack:
                if i < accum - 1:
                    stack.enter_context(accelerator.no_sync(model))
                if disc is not None:
                    stack.enter_context(accelerator.no_sync(disc))
                stack.enter_context(accelerator.autocast())
                out = model(x)
                g = loss_fn.generator_loss(x, out, step, last_layer=tok.last_layer_weight)
            bad = bad | ~torch.isfinite(g.total.detach())
            accelerator.backward(g.total / accum)
            _add(step_terms, {"loss/total": g.total, **{f"loss/{k}": v for k, v in g.terms.items()},
                              **{f"quantizer/{k}": v for k, v in out.metrics.items()}}, 1.0 / accum)
            usage.update(out.codes)
            if disc is not None:
                pairs.append((x, out.recon.detach()))
        first_bad = torch.where(bad & (first_bad < 0), torch.full_like(first_bad, step), first_bad)
        last_terms = step_terms
        if cfg.optim.clip_grad:
            step_terms["grad_norm"] = accelerator.clip_grad_norm_(model.parameters(), cfg.optim.clip_grad)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if ema is not None and (step + 1) % cfg.ema.every == 0:
            ema.update(tok)

        if disc is not None and step >= cfg.disc_start_step:
            disc_opt.zero_grad(set_to_none=True)
            for i, (x, rec) in enumerate(pairs):
                sync = nullcontext() if i == len(pairs) - 1 else accelerator.no_sync(disc)
                with sync, accelerator.autocast():
                    d = loss_fn.discriminator_loss(x, rec, step)
                accelerator.backward(d.total / accum)
                _add(step_terms, {f"disc/{k}": v for k, v in d.terms.items()}, 1.0 / accum)
            if cfg.optim.clip_grad:
                accelerator.clip_grad_norm_(disc.parameters(), cfg.optim.clip_grad)
            disc_opt.step()
            disc_opt.zero_grad(set_to_none=True)
        elif disc_opt is not None:
            disc_opt.zero_grad(set_to_none=True)  # drop gradients the generator loss left on D

        step += 1
        _add(win, step_terms, 1.0)
        win["_n"] = win.get("_n", 0.0) + 1
        n_window_steps += 1
        bar.update(1)
        do_log = step % cfg.logging.every == 0 or step == end
        do_ckpt = step % cfg.checkpoint.every == 0 or step == end
        if do_log or do_ckpt:  # the only host syncs: non-finite guard before anything is written
            check_finite()

        if do_log:
            n = max(1.0, float(win.pop("_n", 1.0)))
            keys = sorted(win)
            if keys:  # mean over the window and over processes, in one collective
                vec = torch.stack([torch.as_tensor(win[k], dtype=torch.float32, device=device).reshape(()) for k in keys])
                vec = accelerator.reduce(vec, reduction="mean") if world > 1 else vec
                scalars = dict(zip(keys, (vec / n).tolist()))
            else:
                scalars = {}
            win.clear()
            dt = time.perf_counter() - t_window
            ips = images_per_step * n_window_steps / max(dt, 1e-9)
            t_window, n_window_steps = time.perf_counter(), 0
            scalars.update(usage.compute(reset=True))
            scalars.update({"lr": lr, "epoch": float(stream.epoch), "data/skipped_files": float(skipped), "perf/images_per_s": ips})
            writer.write(step, scalars)
            bar.set_postfix(loss=f"{scalars.get('loss/total', float('nan')):.4f}", img_s=f"{ips:.1f}", refresh=False)
            u = scalars.get("codebook/usage")
            if u is not None and u < cfg.logging.collapse_threshold:
                log.warning(
                    "codebook collapse: step %d uses %.1f%% of the codes it could (%d distinct, perplexity %.1f), below logging.collapse_threshold=%.0f%%",
                    step, 100 * u, int(scalars["codebook/used_codes"]), scalars["codebook/perplexity"], 100 * cfg.logging.collapse_threshold,
                )

        if main_proc and cfg.logging.image_every and (step % cfg.logging.image_every == 0 or step == end):
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                grid = reconstruction_grid(ema.module if ema is not None else tok, grid_images, grid_prefixes)
            last_grid = save_grid_png(grid, run_dir / "samples" / f"step_{step:08d}.png")
            writer.add_image("reconstructions", grid, step)

        if do_ckpt:
            last_ckpt = checkpoint(step)

    bar.close()
    writer.close()
    final = run_dir / "final"
    if step >= total:
        if main_proc:
            (ema.module if ema is not None else tok).save_pretrained(final)
        accelerator.wait_for_everyone()
    if main_proc:
        print(f"\nrun directory: {run_dir.resolve()}")
        print(f"  steps:        {step}/{total}" + ("" if step >= total else " (stopped at stop_at_step; resume with the same command)"))
        if step >= total:
            print(f"  checkpoint:   {final.resolve()}   (mmtok.load_tokenizer('{final}'){', EMA weights' if ema is not None else ''})")
        print(f"  resume state: {last_ckpt.resolve() if last_ckpt else '-'}")
        if last_grid is not None:
            print(f"  recon grid:   {last_grid.resolve()}   (top row inputs, below reconstructions)")
        print(f"  metrics:      {(run_dir / 'metrics.jsonl').resolve()}   (TensorBoard: tensorboard --logdir {run_dir / 'tb'})")
        if skipped:
            print(f"  skipped {skipped} unreadable image(s); their paths are in {run_dir / 'train.log'}")
    accelerator.end_training()
    return 0


def _resumable_part(cfg: TrainConfig) -> dict[str, Any]:
    """The config fields that must match for an exact resume (not run_dir/resume/logging)."""
    d = to_dict(cfg)
    for k in ("run_dir", "resume", "stop_at_step", "logging", "checkpoint"):
        d.pop(k, None)
    return d


def _add(acc: dict[str, Any], values: dict[str, Any], scale: float) -> None:
    """acc[k] += values[k] * scale, kept as device tensors (no host sync per step)."""
    for k, v in values.items():
        v = v.detach().float().mean() if isinstance(v, torch.Tensor) else float(v)
        acc[k] = acc.get(k, 0.0) + v * scale


def _grid_batch(dataset: Any, cfg: TrainConfig, device: torch.device) -> torch.Tensor:
    """The first ``logging.num_images`` readable images, center-cropped (fixed across the run)."""
    import copy

    ds = copy.copy(dataset)  # shares the file index; only the transforms differ
    ds.crop, ds.flip = "center", False
    imgs = []
    for i in range(len(ds)):
        item = ds[i]
        if item["image"] is not None:
            imgs.append(item["image"])
        if len(imgs) == cfg.logging.num_images:
            break
    if not imgs:
        raise ValueError(f"no readable image in {cfg.data.train}")
    return torch.stack(imgs).to(device)


if __name__ in ("__main__",):
    sys.exit(main())
