import pytest
import torch

from mmtok.layers import (
    ConvDecoder2d,
    ConvEncoder2d,
    Transformer,
    group_norm,
    prefix_causal_mask,
)


def test_prefix_causal_mask_structure():
    m = prefix_causal_mask(3, 4)
    assert m.shape == (7, 7) and m.dtype == torch.bool
    assert m[:3, :3].all() and not m[:3, 3:].any()  # patches never see latent tokens
    assert m[3:, :3].all()  # every latent sees every patch
    assert torch.equal(m[3:, 3:], torch.ones(4, 4, dtype=torch.bool).tril())
    assert prefix_causal_mask(3, 4, prefix_sees_causal=True)[:3, 3:].all()


@pytest.mark.parametrize("fused", [True, False])
def test_attention_matches_manual_softmax_with_mask(fused):
    """Bool masks mean True = may attend (SDPA semantics), on timm's fused and manual paths."""
    torch.manual_seed(0)
    attn = Transformer(16, depth=1, num_heads=2).blocks[0].attn.eval()
    attn.fused_attn = fused
    x = torch.randn(2, 5, 16)
    mask = prefix_causal_mask(2, 3)
    q, k, v = attn.qkv(x).reshape(2, 5, 3, 2, 8).permute(2, 0, 3, 1, 4)
    logits = (q @ k.transpose(-1, -2)) / 8**0.5
    logits = logits.masked_fill(~mask, float("-inf"))
    ref = (logits.softmax(-1) @ v).transpose(1, 2).reshape(2, 5, 16)
    torch.testing.assert_close(attn(x, mask), attn.proj(ref), atol=1e-5, rtol=1e-5)


def test_transformer_rejects_bad_heads():
    with pytest.raises(ValueError, match="divisible"):
        Transformer(10, depth=1, num_heads=3)


def test_transformer_state_dict_keys_are_stable():
    """Checkpoints of the 1D tokenizers name these keys: they must not change."""
    keys = set(Transformer(16, depth=1, num_heads=2, qk_norm=True).state_dict())
    expected = {f"blocks.0.{k}.{p}" for k in ("norm1", "attn.qkv", "attn.q_norm", "attn.k_norm", "attn.proj",
                                             "norm2", "mlp.fc1", "mlp.fc2") for p in ("weight", "bias")}
    assert keys == expected | {"norm.weight", "norm.bias"}


def test_is_causal_equals_a_lower_triangular_mask():
    torch.manual_seed(0)
    t = Transformer(16, depth=2, num_heads=2).eval()
    x = torch.randn(2, 6, 16)
    torch.testing.assert_close(t(x, is_causal=True), t(x, torch.ones(6, 6, dtype=torch.bool).tril()))


def test_causal_transformer_ignores_later_tokens():
    torch.manual_seed(0)
    t = Transformer(16, depth=2, num_heads=2).eval()
    x = torch.randn(1, 6, 16)
    mask = prefix_causal_mask(3, 3)
    y = t(x, mask)
    x2 = x.clone()
    x2[:, -1] = torch.randn(16)  # change the last causal token only
    y2 = t(x2, mask)
    torch.testing.assert_close(y[:, :5], y2[:, :5])
    assert not torch.allclose(y[:, 5], y2[:, 5])


def test_transformer_grad_checkpointing_same_output_and_grads():
    torch.manual_seed(0)
    a = Transformer(16, depth=2, num_heads=2)
    b = Transformer(16, depth=2, num_heads=2, grad_checkpointing=True)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 4, 16)
    ya, yb = a(x), b(x)
    torch.testing.assert_close(ya, yb)
    ya.sum().backward()
    yb.sum().backward()
    torch.testing.assert_close(a.blocks[0].attn.qkv.weight.grad, b.blocks[0].attn.qkv.weight.grad)


