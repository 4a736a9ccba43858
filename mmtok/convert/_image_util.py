"""Helpers the image converters share: unwrapping training checkpoints, strict weight
loading with clear errors, the VQ codebook, and folding a pixel range into a layer."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from mmtok.convert import ConversionError


def tensors_only(state: Mapping[str, Any]) -> dict[str, Tensor]:
    """The tensor entries of ``state`` (drops a safetensors ``__metadata__`` entry and the like)."""
    return {k: v for k, v in state.items() if isinstance(v, Tensor)}


def count_indices(state: Mapping[str, Any], prefix: str) -> int:
    """Number of consecutive ``{prefix}{i}.`` groups (i = 0, 1, ...) among the keys."""
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m.group(1)) for k in state if (m := pat.match(k))}
    n = 0
    while n in found:
        n += 1
    return n


def need(state: Mapping[str, Tensor], key: str, what: str) -> Tensor:
    """``state[key]``, or a ConversionError naming the missing key."""
    if key not in state:
        raise ConversionError(f"{what}: the checkpoint lacks {key!r}; is it complete?")
    return state[key]


def load_mapped(model: nn.Module, mapped: Mapping[str, Tensor], what: str,
                optional: Iterable[str] = (), source_unused: Iterable[str] = ()) -> None:
    """Copy ``mapped`` (mmtok key -> tensor) into ``model``, every model key accounted for.

    ``optional``: model keys (regex) that keep their built values when not mapped (buffers
    such as the dead-code tracker). ``source_unused``: reference keys nobody mapped; when
    non-empty they are reported, since silently dropping weights would change the model.
    """
    own = model.state_dict()
    opt = [re.compile(p) for p in optional]
    unknown = sorted(set(mapped) - set(own))
    if unknown:
        raise ConversionError(f"{what}: internal mapping error, no such mmtok keys {unknown[:5]}")
    missing = sorted(k for k in own if k not in mapped and not any(p.fullmatch(k) for p in opt))
    if missing:
        raise ConversionError(f"{what}: the checkpoint has nothing for mmtok's {missing[:6]} "
                              f"({len(missing)} in all); the layouts differ")
    unused = sorted(source_unused)
    if unused:
        raise ConversionError(f"{what}: checkpoint weights with no place in the mmtok model: {unused[:6]} "
                              f"({len(unused)} in all); refusing to drop them")
    out = dict(own)
    for k, v in mapped.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise ConversionError(f"{what}: {k} has shape {tuple(v.shape)} in the checkpoint, "
                                  f"the mmtok model expects {tuple(own[k].shape)}")
        out[k] = v.to(own[k].dtype)
    model.load_state_dict(out, strict=True)


def vq_codebook(prefix: str, codebook: Tensor, l2: bool) -> dict[str, Tensor]:
    """mmtok ``VQ`` entries for a (K, D) reference codebook (l2-normalised when ``l2``, as the
    reference looks codes up and returns them normalised)."""
    cb = codebook.float()
    if l2:
        cb = torch.nn.functional.normalize(cb, dim=-1)
    embed = cb[None].clone()
    return {f"{prefix}vq._codebook.embed": embed, f"{prefix}vq._codebook.embed_avg": embed.clone()}


def vq_spec(codebook_size: int, l2: bool, commitment: float, codebook_dim: int | None = None) -> dict[str, Any]:
    """The mmtok quantizer config of a reference VQ: nearest code (cosine when ``l2``),
    no k-means init and no dead-code restarts (the reference weights are final)."""
    spec: dict[str, Any] = {"type": "vq", "codebook_size": int(codebook_size), "use_cosine_sim": bool(l2),
                            "kmeans_init": False, "threshold_ema_dead_code": 0.0,
                            "commitment_weight": float(commitment)}
    if codebook_dim is not None:
        spec["codebook_dim"] = int(codebook_dim)
    return spec


QUANTIZER_BUFFERS = (r"quantizer\._last_used", r"quantizer\._step", r"quantizer\.vq\._codebook\.initted",
                     r"quantizer\.vq\._codebook\.cluster_size")


def fold_input_unit_range(weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """A conv without padding that read images in [0, 1], rewritten for images in [-1, 1]:
    conv((x + 1) / 2) = conv'(x) with W' = W / 2, b' = b + sum(W) / 2 (exact, float64)."""
    w = weight.double()
    return (w / 2).float(), (bias.double() + w.sum(dim=(1, 2, 3)) / 2).float()


def fold_output_unit_range(weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """A final layer that wrote images in [0, 1], rewritten to write [-1, 1]: 2 * y - 1."""
    return (weight.double() * 2).float(), (bias.double() * 2 - 1).float()


def as_bool(value: Any, name: str) -> bool:
    """A converter option read as a bool (``true``/``false`` strings and 0/1 accepted)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise ConversionError(f"option {name} must be true or false, got {value!r}")


def check_options(options: Mapping[str, Any], valid: Iterable[str], fmt: str) -> None:
    valid = sorted(valid)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConversionError(f"unknown option(s) {unknown} for format {fmt!r}; valid: {valid}")
