import json
import math
import re

import pytest
import torch

import mmtok
from mmtok.config import ConfigError
from mmtok.image import TiTokTokenizer, VQGANTokenizer
from mmtok.tokenizer import TokenizerOutput

TINY_1D = dict(encoder_width=32, encoder_depth=1, encoder_heads=2, decoder_width=32, decoder_depth=1, decoder_heads=2)
TINY_2D = dict(base_channels=8, num_res_blocks=1, z_channels=8)


def images(b=2, h=32, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, h, w, generator=g) * 2 - 1


def smooth_images(b=8, size=32, seed=0):
    """Colour fields interpolated from a random 2x2 grid (learnable in a few steps)."""
    g = torch.Generator().manual_seed(seed)
    grid = torch.rand(b, 3, 2, 2, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(grid, size=(size, size), mode="bilinear", align_corners=True)


def tiny(name, **kw):
    """A registered variant shrunk to tiny width / depth (real sizes are the registered defaults)."""
    extra = TINY_1D if name.startswith(("titok", "flextok")) else TINY_2D
    return mmtok.create_tokenizer(name, image_size=32, **{**extra, **kw})


IMAGE_VARIANTS = mmtok.list_tokenizers(modality="image")
NAME_RE = re.compile(r"^(titok|flextok)_([tsbl])(32|64|128|256)_(vq|fsq|lfq)(?:_flow)?$")  # _flow: flow decoder


def test_registry_has_contract_names():
    for name in ["titok_t32_fsq", "flextok_t32_fsq", "titok_s128_fsq", "titok_b64_vq", "titok_l32_lfq",
                 "flextok_s256_fsq", "vqgan_f8_vq", "vqgan_f16_vq", "vqgan_t_f8_vq"]:
        assert name in IMAGE_VARIANTS
    assert len([n for n in IMAGE_VARIANTS if NAME_RE.match(n)]) == 4 * 4 * 3 + 4 * 4 * 2


@pytest.mark.parametrize("name", IMAGE_VARIANTS)
def test_every_variant_forward_backward_square_and_nonsquare(name):
    torch.manual_seed(0)
    tok = tiny(name)
    assert tok.modality == "image" and tok.variant_name == name
    m = NAME_RE.match(name)
    if m:  # the name says what the model is
        family, _, k, quant = m.groups()
        assert tok.num_tokens == int(k) and tok.token_shape == (int(k),)
        assert tok.config.quantizer["type"] == quant
        assert tok.is_nested == (family == "flextok")
    else:
        f = int(re.search(r"f(\d+)", name).group(1))
        assert tok.factor == f and tok.token_shape == (32 // f, 32 // f) and not tok.is_nested
    assert tok.bits_per_image == pytest.approx(tok.num_tokens * math.log2(tok.codebook_size))
    for h, w in [(32, 32), (32, 48)]:
        x = images(2, h, w)
        tok.train()
        tok.zero_grad()
        out = tok(x)
        assert isinstance(out, TokenizerOutput)
        assert out.recon.shape == x.shape and torch.isfinite(out.recon).all()
        assert out.loss.ndim == 0 and torch.isfinite(out.loss)
        assert out.codes.dtype == torch.int64
        assert 0 <= int(out.codes.min()) and int(out.codes.max()) < tok.codebook_size
        ((out.recon - x).pow(2).mean() + out.loss).backward()
        if name.endswith("_flow"):
            # zero-initialised head and AdaLN-zero modulation: the token condition has no effect
            # at init, so the encoder gets its first gradient only after the head and then the
            # modulation weights have moved (a few SGD steps)
            opt = torch.optim.SGD(tok.parameters(), lr=0.1)
            for _ in range(3):
                opt.step()
                tok.zero_grad()
                out = tok(x)
                ((out.recon - x).pow(2).mean() + out.loss).backward()
        enc_first = tok.encoder.patch_embed.proj.weight if isinstance(tok, TiTokTokenizer) else tok.encoder.conv_in.weight
        assert enc_first.grad is not None and enc_first.grad.abs().sum() > 0  # gradient reaches the encoder
        assert tok.last_layer_weight.grad is not None and tok.last_layer_weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["titok_t32_fsq", "flextok_t32_fsq", "titok_t32_vq", "vqgan_t_f8_vq"])
def test_encode_decode_contract(name):
    tok = mmtok.create_tokenizer(name).eval()
    assert tok.config.image_size == 32
    x = images(3)
    codes = tok.encode(x)
    assert codes.dtype == torch.int64 and tuple(codes.shape) == (3, *tok.token_shape)
    assert not codes.requires_grad
    y = tok.decode(codes)
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    out = tok(x)
    # eval: encode gives the forward pass's codes and decode its (clamped) reconstruction
    assert torch.equal(out.codes, codes)
    torch.testing.assert_close(y, out.recon.clamp(-1, 1), atol=1e-5, rtol=1e-5)


def test_encode_is_side_effect_free_in_train_mode():
    tok = mmtok.create_tokenizer("titok_t32_vq").train()
    x = images(4)
    before = {k: v.clone() for k, v in tok.state_dict().items()}
    c1, c2 = tok.encode(x), tok.encode(x)
    assert torch.equal(c1, c2)
    for k, v in tok.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("name", ["titok_t32_fsq", "flextok_t32_fsq", "titok_t32_lfq", "vqgan_t_f8_vq"])
def test_save_load_round_trip(name, tmp_path):
    torch.manual_seed(0)
    tok = mmtok.create_tokenizer(name)
    with torch.no_grad():  # move off the init so a load that silently re-initialises would fail
        for p in tok.parameters():
            p.add_(torch.randn_like(p) * 1e-3)
    tok.eval()
    x = images(2, 32, 48)
    codes = tok.encode(x)
    recon = tok.decode(codes, image_size=(32, 48))
    tok.save_pretrained(tmp_path / "final")
    meta = json.loads((tmp_path / "final" / "config.json").read_text())
    assert meta["variant"] == name and meta["modality"] == "image" and meta["mmtok_version"] == mmtok.__version__
    loaded = mmtok.load_tokenizer(tmp_path / "final", modality="image")
    assert type(loaded) is type(tok) and not loaded.training
    assert torch.equal(loaded.encode(x), codes)
    assert torch.equal(loaded.decode(codes, image_size=(32, 48)), recon)
    with pytest.raises(ValueError, match="image tokenizer"):
        mmtok.load_tokenizer(tmp_path / "final", modality="audio")


@pytest.mark.parametrize("name", ["flextok_t32_fsq", "titok_t32_fsq"])
def test_every_prefix_decodes(name):
    torch.manual_seed(0)
    tok = tiny(name).eval()
    x = images(2)
    codes = tok.encode(x)
    outs = []
    for k in range(1, tok.num_tokens + 1):
        y = tok.decode(codes[:, :k])
        assert y.shape == x.shape and torch.isfinite(y).all()
        outs.append(y)
    torch.testing.assert_close(outs[-1], tok.decode(codes))
    assert not torch.allclose(outs[0], outs[-1])  # the tail tokens matter


def test_nested_prefix_decode_matches_keep_k_training_path():
    torch.manual_seed(0)
    tok = tiny("flextok_t32_fsq").eval()
    x = images(2)
    codes = tok.encode(x)
    for k in (1, 5, 32):
        ref = tok(x, keep=k).recon.clamp(-1, 1)
        torch.testing.assert_close(tok.decode(codes[:, :k]), ref, atol=1e-5, rtol=1e-5)
    tok.train()
    out = tok(x)
    assert 1 <= out.metrics["keep_mean"] <= tok.num_tokens
    with pytest.raises(ValueError, match="does not take 'keep'"):
        tiny("titok_t32_fsq")(x, keep=3)


def test_flextok_token_i_ignores_later_latent_tokens():
    """Causal latents: the first tokens' codes do not change when a later latent's query changes."""
    torch.manual_seed(0)
    tok = tiny("flextok_t32_fsq").eval()
    x = images(4)
    codes = tok.encode(x)
    with torch.no_grad():
        tok.encoder.latent_tokens[-1].normal_()
    z_before_after = tok.encode(x)
    assert torch.equal(z_before_after[:, :-1], codes[:, :-1])
    plain = tiny("titok_t32_fsq").eval()
    z0 = plain.encode_latents(x)
    with torch.no_grad():
        plain.encoder.latent_tokens[-1].normal_()
    assert not torch.allclose(plain.encode_latents(x)[:, 0], z0[:, 0])  # full attention: all tokens move


def test_other_resolutions_and_nonsquare():
    tok = mmtok.create_tokenizer("flextok_t32_fsq").eval()
    for h, w in [(64, 64), (32, 48), (16, 40)]:
        x = images(2, h, w)
        codes = tok.encode(x)
        assert codes.shape == (2, 32)
        assert tok.decode(codes, image_size=(h, w)).shape == (2, 3, h, w)
        assert tok(x).recon.shape == x.shape
    assert tok.decode(codes).shape == (2, 3, 32, 32)  # default: the training size
    v = mmtok.create_tokenizer("vqgan_t_f8_vq").eval()
    c = v.encode(images(1, 32, 48))
    assert c.shape == (1, 4, 6) and v.decode(c).shape == (1, 3, 32, 48)
    with pytest.raises(ValueError, match="decodes to"):
        v.decode(c, image_size=32)


@pytest.mark.parametrize("name", ["flextok_t32_fsq", "vqgan_t_f8_vq"])
def test_bad_input_gives_clear_errors(name):
    tok = mmtok.create_tokenizer(name).eval()
    x = images(2)
    with pytest.raises(ValueError, match=r"\[-1, 1\].*0, 255"):
        tok.encode((x + 1) * 127.5)
    with pytest.raises(TypeError, match="float"):
        tok.encode(((x + 1) * 127.5).to(torch.uint8))
    with pytest.raises(ValueError, match="3 channels"):
        tok.encode(x[:, :1])
    with pytest.raises(ValueError, match="channel-last"):
        tok.encode(x.permute(0, 2, 3, 1).contiguous()[:, :, :, :].reshape(2, 32, 32, 3))
    with pytest.raises(ValueError, match="multiples of"):
        tok.encode(images(2, 30, 32))
    with pytest.raises(ValueError, match="batch axis"):
        tok.encode(x[0])
    with pytest.raises(ValueError, match="NaN"):
        tok(torch.full_like(x, float("nan")))
    codes = tok.encode(x)
    with pytest.raises(TypeError, match="integer"):
        tok.decode(codes.float())
    with pytest.raises(ValueError, match=r"\[0, "):
        tok.decode(torch.full_like(codes, tok.codebook_size))


def test_bad_prefix_and_config_errors():
    tok = mmtok.create_tokenizer("flextok_t32_fsq").eval()
    codes = tok.encode(images(1))
    with pytest.raises(ValueError, match="1 <= k <= 32"):
        tok.decode(codes[:, :0])
    with pytest.raises(ValueError, match="1 <= k <= 32"):
        tok.decode(torch.cat([codes, codes], dim=1))
    with pytest.raises(ValueError, match="multiples of 4"):
        tok.decode(codes, image_size=(30, 32))
    with pytest.raises(ConfigError, match="num_tokenz"):
        mmtok.create_tokenizer("titok_t32_fsq", num_tokenz=16)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        mmtok.create_tokenizer("titok_t32_fsq", image_size=30)
    with pytest.raises(ValueError, match="unknown quantizer type"):
        mmtok.create_tokenizer("titok_t32_fsq", quantizer={"type": "pq"})
    with pytest.raises(ConfigError, match="bogus"):
        mmtok.create_tokenizer("vqgan_t_f8_vq", bogus=1)


def test_overrides_apply_and_quantizer_is_replaced_whole():
    vq = {"type": "vq", "codebook_size": 64}
    tok = mmtok.create_tokenizer("titok_t32_fsq", num_tokens=16, patch_size=8, token_dim=12, quantizer=vq)
    assert tok.num_tokens == 16 and tok.codebook_size == 64 and tok.token_dim == 12
    assert tok.encode(images(1)).shape == (1, 16)
    assert isinstance(mmtok.create_tokenizer("vqgan_t_f8_vq"), VQGANTokenizer)


def test_token_dim_defaults_to_the_quantizers_own():
    """token_dim None: the quantizer class says (FSQ len(levels), LFQ log2(K), VQ codebook_dim)."""
    assert mmtok.create_tokenizer("titok_t32_fsq", **TINY_1D).token_dim == 4  # [8, 5, 5, 5]
    assert mmtok.create_tokenizer("titok_t32_lfq", **TINY_1D).token_dim == 10  # 2^10 codes
    assert mmtok.create_tokenizer("titok_t32_vq", **TINY_1D).token_dim == 12  # set by the preset
    vq8 = {"type": "vq", "codebook_size": 64, "codebook_dim": 8}
    assert mmtok.create_tokenizer("titok_t32_fsq", quantizer=vq8, **TINY_1D).token_dim == 8
    with pytest.raises(ValueError, match="token_dim is not set.*'vq'"):
        mmtok.create_tokenizer("titok_t32_fsq", quantizer={"type": "vq", "codebook_size": 64}, **TINY_1D)


def test_vq_presets_use_kmeans_init_and_dead_code_restart():
    from mmtok.image.variants_1d import QUANTIZERS
    from mmtok.image.vqgan import VQGANConfig

    full_size = [QUANTIZERS["vq"][0]["quantizer"], VQGANConfig().quantizer]
    tiny_size = [mmtok.create_tokenizer(n).config.quantizer for n in ("titok_t32_vq", "vqgan_t_f8_vq")]
    for q in full_size + tiny_size:
        assert q["kmeans_init"] and q["threshold_ema_dead_code"] > 0 and q["use_cosine_sim"], q
    assert QUANTIZERS["lfq"][0]["quantizer"]["entropy_loss_weight"] > 0


@pytest.mark.parametrize("name", ["titok_t32_fsq", "flextok_t32_fsq", "titok_t32_vq", "vqgan_t_f8_vq"])
def test_decode_accepts_any_integer_dtype(name):
    """Shards store uint16 codes: uint16 / int32 decode exactly like int64."""
    torch.manual_seed(0)
    tok = tiny(name).eval()
    codes = tok.encode(images(2))
    ref = tok.decode(codes)
    for dtype in (torch.uint16, torch.int32, torch.int16):
        if tok.codebook_size > torch.iinfo(dtype).max + 1:
            continue
        assert torch.equal(tok.decode(codes.to(dtype)), ref), dtype
    if tok.is_nested:
        assert torch.equal(tok.decode(codes[:, :5].to(torch.uint16)), tok.decode(codes[:, :5]))
    with pytest.raises(TypeError, match="integer"):
        tok.decode(codes.bool())


@pytest.mark.parametrize("name", ["titok_t32_fsq", "flextok_t32_fsq", "titok_t32_vq", "vqgan_t_f8_vq"])
def test_tokenizer_contract_facts(name):
    tok = tiny(name)
    assert tok.modality == "image"
    assert tok.preprocessing() == {"resolution": 32}
    assert tok.codebook_sizes == (tok.codebook_size,) and tok.num_codebooks == 1
    assert tok.codes_shape == tok.token_shape and tok.num_tokens == math.prod(tok.token_shape)
    assert tok.bits_per_image == tok.bits_per_item == pytest.approx(tok.num_tokens * math.log2(tok.codebook_size))
    assert tok.prefix_lengths() == ([1, 2, 4, 8, 16, 32] if tok.is_nested else [tok.num_tokens])
    d = tok.describe()
    assert d["modality"] == "image" and d["resolution"] == 32 and d["variant"] == name
    assert d["token_shape"] == list(tok.token_shape) and d["is_nested"] == tok.is_nested
    assert tok.last_layer_weight.requires_grad
    tok.check_input(images(1))  # fine input passes


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_non_float32_input_is_refused_with_the_fix(dtype):
    for name in ["titok_t32_fsq", "vqgan_t_f8_vq"]:
        tok = tiny(name).eval()
        with pytest.raises(TypeError, match=r"float32.*x\.float\(\)"):
            tok.encode(images(1).to(dtype))
        with pytest.raises(TypeError, match=r"x\.float\(\)"):
            tok(images(1).to(dtype))


def test_registered_default_sizes():
    """Defaults are the real sizes: S-128 is close to TiTok-S-128's ~52M parameters."""
    n = mmtok.create_tokenizer("titok_s128_fsq").num_parameters()
    assert 45e6 < n < 60e6
    assert mmtok.create_tokenizer("titok_t32_fsq").num_parameters() < 2e6


def test_short_training_lowers_error():
    """A few steps on a fixed batch: the reconstruction error goes down."""
    torch.manual_seed(0)
    tok = tiny("flextok_t32_fsq", patch_size=8, num_tokens=8)
    x = smooth_images(8)
    opt = torch.optim.Adam(tok.parameters(), lr=2e-3)
    losses = []
    for _ in range(30):
        out = tok(x, keep=8)
        loss = (out.recon - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


@pytest.mark.parametrize("name", ["flextok_t32_fsq", "titok_t32_vq", "vqgan_t_f8_vq"])
def test_bf16_autocast_forward_backward(name):
    torch.manual_seed(0)
    tok = tiny(name)
    x = images(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = tok(x)
        codes = tok.encode(x)
    assert out.recon.dtype == torch.bfloat16 and torch.isfinite(out.recon.float()).all()
    assert out.loss.dtype == torch.float32  # quantizer math stays fp32
    ((out.recon.float() - x).pow(2).mean() + out.loss).backward()
    assert tok.last_layer_weight.grad is not None
    assert codes.shape == (2, *tok.token_shape)


def test_class_from_pretrained_hub_mixin_path(tmp_path):
    tok = mmtok.create_tokenizer("flextok_t32_fsq").eval()
    tok.save_pretrained(tmp_path)
    again = TiTokTokenizer.from_pretrained(tmp_path)
    x = images(1)
    assert torch.equal(again.encode(x), tok.encode(x))
    with pytest.raises(TypeError, match="not a VQGANTokenizer"):
        VQGANTokenizer.from_pretrained(tmp_path)


def test_checkpoint_without_dead_code_tracker_still_loads(tmp_path):
    """Files saved before the tracker became module state load (strict keys) with it reset."""
    from safetensors.torch import load_file, save_file

    tok = mmtok.create_tokenizer("titok_t32_vq", **TINY_1D)
    tok(images(2))  # a training step: the tracker moves, k-means runs
    tok.eval()
    tok.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    state = load_file(weights)
    assert int(state["quantizer._step"]) == 1
    save_file({k: v for k, v in state.items() if not k.endswith(("._last_used", "._step"))}, weights)
    loaded = mmtok.load_tokenizer(tmp_path)
    assert int(loaded.quantizer._step) == 0
    x = images(2)
    assert torch.equal(loaded.encode(x), tok.encode(x))
