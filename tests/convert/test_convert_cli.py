"""``mmtok convert``: the format registry, detection and its errors (no reference package needed)."""

from __future__ import annotations

import pytest
import torch

import mmtok
from mmtok.cli import main
from mmtok.convert import ConversionError, convert_checkpoint, list_converters


def test_every_format_is_listed(capsys):
    names = set(list_converters())
    assert main(["convert", "--list"]) == 0
    out = capsys.readouterr().out
    for n in names:
        assert n in out


def test_foreign_state_dict_is_refused_with_one_line(tmp_path, capsys):
    src = tmp_path / "foreign.pth"
    torch.save({"backbone.layer1.weight": torch.zeros(3, 3)}, src)
    with pytest.raises(ConversionError, match="matches no known reference layout"):
        convert_checkpoint(src)
    assert main(["convert", str(src), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mmtok convert: error:")
    assert not (tmp_path / "out").exists()


def test_damaged_and_missing_files(tmp_path, capsys):
    bad = tmp_path / "damaged.pth"
    bad.write_bytes(b"\x80\x02not a checkpoint")
    assert main(["convert", str(bad), str(tmp_path / "o1")]) == 2
    assert "cannot read reference checkpoint" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "nope.pth"), str(tmp_path / "o2")]) == 2
    assert "not found" in capsys.readouterr().err
    with pytest.raises(ConversionError, match="unknown checkpoint format"):
        convert_checkpoint(bad, format="no-such-format")


def test_existing_output_needs_force(tmp_path, capsys):
    src = tmp_path / "foreign.pth"
    torch.save({"w": torch.zeros(1)}, src)
    (tmp_path / "out").mkdir()
    assert main(["convert", str(src), str(tmp_path / "out")]) == 2
    assert "--force" in capsys.readouterr().err


def test_load_tokenizer_still_reads_mmtok_folders(tmp_path):
    tok = mmtok.create_tokenizer("titok_t32_fsq", num_tokens=8, encoder_depth=1, decoder_depth=1)
    tok.save_pretrained(tmp_path / "t")
    again = mmtok.load_tokenizer(tmp_path / "t")
    assert type(again) is type(tok)
    with pytest.raises(FileNotFoundError):
        mmtok.load_tokenizer(tmp_path / "missing")


def test_training_saves_with_an_argparse_namespace_load(tmp_path):
    """LlamaGen-style training saves keep their ``args`` Namespace; it loads, code never runs."""
    import argparse

    from mmtok.weights import load_checkpoint_file

    src = tmp_path / "ckpt.pt"
    torch.save({"model": {"w": torch.ones(2)}, "args": argparse.Namespace(lr=1e-4, name="vq")}, src)
    state = load_checkpoint_file(src)
    assert state["args"].lr == 1e-4 and torch.equal(state["model"]["w"], torch.ones(2))
