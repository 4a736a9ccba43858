"""Tokenizer training for every modality: config dataclasses, the loop and its parts.

    from mmtok.training import load_train_config, train
    train(load_train_config("configs/image/titok_t32_fsq_synthetic.yaml", ["optim.lr=2e-4"]))

Parts: ``config`` (YAML <-> dataclasses), ``setup`` (accelerator, tokenizer, loss,
optimisers, dataset), ``loop`` (the loop), ``state`` (checkpoint / exact resume),
``guard`` (non-finite loss), ``logging`` (metrics, log window), ``samples`` (per-modality
reconstructions in the run dir), ``ema``, ``schedule``, ``rng``, ``cli`` (``mmtok train``).
"""

from importlib import import_module
from typing import Any

from mmtok.training.config import (
    CheckpointConfig,
    DataConfig,
    DiscriminatorConfig,
    EMAConfig,
    LoggingConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    ScheduleConfig,
    TrainConfig,
    load_train_config,
)
from mmtok.training.ema import EMA
from mmtok.training.rng import rng_state, seed_everything, set_rng_state
from mmtok.training.schedule import lr_at, set_lr

_LAZY = {"train": "mmtok.training.loop", "train_main": "mmtok.training.cli", "NonFiniteLossError": "mmtok.training.guard"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mmtok.training' has no attribute {name!r}")


__all__ = [
    "TrainConfig",
    "ModelConfig",
    "DataConfig",
    "OptimConfig",
    "ScheduleConfig",
    "LossConfig",
    "DiscriminatorConfig",
    "EMAConfig",
    "CheckpointConfig",
    "LoggingConfig",
    "load_train_config",
    "train",
    "train_main",
    "NonFiniteLossError",
    "EMA",
    "lr_at",
    "set_lr",
    "rng_state",
    "set_rng_state",
    "seed_everything",
]
