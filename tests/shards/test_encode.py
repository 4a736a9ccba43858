"""Encode pipeline: exact decode round trip, errors listed, resume after SIGKILL, two ranks, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mmtok
from mmtok.shards import ShardMismatchError, TokenDataset, decode_shards, encode_dataset, expected_metadata, read_shard
from mmtok.shards.encode import finished_shards, read_errors

REPO = Path(__file__).resolve().parents[2]


def _rows(out: Path) -> dict[tuple[str, str], list[int]]:
    """All stored items of a shard folder as {(key, aug): codes}."""
    rows = {}
    for f in sorted(out.glob("shard-*.parquet")):
        t = read_shard(f).to_pydict()
        for k, a, c in zip(t["key"], t["aug"], t["codes"]):
            assert (k, a) not in rows
            rows[(k, a)] = c
    return rows


def _shard_bytes(out: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted(out.glob("shard-*.parquet"))}


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    """8 good PNGs in two classes plus three bad files (garbage, truncated, text)."""
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i in range(8):
        d = root / ("cats" if i % 2 else "dogs")
        d.mkdir(exist_ok=True)
        arr = (rng.random((40, 36, 3)) * 255).astype(np.uint8)
        mode = "L" if i == 5 else "RGB"  # a grayscale one must be converted, not fail
        Image.fromarray(arr if mode == "RGB" else arr[..., 0], mode).save(d / f"img{i:02d}.png")
    (root / "dogs" / "garbage.png").write_bytes(b"\x00not an image at all" * 10)
    good = (root / "cats" / "img01.png").read_bytes()
    (root / "cats" / "truncated.png").write_bytes(good[: len(good) // 3])
    (root / "dogs" / "notes.jpg").write_text("this is text")
    return root


def test_encode_decode_reproduces_tokenizer_reconstructions_and_lists_errors(tmp_path, tiny_ckpt, image_folder):
    out = tmp_path / "tok"
    res = encode_dataset(tiny_ckpt, image_folder, out, batch_size=4, shard_size=6, num_workers=0, progress=False)
    assert res.manifest is not None and res.manifest["num_items"] == 8
    errs = read_errors(out)
    assert sorted(Path(e["path"]).name for e in errs) == ["garbage.png", "notes.jpg", "truncated.png"]
    assert all(e["error"] for e in errs)

    tok = mmtok.load_tokenizer(tiny_ckpt)
    from mmtok.data import collate, open_dataset, to_uint8

    ds = open_dataset(str(image_folder), modality="image", resolution=32)
    items = {it["key"]: it for it in (ds[i] for i in range(len(ds))) if it["x"] is not None}
    stored = _rows(out)
    assert {k for k, _ in stored} == set(items)
    ref = {}
    for f in sorted(out.glob("shard-*.parquet")):  # the tokenizer's own round trip, shard by shard
        keys = read_shard(f, ["key"]).column("key").to_pylist()
        x = collate([items[k] for k in keys])["x"]
        with torch.inference_mode():
            codes = tok.encode(x)
            ref.update(zip(keys, tok.decode(codes)))
        for i, k in enumerate(keys):
            assert stored[(k, "orig")] == codes[i].tolist()
    got = {}
    for b in decode_shards(out, batch_size=64, device="cpu"):
        got.update(zip(b["key"], b["recon"]))
    assert got.keys() == ref.keys()
    for k in ref:
        assert torch.equal(got[k], ref[k]), k

    # CLI decode writes PNGs equal to the tokenizer's own reconstructions in uint8.
    from mmtok.shards.cli import decode_main

    assert decode_main([str(out), str(tmp_path / "png"), "--no-progress", "--device", "cpu", "--limit", "6"]) == 0
    pngs = sorted((tmp_path / "png").glob("*.png"))
    assert len(pngs) == 6
    key = next(iter(ref))
    png = np.asarray(Image.open(tmp_path / "png" / f"{key.replace('/', '_')}.png"))
    np.testing.assert_array_equal(png, to_uint8(ref[key][None])[0].permute(1, 2, 0).numpy())


def test_flip_and_multicrop_copies_are_encodings_of_the_views(tmp_path, tiny_ckpt):
    out = tmp_path / "aug"
    encode_dataset(tiny_ckpt, "synthetic:6", out, batch_size=3, shard_size=6, num_workers=0, flip=True, crops=2,
                   crop_scale=1.25, progress=False)
    rows = _rows(out)
    assert {a for _, a in rows} == {"crop0", "crop0+flip", "crop1", "crop1+flip"}
    tok = mmtok.load_tokenizer(tiny_ckpt)
    from mmtok.data import open_dataset

    x = open_dataset("synthetic:6", resolution=40)[2]["x"][None]  # 32 * 1.25
    with torch.inference_mode():
        c0 = tok.encode(x[..., 4:36, 4:36])
        c1f = tok.encode(torch.flip(x[..., :32, :32], dims=[-1]))
    assert rows[("synthetic/000002", "crop0")] == c0[0].tolist()
    assert rows[("synthetic/000002", "crop1+flip")] == c1f[0].tolist()


def test_rerun_skips_finished_shards_and_refuses_another_tokenizer(tmp_path, tiny_ckpt, other_ckpt, capsys):
    out = tmp_path / "tok"
    kw = dict(batch_size=4, shard_size=4, num_workers=0, progress=False)
    encode_dataset(tiny_ckpt, "synthetic:10", out, **kw)
    before = _shard_bytes(out)
    mtimes = {f.name: f.stat().st_mtime_ns for f in out.glob("shard-*")}
    (out / "shard-000001.parquet").unlink()
    res = encode_dataset(tiny_ckpt, "synthetic:10", out, **kw)
    assert res.shards_skipped == [0, 2] and res.shards_written == [1]
    assert _shard_bytes(out) == before
    assert (out / "shard-000000.parquet").stat().st_mtime_ns == mtimes["shard-000000.parquet"]
    with pytest.raises(ShardMismatchError, match="checkpoint_hash"):
        encode_dataset(other_ckpt, "synthetic:10", out, **kw)
    from mmtok.shards.cli import encode_main

    rc = encode_main([str(other_ckpt), "synthetic:10", str(out), "--batch-size", "4", "--shard-size", "4",
                      "--workers", "0", "--no-progress"])
    assert rc == 2 and "checkpoint_hash" in capsys.readouterr().err
    assert _shard_bytes(out) == before  # nothing was overwritten
    # Trainers pin the tokenizer: matching shards load, another checkpoint is refused.
    assert TokenDataset(out, expect=expected_metadata(tiny_ckpt)).num_items == 10
    with pytest.raises(ShardMismatchError, match="checkpoint_hash"):
        TokenDataset(out, expect=expected_metadata(other_ckpt))


def _encode_one_thread(*args, **kw):
    """In-process encode with one intra-op thread (like the subprocess runs), for byte equality."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return encode_dataset(*args, num_workers=0, progress=False, **kw)
    finally:
        torch.set_num_threads(threads)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mmtok.cli", *args]


