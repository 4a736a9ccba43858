"""Training recipe configuration: one dataclass per concern, mapped from YAML.

    cfg = load_train_config("configs/image/titok_t32_fsq_synthetic.yaml", ["optim.lr=2e-4"])

Unknown keys anywhere are an error (``mmtok.config.ConfigError``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmtok.config import ConfigError, load_config


@dataclass
class ModelConfig:
    name: str = "titok_t32_fsq"  # registered tokenizer variant (mmtok.list_tokenizers())
    overrides: dict[str, Any] = field(default_factory=dict)  # config fields passed to create_tokenizer
    init_from: str | None = None  # a save_pretrained directory to fine-tune from
    # with init_from: load only the weights under these module prefixes (two-stage training, e.g.
    # [encoder, quantizer, nested] from a trained tokenizer into a flow-decoder variant); [] = all, strictly
    init_modules: list[str] = field(default_factory=list)
    # a saved 2D VQGAN directory whose weights initialise this causal 3D video model by inflation
    # (mmtok.video.inflate.inflate_into: each latent frame starts as the image model's key frame)
    inflate_from: str | None = None


@dataclass
class JointDataConfig:
    """A second dataset of another modality trained on the same weights (video tokenizers:
    ``modality: image``), interleaved at a fixed ``ratio`` of the micro-batches; unused when
    ``train`` is null. Its items are converted by ``tok.from_joint`` (images -> 1-frame clips).
    ``preprocessing`` adds to what the tokenizer needs (``tok.joint_preprocessing``)."""

    train: str | None = None
    modality: str = "image"
    ratio: float = 0.25  # fraction of micro-batches drawn from this dataset (a fixed, resumable schedule)
    batch_size: int | None = None  # per device; null = optim.batch_size
    preprocessing: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    """The training set: a spec for ``mmtok.data.open_dataset`` in the tokenizer's modality.

    ``preprocessing`` is passed to the modality's opener on top of what the tokenizer needs
    (``tok.preprocessing()``, e.g. an image tokenizer's resolution); a value that contradicts
    the tokenizer is an error. Images: ``resolution``, ``crop`` ("center" | "random"), ``flip``;
    audio: ``segment`` ("random" segments for training | "start"), ``resample``, ``min_rms``.
    Unset options take the opener's defaults (images: center crop, no flip; audio: random segments).
    """

    train: str = "synthetic:4096"
    preprocessing: dict[str, Any] = field(default_factory=dict)
    num_workers: int = 0
    joint: JointDataConfig = field(default_factory=JointDataConfig)


@dataclass
class OptimConfig:
    batch_size: int = 16  # per device, per micro-batch
    grad_accum: int = 1
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 1e-4
    eps: float = 1e-8
    clip_grad: float | None = 1.0  # max global grad norm; null disables


@dataclass
class ScheduleConfig:
    total_steps: int = 1000  # optimiser steps
    warmup_steps: int = 100
    kind: str = "cosine"  # "cosine" | "constant"
    min_lr_ratio: float = 0.1  # final lr = lr * min_lr_ratio (cosine)


@dataclass
class LossConfig:
    """Weights passed to ``mmtok.losses.TokenizerLoss`` (each logged under ``loss/<name>``)."""

    l1_weight: float = 1.0
    l2_weight: float = 0.0
    perceptual_weight: float = 1.0
    perceptual: str | None = "auto"  # "auto" (local LPIPS trunk or a clear error naming the file), a path, "random" (tests only), or null
    gan_weight: float = 0.0
    gan_start_step: int = 0
    adaptive_gan_weight: bool = True
    gan_loss: str = "hinge"  # "hinge" | "lsgan"
    feature_matching_weight: float = 0.0  # L1 between D's hidden features of recon and x (audio discriminators)
    lecam_weight: float = 0.0
    quantizer_weight: float = 1.0
    # more registered terms (mmtok.losses.loss_term_names()): name -> {weight: w, **options}, logged
    # as loss/<name>; facts of the tokenizer's data (e.g. sample_rate) fill the options they name.
    # Audio: {mel: {weight: 15.0}, stft: {weight: 1.0}}
    terms: dict[str, Any] = field(default_factory=dict)


@dataclass
class DiscriminatorConfig:
    """Discriminator (by registered name, ``mmtok.losses.build_discriminator``) and its own
    AdamW; used when loss.gan_weight > 0. ``options`` are the discriminator's keyword
    arguments (PatchGAN: base_channels, num_layers, norm); ``in_channels`` comes from the data."""

    type: str = "patchgan"
    options: dict[str, Any] = field(default_factory=dict)
    lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.9)
    weight_decay: float = 1e-4
    start_step: int | None = None  # first step the discriminator trains; null = loss.gan_start_step


@dataclass
class EMAConfig:
    enabled: bool = True
    decay: float = 0.999
    warmup: bool = True  # decay ramps as min(decay, (1 + n) / (10 + n))
    every: int = 1  # update every N optimiser steps
    buffers: str = "copy"  # "copy": buffers (EMA codebooks, norm stats) from the live model; "average"


@dataclass
class CheckpointConfig:
    every: int = 500  # steps between checkpoints (a final one is always written)
    keep_last: int = 3


@dataclass
class LoggingConfig:
    every: int = 10  # steps between metric lines (JSONL / TensorBoard / progress bar)
    image_every: int = 500  # steps between reconstruction grids (and at the end); 0 disables
    num_images: int = 8  # images per grid row
    tensorboard: bool = True
    wandb: bool = False
    wandb_project: str = "mmtok"
    progress: bool = True
    collapse_threshold: float = 0.05  # warn when codebook usage over a log window is below this


@dataclass
class TrainConfig:
    run_dir: str = "runs/titok_t32_fsq_synthetic"
    seed: int = 0
    resume: str = "auto"  # "auto" (latest checkpoint in run_dir if any), "never", or a checkpoint dir
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    precision: str = "no"  # "no" | "bf16" | "fp16"
    distributed: str = "ddp"  # "ddp" | "fsdp2" (multi-process runs under accelerate launch)
    compile: bool = False  # torch.compile the tokenizer
    cpu_threads: int | None = None  # CPU runs: torch threads; null = idle cores (cores - 1-min load average, >= 1)
    stop_at_step: int | None = None  # leave early at this step (checkpointed), e.g. for a time-boxed job
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def validate(self) -> "TrainConfig":
        """Raise ``ConfigError`` on values that cannot work (checked before any work starts)."""
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(msg)

        need(self.precision in ("no", "bf16", "fp16"), f"precision must be no|bf16|fp16, got {self.precision!r}")
        need(self.distributed in ("ddp", "fsdp2"), f"distributed must be ddp|fsdp2, got {self.distributed!r}")
        need(self.device in ("auto", "cpu", "cuda"), f"device must be auto|cpu|cuda, got {self.device!r}")
        need(bool(self.resume), "resume must be 'auto', 'never' or a checkpoint directory")
        need(bool(str(self.data.train).strip()), "data.train must name a dataset (e.g. synthetic:4096 or a folder)")
        need(self.data.num_workers >= 0, "data.num_workers must be >= 0")
        need(not (self.model.init_from and self.model.inflate_from),
             "model.init_from and model.inflate_from both set: fine-tune a saved video model or inflate a 2D one, not both")
        j = self.data.joint
        need(j.train is None or (0.0 < j.ratio < 1.0), f"data.joint.ratio must be in (0, 1), got {j.ratio}")
        need(j.batch_size is None or j.batch_size > 0, "data.joint.batch_size must be positive (or null)")
        need(self.optim.batch_size > 0 and self.optim.grad_accum > 0, "optim.batch_size and optim.grad_accum must be positive")
        need(self.optim.lr > 0, "optim.lr must be positive")
        need(self.schedule.total_steps > 0, "schedule.total_steps must be positive")
        need(self.schedule.warmup_steps >= 0, "schedule.warmup_steps must be >= 0")
        need(self.schedule.kind in ("cosine", "constant"), f"schedule.kind must be cosine|constant, got {self.schedule.kind!r}")
        need(0.0 <= self.ema.decay < 1.0, "ema.decay must be in [0, 1)")
        need(self.ema.every > 0, "ema.every must be positive")
        need(self.ema.buffers in ("copy", "average"), f"ema.buffers must be \"copy\" or \"average\", got {self.ema.buffers!r}")
        need(self.checkpoint.every > 0 and self.checkpoint.keep_last > 0, "checkpoint.every and checkpoint.keep_last must be positive")
        need(self.logging.every > 0 and self.logging.image_every >= 0, "logging.every must be positive, logging.image_every >= 0")
        need(self.stop_at_step is None or self.stop_at_step > 0, "stop_at_step must be positive")
        need(self.cpu_threads is None or self.cpu_threads > 0, "cpu_threads must be positive (or null for automatic)")
        for k in ("l1_weight", "l2_weight", "perceptual_weight", "gan_weight", "lecam_weight", "quantizer_weight",
                  "feature_matching_weight"):
            need(getattr(self.loss, k) >= 0, f"loss.{k} must be >= 0")
        need(self.loss.gan_loss in ("hinge", "lsgan"), f"loss.gan_loss must be hinge|lsgan, got {self.loss.gan_loss!r}")
        for name, spec in self.loss.terms.items():
            need(isinstance(spec, dict) and isinstance(spec.get("weight"), (int, float)) and spec["weight"] >= 0,
                 f"loss.terms.{name} must be a mapping with a weight >= 0 (and the term's options), got {spec!r}")
        return self

    @property
    def disc_start_step(self) -> int:
        s = self.discriminator.start_step
        return self.loss.gan_start_step if s is None else s


def _coerce_value(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce_value(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return coerce_types(value, key)
    bad = ConfigError(f"{key} must be {getattr(tp, '__name__', tp)}, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if tp is str:
        if isinstance(value, (str, Path)):
            return str(value)
        raise bad
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or (args and args[-1] is not Ellipsis and len(value) != len(args)):
            raise ConfigError(f"{key} must be a list of {len(args)} values, got {value!r}")
        inner = [args[0]] * len(value) if args and args[-1] is Ellipsis else list(args)
        return tuple(_coerce_value(v, t, f"{key}[{i}]") for i, (v, t) in enumerate(zip(value, inner)))
    if origin is dict or tp is dict:
        if isinstance(value, dict):
            return value
        raise ConfigError(f"{key} must be a mapping, got {value!r}")
    return value


def coerce_types(cfg: Any, prefix: str = "") -> Any:
    """Check (and where lossless, convert) every field against its annotation, in place.

    ``1e-4`` written in YAML (a string for YAML 1.1) becomes a float; ``lr: fast`` is an error
    naming ``optim.lr``.
    """
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        key = f"{prefix}.{f.name}" if prefix else f.name
        setattr(cfg, f.name, _coerce_value(getattr(cfg, f.name), hints.get(f.name, Any), key))
    return cfg


def load_train_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """YAML recipe + dotted ``key=value`` overrides -> type-checked, validated ``TrainConfig``."""
    return coerce_types(load_config(TrainConfig, path, overrides)).validate()
