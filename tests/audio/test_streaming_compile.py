"""Compiled streaming (``stream_encoder(compile=True)`` / ``stream_decoder(compile=True)``)."""

import math

import pytest
import torch

import mmtok
from mmtok.audio import streaming as streaming_mod


def wave(s, sr=16000, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(s) / sr
    return (0.4 * torch.sin(2 * math.pi * 220.0 * t) + 0.05 * torch.randn(1, 1, s, generator=g)).clamp(-1, 1)


def run_stream(tok, x, frames, compile):
    step = frames * tok.hop_length
    enc, dec = tok.stream_encoder(compile=compile), tok.stream_decoder(compile=compile)
    codes, wavs = [], []
    for i in range(0, x.shape[-1], step):
        c = enc.push(x[..., i : i + step])
        codes.append(c)
        wavs.append(dec.push(c))
    c = enc.flush()
    codes.append(c)
    wavs.append(dec.push(c))
    return torch.cat(codes, 1), torch.cat(wavs, -1), enc, dec


@pytest.fixture(scope="module")
def tok():
    torch.manual_seed(0)
    return mmtok.create_tokenizer("rvq_codec_tiny_causal").eval()


def test_compiled_stream_dispatch(tok, monkeypatch):
    """Which pushes take the compiled step: not the first (it makes the state), the steady
    chunk shape after it, not a chunk of another length (eager, same state). The compiled
    function is replaced by the eager step here, so this runs in milliseconds."""
    calls = []

    def fake(step):
        fn = streaming_mod._STEPS[step]

        def wrapped(t, x):
            calls.append((step, x.shape[-1]))
            return fn(t, x)

        return wrapped

    monkeypatch.setattr(streaming_mod, "compiled", fake)
    hop = tok.hop_length
    x = wave(hop * 4 * 3 + hop * 2 + 5)  # 3 chunks of 4 frames, 2 frames + 5 samples left
    with torch.no_grad():
        ref = tok.encode(x)
        ref_wav = tok.decode(ref)
        codes, wav, enc, dec = run_stream(tok, x, 4, compile=True)
    assert torch.equal(codes, ref)
    assert (wav - ref_wav).abs().max() < 1e-5
    # push 1 eager; pushes 2, 3 compiled (4 frames); the short 4th push and flush eager
    assert enc.compiled_pushes == 2 and dec.compiled_pushes == 2
    assert calls == [("encoder", 4 * hop), ("decoder", 4), ("encoder", 4 * hop), ("decoder", 4)]
    enc.reset()
    assert enc.compiled_pushes == 2 and enc._shape is None and not enc.state


@pytest.mark.slow  # two inductor compiles: ~70 s on a loaded 2-core CPU
def test_compiled_stream_equals_offline(tok):
    """The real torch.compile (inductor, CPU): codes equal offline exactly, waveform ~1e-7."""
    pytest.importorskip("torch._inductor")
    torch.set_num_threads(1)
    hop = tok.hop_length
    x = wave(hop * 4 * 4 + 37, seed=1)
    with torch.inference_mode():
        ref = tok.encode(x)
        ref_wav = tok.decode(ref)
        codes, wav, enc, dec = run_stream(tok, x, 4, compile=True)
    assert enc.compiled_pushes == 3 and dec.compiled_pushes == 3
    assert codes.shape == ref.shape and torch.equal(codes, ref)
    assert wav.shape == ref_wav.shape
    assert (wav - ref_wav).abs().max() < 1e-5
