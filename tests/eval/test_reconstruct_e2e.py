"""End to end: train a tiny nested tokenizer a few steps, save it, evaluate it with ``mmtok eval``."""

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import mmtok
from mmtok.data import make_loader, open_image_dataset
from mmtok.io import file_sha256
from mmtok.metrics.cli import eval_main
from mmtok.metrics.image.inception import INCEPTION_WEIGHTS_NAME

ENTRY_POINT = Path(__file__).resolve().parents[2] / "eval" / "reconstruct.py"


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory):
    tok = mmtok.create_tokenizer("flextok_t32_fsq")
    opt = torch.optim.AdamW(tok.parameters(), lr=1e-3)
    tok.train()
    for _, batch in zip(range(2), make_loader(open_image_dataset("synthetic:8", 32), 4, shuffle=True)):
        out = tok(batch["x"])
        loss = (out.recon - batch["x"]).abs().mean() + out.loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    run = tmp_path_factory.mktemp("run")
    tok.save_pretrained(run / "final")
    return run / "final"


def test_eval_cli_writes_complete_report(trained_checkpoint, inception_weights, tmp_path):
    out, cache = tmp_path / "eval", tmp_path / "cache"
    common = ["--data", "synthetic:2", "--inception-weights", str(inception_weights), "--cache-dir", str(cache),
              "--batch-size", "2", "--no-progress"]
    rc = eval_main([str(trained_checkpoint), *common, "--out", str(out), "--prefixes", "8", "--lpips-weights", "random"])
    assert rc == 0
    rep = json.loads((out / "report.json").read_text())
    m = rep["metrics"]
    for k in ("rfid", "psnr", "ssim", "lpips", "tokens_per_image", "bits_per_pixel", "bits_per_image"):
        assert m[k] is not None and np.isfinite(m[k]), k
    assert m["rfid"] > 0 and 0 < m["psnr"] < 100 and -1 <= m["ssim"] <= 1 and m["lpips"] >= 0
    assert m["tokens_per_image"] == 32
    cb = rep["codebook"]
    assert cb["codes_counted"] == 2 * 32 and 0 < cb["usage"] <= 1 and 1 <= cb["perplexity"] <= 1000
    assert 0 <= cb["entropy_bits"] <= np.log2(1000)
    tp = rep["throughput"]
    assert tp["encode_images_per_s"] > 0 and tp["decode_images_per_s"] > 0 and tp["eval_images_per_s"] > 0
    # nested tokenizer: one row per prefix length, full length last and equal to the headline numbers
    assert [r["tokens"] for r in rep["prefix"]] == [8, 32]
    assert rep["prefix"][-1]["rfid"] == m["rfid"] and rep["prefix"][0]["bits_per_pixel"] < m["bits_per_pixel"]
    # the protocol fingerprint pins features, weights, resize, resolution, N and the dataset
    p = rep["protocol"]
    assert p["feature_extractor"]["weights_sha256"] == file_sha256(inception_weights)
    assert "TF1.x" in p["feature_extractor"]["resize"] and p["resolution"] == [32, 32] and p["num_images"] == 2
    assert p["dataset"]["spec"] == "synthetic:2" and p["crop"] == "center" and len(p["id"]) == 16
    for f in ("report.md", "recon_grid.png", "prefix_curve.png"):
        assert (out / f).stat().st_size > 0
    arr = np.load(out / "reconstructions.npz")["arr_0"]
    assert arr.shape == (2, 32, 32, 3) and arr.dtype == np.uint8
    # the saved reconstructions are exactly what the checkpoint decodes
    tok = mmtok.load_tokenizer(trained_checkpoint)
    ds = open_image_dataset("synthetic:2", 32)
    x = torch.stack([ds[i]["x"] for i in range(2)])
    with torch.no_grad():
        rec = ((tok.decode(tok.encode(x)).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    np.testing.assert_array_equal(arr, rec.permute(0, 2, 3, 1).numpy())


def test_eval_cli_bad_input(trained_checkpoint, tmp_path, capsys, monkeypatch):
    # a checkpoint of another modality
    other = tmp_path / "tactile_ckpt"
    other.mkdir()
    meta = json.loads((trained_checkpoint / "config.json").read_text())
    meta["modality"] = "tactile"
    (other / "config.json").write_text(json.dumps(meta))
    (other / "model.safetensors").write_bytes((trained_checkpoint / "model.safetensors").read_bytes())
    assert eval_main([str(other), "--data", "synthetic:2", "--no-fid"]) == 2
    err = capsys.readouterr().err
    assert "no metric suite for 'tactile'" in err and err.startswith("mmtok eval: error: ") and err.count("\n") == 1
    # images of the wrong size
    assert eval_main([str(trained_checkpoint), "--data", "synthetic:2", "--resolution", "48", "--no-fid",
                        "--lpips-weights", "none", "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "48x48 images but the tokenizer expects 32x32" in capsys.readouterr().err
    # an empty dataset
    (tmp_path / "empty").mkdir()
    assert eval_main([str(trained_checkpoint), "--data", str(tmp_path / "empty"), "--no-fid"]) == 2
    assert "no images" in capsys.readouterr().err
    # no Inception weights available offline: the error names the file and the folder
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    assert eval_main([str(trained_checkpoint), "--data", "synthetic:2", "--lpips-weights", "none",
                        "--out", str(tmp_path / "o2"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert INCEPTION_WEIGHTS_NAME in err and str(tmp_path / "hub" / "checkpoints") in err
    # a missing checkpoint, through the `mmtok eval` dispatcher
    from mmtok.cli import main as mmtok_main

    assert mmtok_main(["eval", str(tmp_path / "nope"), "--data", "synthetic:2"]) == 2
    assert "not found" in capsys.readouterr().err


def test_errors_are_one_line_unless_debug(tmp_path, capsys):
    missing = str(tmp_path / "nope")
    assert eval_main([missing, "--data", "synthetic:2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mmtok eval: error: ") and err.count("\n") == 1 and "Traceback" not in err
    with pytest.raises(FileNotFoundError):
        eval_main([missing, "--data", "synthetic:2", "--debug"])
    assert eval_main(["--no-such-option"]) == 2  # usage errors: argparse's own one-liner
    assert "mmtok eval: error:" in capsys.readouterr().err


def test_skipped_files_are_counted_on_the_console(trained_checkpoint, tmp_path, capsys):
    from PIL import Image

    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(2):
        Image.fromarray((np.random.default_rng(i).random((32, 32, 3)) * 255).astype(np.uint8)).save(root / f"{i}.png")
    (root / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "eval"
    assert eval_main([str(trained_checkpoint), "--data", str(root), "--no-fid", "--lpips-weights", "none",
                        "--out", str(out), "--no-progress", "--no-npz"]) == 0
    printed = capsys.readouterr().out
    assert "skipped 1 unreadable item(s)" in printed and "broken.png" in printed and str(out / "report.json") in printed
    assert json.loads((out / "report.json").read_text())["skipped"][0][0].endswith("broken.png")


def test_thin_entry_point(monkeypatch, capsys):
    """eval/reconstruct.py only calls the packaged driver."""
    monkeypatch.setattr(sys, "argv", [str(ENTRY_POINT), "--help"])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(ENTRY_POINT), run_name="__main__")
    assert e.value.code == 0 and "--inception-weights" in capsys.readouterr().out
