"""Initialise a causal 3D video tokenizer from a trained 2D image VQGAN (weight inflation).

    img = mmtok.load_tokenizer("runs/vqgan/final")          # a VQGANTokenizer
    vid = inflate_from_image(img, num_frames=17)             # Causal3dTokenizer, same widths
    vid.encode_image(x) == img.encode(x)                     # T = 1 behaves as the image model

The 3D encoder / decoder mirror the 2D ones layer for layer (same parameter names), so every
2D weight has a 3D place: a k x k conv becomes a k_t x k x k causal conv acting on the current
frame only (``inflate_weight``: the 2D kernel on the last temporal tap, zeros on the past
taps); norms, attention and the quantizer are copied. The layers the 2D model lacks (the
temporal down / upsampling convs) start as the identity on the current frame. The inflated
model thus encodes a clip's latent frame ``j`` from frame ``f_t j`` as the image model would
and decodes it to ``f_t`` copies: a key-frame tokenizer to fine-tune on video. On a T = 1
input it equals the image model (up to float summation order).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mmtok.config import build_config
from mmtok.image.vqgan import VQGANTokenizer
from mmtok.layers.conv3d import (
    CausalConv3d,
    Downsample3d,
    FactorizedConv3d,
    Upsample3d,
    identity_time_conv_,
    inflate_weight,
)
from mmtok.video.causal3d import Causal3dConfig, Causal3dTokenizer


# the 3D config fields the 2D weights fix (the rest are the video model's own)
WEIGHT_FIELDS = ("in_channels", "base_channels", "channel_mult", "num_res_blocks", "z_channels", "spatial_factor",
                 "mid_attention", "quantizer", "norm", "norm_min_group_channels")


def config_from_image(image_tok: VQGANTokenizer, **overrides: Any) -> Causal3dConfig:
    """The 3D config with the 2D model's widths, quantizer and image size; ``overrides`` set
    the video fields (``num_frames``, ``temporal_factor``, ``causal``, ...)."""
    c = image_tok.config
    defaults = dict(
        image_size=c.image_size,
        num_frames=17,
        in_channels=c.in_channels,
        base_channels=c.base_channels,
        channel_mult=tuple(c.channel_mult),
        num_res_blocks=c.num_res_blocks,
        z_channels=c.z_channels,
        spatial_factor=image_tok.factor,
        temporal_factor=min(4, image_tok.factor),
        mid_attention=c.mid_attention,
        norm="group",
        norm_min_group_channels=getattr(c, "norm_min_group_channels", 1),
        dropout=c.dropout,
        quantizer=dict(c.quantizer),
    )
    clash = sorted(k for k in overrides if k in WEIGHT_FIELDS and overrides[k] != defaults[k])
    if clash:
        raise ValueError(f"{clash} must match the image model to inflate its weights; leave them unset")
    return build_config(Causal3dConfig, defaults, overrides)


@torch.no_grad()
def inflate_state_dict(model: Causal3dTokenizer, state_2d: dict[str, Tensor]) -> list[str]:
    """Load a 2D VQGAN ``state_dict`` into ``model`` in place; returns the 3D-only keys, which
    are set to the identity on the current frame. Raises on a missing or misshapen key."""
    own = model.state_dict()
    factorized = {name for name, m in model.named_modules() if isinstance(m, FactorizedConv3d)}
    if factorized:  # conv="2+1d": a 2D conv's weights go to its spatial half, the temporal half is new
        state_2d = {(f"{k.rsplit('.', 1)[0]}.spatial.{k.rsplit('.', 1)[1]}" if k.rsplit(".", 1)[0] in factorized
                     else k): w for k, w in state_2d.items()}
    missing = sorted(k for k in own if k not in state_2d)
    unexpected = sorted(k for k in state_2d if k not in own)
    new_modules = {
        name for name, m in model.named_modules()
        if isinstance(m, CausalConv3d) and (name.endswith("time_conv") or name.rsplit(".", 1)[0] in factorized
                                            and name.endswith(".temporal"))
    }
    extra = [k for k in missing if k.rsplit(".", 1)[0] not in new_modules]
    if extra or unexpected:
        raise ValueError(
            f"the 2D weights do not fit this 3D model: missing {extra[:5]}, unexpected {unexpected[:5]} "
            "(build it with mmtok.video.inflate.config_from_image)"
        )
    for k, w in state_2d.items():
        target = own[k]
        if w.ndim == 4 and target.ndim == 5:
            w = inflate_weight(w, target.shape[2])
        if w.shape != target.shape:
            raise ValueError(f"{k}: 2D weight {tuple(w.shape)} does not inflate to {tuple(target.shape)}")
        target.copy_(w)
    for m in model.modules():
        if isinstance(m, (Downsample3d, Upsample3d)) and m.time_conv is not None:
            identity_time_conv_(m.time_conv)
        if isinstance(m, FactorizedConv3d):
            identity_time_conv_(m.temporal)
    return missing


def _image_model(image_tok: VQGANTokenizer | str | Path) -> VQGANTokenizer:
    """``image_tok`` itself, or the tokenizer saved in that directory (a clear error if it is not a 2D VQGAN)."""
    if isinstance(image_tok, (str, Path)):
        from mmtok.checkpoint import load_tokenizer

        if not (Path(image_tok) / "config.json").is_file():
            raise FileNotFoundError(
                f"{image_tok}: no saved image tokenizer there (config.json + model.safetensors); train the 2D "
                "model first, e.g. `mmtok train image/vqgan_tiny_f4_photos` writes runs/vqgan_tiny_f4_photos/final"
            )
        image_tok = load_tokenizer(image_tok, modality="image")
    if not isinstance(image_tok, VQGANTokenizer):
        raise TypeError(f"inflation needs a 2D VQGANTokenizer, got {type(image_tok).__name__}")
    return image_tok


def inflate_into(model: Causal3dTokenizer, image_tok: VQGANTokenizer | str | Path) -> list[str]:
    """Initialise an existing ``model`` (e.g. a registered preset with overrides, as ``mmtok
    train``'s ``model.inflate_from`` builds it) from a 2D VQGAN or its saved directory, in place.

    The fields the weights depend on (widths, depth, ``z_channels``, quantizer, norms) must equal
    the image model's (``ValueError`` naming those that differ); the video fields (``num_frames``,
    ``temporal_factor``, ``conv``, ``causal``, ``latent_norm``) are the model's own. Returns the
    3D-only keys (set to the identity on the current frame)."""
    if not isinstance(model, Causal3dTokenizer):
        raise TypeError(f"inflation fills a Causal3dTokenizer, got {type(model).__name__}")
    image_tok = _image_model(image_tok)
    want = config_from_image(image_tok)
    differ = {k: (getattr(model.config, k), getattr(want, k)) for k in WEIGHT_FIELDS
              if _norm_field(getattr(model.config, k)) != _norm_field(getattr(want, k))}
    if differ:
        raise ValueError("the 2D model does not inflate into this video model; fields (video, image) that must "
                         f"match: {differ}")
    return inflate_state_dict(model, image_tok.state_dict())


def _norm_field(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def inflate_from_image(image_tok: VQGANTokenizer | str | Path, **overrides: Any) -> Causal3dTokenizer:
    """A ``Causal3dTokenizer`` initialised from a 2D ``VQGANTokenizer`` (or its checkpoint
    directory); ``overrides``: video fields such as ``num_frames`` (default 17),
    ``temporal_factor`` (default 4), ``causal``. Returned in the image model's train / eval mode."""
    image_tok = _image_model(image_tok)
    model = Causal3dTokenizer(config_from_image(image_tok, **overrides))
    inflate_state_dict(model, image_tok.state_dict())
    return model.to(image_tok.device).train(image_tok.training)


__all__ = ["inflate_from_image", "inflate_into", "inflate_state_dict", "config_from_image"]
