"""Numerical equivalence of the image converters with the REFERENCE implementations.

Each test builds the reference model (bytedance/1d-tokenizer TiTok, FoundationVision/LlamaGen
VQ) at random init and a small size, saves it in the official checkpoint layout, converts it
with ``mmtok convert`` and ``mmtok.load_tokenizer`` and compares codes (exactly) and decoded
pixels (max abs error <= 1e-4).

The reference code is not vendored: point ``MMTOK_REF_TITOK`` / ``MMTOK_REF_LLAMAGEN`` at a
checkout of each repo (default: ``.cache/ref-src/1d-tokenizer`` and ``.cache/ref-src/LlamaGen``
under the repo root); without one the tests skip, naming the variable. Imports the reference
needs only for training (its package ``__init__``s, omegaconf when absent, accelerate's
``gather``, the hub mixin when absent) are stubbed for the duration of a test.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import types
from pathlib import Path

import pytest
import torch

import mmtok
from mmtok.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[2]
MAX_ABS = 1e-4


def _ref_dir(env: str, name: str, marker: str) -> Path:
    p = Path(os.environ.get(env, ROOT / ".cache" / "ref-src" / name)).expanduser()
    if not (p / marker).is_file():
        pytest.skip(f"reference {name} source not found at {p} (no {marker}); set {env}=/path/to/{name} checkout")
    return p


class _Cfg(dict):
    """Attribute-access dict: the part of omegaconf's DictConfig the reference modules use."""

    def __getattr__(self, k):
        try:
            return self[k]
        except KeyError as e:
            raise AttributeError(k) from e

    def __setattr__(self, k, v):
        self[k] = v

    @classmethod
    def create(cls, d):
        return cls({k: cls.create(v) if isinstance(v, dict) else v for k, v in d.items()})


@pytest.fixture
def ref_import(monkeypatch):
    """``ref_import(root, "pkg.mod")`` imports a reference module from ``root`` with stubbed
    packages (their ``__init__`` never runs); every module it imported is dropped afterwards."""
    roots: list[str] = []

    def load(root: Path, dotted: str, packages: tuple[str, ...]):
        monkeypatch.syspath_prepend(str(root))
        roots.extend(packages)
        for pkg in packages:  # namespace-like stubs: submodules import, __init__ does not run
            mod = types.ModuleType(pkg)
            mod.__path__ = [str(root / pkg.replace(".", "/"))]
            monkeypatch.setitem(sys.modules, pkg, mod)
        return __import__(dotted, fromlist=["_"])

    yield load
    for name in [n for n in sys.modules if n.split(".")[0] in {r.split(".")[0] for r in roots}]:
        del sys.modules[name]  # the reference's modules only (torch's lazily imported ones stay)


def _stub_titok_deps(monkeypatch) -> None:
    try:
        import omegaconf  # noqa: F401
    except ImportError:
        monkeypatch.setitem(sys.modules, "omegaconf", types.SimpleNamespace(OmegaConf=_Cfg))
    try:
        from huggingface_hub import PyTorchModelHubMixin  # noqa: F401
    except ImportError:
        class Mixin:
            def __init_subclass__(cls, **kw):
                super().__init_subclass__()

        monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(PyTorchModelHubMixin=Mixin))
    # the quantizer imports accelerate's all-gather for its training-time CVQ update only
    acc = types.ModuleType("accelerate")
    utils, ops = types.ModuleType("accelerate.utils"), types.ModuleType("accelerate.utils.operations")
    ops.gather = lambda t: t
    for name, mod in (("accelerate", acc), ("accelerate.utils", utils), ("accelerate.utils.operations", ops)):
        monkeypatch.setitem(sys.modules, name, mod)


def _cli_convert(src: Path, out: Path, *options: str) -> mmtok.Tokenizer:
    args = ["convert", str(src), str(out)]
    for o in options:
        args += ["--option", o]
    assert cli_main(args) == 0
    assert json.loads((out / "conversion.json").read_text())["source"]
    return mmtok.load_tokenizer(out)


@torch.no_grad()
def _calibrate(conv: torch.nn.Conv2d, run, mean: float, std: float) -> None:
    """Rescale a reference's LAST layer (an affine map of its output) so ``run()``'s output has
    this mean / std: random-init outputs otherwise sit mostly outside the valid range, where
    clamping would hide any mismatch. Still a valid reference model, just other weights."""
    y = run()
    k = std / float(y.std())
    conv.weight.mul_(k)
    conv.bias.copy_((conv.bias - float(y.mean())) * k + mean)


