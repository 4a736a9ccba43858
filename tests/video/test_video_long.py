import pytest
import torch

import mmtok
from mmtok.layers.audio import streaming
from mmtok.layers.conv3d import CausalConv3d, Downsample3d, FrameGroupNorm, Upsample3d, group_norm3d
from mmtok.video import (
    blend_weights,
    decode_long,
    decode_tiled,
    encode_long,
    encode_tiled,
    pad_frames,
    plan_spans,
    tiling_report,
    window_report,
)


def clip(b=1, t=17, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, t, h, w, generator=g) * 2 - 1


def smooth(b=1, t=1, h=64, w=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(b, 3, t, 6, 6, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(base, size=(t, h, w), mode="trilinear")


def tiny(**kw):
    return mmtok.create_tokenizer("causal3d_tiny", **kw).eval()


# --- layers --------------------------------------------------------------------------------
def test_causal_conv_streams_exactly_with_any_chunks():
    torch.manual_seed(0)
    for stride, first in ((1, 1), (2, 3)):
        conv = CausalConv3d(3, 4, 3, stride_t=stride)
        x = torch.randn(2, 3, 1 + 2 * 6, 5, 5)
        whole = conv(x)
        assert whole.shape[2] == 1 + (x.shape[2] - 1) // stride
        state: dict = {}
        with streaming(conv, state):
            parts = [conv(x[:, :, :first])] + [conv(x[:, :, s : s + 2]) for s in range(first, x.shape[2], 2)]
        assert torch.allclose(torch.cat(parts, dim=2), whole, atol=1e-6)


def test_resampling_lengths_and_first_frame():
    torch.manual_seed(0)
    down, up = Downsample3d(4, temporal=True), Upsample3d(4, temporal=True)
    for t in (1, 3, 9):
        x = torch.randn(1, 4, t, 8, 8)
        d = down(x)
        assert d.shape == (1, 4, 1 + (t - 1) // 2, 4, 4)
        assert up(d).shape == (1, 4, t, 8, 8)
    x = torch.randn(1, 4, 5, 8, 8)
    x2 = x.clone()
    x2[:, :, 1:] += 1
    assert torch.equal(down(x2)[:, :, 0], down(x)[:, :, 0])
    assert torch.equal(up(x2)[:, :, 0], up(x)[:, :, 0])  # latent 0 alone makes frame 0


def test_frame_group_norm_is_per_frame():
    norm = group_norm3d(8)
    assert isinstance(norm, FrameGroupNorm) and norm.num_groups == 8
    x = torch.randn(2, 8, 4, 5, 5)
    y = norm(x)
    for t in range(4):
        assert torch.allclose(y[:, :, t], torch.nn.functional.group_norm(x[:, :, t], 8, norm.weight, norm.bias, 1e-6),
                              atol=1e-6)


# --- temporal windows -----------------------------------------------------------------------
def test_windowed_encode_decode_equal_whole_clip():
    tok = tiny()
    x = clip(2, 17)
    whole = tok.encode(x)
    y = tok.decode(whole)
    for window in (4, 8, 12):
        assert torch.equal(encode_long(tok, x, window=window), whole)
        assert torch.equal(tok.encode_long(x, window=window), whole)
    for window in (1, 2, 3):
        assert torch.allclose(decode_long(tok, whole, window=window), y, atol=1e-5)
    r = window_report(tok, x, window=4, decode_window=1)
    assert r["differing_codes"] == 0 and r["decode_max_err"] < 1e-5 and r["encode_max_latent_err"] < 1e-5
    with pytest.raises(ValueError, match="multiple of temporal_factor"):
        encode_long(tok, x, window=6)
    # padding policy carries over
    x6 = x[:, :, :6]
    assert torch.equal(encode_long(tok, x6, window=4, pad=True), tok.encode(x6, pad=True))
    assert decode_long(tok, tok.encode(x6, pad=True), window=1, num_frames=6).shape[2] == 6


def test_stream_encoder_and_decoder_take_any_chunks():
    tok = tiny()
    x = clip(1, 15)  # not 1 + 4n: flush pads the tail as pad_frames does
    enc = tok.stream_encoder()
    parts = [enc.push(x[:, :, a:b]) for a, b in ((0, 2), (2, 3), (3, 3), (3, 10), (10, 15))]
    parts.append(enc.flush())
    assert torch.equal(torch.cat(parts, dim=1), tok.encode(pad_frames(x, 4)))
    codes = tok.encode(clip(1, 17))
    dec = tok.stream_decoder()
    frames = [dec.push(codes[:, a:b]) for a, b in ((0, 1), (1, 3), (3, 3), (3, 5))]
    assert [f.shape[2] for f in frames] == [1, 8, 0, 8]
    assert torch.allclose(torch.cat(frames, dim=2), tok.decode(codes), atol=1e-5)
    with pytest.raises(ValueError, match="batch of 1"):
        dec.push(codes.expand(2, -1, -1, -1))


def test_non_causal_models_window_with_overlap():
    tok = tiny(causal=False)
    with pytest.raises(ValueError, match="not causal"):
        tok.stream_encoder()
    x = clip(1, 33)
    codes = encode_long(tok, x, window=16, overlap=2)
    assert codes.shape == tok.encode(x).shape
    y = decode_long(tok, codes, window=4, overlap=2)
    assert y.shape == x.shape and y.abs().max() <= 1
    assert encode_long(tok, x).shape == codes.shape and decode_long(tok, codes).shape == x.shape  # defaults fit
    with pytest.raises(ValueError, match="overlap"):
        encode_long(tok, x, window=8, overlap=2)  # 3 latent frames per window: no room for overlap


# --- spatial tiles --------------------------------------------------------------------------
def test_plan_spans_and_blend_weights_partition_unity():
    spans, cuts = plan_spans(20, 8, 2)
    assert spans[0] == (0, 8) and spans[-1] == (12, 20) and len(cuts) == len(spans) - 1
    assert all(a < c < b for (_, b), (a, _), c in zip(spans, spans[1:], cuts))
    total = torch.zeros(80)
    for (a, b), w in zip([(4 * a, 4 * b) for a, b in spans], blend_weights([(4 * a, 4 * b) for a, b in spans], 80)):
        assert torch.all(w > 0)
        total[a:b] += w
    assert torch.allclose(total, torch.ones(80))
    assert plan_spans(5, 8, 2) == ([(0, 5)], [])


def test_one_tile_is_the_whole_frame():
    tok = tiny()
    x = clip(1, 5, 32, 32)
    codes = tok.encode(x)
    assert torch.equal(encode_tiled(tok, x, tile=32), codes)
    with torch.no_grad():  # decode_tiled runs without autograd; with it the temporal convs take oneDNN, not the
        whole = tok.decode(codes)  # CPU path's GEMMs (same math, other float rounding)
    assert torch.equal(decode_tiled(tok, codes, tile=32), whole)


def test_tiled_shapes_on_frames_larger_than_a_tile():
    tok = tiny()
    x = clip(1, 5, 48, 80)
    codes = encode_tiled(tok, x, tile=32, overlap=8)
    assert codes.shape == (1, 2, 12, 20)
    assert torch.equal(tok.encode_tiled(x, tile=32, overlap=8, window=4), codes)  # windows inside tiles: exact
    y = decode_tiled(tok, codes, tile=32, overlap=8)
    assert y.shape == x.shape and y.abs().max() <= 1
    with pytest.raises(ValueError, match="multiples of spatial_factor"):
        encode_tiled(tok, x, tile=30)
    with pytest.raises(ValueError, match="overlap <= tile / 2"):
        decode_tiled(tok, codes, tile=32, overlap=24)


def test_tiled_decode_error_is_bounded_and_shrinks_with_overlap():
    # a spatially local model (per-position norm, no attention): tiles differ from the whole
    # frame only through their edges, and the linear blend keeps the seams bounded
    # (random residual branches: zero-initialised ones would make the untrained model so local
    # that tiles match exactly in the interior and the overlap comparison below is 0 < 0)
    torch.manual_seed(0)
    tok = tiny(norm="layer", mid_attention=False, zero_init_residual=False)
    x = smooth(1, 1, 128, 128)
    r8, r32 = (tiling_report(tok, x, tile=64, overlap=ov) for ov in (8, 32))
    assert r8["tiles"] == [3, 3]
    for r in (r8, r32):
        assert r["decode_max_err"] == max(r["decode_max_err_boundary"], r["decode_max_err_interior"])
        assert r["decode_mean_err_boundary"] < 0.1
    assert r32["decode_mean_err_interior"] < 2e-3 and r32["decode_max_err_interior"] < 0.15
    assert r32["decode_mean_err_boundary"] < r8["decode_mean_err_boundary"]
    assert r32["decode_mean_err_interior"] < r8["decode_mean_err_interior"]
    assert r32["differing_fraction"] < r8["differing_fraction"]
    # the default (per-frame GroupNorm) model reports the same keys
    r = tiling_report(tiny(), smooth(1, 1, 64, 64), tile=32, overlap=8)
    assert set(r) == set(r8) and r["boundary_to_interior"] > 0
