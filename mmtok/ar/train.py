"""Training the reference AR generator on token shards: ``mmtok train configs/ar/*.yaml``.

A recipe with ``task: ar`` trains :class:`~mmtok.ar.model.ARGenerator` on a
:class:`~mmtok.shards.TokenDataset` (one item per sample, class-conditional when the shards
carry labels) with the parts the tokenizer loop uses: accelerate (DDP / bf16), AdamW without
decay on vectors, warmup + cosine LR, EMA, atomic checkpoints with exact resume (weights,
optimiser, EMA, RNG, data position), ``metrics.jsonl``. Run layout::

    run_dir/config.yaml, metrics.jsonl, checkpoints/step_*/, final/ (model.safetensors + ar_config.json)

``final/ar_config.json`` records the generator config and the shards' tokenizer identity, so
``mmtok generate`` refuses a tokenizer the generator was not trained for.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from mmtok.config import ConfigError, config_hash, load_config, save_yaml, to_dict
from mmtok.training.config import CheckpointConfig, EMAConfig, OptimConfig, ScheduleConfig, coerce_types

AR_CONFIG_NAME = "ar_config.json"


@dataclass
class ARModelConfig:
    size: str = "tiny"  # "tiny" | "s" | "b" (mmtok.ar.model.AR_SIZES)
    overrides: dict[str, Any] = field(default_factory=dict)  # ARConfig fields (dim, depth, class_dropout, ...)


@dataclass
class ARDataConfig:
    shards: str = "tokens"  # shard folder / file / glob written by mmtok encode
    tokenizer: str | None = None  # the tokenizer checkpoint: shards must come from it (identity check)
    conditional: bool = True  # class-conditional on the shards' labels (when they have more than one class)
    num_workers: int = 0


@dataclass
class ARLoggingConfig:
    every: int = 10
    progress: bool = True
    tensorboard: bool = False


@dataclass
class ARTrainConfig:
    task: str = "ar"
    run_dir: str = "runs/ar"
    seed: int = 0
    resume: str = "auto"
    device: str = "auto"
    precision: str = "no"
    distributed: str = "ddp"
    compile: bool = False
    cpu_threads: int | None = None
    stop_at_step: int | None = None
    model: ARModelConfig = field(default_factory=ARModelConfig)
    data: ARDataConfig = field(default_factory=ARDataConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(batch_size=32, lr=3e-4, betas=(0.9, 0.95), weight_decay=0.05))
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    ema: EMAConfig = field(default_factory=lambda: EMAConfig(enabled=False))
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: ARLoggingConfig = field(default_factory=ARLoggingConfig)

    def validate(self) -> "ARTrainConfig":
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(msg)

        need(self.task == "ar", f"task must be 'ar' here, got {self.task!r}")
        need(self.precision in ("no", "bf16", "fp16"), f"precision must be no|bf16|fp16, got {self.precision!r}")
        need(self.device in ("auto", "cpu", "cuda"), f"device must be auto|cpu|cuda, got {self.device!r}")
        need(self.optim.batch_size > 0 and self.optim.lr > 0, "optim.batch_size and optim.lr must be positive")
        need(self.schedule.total_steps > 0, "schedule.total_steps must be positive")
        need(self.checkpoint.every > 0 and self.logging.every > 0, "checkpoint.every and logging.every must be positive")
        return self


def load_ar_config(path: str | Path | None, overrides: list[str] | None = None) -> ARTrainConfig:
    return coerce_types(load_config(ARTrainConfig, path, overrides)).validate()


def open_token_data(cfg: ARTrainConfig, rank: int, world: int) -> Any:
    """The shards as batches of whole items (exact position in ``state_dict``)."""
    from mmtok.shards import TokenDataset
    from mmtok.shards.identity import expected_metadata

    expect = expected_metadata(cfg.data.tokenizer) if cfg.data.tokenizer else None
    ds = TokenDataset(cfg.data.shards, expect=expect, batch_size=cfg.optim.batch_size, shuffle=True, seed=cfg.seed,
                      rank=rank, world_size=world)
    if len(ds) == 0:
        raise ConfigError(f"data.shards {cfg.data.shards!r}: no full batch of {cfg.optim.batch_size} items per process")
    return ds


def generator_from_spec(size: str, vocab_size: int, max_len: int, **kw: Any) -> Any:
    """``AR_SIZES[size](vocab_size, max_len, **kw)`` with a clear error for an unknown size."""
    from mmtok.ar.model import AR_SIZES

    if size not in AR_SIZES:
        raise ConfigError(f"model.size must be one of {sorted(AR_SIZES)}, got {size!r}")
    return AR_SIZES[size](vocab_size, max_len, **kw)


def build_generator(cfg: ARTrainConfig, ds: Any) -> tuple[Any, dict[str, Any]]:
    """The generator sized by ``model.size`` for the shards' vocabulary, item length and classes."""

    length = int(math.prod(ds.meta.token_shape))
    labels = ds.labels
    num_classes = int(labels.max()) + 1 if cfg.data.conditional and len(labels) and int(labels.max()) > 0 else 0
    spec = {"size": cfg.model.size, "vocab_size": int(ds.code_vocab_size), "max_len": length, "num_classes": num_classes,
            **cfg.model.overrides}
    return generator_from_spec(**spec), spec


