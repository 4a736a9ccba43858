"""EnCodec (``encodec`` 0.1.1) checkpoints -> ``EncodecStyleCodec``.

The official files (``encodec_24khz-d7cc33bc.th``) are plain state dicts of
``EncodecModel``: ``encoder.model.*`` / ``decoder.model.*`` (SEANet, weight norm as
``weight_g`` / ``weight_v``, ``lstm.*``) and ``quantizer.vq.layers.<i>._codebook.{inited,
cluster_size, embed, embed_avg}``. The architecture (widths, strides, residual blocks,
LSTM depth, kernel sizes, levels, codebook size) is read from the tensor shapes; what the
weights cannot say comes from options with the 24 kHz model's values: ``sample_rate=24000``,
``dilation_base=2``, ``pad_mode="reflect"``, ``final_activation="none"``.

Supported: causal mono models (the 24 kHz release and smaller ones of the same layout). The
48 kHz model (stereo, non-causal, time-group norm, per-segment volume normalisation and
overlap-add) is refused with a ConversionError.

mmtok's RVQ keeps vector-quantize-pytorch's EMA codebooks (embed, embed_avg, cluster_size
copied over) and looks codes up in eval mode with EnCodec's own distance arithmetic
(``eval_lookup="expanded"``), so the codes are EnCodec's.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch

from mmtok.convert import ConversionError, Converter, register_converter
from mmtok.convert._layers import check_options, groups, load_mapped, pair_layers

OPTIONS: dict[str, Any] = {
    "sample_rate": 24000,
    "dilation_base": 2,
    "pad_mode": "reflect",
    "final_activation": "none",
    "causal": True,
}
_PROBE = "quantizer.vq.layers.0._codebook.embed"
_INDEX = re.compile(r"^(encoder|decoder)\.model\.(\d+)\.(.+)$")


def detect(state: dict[str, Any], path: Path) -> bool:
    return _PROBE in state and any(k.startswith("encoder.model.") for k in state)


def _layers(state: dict[str, Any], part: str) -> list[tuple[int, str, dict[str, Any]]]:
    """The indexed layers of ``part`` (encoder / decoder) with weights: [(index, kind, {rest: tensor})],
    kind one of "conv", "convtr", "res", "lstm"."""
    by_index: dict[int, dict[str, Any]] = {}
    for k, v in state.items():
        m = _INDEX.match(k)
        if m and m.group(1) == part:
            by_index.setdefault(int(m.group(2)), {})[m.group(3)] = v
    out = []
    for i in sorted(by_index):
        rest = by_index[i]
        kind = ("lstm" if any(r.startswith("lstm.") for r in rest) else
                "res" if any(r.startswith("block.") for r in rest) else
                "convtr" if any(r.startswith("convtr.") for r in rest) else "conv")
        out.append((i, kind, rest))
    return out


def _kernel(rest: dict[str, Any], prefix: str) -> torch.Tensor:
    w = rest.get(f"{prefix}.weight_v")
    if w is None:
        raise ConversionError(f"EnCodec layer without weight norm ({prefix}.weight_v missing): only the weight-normed "
                              "24 kHz layout is supported, not the 48 kHz model (time-group norm)")
    return w


def infer_config(state: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """EncodecStyleCodecConfig fields from the tensor shapes and ``options``."""
    check_options(options, OPTIONS, "encodec")
    opt = {**OPTIONS, **options}
    if not opt["causal"]:
        raise ConversionError("non-causal EnCodec models (the 48 kHz release) are not supported: their transposed "
                              "convolutions trim differently; only the causal 24 kHz layout converts")
    if any(".norm." in k for k in state):
        raise ConversionError("this EnCodec checkpoint uses time-group norm (the 48 kHz stereo model, with volume "
                              "normalisation and 1 s overlap-add segments); only the 24 kHz mono model is supported")
    enc = _layers(state, "encoder")
    if len(enc) < 2 or enc[0][1] != "conv" or enc[-1][1] != "conv":
        raise ConversionError("encoder.model.* does not start and end with a convolution: not an EnCodec SEANet")
    first, last = _kernel(enc[0][2], "conv.conv"), _kernel(enc[-1][2], "conv.conv")
    channels, n_filters, kernel_size = first.shape[1], first.shape[0], first.shape[-1]
    if channels != 1:
        raise ConversionError(f"EnCodec with {channels} audio channels (the 48 kHz stereo model) is not supported; "
                              "only mono models convert")
    strides, res_per_stage, res_rest, lstm_layers = [], [], None, 0
    count = 0
    for _, kind, rest in enc[1:-1]:
        if kind == "res":
            count += 1
            res_rest = res_rest or rest
        elif kind == "conv":
            k = _kernel(rest, "conv.conv").shape[-1]
            strides.append(k // 2)
            res_per_stage.append(count)
            count = 0
        elif kind == "lstm":
            lstm_layers = len([r for r in rest if re.fullmatch(r"lstm\.weight_ih_l\d+", r)])
        else:
            raise ConversionError(f"unexpected {kind} layer in the EnCodec encoder")
    if not strides or len(set(res_per_stage)) != 1:
        raise ConversionError(f"EnCodec encoder stages with {res_per_stage} residual blocks: expected the same count per stage")
    n_res = res_per_stage[0]
    res_k, compress, true_skip = 3, 2, False
    if res_rest is not None:
        w0 = _kernel(res_rest, "block.1.conv.conv")
        res_k, compress = w0.shape[-1], w0.shape[1] // w0.shape[0]
        true_skip = not any(r.startswith("shortcut.") for r in res_rest)
    emb = state[_PROBE]
    n_q = len({k.split(".")[3] for k in state if k.startswith("quantizer.vq.layers.")})
    hop = math.prod(strides)
    sr = int(opt["sample_rate"])
    return dict(
        sample_rate=sr, channels=1, segment_length=hop * max(1, sr // hop), causal=True,
        n_filters=int(n_filters), latent_dim=int(last.shape[0]), strides=tuple(int(s) for s in strides),
        n_residual_layers=int(n_res), kernel_size=int(kernel_size), last_kernel_size=int(last.shape[-1]),
        residual_kernel_size=int(res_k), dilation_base=int(opt["dilation_base"]), compress=int(compress),
        true_skip=bool(true_skip), lstm_layers=int(lstm_layers), pad_mode=str(opt["pad_mode"]),
        final_activation=str(opt["final_activation"]),
        quantizer={"type": "rvq", "num_levels": n_q, "codebook_size": int(emb.shape[0]), "use_cosine_sim": False,
                   "ema_update": True, "decay": 0.99, "kmeans_init": True, "kmeans_iters": 50,
                   "threshold_ema_dead_code": 2.0, "commitment_weight": 1.0, "quantizer_dropout": True,
                   "eval_lookup": "expanded"},
    )


def convert(state: dict[str, Any], path: Path, **options: Any) -> tuple[Any, list[str]]:
    from mmtok.audio.encodec_codec import EncodecStyleCodec, EncodecStyleCodecConfig
    from mmtok.config import ConfigError, from_dict

    cfg = infer_config(state, options)
    try:
        model = EncodecStyleCodec(from_dict(EncodecStyleCodecConfig, cfg))
    except (ValueError, ConfigError) as e:
        raise ConversionError(f"{path}: the EnCodec layout {cfg} has no EncodecStyleCodec counterpart: {e}") from e
    own = model.state_dict()
    mapped: dict[str, Any] = {}
    for part in ("encoder", "decoder"):
        src = groups(state, [k for k in state if k.startswith(part + ".")])
        dst = groups(own, [k for k in own if k.startswith(part + ".")])
        mapped.update(pair_layers(src, dst, f"{path.name} ({part})"))
    n_q = cfg["quantizer"]["num_levels"]
    for i in range(n_q):
        src = f"quantizer.vq.layers.{i}._codebook."
        dst = f"quantizer.inner.layers.{i}._codebook."
        try:
            embed, avg, size, inited = (state[src + n] for n in ("embed", "embed_avg", "cluster_size", "inited"))
        except KeyError as e:
            raise ConversionError(f"{path}: EnCodec codebook {i} lacks {e.args[0]}") from None
        if embed.shape != own[dst + "embed"].shape[1:] or avg.shape != embed.shape or size.shape != embed.shape[:1]:
            raise ConversionError(f"{path}: EnCodec codebook {i} has shapes embed {tuple(embed.shape)}, embed_avg "
                                  f"{tuple(avg.shape)}, cluster_size {tuple(size.shape)}; expected one K x D codebook")
        mapped[dst + "embed"], mapped[dst + "embed_avg"] = embed[None], avg[None]
        mapped[dst + "cluster_size"] = size[None]
        mapped[dst + "initted"] = torch.tensor(bool(inited.flatten()[0]))
    unused = [k for k in state if not k.startswith(("encoder.model.", "decoder.model.", "quantizer.vq.layers."))]
    if unused:
        raise ConversionError(f"{path}: unexpected EnCodec keys {unused[:4]}")
    load_mapped(model, mapped, allowed_missing=("quantizer._last_used", "quantizer._step"))
    bw = model.frame_rate * math.log2(model.codebook_size) / 1000
    notes = [
        f"EnCodec {cfg['sample_rate']} Hz (sample_rate is not stored in the file; -o sample_rate=... to change), "
        f"hop {model.hop_length}, {n_q} x {model.codebook_size} codes, {bw:g} kbps per level: EnCodec's bandwidth "
        f"b kbps is encode(x, n_q=floor(b / {bw:g}))",
        "family EncodecStyleCodec (mmtok's RVQCodec has no ELU / LSTM / reflect-padded SEANet)",
        "codes equal EnCodec's (eval-mode lookup in its arithmetic); decode is clamped to [-1, 1] (EnCodec's is not)",
        "inputs whose length is not a multiple of the hop are zero-padded first (EnCodec pads inside each conv, "
        "so the last frame can differ)",
    ]
    return model, notes


register_converter(Converter(
    name="encodec",
    description="EnCodec .th state dict (24 kHz mono, causal) -> EncodecStyleCodec",
    detect=detect,
    convert=convert,
    file_names=("encodec_24khz-d7cc33bc.th",),
))
