"""Training building blocks: LR schedule, EMA, RNG state, config parsing, code usage."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mmtok.config import ConfigError
from mmtok.training import EMA, TrainConfig, load_train_config, lr_at, rng_state, set_rng_state
from mmtok.tokenizer import prefix_lengths
from mmtok.training.logging import MetricWindow
from mmtok.training.samples import reconstruction_grid

MAIN_JOB = Path(__file__).resolve().parents[2] / "configs" / "image" / "titok_t32_fsq_synthetic.yaml"


def test_lr_warmup_then_cosine_to_floor() -> None:
    lrs = [lr_at(s, 1.0, total_steps=110, warmup_steps=10, min_lr_ratio=0.1) for s in range(110)]
    assert lrs[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert lrs[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # monotone decay
    assert lr_at(110, 1.0, 110, 10, min_lr_ratio=0.1) == pytest.approx(0.1)
    assert lr_at(60, 1.0, 110, 10, min_lr_ratio=0.0) == pytest.approx(0.5)  # cosine midpoint
    assert lr_at(50, 2.0, 110, 10, kind="constant") == 2.0
    with pytest.raises(ValueError):
        lr_at(50, 1.0, 110, 10, kind="step")


def test_ema_tracks_weights_and_copies_int_buffers() -> None:
    model = nn.BatchNorm1d(3)
    ema = EMA(model, decay=0.5, warmup=False)
    with torch.no_grad():
        model.weight.fill_(3.0)  # ema weight starts at 1.0
    model.num_batches_tracked.fill_(7)
    ema.update(model)
    assert torch.allclose(ema.module.weight, torch.full((3,), 2.0))
    ema.update(model)
    assert torch.allclose(ema.module.weight, torch.full((3,), 2.5))
    assert int(ema.module.num_batches_tracked) == 7 and int(ema.num_updates) == 2
    assert not any(p.requires_grad for p in ema.module.parameters()) and not ema.module.training
    warm = EMA(model, decay=0.999, warmup=True)
    assert warm.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
    with pytest.raises(ValueError):
        EMA(model, decay=1.0)
    with pytest.raises(ValueError, match="buffers"):
        EMA(model, buffers="mean")


def test_ema_copies_float_buffers_unless_told_to_average() -> None:
    model = nn.BatchNorm1d(3)
    copy_ema, avg_ema = EMA(model, decay=0.5, warmup=False), EMA(model, decay=0.5, warmup=False, buffers="average")
    model.running_mean.fill_(4.0)  # both copies start at 0
    copy_ema.update(model)
    avg_ema.update(model)
    assert torch.equal(copy_ema.module.running_mean, torch.full((3,), 4.0))
    assert torch.allclose(avg_ema.module.running_mean, torch.full((3,), 2.0))


def test_ema_codebook_follows_the_live_quantizer_through_restarts() -> None:
    """An EMA-updated VQ codebook with dead-code restarts: the averaged copy must quantize
    like the live model (averaging the codebook again blends restarted codes with old ones)."""
    from mmtok.quantize import build as build_quantizer

    torch.manual_seed(0)
    q = build_quantizer({"type": "vq", "codebook_size": 16, "codebook_dim": 4, "threshold_ema_dead_code": 2.0}, dim=4)
    q.train()
    ema = EMA(q, decay=0.9, warmup=False)
    for i in range(30):
        q(torch.randn(8, 32, 4) + (3.0 if i >= 15 else 0.0))  # the data moves: codes die and restart
        ema.update(q)
    live = dict(q.named_buffers())
    for name, b in ema.module.named_buffers():
        assert torch.equal(b, live[name]), name
    q.eval()
    x = torch.randn(4, 32, 4) + 3.0
    assert torch.equal(q(x).codes, ema.module(x).codes)


def test_rng_state_round_trip_is_exact() -> None:
    state = rng_state()
    a = (torch.rand(4), np.random.rand(3), random.random())
    set_rng_state(state)
    b = (torch.rand(4), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_config_overrides_types_and_unknown_keys(tmp_path) -> None:
    cfg = load_train_config(MAIN_JOB, ["optim.lr=3e-4", "model.overrides.num_tokens=16"])
    assert isinstance(cfg, TrainConfig) and cfg.optim.lr == 3e-4
    base = load_train_config(MAIN_JOB).model.overrides
    assert cfg.model.overrides == {**base, "num_tokens": 16}  # merged into the YAML's overrides
    assert cfg.resume == "auto" and cfg.disc_start_step == cfg.loss.gan_start_step
    with pytest.raises(ConfigError, match="optim"):
        load_train_config(MAIN_JOB, ["optim.momentum=0.9"])
    with pytest.raises(ConfigError, match="optim.batch_size"):
        load_train_config(None, ["optim.batch_size=big"])
    with pytest.raises(ConfigError, match="total_steps"):
        load_train_config(None, ["schedule.total_steps=0"])
    with pytest.raises(ConfigError, match="num_workers"):
        load_train_config(None, ["data.num_workers=-1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("optimiser:\n  lr: 1\n")
    with pytest.raises(ConfigError, match="optimiser"):
        load_train_config(bad)


def test_code_usage_window() -> None:
    u = MetricWindow(codebook_size=8)
    u.codes.update(torch.tensor([[0, 0, 1, 1]]))
    m = u.codebook_scalars()
    assert m["codebook/usage"] == pytest.approx(2 / 4)  # 2 distinct of 4 possible with 4 tokens
    assert m["codebook/perplexity"] == pytest.approx(2.0)
    u.codes.update(torch.arange(8).repeat(4))
    m = u.codebook_scalars()
    assert m["codebook/usage"] == 1.0 and m["codebook/used_codes"] == 8.0


def test_code_usage_window_counts_residual_levels_apart() -> None:
    """Two levels using disjoint halves: each level uses 4 of 8 codes, not 8 of 8 mixed."""
    u = MetricWindow(codebook_size=8, num_levels=2)
    u.codes.update(torch.stack([torch.arange(4).repeat(4), torch.arange(4, 8).repeat(4)], dim=-1)[None])
    m = u.codebook_scalars()
    assert m["codebook/used_codes"] == 4.0 and m["codebook/usage"] == pytest.approx(0.5)


def test_reconstruction_grid_rows_per_prefix() -> None:
    class Toy(nn.Module):
        def encode(self, x):  # (B, 3, H, W) -> (B, 4) codes
            return torch.arange(4).expand(x.shape[0], 4)

        def decode(self, codes):
            return torch.full((codes.shape[0], 3, 8, 8), codes.shape[1] / 4 * 2 - 1)

    imgs = torch.zeros(3, 3, 8, 8)
    assert prefix_lengths(4) == [1, 2, 4] and prefix_lengths(6) == [1, 2, 4, 6]
    grid = reconstruction_grid(Toy(), imgs, prefix_lengths=[1, 2, 4])
    assert grid.shape == (3, 2 + 4 * 10, 2 + 3 * 10)  # 1 input row + 3 prefix rows, 3 columns, padding 2
    rows = [float(grid[0, 2 + 10 * r + 4, 6]) for r in range(4)]
    assert rows == pytest.approx([0.5, 0.25, 0.5, 1.0])  # input 0 -> 0.5; prefix k -> k/4
