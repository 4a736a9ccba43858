"""The training loop: one plain loop that any modality's config drives.

    from mmtok.training import load_train_config, train
    train(load_train_config("configs/image/titok_t32_fsq_synthetic.yaml", ["optim.lr=2e-4"]))

Micro-batches with gradient accumulation -> generator step (clipping, LR warmup + cosine,
EMA) -> discriminator step (own optimiser, own start step) -> logging, samples, atomic
checkpoints. ``resume=auto`` continues from the newest checkpoint in ``run_dir`` exactly
where it stopped (weights, optimisers, EMA, scaler, RNG states, data position, logging
window, codebook histogram). Run layout::

    run_dir/config.yaml          resolved config
    run_dir/metrics.jsonl        one JSON line per log step (also run_dir/tb for TensorBoard)
    run_dir/samples/             reconstructions (image: PNG grids)
    run_dir/checkpoints/step_*/  resume state (safetensors weights + optimiser/RNG state)
    run_dir/final/               save_pretrained weights (EMA when on): mmtok.load_tokenizer(run_dir/"final")
"""

from __future__ import annotations

from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mmtok.config import ConfigError, save_yaml, to_dict
from mmtok.data import BatchStream
from mmtok.training.config import TrainConfig
from mmtok.training.ema import EMA
from mmtok.training.guard import NonFiniteGuard, NonFiniteLossError  # noqa: F401  (re-exported)
from mmtok.training.logging import MetricWindow, MetricWriter, get_logger
from mmtok.training.rng import seed_everything
from mmtok.training.samples import sample_logger_for
from mmtok.training.schedule import lr_at, set_lr
from mmtok.training.setup import (
    adamw,
    build_accelerator,
    build_loss,
    build_tokenizer,
    idle_cpu_threads,
    is_fsdp,
    open_train_dataset,
)
from mmtok.training.state import latest_resume_dir, restore, save_checkpoint

EXIT_NONFINITE = 3


@dataclass
class Run:
    """Everything the loop's parts share (built by :func:`setup_run`)."""

    cfg: TrainConfig
    accelerator: Any
    tok: Any  # the raw tokenizer (weights saved from it)
    model: Any  # the prepared (DDP / FSDP / compiled) tokenizer
    loss_fn: Any
    disc: Any  # prepared discriminator or None
    disc_raw: Any
    opt: Any
    disc_opt: Any
    ema: EMA | None
    dataset: Any
    writer: MetricWriter
    log: Any
    window: MetricWindow
    stream: BatchStream | None = None
    joint_stream: BatchStream | None = None  # data.joint: batches of another modality
    samples: Any = None
    step: int = 0
    skipped: int = 0
    last_ckpt: Path | None = None
    last_sample: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.run_dir)

    @property
    def sample_model(self) -> Any:
        return self.ema.module if self.ema is not None else self.tok


def setup_run(cfg: TrainConfig) -> Run:
    """Build model, loss, optimisers, data, logging; seeded so every rank (and a resume)
    constructs identical weights before per-rank seeds take over."""
    seed_everything(cfg.seed)
    tok = build_tokenizer(cfg)
    # Nested-dropout models leave the mask token unused when a batch keeps every token.
    accelerator = build_accelerator(cfg, find_unused_parameters=tok.is_nested)
    run_dir = Path(cfg.run_dir)
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_yaml(cfg, run_dir / "config.yaml")
    accelerator.wait_for_everyone()
    log = get_logger(run_dir, accelerator.is_main_process)
    device = accelerator.device
    if device.type == "cpu":
        threads = cfg.cpu_threads or idle_cpu_threads()
        torch.set_num_threads(threads)
        log.info("CPU run: %d torch thread(s)", threads)
    dataset = open_train_dataset(cfg, tok)
    log.info("data: %r", dataset)
    loss_fn = build_loss(cfg, in_channels=_channels(dataset, cfg), context=tok.preprocessing()).to(device)
    disc_raw = loss_fn.discriminator
    ema = EMA(tok, cfg.ema.decay, cfg.ema.warmup, cfg.ema.buffers).to(device) if cfg.ema.enabled else None
    fused = device.type == "cuda" and not is_fsdp(accelerator)
    tok.to(device)  # before the optimiser: fused AdamW needs its parameters on the GPU
    opt = adamw(tok, cfg.optim.lr, cfg.optim.betas, cfg.optim.weight_decay, cfg.optim.eps, fused=fused)
    disc_opt = disc = None
    if disc_raw is not None:
        d = cfg.discriminator
        disc_opt = adamw(disc_raw, d.lr, d.betas, d.weight_decay, fused=fused)
    model, opt = accelerator.prepare(torch.compile(tok) if cfg.compile else tok, opt)
    if disc_raw is not None:
        disc, disc_opt = accelerator.prepare(disc_raw, disc_opt)
        loss_fn.discriminator = disc
    log.info(
        "model %s: %.2fM params, token grid %s x %s codes%s | %d process(es) on %s, precision=%s",
        cfg.model.name, tok.num_parameters() / 1e6, tuple(tok.token_shape), list(tok.codebook_sizes),
        " (nested)" if tok.is_nested else "", accelerator.num_processes, device, cfg.precision,
    )
    writer = MetricWriter(run_dir, cfg.logging.tensorboard, cfg.logging.wandb, cfg.logging.wandb_project,
                          to_dict(cfg), enabled=accelerator.is_main_process)
    return Run(cfg, accelerator, tok, model, loss_fn, disc, disc_raw, opt, disc_opt, ema, dataset, writer, log,
               MetricWindow(tok.codebook_size, tok.num_codebooks))


