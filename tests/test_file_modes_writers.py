"""Every writer of mmtok gives its files the mode a plain ``open()`` would under the umask.

safetensors and ``tempfile`` create 0600 files; the atomic writers must not let that mode
through (a pretrained folder unreadable by the group under umask 022 is a bug).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

import mmtok

UMASKS = [0o022, 0o002, 0o077]


@pytest.fixture(params=UMASKS, ids=lambda m: f"umask{m:03o}")
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _check_tree(root: Path, umask: int) -> int:
    files = [p for p in Path(root).rglob("*") if not p.is_symlink()]
    assert files, f"nothing written under {root}"
    for p in files:
        want = (0o777 if p.is_dir() else 0o666) & ~umask
        got = stat.S_IMODE(os.stat(p).st_mode)
        assert got == want, (str(p.relative_to(root)), oct(got), oct(want))
    return len(files)


def test_save_pretrained(tmp_path, umask):
    tok = mmtok.create_tokenizer("titok_t32_fsq", num_tokens=8, encoder_depth=1, decoder_depth=1)
    tok.save_pretrained(tmp_path / "pre")
    assert (tmp_path / "pre" / "model.safetensors").is_file()
    _check_tree(tmp_path / "pre", umask)
    tok.save_pretrained(tmp_path / "pre")  # overwrite keeps the modes
    _check_tree(tmp_path / "pre", umask)


def test_training_state(tmp_path, umask):
    from mmtok.checkpoint import save_training_state

    lin = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(lin.parameters())
    save_training_state(tmp_path / "ckpt", 3, {"model": lin, "ema": lin.state_dict()}, {"optimizer": opt.state_dict()})
    _check_tree(tmp_path / "ckpt", umask)


def test_training_run_dir(tmp_path, umask):
    """``mmtok train``: checkpoints, final/, the resolved config, metrics and sample grids."""
    from mmtok.training.cli import train_main

    run = tmp_path / "run"
    ov = [f"run_dir={run}", "device=cpu", "compile=false", "data.train=synthetic:8", "data.preprocessing.resolution=32",
          "data.num_workers=0", "optim.batch_size=2", "schedule.total_steps=2", "schedule.warmup_steps=1",
          "checkpoint.every=1", "checkpoint.keep_last=1", "logging.every=1", "logging.image_every=2",
          "logging.num_images=2", "logging.progress=false", "logging.tensorboard=false", "cpu_threads=1",
          "model.overrides.num_tokens=8", "model.overrides.encoder_depth=1", "model.overrides.decoder_depth=1"]
    assert train_main(["image/titok_t32_fsq_synthetic", *ov]) == 0
    assert (run / "final" / "model.safetensors").is_file()
    _check_tree(run, umask)


def test_generator_final(tmp_path, umask):
    from mmtok.ar import TinyGPT
    from mmtok.ar.train import save_generator

    model = TinyGPT(16, max_len=8, dim=16, depth=1, heads=2)
    save_generator(model, {"vocab_size": 16}, {"tokenizer": "x"}, tmp_path / "final")
    _check_tree(tmp_path / "final", umask)


def test_eval_report(tmp_path, umask):
    from mmtok.data import open_dataset
    from mmtok.metrics import evaluate_reconstruction

    tok = mmtok.create_tokenizer("titok_t32_fsq", num_tokens=8, encoder_depth=1, decoder_depth=1).eval()
    out = tmp_path / "eval"
    evaluate_reconstruction(tok, open_dataset("synthetic:4", "image", resolution=32), batch_size=2, fid=False,
                            lpips=None, out_dir=out, progress=False)
    assert (out / "report.json").is_file() and (out / "reconstructions.npz").is_file()
    _check_tree(out, umask)


def test_shards(tmp_path, umask):
    from mmtok.shards import encode_dataset

    tok = mmtok.create_tokenizer("titok_t32_fsq", num_tokens=8, encoder_depth=1, decoder_depth=1)
    tok.save_pretrained(tmp_path / "tok")
    encode_dataset(tmp_path / "tok", "synthetic:6", tmp_path / "shards", batch_size=3, shard_size=4, progress=False)
    assert any(p.suffix == ".parquet" for p in (tmp_path / "shards").rglob("*"))
    _check_tree(tmp_path / "shards", umask)
