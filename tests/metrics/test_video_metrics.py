"""Video metrics: the I3D network (offline weights, input handling, determinism), rFVD behaviour,
and the VideoSuite end to end through evaluate_reconstruction (with stand-in sample writers)."""

from __future__ import annotations

import json
import math
import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from mmtok.data import make_item
from mmtok.io import file_sha256
from mmtok.metrics import evaluate_reconstruction, metric_suite
from mmtok.metrics.video.i3d import (
    FEATURE_DIM,
    I3D_ALT_WEIGHTS_NAME,
    I3D_WEIGHTS_NAME,
    I3D_WEIGHTS_URL,
    I3DFeatures,
    InceptionI3D,
    prepare_clips,
    resolve_i3d_weights,
    save_random_i3d_weights,
)
from mmtok.metrics.video.rfvd import RFVD
from mmtok.tokenizer import Tokenizer, check_range
from mmtok.weights import WeightsError

SMALL = 32  # I3D input size for the fast unit tests (FVD proper resizes to 224)


@pytest.fixture(scope="session")
def i3d_weights(tmp_path_factory) -> Path:
    """A random-init I3D state dict (pytorch-i3d layout, no download), shared by tests."""
    return save_random_i3d_weights(tmp_path_factory.getbasetemp() / "i3d_random_seed0.pt", seed=0)


@pytest.fixture(scope="module")
def i3d_small(i3d_weights) -> I3DFeatures:
    return I3DFeatures(i3d_weights, input_size=SMALL)


