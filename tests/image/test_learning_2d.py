"""Does the tiny 2D preset (vqgan_t_f8_vq) learn? Fast: the init / normalisation properties
the fix relies on. Slow: a short CPU training run on photo crops beats the mean colour."""

from __future__ import annotations

import time

import pytest
import torch

import mmtok
from mmtok.layers.conv import ResBlock2d


def _tiny(**kw):
    torch.manual_seed(0)
    return mmtok.create_tokenizer("vqgan_t_f8_vq", image_size=32, **kw)


def test_tiny_2d_norms_keep_each_images_level():
    """With one channel per GroupNorm group (InstanceNorm) the last norm erased each image's
    colour and level: shifting the features by a per-channel constant changed nothing."""
    tok = _tiny()
    for m in tok.modules():
        if isinstance(m, torch.nn.GroupNorm):
            assert m.num_channels // m.num_groups >= 4, m
    h = torch.randn(2, tok.decoder.norm_out.num_channels, 16, 16)
    shift = torch.linspace(-1, 1, h.shape[1])[None, :, None, None]
    norm = tok.decoder.norm_out
    assert (norm(h + shift) - norm(h)).abs().max() > 0.1  # the level reaches conv_out
    old = _tiny(norm_min_group_channels=1).decoder.norm_out
    assert torch.allclose(old(h + shift), old(h), atol=1e-4)  # the old behaviour, for the record


def test_tiny_2d_res_blocks_start_as_identity():
    tok = _tiny()
    x = torch.randn(2, 64, 8, 8)
    blocks = [m for m in tok.modules() if isinstance(m, ResBlock2d)]
    assert blocks
    for b in blocks:
        if isinstance(b.skip, torch.nn.Identity):
            assert torch.equal(b(x[:, : b.conv1.in_channels]), x[:, : b.conv1.in_channels])
    assert not all(torch.equal(b(x[:, : b.conv1.in_channels]), x[:, : b.conv1.in_channels])
                   for b in (m for m in _tiny(zero_init_residual=False).modules() if isinstance(m, ResBlock2d))
                   if isinstance(b.skip, torch.nn.Identity))


def test_tiny_2d_codebook_settles_at_cpu_batch_size():
    """A CPU batch (16 x 8x8 tokens) gives each code < 2 vectors per step: with threshold 2.0
    every code was 'dead' and resampled at every step. The preset's codebook stays put."""
    torch.manual_seed(0)
    z = torch.randn(16, 64, 32)

    def changed(tok) -> float:
        q = tok.quantizer.train()
        for _ in range(3):
            q(z)
        before = q.vq._codebook.embed.clone()
        q(z)
        return float((q.vq._codebook.embed - before).norm(dim=-1).gt(1e-3).float().mean())

    assert changed(_tiny()) < 0.2
    old = {"type": "vq", "codebook_size": 1024, "codebook_dim": 8, "use_cosine_sim": True, "kmeans_init": True,
           "threshold_ema_dead_code": 2.0}
    assert changed(_tiny(quantizer=old)) > 0.5


@pytest.mark.slow
def test_tiny_2d_learns_photos_beyond_mean_colour():
    """~2.5 CPU minutes (1 thread) on photos: beats each held-out crop's mean colour."""
    import importlib.util
    from pathlib import Path

    pytest.importorskip("skimage")
    path = Path(__file__).resolve().parents[2] / "eval" / "bench_learn_2d.py"
    spec = importlib.util.spec_from_file_location("bench_learn_2d", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from mmtok.metrics.baselines import mean_colour, psnr

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t0 = time.process_time()
        model, steps, _ = bench.train({}, bench.NEW_OPTIM, budget_s=150.0)
        x = bench.held_out(256)
        res = bench.evaluate(model, x)
        assert time.process_time() - t0 < 180
    finally:
        torch.set_num_threads(threads)
    base = psnr(mean_colour(x), x)
    assert res["psnr"] > base + 1.0, (res, base, steps)
    assert res["usage"] >= 0.2, res
