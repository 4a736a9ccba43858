"""Two CPU processes (gloo): statistics reduce across ranks exactly, and a sharded evaluation
reports the same numbers and the same reconstructions as a single process."""

import json
import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        import importlib.util

        spec = importlib.util.spec_from_file_location("eval_conftest", os.path.join(os.path.dirname(__file__), "conftest.py"))
        helpers = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(helpers)
        PixelConfig, PixelTokenizer = helpers.PixelConfig, helpers.PixelTokenizer

        from mmtok.data import open_image_dataset
        from mmtok.metrics import CodebookHistogram, FeatureStats, MeanMetric, evaluate_reconstruction

        feats = torch.from_numpy(np.random.default_rng(0).normal(size=(10, 6)))
        fs, mm, hist = FeatureStats(dim=6), MeanMetric(), CodebookHistogram(8)
        fs.update(feats[rank::world])
        mm.update(feats[rank::world, 0])
        hist.update(torch.arange(8)[rank::world].repeat(rank + 1))
        stats, mean, cb = fs.compute(), mm.compute(), hist.compute()
        evaluate_reconstruction(
            PixelTokenizer(PixelConfig(32)), open_image_dataset("synthetic:5", 32), batch_size=2, fid=False,
            lpips=None, prefix_lengths=[1536], out_dir=os.path.join(out, "eval"), progress=False,
        )
        if rank == 0:
            np.savez(os.path.join(out, "stats.npz"), mu=stats.mu, sigma=stats.sigma, n=stats.n, mean=mean)
            with open(os.path.join(out, "cb.json"), "w") as f:
                json.dump(cb, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # spawns two interpreters (~40 s on a busy 2-core machine)
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
def test_two_process_reduction_and_sharded_eval(tmp_path, pixel_tokenizer):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    feats = np.random.default_rng(0).normal(size=(10, 6))
    z = np.load(tmp_path / "stats.npz")
    assert int(z["n"]) == 10
    np.testing.assert_allclose(z["mu"], feats.mean(0), atol=1e-12)
    np.testing.assert_allclose(z["sigma"], np.cov(feats, rowvar=False), atol=1e-10)
    assert float(z["mean"]) == pytest.approx(feats[:, 0].mean())
    cb = json.loads((tmp_path / "cb.json").read_text())
    assert cb["usage"] == 1.0 and cb["codes_counted"] == 4 + 8  # rank 0: 4 ids once, rank 1: 4 ids twice

    rep = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert rep["num_images"] == 5 and rep["throughput"]["world_size"] == 2
    assert rep["metrics"]["psnr"] == 100.0
    arr = np.load(tmp_path / "eval" / "reconstructions.npz")["arr_0"]
    keys = (tmp_path / "eval" / "reconstructions_keys.txt").read_text().split()
    from mmtok.data import open_image_dataset
    from mmtok.data import to_uint8
    from mmtok.metrics import evaluate_reconstruction

    ds = open_image_dataset("synthetic:5", 32)
    by_key = {ds[i]["key"]: to_uint8(ds[i]["x"][None])[0].permute(1, 2, 0).numpy() for i in range(5)}
    assert sorted(keys) == sorted(by_key) and arr.shape == (5, 32, 32, 3)
    for k, img in zip(keys, arr):
        np.testing.assert_array_equal(img, by_key[k])
    single = evaluate_reconstruction(pixel_tokenizer, ds, batch_size=2, fid=False, lpips=None, prefix_lengths=[1536], progress=False)
    assert rep["prefix"][0]["psnr"] == pytest.approx(single["prefix"][0]["psnr"], rel=1e-9)
    assert rep["prefix"][0]["ssim"] == pytest.approx(single["prefix"][0]["ssim"], rel=1e-9)
    assert rep["codebook"]["entropy_bits"] == pytest.approx(single["codebook"]["entropy_bits"], rel=1e-9)
