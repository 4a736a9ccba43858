"""Numerical equivalence of the audio converters with the REFERENCE packages.

Each test builds the reference model (descript-audio-codec 1.0.0 DAC, encodec 0.1.1
EnCodec) at random init (every bias, weight-norm gain and Snake alpha perturbed so a wrong
mapping shows), saves it in the official file layout, converts it with ``mmtok convert`` and
``mmtok.load_tokenizer`` and checks: codes EQUAL to the reference's, decoded audio within
1e-4 (max abs), ``n_q = k`` equal to the reference's first k levels.

The reference packages are not project dependencies (audiotools would downgrade protobuf
and tensorboard); they are read from ``MMTOK_REF_DEPS`` (default ``.cache/ref-deps``, else
``.cache/bench-deps``), installed with

    pip install --target .cache/ref-deps --no-deps descript-audio-codec==1.0.0 \\
        descript-audiotools==0.7.2 encodec==0.1.1 argbind==0.3.9 docstring-parser==0.18.0 \\
        flatten-dict==0.5.0 ffmpy==1.0.0 importlib-resources==7.1.0 julius==0.2.8 \\
        markdown-it-py==4.3.0 mdurl==0.1.2 randomname==0.2.1 rich==15.0.0

(``.ci/run`` does this). Without them these tests skip, naming the command.
"""

from __future__ import annotations

import json
import math
import os
import sys
import warnings
from pathlib import Path

import pytest
import torch

import mmtok
from mmtok.cli import main as cli_main
from mmtok.convert import ConversionError, convert_checkpoint

ROOT = Path(__file__).resolve().parents[2]
MAX_ABS = 1e-4
HINT = ("pip install --target .cache/ref-deps --no-deps descript-audio-codec==1.0.0 descript-audiotools==0.7.2 "
        "encodec==0.1.1 argbind==0.3.9 docstring-parser==0.18.0 flatten-dict==0.5.0 ffmpy==1.0.0 "
        "importlib-resources==7.1.0 julius==0.2.8 markdown-it-py==4.3.0 mdurl==0.1.2 randomname==0.2.1 rich==15.0.0")


def _ref_deps() -> None:
    """Append the reference packages' folder to sys.path (appended: its top-level ``tests``
    package must not shadow ours)."""
    env = os.environ.get("MMTOK_REF_DEPS")
    dirs = [Path(env).expanduser()] if env else [ROOT / ".cache" / "ref-deps", ROOT / ".cache" / "bench-deps"]
    for d in dirs:
        if d.is_dir() and str(d) not in sys.path:
            sys.path.append(str(d))


@pytest.fixture(scope="module")
def DAC():
    _ref_deps()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mod = pytest.importorskip("dac.model.dac", reason=f"descript-audio-codec 1.0.0 not importable; {HINT}")
    return mod.DAC


@pytest.fixture(scope="module")
def encodec():
    _ref_deps()
    return pytest.importorskip("encodec", reason=f"encodec 0.1.1 not importable; {HINT}")


