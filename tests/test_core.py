"""Registry, config, checkpoint and CLI behaviour."""

import dataclasses
import json
import subprocess
import sys

import pytest
import torch

import mmtok
from mmtok import checkpoint, cli, config


@dataclasses.dataclass
class Inner:
    lr: float = 1e-3
    betas: tuple = (0.9, 0.99)


@dataclasses.dataclass
class Outer:
    name: str = "x"
    steps: int = 10
    optim: Inner = dataclasses.field(default_factory=Inner)


def test_config_overrides_and_unknown_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: run\noptim:\n  lr: 0.01\n")
    cfg = config.load_config(Outer, path, ["steps=5", "optim.betas=[0.8, 0.9]"])
    assert cfg == Outer(name="run", steps=5, optim=Inner(lr=0.01, betas=(0.8, 0.9)))
    with pytest.raises(config.ConfigError, match="unknown config key.*'optim'"):
        config.load_config(Outer, path, ["optim.lrr=1"])
    with pytest.raises(config.ConfigError, match="key.sub=value"):
        config.parse_overrides(["steps"])
    assert config.config_hash(cfg) == config.config_hash(config.to_dict(cfg))
    assert config.config_hash(cfg) != config.config_hash(Outer())
    config.save_yaml(cfg, tmp_path / "out.yaml")
    assert config.load_config(Outer, tmp_path / "out.yaml") == cfg
    with pytest.raises(FileNotFoundError):
        config.load_config(Outer, tmp_path / "missing.yaml")


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "f.txt"
    checkpoint.atomic_write_text(target, "old")

    def boom(p):
        p.write_text("partial")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        checkpoint.atomic_write(target, boom)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]  # no temp debris


def test_registry_errors_and_listing():
    names = mmtok.list_tokenizers()
    assert names == sorted(names) and "titok_t32_fsq" in names
    assert "titok_t32_fsq" in mmtok.list_tokenizers(modality="image")
    with pytest.raises(KeyError, match="Did you mean"):
        mmtok.create_tokenizer("titok_t32_fsqq")


def test_save_load_round_trip_and_errors(tmp_path):
    tok = mmtok.create_tokenizer("titok_t32_fsq").eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    tok.save_pretrained(tmp_path / "ck")
    meta = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert meta["mmtok_version"] == mmtok.__version__ and meta["variant"] == "titok_t32_fsq"
    tok2 = mmtok.load_tokenizer(tmp_path / "ck")
    assert torch.equal(tok.encode(x), tok2.encode(x))
    # overwrite in place: still one loadable checkpoint, no leftovers
    tok.save_pretrained(tmp_path / "ck")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
    with pytest.raises(ValueError, match="audio tokenizer is required"):
        mmtok.load_tokenizer(tmp_path / "ck", modality="audio")
    with pytest.raises(FileNotFoundError, match="not found"):
        mmtok.load_tokenizer(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="hub id"):
        mmtok.load_tokenizer("no-such-org/no-such-model-xyz")
    (tmp_path / "ck" / "config.json").write_text("{broken")
    with pytest.raises(ValueError, match="not valid JSON"):
        mmtok.load_tokenizer(tmp_path / "ck")


def test_cli_help_version_list(capsys):
    assert cli.main(["list", "titok_t32"]) == 0
    out = capsys.readouterr().out
    assert "titok_t32_fsq" in out and "fsq" in out
    res = subprocess.run([sys.executable, "-m", "mmtok.cli", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and mmtok.__version__ in res.stdout
    res = subprocess.run([sys.executable, "-m", "mmtok.cli", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "encode" in res.stdout and "train" in res.stdout
    res = subprocess.run([sys.executable, "-m", "mmtok.cli", "bogus"], capture_output=True, text=True)
    assert res.returncode != 0 and "invalid choice" in res.stderr
