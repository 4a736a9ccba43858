"""Building blocks of the training recipes (``train/*.py``): config dataclasses, EMA,
LR schedule, RNG state, logging and reconstruction grids. The loop itself lives in the
recipe; checkpoint state helpers are in ``mmtok.checkpoint``."""

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
    "EMA",
    "lr_at",
    "set_lr",
    "rng_state",
    "set_rng_state",
    "seed_everything",
]
