"""Shared by the audio converters: pair a reference model's layers with an mmtok model's, in
forward order, and load the mapped tensors with every mismatch reported as a ConversionError.

Both sides are grouped by module path (first-seen order of the state dict, i.e. registration
order). Weight norm is spelled ``weight_g`` / ``weight_v`` by ``torch.nn.utils.weight_norm``
(DAC, EnCodec) and ``parametrizations.weight.original0`` / ``original1`` by the
parametrization mmtok uses; both read as ``weight_g`` / ``weight_v`` here (same tensors, same
``torch._weight_norm`` at run time, so the outputs are the same).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from torch import Tensor, nn

from mmtok.convert import ConversionError

_PARAMETRIZED = {
    ".parametrizations.weight.original0": "weight_g",
    ".parametrizations.weight.original1": "weight_v",
}


def split_key(key: str) -> tuple[str, str]:
    """``"a.b.conv.parametrizations.weight.original0"`` -> ``("a.b.conv", "weight_g")``; else (module, name)."""
    for long, short in _PARAMETRIZED.items():
        if key.endswith(long):
            return key[: -len(long)], short
    module, _, name = key.rpartition(".")
    return module, name


def full_key(module: str, name: str, parametrized: bool) -> str:
    """The mmtok state-dict key of ``name`` in ``module`` (weight norm as a parametrization)."""
    if parametrized:
        for long, short in _PARAMETRIZED.items():
            if name == short:
                return module + long
    return f"{module}.{name}"


def groups(state: Mapping[str, Any], keys: Iterable[str]) -> list[tuple[str, dict[str, Any]]]:
    """``keys`` of ``state`` grouped by module path, in first-seen order: [(module, {name: value})]."""
    out: dict[str, dict[str, Any]] = {}
    for k in keys:
        module, name = split_key(k)
        out.setdefault(module, {})[name] = state[k]
    return list(out.items())


def pair_layers(src: list[tuple[str, dict[str, Any]]], dst: list[tuple[str, dict[str, Any]]],
                what: str) -> dict[str, Tensor]:
    """Pair ``src`` and ``dst`` groups one to one (same order, same parameter names and shapes)
    -> {mmtok key: reference tensor}; a ConversionError names the first layer that differs."""
    if len(src) != len(dst):
        raise ConversionError(f"{what}: the checkpoint has {len(src)} layers with weights, the mmtok model "
                              f"{len(dst)} (first: {src[0][0] if src else '-'} vs {dst[0][0] if dst else '-'})")
    mapped: dict[str, Tensor] = {}
    for (s_mod, s_par), (d_mod, d_par) in zip(src, dst):
        if set(s_par) != set(d_par):
            raise ConversionError(f"{what}: layer {s_mod} has {sorted(s_par)}, its mmtok counterpart {d_mod} "
                                  f"{sorted(d_par)}")
        parametrized = any(n in ("weight_g", "weight_v") for n in d_par)
        for name, value in s_par.items():
            if not isinstance(value, Tensor):
                raise ConversionError(f"{what}: {s_mod}.{name} is a {type(value).__name__}, not a tensor")
            if tuple(value.shape) != tuple(d_par[name].shape):
                raise ConversionError(f"{what}: {s_mod}.{name} has shape {tuple(value.shape)}, the mmtok "
                                      f"model expects {tuple(d_par[name].shape)} ({d_mod})")
            mapped[full_key(d_mod, name, parametrized)] = value
    return mapped


def load_mapped(model: nn.Module, mapped: Mapping[str, Tensor], allowed_missing: Iterable[str] = ()) -> None:
    """Load ``mapped`` into ``model`` (dtype cast to the model's); every model key must be set
    except ``allowed_missing`` (exact keys or ``prefix.*``)."""
    own = model.state_dict()
    patterns = list(allowed_missing)

    def allowed(k: str) -> bool:
        return any(k == p or (p.endswith("*") and k.startswith(p[:-1])) for p in patterns)

    missing = [k for k in own if k not in mapped and not allowed(k)]
    unexpected = [k for k in mapped if k not in own]
    if missing or unexpected:
        raise ConversionError(f"internal mapping error: missing {missing[:4]}, unexpected {unexpected[:4]}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in mapped.items()}, strict=False)


def check_options(options: Mapping[str, Any], known: Iterable[str], fmt: str) -> None:
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConversionError(f"unknown {fmt} option(s) {unknown}; known: {sorted(known)}")
