"""DAC (descript-audio-codec 1.0.0) checkpoints -> ``RVQCodec``.

The files DAC releases (``weights_44khz_8kbps_0.0.1.pth``, ``weights_24khz.pth``, ...) and
``DAC.save(path, package=False)`` hold ``{"state_dict": ..., "metadata": {"kwargs": {...}}}``,
the kwargs being DAC's constructor arguments (``encoder_dim``, ``encoder_rates``,
``latent_dim``, ``decoder_dim``, ``decoder_rates``, ``n_codebooks``, ``codebook_size``,
``codebook_dim``, ``quantizer_dropout``, ``sample_rate``; DAC's defaults where absent). A
bare DAC state dict is read too (then the kwargs are DAC's defaults unless given as options:
``mmtok convert w.pth out -o sample_rate=24000 -o encoder_rates=[2,4,5,8] ...``).

Mapping: DAC's SEANet is mmtok's (Snake, weight-normed convs with bias, the same paddings);
its quantizer becomes ``FactorizedRVQ`` (per-level weight-normed in/out projections, l2
lookup in ``codebook_dim``, raw codeword projected out). The converted config sets
``upsample_padding="symmetric"`` (DAC's transposed-conv trim) and ``decoder_strides``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mmtok.convert import ConversionError, Converter, register_converter
from mmtok.convert._layers import check_options, groups, load_mapped, pair_layers

# DAC 1.0.0's constructor defaults (the 44.1 kHz model)
DAC_DEFAULTS: dict[str, Any] = {
    "encoder_dim": 64,
    "encoder_rates": [2, 4, 8, 8],
    "latent_dim": None,
    "decoder_dim": 1536,
    "decoder_rates": [8, 8, 4, 2],
    "n_codebooks": 9,
    "codebook_size": 1024,
    "codebook_dim": 8,
    "quantizer_dropout": False,
    "sample_rate": 44100,
}
_PROBE = "quantizer.quantizers.0.codebook.weight"


def _state_dict(state: dict[str, Any]) -> dict[str, Any]:
    sd = state.get("state_dict", state)
    return sd if isinstance(sd, dict) else {}


def detect(state: dict[str, Any], path: Path) -> bool:
    sd = _state_dict(state)
    return _PROBE in sd and any(k.startswith("encoder.block.") for k in sd)


def dac_kwargs(state: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """DAC's constructor arguments: metadata kwargs over DAC's defaults, ``options`` over both."""
    meta = state.get("metadata") if "state_dict" in state else None
    kwargs = meta.get("kwargs", {}) if isinstance(meta, dict) else {}
    if not isinstance(kwargs, dict):
        raise ConversionError(f"DAC metadata 'kwargs' is a {type(kwargs).__name__}, not a mapping")
    check_options(options, DAC_DEFAULTS, "dac")
    out = {**DAC_DEFAULTS, **{k: v for k, v in kwargs.items() if k in DAC_DEFAULTS}, **options}
    if out["latent_dim"] is None:
        out["latent_dim"] = int(out["encoder_dim"]) * 2 ** len(out["encoder_rates"])
    return out


def rvq_config(kw: dict[str, Any]) -> dict[str, Any]:
    """DAC kwargs -> ``RVQCodecConfig`` fields."""
    cdim = kw["codebook_dim"]
    if isinstance(cdim, (list, tuple)):
        if len(set(cdim)) != 1:
            raise ConversionError(f"DAC codebook_dim {list(cdim)} differs per level; mmtok's FactorizedRVQ "
                                  "uses one codebook_dim for every level")
        cdim = cdim[0]
    enc, dec = [int(r) for r in kw["encoder_rates"]], [int(r) for r in kw["decoder_rates"]]
    hop, sr = math.prod(enc), int(kw["sample_rate"])
    if math.prod(dec) != hop:
        raise ConversionError(f"DAC decoder_rates {dec} upsample by {math.prod(dec)}, encoder_rates {enc} "
                              f"downsample by {hop}; mmtok decodes T frames to T * hop samples, so they must match")
    return dict(
        sample_rate=sr,
        channels=1,
        segment_length=hop * max(1, sr // hop),
        causal=False,
        base_channels=int(kw["encoder_dim"]),
        decoder_channels=int(kw["decoder_dim"]),
        strides=tuple(enc),
        latent_dim=int(kw["latent_dim"]),
        dilations=(1, 3, 9),
        kernel_size=7,
        decoder_strides=tuple(dec),
        upsample_padding="symmetric",
        quantizer={
            "type": "factorized_rvq",
            "num_levels": int(kw["n_codebooks"]),
            "codebook_size": int(kw["codebook_size"]),
            "codebook_dim": int(cdim),
            "quantizer_dropout": float(kw["quantizer_dropout"]),
            "commitment_weight": 0.25,
            "codebook_weight": 1.0,
        },
    )


def convert(state: dict[str, Any], path: Path, **options: Any) -> tuple[Any, list[str]]:
    from mmtok.audio.rvq_codec import RVQCodec, RVQCodecConfig
    from mmtok.config import ConfigError, from_dict

    sd = _state_dict(state)
    kw = dac_kwargs(state, options)
    cfg = rvq_config(kw)
    try:
        model = RVQCodec(from_dict(RVQCodecConfig, cfg))
    except (ValueError, ConfigError) as e:
        raise ConversionError(f"{path}: DAC config {kw} has no mmtok RVQCodec counterpart: {e}") from e
    own = model.state_dict()
    tracker = ("quantizer._last_used", "quantizer._step")  # mmtok's dead-code counters: start at zero
    mapped: dict[str, Any] = {}
    for part in ("encoder", "quantizer", "decoder"):
        src = groups(sd, [k for k in sd if k.startswith(part + ".")])
        dst = groups(own, [k for k in own if k.startswith(part + ".") and k not in tracker])
        mapped.update(pair_layers(src, dst, f"{path.name} ({part}, DAC kwargs {kw})"))
    unused = [k for k in sd if not k.startswith(("encoder.", "quantizer.", "decoder."))]
    if unused:
        raise ConversionError(f"{path}: unexpected DAC keys {unused[:4]}")
    load_mapped(model, mapped, allowed_missing=tracker)
    hop = model.hop_length
    lost = hop - _decoded_samples(kw["decoder_rates"])
    notes = [
        f"DAC {kw['sample_rate']} Hz: hop {hop} ({model.frame_rate:g} frames/s), {kw['n_codebooks']} x "
        f"{kw['codebook_size']} codes in {model.quantizer.codebook_dim}-d (quantizer factorized_rvq)",
        "codes equal DAC's (encoder -> quantizer with n_quantizers); decode = quantizer.from_codes -> decoder",
        "n_q is honoured in train and eval (DAC ignores n_quantizers in training mode)",
    ]
    if lost:
        notes.append(f"DAC's decoder returns T * hop - {lost} samples (odd decoder rates); mmtok right-pads "
                     f"those {lost} with zeros to T * hop")
    return model, notes


def _decoded_samples(rates: list[int]) -> int:
    """Samples DAC's decoder makes from one frame, in the limit (its odd strides lose one each)."""
    n = 1.0
    for s in rates:
        n = n * s + s - 2 * math.ceil(s / 2)
    return int(n)


register_converter(Converter(
    name="dac",
    description="descript-audio-codec (DAC) .pth: {'state_dict', 'metadata': {'kwargs'}} -> RVQCodec",
    detect=detect,
    convert=convert,
    file_names=("weights.pth",),
))