def _channels(dataset: Any, cfg: TrainConfig) -> int:
    """Channels of the data (axis 0 of an item), for the discriminator's input."""
    first_error = None
    for i in range(min(len(dataset), 64)):
        item = dataset[i]
        if item["x"] is not None:
            return int(item["x"].shape[0])
        first_error = first_error or f"{item['path']}: {item.get('error')}"
    raise ValueError(f"no readable item among the first {min(len(dataset), 64)} of {cfg.data.train} (e.g. {first_error})")


def _check_batch_fits(run: Run) -> None:
    """A clear error naming the config keys when the data cannot fill one batch per rank."""
    n, world, bs = len(run.dataset), run.accelerator.num_processes, run.cfg.optim.batch_size
    if n // world < bs:
        raise ConfigError(
            f"data.train {run.cfg.data.train!r} has {n} item(s) (files, counted before reading them), fewer than "
            f"optim.batch_size={bs} per process on {world} process(es); set optim.batch_size <= {max(1, n // world)} "
            "or add data"
        )


def _sample_batch(run: Run) -> Any:
    """The first ``logging.num_images`` readable items, without random augmentation."""
    cls = sample_logger_for(run.tok.modality)
    ds = open_train_dataset(run.cfg, run.tok, **cls.preprocessing)
    xs = []
    for i in range(len(ds)):
        item = ds[i]
        if item["x"] is not None:
            xs.append(item["x"])
        if len(xs) == run.cfg.logging.num_images:
            break
    if not xs:
        raise ValueError(f"no readable item in {run.cfg.data.train}")
    return cls(run.tok, torch.stack(xs).to(run.device), run.run_dir, run.writer)


def next_batch(run: Run, stream: BatchStream | None = None) -> torch.Tensor:
    """The next batch with at least one readable item (unreadable files are logged and counted)."""
    stream = stream or run.stream
    assert stream is not None
    for _ in range(stream.batches_per_epoch + 1):
        batch = next(stream)
        for path, msg in batch["errors"]:
            run.skipped += 1
            run.log.warning("skipped unreadable file %s (%s)", path, msg)
        if batch["x"] is not None:
            return batch["x"].to(run.device, non_blocking=True)
    raise ValueError(f"no readable item in a whole epoch of {stream.dataset!r}; see {run.run_dir / 'train.log'}")


def is_joint_micro_batch(index: int, ratio: float) -> bool:
    """Whether micro-batch ``index`` (counted over the run) comes from ``data.joint``: a fixed
    schedule that takes ``ratio`` of them, evenly spread (so a resume needs no extra state)."""
    return int((index + 1) * ratio) > int(index * ratio)


def _micro_batch(run: Run, i: int) -> torch.Tensor:
    """Micro-batch ``i`` of this step, from the main data or (on schedule) the joint data."""
    joint = run.cfg.data.joint
    if run.joint_stream is not None and is_joint_micro_batch(run.step * run.cfg.optim.grad_accum + i, joint.ratio):
        return run.tok.from_joint(next_batch(run, run.joint_stream), joint.modality)
    return next_batch(run)


