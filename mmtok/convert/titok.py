"""Official TiTok tokenizers (bytedance/1d-tokenizer) -> ``TiTokTokenizer``.

Source: a Hugging Face folder (``yucornetto/tokenizer_titok_s128_imagenet`` style:
``model.safetensors`` or ``pytorch_model.bin`` next to ``config.json`` / ``config.yaml``)
or a bare ``tokenizer_titok_*.bin`` state dict. The model config (``model.vq_model``:
``vit_enc_model_size``, ``num_latent_tokens``, ``codebook_size``, ``token_size``,
``use_l2_norm``, ``is_legacy``, ``finetune_decoder``, ...) is read from that folder, from the
file named by the option ``config=PATH`` (one of the repo's ``configs/infer/TiTok/*.yaml``),
or from options of the same names. Sizes are read from the weights and checked against it.

Supported (exact up to float rounding):

- **TiTok stage 2** (``finetune_decoder: True``, the released ``titok_l32`` / ``titok_b64`` /
  ``titok_s128``): VQ codes, decoder logits over the MaskGIT VQGAN's 1024 codes, softmax
  embedding in its codebook, its conv decoder (``decoder_head="codebook"``);
- **single-stage / VQ-8k** (``is_legacy: False``, VQ: ``titok_bl64_vq8k``, ...): the decoder
  writes pixels, then a 3x3 conv (``decoder_head="linear_conv"``);
- **stage 1** (``is_legacy: True``, no pixel decoder inside) when the option
  ``maskgit_vqgan=PATH`` names the MaskGIT VQGAN checkpoint the reference evaluates it with
  (argmax code per patch, ``pixel_decoder.soft=False``); refused without it.

Refused: ``quantize_mode: vae`` (continuous tokens), TA-TiTok (text-conditioned decoder),
``clustering_vq`` buffers are ignored (training-time only). TiTok reads images in [0, 1]
(``normalize_mean`` 0, ``std`` 1); the converter folds the mapping to mmtok's [-1, 1] into the
patch embedding and the last layer (option ``pixel_range=[-1,1]`` for a model trained on
[-1, 1]). mmtok layout options set: ``class_token``, ``ln_pre``, ``legacy_token_reshape``,
``decoder_head``, ``pixel_decoder``.
"""

from __future__ import annotations

import json
import math
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
    fold_input_unit_range,
    fold_output_unit_range,
    load_mapped,
    need,
    tensors_only,
    vq_codebook,
    vq_spec,
)

FORMAT = "titok"
# TiTok's ViT sizes: width -> (name, heads); depth is read from the weights
VIT_SIZES = {512: ("small", 8), 768: ("base", 12), 1024: ("large", 16)}
CONFIG_KEYS = ("vit_enc_model_size", "vit_dec_model_size", "vit_enc_patch_size", "vit_dec_patch_size",
               "num_latent_tokens", "codebook_size", "token_size", "use_l2_norm", "commitment_cost",
               "quantize_mode", "finetune_decoder", "is_legacy", "crop_size")
OPTIONS = CONFIG_KEYS + ("config", "maskgit_vqgan", "pixel_range")
_MARKERS = ("latent_tokens", "encoder.patch_embed.weight", "encoder.positional_embedding",
            "decoder.decoder_embed.weight", "decoder.mask_token")


def detect(state: dict[str, Any], path: Path) -> bool:
    return all(k in state for k in _MARKERS)


# --- config ----------------------------------------------------------------------------
def _read_config_file(p: Path) -> dict[str, Any]:
    try:
        text = p.read_text()
        if p.suffix in (".yaml", ".yml"):
            import yaml

            cfg = yaml.safe_load(text)
        else:
            cfg = json.loads(text)
    except Exception as e:  # OSError, json / yaml parse errors
        raise ConversionError(f"cannot read the TiTok config {p}: {type(e).__name__}: {str(e)[:200]}") from e
    if not isinstance(cfg, dict):
        raise ConversionError(f"{p} does not hold a mapping")
    return cfg


