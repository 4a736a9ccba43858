"""Tiny overrides for the training-recipe tests (32x32 images / 0.1 s audio, a few thousand parameters)."""

from __future__ import annotations

from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]
# tokenizer recipes (configs/ar/* train generators on token shards: tests/ar/test_ar_recipe.py)
CONFIGS = sorted(p for p in (ROOT / "mmtok" / "configs").rglob("*.yaml") if p.parent.name != "ar")

# Shrinks a registered model to a few thousand parameters at 32x32 (family by name prefix).
TINY_MODEL = {
    ("titok_", "flextok_"): [
        "model.overrides.image_size=32", "model.overrides.patch_size=8", "model.overrides.num_tokens=8",
        "model.overrides.encoder_width=32", "model.overrides.encoder_depth=1", "model.overrides.encoder_heads=2",
        "model.overrides.decoder_width=32", "model.overrides.decoder_depth=1", "model.overrides.decoder_heads=2",
    ],
    ("rvq_codec_", "istft_codec_"): [
        "model.overrides.sample_rate=16000", "model.overrides.segment_length=1600", "model.overrides.strides=[2,4]",
        "model.overrides.latent_dim=8",
    ],
    ("causal3d_",): [
        "model.overrides.image_size=16", "model.overrides.num_frames=5", "model.overrides.base_channels=4",
        "model.overrides.channel_mult=[1,2]", "model.overrides.num_res_blocks=1", "model.overrides.z_channels=4",
        "model.overrides.spatial_factor=2", "model.overrides.temporal_factor=2", "model.overrides.mid_attention=false",
        "model.overrides.quantizer={type: fsq, levels: [5, 5, 5, 5]}",
    ],
    ("vqgan_",): [
        "model.overrides.image_size=32", "model.overrides.base_channels=8", "model.overrides.channel_mult=[1,2]",
        "model.overrides.num_res_blocks=1", "model.overrides.z_channels=8", "model.overrides.mid_attention=false",
    ],
}


# Per family, the width overrides of the tiny versions (the audio families differ in names).
TINY_WIDTHS = {
    "rvq_codec_": ["model.overrides.base_channels=4", "model.overrides.decoder_channels=16",
                   "model.overrides.quantizer={type: rvq, num_levels: 2, codebook_size: 32, codebook_dim: 4}"],
    "istft_codec_": ["model.overrides.encoder_channels=4", "model.overrides.width=16",
                     "model.overrides.depth=1", "model.overrides.mlp_dim=32",
                     "model.overrides.quantizer={type: vq, codebook_size: 32, codebook_dim: 4}"],
}


# Flow-decoder variants (*_flow): a pixel-space velocity model of a few thousand parameters, no
# local VAE / REPA weights, 2 sampling steps.
TINY_FLOW = ["model.overrides.flow_space=pixel", "model.overrides.repa=null", "model.overrides.flow_width=32",
             "model.overrides.flow_depth=1", "model.overrides.flow_heads=2", "model.overrides.flow_patch_size=8",
             "model.overrides.sample_steps=2"]


def tiny_model_overrides(model_name: str) -> list[str]:
    for prefixes, ov in TINY_MODEL.items():
        if model_name.startswith(prefixes):
            extra = [o for p, w in TINY_WIDTHS.items() if model_name.startswith(p) for o in w]
            extra += TINY_FLOW if model_name.endswith("_flow") else []
            return list(ov) + extra
    raise KeyError(f"no tiny overrides for {model_name}; add them to tests/train/train_recipe_helpers.py")


def is_audio(model_name: str) -> bool:
    return model_name.startswith(("rvq_codec_", "istft_codec_"))


def is_video(model_name: str) -> bool:
    return model_name.startswith("causal3d_")


def tiny_run_overrides(run_dir: Path, steps: int = 2, audio: bool = False, video: bool = False) -> list[str]:
    if audio:
        data = ["data.preprocessing={segment: random}"]
    elif video:
        data = ["data.preprocessing={clip: random}", "data.joint.train=synthetic:16", "data.joint.preprocessing={}"]
    else:
        data = ["data.preprocessing.resolution=32"]
    return [
        f"run_dir={run_dir}", "device=cpu", "compile=false", "data.train=synthetic:32", *data,
        "data.num_workers=0", "optim.batch_size=2", f"schedule.total_steps={steps}", "schedule.warmup_steps=1",
        "checkpoint.every=1", "checkpoint.keep_last=2", "logging.every=1", f"logging.image_every={steps}",
        "logging.num_images=2", "logging.progress=false", "logging.tensorboard=false", "cpu_threads=1",
    ]
