"""The rectified-flow decoder (``*_flow`` variants): learning, seeded sampling, resume, local weights, REPA."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import mmtok
from mmtok.image.flow_decoder import FlowTiTokTokenizer
from mmtok.training.logging import read_metrics
from mmtok.weights import WeightsError

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "mmtok" / "configs" / "image" / "flextok_t32_fsq_flow_photos.yaml"

# 16x16 images, 8 tokens, a 48-wide 2-block velocity model (~0.1M parameters)
TINY = dict(image_size=16, patch_size=4, num_tokens=8, encoder_width=32, encoder_depth=1, encoder_heads=2,
            flow_width=48, flow_depth=2, flow_heads=2, flow_patch_size=4, sample_steps=3)


def tiny(**kw) -> FlowTiTokTokenizer:
    torch.manual_seed(0)
    return mmtok.create_tokenizer("flextok_t32_fsq_flow", **{**TINY, **kw})


def images(n: int = 4, size: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    out = []
    for _ in range(n):
        a, b, c = (torch.rand(3, generator=g) * 2 - 1).tolist()
        out.append(torch.stack([(a * xx).clamp(-1, 1), (b * yy).clamp(-1, 1), torch.full_like(xx, c)]))
    return torch.stack(out)


def fixed_flow_loss(tok: FlowTiTokTokenizer, x: torch.Tensor) -> float:
    """The flow loss at fixed noise / noise levels (no nested or CFG dropout)."""
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(123)
        tok.eval()
        vals = [float(tok(x).metrics["loss/flow"]) for _ in range(4)]
        tok.train()
    return sum(vals) / len(vals)


def test_flow_loss_goes_down_on_a_few_images() -> None:
    tok, x = tiny(), images()
    before = fixed_flow_loss(tok, x)
    opt = torch.optim.AdamW([p for p in tok.parameters() if p.requires_grad], lr=3e-3)
    tok.train()
    for _ in range(60):
        out = tok(x)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    after = fixed_flow_loss(tok, x)
    assert after < 0.6 * before, (before, after)


def test_clean_sample_prediction_velocity_and_learning() -> None:
    """prediction="x": v = (x_t - x0_hat) / max(sigma, eps); at init (zero output) one Euler
    step lands on 0, not on the noise; the flow loss goes down; a bad value is refused."""
    tok, x = tiny(prediction="x"), images()
    codes = tok.encode(x)
    with torch.no_grad():
        assert tok.decode(codes, steps=1, seed=0).abs().max() < 1e-5
        assert tiny().decode(codes, steps=1, seed=0).abs().mean() > 0.3  # "v": the noise itself
        x_t, cond = torch.randn(4, 3, 16, 16), tok.flow.condition(tok.quantizer.decode(codes))
        out, _ = tok.flow(x_t, torch.tensor([1.0, 0.5, 0.01, 0.2]), cond)
        v, _ = tok.velocity(x_t, torch.tensor([1.0, 0.5, 0.01, 0.2]), cond)
        s = torch.tensor([1.0, 0.5, 0.05, 0.2]).view(4, 1, 1, 1)
        assert torch.allclose(v, (x_t - out) / s, atol=1e-6)
    before = fixed_flow_loss(tok, x)
    opt = torch.optim.AdamW([p for p in tok.parameters() if p.requires_grad], lr=3e-3)
    for _ in range(60):
        loss = tok(x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert fixed_flow_loss(tok, x) < 0.6 * before
    with pytest.raises(ValueError, match="prediction"):
        tiny(prediction="eps")


def test_sampling_is_deterministic_per_seed_and_cfg_matters() -> None:
    tok = tiny().eval()
    with torch.no_grad():  # non-zero output layers so that v depends on the input
        tok.flow.head.weight.normal_(0, 0.05)
        tok.flow.ada_out[1].weight.normal_(0, 0.05)
    codes = tok.encode(images())
    a = tok.decode(codes, steps=3, seed=7)
    b = tok.decode(codes, steps=3, seed=7)
    c = tok.decode(codes, steps=3, seed=8)
    assert a.shape == (4, 3, 16, 16) and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    g = tok.decode(codes[:, :2], steps=3, seed=7, cfg_scale=3.0)
    assert torch.equal(g, tok.decode(codes[:, :2], steps=3, seed=7, cfg_scale=3.0))
    assert not torch.allclose(g, tok.decode(codes[:, :2], steps=3, seed=7, cfg_scale=1.0))
    with pytest.raises(ValueError, match="steps"):
        tok.decode(codes, steps=0)
    with pytest.raises(ValueError, match="codes must be"):
        tok.decode(codes[:, :0])


def test_save_load_round_trip(tmp_path: Path) -> None:
    tok = tiny(cfg_scale=2.0).eval()
    with torch.no_grad():
        tok.flow.head.weight.normal_(0, 0.05)
    tok.save_pretrained(tmp_path / "t")
    back = mmtok.load_tokenizer(tmp_path / "t")
    assert isinstance(back, FlowTiTokTokenizer) and back.config == tok.config
    codes = tok.encode(images(2))
    assert torch.equal(codes, back.encode(images(2)))
    assert torch.equal(tok.decode(codes, seed=3), back.decode(codes, seed=3))


def test_missing_local_weights_give_one_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-vae"
    with pytest.raises(FileNotFoundError, match="AutoencoderKL folder not found") as e:
        tiny(flow_space="latent", vae_path=str(missing))
    assert str(missing) in str(e.value) and "config.json" in str(e.value)
    with pytest.raises(mmtok.config.ConfigError, match="needs vae_path"):
        tiny(flow_space="latent")
    tok = tiny(repa={"weight": 0.5, "encoder": "vit_tiny_patch16_224", "weights": str(tmp_path / "enc.pth"),
                     "image_size": 32})
    with pytest.raises(FileNotFoundError, match="REPA encoder weights not found") as e:
        tok(images(2))
    assert str(tmp_path / "enc.pth") in str(e.value)


def _tiny_vit_file(tmp_path: Path) -> Path:
    import timm

    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32, depth=2)
    path = tmp_path / "vit_tiny.pth"
    torch.save(net.state_dict(), path)
    return path


@pytest.mark.parametrize("features", ["decoder", "encoder"])
def test_repa_loss_with_a_random_timm_encoder(tmp_path: Path, features: str) -> None:
    path = _tiny_vit_file(tmp_path)
    spec = {"weight": 0.5, "encoder": "vit_tiny_patch16_224", "weights": str(path), "image_size": 32,
            "layer": 0, "features": features, "encoder_layer": -1}
    tok = tiny(repa=spec)
    # the timm default depth is 12, the file has 2 blocks: a clear error
    with pytest.raises(WeightsError, match="does not fit"):
        tok(images(2))
    import timm

    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32)
    torch.save(net.state_dict(), path)
    out = tok(images(2))
    repa = float(out.metrics["loss/repa"])
    assert 0.0 <= repa <= 2.0
    # FSQ has no aux loss: the total is flow + 0.5 * repa
    assert torch.allclose(out.loss.detach(), out.metrics["loss/flow"] + 0.5 * out.metrics["loss/repa"], atol=1e-5)
    out.loss.backward()
    assert tok.repa_head[0].weight.grad is not None and tok.repa_head[0].weight.grad.abs().sum() > 0
    # the frozen encoder is no part of the tokenizer's weights
    assert not any(k.startswith("_frozen") or "repa_net" in k for k in tok.state_dict())
    assert all(not p.requires_grad for p in tok.repa_loss_module().parameters())


def test_latent_space_with_a_local_autoencoder(tmp_path: Path) -> None:
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
                        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), block_out_channels=(8, 8),
                        layers_per_block=1, latent_channels=4, norm_num_groups=4, sample_size=16)
    vae.save_pretrained(tmp_path / "vae")
    tok = tiny(flow_space="latent", vae_path=str(tmp_path / "vae"), flow_patch_size=2)
    x = images(2)
    assert tok.to_flow_space(x).shape == (2, 4, 8, 8)
    out = tok(x)
    assert out.recon.shape == x.shape and torch.isfinite(out.loss)
    out.loss.backward()
    assert not any(k.startswith("vae") for k in tok.state_dict())
    tok.eval()
    codes = tok.encode(x)
    assert torch.equal(tok.decode(codes, seed=1), tok.decode(codes, seed=1))
    assert tok.decode(codes).shape == x.shape


def _overrides(run: Path, steps: int) -> list[str]:
    return [f"run_dir={run}", "device=cpu", "data.train=synthetic:16", "data.preprocessing={resolution: 16, flip: true}",
            "optim.batch_size=4", f"schedule.total_steps={steps}", "schedule.warmup_steps=1", "checkpoint.every=1",
            "checkpoint.keep_last=2", "logging.every=1", f"logging.image_every={steps}", "logging.num_images=2",
            "logging.progress=false", "logging.tensorboard=false", "cpu_threads=1", "ema.decay=0.9",
            "model.overrides.cfg_dropout=0.5",
            *[f"model.overrides.{k}={json.dumps(v)}" for k, v in {**TINY, "sample_steps": 2}.items()]]


def test_exact_resume_through_mmtok_train(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from mmtok.training.cli import train_main

    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train_main([str(RECIPE), *_overrides(straight, 4)]) == 0
    assert train_main([str(RECIPE), *_overrides(split, 4), "stop_at_step=2"]) == 0
    assert not (split / "final").exists()
    assert train_main([str(RECIPE), *_overrides(split, 4)]) == 0
    drop = lambda rows: [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]  # noqa: E731
    a, b = drop(read_metrics(straight)), drop(read_metrics(split))
    assert [r["step"] for r in a] == [1, 2, 3, 4] and a == b
    assert "loss/flow" in a[-1] and a[-1]["loss/flow"] > 0
    wa, wb = load_file(str(straight / "final" / "model.safetensors")), load_file(str(split / "final" / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    tok = mmtok.load_tokenizer(straight / "final")
    assert isinstance(tok, FlowTiTokTokenizer)


def test_two_stage_frozen_tokenizer_from_a_trained_checkpoint(tmp_path: Path, capsys) -> None:
    from mmtok.training.cli import train_main

    first = mmtok.create_tokenizer("flextok_t32_fsq", image_size=16, patch_size=4, num_tokens=8, encoder_width=32,
                                   encoder_depth=1, encoder_heads=2, decoder_width=32, decoder_depth=1, decoder_heads=2,
                                   latent_norm="batch", qk_norm=True)  # as the recipe
    first.save_pretrained(tmp_path / "stage1")
    run = tmp_path / "stage2"
    ov = _overrides(run, 2) + [f"model.init_from={tmp_path / 'stage1'}", "model.init_modules=[encoder, quantizer, nested]",
                               "model.overrides.freeze_tokenizer=true", "ema.enabled=false"]
    assert train_main([str(RECIPE), *ov]) == 0
    tok = mmtok.load_tokenizer(run / "final")
    s1, s2 = first.state_dict(), tok.state_dict()
    enc = [k for k in s1 if k.startswith(("encoder.", "quantizer.", "nested."))]
    assert enc and all(torch.equal(s1[k], s2[k]) for k in enc)  # the frozen stage did not move
    assert torch.equal(tok.encode(images(2)), first.encode(images(2)))
    # the wrong prefix is one clear error
    bad = _overrides(tmp_path / "bad", 2) + [f"model.init_from={tmp_path / 'stage1'}", "model.init_modules=[flow]"]
    assert train_main([str(RECIPE), *bad]) == 2
    assert "model.init_modules ['flow']" in capsys.readouterr().err


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


def test_eval_reports_quality_vs_flow_steps_psnr_only(tmp_path: Path) -> None:
    from mmtok.metrics.cli import eval_main

    tok = tiny()
    with torch.no_grad():
        tok.flow.head.weight.normal_(0, 0.05)
        tok.flow.ada_out[1].weight.normal_(0, 0.05)
    tok.save_pretrained(tmp_path / "tok")
    out = tmp_path / "eval"
    assert eval_main([str(tmp_path / "tok"), "--data", "synthetic:4", "--batch-size", "4", "--out", str(out),
                      "--no-fid", "--lpips-weights", "none", "--flow-steps", "1,3", "--no-progress", "--no-npz"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert [r["steps"] for r in rep["flow_steps"]] == [1, 3]
    assert rep["decode_options"]["steps"] == 3 and len(rep["prefix"]) == len(tok.prefix_lengths())
    assert rep["flow_steps"][0]["psnr"] != rep["flow_steps"][1]["psnr"]  # the step count changes the samples
    assert rep["flow_steps"][1]["psnr"] == rep["metrics"]["psnr"]
    md = (out / "report.md").read_text()
    assert "quality vs sampling steps" in md and "| 1 |" in md and (out / "flow_steps.png").is_file()
    assert (out / "prefix_curve.png").is_file() and (out / "steps_1" / "report.json").is_file()


def test_generate_decodes_ar_samples_through_the_flow_decoder(tmp_path: Path) -> None:
    from PIL import Image

    from mmtok.cli import main

    tok = tiny(quantizer={"type": "fsq", "levels": [5, 4, 4]}, image_size=32, patch_size=8, flow_patch_size=8)
    tok.save_pretrained(tmp_path / "tok")
    assert main(["encode", str(tmp_path / "tok"), "synthetic:32", str(tmp_path / "tokens"), "--batch-size", "16",
                 "--workers", "0", "--no-progress"]) == 0
    assert main(["train", "ar/ar_tiny_synthetic", f"run_dir={tmp_path / 'ar'}", f"data.shards={tmp_path / 'tokens'}",
                 f"data.tokenizer={tmp_path / 'tok'}", "schedule.total_steps=2", "schedule.warmup_steps=1",
                 "optim.batch_size=8", "logging.progress=false", "checkpoint.every=2", "cpu_threads=1"]) == 0
    runs = []
    for name in ("a", "b"):
        assert main(["generate", str(tmp_path / "ar" / "final"), "--tokenizer", str(tmp_path / "tok"), "--num", "2",
                     "--flow-steps", "2", "--out", str(tmp_path / name), "--seed", "5"]) == 0
        runs.append([np.asarray(Image.open(p)) for p in sorted((tmp_path / name).glob("sample_*.png"))])
    assert len(runs[0]) == 2 and all((x == y).all() for x, y in zip(*runs))
