import math

import pytest
import torch

import mmtok
from mmtok.config import ConfigError
from mmtok.video import Causal3dTokenizer, VideoTokenizer, inflate_from_image, pad_frames
from mmtok.tokenizer import TokenizerOutput

PRESETS = ["causal3d_4x8x8_fsq", "causal3d_4x16x16_fsq", "causal3d_4x8x8_lfq", "causal3d_4x8x8_vq", "causal3d_tiny"]
SMALL = dict(image_size=32, num_frames=5, base_channels=8, num_res_blocks=1, z_channels=8)


def clip(b=1, t=5, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, t, h, w, generator=g) * 2 - 1


def tiny(**kw):
    return mmtok.create_tokenizer("causal3d_tiny", **kw).eval()


def moving_square(b=2, t=5, size=16, side=6):
    """A bright square sliding right one pixel per frame on a dark background."""
    x = torch.full((b, 3, t, size, size), -0.8)
    for i in range(b):
        for f in range(t):
            y0, x0 = 2 + 3 * i, f + i
            x[i, :, f, y0 : y0 + side, x0 : x0 + side] = torch.tensor([0.9, 0.2 - i, -0.3])[:, None, None]
    return x


def test_registry_lists_the_video_presets():
    names = mmtok.list_tokenizers(modality="video")
    assert set(PRESETS) <= set(names)
    # the real presets' facts, without building their weights twice
    tok = mmtok.create_tokenizer("causal3d_4x8x8_fsq")
    assert tok.compression == (4, 8, 8) and tok.token_shape == (5, 32, 32) and tok.codebook_sizes == (64000,)
    assert tok.preprocessing() == {"resolution": 256, "num_frames": 17}
    assert tok.num_parameters() > 50e6


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_at_tiny_size(name):
    tok = mmtok.create_tokenizer(name, **SMALL)
    assert isinstance(tok, VideoTokenizer) and tok.modality == "video" and tok.variant_name == name
    tf, sf = tok.temporal_factor, tok.spatial_factor
    assert tf == 4 and tok.compression == (tf, sf, sf) and tok.causal
    assert tok.token_shape == (2, 32 // sf, 32 // sf)
    assert tok.bits_per_item == pytest.approx(tok.num_tokens * math.log2(tok.codebook_size))
    expected_k = {"fsq": 64000, "lfq": 2**14, "vq": 16384}.get(name.rsplit("_", 1)[-1], 1000)
    assert tok.codebook_sizes == (expected_k,)
    d = tok.describe()
    assert d["modality"] == "video" and d["compression"] == [tf, sf, sf] and d["causal"] is True
    assert d["resolution"] == 32 and d["num_frames"] == 5 and d["token_shape"] == list(tok.token_shape)

    x = clip(2, 5, 32, 32)
    out = tok(x)  # training pass
    assert isinstance(out, TokenizerOutput) and out.recon.shape == x.shape
    assert out.codes.shape == (2, *tok.token_shape) and out.loss.ndim == 0
    (out.recon.abs().mean() + out.loss).backward()
    assert tok.last_layer_weight is tok.decoder.conv_out.weight and tok.last_layer_weight.grad is not None

    tok.eval()
    codes = tok.encode(x)
    assert codes.dtype == torch.int64 and codes.shape == (2, *tok.token_shape)
    assert 0 <= int(codes.min()) and int(codes.max()) < tok.codebook_size
    y = tok.decode(codes.to(torch.int32))
    assert y.shape == x.shape and y.abs().max() <= 1
    # image = a clip of one frame; frame 0's codes do not depend on later frames
    img_codes = tok.encode_image(x[:, :, 0])
    assert img_codes.shape == (2, 32 // sf, 32 // sf) and torch.equal(img_codes, codes[:, 0])


def test_non_square_and_other_lengths():
    tok = tiny()
    for t in (1, 5, 13):
        x = clip(1, t, 16, 24)
        codes = tok.encode(x)
        assert codes.shape == (1, 1 + (t - 1) // 4, 4, 6)
        assert tok.decode(codes).shape == x.shape


def test_input_errors_say_what_to_fix():
    tok = tiny()
    x = clip()
    with pytest.raises(ValueError, match=r"x\[:, :, None\]"):
        tok.encode(x[:, :, 0])
    with pytest.raises(ValueError, match="channels"):
        tok.encode(x[:, :2])
    with pytest.raises(ValueError, match="multiples of 4"):
        tok.encode(x[..., :14, :])
    with pytest.raises(ValueError, match=r"a clip of 1 \+ 4n frames.*pad_frames"):
        tok.encode(clip(t=6))
    with pytest.raises(TypeError, match="x.float"):
        tok.encode(x.double())
    with pytest.raises(TypeError, match="to_model_range"):
        tok.encode(((x + 1) * 127).to(torch.uint8))
    bad = x.clone()
    bad[0, 0, 1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        tok.encode(bad)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        tok.encode(x * 3)
    with pytest.raises(TypeError, match="x.float"):
        tok(x.double())  # the training pass checks too
    codes = tok.encode(x)
    with pytest.raises(ValueError, match="decode_image"):
        tok.decode(codes[:, 0])
    with pytest.raises(ValueError, match=r"\[0, 1000\)"):
        tok.decode(codes + 1000)
    with pytest.raises(TypeError, match="integer"):
        tok.decode(codes.float())
    with pytest.raises(ValueError, match="encode_image takes images"):
        tok.encode_image(x)


def test_pad_frames_and_trim():
    x = clip(t=6)
    p = pad_frames(x, 4)
    assert p.shape[2] == 9 and torch.equal(p[:, :, :6], x)
    assert all(torch.equal(p[:, :, k], x[:, :, 5]) for k in range(6, 9))
    assert pad_frames(clip(t=9), 4).shape[2] == 9 and pad_frames(clip(t=1), 4).shape[2] == 1
    tok = tiny()
    codes = tok.encode(x, pad=True)
    assert torch.equal(codes, tok.encode(p)) and codes.shape[1] == 3
    y = tok.decode(codes, num_frames=6)
    assert y.shape[2] == 6 and torch.allclose(y, tok.decode(codes)[:, :, :6])
    with pytest.raises(ValueError, match="num_frames"):
        tok.decode(codes, num_frames=4)  # 3 latent frames come from 6..9 frames
    with pytest.raises(ValueError, match="pad_frames takes"):
        pad_frames(x[:, :, 0], 4)


def test_latent_frame_j_depends_on_frames_up_to_4j_only():
    tok = tiny()
    x = clip(1, 13, 16, 16)
    with torch.no_grad():
        z = tok.encoder(x)
        for j in range(z.shape[2]):
            x2 = x.clone()
            x2[:, :, 4 * j + 1 :] = clip(1, 12 - 4 * j, 16, 16, seed=j + 1)
            z2 = tok.encoder(x2)
            assert torch.equal(z2[:, :, : j + 1], z[:, :, : j + 1])
            if j + 1 < z.shape[2]:
                assert not torch.allclose(z2[:, :, j + 1 :], z[:, :, j + 1 :])
    codes = tok.encode(x)
    x3 = x.clone()
    x3[:, :, 1:] = -x3[:, :, 1:]
    assert torch.equal(tok.encode(x3)[:, 0], codes[:, 0])
    # the decoder is causal too: frames 0 .. 4 (j - 1) come from latent frames < j
    y = tok.decode(codes)
    for j in (1, 2, 3):
        c2 = codes.clone()
        c2[:, j:] = (c2[:, j:] + 7) % tok.codebook_size
        y2 = tok.decode(c2)
        assert torch.equal(y2[:, :, : 4 * (j - 1) + 1], y[:, :, : 4 * (j - 1) + 1])
        assert not torch.allclose(y2[:, :, 4 * (j - 1) + 1 :], y[:, :, 4 * (j - 1) + 1 :])


def test_image_tokens_equal_one_frame_video_tokens():
    tok = tiny()
    img = clip(3, 1, 32, 32)[:, :, 0]
    codes = tok.encode_image(img)
    assert torch.equal(codes, tok.encode(img[:, :, None])[:, 0])
    rec = tok.decode_image(codes)
    assert rec.shape == img.shape
    assert torch.equal(rec, tok.decode(codes[:, None])[:, :, 0])
    assert torch.equal(tok.decode_image(codes[:, None]), rec)


def test_non_causal_model_looks_ahead():
    tok = tiny(causal=False)
    assert not tok.causal and tok.describe()["causal"] is False
    x = clip(1, 9, 16, 16)
    z = tok.encoder(x).detach()
    x2 = x.clone()
    x2[:, :, 1:] = -x2[:, :, 1:]
    assert not torch.allclose(tok.encoder(x2)[:, :, 0], z[:, :, 0])
    assert tok.decode(tok.encode(x)).shape == x.shape


def test_config_errors():
    with pytest.raises(ValueError, match="spatial_factor=16"):
        mmtok.create_tokenizer("causal3d_tiny", spatial_factor=16)
    with pytest.raises(ValueError, match="num_frames"):
        mmtok.create_tokenizer("causal3d_tiny", num_frames=8)
    with pytest.raises(ValueError, match="image_size"):
        mmtok.create_tokenizer("causal3d_tiny", image_size=30)
    with pytest.raises(ValueError, match="temporal_factor"):
        mmtok.create_tokenizer("causal3d_tiny", temporal_factor=3)
    with pytest.raises(ValueError, match="norm"):
        mmtok.create_tokenizer("causal3d_tiny", norm="batch")
    with pytest.raises(ConfigError, match="unknown config key"):
        mmtok.create_tokenizer("causal3d_tiny", fps=24)
    tok = mmtok.create_tokenizer("causal3d_tiny", temporal_factor=2, num_frames=5)
    assert tok.token_shape == (3, 8, 8) and tok.encode(clip(1, 5, 16, 16)).shape == (1, 3, 4, 4)


def test_save_load_round_trip(tmp_path):
    tok = tiny(norm="layer")
    tok.save_pretrained(tmp_path / "ck")
    tok2 = mmtok.load_tokenizer(tmp_path / "ck", modality="video")
    assert isinstance(tok2, Causal3dTokenizer) and tok2.variant_name == "causal3d_tiny"
    assert tok2.config == tok.config
    x = clip(2, 9, 32, 32)
    assert torch.equal(tok.encode(x), tok2.encode(x))
    with pytest.raises(ValueError, match="is a video tokenizer"):
        mmtok.load_tokenizer(tmp_path / "ck", modality="image")


def test_a_few_training_steps_reduce_l1():
    torch.manual_seed(0)
    tok = mmtok.create_tokenizer("causal3d_tiny", image_size=16, num_frames=5).train()
    x = moving_square()
    opt = torch.optim.Adam(tok.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        out = tok(x)
        loss = (out.recon - x).abs().mean() + out.loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert min(losses[-5:]) < 0.6 * losses[0]


def test_inflation_from_2d_vqgan_reproduces_the_image_model():
    torch.manual_seed(0)
    img_tok = mmtok.create_tokenizer("vqgan_t_f8_vq", base_channels=8, z_channels=8).eval()
    vid = inflate_from_image(img_tok, num_frames=9)
    assert vid.spatial_factor == img_tok.factor == 8 and vid.temporal_factor == 4 and not vid.training
    x = clip(2, 1, 32, 32)[:, :, 0]
    assert torch.equal(vid.encode_image(x), img_tok.encode(x))
    codes = img_tok.encode(x)
    assert torch.allclose(vid.decode_image(codes), img_tok.decode(codes), atol=1e-5)
    # on a clip: latent frame j is the image code of frame 4j, decoded to 4 copies
    v = clip(1, 9, 32, 32, seed=3)
    vc = vid.encode(v)
    assert all(torch.equal(vc[:, j], img_tok.encode(v[:, :, 4 * j])) for j in range(3))
    y = vid.decode(vc)
    assert torch.allclose(y[:, :, 1], y[:, :, 4], atol=1e-5)
    with pytest.raises(ValueError, match="must match the image model"):
        inflate_from_image(img_tok, base_channels=16)
    with pytest.raises(TypeError, match="VQGANTokenizer"):
        inflate_from_image(tiny())


def test_training_config_inflates_the_video_model_from_a_saved_2d_twin(tmp_path):
    """``model.inflate_from`` (the two-stage tiny recipe): the preset with its video overrides
    (``conv="2+1d"``) is filled from the saved ``vqgan_tiny_f4_fsq``; frame 0 then codes as the
    image model does. Widths that differ, a missing directory, a non-video model and
    ``init_from`` together with it are refused with messages naming the cause."""
    from mmtok.config import ConfigError
    from mmtok.training.cli import resolve_recipe
    from mmtok.training.config import load_train_config
    from mmtok.training.setup import build_tokenizer
    from mmtok.video.inflate import inflate_into

    torch.manual_seed(0)
    img_tok = mmtok.create_tokenizer("vqgan_tiny_f4_fsq")
    with torch.no_grad():  # trained-like weights, so the check cannot pass on zero-init blocks alone
        for p in img_tok.parameters():
            p.add_(0.05 * torch.randn_like(p))
    img_tok.save_pretrained(tmp_path / "img")

    def cfg(**model):
        return load_train_config(resolve_recipe("video/causal3d_tiny_photos"), [f"model.{k}={v}" for k, v in model.items()])

    vid = build_tokenizer(cfg(inflate_from=tmp_path / "img")).eval()
    assert vid.config.conv == "2+1d" and vid.config.num_frames == 17
    x = clip(2, 1, 32, 32)[:, :, 0]
    assert torch.equal(vid.encode_image(x), img_tok.eval().encode(x))
    with pytest.raises(FileNotFoundError, match="vqgan_tiny_f4_photos"):
        build_tokenizer(cfg(inflate_from=tmp_path / "none"))
    with pytest.raises(ValueError, match="base_channels"):
        inflate_into(mmtok.create_tokenizer("causal3d_tiny", base_channels=16), tmp_path / "img")
    with pytest.raises(ConfigError, match="causal 3D video model"):
        build_tokenizer(load_train_config(resolve_recipe("image/vqgan_tiny_f4_photos"),
                                          [f"model.inflate_from={tmp_path / 'img'}"]))
    with pytest.raises(ConfigError, match="both set"):
        cfg(inflate_from=tmp_path / "img", init_from=tmp_path / "img").validate()