@pytest.mark.parametrize("mult,factor", [((1, 2), 2), ((1, 2, 2, 4), 8)])
def test_conv_encoder_decoder_factor_and_nonsquare(mult, factor):
    enc = ConvEncoder2d(in_channels=3, base_channels=8, channel_mult=mult, num_res_blocks=1, z_channels=4)
    dec = ConvDecoder2d(out_channels=3, base_channels=8, channel_mult=mult, num_res_blocks=1, z_channels=4)
    x = torch.randn(2, 3, 16, 24)
    z = enc(x)
    assert z.shape == (2, 4, 16 // factor, 24 // factor)
    y = dec(z)
    assert y.shape == x.shape
    y.square().mean().backward()
    assert enc.conv_in.weight.grad.abs().sum() > 0


def test_group_norm_picks_a_divisor():
    assert group_norm(48).num_groups == 24
    assert group_norm(64).num_groups == 32
    assert group_norm(7).num_groups == 7


def test_snake_inference_path_is_bitwise_the_autograd_path():
    from mmtok.layers.audio import Snake

    snake = Snake(6)
    with torch.no_grad():
        snake.alpha.uniform_(0.2, 3.0)
    x = torch.randn(2, 6, 50, requires_grad=True)
    y_grad = snake(x)  # autograd path
    with torch.no_grad():
        y_fast = snake(x)  # in-place path
    assert torch.equal(y_grad.detach(), y_fast)


def test_inference_weight_is_kept_and_follows_parameter_changes():
    """Offline, autograd off: the weight-normed weight is computed once and reused, and every
    way its parameters change (in-place update, load_state_dict, dtype) is seen."""
    from mmtok.layers.audio import AudioConv1d, AudioConvTranspose1d, inference_weight

    for layer in (AudioConv1d(3, 4, 5, causal=True), AudioConvTranspose1d(3, 4, 8, stride=4)):
        layer.eval()
        x = torch.randn(2, 3, 24)
        with torch.no_grad():
            w1 = inference_weight(layer.conv)
            assert inference_weight(layer.conv) is w1  # kept, not recomputed
            y = layer(x)
        ref = layer(x).detach()  # autograd on: the parametrization itself
        assert torch.allclose(y, ref, atol=1e-6)
        with torch.no_grad():
            layer.conv.parametrizations.weight.original1.mul_(-1.0)
            assert inference_weight(layer.conv) is not w1
            y2 = layer(x)
        assert torch.allclose(y2, layer(x).detach(), atol=1e-6) and not torch.allclose(y2, y)
        sd = {k: torch.randn_like(v) for k, v in layer.state_dict().items()}
        layer.load_state_dict(sd)
        with torch.no_grad():
            y3 = layer(x)
        assert torch.allclose(y3, layer(x).detach(), atol=1e-5)
        layer.double()
        with torch.no_grad():
            assert layer(x.double()).dtype == torch.float64
        assert "_inference_weight" not in "".join(layer.state_dict())  # not saved


def test_stream_weight_is_read_once_and_follows_parameter_updates():
    from mmtok.layers.audio import AudioConv1d, streaming

    conv = AudioConv1d(3, 4, 5, causal=True).eval()
    x = torch.randn(1, 3, 40)
    state: dict = {}
    with torch.no_grad():
        with streaming(conv, state):
            conv(x[..., :20])
        assert "_inference_weight" in conv.conv.__dict__
        with torch.no_grad():
            conv.conv.parametrizations.weight.original1.mul_(2.0)  # a new direction tensor version
        with streaming(conv, state):
            b = conv(x[..., 20:])
        full_state: dict = {}
        with streaming(conv, full_state):
            conv(x[..., :20])
            ref = conv(x[..., 20:])  # the updated weight, fresh stream state
    assert torch.equal(b, ref)


@pytest.mark.parametrize("shape,k,stride,dilation,bias", [
    ((1, 16, 200), 7, 1, 3, True),     # dilated, small: PyTorch's slow dilated kernel otherwise
    ((1, 16, 1400), 7, 1, 9, False),   # above 20480 elements: oneDNN otherwise
    ((3, 8, 120), 8, 4, 1, True),      # batch > 1, strided
    ((1, 8, 64), 1, 1, 1, True),       # 1x1: PyTorch's own kernel
    ((1, 4, 40000), 7, 1, 3, True),    # above 2^17 elements: PyTorch's own kernel
])
def test_conv1d_inference_equals_the_library_conv(shape, k, stride, dilation, bias):
    import torch.nn.functional as F

    from mmtok.layers.audio import conv1d_inference

    torch.manual_seed(0)
    conv = torch.nn.Conv1d(shape[1], 12, k, stride, dilation=dilation, bias=bias)
    x = torch.randn(shape)
    with torch.no_grad():
        y = conv1d_inference(x, conv)
        ref = F.conv1d(x, conv.weight, conv.bias, stride, 0, dilation)
    assert y.shape == ref.shape
    assert torch.allclose(y, ref, atol=1e-5), (y - ref).abs().max()
    with torch.no_grad(), pytest.raises((ValueError, RuntimeError)):
        conv1d_inference(torch.randn(2, shape[1], (k - 1) * dilation), conv)  # shorter than the span


@pytest.mark.parametrize("k,stride,bias", [(16, 8, True), (10, 4, False)])
def test_conv_transpose1d_inference_gemm_path_equals_the_library(k, stride, bias):
    """A weight of >= 2^23 elements takes the GEMM + overlap-add path; k need not be a multiple
    of the stride; batch 2."""
    import torch.nn.functional as F

    from mmtok.layers.audio import _GEMM_TRANSPOSE_MIN, conv_transpose1d_inference

    torch.manual_seed(0)
    cout = -(-_GEMM_TRANSPOSE_MIN // (1024 * k))
    conv = torch.nn.ConvTranspose1d(1024, cout, k, stride, bias=bias)
    assert conv.weight.numel() >= _GEMM_TRANSPOSE_MIN
    x = torch.randn(2, 1024, 5)
    with torch.no_grad():
        y = conv_transpose1d_inference(x, conv)
        ref = F.conv_transpose1d(x, conv.weight, conv.bias, stride)
    assert y.shape == ref.shape == (2, cout, 4 * stride + k)
    assert torch.allclose(y, ref, atol=1e-5), (y - ref).abs().max()
