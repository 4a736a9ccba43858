"""``mmtok eval`` on a video checkpoint: rFVD with local I3D weights, per-frame curves, MP4 / GIF / PNG samples,
one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import mmtok
from mmtok.data.video import probe_video, save_video
from mmtok.io import file_sha256
from mmtok.metrics.cli import eval_main
from mmtok.metrics.video.i3d import save_random_i3d_weights


@pytest.fixture(scope="module")
def video_ckpt(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("video") / "causal3d_tiny"
    mmtok.create_tokenizer("causal3d_tiny").save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def i3d_weights(tmp_path_factory) -> Path:
    return save_random_i3d_weights(tmp_path_factory.mktemp("i3d") / "i3d_pretrained_400.pt", seed=0)


def _args(ckpt: Path, data: str, out: Path, *extra: str) -> list[str]:
    return [str(ckpt), "--data", data, "--lpips-weights", "random", "--batch-size", "2", "--out", str(out),
            "--no-progress", *extra]


def test_eval_reports_rfvd_per_frame_curves_and_samples(video_ckpt, i3d_weights, tmp_path, capsys):
    out = tmp_path / "ev"
    assert eval_main(_args(video_ckpt, "synthetic:4", out, "--i3d-weights", str(i3d_weights))) == 0
    assert "rFVD" in capsys.readouterr().out
    rep = json.loads((out / "report.json").read_text())
    assert rep["num_clips"] == 4
    m = rep["metrics"]
    assert m["rfvd"] >= 0 and m["psnr"] > 0 and 0 < m["lpips"] and -1 <= m["ssim"] <= 1
    assert m["tokens_per_clip"] == 3 * 8 * 8
    curves = rep["per_frame"]
    assert curves["frame"] == list(range(9)) and all(len(curves[k]) == 9 for k in ("psnr", "ssim", "lpips"))
    assert sum(curves["psnr"]) / 9 == pytest.approx(m["psnr"])
    p = rep["protocol"]
    assert p["feature_extractor"]["weights_sha256"] == file_sha256(i3d_weights)
    assert (p["num_frames"], p["fps"], p["resolution"], p["num_clips"]) == (9, 8.0, [32, 32], 4)
    samples = out / "samples"
    for ext in (".mp4", ".gif", "_frames.png"):
        assert len(list(samples.glob(f"*{ext}"))) == 4, ext
    info = probe_video(next(samples.glob("*.mp4")))
    assert info.num_frames == 9 and info.fps == 8.0 and (info.height, info.width) == (32, 64)  # original | recon
    assert (out / "per_frame.png").is_file() and (out / "report.md").is_file()


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("mmtok eval: error: ") and err.count("\n") == 1, err
    return err


def test_eval_video_bad_input_is_one_line(video_ckpt, i3d_weights, tmp_path, capsys, monkeypatch):
    short = tmp_path / "short"
    short.mkdir()
    for name in ("a", "b"):  # 5 frames; the tokenizer's clips have 9
        save_video(short / f"{name}.mp4", torch.zeros(3, 5, 32, 32), 8)
    assert eval_main(_args(video_ckpt, str(short), tmp_path / "e1", "--i3d-weights", str(i3d_weights))) == 2
    assert "too short" in _one_error_line(capsys)

    missing = tmp_path / "nowhere" / "i3d_pretrained_400.pt"
    assert eval_main(_args(video_ckpt, "synthetic:4", tmp_path / "e2", "--i3d-weights", str(missing))) == 2
    err = _one_error_line(capsys)
    assert str(missing) in err and "i3d_pretrained_400.pt" in err

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))  # 'auto': the torch hub cache, empty here
    assert eval_main(_args(video_ckpt, "synthetic:4", tmp_path / "e3")) == 2
    err = _one_error_line(capsys)
    where = Path(torch.hub.get_dir()) / "checkpoints" / "i3d_pretrained_400.pt"  # TORCH_HOME/hub/checkpoints
    assert str(where) in err and str(where).startswith(str(tmp_path)) and "place the file i3d_pretrained_400.pt" in err
