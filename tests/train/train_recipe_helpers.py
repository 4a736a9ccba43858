"""Tiny overrides for the training-recipe tests (32x32, a few thousand parameters)."""

from __future__ import annotations

from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "mmtok" / "configs").rglob("*.yaml"))

# Shrinks a registered model to a few thousand parameters at 32x32 (family by name prefix).
TINY_MODEL = {
    ("titok_", "flextok_"): [
        "model.overrides.image_size=32", "model.overrides.patch_size=8", "model.overrides.num_tokens=8",
        "model.overrides.encoder_width=32", "model.overrides.encoder_depth=1", "model.overrides.encoder_heads=2",
        "model.overrides.decoder_width=32", "model.overrides.decoder_depth=1", "model.overrides.decoder_heads=2",
    ],
    ("vqgan_",): [
        "model.overrides.image_size=32", "model.overrides.base_channels=8", "model.overrides.channel_mult=[1,2]",
        "model.overrides.num_res_blocks=1", "model.overrides.z_channels=8", "model.overrides.mid_attention=false",
    ],
}


def tiny_model_overrides(model_name: str) -> list[str]:
    for prefixes, ov in TINY_MODEL.items():
        if model_name.startswith(prefixes):
            return list(ov)
    raise KeyError(f"no tiny overrides for {model_name}; add them to tests/train/conftest.py")


def tiny_run_overrides(run_dir: Path, steps: int = 2) -> list[str]:
    return [
        f"run_dir={run_dir}", "device=cpu", "compile=false", "data.train=synthetic:32", "data.preprocessing.resolution=32",
        "data.num_workers=0", "optim.batch_size=2", f"schedule.total_steps={steps}", "schedule.warmup_steps=1",
        "checkpoint.every=1", "checkpoint.keep_last=2", "logging.every=1", f"logging.image_every={steps}",
        "logging.num_images=2", "logging.progress=false", "logging.tensorboard=false", "cpu_threads=1",
    ]
