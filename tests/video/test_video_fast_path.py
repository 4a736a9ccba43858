"""The CPU fast path of the causal 3D layers (channels-last 3D, oneDNN convs) computes the same
function as plain ``F.conv3d``, and the ``conv="2+1d"`` option keeps causality, windowed
exactness and inflation from 2D."""

import pytest
import torch
import torch.nn.functional as F

import mmtok
import mmtok.layers.conv3d as conv3d_mod
from mmtok.layers.conv3d import CausalConv3d, FactorizedConv3d, conv3d
from mmtok.video import encode_long, inflate_from_image


def clip(b=1, t=9, h=32, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, t, h, w, generator=g) * 2 - 1


@pytest.mark.parametrize("kernel,stride,padding", [((3, 3, 3), (1, 1, 1), (0, 1, 1)), ((1, 3, 3), (1, 2, 2), (0, 0, 0)),
                                                   ((1, 1, 1), (1, 1, 1), (0, 0, 0)), ((3, 1, 1), (2, 1, 1), (0, 0, 0))])
def test_conv3d_matches_f_conv3d_with_gradients(kernel, stride, padding):
    torch.manual_seed(0)
    x = torch.randn(1, 6, 7, 10, 10, requires_grad=True)
    w = torch.randn(5, 6, *kernel, requires_grad=True)
    b = torch.randn(5, requires_grad=True)
    y = conv3d(x, w, b, stride, padding)
    ref = F.conv3d(x, w, b, stride, padding)
    assert y.shape == ref.shape and torch.allclose(y, ref, atol=1e-4)
    g = torch.randn_like(ref)
    for a, r in zip(torch.autograd.grad(y, (x, w, b), g), torch.autograd.grad(ref, (x, w, b), g)):
        assert torch.allclose(a, r, atol=1e-3)


@pytest.mark.parametrize("preset", ["causal3d_tiny", "causal3d_4x8x8_fsq_2p1d"])
@pytest.mark.parametrize("cl_max", [128, 4])  # 4: every map NCDHW, as full-width models run
def test_fast_path_equals_the_plain_path(preset, cl_max, monkeypatch):
    monkeypatch.setattr(conv3d_mod, "CHANNELS_LAST_MAX", cl_max)
    monkeypatch.setattr(conv3d_mod, "FACTORIZED_CHANNELS_LAST_MAX", cl_max)
    torch.manual_seed(0)
    kw = {} if preset == "causal3d_tiny" else dict(image_size=32, num_frames=9, base_channels=8, z_channels=8)
    tok = mmtok.create_tokenizer(preset, zero_init_residual=False, **kw).eval()
    x = clip()
    with torch.no_grad():
        z, y = tok.encoder(x), tok.decode(tok.encode(x))
        assert z.is_contiguous() and y.is_contiguous()
        monkeypatch.setattr(conv3d_mod, "CHANNELS_LAST_DEVICES", ())
        z0, y0 = tok.encoder(x), tok.decode(tok.encode(x))
    assert torch.allclose(z, z0, atol=1e-4) and torch.allclose(y, y0, atol=1e-4)


@pytest.mark.parametrize("preset", ["causal3d_tiny", "causal3d_4x8x8_fsq_2p1d"])
@pytest.mark.parametrize("cl_max", [128, 4])
def test_frame_zero_alone_is_bit_exact_and_windows_are_exact(preset, cl_max, monkeypatch):
    monkeypatch.setattr(conv3d_mod, "CHANNELS_LAST_MAX", cl_max)
    monkeypatch.setattr(conv3d_mod, "FACTORIZED_CHANNELS_LAST_MAX", cl_max)
    torch.manual_seed(0)
    kw = {} if preset == "causal3d_tiny" else dict(image_size=32, num_frames=9, base_channels=8, z_channels=8)
    tok = mmtok.create_tokenizer(preset, zero_init_residual=False, **kw).eval()
    x = clip(t=17)
    with torch.no_grad():
        z = tok.encoder(x)
        assert torch.equal(tok.encoder(x[:, :, :1])[:, :, 0], z[:, :, 0])  # a 1-frame clip: latent frame 0
        x2 = x.clone()
        x2[:, :, 1:] = -x2[:, :, 1:]
        assert torch.equal(tok.encoder(x2)[:, :, 0], z[:, :, 0])
        codes = tok.encode(x)
        for window in (4, 8):
            assert torch.equal(encode_long(tok, x, window=window), codes)
        y = tok.decode(codes)
        assert torch.equal(tok.decode(codes[:, :1])[:, :, 0], y[:, :, 0])


def test_factorized_conv_layout_and_inflation():
    tok = mmtok.create_tokenizer("causal3d_4x8x8_fsq_2p1d", image_size=32, base_channels=8, z_channels=8)
    block = tok.encoder.down[0]
    assert isinstance(block.conv1, FactorizedConv3d) and tok.config.conv == "2+1d"
    assert block.conv1.spatial.kernel_size == (1, 3, 3) and block.conv1.temporal.kernel_size == (3, 1, 1)
    assert isinstance(tok.encoder.conv_in, CausalConv3d) and tok.encoder.conv_in.kernel_size == (3, 3, 3)
    full = mmtok.create_tokenizer("causal3d_4x8x8_fsq", image_size=32, base_channels=8, z_channels=8)
    assert tok.num_parameters() < full.num_parameters()
    with pytest.raises(ValueError, match="conv must be one of"):
        mmtok.create_tokenizer("causal3d_tiny", conv="3x3")
    torch.manual_seed(0)
    img = mmtok.create_tokenizer("vqgan_t_f8_vq", base_channels=8, z_channels=8).eval()
    vid = inflate_from_image(img, num_frames=9, conv="2+1d")
    x = clip(2, 1)[:, :, 0]
    assert torch.equal(vid.encode_image(x), img.encode(x))
    v = clip(1, 9, seed=3)
    vc = vid.encode(v)
    assert all(torch.equal(vc[:, j], img.encode(v[:, :, 4 * j])) for j in range(3))