def _check_spread(codes: torch.Tensor, pixels: torch.Tensor) -> None:
    """The comparison means something: many distinct codes, pixels mostly inside (-1, 1)."""
    assert codes.unique().numel() >= codes.numel() // 4
    assert float((pixels.abs() >= 1).float().mean()) < 0.05 and float(pixels.std()) > 0.1


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).detach().abs().max())


# --- TiTok -------------------------------------------------------------------------------
TITOK_TINY_DEPTH = 2  # the reference hard-codes ViT widths per size; depth is cut after construction


def _titok_ref(ref_import, monkeypatch, vq: dict, crop: int, pixel_width: int = 32):
    """The reference TiTok (+ its titok module) at random init, ViTs cut to TITOK_TINY_DEPTH
    blocks and the MaskGIT VQGAN at ``pixel_width`` channels (the reference's own config keys)."""
    root = _ref_dir("MMTOK_REF_TITOK", "1d-tokenizer", "modeling/titok.py")
    _stub_titok_deps(monkeypatch)
    titok = ref_import(root, "modeling.titok", ("modeling", "modeling.modules", "modeling.quantizer"))

    def small(cls):
        def build(conf):
            conf.hidden_channels = pixel_width
            return cls(conf)
        return build

    monkeypatch.setattr(titok, "Pixel_Decoder", small(titok.Pixel_Decoder))
    monkeypatch.setattr(titok, "Pixel_Eecoder", small(titok.Pixel_Eecoder))
    cfg = {"experiment": {}, "model": {"vq_model": vq}, "dataset": {"preprocessing": {"crop_size": crop}}}
    model = titok.TiTok(cfg)
    for part in (model.encoder, model.decoder):
        part.transformer = part.transformer[:TITOK_TINY_DEPTH]
        part.num_layers = TITOK_TINY_DEPTH
    return model.eval(), titok, cfg