def open_joint_stream(run: Run, state: dict[str, int] | None) -> BatchStream | None:
    """The ``data.joint`` stream (None when unset), opened with what the tokenizer needs."""
    joint, cfg = run.cfg.data.joint, run.cfg
    if joint.train is None:
        return None
    if joint.modality not in run.tok.joint_modalities():
        raise ConfigError(f"data.joint.modality={joint.modality!r}: {cfg.model.name} trains jointly on "
                          f"{list(run.tok.joint_modalities()) or 'no other modality'}")
    from mmtok.data import open_dataset

    prep = {**run.tok.joint_preprocessing(joint.modality), **joint.preprocessing, "seed": cfg.seed}
    ds = open_dataset(joint.train, modality=joint.modality, **prep)
    run.log.info("joint data (%s, %.0f%% of micro-batches): %r", joint.modality, 100 * joint.ratio, ds)
    return BatchStream(ds, joint.batch_size or cfg.optim.batch_size, cfg.data.num_workers, shuffle=True,
                       seed=cfg.seed + 1, rank=run.accelerator.process_index, world_size=run.accelerator.num_processes,
                       drop_last=True, state=state)


def generator_step(run: Run, guard: NonFiniteGuard) -> tuple[dict[str, Any], list[tuple[torch.Tensor, torch.Tensor]]]:
    """Forward/backward over ``grad_accum`` micro-batches, clip, step, EMA; returns the
    step's loss terms and the (input, reconstruction) pairs for the discriminator."""
    cfg, acc, accum = run.cfg, run.accelerator, run.cfg.optim.grad_accum
    run.model.train()
    pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
    terms: dict[str, Any] = {}
    for i in range(accum):
        x = _micro_batch(run, i)
        # D is only a loss here (its gradients are not wanted): never sync it in this phase
        with ExitStack() as stack:
            if i < accum - 1:
                stack.enter_context(acc.no_sync(run.model))
            if run.disc is not None:
                stack.enter_context(acc.no_sync(run.disc))
            stack.enter_context(acc.autocast())
            out = run.model(x)
            g = run.loss_fn.generator_loss(x, out, run.step, last_layer=run.tok.last_layer_weight)
        guard.observe(g.total, run.step)
        acc.backward(g.total / accum)
        _add(terms, {"loss/total": g.total, **{f"loss/{k}": v for k, v in g.terms.items()},
                     **{k if k.startswith("loss/") else f"quantizer/{k}": v for k, v in out.metrics.items()}}, 1.0 / accum)
        run.window.codes.update(out.codes)
        if run.disc is not None:
            pairs.append((x, out.recon.detach()))
    guard.last_terms = terms
    if cfg.optim.clip_grad:
        terms["grad_norm"] = acc.clip_grad_norm_(run.model.parameters(), cfg.optim.clip_grad)
    run.opt.step()
    run.opt.zero_grad(set_to_none=True)
    if run.ema is not None and (run.step + 1) % cfg.ema.every == 0:
        run.ema.update(run.tok)
    return terms, pairs


def discriminator_step(run: Run, pairs: list[tuple[torch.Tensor, torch.Tensor]], terms: dict[str, Any]) -> None:
    """One discriminator update over the step's pairs (from its start step on)."""
    if run.disc_opt is None:
        return
    cfg, acc = run.cfg, run.accelerator
    run.disc_opt.zero_grad(set_to_none=True)  # also drops gradients the generator loss left on D
    if run.step < cfg.disc_start_step:
        return
    for i, (x, rec) in enumerate(pairs):
        sync = nullcontext() if i == len(pairs) - 1 else acc.no_sync(run.disc)
        with sync, acc.autocast():
            d = run.loss_fn.discriminator_loss(x, rec, run.step)
        acc.backward(d.total / cfg.optim.grad_accum)
        _add(terms, {f"disc/{k}": v for k, v in d.terms.items()}, 1.0 / cfg.optim.grad_accum)
    if cfg.optim.clip_grad:
        acc.clip_grad_norm_(run.disc.parameters(), cfg.optim.clip_grad)
    run.disc_opt.step()
    run.disc_opt.zero_grad(set_to_none=True)