def _time_conv_ref(x, conv):
    """Reference of a causal (k_t, 1, 1) CausalConv3d: replicate frame 0 into the past, then ``F.conv3d``."""
    pad = x[:, :, :1].expand(-1, -1, conv.pad_past, -1, -1)
    return F.conv3d(torch.cat([pad, x], 2), conv.weight, conv.bias, dilation=(conv.dilation_t, 1, 1))


@pytest.mark.parametrize("cl_max", [128, 4])  # channels-last rows / NCDHW columns
@pytest.mark.parametrize("kt,dilation", [(3, 1), (2, 1), (3, 2)])
def test_time_conv_gemm_matches_f_conv3d_and_is_causal(cl_max, kt, dilation, monkeypatch):
    """The causal (k_t, 1, 1) conv as in-place per-frame GEMMs (``time_conv_gemm_``, chunks of
    ``TIME_GEMM_ROWS`` positions: 7 here, so frames end in partial chunks) equals ``F.conv3d``
    on the replicate-padded clip, also with a fused residual ``add``; output frame t depends on
    input frames <= t only (bit-exact); a 1-frame clip and a stream give the offline frames bit-exactly."""
    monkeypatch.setattr(conv3d_mod, "CHANNELS_LAST_MAX", cl_max)
    monkeypatch.setattr(conv3d_mod, "FACTORIZED_CHANNELS_LAST_MAX", cl_max)
    monkeypatch.setattr(conv3d_mod, "TIME_GEMM_ROWS", 7)
    torch.manual_seed(0)
    conv = CausalConv3d(6, 6, (kt, 1, 1), dilation_t=dilation).eval()
    for b, t in ((1, 9), (2, 5), (1, 1)):
        x = torch.randn(b, 6, t, 5, 4)
        with torch.no_grad():
            assert conv._time_gemm(x)
            ref = _time_conv_ref(x, conv)
            y = conv(x)
            xin = conv3d_mod._owned_map(x, False)
            y_in = conv(xin, overwrite_input=True)
            skip = conv3d_mod._owned_map(torch.randn_like(ref), False)
            y_add = conv(conv3d_mod._owned_map(x, False), overwrite_input=True, add=skip)
        assert y.shape == ref.shape and torch.allclose(y, ref, rtol=1e-5, atol=1e-5)
        assert torch.equal(y_in, y) and y_in.data_ptr() == xin.data_ptr()  # written into the input's memory
        assert torch.equal(y_add, skip + y)  # the same float sum as adding afterwards
        with torch.no_grad():
            x2 = x.clone()
            x2[:, :, t // 2 + 1 :] = torch.randn_like(x2[:, :, t // 2 + 1 :])  # change the future
            assert torch.equal(conv(x2)[:, :, : t // 2 + 1], y[:, :, : t // 2 + 1])
            assert torch.equal(conv(x[:, :, :1]), y[:, :, :1])
            state = {}
            with mmtok.layers.audio.streaming(conv, state):
                ys = torch.cat([conv(x[:, :, i : i + 2]) for i in range(0, t, 2)], 2)
            assert torch.equal(ys, y)


def test_time_conv_gemm_falls_back_with_autograd_and_keeps_gradients():
    torch.manual_seed(0)
    conv = CausalConv3d(4, 4, (3, 1, 1))
    x = torch.randn(1, 4, 5, 3, 3, requires_grad=True)
    assert not conv._time_gemm(x)  # autograd on: oneDNN conv3d, with its backward
    y = conv(x, add=torch.zeros(1, 4, 5, 3, 3))
    ref = _time_conv_ref(x, conv)
    assert torch.allclose(y, ref, atol=1e-5)
    g = torch.randn_like(ref)
    for a, r in zip(torch.autograd.grad(y, (x, conv.weight), g), torch.autograd.grad(ref, (x, conv.weight), g)):
        assert torch.allclose(a, r, atol=1e-4)


@pytest.mark.parametrize("cl_max", [128, 4])
def test_time_gemm_path_equals_the_oneDNN_temporal_convs(cl_max, monkeypatch):
    """A (2+1)D model with its temporal convs as GEMMs (``TIME_GEMM``) against oneDNN conv3d: the
    same codes, latents and frames within float rounding."""
    monkeypatch.setattr(conv3d_mod, "CHANNELS_LAST_MAX", cl_max)
    monkeypatch.setattr(conv3d_mod, "FACTORIZED_CHANNELS_LAST_MAX", cl_max)
    torch.manual_seed(0)
    tok = mmtok.create_tokenizer("causal3d_4x8x8_fsq_2p1d", zero_init_residual=False, image_size=32, num_frames=9,
                                 base_channels=8, z_channels=8).eval()
    x = clip(t=9)
    out = {}
    for flag in (True, False):
        monkeypatch.setattr(conv3d_mod, "TIME_GEMM", flag)
        with torch.no_grad():
            codes = tok.encode(x)
            out[flag] = (tok.encoder(x), codes, tok.decode(codes))
    (z, c, y), (z0, c0, y0) = out[True], out[False]
    assert torch.equal(c, c0)
    assert torch.allclose(z, z0, rtol=1e-5, atol=1e-5 * z0.abs().max().item())
    assert torch.allclose(y, y0, rtol=1e-5, atol=1e-5)
