import math

import pytest
import torch

import mmtok
from mmtok.audio import AudioTokenizer, ISTFTCodec, RVQCodec, resample, to_channels
from mmtok.config import ConfigError
from mmtok.tokenizer import TokenizerOutput

TINY = ["rvq_codec_tiny", "rvq_codec_tiny_causal", "istft_codec_tiny", "istft_codec_tiny_causal"]
# widths shrunk so the full-size presets build in milliseconds (facts do not depend on widths)
NARROW = {
    "rvq": dict(base_channels=4, decoder_channels=64, latent_dim=16),
    "istft": dict(encoder_channels=4, latent_dim=16, width=16, depth=1, mlp_dim=32),
}


def wave(b=2, c=1, s=3000, sr=16000, seed=0):
    """Sine + noise in [-1, 1], (B, C, S) float32."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(s) / sr
    f = 220.0 * (1 + torch.arange(b * c).reshape(b, c, 1))
    return (0.4 * torch.sin(2 * math.pi * f * t) + 0.05 * torch.randn(b, c, s, generator=g)).clamp(-1, 1)


@pytest.fixture(scope="module")
def toks():
    torch.manual_seed(0)
    return {n: mmtok.create_tokenizer(n).eval() for n in TINY}


@pytest.mark.parametrize(
    "name, sr, hop, levels, size, kbps",
    [
        ("rvq_codec_24k", 24000, 320, 8, 1024, 6.0),
        ("rvq_codec_16k_speech", 16000, 320, 8, 1024, 4.0),
        ("rvq_codec_tiny", 16000, 160, 4, 256, 3.2),
        ("rvq_codec_tiny_causal", 16000, 160, 4, 256, 3.2),
        ("istft_codec_24k_40hz", 24000, 600, 1, 4096, 0.48),
        ("istft_codec_24k_75hz", 24000, 320, 1, 4096, 0.9),
        ("istft_codec_tiny", 16000, 160, 1, 256, 0.8),
        ("istft_codec_tiny_causal", 16000, 160, 1, 256, 0.8),
    ],
)
def test_registered_presets(name, sr, hop, levels, size, kbps):
    assert name in mmtok.list_tokenizers(modality="audio")
    tok = mmtok.create_tokenizer(name, **NARROW[name.split("_")[0]])
    assert isinstance(tok, AudioTokenizer) and tok.modality == "audio" and tok.variant_name == name
    assert (tok.sample_rate, tok.hop_length, tok.num_codebooks, tok.codebook_size) == (sr, hop, levels, size)
    assert tok.frame_rate == pytest.approx(sr / hop)
    assert tok.kbps() == pytest.approx(kbps)
    assert tok.causal == name.endswith("causal")
    if isinstance(tok, ISTFTCodec):
        assert tok.n_fft == 4 * hop
    t = tok.config.segment_length // hop
    assert tok.token_shape == (t,) and tok.codes_shape == ((t,) if levels == 1 else (t, levels))
    assert tok.preprocessing() == {"sample_rate": sr, "channels": 1, "segment_length": tok.config.segment_length}
    d = tok.describe()
    assert d["modality"] == "audio" and d["sample_rate"] == sr and d["hop_length"] == hop
    assert d["frame_rate"] == pytest.approx(sr / hop) and d["kbps"] == pytest.approx(kbps) and d["causal"] == tok.causal
    assert tok.bits_per_item == pytest.approx(t * levels * math.log2(size))
    lat = tok.latency
    assert lat["frame_samples"] == hop and lat["samples"] == hop + lat["lookahead_samples"]
    assert lat["ms"] == pytest.approx(1000 * lat["samples"] / sr)
    assert (lat["lookahead_samples"] == 0) == tok.causal


@pytest.mark.parametrize("name", TINY)
def test_round_trip_lengths(toks, name):
    tok = toks[name]
    x = wave(s=3000)  # not a multiple of hop 160: padded to 19 frames
    codes = tok.encode(x)
    t = math.ceil(3000 / tok.hop_length)
    assert codes.dtype == torch.int64
    assert codes.shape == ((2, t, 4) if isinstance(tok, RVQCodec) else (2, t))
    y = tok.decode(codes)
    assert y.shape == (2, 1, t * tok.hop_length) and y.dtype == torch.float32
    assert y.abs().max() <= 1 and torch.isfinite(y).all()
    out = tok(x)
    assert isinstance(out, TokenizerOutput) and out.recon.shape == x.shape and out.loss.ndim == 0
    assert {"usage", "perplexity", "dead_codes"} <= set(out.metrics)
    # eval-mode forward reconstructs what encode -> decode does (before clamping)
    torch.testing.assert_close(out.recon.clamp(-1, 1), y[..., :3000], atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_n_q_honoured_in_train_and_eval(mode):
    tok = mmtok.create_tokenizer("rvq_codec_tiny").train(mode == "train")
    x = wave(s=1600)
    full = tok.encode(x)
    for k in (1, 2, 3, 4):
        codes = tok.encode(x, n_q=k)
        assert codes.shape == (2, 10, k)
        assert torch.equal(codes, full[..., :k])  # greedy residual levels: a prefix
        assert tok.decode(codes).shape == (2, 1, 1600)
    assert tok.kbps(2) == pytest.approx(tok.kbps(4) * 2 / 4) and tok.kbps(1) == pytest.approx(0.8)
    # fewer levels decode differently (the extra levels carry information)
    assert not torch.allclose(tok.decode(full[..., :1]), tok.decode(full))
    for bad in (0, 5, True, 2.0):
        with pytest.raises(ValueError, match="n_q"):
            tok.encode(x, n_q=bad)
        with pytest.raises(ValueError, match="n_q"):
            tok.kbps(bad)


def test_single_codebook_n_q(toks):
    tok = toks["istft_codec_tiny"]
    x = wave(s=1600)
    assert torch.equal(tok.encode(x, n_q=1), tok.encode(x)) and tok.kbps(1) == tok.kbps()
    with pytest.raises(ValueError, match="single codebook"):
        tok.encode(x, n_q=2)


@pytest.mark.parametrize("name", ["rvq_codec_tiny", "istft_codec_tiny"])
def test_bad_inputs_raise_clear_errors(toks, name):
    tok = toks[name]
    x = wave(s=1600)
    with pytest.raises(ValueError, match=r"to_channels\(x, 1\)"):
        tok.encode(wave(c=2, s=1600))
    with pytest.raises(TypeError, match="float32"):
        tok.encode(x.double())
    with pytest.raises(TypeError, match="to_model_range"):
        tok.encode((x * 100).to(torch.int16))
    with pytest.raises(ValueError, match="NaN"):
        tok.encode(torch.where(torch.arange(1600) == 5, float("nan"), x))
    with pytest.raises(ValueError, match="empty"):
        tok.encode(x[..., :0])
    with pytest.raises(ValueError, match="too short"):
        tok.encode(x[..., : tok.hop_length - 1])
    with pytest.raises(ValueError, match=r"x\[:, None\]"):
        tok.encode(x[:, 0])
    with pytest.raises(ValueError, match=r"x\[None, None\]"):
        tok.encode(x[0, 0])
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        tok.encode(x * 3)
    with pytest.raises(TypeError, match="torch.Tensor"):
        tok.encode(x.numpy())
    with pytest.raises(ValueError, match="resample=True"):
        tok.encode(x, sample_rate=8000)
    with pytest.raises(ValueError, match="resample=True"):
        tok.check_input(x, sample_rate=44100)
    tok.check_input(x, sample_rate=16000)
    assert tok.encode(x[..., : tok.hop_length]).shape[1] == 1  # one hop is enough


def test_resample_and_channel_helpers(toks):
    tok = toks["rvq_codec_tiny"]
    x8k = wave(s=800, sr=8000)
    codes = tok.encode(x8k, sample_rate=8000, resample=True)
    assert codes.shape[1] == 10  # 800 samples at 8 kHz = 1600 at 16 kHz = 10 frames
    assert torch.equal(codes, tok.encode(resample(x8k, 8000, 16000)))
    assert tok.encode(x8k, sample_rate=16000).shape[1] == 5  # same rate: nothing to resample
    y = resample(x8k, 8000, 24000)
    assert y.shape == (2, 1, 2400) and y.abs().max() <= 1
    with pytest.raises(ValueError, match="positive int"):
        resample(x8k, 0, 16000)
    st = to_channels(x8k, 2)
    assert st.shape == (2, 2, 800) and torch.equal(st[:, 0], st[:, 1])
    assert torch.equal(to_channels(st, 1), x8k) and to_channels(x8k, 1) is x8k
    with pytest.raises(ValueError, match="cannot convert"):
        to_channels(torch.zeros(1, 3, 10), 2)


@pytest.mark.parametrize("name", ["rvq_codec_tiny", "istft_codec_tiny"])
def test_stereo_model(name):
    tok = mmtok.create_tokenizer(name, channels=2).eval()
    x = wave(c=2, s=1600)
    y = tok.decode(tok.encode(x))
    assert y.shape == (2, 2, 1600) and tok(x).recon.shape == x.shape
    with pytest.raises(ValueError, match=r"to_channels\(x, 2\)"):
        tok.encode(x[:, :1])


def test_decode_code_dtypes_and_errors(toks):
    tok = toks["rvq_codec_tiny"]
    codes = tok.encode(wave(s=1600))
    ref = tok.decode(codes)
    for dtype in (torch.uint16, torch.int32, torch.int16):
        torch.testing.assert_close(tok.decode(codes.to(dtype)), ref)
    with pytest.raises(ValueError, match=r"\[0, 256\)"):
        tok.decode(torch.full_like(codes, 256))
    with pytest.raises(ValueError, match=r"codes\[\.\.\., None\]"):
        tok.decode(codes[..., 0])
    with pytest.raises(ValueError, match="1 <= Q <= 4"):
        tok.decode(torch.cat([codes, codes[..., :1]], -1))
    with pytest.raises(TypeError, match="integer"):
        tok.decode(codes.float())
    vq = toks["istft_codec_tiny"]
    c1 = vq.encode(wave(s=1600))
    torch.testing.assert_close(vq.decode(c1.to(torch.uint16)), vq.decode(c1))
    with pytest.raises(ValueError, match=r"codes\[\.\.\., 0\]"):
        vq.decode(c1[..., None])
    with pytest.raises(ValueError, match=r"\[0, 256\)"):
        vq.decode(c1 - 1 - c1.max())


@pytest.mark.parametrize("name", ["rvq_codec_tiny_causal", "istft_codec_tiny_causal"])
def test_causal_models_ignore_the_future(toks, name):
    tok, hop = toks[name], toks[name].hop_length
    x = wave(b=1, s=4000)
    s = 2000  # change every sample from s on
    x2 = x.clone()
    x2[..., s:] = wave(b=1, s=2000, seed=1)
    c1, c2 = tok.encode(x), tok.encode(x2)
    done = s // hop  # frames whose support [.., (j + 1) * hop) ends by s
    assert torch.equal(c1[:, :done], c2[:, :done])
    assert not torch.equal(c1[:, done:], c2[:, done:])
    # decoder: samples of frames before f do not depend on codes from f on
    f = 10
    c3 = c1.clone()
    c3[:, f:] = (c3[:, f:] + 7) % tok.codebook_size
    y1, y3 = tok.decode(c1), tok.decode(c3)
    torch.testing.assert_close(y1[..., : f * hop], y3[..., : f * hop], atol=1e-6, rtol=0)
    assert not torch.allclose(y1[..., f * hop :], y3[..., f * hop :])


def test_non_causal_model_looks_ahead(toks):
    tok = toks["rvq_codec_tiny"]
    x = wave(b=1, s=4000)
    x2 = x.clone()
    x2[..., 2000:] = 0
    assert not torch.equal(tok.encode(x)[:, :12], tok.encode(x2)[:, :12])
    assert tok.lookahead > 0 and tok.latency["samples"] > tok.hop_length


@pytest.mark.parametrize("name", ["rvq_codec_tiny_causal", "istft_codec_tiny"])
def test_save_load_round_trip(tmp_path, name):
    tok = mmtok.create_tokenizer(name)
    x = wave(s=1600)
    tok.train()(x)  # k-means init and EMA updates: state worth saving
    tok.eval()
    tok.save_pretrained(tmp_path / "ck")
    back = mmtok.load_tokenizer(tmp_path / "ck", modality="audio")
    assert type(back) is type(tok) and back.variant_name == name and back.config == tok.config
    codes = tok.encode(x)
    assert torch.equal(back.encode(x), codes)
    torch.testing.assert_close(back.decode(codes), tok.decode(codes))


def test_last_layer_weight_is_trainable(toks):
    for name in ("rvq_codec_tiny", "istft_codec_tiny"):
        tok = mmtok.create_tokenizer(name)
        w = tok.last_layer_weight
        assert w.requires_grad and any(w is p for p in tok.parameters())
        tok(wave(s=1600)).recon.abs().mean().backward()
        assert w.grad is not None and w.grad.abs().sum() > 0


def test_config_errors():
    with pytest.raises(ValueError, match="segment_length"):
        mmtok.create_tokenizer("rvq_codec_tiny", segment_length=1000)
    with pytest.raises(ConfigError, match="unknown config key"):
        mmtok.create_tokenizer("rvq_codec_tiny", n_fft=3)
    with pytest.raises(ValueError, match="single codebook"):
        mmtok.create_tokenizer("istft_codec_tiny", quantizer={"type": "rvq", "num_levels": 2, "codebook_size": 16})
    with pytest.raises(ValueError, match="divisible"):
        mmtok.create_tokenizer("rvq_codec_tiny", decoder_channels=24)


def test_istft_codec_with_fsq():
    tok = mmtok.create_tokenizer("istft_codec_tiny", quantizer={"type": "fsq", "levels": [8, 5, 5, 5]}).eval()
    assert tok.codebook_sizes == (1000,) and tok.kbps() == pytest.approx(100 * math.log2(1000) / 1000)
    codes = tok.encode(wave(s=1600))
    assert codes.shape == (2, 10) and 0 <= int(codes.min()) and int(codes.max()) < 1000
    assert tok.decode(codes).shape == (2, 1, 1600)


def test_training_steps_reduce_the_loss():
    """Sanity: a few Adam steps of the tiny RVQ codec on one short signal lower L1 + spectral L1."""
    torch.manual_seed(0)
    tok = mmtok.create_tokenizer("rvq_codec_tiny").train()
    x = wave(b=1, s=3200)
    window = torch.hann_window(256)

    def spec(y):
        return torch.stft(y.reshape(-1, y.shape[-1]), 256, 64, window=window, return_complex=True).abs()

    opt = torch.optim.Adam(tok.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        out = tok(x)
        rec = (out.recon - x).abs().mean() + (spec(out.recon) - spec(x)).abs().mean()
        opt.zero_grad()
        (rec + out.loss).backward()
        opt.step()
        losses.append(float(rec.detach()))
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:3]) / 3
