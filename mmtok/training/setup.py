"""Builders the training loop composes: accelerator, tokenizer, loss, optimisers, dataset.

Each takes the parts of ``TrainConfig`` it needs; nothing here knows a modality: the
tokenizer says what its data must look like (``tok.preprocessing()``) and which modality
opens it (``tok.modality``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from mmtok.config import ConfigError
from mmtok.distributed import launched_world_size
from mmtok.training.config import TrainConfig


def build_accelerator(cfg: TrainConfig, find_unused_parameters: bool = False) -> Any:
    """An ``accelerate.Accelerator`` for ``cfg.device`` / ``precision`` / ``distributed``."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is visible")
    use_cpu = cfg.device == "cpu" or not torch.cuda.is_available()
    if use_cpu and cfg.precision == "fp16":
        raise ConfigError("precision=fp16 needs a GPU; use precision=no or bf16 on CPU")
    kwargs: dict[str, Any] = {}
    if cfg.distributed == "fsdp2" and launched_world_size() > 1:
        from accelerate import FullyShardedDataParallelPlugin

        kwargs["fsdp_plugin"] = FullyShardedDataParallelPlugin(fsdp_version=2, reshard_after_forward=True)
    if launched_world_size() == 1:
        # A single-process run may follow another one in the same interpreter (tests, the
        # demo): accelerate's process-wide state must not carry the previous precision over.
        from accelerate.state import AcceleratorState, GradientState

        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    ddp = DistributedDataParallelKwargs(find_unused_parameters=find_unused_parameters)
    return Accelerator(mixed_precision=cfg.precision, cpu=use_cpu, kwargs_handlers=[ddp], **kwargs)


def build_tokenizer(cfg: TrainConfig) -> Any:
    """The registered model with ``model.overrides``, optionally initialised from a saved one."""
    import mmtok

    tok = mmtok.create_tokenizer(cfg.model.name, **cfg.model.overrides)
    if cfg.model.inflate_from:
        from mmtok.video.causal3d import Causal3dTokenizer
        from mmtok.video.inflate import inflate_into

        if not isinstance(tok, Causal3dTokenizer):
            raise ConfigError(f"model.inflate_from needs a causal 3D video model, {cfg.model.name} is {type(tok).__name__}")
        try:
            inflate_into(tok, cfg.model.inflate_from)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"model.inflate_from {cfg.model.inflate_from}: {e}") from e
        return tok
    if cfg.model.init_from:
        from safetensors.torch import load_model

        weights = Path(cfg.model.init_from) / "model.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(f"model.init_from: {weights} not found")
        if cfg.model.init_modules:
            _load_modules(tok, weights, list(cfg.model.init_modules), cfg.model.name)
            return tok
        missing, unexpected = load_model(tok, str(weights), strict=False)
        if missing or unexpected:
            raise ConfigError(f"model.init_from weights do not fit {cfg.model.name}: missing={missing} unexpected={unexpected}")
    return tok


def _load_modules(tok: Any, weights: Path, prefixes: list[str], name: str) -> None:
    """Copy the tensors under ``prefixes`` from a save_pretrained file into ``tok`` (strict on those)."""
    from safetensors.torch import load_file

    state = load_file(str(weights), device="cpu")
    own = tok.state_dict()
    pick = lambda keys: {k for k in keys if any(k == p or k.startswith(p + ".") for p in prefixes)}  # noqa: E731
    want, have = pick(own), pick(state)
    if not want:
        raise ConfigError(f"model.init_modules {prefixes}: {name} has no weights under these prefixes")
    if want != have:
        raise ConfigError(f"model.init_modules {prefixes}: {weights} does not fit {name}: missing="
                          f"{sorted(want - have)[:8]} unexpected={sorted(have - want)[:8]}")
    bad = [k for k in want if own[k].shape != state[k].shape]
    if bad:
        raise ConfigError(f"model.init_modules: shapes differ for {bad[:8]} between {weights} and {name}")
    tok.load_state_dict({k: state[k] for k in want}, strict=False)


def data_preprocessing(cfg: TrainConfig, tok: Any) -> dict[str, Any]:
    """What the tokenizer needs plus ``data.preprocessing``; a contradiction is a ``ConfigError``."""
    need = dict(tok.preprocessing())
    given = dict(cfg.data.preprocessing)
    for k, v in given.items():
        if k in need and need[k] != v:
            raise ConfigError(
                f"data.preprocessing.{k}={v!r} but {cfg.model.name} expects {k}={need[k]!r}; "
                f"set data.preprocessing.{k}={need[k]!r} or change the model (model.overrides)"
            )
    return {**need, **given, "seed": cfg.seed}


def open_train_dataset(cfg: TrainConfig, tok: Any, **override: Any) -> Any:
    """``cfg.data.train`` opened in the tokenizer's modality with its preprocessing."""
    from mmtok.data import open_dataset

    return open_dataset(cfg.data.train, modality=tok.modality, **{**data_preprocessing(cfg, tok), **override})


def build_loss(cfg: TrainConfig, in_channels: int, context: dict[str, Any] | None = None) -> Any:
    """``TokenizerLoss`` from ``cfg.loss`` (named weights and extra terms) and ``cfg.discriminator``.

    ``context``: facts of the data (``tok.preprocessing()``) for the terms that take them."""
    from mmtok.losses import TokenizerLoss, build_discriminator, loss_term_names

    w = cfg.loss
    unknown = sorted(set(w.terms) - set(loss_term_names()))
    if unknown:
        raise ConfigError(f"loss.terms: unknown term(s) {unknown}; registered: {loss_term_names()}")
    disc = None
    if w.gan_weight > 0:
        disc = build_discriminator(cfg.discriminator.type, in_channels=in_channels, **cfg.discriminator.options)
    extra = {name: (float(spec["weight"]), {k: v for k, v in spec.items() if k != "weight"}) for name, spec in w.terms.items()}
    return TokenizerLoss.from_weights(
        l1_weight=w.l1_weight, l2_weight=w.l2_weight, perceptual_weight=w.perceptual_weight, perceptual=w.perceptual,
        gan_weight=w.gan_weight, gan_start_step=w.gan_start_step, adaptive_gan_weight=w.adaptive_gan_weight,
        lecam_weight=w.lecam_weight, quantizer_weight=w.quantizer_weight, discriminator=disc,
        extra_terms=extra, gan_loss=w.gan_loss, feature_matching_weight=w.feature_matching_weight, term_context=context,
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


# --- FSDP-aware state ------------------------------------------------------------------------


def is_fsdp(accelerator: Any) -> bool:
    return str(accelerator.distributed_type).endswith("FSDP")


def model_weights(accelerator: Any, prepared: torch.nn.Module, raw: torch.nn.Module) -> Any:
    """What to save as weights: the module itself, or (FSDP) the gathered full state dict."""
    return accelerator.get_state_dict(prepared) if is_fsdp(accelerator) else raw


def optim_state(accelerator: Any, model: torch.nn.Module, opt: Any) -> dict[str, Any]:
    if is_fsdp(accelerator):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(model, opt.optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return opt.state_dict()


def load_optim_state(accelerator: Any, model: torch.nn.Module, opt: Any, state: dict[str, Any]) -> None:
    if is_fsdp(accelerator):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(model, opt.optimizer, state, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    else:
        opt.load_state_dict(state)


def load_model_state(accelerator: Any, model: torch.nn.Module, state: dict[str, Any]) -> None:
    """(FSDP) load a full state dict saved by :func:`model_weights` into the sharded model."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