def _batches(ds: Any):
    while True:
        for batch in ds:
            yield batch


def train_ar(cfg: ARTrainConfig) -> int:
    """Train (or resume) the generator described by ``cfg``; returns 0 on success."""
    from tqdm.auto import tqdm

    from mmtok.checkpoint import latest_training_state, load_training_state, save_training_state
    from mmtok.training.ema import EMA
    from mmtok.training.logging import MetricWriter, get_logger
    from mmtok.training.rng import rng_state, seed_everything, set_rng_state
    from mmtok.training.schedule import lr_at, set_lr
    from mmtok.training.setup import adamw, build_accelerator, idle_cpu_threads

    seed_everything(cfg.seed)
    acc = build_accelerator(cfg)  # type: ignore[arg-type]  (reads device / precision / distributed)
    run_dir = Path(cfg.run_dir)
    if acc.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_yaml(cfg, run_dir / "config.yaml")
    acc.wait_for_everyone()
    log = get_logger(run_dir, acc.is_main_process)
    if acc.device.type == "cpu":
        torch.set_num_threads(cfg.cpu_threads or idle_cpu_threads())
    resume = latest_training_state(run_dir / "checkpoints") if cfg.resume == "auto" else (
        None if cfg.resume in ("never", "none", "no") else Path(cfg.resume))
    ds = open_token_data(cfg, acc.process_index, acc.num_processes)
    model, spec = build_generator(cfg, ds)
    ema = EMA(model, cfg.ema.decay, cfg.ema.warmup, cfg.ema.buffers) if cfg.ema.enabled else None
    model.to(acc.device)
    if ema is not None:
        ema.to(acc.device)
    opt = adamw(model, cfg.optim.lr, cfg.optim.betas, cfg.optim.weight_decay, cfg.optim.eps)
    step = 0
    if resume is not None:  # one read: weights into the modules, the rest as objects
        state = load_training_state(resume, {"model": model, **({"ema": ema} if ema is not None else {})}, map_location=acc.device)
        ds.load_state_dict(state["objects"]["data"])
        opt.load_state_dict(state["objects"]["optimizer"])
        set_rng_state(state["objects"]["rng"][acc.process_index])
        step = int(state["meta"]["step"])
        log.info("resumed from %s at step %d", resume, step)
    else:
        seed_everything(cfg.seed + acc.process_index)
    prepared, opt = acc.prepare(torch.compile(model) if cfg.compile else model, opt)
    writer = MetricWriter(run_dir, cfg.logging.tensorboard, False, enabled=acc.is_main_process)
    writer.truncate_after(step)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("AR generator %s: %.2fM params, vocab %d, %d tokens per item, %d classes | %s",
             cfg.model.size, n_params / 1e6, spec["vocab_size"], spec["max_len"], spec["num_classes"], acc.device)
    total = cfg.schedule.total_steps
    end = min(total, cfg.stop_at_step) if cfg.stop_at_step else total
    batches = _batches(ds)
    bar = tqdm(total=total, initial=step, disable=not (acc.is_main_process and cfg.logging.progress), unit="step")
    loss_sum, count, t0 = 0.0, 0, time.perf_counter()
    try:
        while step < end:
            set_lr(opt, lr_at(step, cfg.optim.lr, total, cfg.schedule.warmup_steps, cfg.schedule.kind, cfg.schedule.min_lr_ratio))
            batch = next(batches)
            ids = batch["input_ids"].to(acc.device)
            labels = batch["label"].to(acc.device).clamp_min(0) if spec["num_classes"] else None
            prepared.train()
            with acc.autocast():
                logits = prepared(ids, labels)  # through the DDP wrapper, so gradients are all-reduced
                loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), ids.reshape(-1))
            if not torch.isfinite(loss):
                raise ValueError(f"non-finite loss at step {step}")
            acc.backward(loss)
            if cfg.optim.clip_grad:
                acc.clip_grad_norm_(prepared.parameters(), cfg.optim.clip_grad)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update(model)
            step += 1
            bar.update(1)
            loss_sum, count = loss_sum + float(loss.detach()), count + 1
            if step % cfg.logging.every == 0 or step == end:
                dt = time.perf_counter() - t0
                tokens = count * ids.numel() * acc.num_processes
                writer.write(step, {"loss/ce": loss_sum / count, "lr": opt.param_groups[0]["lr"],
                                    "perf/tokens_per_s": tokens / max(dt, 1e-9), "epoch": float(ds.epoch)})
                bar.set_postfix(loss=f"{loss_sum / count:.3f}", refresh=False)
                loss_sum, count, t0 = 0.0, 0, time.perf_counter()
            if step % cfg.checkpoint.every == 0 or step == end:
                mods = {"model": model, **({"ema": ema} if ema is not None else {})}
                objs = {"optimizer": opt.state_dict(), "data": ds.state_dict(), "rng": [rng_state()]}
                if acc.is_main_process:
                    save_training_state(run_dir / "checkpoints", step, mods, objs,
                                        {"config_hash": config_hash(to_dict(cfg.model))}, keep_last=cfg.checkpoint.keep_last)
                acc.wait_for_everyone()
    finally:
        bar.close()
        writer.close()
    if step >= total and acc.is_main_process:
        save_generator((ema.module if ema is not None else model), spec, ds.meta.to_dict(), run_dir / "final")
        print(f"\nrun directory: {run_dir.resolve()}\n  generator:    {(run_dir / 'final').resolve()}"
              f"   (mmtok generate {run_dir / 'final'} --tokenizer TOKENIZER --num 16)")
    acc.end_training()
    return 0


