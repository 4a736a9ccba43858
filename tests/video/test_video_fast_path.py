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
