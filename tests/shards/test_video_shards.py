"""Video token shards: clip chunks of real MP4 files, per-clip frame rates, MP4 decode, inspect, t-major AR rows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import torch

import mmtok
from mmtok.data import collate, open_dataset, to_uint8
from mmtok.data.video import load_video, probe_video, save_video
from mmtok.shards import (
    ShardMismatchError,
    TokenDataset,
    decode_shards,
    encode_dataset,
    load_metadata,
    read_shard,
    resolve_shards,
)
from mmtok.shards.cli import decode_main, encode_main, inspect_main
from mmtok.shards.encode import read_errors
from mmtok.shards.format import build_table, shard_name, write_manifest, write_shard
from mmtok.shards.writers import DEFAULT_FPS, sample_writer_for

GRID = [3, 8, 8]  # causal3d_tiny: 9 frames of 32 px, 4x4x4 -> (3, 8, 8) codes, FSQ 1000
# name -> (frames, height, width, fps); chunks of 9 frames: a@0, a@9 and sub/b@0, sub/b@9, sub/b@18.
VIDEOS = {"a": (19, 32, 40, 12), "sub/b": (30, 48, 48, 24), "short": (5, 32, 32, 8)}
KEYS = {"a@0": 12.0, "a@9": 12.0, "sub/b@0": 24.0, "sub/b@9": 24.0, "sub/b@18": 24.0}
KW = dict(batch_size=2, shard_size=3, num_workers=0, progress=False)


@pytest.fixture(scope="module")
def video_ckpt(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vckpt") / "causal3d_tiny"
    mmtok.create_tokenizer("causal3d_tiny").save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mp4s")
    g = torch.Generator().manual_seed(0)
    for name, (t, h, w, fps) in VIDEOS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        save_video(root / f"{name}.mp4", torch.rand(3, t, h, w, generator=g) * 2 - 1, fps)
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video" * 8)
    return root


@pytest.fixture(scope="module")
def folder_shards(tmp_path_factory, video_ckpt, video_folder) -> Path:
    out = tmp_path_factory.mktemp("vtok") / "tok"
    encode_dataset(video_ckpt, video_folder, out, **KW)
    return out


def _rows(out: Path) -> dict[str, dict]:
    return {r["key"]: r for f in sorted(out.glob("shard-*.parquet")) for r in read_shard(f).to_pylist()}


def _grid(row: dict) -> torch.Tensor:
    return torch.tensor(row["codes"]).reshape(1, *row["shape"])


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def test_synthetic_encode_records_video_metadata_and_tokenizer_codes(tmp_path, video_ckpt):
    out = tmp_path / "syn"
    res = encode_dataset(video_ckpt, "synthetic:6", out, batch_size=2, shard_size=4, num_workers=0, progress=False)
    assert res.manifest["num_items"] == 6 and len(res.manifest["shards"]) == 2
    meta = load_metadata(resolve_shards(out)[0])
    assert meta.modality == "video" and meta.token_shape == GRID and meta.codebook_sizes == [1000]
    info = meta.modality_info
    assert (info["temporal_factor"], info["spatial_factor"], info["compression"], info["causal"]) == (4, 4, [4, 4, 4], True)
    prep = meta.preprocessing
    assert (prep["num_frames"], prep["resolution"], prep["fps"], prep["frame_stride"], prep["clip"]) == (9, 32, 8.0, 1, "chunks")
    rows = _rows(out)
    assert all(r["shape"] == GRID and r["fps"] == 8.0 for r in rows.values())
    tok = mmtok.load_tokenizer(video_ckpt)
    ds = open_dataset("synthetic:6", modality="video", **tok.preprocessing())
    codes = tok.encode(torch.stack([ds[i]["x"] for i in (4, 5)]))  # shard 1, one batch
    for j, i in enumerate((4, 5)):
        assert torch.equal(_grid(rows[f"synthetic/{i:06d}"])[0], codes[j])


def test_folder_chunks_frame_rates_errors_and_codes(folder_shards, video_ckpt, video_folder):
    rows = _rows(folder_shards)
    assert {k: r["fps"] for k, r in rows.items()} == KEYS
    assert all(r["shape"] == GRID for r in rows.values())
    errors = {Path(e["path"]).name: e["error"] for e in read_errors(folder_shards)}
    assert sorted(errors) == ["broken.mp4", "short.mp4"]
    assert "too short: 5 frames" in errors["short.mp4"] and "needs 9" in errors["short.mp4"]
    manifest = json.loads((folder_shards / "manifest.json").read_text())
    assert manifest["num_items"] == 5 and manifest["num_errors"] == 2
    assert manifest["metadata"]["preprocessing"]["fps"] is None  # each file's own rate: see the fps column

    tok = mmtok.load_tokenizer(video_ckpt)
    ds = open_dataset(str(video_folder), modality="video", **tok.preprocessing(), clip="chunks")
    items = {it["key"]: it for it in (ds[i] for i in range(len(ds))) if it["x"] is not None}
    for batch in (["a@0", "a@9"], ["sub/b@0"], ["sub/b@18"]):  # batches as the encode formed them
        codes = tok.encode(collate([items[k] for k in batch])["x"])
        for j, k in enumerate(batch):
            assert torch.equal(_grid(rows[k])[0], codes[j]), k

    td = TokenDataset(folder_shards, shuffle=False)
    assert td.num_items == 5 and td.vocab_size == 1000
    assert td.codes(1).shape == tuple(GRID)
    assert np.array_equal(td[1]["input_ids"].numpy(), td.codes(1).reshape(-1).astype(np.int64))


def test_decode_writes_mp4s_at_each_clip_rate(tmp_path, folder_shards, video_ckpt):
    tok = mmtok.load_tokenizer(video_ckpt)
    rows = _rows(folder_shards)
    recon = {}
    for b in decode_shards(folder_shards, batch_size=8, device="cpu"):
        assert b["recon"].shape[1:] == (3, 9, 32, 32)
        recon.update(zip(b["key"], b["recon"]))
    out = tmp_path / "mp4"
    assert decode_main([str(folder_shards), str(out), "--no-progress", "--device", "cpu"]) == 0
    assert sorted(p.name for p in out.glob("*.mp4")) == ["a_0.mp4", "a_9.mp4", "sub_b_0.mp4", "sub_b_18.mp4", "sub_b_9.mp4"]
    for key, name in (("a@9", "a_9"), ("sub/b@18", "sub_b_18")):
        ref = tok.decode(_grid(rows[key]))[0]
        assert torch.allclose(recon[key], ref, atol=1e-4)  # batch-size float noise of conv3d
        frames, fps = load_video(out / f"{name}.mp4")
        assert frames.shape == (3, 9, 32, 32) and fps == KEYS[key] and probe_video(out / f"{name}.mp4").num_frames == 9
        got, want = to_uint8(frames).permute(1, 2, 3, 0).numpy(), to_uint8(ref).permute(1, 2, 3, 0).numpy()
        # H.264's loss is measured without the fixed loss of yuv420p's half-size chroma (the noisy colours
        # of a random-init decoder lose ~20 dB there); luma keeps full resolution and is compared as decoded.
        sub = np.stack([av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv420p").to_ndarray(format="rgb24")
                        for f in want])
        luma = np.array([0.299, 0.587, 0.114])
        assert _psnr(got, sub) > 28 and _psnr(got @ luma, want @ luma) > 28


def test_mp4_writer_rate_fallbacks(tmp_path, meta_factory):
    x = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    cases = {"row": ({"fps": 30.0, "frame_stride": 2}, [12.5], 12.5), "timeline": ({"fps": 30.0, "frame_stride": 2}, None, 15.0),
             "default": ({"num_frames": 5}, None, DEFAULT_FPS)}
    for name, (prep, rates, want) in cases.items():
        meta = meta_factory(modality="video", token_shape=[2, 4, 4], preprocessing=prep)
        writer = sample_writer_for("video")(tmp_path / name, meta)
        batch = {"recon": x, "key": [f"{name}@0"], "aug": ["orig"], "length": [None]} | ({"fps": rates} if rates else {})
        (path,) = writer.write_batch(batch)
        info = probe_video(path)
        assert path.suffix == ".mp4" and info.fps == pytest.approx(want) and info.num_frames == 5, name
    with pytest.raises(ValueError, match="cannot be joined"):
        sample_writer_for("video")(tmp_path / "j", meta, join=True)


def test_inspect_reports_video_facts(folder_shards, capsys):
    assert inspect_main([str(folder_shards)]) == 0
    text = capsys.readouterr().out
    for s in ("compression 4x4x4", "causal", "latent grid 3x8x8", "9 frames of 32x32 px", "12 fps (2)", "24 fps (3)",
              "items 5", "errors 2"):
        assert s in text, s
    assert inspect_main([str(folder_shards), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["fps"] == {"12": 2, "24": 3} and stats["num_tokens"] == 5 * 192


def test_video_cli_options_and_resume(tmp_path, folder_shards, video_ckpt, video_folder, capsys):
    start = tmp_path / "start"
    assert encode_main([str(video_ckpt), str(video_folder), str(start), "--clip", "start", "--frame-stride", "2",
                        "--workers", "0", "--no-progress"]) == 0
    rows = _rows(start)
    assert {k: r["fps"] for k, r in rows.items()} == {"a": 6.0, "sub/b": 12.0}  # file rate / stride
    prep = load_metadata(resolve_shards(start)[0]).preprocessing
    assert (prep["clip"], prep["frame_stride"]) == ("start", 2)

    short = tmp_path / "n5"  # 5 frames -> (2, 8, 8) codes, decoded back to 5-frame MP4s
    assert encode_main([str(video_ckpt), "synthetic:2", str(short), "--num-frames", "5", "--workers", "0",
                        "--no-progress"]) == 0
    assert all(r["shape"] == [2, 8, 8] for r in _rows(short).values())
    assert decode_main([str(short), str(tmp_path / "n5mp4"), "--no-progress", "--device", "cpu", "--limit", "1"]) == 0
    assert probe_video(tmp_path / "n5mp4" / "synthetic_000000.mp4").num_frames == 5
    capsys.readouterr()
    assert encode_main([str(video_ckpt), "synthetic:2", str(tmp_path / "n8"), "--num-frames", "8", "--workers", "0",
                        "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mmtok encode: error: ") and "1 + 4n frames" in err and err.count("\n") == 1

    out = tmp_path / "tok"
    shutil.copytree(folder_shards, out)
    (out / "shard-000001.parquet").unlink()
    res = encode_dataset(video_ckpt, video_folder, out, **KW)
    assert res.shards_skipped == [0, 2] and res.shards_written == [1]
    assert _rows(out) == _rows(folder_shards)
    with pytest.raises(ShardMismatchError, match="preprocessing.frame_stride"):  # the default stride 1 is recorded
        encode_dataset(video_ckpt, video_folder, out, frame_stride=2, **KW)
    with pytest.raises(ShardMismatchError, match="preprocessing.fps"):
        encode_dataset(video_ckpt, video_folder, out, fps=12.0, **KW)


def test_video_options_on_an_image_tokenizer_are_one_line_errors(tmp_path, tiny_ckpt, capsys):
    assert encode_main([str(tiny_ckpt), "synthetic:2", str(tmp_path / "x"), "--fps", "8", "--workers", "0",
                        "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mmtok encode: error: option 'fps' does not apply to image data") and err.count("\n") == 1


@pytest.mark.parametrize("frames", [[[2, 2, 2], [2, 2]], [[1], [2, 1]]], ids=["fixed", "mixed"])
def test_token_dataset_flattens_video_codes_t_major(tmp_path, meta_factory, frames):
    h, w, K = 3, 4, 50  # latent frames per clip: ``frames`` per shard (mixed: clips of 1 and 2 latent frames)
    meta = meta_factory(modality="video", token_shape=[2, h, w], codebook_sizes=[K],
                        preprocessing={"resolution": 16, "num_frames": 5, "augmentations": ["orig"]})
    rng = np.random.default_rng(0)
    root, allc, n = tmp_path / "s", [], 0
    root.mkdir()
    for si, ts in enumerate(frames):
        codes = [rng.integers(0, K, size=(t, h, w)) for t in ts]
        write_shard(root / shard_name(si), build_table(meta, [f"clip{n + j}@0" for j in range(len(ts))], codes,
                                                       fps=[8.0] * len(ts), extra_meta={"shard_index": si, "errors": []}))
        allc += codes
        n += len(ts)
    write_manifest(root, len(frames))
    ds = TokenDataset(root, shuffle=False, bos_id=K, eos_id=K + 1)
    assert ds.code_vocab_size == K and ds.num_items == len(allc)
    for i, c in enumerate(allc):
        ids = ds[i]["input_ids"].numpy()
        assert ids[0] == K and ids[-1] == K + 1 and len(ids) == c.size + 2
        body = ids[1:-1]
        for ti, hi, wi in np.ndindex(*c.shape):  # raster order, latent frame (t) major
            assert body[(ti * h + hi) * w + wi] == c[ti, hi, wi]
        assert np.array_equal(ds.codes(i), c)
        assert torch.equal(ds.to_codes(body).reshape(c.shape), torch.from_numpy(c))
    stream = np.concatenate([np.concatenate([[K], c.reshape(-1), [K + 1]]) for c in allc])
    packed = TokenDataset(root, shuffle=False, bos_id=K, eos_id=K + 1, seq_len=10)
    got = np.concatenate([s["input_ids"].numpy() for s in packed])
    assert np.array_equal(got, stream[: len(stream) // 10 * 10])