def moving_clips(n: int, t: int = 9, size: int = 32, seed: int = 0) -> torch.Tensor:
    """(n, 3, t, size, size) in [-1, 1]: coloured sinusoid gratings drifting over time, one per clip."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    out = []
    for _ in range(n):
        freq, speed, phase = 2 + 4 * torch.rand(3, generator=g)
        angle = math.pi * torch.rand((), generator=g)
        colour = torch.rand(3, 1, 1, generator=g) * 0.8 + 0.2
        u = xx * torch.cos(angle) + yy * torch.sin(angle)
        frames = [torch.sin(2 * math.pi * (freq * u - speed * i / t) + phase) for i in range(t)]
        out.append(colour[:, None] * torch.stack(frames)[None])
    return torch.stack(out).clamp(-1, 1)


def _noisy(x: torch.Tensor, level: float, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x + level * torch.randn(x.shape, generator=g)).clamp(-1, 1)


# --- the I3D network --------------------------------------------------------------------
def test_architecture_matches_the_pytorch_i3d_layout():
    net = InceptionI3D()
    assert sum(p.numel() for p in net.parameters()) == 12_697_264
    state = net.state_dict()
    for key in ("Conv3d_1a_7x7.conv3d.weight", "Conv3d_2c_3x3.bn.running_var", "Mixed_3b.b1b.conv3d.weight",
                "Mixed_4f.b3b.bn.bias", "Mixed_5c.b2b.bn.running_mean", "logits.conv3d.weight", "logits.conv3d.bias"):
        assert key in state, key
    assert state["Conv3d_1a_7x7.conv3d.weight"].shape == (64, 3, 7, 7, 7)
    assert state["logits.conv3d.weight"].shape == (400, 1024, 1, 1, 1)


def test_features_shape_determinism_and_scale(i3d_weights, i3d_small):
    x = moving_clips(3)
    f = i3d_small(x)
    assert f.shape == (3, FEATURE_DIM) and f.dtype == torch.float32 and torch.isfinite(f).all()
    assert f.std() > 0.1  # the scaled random init keeps features from vanishing
    torch.testing.assert_close(i3d_small(x), f, rtol=0, atol=0)
    torch.testing.assert_close(I3DFeatures(i3d_weights, input_size=SMALL)(x), f)  # same file, same features
    # uint8 input is the same clip: [0, 255] / 127.5 - 1
    from mmtok.data import to_uint8

    u = to_uint8(x)
    torch.testing.assert_close(i3d_small(u), i3d_small(u.float() / 127.5 - 1))
    # batch composition does not change a clip's features (chunked, eval-mode BatchNorm)
    torch.testing.assert_close(i3d_small(x[1:2]), f[1:2], atol=1e-4, rtol=1e-4)


def test_other_weights_give_other_features(tmp_path, i3d_small):
    other = I3DFeatures(save_random_i3d_weights(tmp_path / "seed1.pt", seed=1), input_size=SMALL)
    x = moving_clips(2)
    assert not torch.allclose(other(x), i3d_small(x))


def test_input_checks_and_resize(i3d_small):
    with pytest.raises(ValueError, match="at least 9 frames"):
        i3d_small(moving_clips(2, t=8))
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        i3d_small(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        i3d_small(moving_clips(1) * 3)
    with pytest.raises(TypeError, match="uint8"):
        prepare_clips(torch.zeros(1, 3, 9, 8, 8, dtype=torch.int32))
    wide = torch.rand(1, 3, 2, 20, 40) * 2 - 1
    assert prepare_clips(wide, 224).shape == (1, 3, 2, 224, 224)  # short side to 224, centre crop
    same = torch.rand(1, 3, 2, 224, 224) * 2 - 1
    assert torch.equal(prepare_clips(same, 224), same)  # no resize at 224
    # the resize is bilinear without antialias, frame by frame
    big = torch.rand(1, 3, 2, 64, 64) * 2 - 1
    frames = big[0].transpose(0, 1)  # (T, 3, H, W)
    interp = torch.nn.functional.interpolate
    plain = interp(frames, size=(32, 32), mode="bilinear", align_corners=False, antialias=False)
    smooth = interp(frames, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
    got = prepare_clips(big, 32)[0].transpose(0, 1)
    torch.testing.assert_close(got, plain)
    assert not torch.allclose(got, smooth, atol=1e-3)


def test_describe_records_the_protocol(i3d_weights, i3d_small):
    d = i3d_small.describe()
    assert d["feature_layer"].startswith("logits") and d["feature_dim"] == 400
    assert d["weights_file"] == i3d_weights.name and d["weights_sha256"] == file_sha256(i3d_weights)
    assert d["weights_verified"] is False and d["verification"].startswith("unverified")
    assert "bilinear" in d["resize"] and "no antialias" in d["resize"] and "[-1, 1]" in d["input"]
    assert d["min_frames"] == 9 and d["batch_norm_eps"] == 1e-3


def test_missing_weights_error_names_file_source_and_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError) as e:
        resolve_i3d_weights("auto")
    msg = str(e.value)
    for part in (I3D_WEIGHTS_NAME, I3D_WEIGHTS_URL, I3D_ALT_WEIGHTS_NAME, str(tmp_path / "hub" / "checkpoints"),
                 "never downloads", "--no-fvd"):
        assert part in msg, part
    with pytest.raises(FileNotFoundError, match=I3D_WEIGHTS_NAME):
        I3DFeatures(tmp_path / "nope.pt")


def test_auto_uses_torch_hub_cache(tmp_path, monkeypatch, i3d_weights):
    ckpt = tmp_path / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / I3D_WEIGHTS_NAME).symlink_to(i3d_weights)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    assert resolve_i3d_weights(None) == resolve_i3d_weights("auto") == ckpt / I3D_WEIGHTS_NAME


def test_old_files_without_batchnorm_counters_load(tmp_path, i3d_weights, i3d_small):
    state = torch.load(i3d_weights, weights_only=True)
    old = tmp_path / "old.pt"
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, old)
    x = moving_clips(2)
    torch.testing.assert_close(I3DFeatures(old, input_size=SMALL)(x), i3d_small(x))


def test_invalid_weights_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(WeightsError, match="not an I3D state dict"):
        I3DFeatures(bad)
    wrong = tmp_path / "wrong.pt"
    state = InceptionI3D(num_classes=10).state_dict()
    torch.save(state, wrong)
    with pytest.raises(WeightsError, match="does not fit the I3D network"):
        I3DFeatures(wrong)


class _Payload:
    """Unpickling this calls ``os.system("touch <marker>")``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_pickle_is_refused(tmp_path):
    marker = tmp_path / "code_ran"
    evil = tmp_path / I3D_WEIGHTS_NAME
    torch.save({"logits.conv3d.bias": torch.zeros(400), "x": _Payload(marker)}, evil)
    with pytest.raises(WeightsError, match="refusing to load I3D weights"):
        I3DFeatures(evil)
    assert not marker.exists()


