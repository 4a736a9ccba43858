"""Video datasets, clip sampling and the video file helpers (real files made at test time)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mmtok.data as md
from mmtok.data.synthetic_video import KINDS, SyntheticVideo
from mmtok.data.transforms import resize_crop, to_uint8
from mmtok.data.video import VideoFolder, load_video, num_chunks, probe_video, save_video

R = 32


def _ffmpeg() -> str:
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    return imageio_ffmpeg.get_ffmpeg_exe()


def _testsrc(out: Path, seconds: float, rate: int = 10, extra: tuple[str, ...] = ()) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [_ffmpeg(), "-y", "-loglevel", "error", "-f", "lavfi", "-i", f"testsrc=size=64x48:rate={rate}",
           "-t", str(seconds), "-pix_fmt", "yuv420p", *extra, str(out)]
    subprocess.run(cmd, check=True, capture_output=True)
    return out


def _has_encoder(name: str) -> bool:
    done = subprocess.run([_ffmpeg(), "-hide_banner", "-encoders"], capture_output=True, text=True, check=False)
    return f" {name} " in done.stdout


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """good/{a,b}/...: 20-frame 10 fps mp4 (keyframe every 6), 15-frame webm (when libvpx is there),
    a 12-frame mp4 from save_video; bad/: zero bytes, text, truncated, 3-frame video; mixed/: both."""
    root = tmp_path_factory.mktemp("videos")
    good, bad = root / "good", root / "bad"
    mp4 = _testsrc(good / "a" / "src10.mp4", 2, extra=("-g", "6"))
    if _has_encoder("libvpx"):
        _testsrc(good / "a" / "vp8.webm", 1.5, extra=("-c:v", "libvpx"))
    clip = SyntheticVideo(1, resolution=40, num_frames=12, seed=3)[0]["x"]
    save_video(good / "b" / "syn.mp4", clip, fps=8)
    bad.mkdir()
    (bad / "zero.mp4").write_bytes(b"")
    (bad / "text.mp4").write_text("not a video at all\n")
    data = mp4.read_bytes()
    (bad / "trunc.mp4").write_bytes(data[: len(data) // 2])
    _testsrc(bad / "short.mp4", 0.3)  # 3 frames
    mixed = root / "mixed"
    for p in [*good.rglob("*.*"), *bad.iterdir()]:
        (mixed / p.name).parent.mkdir(parents=True, exist_ok=True)
        (mixed / p.name).write_bytes(p.read_bytes())
    return {"good": good, "bad": bad, "mixed": mixed, "mp4": mp4}


def _reference(path: Path, indices: list[int], resolution: int = R) -> torch.Tensor:
    """Frames decoded whole by load_video, resized like images: (3, T, R, R) in [-1, 1]."""
    full, _ = load_video(path)
    u8 = to_uint8(full).permute(1, 2, 3, 0).numpy()
    frames = [np.asarray(resize_crop(Image.fromarray(u8[i]), resolution)) for i in indices]
    return md.to_model_range(torch.from_numpy(np.stack(frames)).permute(3, 0, 1, 2))


# --- folder datasets -------------------------------------------------------------------------
def test_folder_items_shapes_keys_meta(videos):
    ds = md.open_dataset(videos["good"], modality="video", resolution=R, num_frames=8, clip="start")
    assert isinstance(ds, VideoFolder)
    keys = [ds[i]["key"] for i in range(len(ds))]
    assert keys == sorted(keys) and "a/src10" in keys and "b/syn" in keys
    for i in range(len(ds)):
        it = ds[i]
        assert "error" not in it, it.get("error")
        x = it["x"]
        assert x.dtype == torch.float32 and x.shape == (3, 8, R, R)
        assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0
        assert it["label"] == (0 if it["key"].startswith("a/") else 1)
    m = ds[keys.index("a/src10")]["meta"]
    assert m == {"start_frame": 0, "fps": 10.0, "source_fps": 10.0, "num_source_frames": 20, "frame_stride": 1}
    # "start" clips are the file's first frames, resized like images
    first = ds[keys.index("a/src10")]["x"]
    torch.testing.assert_close(first, _reference(videos["mp4"], list(range(8))), atol=0, rtol=0)


def test_webm_frame_count_from_packets(videos):
    webm = videos["good"] / "a" / "vp8.webm"
    if not webm.exists():
        pytest.skip("ffmpeg binary has no libvpx encoder")
    info = probe_video(webm)
    assert (info.num_frames, info.fps, info.width, info.height) == (15, 10.0, 64, 48)


def test_random_clips_are_exact_and_deterministic(videos):
    root = videos["mp4"].parent
    ds = VideoFolder(root, R, num_frames=4, frame_stride=2, clip="random", seed=7)
    i = [k for k in range(len(ds)) if ds.files[k] == videos["mp4"]][0]
    starts = set()
    for epoch in range(4):
        ds.set_epoch(epoch)
        a, b = ds[i], ds[i]
        torch.testing.assert_close(a["x"], b["x"], atol=0, rtol=0)
        s = a["meta"]["start_frame"]
        assert 0 <= s <= 20 - 7 and a["meta"]["fps"] == 5.0
        # frames after a seek are the frames of a whole-file decode
        torch.testing.assert_close(a["x"], _reference(videos["mp4"], [s + 2 * k for k in range(4)]), atol=0, rtol=0)
        starts.add(s)
    assert len(starts) > 1  # the start depends on the epoch
    other = VideoFolder(root, R, num_frames=4, frame_stride=2, clip="random", seed=7)
    other.set_epoch(3)
    torch.testing.assert_close(other[i]["x"], ds[i]["x"], atol=0, rtol=0)


def test_fps_resampling_takes_every_second_frame(videos):
    root = videos["mp4"].parent
    half = VideoFolder(root, R, num_frames=5, fps=5.0, clip="start")
    strided = VideoFolder(root, R, num_frames=5, frame_stride=2, clip="start")
    i = half.files.index(videos["mp4"])
    a, b = half[i], strided[i]
    torch.testing.assert_close(a["x"], b["x"], atol=0, rtol=0)
    torch.testing.assert_close(a["x"], _reference(videos["mp4"], [0, 2, 4, 6, 8]), atol=0, rtol=0)
    assert a["meta"]["fps"] == 5.0 and a["meta"]["source_fps"] == 10.0
    assert (a["x"][:, 1:] - a["x"][:, :-1]).abs().amax() > 0.1  # testsrc frames do differ
    # upsampling repeats the nearest source frame (ties round up): 20 fps -> source frames 0, 1, 1, 2
    up = VideoFolder(root, R, num_frames=4, fps=20.0, clip="start")[i]["x"]
    torch.testing.assert_close(up, _reference(videos["mp4"], [0, 1, 1, 2]), atol=0, rtol=0)


def test_chunks_cover_every_video(videos):
    T, s = 3, 2
    ds = VideoFolder(videos["good"], R, num_frames=T, frame_stride=s, clip="chunks")
    expected = {"a/src10": num_chunks(20, T, s), "b/syn": num_chunks(12, T, s)}
    assert expected == {"a/src10": 3, "b/syn": 2}
    if (videos["good"] / "a" / "vp8.webm").exists():
        expected["a/vp8"] = num_chunks(15, T, s)  # ceil(15 / 2) = 8 sampled frames -> 2 clips
    items = [ds[i] for i in range(len(ds))]
    assert len(ds) == sum(expected.values())
    by_file: dict[str, list[dict]] = {}
    for it in items:
        assert "error" not in it, it.get("error")
        base, _, start = it["key"].partition("@")
        assert int(start) == it["meta"]["start_frame"]
        by_file.setdefault(base, []).append(it)
    assert {k: len(v) for k, v in by_file.items()} == expected
    clips = by_file["a/src10"]
    assert [c["meta"]["start_frame"] for c in clips] == [0, 6, 12]
    joined = torch.cat([c["x"] for c in clips], dim=1)  # the sampled frames 0, 2, ..., 16 in order
    torch.testing.assert_close(joined, _reference(videos["mp4"], list(range(0, 18, 2))), atol=0, rtol=0)
    # stride 1: floor(N / T) clips; with fps: on the resampled timeline
    assert len(VideoFolder(videos["mp4"].parent, R, num_frames=4, clip="chunks", max_items=5)) == 5
    five = VideoFolder(videos["good"] / "b", R, num_frames=4, fps=4.0, clip="chunks")  # 12 frames @ 8 fps -> 6
    assert len(five) == 1 and five[0]["key"] == "syn@0" and five[0]["meta"]["fps"] == 4.0


def test_bad_files_are_error_items(videos):
    ds = VideoFolder(videos["bad"], R, num_frames=9, clip="start")
    items = {Path(ds[i]["path"]).name: ds[i] for i in range(len(ds))}
    assert set(items) == {"zero.mp4", "text.mp4", "trunc.mp4", "short.mp4"}
    for name, it in items.items():
        assert it["x"] is None and it["error"], name
        assert it["path"].endswith(name)
    short = items["short.mp4"]["error"]
    assert "too short" in short and "3 frames" in short and "needs 9" in short
    chunks = VideoFolder(videos["bad"], R, num_frames=9, clip="chunks")
    assert len(chunks) == 4 and all(chunks[i]["x"] is None for i in range(4))
    assert sorted(chunks[i]["key"] for i in range(4)) == ["short@0", "text@0", "trunc@0", "zero@0"]


def test_loader_batches_video_and_reports_errors(videos):
    ds = md.open_dataset(videos["mixed"], modality="video", resolution=R, num_frames=4, clip="random", seed=1)
    batches = list(md.make_loader(ds, batch_size=3, shuffle=True, seed=0))
    xs = [b["x"] for b in batches if b["x"] is not None]
    assert all(x.shape[1:] == (3, 4, R, R) for x in xs)
    good = sum(x.shape[0] for x in xs)
    errors = [e for b in batches for e in b["errors"]]
    assert good + len(errors) == len(ds) and len(errors) == 4  # zero, text, truncated, and 3 frames < 4
    assert {Path(p).name for p, _ in errors} == {"zero.mp4", "text.mp4", "trunc.mp4", "short.mp4"}


def test_opener_options(videos, tmp_path):
    with pytest.raises(TypeError, match="segment"):
        md.open_dataset(videos["good"], modality="video", resolution=R, num_frames=4, segment="chunks")
    with pytest.raises(ValueError, match="num_frames"):
        md.open_dataset(videos["good"], modality="video", resolution=R)
    for bad in ({"clip": "middle"}, {"crop": "left"}, {"frame_stride": 0}, {"fps": -1.0}, {"num_frames": 0}):
        with pytest.raises(ValueError):
            md.open_dataset(videos["good"], modality="video", **{"resolution": R, "num_frames": 4, **bad})
    with pytest.raises(FileNotFoundError):
        md.open_dataset(tmp_path / "missing", modality="video", resolution=R, num_frames=4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no videos"):
        md.open_dataset(tmp_path / "empty", modality="video", resolution=R, num_frames=4)
    rc = VideoFolder(videos["good"], R, num_frames=4, crop="random", flip=True, clip="start", seed=2)
    a, b = rc[0]["x"], rc[0]["x"]
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_views_contract():
    v = md.views_for("video", resolution=R, num_frames=8)
    assert v.names == ["orig"] and v.load_preprocessing == {"resolution": R, "num_frames": 8, "clip": "chunks"}
    f = md.views_for("video", resolution=R, num_frames=8, flip=True)
    assert f.names == ["orig", "flip"] and f.describe() == {"augmentations": ["orig", "flip"]}
    x = torch.rand(2, 3, 4, R, R) * 2 - 1
    out = f.views(x)
    assert len(out) == 2 and out[0] is x
    torch.testing.assert_close(out[1], x.flip(-1))
    with pytest.raises(ValueError, match="crops"):
        md.views_for("video", resolution=R, num_frames=8, crops=2)


# --- synthetic -------------------------------------------------------------------------------
def test_synthetic_video_deterministic_and_in_range():
    ds = md.open_dataset("synthetic:12", modality="video", resolution=R, num_frames=6)
    assert isinstance(ds, SyntheticVideo) and len(ds) == 12
    again = SyntheticVideo(12, R, 6, seed=0)
    kinds = set()
    for i in range(12):
        it = ds[i]
        x = it["x"]
        assert x.shape == (3, 6, R, R) and x.dtype == torch.float32
        assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0
        torch.testing.assert_close(x, again[i]["x"], atol=0, rtol=0)
        assert it["key"] == f"synthetic/{i:06d}" and it["meta"]["kind"] == KINDS[it["label"]]
        assert float((x[:, 1:] - x[:, :-1]).abs().mean()) > 1e-3  # things move
        kinds.add(it["meta"]["kind"])
    assert len(kinds) >= 3
    assert not torch.equal(ds[0]["x"], SyntheticVideo(12, R, 6, seed=1)[0]["x"])
    batch = next(iter(md.make_loader(ds, batch_size=4)))
    assert batch["x"].shape == (4, 3, 6, R, R) and batch["errors"] == []


# --- files -----------------------------------------------------------------------------------
def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(4.0 / (a - b).pow(2).mean()))


def test_save_load_video_round_trip(tmp_path):
    x = SyntheticVideo(1, resolution=48, num_frames=10, seed=5)[0]["x"]
    path = save_video(tmp_path / "clip.mp4", x, fps=8, crf=18)
    assert not list(tmp_path.glob(".*.tmp"))
    y, fps = load_video(path)
    assert fps == 8.0 and y.shape == x.shape and y.dtype == torch.float32
    assert _psnr(x, y) > 30.0
    m4, _ = load_video(save_video(tmp_path / "clip.avi", x, fps=8, codec="mpeg4", qscale=2))
    assert _psnr(x, m4) > 25.0
    odd = x[:, :3, :33, :47]
    z, _ = load_video(save_video(tmp_path / "odd.mp4", odd, fps=12.5))
    assert z.shape == (3, 3, 34, 48)  # padded to even sizes by repeating the edge
    assert _psnr(odd, z[:, :, :33, :47]) > 28.0
    with pytest.raises(ValueError, match="codec"):
        save_video(tmp_path / "bad.mp4", x, fps=8, codec="vp9")
    with pytest.raises(ValueError, match=r"\(3, T, H, W\)"):
        save_video(tmp_path / "bad.mp4", x[0], fps=8)
    with pytest.raises(ValueError, match="webm"):
        save_video(tmp_path / "bad.webm", x, fps=8)


def test_gif_and_frame_strip(tmp_path):
    x = SyntheticVideo(1, resolution=16, num_frames=5, seed=0)[0]["x"]
    gif = md.save_gif(tmp_path / "clip.gif", x, fps=10)
    with Image.open(gif) as im:
        assert im.n_frames == 5 and im.size == (16, 16) and im.info["duration"] == 100
    png = md.save_frame_strip_png(tmp_path / "strip.png", [x, x[:, :3]], pad=2)
    with Image.open(png) as im:
        assert im.size == (5 * 18 + 2, 2 * 18 + 2)
        arr = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(arr[2:18, 2:18], to_uint8(x[:, 0]).permute(1, 2, 0).numpy())
    assert (arr[20:36, 2 + 4 * 18: 18 + 4 * 18] == 255).all()  # the shorter row leaves its last cell white
    with pytest.raises(ValueError, match="frame size"):
        md.save_frame_strip_png(tmp_path / "bad.png", [x, x[..., :8, :8]])