def _env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO))


def test_sigkill_mid_run_then_rerun_gives_identical_shards(tmp_path, tiny_ckpt):
    args = ["encode", str(tiny_ckpt), "synthetic:48", None, "--batch-size", "4", "--shard-size", "4",
            "--workers", "0", "--no-progress"]
    ref, out = tmp_path / "ref", tmp_path / "killed"
    proc = subprocess.Popen(_cli(*[a if a else str(out) for a in args]), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not list(out.glob("shard-*.parquet")) if out.exists() else True:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline, "encode wrote no shard in time"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = finished_shards(out)
    assert 1 <= len(partial) < 12, partial  # really killed mid-run
    assert not (out / "manifest.json").exists()
    subprocess.run(_cli(*[a if a else str(out) for a in args]), env=_env(), check=True, capture_output=True)
    _encode_one_thread(tiny_ckpt, "synthetic:48", ref, batch_size=4, shard_size=4)  # uninterrupted reference
    assert finished_shards(out) == list(range(12))
    assert _shard_bytes(out) == _shard_bytes(ref)
    m_out, m_ref = (json.loads((d / "manifest.json").read_text()) for d in (out, ref))
    assert m_out == m_ref and m_out["num_items"] == 48
    assert not list(out.glob(".*.tmp"))


def _rank_worker(rank: int, world: int, init: str, ckpt: str, out: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        encode_dataset(ckpt, "synthetic:20", out, batch_size=4, shard_size=4, num_workers=0, progress=False)
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_rank_gloo_encode_equals_one_rank(tmp_path, tiny_ckpt):
    two, one = tmp_path / "two", tmp_path / "one"
    init = f"file://{tmp_path / 'rdzv'}"
    torch.multiprocessing.spawn(_rank_worker, args=(2, init, str(tiny_ckpt), str(two)), nprocs=2, join=True)
    _encode_one_thread(tiny_ckpt, "synthetic:20", one, batch_size=4, shard_size=4)
    assert _rows(two) == _rows(one) and len(_rows(one)) == 20
    assert _shard_bytes(two) == _shard_bytes(one)  # shard i is the same file whatever the rank count
    assert json.loads((two / "manifest.json").read_text()) == json.loads((one / "manifest.json").read_text())


def test_ranks_without_coordination_and_inspect_cli(tmp_path, tiny_ckpt, capsys):
    out = tmp_path / "tok"
    kw = dict(batch_size=4, shard_size=4, num_workers=0, progress=False)
    r1 = encode_dataset(tiny_ckpt, "synthetic:18", out, rank=1, world_size=2, **kw)
    assert r1.shards_written == [1, 3] and r1.manifest is None  # rank 0 not done yet
    r0 = encode_dataset(tiny_ckpt, "synthetic:18", out, rank=0, world_size=2, **kw)
    assert r0.shards_written == [0, 2, 4] and r0.manifest["num_items"] == 18
    one = encode_dataset(tiny_ckpt, "synthetic:18", tmp_path / "one", **kw)
    assert _rows(tmp_path / "one") == _rows(out)  # two ranks == one rank, as a set of items
    assert _shard_bytes(tmp_path / "one") == _shard_bytes(out)
    assert one.manifest == r0.manifest
    from mmtok.shards.cli import inspect_main

    assert inspect_main([str(out)]) == 0
    text = capsys.readouterr().out
    assert "titok_t32_fsq" in text and "items 18" in text and "token id histogram" in text
    assert inspect_main([str(out), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["num_tokens"] == 18 * 32 and sum(stats["histogram"]) == 18 * 32


def test_tar_shard_input_with_a_corrupt_member(tmp_path, tiny_ckpt, image_folder):
    import io
    import tarfile

    tars = []
    for t in range(2):
        path = tmp_path / f"data-{t:04d}.tar"
        with tarfile.open(path, "w") as tf:
            for i in range(3):
                j = (t * 3 + i) % 8
                src = image_folder / ("cats" if j % 2 else "dogs") / f"img{j:02d}.png"
                data = src.read_bytes() if (t, i) != (1, 1) else b"\x89PNG broken"
                info = tarfile.TarInfo(f"sample{i:03d}.png")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
                cls = str(i).encode()
                info = tarfile.TarInfo(f"sample{i:03d}.cls")
                info.size = len(cls)
                tf.addfile(info, io.BytesIO(cls))
        tars.append(path)
    out = tmp_path / "tok"
    res = encode_dataset(tiny_ckpt, str(tmp_path / "data-{0000..0001}.tar"), out, batch_size=2, shard_size=4,
                         num_workers=1, progress=False)
    assert res.manifest["num_items"] == 5 and res.manifest["num_errors"] == 1
    (err,) = read_errors(out)
    assert "data-0001.tar" in err["path"] and "sample001" in err["path"]
    labels = {k: lab for f in sorted(out.glob("shard-*")) for k, lab in zip(*read_shard(f, ["key", "label"]).to_pydict().values())}
    assert labels["data-0000/sample002"] == 2