# --- rFVD -------------------------------------------------------------------------------
def test_rfvd_is_zero_for_identical_sets_and_grows_with_noise(i3d_small):
    levels = {1: 0.0, 2: 0.05, 3: 0.2, 4: 0.6}
    fvd = RFVD(weights=None, lengths=list(levels))
    fvd.net = i3d_small  # small input size: fast, same code path
    x = moving_clips(6, seed=2)
    fvd.add_real(x)
    for k, level in levels.items():
        fvd.add_reconstruction(k, _noisy(x, level))
    got = fvd.compute(rank=0)
    assert abs(got[1]) < 1e-6 * max(1.0, got[4])
    assert got[1] < got[2] < got[3] < got[4], got
    assert fvd.ref is not None and fvd.ref.n == 6 and fvd.ref.mu.shape == (400,)


# --- the suite end to end ----------------------------------------------------------------
@dataclass
class BlockCodecConfig:
    resolution: int = 32
    num_frames: int = 9
    levels: int = 8  # per channel; one code per (frame, 2x2 block): levels ** 3 ids


class BlockCodec(Tokenizer):
    """(B, 3, T, H, W) -> (B, T, H/2, W/2) codes: each 2x2 block's mean colour on 8 levels per channel;
    decode repeats it (nearest upsampling)."""

    config_class = BlockCodecConfig
    modality = "video"

    def __init__(self, config: BlockCodecConfig) -> None:
        super().__init__(config)
        self.anchor = nn.Parameter(torch.zeros(()))

    @property
    def token_shape(self):
        c = self.config
        return (c.num_frames, c.resolution // 2, c.resolution // 2)

    @property
    def codebook_sizes(self):
        return (self.config.levels**3,)

    @property
    def last_layer_weight(self):
        return self.anchor

    def preprocessing(self):
        return {"resolution": self.config.resolution, "num_frames": self.config.num_frames}

    def check_input(self, x):
        c = self.config
        if x.ndim != 5 or tuple(x.shape[1:]) != (3, c.num_frames, c.resolution, c.resolution):
            raise ValueError(f"expected (B, 3, {c.num_frames}, {c.resolution}, {c.resolution}), got {tuple(x.shape)}")
        check_range(x)

    def encode(self, x):
        n = self.config.levels
        m = nn.functional.avg_pool3d(x, (1, 2, 2))  # (B, 3, T, h, w)
        q = ((m + 1) / 2 * (n - 1)).round().long().clamp(0, n - 1)
        return q[:, 0] * n * n + q[:, 1] * n + q[:, 2]

    def decode(self, codes):
        n = self.config.levels
        q = torch.stack([codes // (n * n), codes // n % n, codes % n], dim=1).float()
        x = q / (n - 1) * 2 - 1
        return x.repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)


class FakeClips(Dataset):
    """``n`` drifting-grating clips as mmtok items, with the facts a video dataset reports."""

    resolution = 32

    def __init__(self, n: int, num_frames: int = 9) -> None:
        self.num_frames = num_frames
        self.x = moving_clips(n, t=num_frames, seed=5)

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int):
        return make_item(self.x[i], key=f"clips/clip{i:03d}.mp4@0", path=f"/data/clips/clip{i:03d}.mp4")

    def describe(self):
        return {"fps": 12.0, "frame_stride": 2, "clip": "start", "num_frames": self.num_frames}


@pytest.fixture
def fake_writers(monkeypatch):
    """Stand-ins for ``mmtok.data.video.save_video`` / ``save_gif`` / ``save_frame_strip_png`` that
    check their inputs and write a placeholder file; returns the recorded calls."""
    calls: list[tuple] = []

    def _check(frames):
        assert frames.ndim == 4 and frames.shape[0] == 3 and frames.is_floating_point()
        assert frames.min() >= -1 and frames.max() <= 1

    def save_video(path, frames, fps):
        _check(frames)
        calls.append(("video", Path(path), tuple(frames.shape), fps))
        Path(path).write_bytes(b"mp4")

    def save_gif(path, frames, fps):
        _check(frames)
        calls.append(("gif", Path(path), tuple(frames.shape), fps))
        Path(path).write_bytes(b"gif")

    def save_frame_strip_png(path, rows):
        for r in rows:
            _check(r)
        calls.append(("strip", Path(path), [tuple(r.shape) for r in rows]))
        Path(path).write_bytes(b"png")

    module = types.ModuleType("mmtok.data.video")
    module.save_video, module.save_gif, module.save_frame_strip_png = save_video, save_gif, save_frame_strip_png
    monkeypatch.setitem(sys.modules, "mmtok.data.video", module)
    import mmtok.data

    monkeypatch.setattr(mmtok.data, "video", module, raising=False)
    return calls


def test_video_suite_end_to_end(tmp_path, i3d_weights, fake_writers):
    from mmtok.metrics.video.suite import VideoSuite

    assert metric_suite("video") is VideoSuite
    tok = BlockCodec(BlockCodecConfig())
    rep = evaluate_reconstruction(tok, FakeClips(2), batch_size=1, out_dir=tmp_path, progress=False,
                                  i3d_weights=i3d_weights, lpips="random", num_samples=2)
    m = rep["metrics"]
    assert rep["num_clips"] == 2 and m["tokens_per_clip"] == 9 * 16 * 16
    assert m["bits_per_pixel"] == pytest.approx(9 * 16 * 16 * 9 / (9 * 32 * 32))
    assert m["rfvd"] is not None and 0 <= m["rfvd"] < 1e6
    assert 12 < m["psnr"] < 40 and 0.3 < m["ssim"] < 1 and 0 < m["lpips"] < 1
    assert 0 < rep["codebook"]["usage"] <= 1  # from the generic loop

    curves = rep["per_frame"]
    assert curves["frame"] == list(range(9))
    for key in ("psnr", "ssim", "lpips"):
        assert len(curves[key]) == 9 and all(math.isfinite(v) for v in curves[key])
        assert sum(curves[key]) / 9 == pytest.approx(m[key], rel=1e-6)  # every frame weighs the same

    p = rep["protocol"]
    fe = p["feature_extractor"]
    assert fe["weights_sha256"] == file_sha256(i3d_weights) and fe["verification"].startswith("unverified")
    assert fe["input_size"] == 224 and fe["feature_layer"].startswith("logits")
    assert (p["num_frames"], p["fps"], p["frame_stride"], p["clip"]) == (9, 12.0, 2, "start")
    assert p["resolution"] == [32, 32] and p["num_clips"] == 2 and p["dataset"]["kind"] == "FakeClips"

    files = rep["files"]
    for role in ("sample0_video", "sample0_gif", "sample0_frames", "sample1_video", "per_frame_plot", "json", "markdown"):
        assert (tmp_path / files[role]).is_file(), role
    assert "sample2_video" not in files and "sample_errors" not in rep
    video = [c for c in fake_writers if c[0] == "video"]
    assert len(video) == 2 and video[0][2] == (3, 9, 32, 64) and video[0][3] == 6.0  # side by side, at 12 fps / stride 2
    strip = [c for c in fake_writers if c[0] == "strip"]
    assert strip[0][2] == [(3, 9, 32, 32), (3, 9, 32, 32)]  # original frames above reconstruction
    assert (tmp_path / "per_frame.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["per_frame"]["psnr"] == pytest.approx(curves["psnr"])
    md = (tmp_path / "report.md").read_text()
    assert "rFVD" in md and "9 frames at 12 fps" in md and "unverified" in md


def test_perfect_reconstruction_scores(i3d_weights, monkeypatch):
    """A lossless codec: rFVD 0, PSNR at its cap, SSIM 1 (the 8-level grid is exactly representable)."""
    import mmtok.metrics.video.i3d as i3d
    from mmtok.metrics.image import PSNR_MAX_DB

    monkeypatch.setattr(i3d, "get_i3d", lambda w, device: I3DFeatures(w, device, input_size=SMALL))  # fast

    tok = BlockCodec(BlockCodecConfig())
    x = moving_clips(3, seed=7)
    x = tok.decode(tok.encode(x))  # clips the codec reproduces exactly

    class Exact(FakeClips):
        def __init__(self):
            self.num_frames, self.x = 9, x

    rep = evaluate_reconstruction(tok, Exact(), batch_size=2, progress=False, i3d_weights=i3d_weights, lpips=None)
    m = rep["metrics"]
    assert abs(m["rfvd"]) < 1e-6 and m["psnr"] == pytest.approx(PSNR_MAX_DB)
    assert m["ssim"] == pytest.approx(1.0, abs=1e-5) and rep["protocol"]["feature_extractor"]["input_size"] == SMALL


def test_clear_errors(i3d_weights):
    tok = BlockCodec(BlockCodecConfig())
    with pytest.raises(ValueError, match="rFVD needs at least 2 clips"):
        evaluate_reconstruction(tok, FakeClips(1), progress=False, i3d_weights=i3d_weights, lpips=None)
    short = BlockCodec(BlockCodecConfig(num_frames=4))
    with pytest.raises(ValueError, match="at least 9 frames"):
        evaluate_reconstruction(short, FakeClips(2, num_frames=4), progress=False, i3d_weights=i3d_weights, lpips=None)
    rep = evaluate_reconstruction(short, FakeClips(2, num_frames=4), progress=False, fvd=False, lpips=None)
    assert rep["metrics"]["rfvd"] is None and rep["metrics"]["lpips"] is None and rep["per_frame"]["lpips"] is None
    assert rep["protocol"]["feature_extractor"] is None
    with pytest.raises(ValueError, match="expects 9 frames"):
        evaluate_reconstruction(tok, FakeClips(2, num_frames=4), progress=False, fvd=False, lpips=None)


def test_samples_survive_missing_writers(tmp_path, monkeypatch):
    """Without a video writer the samples are skipped with a warning and listed; the report is not lost."""
    from mmtok.metrics.video.samples import VideoSamples

    monkeypatch.setitem(sys.modules, "mmtok.data.video", None)  # import fails
    s = VideoSamples(1, fps=8)
    x = (moving_clips(1) * 127.5 + 127.5).round().to(torch.uint8)
    s.add(["a"], x, x)
    with pytest.warns(UserWarning, match="could not write samples"):
        files, errors = s.write(tmp_path)
    assert files == {} and len(errors) == 1 and "mmtok.data.video" in errors[0]


def test_real_sample_writers_if_present(tmp_path):
    """With the real ``mmtok.data.video`` writers the three sample files are written."""
    pytest.importorskip("mmtok.data.video")
    from mmtok.metrics.video.samples import VideoSamples

    s = VideoSamples(1, fps=8)
    x = (moving_clips(1, size=16) * 127.5 + 127.5).round().to(torch.uint8)
    s.add(["clips/a.mp4"], x, x)
    files, errors = s.write(tmp_path)
    assert errors == [] and sorted(files) == ["sample0_frames", "sample0_gif", "sample0_video"]
    assert all((tmp_path / f).stat().st_size > 0 for f in files.values())


def test_cli_options():
    from mmtok.metrics.cli import build_parser
    from mmtok.metrics.video.suite import VideoSuite

    parser = build_parser()  # every suite's options together: shared flags must not clash
    args = parser.parse_args(["ckpt", "--data", "d", "--i3d-weights", "/w/i3d.pt", "--no-fvd", "--clip", "chunks",
                              "--fps", "4", "--frame-stride", "2", "--lpips-weights", "none"])
    opts = VideoSuite.options_from_args(args)
    assert opts["fvd"] is False and opts["i3d_weights"] == "/w/i3d.pt" and opts["lpips"] is None
    assert VideoSuite.preprocessing_from_args(args) == {"clip": "chunks", "fps": 4.0, "frame_stride": 2}
    alone = VideoSuite.options_from_args(parser.parse_args(["ckpt", "--data", "d"]))
    assert alone["fvd"] is True and alone["i3d_weights"] == "auto" and alone["lpips"] == "auto"
    assert VideoSuite.preprocessing_from_args(parser.parse_args(["ckpt", "--data", "d"])) == {"clip": "start"}
