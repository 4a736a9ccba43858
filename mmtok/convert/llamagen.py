"""LlamaGen VQ tokenizers (``vq_ds16_c2i.pt``, ``vq_ds8_c2i.pt``, ...) -> ``VQGANTokenizer``.

The official file is a training checkpoint: ``{"model": state_dict, "ema": ..., "optimizer":
..., ...}`` (or a bare state dict). The weights of ``"model"`` are used unless the option
``ema=true`` asks for ``"ema"``. The architecture is read from the weights: widths and
levels (``ch``, ``ch_mult``), res blocks per level, ``z_channels``, the codebook (K x D) and
its ``quant_conv`` / ``post_quant_conv``. What the weights cannot tell comes from options:

- ``codebook_l2_norm`` (default true, as every released LlamaGen VQ): cosine lookup;
- ``image_size`` (default 256): the training resolution recorded in the config;
- ``commitment`` (default 0.25).

Layout differences and how they are bridged (exact up to float rounding):

- LlamaGen places an attention block after every res block of the lowest-resolution
  level (encoder and decoder): ``VQGANConfig.level_attention=True``;
- its separate q / k / v 1x1 convs become mmtok's fused ``qkv`` conv;
- ``quant_conv`` / ``post_quant_conv`` (1x1 convs z_channels <-> D) are the VQ's own
  ``project_in`` / ``project_out`` (``codebook_dim=D``);
- GroupNorm has 32 groups (``norm_min_group_channels=1``, so no channel-count cap);
- images are in [-1, 1] on both sides, as in mmtok.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mmtok.convert import ConversionError, Converter, register_converter
from mmtok.convert._image_util import (
    QUANTIZER_BUFFERS,
    as_bool,
    check_options,
    count_indices,
    load_mapped,
    need,
    tensors_only,
    vq_codebook,
    vq_spec,
)

FORMAT = "llamagen_vq"
OPTIONS = ("ema", "codebook_l2_norm", "image_size", "commitment")
_MARKERS = ("quant_conv.weight", "post_quant_conv.weight", "quantize.embedding.weight",
            "encoder.conv_blocks.0.res.0.conv1.weight")


def _weights(state: dict[str, Any], ema: bool) -> dict[str, Tensor] | None:
    """The VQ model's state dict inside a LlamaGen checkpoint (None when it is not one)."""
    if ema:
        inner = state.get("ema")
        if not isinstance(inner, dict):
            raise ConversionError(f"option ema=true, but the checkpoint has no 'ema' weights "
                                  f"(top-level keys: {sorted(k for k in state if isinstance(k, str))[:8]})")
        return tensors_only(inner)
    for key in ("model", "state_dict"):
        if isinstance(state.get(key), dict):
            return tensors_only(state[key])
    return tensors_only(state)


def detect(state: dict[str, Any], path: Path) -> bool:
    sd = _weights(state, ema=False)
    return sd is not None and all(k in sd for k in _MARKERS)


def _res(src: str, dst: str, sd: dict[str, Tensor], out: dict[str, Tensor], used: set[str]) -> None:
    """A taming ResnetBlock -> mmtok ResBlock2d (``nin_shortcut`` -> ``skip``)."""
    for a, b in (("norm1", "norm1"), ("conv1", "conv1"), ("norm2", "norm2"), ("conv2", "conv2"),
                 ("nin_shortcut", "skip")):
        for p in ("weight", "bias"):
            k = f"{src}.{a}.{p}"
            if k in sd:
                out[f"{dst}.{b}.{p}"] = sd[k]
                used.add(k)
    if f"{src}.conv_shortcut.weight" in sd:
        raise ConversionError(f"{FORMAT}: {src} has a 3x3 conv shortcut (conv_shortcut=True); mmtok's "
                              "ResBlock2d has a 1x1 skip only")


def _attn(src: str, dst: str, sd: dict[str, Tensor], out: dict[str, Tensor], used: set[str]) -> None:
    """A taming AttnBlock (q, k, v, proj_out 1x1 convs) -> mmtok AttnBlock2d (fused qkv)."""
    for p in ("weight", "bias"):
        qkv = [need(sd, f"{src}.{n}.{p}", FORMAT) for n in ("q", "k", "v")]
        out[f"{dst}.qkv.{p}"] = torch.cat(qkv, dim=0)
        out[f"{dst}.norm.{p}"] = need(sd, f"{src}.norm.{p}", FORMAT)
        out[f"{dst}.proj.{p}"] = need(sd, f"{src}.proj_out.{p}", FORMAT)
        used.update(f"{src}.{n}.{p}" for n in ("q", "k", "v", "norm", "proj_out"))


