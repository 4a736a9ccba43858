"""Inception features: offline weight resolution, cross-check of the full FID pipeline with torchmetrics."""

import pytest
import torch

from mmtok.io import file_sha256
from mmtok.metrics.fid import FeatureStats, fid_from_stats
from mmtok.metrics.image.inception import INCEPTION_WEIGHTS_NAME, InceptionFeatures, resolve_weights


def _images(n, seed, shift=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 32, 32, generator=g) * 200 + shift
    return x.clamp(0, 255).to(torch.uint8)


def test_missing_weights_error_names_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError) as e:
        resolve_weights("auto")
    msg = str(e.value)
    assert INCEPTION_WEIGHTS_NAME in msg and str(tmp_path / "hub" / "checkpoints") in msg
    with pytest.raises(FileNotFoundError, match=INCEPTION_WEIGHTS_NAME):
        InceptionFeatures(tmp_path / "nope.pth")


def test_auto_uses_torch_hub_cache(tmp_path, monkeypatch, inception_weights):
    ckpt = tmp_path / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / INCEPTION_WEIGHTS_NAME).symlink_to(inception_weights)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    assert resolve_weights(None) == ckpt / INCEPTION_WEIGHTS_NAME


def test_invalid_weights_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="not a valid Inception-v3"):
        InceptionFeatures(bad)


def test_input_checks(inception_weights):
    net = InceptionFeatures(inception_weights)
    with pytest.raises(TypeError, match="uint8"):
        net(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        net(torch.zeros(1, 1, 32, 32, dtype=torch.uint8))
    d = net.describe()
    assert d["weights_sha256"] == file_sha256(inception_weights) and "TF1.x" in d["resize"]


def test_features_match_torchmetrics_without_antialias(inception_weights):
    """Same weights file: our features == torchmetrics' FID features with antialias=False; the
    antialiased resize (torchmetrics >= 1.8 default) gives different features."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    real = _images(1, 0)
    ours = InceptionFeatures(inception_weights)(real)
    tm = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(inception_weights), antialias=False)
    torch.testing.assert_close(tm.inception(real).float(), ours, rtol=1e-5, atol=1e-6)
    tm.inception.use_antialias = True
    assert not torch.allclose(tm.inception(real).float(), ours, rtol=1e-3, atol=1e-5)


@pytest.mark.slow
def test_fid_pipeline_matches_torchmetrics(inception_weights):
    """End to end (features, float64 statistics, matrix square root) against torchmetrics' FID."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    real, fake = _images(6, 0), _images(6, 1, shift=40)
    net = InceptionFeatures(inception_weights)
    a, b = FeatureStats(), FeatureStats()
    a.update(net(real))
    b.update(net(fake))
    ours = fid_from_stats(b.compute(), a.compute())
    tm = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(inception_weights), antialias=False)
    tm.set_dtype(torch.float64)
    tm.update(real, real=True)
    tm.update(fake, real=False)
    assert ours > 0
    assert ours == pytest.approx(tm.compute().item(), rel=1e-3)