def wave(b: int = 2, s: int = 8000, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(s) / 8000
    x = 0.4 * torch.sin(2 * math.pi * 220 * t) + 0.2 * torch.randn(b, 1, s, generator=g)
    return x.clamp(-1, 1)


@torch.no_grad()
def perturb(model: torch.nn.Module, seed: int = 1) -> None:
    """Move every bias, weight-norm gain and Snake alpha away from its init value."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        r = torch.rand(p.shape, generator=g)
        if name.endswith("alpha"):
            p.copy_(0.5 + 1.5 * r)
        elif name.endswith("weight_g"):
            p.mul_(0.6 + 0.8 * r)
        elif name.endswith("bias") or "bias_" in name:
            p.add_(0.1 * (r - 0.5))


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def convert_both_ways(src: Path, out: Path, fmt: str, capsys) -> list:
    """CLI convert to ``out`` + load it, and load_tokenizer(src) directly; both in eval mode."""
    assert cli_main(["convert", str(src), str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"({fmt})" in printed and "note:" in printed
    report = json.loads((out / "conversion.json").read_text())
    assert report["format"] == fmt and report["notes"]
    return [mmtok.load_tokenizer(out), mmtok.load_tokenizer(src)]


# --- DAC ---------------------------------------------------------------------------------
SMALL_DAC = dict(encoder_dim=16, encoder_rates=[2, 4], decoder_dim=32, decoder_rates=[4, 2], n_codebooks=3,
                 codebook_size=64, sample_rate=8000)
# odd strides: DAC's transposed convs lose a sample each (the 24 kHz release has a 5)
ODD_DAC = {**SMALL_DAC, "encoder_rates": [2, 5], "decoder_rates": [5, 2], "n_codebooks": 4}


def dac_reference(model, x: torch.Tensor, n_q: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """DAC's codes (B, T, Q) for ``x`` and its decode of them (quantizer.from_codes -> decoder)."""
    with torch.no_grad():
        codes = model.encode(model.preprocess(x, model.sample_rate), n_quantizers=n_q)[1]
        audio = model.decoder(model.quantizer.from_codes(codes)[0])
    return codes.permute(0, 2, 1), audio


def check_dac(model, toks, x: torch.Tensor) -> None:
    ref_codes, ref_audio = dac_reference(model, x)
    for tok in toks:
        codes = tok.encode(x)
        assert torch.equal(codes, ref_codes)
        with torch.no_grad():
            y = tok.decode(codes)
        n = ref_audio.shape[-1]
        assert y.shape[-1] == codes.shape[1] * tok.hop_length >= n
        assert max_abs(y[..., :n], ref_audio.clamp(-1, 1)) <= MAX_ABS
        assert not y[..., n:].any()  # the samples DAC's odd strides lose are zeros
        for k in range(1, codes.shape[-1]):
            ref_k, audio_k = dac_reference(model, x, n_q=k)
            assert torch.equal(tok.encode(x, n_q=k), ref_k) and torch.equal(ref_k, ref_codes[..., :k])
            with torch.no_grad():
                assert max_abs(tok.decode(ref_k)[..., :n], audio_k) <= MAX_ABS


@pytest.mark.parametrize("kwargs", [SMALL_DAC, ODD_DAC], ids=["even", "odd-strides"])
def test_dac_small_codes_equal_decode_close(DAC, kwargs, tmp_path, capsys):
    model = DAC(**kwargs).eval()
    perturb(model)
    src = tmp_path / "weights.pth"
    model.save(str(src), package=False)  # the official layout: {"state_dict", "metadata": {"kwargs"}}
    toks = convert_both_ways(src, tmp_path / "out", "dac", capsys)
    for tok in toks:
        assert tok.sample_rate == 8000 and tok.hop_length == math.prod(kwargs["encoder_rates"])
        assert tok.codebook_sizes == (64,) * kwargs["n_codebooks"] and not tok.causal
        assert tok.config.quantizer["type"] == "factorized_rvq"
    check_dac(model, toks, wave(s=8000 + 37))  # not a multiple of the hop: both right-pad with zeros


def test_dac_bare_state_dict_needs_its_kwargs(DAC, tmp_path, capsys):
    model = DAC(**SMALL_DAC).eval()
    perturb(model)
    src = tmp_path / "dac_state.pth"
    torch.save(model.state_dict(), src)  # no metadata: DAC's defaults (the 44.1 kHz model) do not fit
    assert cli_main(["convert", str(src), str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mmtok convert: error:") and "layers with weights" in err[0]
    opts = [f"{k}={json.dumps(v)}" for k, v in SMALL_DAC.items()]
    assert cli_main(["convert", str(src), str(tmp_path / "ok"), *sum((["-o", o] for o in opts), [])]) == 0
    check_dac(model, [mmtok.load_tokenizer(tmp_path / "ok")], wave(s=800))
    with pytest.raises(ConversionError, match="unknown dac option"):
        convert_checkpoint(src, format="dac", hop=8)


def test_dac_damaged_files_give_clear_errors(DAC, tmp_path, capsys):
    model = DAC(**SMALL_DAC)
    state = {"state_dict": model.state_dict(), "metadata": {"kwargs": dict(SMALL_DAC)}}
    cut = dict(state, state_dict={k: v for k, v in state["state_dict"].items() if "quantizers.2." not in k})
    torch.save(cut, tmp_path / "cut.pth")
    with pytest.raises(ConversionError, match="layers with weights"):
        mmtok.load_tokenizer(tmp_path / "cut.pth")
    torch.save(dict(state, metadata={"kwargs": {**SMALL_DAC, "decoder_rates": [4, 4]}}), tmp_path / "hop.pth")
    with pytest.raises(ConversionError, match="decoder_rates"):
        convert_checkpoint(tmp_path / "hop.pth")
    (tmp_path / "trunc.pth").write_bytes((tmp_path / "cut.pth").read_bytes()[:2000])
    assert cli_main(["convert", str(tmp_path / "trunc.pth"), str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot read reference checkpoint" in err[0]


@pytest.mark.slow
def test_dac_24khz_release_config(DAC, tmp_path, capsys):
    """conf/final/24khz.yml: encoder 64 x [2, 4, 5, 8], decoder 1536 x [8, 5, 4, 2], 32 x 1024 in 8-d."""
    model = DAC(encoder_dim=64, encoder_rates=[2, 4, 5, 8], decoder_dim=1536, decoder_rates=[8, 5, 4, 2],
                n_codebooks=32, codebook_size=1024, codebook_dim=8, quantizer_dropout=0.5, sample_rate=24000).eval()
    perturb(model)
    src = tmp_path / "weights_24khz.pth"
    model.save(str(src), package=False)
    tok = convert_both_ways(src, tmp_path / "out", "dac", capsys)[0]
    assert (tok.sample_rate, tok.hop_length, tok.num_codebooks) == (24000, 320, 32)
    x = wave(b=1, s=24000)
    ref_codes, ref_audio = dac_reference(model, x)
    codes = tok.encode(x)
    assert torch.equal(codes, ref_codes)
    with torch.no_grad():
        y = tok.decode(codes)
    assert ref_audio.shape[-1] == 24000 - 8 and max_abs(y[..., :24000 - 8], ref_audio) <= MAX_ABS
    for k in (1, 8):
        assert torch.equal(tok.encode(x, n_q=k), dac_reference(model, x, n_q=k)[0])


# --- EnCodec -----------------------------------------------------------------------------
@torch.no_grad()
def encodec_random(model, x: torch.Tensor) -> None:
    """Random init, then: biases / gains perturbed, codebooks drawn at the latent's scale (EnCodec's
    k-means-initialised codebooks start as zeros), a louder output conv (outputs ~0.3, not ~0.03)."""
    perturb(model)
    emb = model.encoder(x)
    g = torch.Generator().manual_seed(2)
    for i, layer in enumerate(model.quantizer.vq.layers):
        cb = layer._codebook
        cb.embed.copy_(torch.randn(cb.embed.shape, generator=g) * emb.std() * 0.8 ** i)
        cb.embed_avg.copy_(cb.embed * 3)
        cb.cluster_size.uniform_(1, 5, generator=g)
        cb.inited.fill_(1)
    last = model.decoder.model[-1].conv.conv
    last.weight_g.mul_(10)


def encodec_small(encodec):
    from encodec.modules import SEANetDecoder, SEANetEncoder
    from encodec.quantization import ResidualVectorQuantizer

    arch = dict(dimension=32, n_filters=4, ratios=[5, 4, 2], causal=True, lstm=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return encodec.EncodecModel(SEANetEncoder(**arch), SEANetDecoder(**arch),
                                    ResidualVectorQuantizer(dimension=32, n_q=4, bins=64), [2.4], 8000, 1).eval()


def check_encodec(model, toks, x: torch.Tensor, n_qs) -> None:
    with torch.no_grad():
        frames = model.encode(x)
        ref_codes = frames[0][0].permute(0, 2, 1)
        ref_audio = model.decode(frames).clamp(-1, 1)
        emb = model.encoder(x)
    assert ref_audio.abs().max() > 0.1
    for tok in toks:
        codes = tok.encode(x)
        assert torch.equal(codes, ref_codes)
        with torch.no_grad():
            assert max_abs(tok.decode(codes), ref_audio) <= MAX_ABS
        for k in n_qs:
            with torch.no_grad():
                ref_k = model.quantizer.vq.encode(emb, n_q=k).permute(1, 2, 0)
                audio_k = model.decode([(ref_k.permute(0, 2, 1), None)]).clamp(-1, 1)
            assert torch.equal(tok.encode(x, n_q=k), ref_k)
            with torch.no_grad():
                assert max_abs(tok.decode(ref_k), audio_k) <= MAX_ABS


def test_encodec_small_codes_equal_decode_close(encodec, tmp_path, capsys):
    model = encodec_small(encodec)
    x = wave(s=8000)
    encodec_random(model, x)
    src = tmp_path / "encodec_small.th"
    torch.save(model.state_dict(), src)  # the official files are plain state dicts
    toks = convert_both_ways(src, tmp_path / "out", "encodec", capsys)
    for tok in toks:
        assert type(tok).__name__ == "EncodecStyleCodec" and tok.causal and tok.hop_length == 40
        assert tok.codebook_sizes == (64,) * 4
    # the sample rate is not in the file: told here; a 0.5 s clip at 8 kHz, a multiple of the hop
    toks = [convert_checkpoint(src, sample_rate=8000)[0], *toks]
    check_encodec(model, toks, wave(s=4000, seed=3), n_qs=(1, 2, 3))
    with pytest.raises(ConversionError, match="non-causal"):
        convert_checkpoint(src, causal=False)


def test_encodec_48khz_is_refused(encodec, tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = encodec.EncodecModel.encodec_model_48khz(pretrained=False)
    src = tmp_path / "encodec_48khz.th"
    torch.save(model.state_dict(), src)
    with pytest.raises(ConversionError, match="48 kHz"):
        mmtok.load_tokenizer(src)
    assert cli_main(["convert", str(src), str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "only the 24 kHz mono model" in err[0]


@pytest.mark.slow
def test_encodec_24khz_release(encodec, tmp_path, capsys):
    model = encodec.EncodecModel.encodec_model_24khz(pretrained=False)
    x = wave(b=1, s=24000)
    encodec_random(model, x)
    src = tmp_path / "encodec_24khz.th"
    torch.save(model.state_dict(), src)
    tok = convert_both_ways(src, tmp_path / "out", "encodec", capsys)[0]
    assert (tok.sample_rate, tok.hop_length, tok.num_codebooks, tok.kbps()) == (24000, 320, 32, 24.0)
    check_encodec(model, [tok], x, n_qs=(2, 8))
    model.set_target_bandwidth(6.0)  # EnCodec's own bitrate switch = the first 8 levels
    with torch.no_grad():
        assert torch.equal(tok.encode(x, n_q=8), model.encode(x)[0][0].permute(0, 2, 1))
