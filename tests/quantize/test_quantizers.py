"""Invariants of the shared quantizer layer."""

import pytest
import torch

import mmtok.quantize as Q
from mmtok.data.vectors import clustered_vectors

DIM = 32
CONFIGS = {
    "vq": {"type": "vq", "codebook_size": 64, "codebook_dim": 8},
    "vq_l2_learnable": {"type": "vq", "codebook_size": 64, "use_cosine_sim": False, "ema_update": False},
    "vq_rotation": {"type": "vq", "codebook_size": 64, "rotation_trick": True},
    "rvq": {"type": "rvq", "num_levels": 4, "codebook_size": 64},
    "fsq": {"type": "fsq", "levels": [8, 5, 5, 5]},
    "rfsq": {"type": "rfsq", "levels": [8, 5, 5, 5], "num_levels": 3},
    "lfq": {"type": "lfq", "codebook_size": 256},
    "bsq": {"type": "bsq", "codebook_size": 256},
}


def make(name):
    return Q.build(CONFIGS[name], dim=DIM)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_eval_decode_of_encode_equals_forward(name):
    q = make(name)
    q(torch.randn(4, 16, DIM))  # one training step (k-means/EMA state, dropout paths)
    q.eval()
    z = torch.randn(3, 10, DIM)
    out = q(z)
    codes = q.encode(z)
    assert torch.equal(codes, out.codes)
    torch.testing.assert_close(q.decode(codes), out.quantized, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_codes_in_range_and_gradient_reaches_input(name):
    q = make(name)
    z = torch.randn(2, 12, DIM, requires_grad=True)
    out = q(z)
    valid = out.codes[out.codes >= 0]  # -1 only marks levels dropped by quantizer dropout
    assert valid.min() >= 0 and valid.max() < q.codebook_size
    assert out.codes.dtype == torch.int64
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    (out.quantized.square().sum() + out.loss).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    m = out.metrics
    assert 0 < m["usage"] <= 1 and 1 <= m["perplexity"] <= q.codebook_size
    q.eval()
    codes = q.encode(z)
    assert codes.min() >= 0 and codes.max() < q.codebook_size


@pytest.mark.parametrize("name", list(CONFIGS))
def test_bf16_autocast_codes_equal_fp32(name):
    q = make(name).eval()
    z = torch.randn(2, 16, DIM)
    ref = q.encode(z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = q(z)
        enc = q.encode(z)
    assert torch.equal(out.codes, ref) and torch.equal(enc, ref)
    assert out.quantized.dtype == z.dtype
    # a bf16 input is quantized in fp32 too: same codes as its fp32 upcast
    zb = z.bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_b = q(zb)
    assert torch.equal(out_b.codes, q.encode(zb.float()))
    assert out_b.quantized.dtype == torch.bfloat16


def test_rvq_more_levels_reconstruct_better():
    q = Q.RVQ(DIM, num_levels=4, codebook_size=64, kmeans_init=True)
    for _ in range(10):
        q(torch.randn(8, 64, DIM))
    q.eval()
    z = torch.randn(8, 64, DIM)
    errs = [(q.decode(q.encode(z, n_levels=n)) - z).pow(2).mean().item() for n in range(1, 5)]
    assert all(a > b for a, b in zip(errs, errs[1:])), errs


def test_rvq_requested_levels_are_honoured():
    q = Q.RVQ(DIM, num_levels=4, codebook_size=64).eval()
    z = torch.randn(2, 8, DIM)
    full = q.encode(z)
    two = q.encode(z, n_levels=2)
    assert two.shape == (2, 8, 2) and torch.equal(two, full[..., :2])  # greedy prefix
    q.n_levels = 2
    assert q.bits_per_token == 2 * 6 and q.num_codebooks == 2
    out = q(z)
    assert out.codes.shape[-1] == 2
    torch.testing.assert_close(out.quantized, q.decode(two))
    q.train()  # the request holds in training too (no silent fallback to all levels)
    assert q(z).codes.shape[-1] == 2
    with pytest.raises(ValueError, match="n_levels"):
        q.n_levels = 5
    with pytest.raises(ValueError, match="n_levels"):
        q.encode(z, n_levels=0)


def test_rvq_quantizer_dropout_varies_levels_in_training():
    q = Q.RVQ(DIM, num_levels=4, codebook_size=32, quantizer_dropout=True)
    z = torch.randn(2, 8, DIM)
    used = {int((q(z).codes[0, 0] >= 0).sum()) for _ in range(30)}
    assert len(used) > 1 and used <= {1, 2, 3, 4}


def _vq_usage_after_training(threshold: float, steps: int = 250) -> float:
    torch.manual_seed(0)
    _, centers = clustered_vectors(1, 16, num_clusters=64, seed=1)
    q = Q.VQ(16, codebook_size=64, use_cosine_sim=False, decay=0.9, threshold_ema_dead_code=threshold)
    for s in range(steps):
        x, _ = clustered_vectors(512, 16, centers=centers, seed=100 + s)
        q(x[None])
    q.eval()
    x, _ = clustered_vectors(4096, 16, centers=centers, seed=12345)
    return q(x[None]).metrics["usage"].item()


def test_dead_code_restart_reaches_high_usage():
    with_restart = _vq_usage_after_training(threshold=2.0)
    without = _vq_usage_after_training(threshold=0.0)
    assert with_restart > 0.9, with_restart
    assert without < 0.9, without


def test_dead_code_metric_tracks_unused_codes():
    q = Q.VQ(8, codebook_size=16, dead_window=3)
    z = torch.randn(1, 1, 8)  # a single token can use one code only
    for _ in range(4):
        m = q(z).metrics
    assert m["dead_codes"].item() == 15


def test_nested_dropout_keeps_prefix_and_masks_tail():
    nd = Q.NestedDropout(dim=8, num_tokens=16, mode="uniform")
    z = torch.randn(64, 16, 8)
    out = nd(z)
    for b in range(64):
        k = int(out.keep[b])
        assert 1 <= k <= 16
        assert torch.equal(out.tokens[b, :k], z[b, :k])
        assert torch.equal(out.tokens[b, k:], nd.mask_token.expand(16 - k, 8))
        assert out.mask[b].sum() == k
    assert len(set(out.keep.tolist())) > 4  # per-sample draws
    nd.eval()
    assert torch.equal(nd(z).tokens, z)  # no-op at inference
    assert torch.equal(nd(z, keep=3).tokens[:, 3:], nd.mask_token.expand(64, 13, 8))


def test_nested_dropout_modes():
    pow2 = Q.NestedDropout(dim=4, num_tokens=24, mode="pow2")
    assert pow2.allowed_lengths() == [1, 2, 4, 8, 16, 24]
    ks = set(pow2.sample_keep(2000).tolist())
    assert ks == {1, 2, 4, 8, 16, 24}
    uni = Q.NestedDropout(dim=4, num_tokens=8, mode="uniform", min_keep=3)
    ks = uni.sample_keep(4000)
    assert set(ks.tolist()) == set(range(3, 9))
    counts = torch.bincount(ks, minlength=9)[3:].float()
    assert counts.min() / counts.max() > 0.7  # roughly uniform
    batch = Q.NestedDropout(dim=4, num_tokens=8, per_sample=False).sample_keep(32)
    assert len(set(batch.tolist())) == 1
    never = Q.NestedDropout(dim=4, num_tokens=8, p=0.0).sample_keep(100)
    assert set(never.tolist()) == {8}
    prefix = torch.randn(2, 5, 4)
    padded = uni.pad(prefix)
    assert padded.shape == (2, 8, 4) and torch.equal(padded[:, :5], prefix)
    with pytest.raises(ValueError, match="mode"):
        Q.NestedDropout(dim=4, num_tokens=8, mode="random")


@pytest.mark.parametrize("name", ["vq", "fsq", "rvq", "lfq"])
def test_bad_input_gives_clear_errors(name):
    q = make(name)
    with pytest.raises(ValueError, match=r"\(B, N, D\)"):
        q(torch.randn(4, DIM))
    with pytest.raises(ValueError, match="feature dim"):
        q(torch.randn(2, 4, DIM + 1))
    bad = torch.randn(2, 4, DIM)
    bad[0, 1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        q(bad)
    bad[0, 1, 2] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        q.encode(bad)
    with pytest.raises(TypeError, match="floating"):
        q(torch.ones(2, 4, DIM, dtype=torch.long))
    with pytest.raises(ValueError, match="must lie in"):
        shape = (2, 4, q.num_codebooks) if q.is_residual else (2, 4)
        q.decode(torch.full(shape, q.codebook_size))


def test_build_validates_config():
    with pytest.raises(ValueError, match="unknown quantizer type"):
        Q.build({"type": "pq"}, dim=8)
    with pytest.raises(ValueError, match="unknown option"):
        Q.build({"type": "fsq", "levles": [8, 8]}, dim=8)
    with pytest.raises(ValueError, match="'type'"):
        Q.build({"levels": [8, 8]}, dim=8)
    with pytest.raises(ValueError, match="power of two"):
        Q.build({"type": "lfq", "codebook_size": 1000}, dim=8)
    q = Q.build({"type": "fsq", "levels": [8, 8, 8, 5, 5, 5]}, dim=8)
    assert q.codebook_size == 64000 and abs(q.bits_per_token - 15.97) < 0.01
    assert Q.build({"type": "bsq", "codebook_size": 64}, dim=8).spherical


def test_feature_map_helpers_round_trip():
    for shape in [(2, 6, 10), (2, 6, 4, 5), (2, 6, 3, 4, 5)]:
        x = torch.randn(*shape)
        z, spatial = Q.to_channel_last(x)
        assert z.shape == (2, x[0, 0].numel(), 6)
        assert torch.equal(Q.from_channel_last(z, spatial), x)
        codes = torch.arange(2 * z.shape[1]).reshape(2, -1)
        assert torch.equal(Q.grid_to_codes(Q.codes_to_grid(codes, spatial), len(spatial)), codes)
    q = Q.build({"type": "fsq", "levels": [8, 5, 5, 5]}, dim=6).eval()
    fmap = torch.randn(2, 6, 4, 5)
    z, spatial = Q.to_channel_last(fmap)
    grid = Q.codes_to_grid(q.encode(z), spatial)
    assert grid.shape == (2, 4, 5)


def test_default_dim_is_each_quantizers_own():
    assert Q.default_dim({"type": "fsq", "levels": [8, 5, 5]}) == 3
    assert Q.default_dim({"type": "fsq"}) == 6  # FSQ's own default levels [8, 8, 8, 5, 5, 5]
    assert Q.default_dim({"type": "rfsq"}) == 4
    assert Q.default_dim({"type": "lfq", "codebook_size": 2**10}) == 10
    assert Q.default_dim({"type": "bsq"}) == 14
    assert Q.default_dim({"type": "vq", "codebook_dim": 12}) == 12
    assert Q.default_dim({"type": "vq"}) is None and Q.default_dim({"type": "rvq"}) is None
    assert Q.default_dim({"type": "vq", "dim": 32}) == 32
    assert Q.build({"type": "lfq", "codebook_size": 64}).dim == 6  # no dim: the default
    with pytest.raises(ValueError, match="needs 'dim'"):
        Q.build({"type": "vq"})
    with pytest.raises(ValueError, match="unknown option"):
        Q.default_dim({"type": "fsq", "levles": [8]})


def test_build_checks_options_against_each_class():
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['spherical'\]"):
        Q.build({"type": "bsq", "spherical": False}, dim=8)  # BSQ is spherical by definition
    bsq = Q.build({"type": "bsq", "codebook_size": 64, "entropy_loss_weight": 0.2}, dim=8)
    assert bsq.spherical and isinstance(bsq, Q.LFQ)
    with pytest.raises(ValueError, match="kmeans_iters"):
        Q.build({"type": "fsq", "kmeans_iters": 3}, dim=8)
    assert Q.build({"type": "rvq", "kmeans_init": True, "kmeans_iters": 3}, dim=8).num_levels == 8


@pytest.mark.parametrize("name", ["vq", "rvq"])
def test_kmeans_init_happens_in_training_only(name):
    extra = {"quantizer_dropout": False} if name == "rvq" else {}  # with dropout, later levels init later
    q = Q.build({**CONFIGS[name], "kmeans_init": True, **extra}, dim=DIM)
    state = {k: v.clone() for k, v in q.state_dict().items()}
    z = torch.randn(2, 40, DIM)
    codes = q.encode(z)  # eval-mode use of a fresh model: random codebook, no k-means yet
    assert len(codes.unique()) > 1
    q.eval()
    q(z)
    assert all(torch.equal(v, state[k]) for k, v in q.state_dict().items())
    q.train()
    q(z)  # the first training batch runs k-means
    initted = [v for k, v in q.state_dict().items() if k.endswith("initted")]
    assert initted and all(bool(v) for v in initted)


def _dead_codes_run(q, steps, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        z = torch.randn(1, 3, 8, generator=g) * 3  # few tokens per step: codes die and revive
        out.append(float(q(z).metrics["dead_codes"]))
    return out


@pytest.mark.parametrize("kind", ["vq", "rfsq"])
def test_dead_code_tracker_survives_save_and_load(kind):
    spec = {"vq": {"type": "vq", "codebook_size": 16, "dead_window": 5},
            "rfsq": {"type": "rfsq", "levels": [4, 4], "num_levels": 2, "quantizer_dropout": False, "dead_window": 5}}[kind]
    torch.manual_seed(0)
    a = Q.build(spec, dim=8)
    b = Q.build(spec, dim=8)
    b.load_state_dict(a.state_dict())
    _dead_codes_run(a, 7, seed=1)
    _dead_codes_run(b, 7, seed=1)
    resumed = Q.build(spec, dim=8)
    resumed.load_state_dict(b.state_dict())  # strict: the tracker is part of the state
    assert int(resumed._step) == 7
    uninterrupted = _dead_codes_run(a, 6, seed=2)
    assert _dead_codes_run(resumed, 6, seed=2) == uninterrupted
    fresh = Q.build(spec, dim=8)
    fresh.load_state_dict({k: v for k, v in b.state_dict().items() if k not in ("_step", "_last_used")})
    assert _dead_codes_run(fresh, 6, seed=2) != uninterrupted  # without the tracker it restarts


def test_state_without_tracker_loads_strictly_with_a_reset_tracker():
    """Checkpoints written before the tracker was module state still load (strict)."""
    q = Q.build(CONFIGS["rvq"], dim=DIM)
    q(torch.randn(2, 8, DIM))
    old = {k: v for k, v in q.state_dict().items() if not k.endswith(("_last_used", "_step"))}
    wrapper = torch.nn.ModuleDict({"quantizer": Q.build(CONFIGS["rvq"], dim=DIM)})
    wrapper["quantizer"]._step.fill_(3)
    wrapper.load_state_dict({f"quantizer.{k}": v for k, v in old.items()}, strict=True)
    assert int(wrapper["quantizer"]._step) == 0 and int(wrapper["quantizer"]._last_used.sum()) == 0
    with pytest.raises(RuntimeError, match="Unexpected"):
        wrapper.load_state_dict({**{f"quantizer.{k}": v for k, v in old.items()}, "quantizer.bogus": torch.zeros(1)})


def test_quantizer_metrics_and_dataset_histogram_share_one_implementation():
    from mmtok.metrics.codebook import CodebookHistogram
    from mmtok.quantize.stats import code_histogram, histogram_summary

    codes = torch.tensor([[[0, 1], [0, 2], [3, -1], [0, 1]]])  # (B, N, Q=2), -1: a dropped level
    hist = code_histogram(codes, codebook_size=4, num_levels=2)
    assert hist.tolist() == [[3, 0, 0, 1], [0, 2, 1, 0]]
    s = histogram_summary(hist, 4)
    assert float(s["usage"]) == pytest.approx((2 / 4 + 2 / 4) / 2)
    h = CodebookHistogram(4, num_levels=2)
    h.update(codes.to(torch.int32))
    ds = h.compute()
    for k in ("usage", "perplexity", "entropy_bits", "normalized_entropy", "used_codes"):
        assert ds[k] == pytest.approx(float(s[k]))
    q = Q.ResidualFSQ(DIM, levels=[2, 2], num_levels=2).eval()
    m = q.code_metrics(codes)
    assert float(m["usage"]) == pytest.approx(ds["usage"]) and float(m["perplexity"]) == pytest.approx(ds["perplexity"])
    assert float(m["dead_codes"]) == 2.0
    with pytest.raises(ValueError, match="levels"):
        code_histogram(codes, 4, num_levels=3)


@pytest.mark.parametrize("levels, dim", [([8, 5, 5, 5], DIM), ([8, 5, 5, 5], 4), ([2, 2, 2, 2], DIM)])
def test_fsq_matches_the_wrapped_module_bitwise(levels, dim):
    """The wrapper calls the wrapped module's steps itself: outputs and gradients are its own."""
    torch.manual_seed(0)
    q = Q.build({"type": "fsq", "levels": levels}, dim=dim)
    for train in (True, False):
        q.train(train)
        z = torch.randn(3, 10, dim, requires_grad=True)
        z_raw = z.detach().clone().requires_grad_(True)
        out = q(z)
        ref_q, ref_codes = q.fsq(z_raw)
        assert torch.equal(out.quantized, ref_q) and torch.equal(out.codes, ref_codes.long())
        out.quantized.square().sum().backward()
        ref_q.square().sum().backward()
        assert torch.equal(z.grad, z_raw.grad)


def test_fsq_finite_check_on_projection_accepts_huge_finite_input():
    q = make("fsq")
    z = torch.randn(2, 4, DIM)
    with torch.no_grad():
        q.fsq.project_in.weight.abs_()
    z[0, 0, :] = 3e38  # finite, but the projection overflows
    assert not torch.isfinite(q.fsq.project_in(z)).all()
    assert q.encode(z).shape == (2, 4)
    z[1, 2, 3] = float("-inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        q.encode(z)
