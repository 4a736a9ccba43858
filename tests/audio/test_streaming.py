import math

import pytest
import torch

import mmtok
from mmtok.audio import (
    StreamDecoder,
    StreamEncoder,
    decode_long,
    default_batch_size,
    encode_long,
    plan_windows,
    seam_report,
)

CAUSAL = ["rvq_codec_tiny_causal", "istft_codec_tiny_causal"]


def wave(b=2, c=1, s=3000, sr=16000, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(s) / sr
    f = 220.0 * (1 + torch.arange(b * c).reshape(b, c, 1))
    return (0.4 * torch.sin(2 * math.pi * f * t) + 0.05 * torch.randn(b, c, s, generator=g)).clamp(-1, 1)


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


@pytest.fixture(scope="module")
def toks():
    torch.manual_seed(0)
    names = [*CAUSAL, "rvq_codec_tiny", "istft_codec_tiny"]
    return {n: mmtok.create_tokenizer(n).eval() for n in names}


@pytest.mark.parametrize("name", CAUSAL)
@pytest.mark.parametrize("frames", [1, 3, 7])
def test_streaming_equals_offline(toks, name, frames):
    tok = toks[name]
    x = wave(s=21 * 160 + 50)  # 21 whole frames and a partial one
    codes = tok.encode(x)
    wav = tok.decode(codes)
    enc, dec = tok.stream_encoder(), tok.stream_decoder()
    assert isinstance(enc, StreamEncoder) and isinstance(dec, StreamDecoder)
    step = frames * tok.hop_length
    got_codes, got_wav = [], []
    for i in range(0, x.shape[-1], step):
        c = enc.push(x[..., i : i + step])
        assert c.shape[1] == min(step, x.shape[-1] - i) // tok.hop_length  # every whole frame at once
        got_codes.append(c)
        got_wav.append(dec.push(c))
    last = enc.flush()
    assert last.shape[1] == 1  # the zero-padded partial frame
    got_codes.append(last)
    got_wav += [dec.push(last), dec.flush()]
    assert torch.equal(torch.cat(got_codes, 1), codes)
    streamed = torch.cat(got_wav, -1)
    assert streamed.shape == wav.shape
    assert float((streamed - wav).abs().max()) < 1e-4
    assert enc.frames == dec.frames == codes.shape[1]


@pytest.mark.parametrize("name", CAUSAL)
def test_streaming_uneven_chunks(toks, name):
    """Chunks of any length: the encoder holds back a partial frame until it completes."""
    tok = toks[name]
    x = wave(b=1, s=2000)
    enc = tok.stream_encoder()
    sizes = [1, 100, 333, 47, 519, 1000]
    parts, i = [], 0
    for n in sizes:
        parts.append(enc.push(x[..., i : i + n]))
        i += n
    parts.append(enc.flush())
    assert torch.equal(torch.cat(parts, 1), tok.encode(x))
    assert enc.flush().shape[1] == 0  # nothing pending


def test_stream_fewer_levels_and_reset(toks):
    tok = toks["rvq_codec_tiny_causal"]
    x = wave(s=1600)
    enc = tok.stream_encoder(n_q=2)
    codes = torch.cat([enc.push(x[..., :480]), enc.push(x[..., 480:])], 1)
    assert torch.equal(codes, tok.encode(x, n_q=2))
    dec = tok.stream_decoder()
    y = torch.cat([dec.push(codes[:, :4]), dec.push(codes[:, 4:])], -1)
    assert float((y - tok.decode(codes)).abs().max()) < 1e-4
    with pytest.raises(ValueError, match="batch of 2"):
        enc.push(x[:1, :, :160])
    enc.reset()
    assert torch.equal(enc.push(x[:1]), tok.encode(x[:1], n_q=2))  # a fresh stream


@pytest.mark.parametrize("name", ["rvq_codec_tiny", "istft_codec_tiny"])
def test_non_causal_models_refuse_to_stream(toks, name):
    tok = toks[name]
    with pytest.raises(ValueError, match="causal=True"):
        tok.stream_encoder()
    with pytest.raises(ValueError, match="not causal"):
        tok.stream_decoder()


def test_latency(toks):
    for name in CAUSAL:
        lat = toks[name].latency
        assert lat == {"samples": 160, "ms": 10.0, "frame_samples": 160, "lookahead_samples": 0}
    assert toks["rvq_codec_tiny"].latency["lookahead_samples"] > 0


def test_plan_windows_cover_the_file():
    for causal in (False, True):
        wins, cuts = plan_windows(200, 60, 20, causal)
        assert wins[0][0] == 0 and wins[-1][1] == 200 and all(b - a == 60 for a, b in wins)
        assert len(cuts) == len(wins) - 1
        bounds = [0, *cuts, 200]
        for (a, b), k0, k1 in zip(wins, bounds, bounds[1:]):
            assert a <= k0 < k1 <= b  # kept frames lie inside their window
    assert plan_windows(50, 60, 20, False) == ([(0, 50)], [])
    with pytest.raises(ValueError, match="overlap"):
        plan_windows(200, 60, 40, False)


@pytest.mark.parametrize("name", CAUSAL)
def test_long_causal_windowed_equals_whole(toks, name):
    tok = toks[name]
    x = wave(b=1, s=32000)[0]  # (C, S), 2 s = 200 frames
    whole = tok.encode(x[None])[0]
    codes = encode_long(tok, x, chunk_seconds=0.6, batch_size=2)  # default overlap covers the receptive field
    assert torch.equal(codes, whole)
    assert torch.equal(tok.encode_long(x[None], chunk_seconds=0.6, batch_size=8), whole)
    y = decode_long(tok, codes, chunk_frames=128, batch_size=2)  # 2 windows; default overlap fits
    assert y.shape == (1, 32000)
    assert float((y - tok.decode(whole[None])[0]).abs().max()) < 1e-5
    torch.testing.assert_close(tok.decode_long(codes[None], chunk_frames=128), y)


def test_long_batch_size_by_device(toks):
    from mmtok.audio import long as long_mod

    assert default_batch_size("cpu") == 1
    assert default_batch_size(torch.device("cuda", 0)) == long_mod.GPU_BATCH_SIZE > 1
    tok = toks["rvq_codec_tiny_causal"]
    x = wave(b=1, s=32000)[0]
    seen = []
    hook = tok.encoder.register_forward_pre_hook(lambda _, args: seen.append(args[0].shape[0]))
    try:
        codes = encode_long(tok, x, chunk_seconds=0.6)  # CPU default: one window at a time
        assert len(seen) > 1 and set(seen) == {1}
        seen.clear()
        assert torch.equal(encode_long(tok, x, chunk_seconds=0.6, batch_size=4), codes)
        assert max(seen) == 4
    finally:
        hook.remove()
    with pytest.raises(ValueError, match="batch_size"):
        encode_long(tok, x, chunk_seconds=0.6, batch_size=0)


@pytest.mark.parametrize("name", ["rvq_codec_tiny", "istft_codec_tiny"])
def test_long_non_causal_seams(toks, name):
    tok = toks[name]
    x = wave(b=1, s=32000)[0]
    enough = seam_report(tok, x, chunk_seconds=0.6, batch_size=4)  # default overlaps (clipped to half a window)
    assert enough["windows"] > 2 and enough["differing_codes"] == 0
    small = seam_report(tok, x, chunk_seconds=0.6, overlap_seconds=0.04, decode_overlap_frames=4, batch_size=4)
    # codes change only where a window edge is within the encoder's reach
    assert small["differing_frames_interior"] == 0 and small["differing_fraction"] < 0.2
    # decode: exact (float noise) away from the cuts, small and bounded at them
    assert small["decode_max_err_interior"] < 1e-5 and enough["decode_max_err_interior"] < 1e-5
    assert small["decode_max_err_boundary"] < 0.2
    assert enough["decode_max_err_boundary"] <= small["decode_max_err_boundary"]


def test_long_input_errors(toks):
    tok = toks["rvq_codec_tiny_causal"]
    with pytest.raises(ValueError, match=r"\(C, S\) or \(1, C, S\)"):
        encode_long(tok, wave(b=2, s=1600))
    with pytest.raises(ValueError, match="chunk_seconds"):
        encode_long(tok, wave(b=1, s=1600)[0], chunk_seconds=0)
    with pytest.raises(ValueError, match="overlap"):
        encode_long(tok, wave(b=1, s=16000)[0], chunk_seconds=0.2, overlap_seconds=0.15)
    short = encode_long(tok, wave(b=1, s=1000)[0], chunk_seconds=1.0)  # one window
    assert torch.equal(short, tok.encode(wave(b=1, s=1000))[0])