def _titok_codes_and_pixels(model, x: torch.Tensor, pixel_fn=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reference codes (B, K), decoded images mapped to [-1, 1] (clamped) and the raw [0, 1]-space
    output, for ``x`` in [-1, 1]."""
    with torch.no_grad():
        _, result = model.encode((x + 1) / 2)  # TiTok reads images in [0, 1]
        codes = result["min_encoding_indices"].reshape(x.shape[0], -1)
        decoded = model.decode_tokens(codes[:, None])
        if pixel_fn is not None:
            decoded = pixel_fn(decoded)
    return codes, (decoded * 2 - 1).clamp(-1, 1), decoded


VQ_BASE = dict(vit_enc_model_size="small", vit_dec_model_size="small", vit_enc_patch_size=16,
               vit_dec_patch_size=16, num_latent_tokens=32, commitment_cost=0.25)


def test_titok_stage2_maskgit_decoder(tmp_path, ref_import, monkeypatch):
    """The released layout (titok_s128 / b64 / l32): is_legacy, finetune_decoder, l2 VQ 4096 x 12,
    MaskGIT VQGAN pixel decoder; HF folder = model.safetensors + config.json."""
    from safetensors.torch import save_file

    vq = dict(VQ_BASE, codebook_size=4096, token_size=12, use_l2_norm=True, finetune_decoder=True)
    model, _, cfg = _titok_ref(ref_import, monkeypatch, vq, crop=64)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    _calibrate(model.pixel_decoder.conv_out, lambda: _titok_codes_and_pixels(model, x)[2], 0.5, 0.15)
    src = tmp_path / "tokenizer_titok_tiny"
    src.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(src / "model.safetensors"))
    (src / "config.json").write_text(json.dumps(cfg))

    ref_codes, ref_pixels, _ = _titok_codes_and_pixels(model, x)
    _check_spread(ref_codes, ref_pixels)
    for tok in (_cli_convert(src, tmp_path / "out"), mmtok.load_tokenizer(src)):
        assert tok.config.decoder_head == "codebook" and tok.config.legacy_token_reshape
        codes = tok.encode(x)
        assert torch.equal(codes, ref_codes)
        assert _max_abs(tok.decode(ref_codes), ref_pixels) <= MAX_ABS


def test_titok_single_stage_pixel_head(tmp_path, ref_import, monkeypatch):
    """is_legacy False (VQ-8k style): Euclidean VQ, decoder writes pixels + a 3x3 conv; a wider
    (base) decoder; pytorch_model.bin + config.yaml."""
    import yaml

    vq = dict(VQ_BASE, vit_dec_model_size="base", codebook_size=256, token_size=16, use_l2_norm=False,
              finetune_decoder=False, is_legacy=False)
    model, _, cfg = _titok_ref(ref_import, monkeypatch, vq, crop=64)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    _calibrate(model.decoder.conv_out, lambda: _titok_codes_and_pixels(model, x)[2], 0.5, 0.15)
    src = tmp_path / "titok_bl_tiny"
    src.mkdir()
    torch.save(model.state_dict(), src / "pytorch_model.bin")
    (src / "config.yaml").write_text(yaml.safe_dump(cfg))

    ref_codes, ref_pixels, _ = _titok_codes_and_pixels(model, x)
    _check_spread(ref_codes, ref_pixels)
    for tok in (_cli_convert(src, tmp_path / "out"), mmtok.load_tokenizer(src)):
        assert tok.config.decoder_head == "linear_conv" and not tok.config.legacy_token_reshape
        assert torch.equal(tok.encode(x), ref_codes)
        assert _max_abs(tok.decode(ref_codes), ref_pixels) <= MAX_ABS


def test_titok_stage1_with_maskgit_vqgan(tmp_path, ref_import, monkeypatch, capsys):
    """A stage-1 .bin (no pixel decoder inside, no config file) decodes through a separate MaskGIT
    VQGAN checkpoint, argmax code per patch, as the reference evaluates it; without the option
    (and without use_l2_norm) the converter refuses with a one-line reason."""
    vq = dict(VQ_BASE, codebook_size=4096, token_size=12, use_l2_norm=True, finetune_decoder=False)
    model, titok, _ = _titok_ref(ref_import, monkeypatch, vq, crop=64)
    src = tmp_path / "tokenizer_titok_stage1.bin"
    torch.save(model.state_dict(), src)
    # the MaskGIT VQGAN checkpoint: the reference's own modules, saved, then loaded by its own class
    vqgan = torch.nn.Module()
    conf = _Cfg.create({"channel_mult": [1, 1, 2, 2, 4], "num_resolutions": 5, "dropout": 0.0, "hidden_channels": 32,
                        "num_channels": 3, "num_res_blocks": 2, "resolution": 256, "z_channels": 256})
    vqgan.encoder, vqgan.decoder = titok.Pixel_Eecoder(conf), titok.Pixel_Decoder(conf)
    vqgan.quantize = titok.Pixel_Quantizer(num_embeddings=1024, embedding_dim=256, commitment_cost=0.25)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    hard = lambda logits: vqgan.decoder(vqgan.quantize.get_codebook_entry(logits.argmax(1)))  # noqa: E731
    _calibrate(vqgan.decoder.conv_out, lambda: _titok_codes_and_pixels(model, x, hard)[2], 0.5, 0.15)
    torch.save(vqgan.state_dict(), tmp_path / "maskgit-vqgan.bin")
    pretrained = titok.PretrainedTokenizer(str(tmp_path / "maskgit-vqgan.bin"))

    assert cli_main(["convert", str(src), str(tmp_path / "no")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "use_l2_norm" in err
    assert cli_main(["convert", str(src), str(tmp_path / "no"), "-o", "use_l2_norm=true"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "maskgit_vqgan=PATH" in err

    ref_codes, ref_pixels, _ = _titok_codes_and_pixels(model, x, lambda logits: pretrained.decode(logits.argmax(1)))
    _check_spread(ref_codes, ref_pixels)
    tok = _cli_convert(src, tmp_path / "out", "use_l2_norm=true", f"maskgit_vqgan={tmp_path / 'maskgit-vqgan.bin'}")
    assert torch.equal(tok.encode(x), ref_codes)
    assert _max_abs(tok.decode(ref_codes), ref_pixels) <= MAX_ABS


# --- LlamaGen ----------------------------------------------------------------------------
def test_llamagen_vq(tmp_path, ref_import, monkeypatch):
    """LlamaGen VQModel (taming layout: level attention, q/k/v convs, quant_conv, l2 VQ) as its
    training checkpoint {"model", "ema", "steps"}; ``ema=true`` picks the EMA weights."""
    root = _ref_dir("MMTOK_REF_LLAMAGEN", "LlamaGen", "tokenizer/tokenizer_image/vq_model.py")
    vm = ref_import(root, "tokenizer.tokenizer_image.vq_model", ("tokenizer", "tokenizer.tokenizer_image"))
    # ch (the base width) is the reference Encoder / Decoder's own argument; VQModel keeps its default 128
    monkeypatch.setattr(vm, "Encoder", functools.partial(vm.Encoder, ch=32))
    monkeypatch.setattr(vm, "Decoder", functools.partial(vm.Decoder, ch=32))
    args = vm.ModelArgs(encoder_ch_mult=[1, 2, 2], decoder_ch_mult=[1, 2, 2], z_channels=64, codebook_size=512,
                        codebook_embed_dim=8)
    model, ema = vm.VQModel(args).eval(), vm.VQModel(args).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    for m in (model, ema):
        _calibrate(m.decoder.conv_out, lambda: m(x)[0], 0.0, 0.3)  # noqa: B023
    src = tmp_path / "vq_ds4_tiny.pt"
    torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "steps": 7}, src)

    for ref, tok in ((model, _cli_convert(src, tmp_path / "out")), (model, mmtok.load_tokenizer(src)),
                     (ema, _cli_convert(src, tmp_path / "out_ema", "ema=true"))):
        with torch.no_grad():
            _, _, (_, _, idx) = ref.encode(x)
            ref_codes = idx.reshape(2, 8, 8)
            ref_pixels = ref.decode_code(idx, (2, 8, 8, 8)).clamp(-1, 1)
        _check_spread(ref_codes, ref_pixels)
        assert tok.config.level_attention
        assert torch.equal(tok.encode(x), ref_codes)
        assert _max_abs(tok.decode(ref_codes), ref_pixels) <= MAX_ABS


# --- errors ------------------------------------------------------------------------------
def test_foreign_and_corrupt_files_fail_in_one_line(tmp_path, capsys):
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": {"backbone.weight": torch.zeros(2)}}, foreign)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x02 definitely not a checkpoint")
    for src, needle in ((foreign, "matches no known reference layout"), (corrupt, "cannot read")):
        assert cli_main(["convert", str(src), str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("mmtok convert: error:") and "\n" not in err and needle in err
    assert not (tmp_path / "out").exists()
    # a named format that does not fit says so
    assert cli_main(["convert", str(foreign), str(tmp_path / "out"), "--format", "llamagen_vq"]) == 2
    assert "not a LlamaGen VQ checkpoint" in capsys.readouterr().err
    assert cli_main(["convert", str(foreign), str(tmp_path / "out"), "--format", "titok"]) == 2
    assert "not a TiTok checkpoint" in capsys.readouterr().err


# --- the layout options themselves (no reference needed) -----------------------------------
def test_reference_layout_options_build_train_and_round_trip(tmp_path):
    """The options the converters set are ordinary config fields: off by default (the default
    state dicts are unchanged), and with them on a model trains, saves and reloads."""
    from mmtok.layers.conv import AttnBlock2d

    plain = mmtok.create_tokenizer("titok_t32_fsq")
    assert not any(k.startswith(("encoder.cls_token", "encoder.ln_pre", "decoder.head_conv")) for k in plain.state_dict())
    assert not any(isinstance(m, AttnBlock2d) for m in mmtok.create_tokenizer("vqgan_t_f8_vq").encoder.down)

    x = torch.rand(2, 3, 32, 32) * 2 - 1
    toks = [
        mmtok.create_tokenizer("titok_t32_vq", class_token=True, ln_pre=True, legacy_token_reshape=True,
                               decoder_head="codebook",
                               pixel_decoder=dict(codebook_size=64, z_channels=32, base_channels=32, channel_mult=[1, 1, 1],
                                                  num_res_blocks=1)),
        mmtok.create_tokenizer("titok_t32_fsq", class_token=True, decoder_head="linear_conv", causal_latents=True),
        mmtok.create_tokenizer("vqgan_t_f8_vq", level_attention=True),
    ]
    for i, tok in enumerate(toks):
        out = tok(x)
        (out.recon.square().mean() + out.loss).backward()
        first = next(p for n, p in tok.named_parameters() if n.startswith("encoder."))
        assert first.grad is not None and float(first.grad.abs().sum()) > 0
        tok.eval()
        tok.save_pretrained(tmp_path / str(i))
        again = mmtok.load_tokenizer(tmp_path / str(i))
        assert torch.equal(again.encode(x), tok.encode(x))
        assert torch.equal(again.decode(tok.encode(x)), tok.decode(tok.encode(x)))
    with pytest.raises(ValueError, match="decoder_head"):
        mmtok.create_tokenizer("titok_t32_fsq", decoder_head="conv")
    with pytest.raises(ValueError, match="upsamples by"):
        mmtok.create_tokenizer("titok_t32_fsq", decoder_head="codebook")  # f16 VQGAN vs patch 4
