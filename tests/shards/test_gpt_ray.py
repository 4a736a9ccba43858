"""Shards feed a generator end to end (tiny GPT), and the Ray engine writes the same shards."""

from __future__ import annotations

import math

import pytest
import torch

from mmtok.ar import TinyGPT
from mmtok.shards import TokenDataset, encode_dataset, expected_metadata


def test_tiny_gpt_learns_from_encoded_shards(tmp_path, tiny_ckpt):
    out = tmp_path / "tok"
    encode_dataset(tiny_ckpt, "synthetic:16", out, batch_size=8, shard_size=8, num_workers=0, flip=True, progress=False)
    ds = TokenDataset(out, expect=expected_metadata(tiny_ckpt), seq_len=33, batch_size=8, seed=0,
                      bos_id=1000)  # codebook ids 0..999, BOS after them
    assert ds.vocab_size == 1001
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: one thread avoids oversubscription stalls on a shared CPU
    try:
        _train_and_check(ds)
    finally:
        torch.set_num_threads(threads)


def _train_and_check(ds: TokenDataset) -> None:
    model = TinyGPT(ds.vocab_size, max_len=33, dim=64, depth=2, heads=4)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(6):  # epochs of 4 batches
        for batch in ds:
            loss = model.loss(batch["input_ids"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    assert len(losses) == 24
    assert abs(losses[0] - math.log(1001)) < 0.5  # starts at chance level
    assert sum(losses[-4:]) / 4 < 0.7 * losses[0], losses
    prompt = torch.tensor([[1000]])
    gen = model.generate(prompt, 32)
    assert gen.shape == (1, 33) and int(gen[0, 1:].max()) < 1001
    with pytest.raises(ValueError, match="token ids must lie"):
        model(torch.tensor([[1001]]))


@pytest.mark.slow
def test_ray_engine_writes_the_same_shards_as_torch(tmp_path, tiny_ckpt):
    pytest.importorskip("ray.data")
    import ray

    from mmtok.shards import encode_with_ray

    kw = dict(batch_size=4, shard_size=4)
    torch_out, ray_out = tmp_path / "torch", tmp_path / "ray"
    encode_dataset(tiny_ckpt, "synthetic:12", torch_out, num_workers=0, progress=False, **kw)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        (ray_out).mkdir()
        m = encode_with_ray(tiny_ckpt, "synthetic:12", ray_out, num_actors=2, **kw)
        assert m["num_items"] == 12
        files = {f.name: f.read_bytes() for f in torch_out.glob("shard-*")}
        assert files == {f.name: f.read_bytes() for f in ray_out.glob("shard-*")}
        # A rerun finds every shard finished and only rewrites the manifest.
        before = {f.name: f.stat().st_mtime_ns for f in ray_out.glob("shard-*")}
        encode_with_ray(tiny_ckpt, "synthetic:12", ray_out, **kw)
        assert before == {f.name: f.stat().st_mtime_ns for f in ray_out.glob("shard-*")}
    finally:
        ray.shutdown()
