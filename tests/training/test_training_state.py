"""Training checkpoints: exact round trip, keep-last pruning, crash safety."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from mmtok.checkpoint import latest_training_state, list_training_states, load_training_state, save_training_state


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    return net


def _state(net: nn.Module) -> tuple[torch.optim.Optimizer, dict]:
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    net(torch.randn(3, 4)).sum().backward()
    opt.step()
    return opt, {"optimizer": opt.state_dict(), "rng": [{"torch": torch.get_rng_state()}], "data": {"epoch": 1, "batch": 5}}


def test_round_trip_is_exact_and_keep_last_prunes(tmp_path: Path) -> None:
    net = _net(0)
    opt, objs = _state(net)
    for step in (10, 20, 30):
        save_training_state(tmp_path, step, {"model": net}, objs, {"note": "x"}, keep_last=2)
    assert [p.name for p in list_training_states(tmp_path)] == ["step_00000020", "step_00000030"]
    other = _net(1)
    loaded = load_training_state(latest_training_state(tmp_path), {"model": other})
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), other.state_dict().values()))
    assert loaded["meta"]["step"] == 30 and loaded["meta"]["note"] == "x"
    assert loaded["objects"]["data"] == {"epoch": 1, "batch": 5}
    opt2 = torch.optim.AdamW(other.parameters(), lr=1e-3)
    opt2.load_state_dict(loaded["objects"]["optimizer"])
    s1, s2 = opt.state_dict()["state"][0], opt2.state_dict()["state"][0]
    assert torch.equal(s1["exp_avg"], s2["exp_avg"]) and torch.equal(s1["exp_avg_sq"], s2["exp_avg_sq"])
    # a module that does not match the saved weights is an error, not a silent partial load
    with pytest.raises(RuntimeError, match="does not match"):
        load_training_state(latest_training_state(tmp_path), {"model": nn.Linear(4, 2)})
    with pytest.raises(KeyError, match="ema"):
        load_training_state(latest_training_state(tmp_path), {"ema": _net(2)})
    with pytest.raises(FileNotFoundError):
        load_training_state(tmp_path / "step_00000010")


_KILLER = textwrap.dedent(
    """
    import os, signal, sys, torch
    from torch import nn
    import mmtok.checkpoint as ck

    root = sys.argv[1]
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    real_save = ck._save_object

    def save_then_die(obj, path):
        real_save(obj, path)
        os.kill(os.getpid(), signal.SIGKILL)  # power cut half-way through the step directory

    ck._save_object = save_then_die
    ck.save_training_state(root, 20, {"model": net}, {"optimizer": {"x": torch.ones(3)}, "data": {"epoch": 0}}, keep_last=1)
    """
)


def test_kill_during_checkpoint_write_leaves_previous_loadable(tmp_path: Path) -> None:
    net = _net(0)
    _, objs = _state(net)
    save_training_state(tmp_path, 10, {"model": net}, objs, keep_last=1)
    proc = subprocess.run([sys.executable, "-c", _KILLER, str(tmp_path)], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers  # the half-written directory is there, under a hidden temporary name
    latest = latest_training_state(tmp_path)
    assert latest is not None and latest.name == "step_00000010"
    other = _net(5)
    loaded = load_training_state(latest, {"model": other})
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), other.state_dict().values()))
    assert loaded["objects"]["data"] == {"epoch": 1, "batch": 5}
    # the next successful save cleans the leftover up
    save_training_state(tmp_path, 30, {"model": net}, objs, keep_last=1)
    assert [p.name for p in tmp_path.iterdir()] == ["step_00000030"]
