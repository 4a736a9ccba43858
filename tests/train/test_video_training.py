"""The shared training loop on the causal 3D video tokenizer: joint image + video batches on a
fixed schedule, exact resume with the 3D PatchGAN, and reconstruction error well below the
untrained model and a copy-the-first-frame baseline after a short CPU run."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

import mmtok
from mmtok.training.logging import read_metrics
from mmtok.training.loop import is_joint_micro_batch

from train_recipe_helpers import ROOT, tiny_model_overrides, tiny_run_overrides

RECIPE = str(ROOT / "configs/video/causal3d_tiny_synthetic.yaml")
TINY = tiny_model_overrides("causal3d_tiny")


def test_joint_schedule_takes_the_ratio_evenly() -> None:
    picks = [is_joint_micro_batch(i, 0.25) for i in range(40)]
    assert sum(picks) == 10 and all(sum(picks[i: i + 4]) == 1 for i in range(0, 40, 4))
    assert sum(is_joint_micro_batch(i, 1 / 3) for i in range(30)) == 10


def test_exact_resume_with_joint_images_and_3d_gan(recipe, tmp_path: Path) -> None:
    base = TINY + [
        "loss.gan_weight=0.1", "loss.gan_start_step=1", "discriminator.type=patchgan3d",
        "discriminator.options={base_channels: 4, num_layers: 2}", "discriminator.start_step=0", "data.joint.ratio=0.5",
        "ema.decay=0.9",
    ]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert recipe["main"]([RECIPE, *tiny_run_overrides(straight, steps=4, video=True), *base]) == 0
    assert recipe["main"]([RECIPE, *tiny_run_overrides(split, steps=4, video=True), *base, "stop_at_step=2"]) == 0
    assert recipe["main"]([RECIPE, *tiny_run_overrides(split, steps=4, video=True), *base]) == 0
    a = [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in read_metrics(straight)]
    b = [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in read_metrics(split)]
    assert len(a) == 4 and a == b and a[-1]["disc/d_loss"] != 0
    wa, wb = load_file(str(straight / "final" / "model.safetensors")), load_file(str(split / "final" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_short_training_beats_untrained_and_copy_first_frame(recipe, tmp_path: Path) -> None:
    """The tiny preset (9 frames of 32x32, 3 x 8 x 8 codes) fits 4 clips in 150 CPU steps well below
    the untrained model and below repeating the true first frame (which is given the first frame
    losslessly); images still reconstruct through the same weights."""
    from mmtok.data import open_dataset

    run = tmp_path / "run"
    ov = tiny_run_overrides(run, steps=150, video=True) + [
        "data.train=synthetic:4", "data.preprocessing={clip: start}", "optim.batch_size=4", "optim.lr=2e-3",
        "schedule.kind=constant", "checkpoint.every=1000", "logging.every=50", "logging.image_every=0",
        "data.joint.ratio=0.1", "ema.enabled=false",
    ]
    assert recipe["main"]([RECIPE, *ov]) == 0
    ds = open_dataset("synthetic:4", modality="video", resolution=32, num_frames=9, clip="start")
    x = torch.stack([ds[i]["x"] for i in range(4)])
    trained = mmtok.load_tokenizer(run / "final", modality="video")
    torch.manual_seed(0)
    untrained = mmtok.create_tokenizer("causal3d_tiny").eval()
    with torch.no_grad():
        err = {name: (tok.decode(tok.encode(x)) - x).abs().mean().item() for name, tok in
               (("trained", trained), ("untrained", untrained))}
        img = x[:, :, 0]
        err["image"] = (trained.decode_image(trained.encode_image(img)) - img).abs().mean().item()
    err["copy_first_frame"] = (x[:, :, :1].expand_as(x) - x).abs().mean().item()
    assert err["trained"] < 0.4 * err["untrained"], err
    assert err["trained"] < err["copy_first_frame"], err
    assert err["image"] < 0.5 * err["untrained"], err