def save_generator(model: torch.nn.Module, spec: dict[str, Any], shards_meta: dict[str, Any], out: str | Path) -> Path:
    """``out/model.safetensors`` + ``out/ar_config.json`` (generator spec + the shards' metadata)."""
    from safetensors.torch import save_model

    from mmtok.io import atomic_directory

    out = Path(out)
    with atomic_directory(out) as d:
        save_model(model, str(d / "model.safetensors"))
        (d / AR_CONFIG_NAME).write_text(json.dumps({"generator": spec, "shards": shards_meta}, indent=2) + "\n")
    return out


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> tuple[Any, dict[str, Any]]:
    """(generator in eval mode, ar_config) from a ``save_generator`` directory."""
    from safetensors.torch import load_model

    d = Path(path)
    if not (d / AR_CONFIG_NAME).is_file():
        raise FileNotFoundError(f"{d} is not an AR generator checkpoint (no {AR_CONFIG_NAME}); train one with "
                                "mmtok train configs/ar/...")
    meta = json.loads((d / AR_CONFIG_NAME).read_text())
    model = generator_from_spec(**meta["generator"])
    try:
        missing, unexpected = load_model(model, str(d / "model.safetensors"), strict=False)
    except Exception as e:
        raise ValueError(f"cannot read {d / 'model.safetensors'}: {e}") from e
    if missing or unexpected:
        raise ValueError(f"{d} weights do not fit the generator config: missing={missing} unexpected={unexpected}")
    return model.to(device).eval(), meta
