"""No file mmtok reads as weights or state ever runs code: a crafted pickle that would create a
marker file is refused with a clear error, and the marker never appears."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch


class _Payload:
    """Unpickling this calls ``os.system("touch <marker>")``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def evil(tmp_path):
    """(crafted .pth path, marker path): loading the file with plain pickle creates the marker."""
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    torch.save({"conv.weight": torch.zeros(1), "x": _Payload(marker)}, path)
    yield path, marker
    assert not marker.exists(), "a crafted weights file executed code"


def test_the_payload_is_live(tmp_path):
    """Guard against a vacuous test: unpickling the file without the protection does run it."""
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    torch.save({"x": _Payload(marker)}, path)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_weights_loader_refuses_pickled_code(evil):
    from mmtok.weights import WeightsError, load_state_dict_file

    with pytest.raises(WeightsError, match="not a plain tensor file.*never unpickles"):
        load_state_dict_file(evil[0], "test weights")


def test_inception_weights_never_unpickle(evil):
    from mmtok.metrics.image.inception import InceptionFeatures

    with pytest.raises(ValueError, match="refusing to load Inception-v3 FID weights"):
        InceptionFeatures(evil[0])


def test_lpips_trunk_and_perceptual_loss_never_unpickle(evil):
    from mmtok.layers.lpips import LPIPS
    from mmtok.losses import build_loss_term

    with pytest.raises(ValueError, match="refusing to load LPIPS vgg trunk"):
        LPIPS(net="vgg", weights=evil[0])
    with pytest.raises(ValueError, match="refusing to load"):
        build_loss_term("perceptual", weights=str(evil[0]))


def test_mmtok_eval_inception_weights_flag(evil, tmp_path, capsys):
    import mmtok
    from mmtok.metrics.cli import eval_main

    tok = mmtok.create_tokenizer("titok_t32_fsq", image_size=32)
    tok.save_pretrained(tmp_path / "tok")
    code = eval_main([str(tmp_path / "tok"), "--data", "synthetic:4", "--batch-size", "2", "--lpips-weights", "none",
                      "--inception-weights", str(evil[0]), "--out", str(tmp_path / "ev"), "--no-progress", "--no-cache"])
    err = capsys.readouterr().err
    assert code == 2 and "mmtok eval: error: refusing to load" in err and "Traceback" not in err


def test_resume_state_never_unpickles(evil, tmp_path):
    from mmtok.checkpoint import load_training_state, save_training_state

    step = save_training_state(tmp_path / "ckpts", 1, modules={}, objects={"optimizer": {"lr": torch.tensor(1.0)}})
    (Path(step) / "optimizer.pt").write_bytes(evil[0].read_bytes())
    with pytest.raises(ValueError, match="refusing to load .*optimizer.pt"):
        load_training_state(step)


def test_reference_stats_npz_with_objects_is_refused(tmp_path):
    from mmtok.metrics.fid import GaussianStats

    marker = tmp_path / "code_ran"
    path = tmp_path / "ref.npz"
    np.savez(path, mu=np.zeros(2), sigma=np.array([_Payload(marker)], dtype=object))
    with pytest.raises(ValueError, match="refusing to load .*pickled objects"):
        GaussianStats.load(path)
    assert not marker.exists()


def test_tokenizer_weights_are_safetensors_only(evil, tmp_path):
    import mmtok

    tok = mmtok.create_tokenizer("titok_t32_fsq", image_size=32)
    tok.save_pretrained(tmp_path / "tok")
    (tmp_path / "tok" / "model.safetensors").write_bytes(evil[0].read_bytes())
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        mmtok.load_tokenizer(tmp_path / "tok")
