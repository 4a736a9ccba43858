"""Resume state of a run: what a checkpoint holds and how a run is put back exactly.

A checkpoint (``run_dir/checkpoints/step_*``, written atomically by
``mmtok.checkpoint.save_training_state``) holds the model, EMA and discriminator weights
(safetensors), and as plain tensors / containers: optimiser states, GradScaler, the RNG
state of every process, the data position, the log window (loss sums + codebook
histogram) and the loss's running buffers (LeCAM EMAs). Quantizer buffers (dead-code
tracker) are part of the model weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmtok.checkpoint import latest_training_state, load_training_state, save_training_state
from mmtok.config import config_hash, to_dict
from mmtok.training.config import TrainConfig
from mmtok.training.rng import rng_state, seed_everything, set_rng_state
from mmtok.training.setup import is_fsdp, load_model_state, load_optim_state, model_weights, optim_state

if TYPE_CHECKING:
    from mmtok.training.loop import Run


def resumable_part(cfg: TrainConfig) -> dict[str, Any]:
    """The config fields that must match for an exact resume (not run_dir/resume/logging)."""
    d = to_dict(cfg)
    for k in ("run_dir", "resume", "stop_at_step", "logging", "checkpoint"):
        d.pop(k, None)
    return d


def latest_resume_dir(cfg: TrainConfig) -> Path | None:
    """The checkpoint ``cfg.resume`` asks for: the newest in run_dir (``auto``), none, or a path."""
    if cfg.resume == "auto":
        return latest_training_state(Path(cfg.run_dir) / "checkpoints")
    if cfg.resume in ("never", "none", "no"):
        return None
    d = Path(cfg.resume)
    if not d.is_dir():
        raise FileNotFoundError(f"resume: checkpoint directory not found: {d}")
    return d


def _weight_modules(run: "Run", for_save: bool) -> dict[str, Any]:
    acc = run.accelerator
    mods: dict[str, Any] = {}
    if for_save:
        mods["model"] = model_weights(acc, run.model, run.tok)
    elif not is_fsdp(acc):
        mods["model"] = run.tok
    if run.ema is not None:
        mods["ema"] = run.ema
    if run.disc_raw is not None:
        mods["discriminator"] = model_weights(acc, run.disc, run.disc_raw) if for_save else run.disc_raw
    return mods


def save_checkpoint(run: "Run") -> Path:
    """Write ``checkpoints/step_<step>`` (rank 0 writes; every rank takes part in gathers)."""
    acc, cfg = run.accelerator, run.cfg
    objects: dict[str, Any] = {
        "optimizer": optim_state(acc, run.model, run.opt),
        "data": run.stream.state_dict() if run.stream is not None else {},
        "joint_data": run.joint_stream.state_dict() if run.joint_stream is not None else {},
        "window": run.window.state_dict(),
        "loss_buffers": run.loss_fn.state_buffers(),
    }
    if run.disc_opt is not None:
        objects["disc_optimizer"] = optim_state(acc, run.disc, run.disc_opt)
    if acc.scaler is not None:
        objects["scaler"] = acc.scaler.state_dict()
    from accelerate.utils import gather_object

    objects["rng"] = gather_object([rng_state()]) if acc.num_processes > 1 else [rng_state()]
    root = run.run_dir / "checkpoints"
    path = root / f"step_{run.step:08d}"
    modules = _weight_modules(run, for_save=True)
    if run.main:
        meta = {"config_hash": config_hash(resumable_part(cfg)), "skipped_files": run.skipped, "world_size": acc.num_processes}
        path = save_training_state(root, run.step, modules, objects, meta, keep_last=cfg.checkpoint.keep_last)
    acc.wait_for_everyone()
    return path


def restore(run: "Run", resume_dir: Path) -> None:
    """Load ``resume_dir`` into ``run`` (weights, optimisers, scaler, RNG, window, position)."""
    acc, cfg = run.accelerator, run.cfg
    state = load_training_state(resume_dir, _weight_modules(run, for_save=False), map_location=run.device)
    if is_fsdp(acc):
        load_model_state(acc, run.model, state["tensors"]["model"])
    objs, meta = state["objects"], state["meta"]
    load_optim_state(acc, run.model, run.opt, objs["optimizer"])
    if run.disc_opt is not None:
        load_optim_state(acc, run.disc, run.disc_opt, objs["disc_optimizer"])
    if acc.scaler is not None and "scaler" in objs:
        acc.scaler.load_state_dict(objs["scaler"])
    rngs, rank = objs["rng"], acc.process_index
    if len(rngs) != acc.num_processes:
        run.log.warning("checkpoint has RNG states for %d process(es), this run has %d: reseeding", len(rngs), acc.num_processes)
        seed_everything(cfg.seed + 1000 * meta["step"] + rank)
    else:
        set_rng_state(rngs[rank])
    run.step, run.skipped = int(meta["step"]), int(meta.get("skipped_files", 0))
    run.extra["stream_state"] = objs["data"]
    run.extra["joint_stream_state"] = objs.get("joint_data") or None
    run.extra["last_ckpt"] = resume_dir
    run.window.load_state_dict(objs["window"])
    run.loss_fn.load_state_buffers(objs["loss_buffers"])
    if meta.get("config_hash") != config_hash(resumable_part(cfg)):
        run.log.warning("the config differs from the one %s was saved with; continuing with the new values", resume_dir)
    run.writer.truncate_after(run.step)
    run.log.info("resumed from %s at step %d", resume_dir, run.step)
