"""EncodecStyleCodec, FactorizedRVQ, RVQ(eval_lookup="expanded") and the layout options the
DAC / EnCodec converters set (no reference package needed)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mmtok
from mmtok.audio import EncodecStyleCodec
from mmtok.layers.audio import AudioConv1d, AudioConvTranspose1d, SEANetDecoder, reflect_pad
from mmtok.quantize import FactorizedRVQ, build


def wave(b=2, s=3200, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(s) / 16000
    return (0.4 * torch.sin(2 * math.pi * 330 * t) + 0.1 * torch.randn(b, 1, s, generator=g)).clamp(-1, 1)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return mmtok.create_tokenizer("encodec_style_tiny").eval()


# --- EncodecStyleCodec ------------------------------------------------------------------------
def test_presets_facts():
    tok = mmtok.create_tokenizer("encodec_style_24k", n_filters=2, latent_dim=16, lstm_layers=1)
    assert isinstance(tok, EncodecStyleCodec) and "encodec_style_24k" in mmtok.list_tokenizers(modality="audio")
    assert (tok.sample_rate, tok.hop_length, tok.num_codebooks, tok.codebook_size) == (24000, 320, 32, 1024)
    assert tok.kbps() == pytest.approx(24.0) and tok.kbps(2) == pytest.approx(1.5)
    assert tok.causal and tok.latency["lookahead_samples"] == 0
    with pytest.raises(ValueError, match="final_activation"):
        mmtok.create_tokenizer("encodec_style_tiny", final_activation="relu")


def test_round_trip_forward_and_save_load(tiny, tmp_path):
    x = wave(s=3000)  # not a multiple of the hop 160
    codes = tiny.encode(x)
    assert codes.shape == (2, 19, 4) and codes.dtype == torch.int64
    with torch.no_grad():
        y = tiny.decode(codes)
        out = tiny(x)
    assert y.shape == (2, 1, 19 * 160) and y.abs().max() <= 1
    torch.testing.assert_close(out.recon.clamp(-1, 1), y[..., :3000], atol=1e-5, rtol=0)
    assert torch.equal(tiny.encode(x, n_q=2), codes[..., :2])
    tiny.save_pretrained(tmp_path / "t")
    again = mmtok.load_tokenizer(tmp_path / "t")
    assert type(again) is EncodecStyleCodec and torch.equal(again.encode(x), codes)


def test_training_step_updates_the_codec():
    tok = mmtok.create_tokenizer("encodec_style_tiny").train()
    out = tok(wave(s=1600))
    (out.recon.pow(2).mean() + out.loss).backward()
    assert tok.encoder.layers[0].conv.parametrizations.weight.original1.grad is not None
    assert torch.isfinite(out.loss)


def test_streaming_equals_offline(tiny):
    x = wave(b=1, s=16 * 160)
    codes = tiny.encode(x)
    enc = tiny.stream_encoder()
    with pytest.raises(ValueError, match="longer first chunk"):
        enc.push(x[..., :3 * 160])  # reflect padding: the first chunk must cover the widest padding (7 frames)
    enc.reset()
    parts, cuts = [], [0, 7 * 160, 7 * 160 + 50, 11 * 160, 16 * 160]
    for a, b in zip(cuts, cuts[1:]):
        parts.append(enc.push(x[..., a:b]))
    assert torch.equal(torch.cat(parts, dim=1), codes)
    dec = tiny.stream_decoder()
    wav = torch.cat([dec.push(codes[:, :7]), dec.push(codes[:, 7:9]), dec.push(codes[:, 9:])], dim=-1)
    with torch.no_grad():
        torch.testing.assert_close(wav, tiny.decode(codes), atol=1e-5, rtol=0)


# --- FactorizedRVQ (DAC's quantizer) -------------------------------------------------------
def test_factorized_rvq_protocol():
    torch.manual_seed(0)
    q = build({"type": "factorized_rvq", "num_levels": 4, "codebook_size": 32, "codebook_dim": 4}, dim=16)
    assert isinstance(q, FactorizedRVQ) and q.is_residual and q.num_codebooks == 4
    z = torch.randn(2, 10, 16)
    q.eval()
    out = q(z)
    codes = q.encode(z)
    assert codes.shape == (2, 10, 4) and torch.equal(codes, out.codes)
    torch.testing.assert_close(q.decode(codes), out.quantized, atol=1e-5, rtol=1e-5)
    assert torch.equal(q.encode(z, n_levels=2), codes[..., :2])
    q.n_levels = 2
    torch.testing.assert_close(q(z).quantized, q.decode(codes[..., :2]), atol=1e-5, rtol=1e-5)
    q.n_levels = None
    # the first level's code is the nearest by cosine in the projected space
    lvl = q.levels[0]
    z_e = lvl.in_proj(z.transpose(1, 2)).transpose(1, 2)
    cos = F.normalize(z_e, dim=-1) @ F.normalize(lvl.codebook.weight, dim=-1).t()
    assert torch.equal(cos.argmax(-1), codes[..., 0])


def test_factorized_rvq_training_dropout_and_gradients():
    torch.manual_seed(0)
    q = FactorizedRVQ(dim=16, num_levels=4, codebook_size=32, codebook_dim=4, quantizer_dropout=1.0).train()
    z = torch.randn(64, 5, 16, requires_grad=True)
    out = q(z)
    assert (out.codes == -1).any() and (out.codes[..., 0] >= 0).all()
    (out.loss + out.quantized.sum()).backward()
    assert out.loss > 0 and q.levels[0].codebook.weight.grad.abs().sum() > 0
    assert z.grad.abs().sum() > 0  # straight-through to the input
    with pytest.raises(ValueError, match="quantizer_dropout"):
        FactorizedRVQ(dim=8, quantizer_dropout=2.0)


# --- RVQ eval_lookup="expanded" -------------------------------------------------------------
def test_expanded_lookup_is_the_euclidean_nearest_code():
    torch.manual_seed(0)
    spec = {"type": "rvq", "num_levels": 3, "codebook_size": 16, "use_cosine_sim": False, "quantizer_dropout": True}
    lib, exp = build(spec, dim=8).eval(), build({**spec, "eval_lookup": "expanded"}, dim=8).eval()
    exp.load_state_dict(lib.state_dict())
    z = torch.randn(2, 50, 8)
    codes = exp.encode(z)
    assert (codes == lib.encode(z)).float().mean() > 0.99  # equal but for last-bit near-ties
    embed = exp.inner.layers[0]._codebook.embed[0]
    assert torch.equal(torch.cdist(z, embed[None]).argmin(-1), codes[..., 0])
    torch.testing.assert_close(exp(z).quantized, exp.decode(codes), atol=1e-5, rtol=0)
    assert torch.equal(exp.encode(z, n_levels=1), codes[..., :1])
    with pytest.raises(ValueError, match="use_cosine_sim"):
        build({**spec, "use_cosine_sim": True, "eval_lookup": "expanded"}, dim=8)


# --- layout options (defaults unchanged) -----------------------------------------------------
def test_reflect_pad_and_reflect_conv():
    x = torch.randn(1, 2, 9)
    assert torch.equal(reflect_pad(x, 3, 2), F.pad(x, (3, 2), mode="reflect"))
    short = torch.randn(1, 1, 3)  # shorter than the padding: zero-extended first (EnCodec's rule)
    y = reflect_pad(short, 4, 0)
    assert y.shape[-1] == 7 and torch.equal(y[..., 4:], short)
    conv = AudioConv1d(2, 3, 5, causal=True, pad_mode="reflect", weight_norm=False)
    assert torch.equal(conv(x), conv.conv(F.pad(x, (4, 0), mode="reflect")))
    with pytest.raises(ValueError, match="pad_mode"):
        AudioConv1d(2, 3, 5, pad_mode="circular")


@pytest.mark.parametrize("stride", [2, 5])
def test_transposed_padding_is_torch_padding(stride):
    k, p = 2 * stride, math.ceil(stride / 2)
    layer = AudioConvTranspose1d(3, 2, k, stride, padding=p, weight_norm=False)
    ref = nn.ConvTranspose1d(3, 2, k, stride, padding=p)
    ref.load_state_dict(layer.conv.state_dict())
    x = torch.randn(1, 3, 6)
    torch.testing.assert_close(layer(x), ref(x))
    assert layer(x).shape[-1] == 6 * stride - stride % 2
    with pytest.raises(ValueError, match="centred"):
        AudioConvTranspose1d(3, 2, k, stride, padding=p, causal=True)


def test_symmetric_decoder_pads_to_whole_frames():
    dec = SEANetDecoder(out_channels=1, channels=16, strides=(2, 5), latent_dim=8, upsample_padding="symmetric")
    y = dec(torch.randn(1, 8, 4))
    assert y.shape == (1, 1, 40) and not y[..., -2:].any()  # stride 5 then 2: DAC loses 2 samples
    tok = mmtok.create_tokenizer("rvq_codec_tiny", decoder_strides=(4, 5, 2, 4))
    assert tok.hop_length == 160 and tok.decode(tok.encode(wave(s=320))).shape == (2, 1, 320)
    with pytest.raises(ValueError, match="decoder_strides"):
        mmtok.create_tokenizer("rvq_codec_tiny", decoder_strides=(4, 4))