def _flatten_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """``model.vq_model`` (plus ``dataset.preprocessing``'s crop size and normalisation) as one dict."""
    model = cfg.get("model")
    vq = model.get("vq_model") if isinstance(model, dict) else None
    out = dict(vq) if isinstance(vq, dict) else {k: v for k, v in cfg.items() if k in CONFIG_KEYS}
    pre = (cfg.get("dataset") or {}).get("preprocessing") if isinstance(cfg.get("dataset"), dict) else None
    if isinstance(pre, dict):
        for k in ("crop_size", "normalize_mean", "normalize_std"):
            if k in pre:
                out[k] = pre[k]
    return out


def _config(path: Path, options: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The TiTok vq_model config: file (option ``config``, else config.json / config.yaml next to
    the weights), then options on top. Returns it and where it came from."""
    src: Path | None = None
    if "config" in options:
        src = Path(str(options["config"])).expanduser()
        if not src.is_file():
            raise ConversionError(f"option config={src}: no such file")
    else:
        for name in ("config.json", "config.yaml", "config.yml"):
            if (path.parent / name).is_file():
                src = path.parent / name
                break
    cfg = _flatten_config(_read_config_file(src)) if src is not None else {}
    cfg.update({k: options[k] for k in CONFIG_KEYS if k in options})
    return cfg, None if src is None else str(src)


def _pixel_range(cfg: dict[str, Any], options: dict[str, Any]) -> bool:
    """True when the reference reads / writes images in [0, 1] (TiTok's default)."""
    if "pixel_range" in options:
        v = options["pixel_range"]
        v = [float(t) for t in (v.strip("[]()").split(",") if isinstance(v, str) else v)]
        if v == [0.0, 1.0]:
            return True
        if v == [-1.0, 1.0]:
            return False
        raise ConversionError(f"option pixel_range must be [0,1] or [-1,1], got {options['pixel_range']!r}")
    mean, std = cfg.get("normalize_mean", [0.0] * 3), cfg.get("normalize_std", [1.0] * 3)
    if all(float(m) == 0.0 for m in mean) and all(float(s) == 1.0 for s in std):
        return True
    if all(float(m) == 0.5 for m in mean) and all(float(s) == 0.5 for s in std):
        return False
    raise ConversionError(f"{FORMAT}: images normalised with mean {mean} / std {std}; only [0, 1] and [-1, 1] "
                          "ranges map onto mmtok's [-1, 1]")


# --- weights ---------------------------------------------------------------------------
def _vit(src: str, dst: str, depth: int, sd: dict[str, Tensor], out: dict[str, Tensor], used: set[str]) -> None:
    """open_clip-style ResidualAttentionBlocks (nn.MultiheadAttention) -> timm Blocks."""
    names = (("ln_1", "norm1"), ("attn.out_proj", "attn.proj"), ("ln_2", "norm2"), ("mlp.c_fc", "mlp.fc1"),
             ("mlp.c_proj", "mlp.fc2"))
    for i in range(depth):
        a, b = f"{src}.transformer.{i}", f"{dst}.transformer.blocks.{i}"
        out[f"{b}.attn.qkv.weight"] = need(sd, f"{a}.attn.in_proj_weight", FORMAT)
        out[f"{b}.attn.qkv.bias"] = need(sd, f"{a}.attn.in_proj_bias", FORMAT)
        used.update((f"{a}.attn.in_proj_weight", f"{a}.attn.in_proj_bias"))
        for x, y in names:
            for p in ("weight", "bias"):
                out[f"{b}.{y}.{p}"] = need(sd, f"{a}.{x}.{p}", FORMAT)
                used.add(f"{a}.{x}.{p}")
    for p in ("weight", "bias"):
        out[f"{dst}.transformer.norm.{p}"] = need(sd, f"{src}.ln_post.{p}", FORMAT)
        out[f"{dst}.ln_pre.{p}"] = need(sd, f"{src}.ln_pre.{p}", FORMAT)
        used.update((f"{src}.ln_post.{p}", f"{src}.ln_pre.{p}"))


def _maskgit_decoder(src: str, dst: str, sd: dict[str, Tensor], out: dict[str, Tensor],
                     used: set[str]) -> dict[str, Any]:
    """The MaskGIT VQGAN conv decoder ``src`` -> mmtok ``ConvDecoder2d`` at ``dst``; returns its sizes.

    Its res block convs have no bias (zeros here) and its 1x1 shortcut is applied to the
    block's *output* (out = h + nin(h), the input dropped): folded into conv2 as (I + N) conv2,
    with mmtok's input skip set to zero. Same function, exact up to float rounding.
    """
    n_levels = count_indices(sd, f"{src}.up.")
    nrb = count_indices(sd, f"{src}.up.0.block.")
    if n_levels < 1 or nrb < 1:
        raise ConversionError(f"{FORMAT}: cannot read the MaskGIT VQGAN decoder levels under {src}")
    widths = [int(need(sd, f"{src}.up.{i}.block.0.conv1.weight", FORMAT).shape[0]) for i in range(n_levels)]
    base = min(widths)
    if any(w % base for w in widths):
        raise ConversionError(f"{FORMAT}: MaskGIT VQGAN level widths {widths} are not multiples of one base width")
    if count_indices(sd, f"{src}.mid.") != 2:
        raise ConversionError(f"{FORMAT}: the MaskGIT VQGAN decoder has {count_indices(sd, f'{src}.mid.')} mid res "
                              "blocks; mmtok's conv decoder has 2")
    if any(count_indices(sd, f"{src}.up.{i}.block.") != nrb for i in range(n_levels)):
        raise ConversionError(f"{FORMAT}: MaskGIT VQGAN levels differ in their number of res blocks")

    def res(a: str, b: str) -> None:
        w2 = need(sd, f"{a}.conv2.weight", FORMAT)
        for n in ("norm1", "norm2"):
            for p in ("weight", "bias"):
                out[f"{b}.{n}.{p}"] = need(sd, f"{a}.{n}.{p}", FORMAT)
                used.add(f"{a}.{n}.{p}")
        w1 = need(sd, f"{a}.conv1.weight", FORMAT)
        out[f"{b}.conv1.weight"], out[f"{b}.conv1.bias"] = w1, w1.new_zeros(w1.shape[0])
        used.update((f"{a}.conv1.weight", f"{a}.conv2.weight"))
        for extra in ("conv1.bias", "conv2.bias", "nin_shortcut.bias"):  # not in the reference; guard anyway
            if f"{a}.{extra}" in sd:
                raise ConversionError(f"{FORMAT}: unexpected {a}.{extra} in a MaskGIT VQGAN res block")
        if f"{a}.nin_shortcut.weight" in sd:
            nin = sd[f"{a}.nin_shortcut.weight"][:, :, 0, 0].double()  # (C_out, C_out)
            used.add(f"{a}.nin_shortcut.weight")
            fused = torch.einsum("om,mikl->oikl", torch.eye(nin.shape[0], dtype=torch.float64) + nin, w2.double())
            out[f"{b}.conv2.weight"] = fused.float()
            c_in = w1.shape[1]
            out[f"{b}.skip.weight"] = w2.new_zeros(w2.shape[0], c_in, 1, 1)
            out[f"{b}.skip.bias"] = w2.new_zeros(w2.shape[0])
        else:
            out[f"{b}.conv2.weight"] = w2
        out[f"{b}.conv2.bias"] = w2.new_zeros(w2.shape[0])

    def plain(a: str, b: str) -> None:
        for p in ("weight", "bias"):
            out[f"{b}.{p}"] = need(sd, f"{a}.{p}", FORMAT)
            used.add(f"{a}.{p}")

    plain(f"{src}.conv_in", f"{dst}.conv_in")
    res(f"{src}.mid.0", f"{dst}.mid.0")
    res(f"{src}.mid.1", f"{dst}.mid.2")
    idx = 0
    for i in reversed(range(n_levels)):  # the reference runs up[n-1] ... up[0]
        for j in range(nrb):
            res(f"{src}.up.{i}.block.{j}", f"{dst}.up.{idx}")
            idx += 1
        if i > 0:
            plain(f"{src}.up.{i}.upsample_conv", f"{dst}.up.{idx}.conv")
            idx += 1
    plain(f"{src}.norm_out", f"{dst}.norm_out")
    plain(f"{src}.conv_out", f"{dst}.conv_out")
    return {"z_channels": int(sd[f"{src}.conv_in.weight"].shape[1]), "base_channels": base,
            "channel_mult": [w // base for w in widths], "num_res_blocks": nrb}


def _load_maskgit_vqgan(p: Any) -> dict[str, Tensor]:
    """A MaskGIT VQGAN checkpoint (encoder. / decoder. / quantize.) as TiTok's pixel_* keys."""
    from mmtok.weights import WeightsError, load_checkpoint_file

    path = Path(str(p)).expanduser()
    if not path.is_file():
        raise ConversionError(f"option maskgit_vqgan={path}: no such file")
    try:
        state = tensors_only(load_checkpoint_file(path, what="MaskGIT VQGAN checkpoint"))
    except WeightsError as e:
        raise ConversionError(str(e)) from e
    if "quantize.embedding.weight" not in state or "decoder.conv_in.weight" not in state:
        raise ConversionError(f"{path} is not a MaskGIT VQGAN checkpoint (needs quantize.embedding.weight and "
                              "decoder.*)")
    out = {"pixel_" + k: v for k, v in state.items() if k.startswith(("decoder.", "quantize."))}
    return out


def _vit_size(width: int, named: Any, what: str) -> int:
    if width not in VIT_SIZES:
        raise ConversionError(f"{FORMAT}: {what} width {width} is none of TiTok's ViT sizes "
                              f"{ {w: n for w, (n, _) in VIT_SIZES.items()} }; the head count is unknown")
    name, heads = VIT_SIZES[width]
    if named is not None and str(named) != name:
        raise ConversionError(f"{FORMAT}: the config says {what} size {named!r}, the weights are {name!r} (width {width})")
    return heads


def convert(state: dict[str, Any], path: Path, **options: Any) -> tuple[Any, list[str]]:
    from mmtok.image.titok import TiTokConfig, TiTokTokenizer

    check_options(options, OPTIONS, FORMAT)
    sd = tensors_only(state)
    if not detect(sd, path):
        raise ConversionError(f"{path}: not a TiTok checkpoint (expected keys {list(_MARKERS)})")
    cfg, cfg_src = _config(path, options)
    notes: list[str] = [f"TiTok config from {cfg_src}" if cfg_src else "no TiTok config file: sizes from the weights"]

    if any(k.startswith("decoder.text_guidance") for k in sd):
        raise ConversionError(f"{FORMAT}: a TA-TiTok checkpoint (its decoder reads CLIP text embeddings, "
                              "decoder.text_guidance_*); mmtok's 1D decoder has no text conditioning")
    if str(cfg.get("quantize_mode", "vq")) != "vq" or "quantize.embedding.weight" not in sd:
        raise ConversionError(f"{FORMAT}: quantize_mode={cfg.get('quantize_mode', 'vae')!r} (no VQ codebook in the "
                              "checkpoint): continuous VAE tokens are not a discrete tokenizer; only VQ TiTok converts")

    # --- sizes from the weights --------------------------------------------------------
    pw = sd["encoder.patch_embed.weight"]
    enc_width, in_channels, patch = int(pw.shape[0]), int(pw.shape[1]), int(pw.shape[2])
    n_pos = int(sd["encoder.positional_embedding"].shape[0]) - 1
    grid = math.isqrt(n_pos)
    if grid * grid != n_pos:
        raise ConversionError(f"{FORMAT}: {n_pos} patch positions are not a square grid")
    image_size = grid * patch
    num_tokens = int(sd["latent_tokens"].shape[0])
    codebook = sd["quantize.embedding.weight"]
    n_codes, token_dim = (int(s) for s in codebook.shape)
    if int(need(sd, "encoder.conv_out.weight", FORMAT).shape[0]) != token_dim:
        raise ConversionError(f"{FORMAT}: encoder.conv_out writes {sd['encoder.conv_out.weight'].shape[0]} channels, "
                              f"the codebook is {token_dim}-d")
    dec_width = int(sd["decoder.decoder_embed.weight"].shape[0])
    dec_pos = int(need(sd, "decoder.positional_embedding", FORMAT).shape[0]) - 1
    if dec_pos != n_pos:
        raise ConversionError(f"{FORMAT}: the decoder's patch grid ({dec_pos} positions) differs from the encoder's "
                              f"({n_pos}); mmtok uses one patch size for both (vit_enc_patch_size == vit_dec_patch_size)")
    enc_depth = count_indices(sd, "encoder.transformer.")
    dec_depth = count_indices(sd, "decoder.transformer.")
    enc_heads = _vit_size(enc_width, cfg.get("vit_enc_model_size"), "encoder")
    dec_heads = _vit_size(dec_width, cfg.get("vit_dec_model_size"), "decoder")
    mlp = {int(need(sd, f"{p}.transformer.0.mlp.c_fc.weight", FORMAT).shape[0]) / w
           for p, w in (("encoder", enc_width), ("decoder", dec_width))}
    if len(mlp) != 1:
        raise ConversionError(f"{FORMAT}: encoder and decoder MLP ratios differ ({sorted(mlp)}); mmtok has one mlp_ratio")
    for key, have in (("num_latent_tokens", num_tokens), ("codebook_size", n_codes), ("token_size", token_dim),
                      ("vit_enc_patch_size", patch), ("vit_dec_patch_size", patch), ("crop_size", image_size)):
        if key in cfg and int(cfg[key]) != have:
            raise ConversionError(f"{FORMAT}: the config says {key}={cfg[key]}, the weights say {have}")
    if "use_l2_norm" not in cfg:
        raise ConversionError(
            f"{FORMAT}: {path} comes without a config, and the weights do not tell whether codes are looked up "
            "l2-normalised: pass --option use_l2_norm=true (TiTok 4096 x 12 releases) or false (VQ-8k), or "
            "--option config=PATH/TO/configs/infer/TiTok/<model>.yaml")
    l2 = as_bool(cfg["use_l2_norm"], "use_l2_norm")
    unit_range = _pixel_range(cfg, options)

    # --- decoder head ------------------------------------------------------------------
    has_conv_out = "decoder.conv_out.weight" in sd
    legacy = "decoder.ffn.2.weight" in sd and not has_conv_out
    if "is_legacy" in cfg and as_bool(cfg["is_legacy"], "is_legacy") != legacy:
        raise ConversionError(f"{FORMAT}: the config says is_legacy={cfg['is_legacy']}, but the decoder head is "
                              f"{'the logits MLP of a legacy model' if legacy else 'a pixel head'}")
    pixel: dict[str, Tensor] = {k: v for k, v in sd.items() if k.startswith(("pixel_decoder.", "pixel_quantize."))}
    soft = True
    if legacy and not pixel:
        if "maskgit_vqgan" not in options:
            raise ConversionError(
                f"{FORMAT}: a stage-1 TiTok checkpoint (is_legacy, finetune_decoder false): its decoder predicts "
                "MaskGIT VQGAN codes and has no pixel decoder; pass --option maskgit_vqgan=PATH to the MaskGIT "
                "VQGAN checkpoint (maskgit-vqgan-imagenet-f16-256.bin) to decode through it")
        pixel, soft = _load_maskgit_vqgan(options["maskgit_vqgan"]), False
        notes.append(f"stage-1 model: decodes the argmax MaskGIT code per patch through {options['maskgit_vqgan']}")
    elif not legacy and pixel:
        raise ConversionError(f"{FORMAT}: pixel_decoder weights next to a pixel-writing decoder head; unknown layout")
    elif "maskgit_vqgan" in options:
        raise ConversionError("option maskgit_vqgan is only for stage-1 checkpoints, which have no pixel decoder")
    if "finetune_decoder" in cfg and as_bool(cfg["finetune_decoder"], "finetune_decoder") != (legacy and soft):
        notes.append(f"config finetune_decoder={cfg['finetune_decoder']} (the weights decide the decoding path)")

    out: dict[str, Tensor] = {}
    used: set[str] = set()
    head_spec: dict[str, Any] | None = None
    if legacy:
        f0, f2 = need(sd, "decoder.ffn.0.weight", FORMAT), sd["decoder.ffn.2.weight"]
        if f0.shape[0] != 2 * dec_width:
            raise ConversionError(f"{FORMAT}: decoder.ffn.0 has {f0.shape[0]} outputs, a legacy head has 2 x width")
        out["decoder.head.mlp.0.weight"], out["decoder.head.mlp.0.bias"] = f0[:, :, 0, 0], sd["decoder.ffn.0.bias"]
        out["decoder.head.mlp.2.weight"], out["decoder.head.mlp.2.bias"] = f2[:, :, 0, 0], sd["decoder.ffn.2.bias"]
        used.update(("decoder.ffn.0.weight", "decoder.ffn.0.bias", "decoder.ffn.2.weight", "decoder.ffn.2.bias"))
        psd = dict(pixel)
        pused: set[str] = set()
        head_spec = _maskgit_decoder("pixel_decoder", "decoder.head.decoder", psd, out, pused)
        cb = need(psd, "pixel_quantize.embedding.weight", FORMAT)
        if int(cb.shape[0]) != int(f2.shape[0]) or int(cb.shape[1]) != head_spec["z_channels"]:
            raise ConversionError(f"{FORMAT}: pixel codebook {tuple(cb.shape)} does not fit the head's "
                                  f"{f2.shape[0]} logits / the pixel decoder's {head_spec['z_channels']} channels")
        out["decoder.head.codebook"] = cb
        pused.add("pixel_quantize.embedding.weight")
        head_spec.update(codebook_size=int(cb.shape[0]), soft=soft)
        if 2 ** (len(head_spec["channel_mult"]) - 1) != patch:
            raise ConversionError(f"{FORMAT}: the MaskGIT VQGAN upsamples by {2 ** (len(head_spec['channel_mult']) - 1)},"
                                  f" the patch size is {patch}; the decoded image would not match the input size")
        if unit_range:
            key = "decoder.head.decoder.conv_out"
            out[f"{key}.weight"], out[f"{key}.bias"] = fold_output_unit_range(out[f"{key}.weight"], out[f"{key}.bias"])
        leftover = set(psd) - pused - {k for k in psd if k.startswith("pixel_quantize.")}
        if leftover:
            raise ConversionError(f"{FORMAT}: pixel decoder weights with no place in mmtok: {sorted(leftover)[:5]}")
        used.update(k for k in pixel if k in sd)
        head = "codebook"
    else:
        f0 = need(sd, "decoder.ffn.0.weight", FORMAT)
        if f0.shape[0] != patch * patch * in_channels or "decoder.ffn.2.weight" in sd:
            raise ConversionError(f"{FORMAT}: unknown decoder head (decoder.ffn.0 {tuple(f0.shape)})")
        out["decoder.head.weight"], out["decoder.head.bias"] = f0[:, :, 0, 0], sd["decoder.ffn.0.bias"]
        w, b = need(sd, "decoder.conv_out.weight", FORMAT), sd["decoder.conv_out.bias"]
        out["decoder.head_conv.weight"], out["decoder.head_conv.bias"] = fold_output_unit_range(w, b) if unit_range else (w, b)
        used.update(("decoder.ffn.0.weight", "decoder.ffn.0.bias", "decoder.conv_out.weight", "decoder.conv_out.bias"))
        head = "linear_conv"

    # --- encoder, quantizer, decoder ViT -----------------------------------------------
    w, b = sd["encoder.patch_embed.weight"], need(sd, "encoder.patch_embed.bias", FORMAT)
    out["encoder.patch_embed.proj.weight"], out["encoder.patch_embed.proj.bias"] = \
        fold_input_unit_range(w, b) if unit_range else (w, b)
    for part in ("encoder", "decoder"):
        pos = sd[f"{part}.positional_embedding"]  # (1 + g*g, W): the class slot first
        out[f"{part}.cls_token"] = need(sd, f"{part}.class_embedding", FORMAT) + pos[:1]
        out[f"{part}.pos_embed.weight"] = pos[1:][None].clone()
        used.update((f"{part}.positional_embedding", f"{part}.class_embedding"))
    out["encoder.latent_tokens"] = sd["latent_tokens"] + need(sd, "encoder.latent_token_positional_embedding", FORMAT)
    out["encoder.proj_out.weight"] = sd["encoder.conv_out.weight"][:, :, 0, 0]
    out["encoder.proj_out.bias"] = need(sd, "encoder.conv_out.bias", FORMAT)
    out["decoder.proj_in.weight"] = sd["decoder.decoder_embed.weight"]
    out["decoder.proj_in.bias"] = need(sd, "decoder.decoder_embed.bias", FORMAT)
    out["decoder.mask_token"] = sd["decoder.mask_token"].reshape(-1)
    out["decoder.latent_pos"] = need(sd, "decoder.latent_token_positional_embedding", FORMAT)
    used.update(("encoder.patch_embed.weight", "encoder.patch_embed.bias", "latent_tokens",
                 "encoder.latent_token_positional_embedding", "encoder.conv_out.weight", "encoder.conv_out.bias",
                 "decoder.decoder_embed.weight", "decoder.decoder_embed.bias", "decoder.mask_token",
                 "decoder.latent_token_positional_embedding", "quantize.embedding.weight", "quantize.embed_prob"))
    _vit("encoder", "encoder", enc_depth, sd, out, used)
    _vit("decoder", "decoder", dec_depth, sd, out, used)
    out.update(vq_codebook("quantizer.", codebook, l2))

    config = TiTokConfig(
        image_size=image_size, patch_size=patch, in_channels=in_channels, num_tokens=num_tokens,
        quantizer=vq_spec(n_codes, l2, float(cfg.get("commitment_cost", 0.25))), token_dim=token_dim,
        encoder_width=enc_width, encoder_depth=enc_depth, encoder_heads=enc_heads,
        decoder_width=dec_width, decoder_depth=dec_depth, decoder_heads=dec_heads, mlp_ratio=mlp.pop(),
        class_token=True, ln_pre=True, legacy_token_reshape=legacy, decoder_head=head, pixel_decoder=head_spec,
    )
    model = TiTokTokenizer(config)
    load_mapped(model, out, FORMAT, optional=QUANTIZER_BUFFERS, source_unused=set(sd) - used)

    notes += [
        f"TiTok: {image_size}px, patch {patch}, {num_tokens} tokens, encoder {enc_width}x{enc_depth}, decoder "
        f"{dec_width}x{dec_depth}, VQ {n_codes} x {token_dim}{' l2-normalised' if l2 else ''}",
        {"codebook": f"decoder head: logits over {head_spec['codebook_size'] if head_spec else 0} MaskGIT VQGAN codes "
                     f"-> {'softmax' if soft else 'argmax'} embedding -> MaskGIT conv decoder "
                     "(shortcut folded into conv2)",
         "linear_conv": "decoder head: pixels per patch, then a 3x3 conv"}[head],
        "class embeddings carry their position embedding; latent tokens carry theirs (folded)",
    ]
    if unit_range:
        notes.append("reference images are in [0, 1]: the [-1, 1] mapping is folded into the patch embedding and "
                     "the last layer")
    if legacy:
        notes.append("is_legacy: the encoder's (B, K, W) latents are read as (B, W, K) before the projection, as "
                     "in the reference (legacy_token_reshape)")
    return model, notes


register_converter(Converter(
    name=FORMAT,
    description="TiTok (bytedance/1d-tokenizer; HF folder or tokenizer_titok_*.bin) -> TiTokTokenizer",
    detect=detect,
    convert=convert,
    file_names=("model.safetensors", "pytorch_model.bin"),
))