def train(cfg: TrainConfig) -> int:
    """Run (or resume) the recipe described by ``cfg``; returns 0 on success."""
    run = setup_run(cfg)
    resume_dir = latest_resume_dir(cfg)
    if resume_dir is not None:
        restore(run, resume_dir)
    else:
        run.writer.truncate_after(0)  # a fresh start in an old run dir: drop metrics of the old run
        seed_everything(cfg.seed + run.accelerator.process_index)
    _check_batch_fits(run)
    run.stream = BatchStream(run.dataset, cfg.optim.batch_size, cfg.data.num_workers, shuffle=True, seed=cfg.seed,
                             rank=run.accelerator.process_index, world_size=run.accelerator.num_processes,
                             drop_last=True, state=run.extra.pop("stream_state", None))
    run.joint_stream = open_joint_stream(run, run.extra.pop("joint_stream_state", None))
    run.samples = _sample_batch(run)
    run.last_ckpt = run.extra.pop("last_ckpt", None)
    total = cfg.schedule.total_steps
    end = min(total, cfg.stop_at_step) if cfg.stop_at_step else total
    images_per_step = cfg.optim.batch_size * cfg.optim.grad_accum * run.accelerator.num_processes
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=run.step, disable=not (run.main and cfg.logging.progress), unit="step", dynamic_ncols=True)
    guard = NonFiniteGuard(run.accelerator, run.device)
    try:
        while run.step < end:
            lr = lr_at(run.step, cfg.optim.lr, total, cfg.schedule.warmup_steps, cfg.schedule.kind, cfg.schedule.min_lr_ratio)
            set_lr(run.opt, lr)
            terms, pairs = generator_step(run, guard)
            discriminator_step(run, pairs, terms)
            run.step += 1
            run.window.add(terms)
            bar.update(1)
            do_log = run.step % cfg.logging.every == 0 or run.step == end
            do_ckpt = run.step % cfg.checkpoint.every == 0 or run.step == end
            if do_log or do_ckpt:  # the only host syncs: non-finite guard before anything is written
                guard.check(run.last_ckpt)
            if do_log:
                scalars = run.window.flush(run.accelerator, images_per_step, extra={"lr": lr, "epoch": float(run.stream.epoch),
                                                                              "data/skipped_files": float(run.skipped)})
                run.writer.write(run.step, scalars)
                bar.set_postfix(loss=f"{scalars.get('loss/total', float('nan')):.4f}", it_s=f"{scalars['perf/items_per_s']:.1f}", refresh=False)
                run.window.warn_collapse(run.log, run.step, scalars, cfg.logging.collapse_threshold)
            if run.main and cfg.logging.image_every and (run.step % cfg.logging.image_every == 0 or run.step == end):
                with torch.random.fork_rng(devices=[run.device] if run.device.type == "cuda" else []):
                    run.last_sample = run.samples.write(run.sample_model, run.step)
            if do_ckpt:
                run.last_ckpt = save_checkpoint(run)
    finally:
        bar.close()
        run.writer.close()
    return finish(run)


def finish(run: Run) -> int:
    """Save ``final/`` when the schedule is complete and print where everything is."""
    total = run.cfg.schedule.total_steps
    final = run.run_dir / "final"
    if run.step >= total:
        if run.main:
            run.sample_model.save_pretrained(final)
        run.accelerator.wait_for_everyone()
    if run.main:
        print(f"\nrun directory: {run.run_dir.resolve()}")
        print(f"  steps:        {run.step}/{total}" + ("" if run.step >= total else " (stopped at stop_at_step; resume with the same command)"))
        if run.step >= total:
            print(f"  checkpoint:   {final.resolve()}   (mmtok.load_tokenizer('{final}'){', EMA weights' if run.ema is not None else ''})")
        print(f"  resume state: {run.last_ckpt.resolve() if run.last_ckpt else '-'}")
        if run.last_sample is not None:
            print(run.samples.describe(run.last_sample))
        print(f"  metrics:      {(run.run_dir / 'metrics.jsonl').resolve()}   (TensorBoard: tensorboard --logdir {run.run_dir / 'tb'})")
        if run.skipped:
            print(f"  skipped {run.skipped} unreadable file(s); their paths are in {run.run_dir / 'train.log'}")
    run.accelerator.end_training()
    return 0


def _add(acc: dict[str, Any], values: dict[str, Any], scale: float) -> None:
    """acc[k] += values[k] * scale, kept as device tensors (no host sync per step)."""
    for k, v in values.items():
        v = v.detach().float().mean() if isinstance(v, torch.Tensor) else float(v)
        acc[k] = acc.get(k, 0.0) + v * scale