def _plain(src: str, dst: str, sd: dict[str, Tensor], out: dict[str, Tensor], used: set[str]) -> None:
    for p in ("weight", "bias"):
        out[f"{dst}.{p}"] = need(sd, f"{src}.{p}", FORMAT)
        used.add(f"{src}.{p}")


def convert(state: dict[str, Any], path: Path, **options: Any) -> tuple[Any, list[str]]:
    from mmtok.image.vqgan import VQGANConfig, VQGANTokenizer

    check_options(options, OPTIONS, FORMAT)
    ema = as_bool(options.get("ema", False), "ema")
    l2 = as_bool(options.get("codebook_l2_norm", True), "codebook_l2_norm")
    sd = _weights(state, ema)
    if sd is None or not all(k in sd for k in _MARKERS):
        raise ConversionError(f"{path}: not a LlamaGen VQ checkpoint (expected keys {list(_MARKERS)})")
    if any(k.endswith("running_mean") for k in sd):
        raise ConversionError(f"{FORMAT}: the checkpoint uses BatchNorm (norm_type='batch'); mmtok's conv "
                              "tokenizer has GroupNorm only")

    # --- architecture from the weights ------------------------------------------------
    ch = int(need(sd, "encoder.conv_in.weight", FORMAT).shape[0])
    in_channels = int(sd["encoder.conv_in.weight"].shape[1])
    n_levels = count_indices(sd, "encoder.conv_blocks.")
    nrb = count_indices(sd, "encoder.conv_blocks.0.res.")
    if n_levels < 1 or nrb < 1:
        raise ConversionError(f"{FORMAT}: cannot read the encoder levels from the keys")
    enc_mult = [int(need(sd, f"encoder.conv_blocks.{i}.res.0.conv1.weight", FORMAT).shape[0]) // ch
                for i in range(n_levels)]
    dec_levels = count_indices(sd, "decoder.conv_blocks.")
    dec_mult = [int(need(sd, f"decoder.conv_blocks.{k}.res.0.conv1.weight", FORMAT).shape[0]) // ch
                for k in range(dec_levels)][::-1]
    if dec_mult != enc_mult:
        raise ConversionError(f"{FORMAT}: encoder_ch_mult {enc_mult} != decoder_ch_mult {dec_mult}; mmtok's "
                              "VQGANConfig has one channel_mult for both")
    for i in range(n_levels):
        if count_indices(sd, f"encoder.conv_blocks.{i}.res.") != nrb:
            raise ConversionError(f"{FORMAT}: encoder level {i} has a different number of res blocks")
    for k in range(dec_levels):
        if count_indices(sd, f"decoder.conv_blocks.{k}.res.") != nrb + 1:
            raise ConversionError(f"{FORMAT}: decoder level {k} does not have num_res_blocks + 1 = {nrb + 1} res blocks")
    attn_levels_enc = [i for i in range(n_levels) if count_indices(sd, f"encoder.conv_blocks.{i}.attn.")]
    attn_levels_dec = [k for k in range(dec_levels) if count_indices(sd, f"decoder.conv_blocks.{k}.attn.")]
    if attn_levels_enc not in ([], [n_levels - 1]) or attn_levels_dec not in ([], [0]) or \
            bool(attn_levels_enc) != bool(attn_levels_dec):
        raise ConversionError(f"{FORMAT}: attention blocks at encoder levels {attn_levels_enc} / decoder blocks "
                              f"{attn_levels_dec}; mmtok supports them at the lowest resolution only")
    level_attention = bool(attn_levels_enc)
    z_channels = int(need(sd, "encoder.conv_out.weight", FORMAT).shape[0])
    codebook = need(sd, "quantize.embedding.weight", FORMAT)
    n_codes, code_dim = (int(s) for s in codebook.shape)
    if tuple(sd["quant_conv.weight"].shape[:2]) != (code_dim, z_channels):
        raise ConversionError(f"{FORMAT}: quant_conv {tuple(sd['quant_conv.weight'].shape)} does not map "
                              f"z_channels={z_channels} to the codebook's {code_dim}-d")
    if code_dim == z_channels:
        raise ConversionError(f"{FORMAT}: codebook_embed_dim == z_channels ({z_channels}); mmtok's VQ has no "
                              "projection to hold quant_conv / post_quant_conv then")
    image_size = int(options.get("image_size", 256))
    factor = 2 ** (n_levels - 1)
    if image_size % factor:
        raise ConversionError(f"option image_size={image_size} is not a multiple of the downsampling factor {factor}")

    config = VQGANConfig(
        image_size=image_size, in_channels=in_channels, base_channels=ch, channel_mult=tuple(enc_mult),
        num_res_blocks=nrb, z_channels=z_channels, mid_attention=True, dropout=0.0,
        norm_min_group_channels=1, zero_init_residual=False, level_attention=level_attention,
        quantizer=vq_spec(n_codes, l2, float(options.get("commitment", 0.25)), codebook_dim=code_dim),
    )
    model = VQGANTokenizer(config)

    # --- weights ----------------------------------------------------------------------
    out: dict[str, Tensor] = {}
    used: set[str] = set()
    _plain("encoder.conv_in", "encoder.conv_in", sd, out, used)
    idx = 0
    for i in range(n_levels):
        for j in range(nrb):
            _res(f"encoder.conv_blocks.{i}.res.{j}", f"encoder.down.{idx}", sd, out, used)
            idx += 1
            if level_attention and i == n_levels - 1:
                _attn(f"encoder.conv_blocks.{i}.attn.{j}", f"encoder.down.{idx}", sd, out, used)
                idx += 1
        if i < n_levels - 1:
            _plain(f"encoder.conv_blocks.{i}.downsample.conv", f"encoder.down.{idx}.conv", sd, out, used)
            idx += 1
    for part in ("encoder", "decoder"):
        _res(f"{part}.mid.0", f"{part}.mid.0", sd, out, used)
        _attn(f"{part}.mid.1", f"{part}.mid.1", sd, out, used)
        _res(f"{part}.mid.2", f"{part}.mid.2", sd, out, used)
        _plain(f"{part}.norm_out", f"{part}.norm_out", sd, out, used)
        _plain(f"{part}.conv_out", f"{part}.conv_out", sd, out, used)
    _plain("decoder.conv_in", "decoder.conv_in", sd, out, used)
    idx = 0
    for k in range(n_levels):  # decoder.conv_blocks[k] is level n - 1 - k, the order mmtok's `up` runs
        for j in range(nrb + 1):
            _res(f"decoder.conv_blocks.{k}.res.{j}", f"decoder.up.{idx}", sd, out, used)
            idx += 1
            if level_attention and k == 0:
                _attn(f"decoder.conv_blocks.{k}.attn.{j}", f"decoder.up.{idx}", sd, out, used)
                idx += 1
        if k < n_levels - 1:
            _plain(f"decoder.conv_blocks.{k}.upsample.conv", f"decoder.up.{idx}.conv", sd, out, used)
            idx += 1
    # 1x1 convs on (B, C, H, W) == linears on channel-last tokens
    out["quantizer.vq.project_in.weight"] = need(sd, "quant_conv.weight", FORMAT)[:, :, 0, 0]
    out["quantizer.vq.project_in.bias"] = need(sd, "quant_conv.bias", FORMAT)
    out["quantizer.vq.project_out.weight"] = need(sd, "post_quant_conv.weight", FORMAT)[:, :, 0, 0]
    out["quantizer.vq.project_out.bias"] = need(sd, "post_quant_conv.bias", FORMAT)
    used.update(("quant_conv.weight", "quant_conv.bias", "post_quant_conv.weight", "post_quant_conv.bias",
                 "quantize.embedding.weight", "quantize.codebook_used"))
    out.update(vq_codebook("quantizer.", codebook, l2))
    load_mapped(model, out, FORMAT, optional=QUANTIZER_BUFFERS, source_unused=set(sd) - used)

    notes = [
        f"LlamaGen VQ: ch={ch}, ch_mult={enc_mult}, {nrb} res blocks per level, z_channels={z_channels}, "
        f"codebook {n_codes} x {code_dim}{' l2-normalised' if l2 else ''}; weights from {'ema' if ema else 'model'}",
        "quant_conv / post_quant_conv are the VQ's project_in / project_out; q, k, v convs are fused into qkv",
        f"image_size={image_size} is the recorded training size (not stored in the checkpoint); "
        "any multiple of the downsampling factor encodes",
    ]
    if not l2:
        notes.append("codebook_l2_norm=false: Euclidean nearest-code lookup")
    return model, notes


register_converter(Converter(
    name=FORMAT,
    description="LlamaGen VQ-16 / VQ-8 training checkpoint (vq_ds16_c2i.pt) -> VQGANTokenizer",
    detect=detect,
    convert=convert,
    file_names=("vq_ds16_c2i.pt", "vq_ds8_c2i.pt", "vq_ds16_t2i.pt"),
))
