"""A corpus of hostile image files, generated at test time, through ``mmtok encode``,
``mmtok eval`` and ``mmtok train``: every file is either read correctly (checked against a
reference conversion written here with numpy) or skipped and reported; exit codes are 0
when something was readable, 2 (one ``mmtok <cmd>: error:`` line) when nothing was."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mmtok
from mmtok.data import open_dataset
from mmtok.data.transforms import pil_to_tensor, resize_crop

RES = 32
WHITE = 255.0


def _gradient(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx / (w - 1), yy / (h - 1), (xx + yy) / (h + w - 2)], -1)
    return np.clip(base * 0.8 + rng.random((h, w, 3)) * 0.2, 0, 1)


def _bomb_png(path: Path, side: int = 30_000) -> None:
    """A valid PNG header announcing side x side pixels (900 M; Pillow refuses above ~179 M)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def make_corpus(root: Path) -> tuple[dict[str, np.ndarray], set[str]]:
    """Write the corpus under ``root``; returns (readable key -> reference uint8 RGB array, unreadable keys)."""
    root.mkdir(parents=True, exist_ok=True)
    ref: dict[str, np.ndarray] = {}
    g = _gradient(40, 48, 0)

    rgb = (g * 255).round().astype(np.uint8)
    Image.fromarray(rgb).save(root / "rgb.png")
    ref["rgb"] = rgb

    g16 = (g[..., 0] * 65535).round().astype(np.uint16)
    im16 = Image.fromarray(g16)
    im16.save(root / "gray16.png")
    ref["gray16"] = np.repeat(np.round(g16 / 65535.0 * 255.0).astype(np.uint8)[..., None], 3, -1)

    pal = Image.fromarray(rgb).quantize(colors=16)
    pal.save(root / "palette.png")
    ref["palette"] = np.asarray(pal.convert("RGB"))

    alpha = (g[..., 1] * 255).round().astype(np.uint8)
    gray = (g[..., 2] * 255).round().astype(np.uint8)
    Image.fromarray(np.stack([gray, alpha], -1), mode="LA").save(root / "gray_alpha.png")
    a = alpha / 255.0
    ref["gray_alpha"] = np.repeat(np.round(gray * a + WHITE * (1 - a)).astype(np.uint8)[..., None], 3, -1)

    Image.fromarray(np.concatenate([rgb, alpha[..., None]], -1), mode="RGBA").save(root / "rgba.png")
    ref["rgba"] = np.round(rgb * a[..., None] + WHITE * (1 - a[..., None])).astype(np.uint8)

    Image.fromarray(rgb).convert("CMYK").save(root / "cmyk.jpg", quality=95)
    with Image.open(root / "cmyk.jpg") as im:
        assert im.mode == "CMYK"
        cmyk = np.asarray(im).astype(np.float64) / 255.0
    ref["cmyk"] = np.round(255.0 * (1 - cmyk[..., :3]) * (1 - cmyk[..., 3:])).astype(np.uint8)

    Image.fromarray(np.full((1, 1, 3), (200, 30, 90), np.uint8)).save(root / "one_pixel.png")
    ref["one_pixel"] = np.full((1, 1, 3), (200, 30, 90), np.uint8)

    Image.fromarray(rgb[::-1]).save(root / "ünïcødé 画像.png")
    ref["ünïcødé 画像"] = rgb[::-1].copy()

    Image.fromarray(g[..., 1].astype(np.float32), mode="F").save(root / "float32.tiff")
    ref["float32"] = np.repeat(np.round(g[..., 1] * 255.0).astype(np.uint8)[..., None], 3, -1)
    Image.fromarray((g[..., 1] * 4 - 1).astype(np.float32), mode="F").save(root / "float_out_of_range.tiff")

    full = (root / "rgb.png").read_bytes()
    (root / "truncated.png").write_bytes(full[: len(full) // 2])
    (root / "empty.png").write_bytes(b"")
    (root / "text.jpg").write_text("this is not an image\n")
    _bomb_png(root / "bomb.png")
    return ref, {"truncated", "empty", "text", "bomb", "float_out_of_range"}


def _expected_tensor(arr: np.ndarray) -> torch.Tensor:
    """The model input of a reference array: the same resize / center crop as every image."""
    return pil_to_tensor(resize_crop(Image.fromarray(arr), RES, "center"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_inputs") / "images"
    ref, bad = make_corpus(root)
    return root, ref, bad


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tok"
    mmtok.create_tokenizer("titok_t32_fsq").save_pretrained(path)
    return path


def test_bomb_below_the_hard_limit_is_refused_not_decoded(tmp_path):
    """Between Pillow's warning (89 M px) and error (179 M px) limits it would decode: refused."""
    _bomb_png(tmp_path / "big.png", side=10_000)  # 100 M pixels
    ds = open_dataset(tmp_path, modality="image", resolution=RES)
    item = ds[0]
    assert item["x"] is None and "DecompressionBomb" in item["error"]


def test_every_file_is_read_correctly_or_reported(corpus):
    root, ref, bad = corpus
    ds = open_dataset(root, modality="image", resolution=RES)
    seen_ok, seen_bad = set(), set()
    for i in range(len(ds)):
        item = ds[i]
        if item["x"] is None:
            assert item["error"] and item["path"].startswith(str(root))
            seen_bad.add(item["key"])
            continue
        seen_ok.add(item["key"])
        exp = _expected_tensor(ref[item["key"]])
        # 8-bit sources are exact; 16-bit and float sources are resized in float (finer than the
        # 8-bit reference here), CMYK goes through a JPEG decoder: 1.5 8-bit levels of slack
        tol = 1.5 * 2.0 / 255 if item["key"] in ("cmyk", "gray16", "float32") else 1e-6
        torch.testing.assert_close(item["x"], exp, atol=tol, rtol=0, msg=lambda m, k=item["key"]: f"{k}: {m}")
    assert seen_ok == set(ref) and seen_bad == bad
    g16 = ds[[p.stem for p in ds.files].index("gray16")]["x"]
    assert (g16 >= 0.999).float().mean() < 0.1  # not clipped to white


def test_encode_writes_the_readable_and_lists_the_rest(corpus, checkpoint, tmp_path, capsys):
    from mmtok.cli import main
    from mmtok.shards.format import list_shard_files, read_shard

    root, ref, bad = corpus
    out = tmp_path / "shards"
    assert main(["encode", str(checkpoint), str(root), str(out), "--batch-size", "3", "--no-progress"]) == 0
    console = capsys.readouterr().out
    assert f"{len(bad)} inputs skipped" in console and "errors.jsonl" in console
    rows = [r for f in list_shard_files(out) for r in read_shard(f).to_pylist()]
    assert {r["key"] for r in rows} == set(ref)
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert {Path(e["path"]).stem for e in errors} == bad and all(e.get("error") for e in errors)
    tok = mmtok.load_tokenizer(checkpoint)
    exact = [r for r in rows if r["key"] not in ("cmyk", "gray16", "float32")]  # 8-bit sources: bit-exact inputs
    x = torch.stack([_expected_tensor(ref[r["key"]]) for r in exact])
    want = tok.encode(x).reshape(x.shape[0], -1)
    got = torch.tensor([r["codes"] for r in exact])
    assert torch.equal(got, want)  # each readable file encoded from the reference conversion


def test_encode_of_only_bad_files_fails_cleanly(corpus, checkpoint, tmp_path, capsys):
    from mmtok.cli import main

    root, _, bad = corpus
    only_bad = tmp_path / "only_bad"
    only_bad.mkdir()
    for name in ("truncated.png", "empty.png", "text.jpg", "bomb.png", "float_out_of_range.tiff"):
        (only_bad / name).write_bytes((root / name).read_bytes())
    out = tmp_path / "shards"
    assert main(["encode", str(checkpoint), str(only_bad), str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "mmtok encode: error:" in err and "5" in err and "errors.jsonl" in err and "Traceback" not in err
    assert not list(out.glob("*.parquet"))


def test_eval_skips_and_reports(corpus, checkpoint, tmp_path, capsys):
    from mmtok.cli import main

    root, ref, bad = corpus
    out = tmp_path / "eval"
    assert main(["eval", str(checkpoint), "--data", str(root), "--no-fid", "--lpips-weights", "none", "--batch-size", "4",
                 "--out", str(out), "--no-progress"]) == 0
    console = capsys.readouterr().out
    assert f"skipped {len(bad)} unreadable item(s)" in console
    report = json.loads((out / "report.json").read_text())
    assert report["num_images"] == len(ref)
    assert {Path(p).stem for p, _ in report["skipped"]} == bad


def test_train_skips_and_counts(corpus, tmp_path, capsys):
    from mmtok.cli import main
    from mmtok.training.logging import read_metrics

    root, _, bad = corpus
    run = tmp_path / "run"
    args = ["train", "image/titok_t32_fsq_synthetic", f"data.train={root}", f"run_dir={run}", "optim.batch_size=4",
            "schedule.total_steps=6", "schedule.warmup_steps=1", "logging.every=3", "logging.image_every=0",
            "logging.progress=false", "logging.tensorboard=false", "checkpoint.every=6", "cpu_threads=1",
            "model.overrides.encoder_width=32", "model.overrides.encoder_depth=1", "model.overrides.encoder_heads=2",
            "model.overrides.decoder_width=32", "model.overrides.decoder_depth=1", "model.overrides.decoder_heads=2"]
    assert main(args) == 0
    rows = read_metrics(run)
    assert rows[-1]["data/skipped_files"] >= len(bad)  # 12 files, 6 steps of 4: every file read at least once
    assert "unreadable file" in (run / "train.log").read_text()
    only_bad = tmp_path / "only_bad"
    only_bad.mkdir()
    for name in ("truncated.png", "empty.png", "text.jpg", "bomb.png"):
        (only_bad / name).write_bytes((root / name).read_bytes())
    capsys.readouterr()
    assert main([*args[:2], f"data.train={only_bad}", f"run_dir={tmp_path / 'run2'}", *args[4:]]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # the log lines above go to stderr too
    assert last.startswith("mmtok train: error: no readable item") and "Traceback" not in err
