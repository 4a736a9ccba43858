"""FID math: closed forms, an independent eigenvalue computation, torch-fidelity, streaming stats."""

import numpy as np
import pytest
import torch

from mmtok.metrics.fid import FeatureStats, GaussianStats, fid_from_stats, frechet_distance, stats_from_features


def _random_spd(rng, d, scale=1.0):
    a = rng.normal(size=(d, d))
    return scale * (a @ a.T / d + 0.1 * np.eye(d))


def _fid_eig(mu1, s1, mu2, s2):
    """Independent formula: Tr((S1 S2)^1/2) = sum of sqrt of eigenvalues of sqrt(S1) S2 sqrt(S1)."""
    w, v = np.linalg.eigh(s1)
    r1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    ev = np.linalg.eigvalsh(r1 @ s2 @ r1)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(ev, 0, None)).sum())


def test_closed_form_diagonal():
    # N(mu1, diag(a)) vs N(mu2, diag(b)): ||mu1-mu2||^2 + sum (sqrt(a) - sqrt(b))^2
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    expected = 1.0 + 0.0 + 4.0 + (1 - 2) ** 2 + (2 - 1) ** 2 + 0.0
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_closed_form_scaled_covariance():
    # S2 = c^2 S1 -> Tr(S1) (1 - c)^2
    rng = np.random.default_rng(0)
    s1 = _random_spd(rng, 16)
    c = 1.7
    assert frechet_distance(np.zeros(16), s1, np.zeros(16), c**2 * s1) == pytest.approx(np.trace(s1) * (1 - c) ** 2, rel=1e-8)


@pytest.mark.parametrize("d", [2, 32, 128])
def test_matches_independent_eigen_computation(d):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = _random_spd(rng, d), _random_spd(rng, d, scale=2.0)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(_fid_eig(mu1, s1, mu2, s2), rel=1e-7)


def test_matches_torch_fidelity_formula():
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    rng = np.random.default_rng(1)
    f1, f2 = rng.normal(size=(300, 24)), rng.normal(loc=0.3, scale=1.2, size=(400, 24))
    a, b = stats_from_features(f1), stats_from_features(f2)
    ref = fid_statistics_to_metric({"mu": a.mu, "sigma": a.sigma}, {"mu": b.mu, "sigma": b.sigma}, verbose=False)["frechet_inception_distance"]
    assert fid_from_stats(a, b) == pytest.approx(ref, rel=1e-7)


def test_self_distance_is_zero_and_shift_is_monotone():
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(500, 16))
    base = stats_from_features(feats)
    assert abs(fid_from_stats(base, base)) < 1e-6
    prev = 0.0
    for shift in [0.1, 0.3, 1.0, 3.0]:
        val = fid_from_stats(base, stats_from_features(feats + shift))
        assert val > prev
        # a pure mean shift of every feature adds exactly d * shift^2
        assert val == pytest.approx(16 * shift**2, rel=1e-6)
        prev = val


def test_singular_covariances_are_handled():
    # rank-deficient covariances (N < D) still give a finite, near-zero self distance
    rng = np.random.default_rng(3)
    feats = rng.normal(size=(8, 32))
    s = stats_from_features(feats)
    val = fid_from_stats(s, s)
    assert np.isfinite(val) and abs(val) < 1e-3


def test_streaming_stats_match_numpy():
    rng = np.random.default_rng(4)
    feats = rng.normal(loc=2.0, size=(257, 48)).astype(np.float32)
    acc = FeatureStats(dim=48)
    for chunk in np.array_split(feats, 7):
        acc.update(torch.from_numpy(chunk))
    got = acc.compute()
    assert got.n == 257
    np.testing.assert_allclose(got.mu, feats.astype(np.float64).mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got.sigma, np.cov(feats.astype(np.float64), rowvar=False), rtol=1e-9, atol=1e-10)
    assert got.factor is None  # n > dim: only the sums are kept
    small = FeatureStats(dim=48)
    small.update(torch.from_numpy(feats[:20]))
    s = small.compute()
    np.testing.assert_allclose(s.factor.T @ s.factor, s.sigma, rtol=1e-9, atol=1e-10)


def test_bad_inputs_raise():
    acc = FeatureStats(dim=4)
    with pytest.raises(ValueError, match=r"\(B, 4\)"):
        acc.update(torch.zeros(3, 5))
    acc.update(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="at least 2"):
        acc.compute()
    with pytest.raises(ValueError, match="mismatched"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.zeros(2), np.eye(2) * np.nan, np.zeros(2), np.eye(2))


def test_stats_roundtrip(tmp_path):
    rng = np.random.default_rng(5)
    s = stats_from_features(rng.normal(size=(20, 6)))
    s.save(tmp_path / "s.npz", note="x")
    back = GaussianStats.load(tmp_path / "s.npz")
    assert back.n == 20
    np.testing.assert_array_equal(back.mu, s.mu)
    np.testing.assert_array_equal(back.sigma, s.sigma)
    np.savez(tmp_path / "bad.npz", foo=np.zeros(2))
    with pytest.raises(ValueError, match="mu"):
        GaussianStats.load(tmp_path / "bad.npz")


@pytest.mark.parametrize("n", [5, 30])
def test_all_methods_agree(n):
    """sqrtm (pytorch-fid), symmetric eigh and the exact low-rank route give the same FID."""
    rng = np.random.default_rng(n)
    d = 40
    a = stats_from_features(rng.normal(size=(n, d)))
    b = stats_from_features(rng.normal(loc=0.2, scale=1.3, size=(60, d)))
    ref = fid_from_stats(a, b, method="sqrtm")
    assert fid_from_stats(a, b, method="eigh") == pytest.approx(ref, rel=1e-7)
    assert fid_from_stats(a, b, method="lowrank") == pytest.approx(ref, rel=1e-7)
    assert fid_from_stats(a, b) == pytest.approx(ref, rel=1e-7)
    with pytest.raises(ValueError, match="method"):
        fid_from_stats(a, b, method="svd")
