"""End-to-end tests of train/tokenizer.py on tiny models (CPU, 32x32, a few steps)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import mmtok
from mmtok.checkpoint import latest_training_state, list_training_states, read_checkpoint_config
from mmtok.training.logging import read_metrics

from train_recipe_helpers import CONFIGS, ROOT, is_audio, is_video, tiny_model_overrides, tiny_run_overrides


def _loss_rows(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k.startswith(("loss/", "disc/"))} | {"step": r["step"]} for r in read_metrics(run_dir)]


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_config_two_step_smoke(recipe, config: Path, tmp_path: Path) -> None:
    raw = yaml.safe_load(config.read_text())
    run = tmp_path / "run"
    name = raw["model"]["name"]
    audio, video = is_audio(name), is_video(name)
    ov = tiny_run_overrides(run, audio=audio, video=video) + tiny_model_overrides(name)
    if raw["model"].get("inflate_from"):  # stage 2 of a two-stage recipe: the tiny widths have no saved 2D
        ov.append("model.inflate_from=null")  # twin here (inflation: tests/video/test_video_models.py)
    if raw.get("loss", {}).get("perceptual_weight", 1.0) > 0:
        ov.append("loss.perceptual=random")  # no pretrained trunk offline
    if raw.get("loss", {}).get("gan_weight", 0.0) > 0:
        ov += ["loss.gan_start_step=1", "discriminator.start_step=0"]
        ov.append("discriminator.options.width=0.03125" if audio else "discriminator.options.base_channels=8")
        if video:
            ov.append("discriminator.options.num_layers=2")
    assert recipe["main"]([str(config), *ov, "precision=no"]) == 0
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == [1, 2]
    assert all(torch.isfinite(torch.tensor(r["loss/total"])) for r in rows)
    if raw.get("loss", {}).get("gan_weight", 0.0) > 0:
        assert rows[1]["loss/gan_weight"] > 0 and "disc/d_loss" in rows[1]  # GAN path ran at step 1
    tok = mmtok.load_tokenizer(run / "final", modality="audio" if audio else "video" if video else "image")
    assert read_checkpoint_config(run / "final")["variant"] == name
    x = torch.rand(2, 1, 1600) if audio else torch.rand(2, 3, 5, 16, 16) if video else torch.rand(2, 3, 32, 32)
    assert tok.decode(tok.encode(x * 2 - 1)).shape == x.shape
    assert (run / "config.yaml").is_file()
    assert list((run / "samples").rglob("*.wav" if audio else "*.mp4" if video else "*.png"))
    assert [p.name for p in list_training_states(run / "checkpoints")] == ["step_00000001", "step_00000002"]


def _logged(run_dir: Path) -> list[dict]:
    """Every metrics.jsonl line with every key except wall-clock throughput."""
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in read_metrics(run_dir)]


RESUME_CASES = {
    # nested dropout (model RNG), random crop + flip (data aug), grad accumulation, EMA, the
    # discriminator with LeCAM and its own optimiser, and the LR schedule
    "flextok_fsq_gan": ("configs/image/flextok_t32_fsq_synthetic.yaml", tiny_model_overrides("flextok_t32_fsq") + [
        "data.preprocessing.crop=random", "data.preprocessing.flip=true", "optim.grad_accum=2", "loss.gan_weight=0.1",
        "loss.gan_start_step=1", "loss.lecam_weight=0.01", "loss.perceptual_weight=0", "discriminator.options.base_channels=8",
        "ema.decay=0.9"]),
    # VQ with k-means init and dead-code restart: the dead-code tracker and the codebook
    # EMA state are part of what a resume must restore (quantizer/dead_codes is logged)
    "titok_vq_dead_codes": ("configs/image/flextok_t32_fsq_synthetic.yaml", tiny_model_overrides("titok_t32_fsq") + [
        "model.name=titok_t32_vq", "model.overrides.quantizer={type: vq, codebook_size: 64, codebook_dim: 8, "
        "kmeans_init: true, threshold_ema_dead_code: 2.0, use_cosine_sim: true, dead_window: 2}", "logging.every=1"]),
}


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_exact_resume_matches_uninterrupted_run(recipe, tmp_path: Path, case: str) -> None:
    """4 steps straight == 2 steps, stop, resume=auto, 2 more: every line of metrics.jsonl
    identical in every key (losses, quantizer and codebook statistics, lr, grad norm,
    skipped-file count, epoch), and identical final weights."""
    config, base = RESUME_CASES[case]
    cfg = str(ROOT / config)
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert recipe["main"]([cfg, *tiny_run_overrides(straight, steps=4), *base]) == 0
    assert recipe["main"]([cfg, *tiny_run_overrides(split, steps=4), *base, "stop_at_step=2"]) == 0
    assert not (split / "final").exists() and latest_training_state(split / "checkpoints").name == "step_00000002"
    assert recipe["main"]([cfg, *tiny_run_overrides(split, steps=4), *base]) == 0  # resume=auto

    a, b = _logged(straight), _logged(split)
    assert [r["step"] for r in a] == list(range(1, 5)) and [r["step"] for r in b] == list(range(1, 5))
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        assert ra == rb, {k: (ra[k], rb[k]) for k in ra if ra[k] != rb[k]}
    assert len(a[-1]) > 12  # the comparison covers the whole line, not a few losses
    if case == "flextok_fsq_gan":
        assert a[-1]["disc/d_loss"] != 0.0
    else:
        assert "quantizer/dead_codes" in a[-1]
    wa, wb = load_file(str(straight / "final" / "model.safetensors")), load_file(str(split / "final" / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_loss_goes_down_and_final_uses_ema(recipe, tmp_path: Path) -> None:
    run = tmp_path / "run"
    ov = tiny_run_overrides(run, steps=15) + tiny_model_overrides("titok_t32_fsq") + [
        "optim.lr=3e-3", "optim.batch_size=4", "data.train=synthetic:4", "data.preprocessing.flip=false", "data.preprocessing.crop=center",
        "checkpoint.every=100", "ema.decay=0.5", "schedule.warmup_steps=2", "schedule.kind=constant",
    ]
    assert recipe["main"]([str(ROOT / "configs/image/titok_t32_fsq_synthetic.yaml"), *ov]) == 0
    losses = [r["loss/total"] for r in read_metrics(run)]
    assert len(losses) == 15
    assert sum(losses[-3:]) / 3 < 0.85 * losses[0]  # fits 4 fixed images
    final = load_file(str(run / "final" / "model.safetensors"))
    ckpt = latest_training_state(run / "checkpoints")
    ema = load_file(str(ckpt / "ema.safetensors"))
    raw = load_file(str(ckpt / "model.safetensors"))
    key = next(k for k in final if final[k].is_floating_point() and final[k].numel() > 100)
    assert torch.equal(final[key], ema[f"module.{key}"]) and not torch.equal(final[key], raw[key])


def test_nonfinite_loss_stops_and_keeps_last_checkpoint(recipe, tmp_path: Path, monkeypatch, capsys) -> None:
    from mmtok.losses import TokenizerLoss

    orig = TokenizerLoss.generator_loss

    def poisoned(self, x, out, step, last_layer=None):
        terms = orig(self, x, out, step, last_layer)
        if step >= 3:  # the 4th optimiser step produces NaN
            terms.total = terms.total * float("nan")
        return terms

    monkeypatch.setattr(TokenizerLoss, "generator_loss", poisoned)
    run = tmp_path / "run"
    ov = tiny_run_overrides(run, steps=8) + tiny_model_overrides("titok_t32_fsq") + ["checkpoint.every=2", "logging.every=4"]
    rc = recipe["main"]([str(ROOT / "configs/image/titok_t32_fsq_synthetic.yaml"), *ov])
    assert rc == recipe["EXIT_NONFINITE"]
    err = capsys.readouterr().err
    assert "non-finite loss at step 3" in err and "step_00000002" in err
    assert [p.name for p in list_training_states(run / "checkpoints")] == ["step_00000002"]
    assert not (run / "final").exists()
    state = json.loads((run / "checkpoints" / "step_00000002" / "state.json").read_text())
    assert state["step"] == 2
    w = load_file(str(run / "checkpoints" / "step_00000002" / "model.safetensors"))
    assert all(torch.isfinite(v).all() for v in w.values() if v.is_floating_point())


def test_corrupt_images_are_skipped_and_reported(recipe, tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "imgs"
    (folder / "a").mkdir(parents=True)
    for i in range(6):
        Image.new("RGB", (40, 36), (40 * i, 20, 200 - 30 * i)).save(folder / "a" / f"{i}.png")
    (folder / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (folder / "a" / "empty.png").write_bytes(b"")
    run = tmp_path / "run"
    ov = tiny_run_overrides(run, steps=4) + tiny_model_overrides("titok_t32_fsq") + [f"data.train={folder}", "optim.batch_size=4"]
    assert recipe["main"]([str(ROOT / "configs/image/titok_t32_fsq_synthetic.yaml"), *ov]) == 0
    rows = read_metrics(run)
    assert rows[-1]["data/skipped_files"] >= 2  # both bad files were met (8 files, 4 steps x 4)
    log = (run / "train.log").read_text()
    assert "broken.jpg" in log and "empty.png" in log


def test_bad_config_is_a_clear_error(recipe, tmp_path: Path, capsys) -> None:
    cfg = str(ROOT / "configs/image/titok_t32_fsq_synthetic.yaml")
    assert recipe["main"]([cfg, "optim.learning_rate=1"]) == 2
    assert "learning_rate" in capsys.readouterr().err
    assert recipe["main"]([cfg, "precision=fp8"]) == 2
    assert "precision" in capsys.readouterr().err
    assert recipe["main"]([str(tmp_path / "missing.yaml")]) == 2
    assert "not found" in capsys.readouterr().err
    assert recipe["main"]([cfg, *tiny_run_overrides(tmp_path / "r"), f"data.train={tmp_path / 'nowhere'}"]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "mmtok train: error:" in err and "Traceback" not in err


def test_demo_runs_the_main_job(tmp_path: Path, capsys) -> None:
    from mmtok.demo import main as demo_main

    run = tmp_path / "demo"
    sets = ["--set", "optim.batch_size=2", "--set", "cpu_threads=1", "--set", "logging.progress=false",
            "--set", "checkpoint.every=2", "--set", "logging.image_every=2"]
    assert demo_main(["--steps", "2", "--run-dir", str(run), *sets]) == 0
    out = capsys.readouterr().out
    for what in ("checkpoint:", "recon grid:", "metrics:"):
        assert what in out
    assert mmtok.load_tokenizer(run / "final").num_tokens == 32
    assert (run / "samples" / "step_00000002.png").is_file() and len(read_metrics(run)) == 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_bf16_compile_and_resume(recipe, tmp_path: Path) -> None:
    """bf16 autocast + torch.compile + fused AdamW on CUDA; stop / resume gives the same losses."""
    base = tiny_model_overrides("titok_t32_fsq") + ["device=cuda", "precision=bf16", "compile=true", "checkpoint.every=2"]
    cfg = str(ROOT / "configs/image/titok_t32_fsq_synthetic.yaml")
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert recipe["main"]([cfg, *tiny_run_overrides(straight, steps=4), *base]) == 0
    assert recipe["main"]([cfg, *tiny_run_overrides(split, steps=4), *base, "stop_at_step=2"]) == 0
    assert recipe["main"]([cfg, *tiny_run_overrides(split, steps=4), *base]) == 0
    a, b = _loss_rows(straight), _loss_rows(split)
    assert len(a) == 4 and [r["loss/total"] for r in a] == pytest.approx([r["loss/total"] for r in b], rel=1e-3)
