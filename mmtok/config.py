"""Dataclass configs <-> dicts / YAML, with dotted ``key=value`` overrides.

Unknown keys are always an error (a typo in a recipe must not be silently ignored).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mmtok.io import atomic_write_text

T = TypeVar("T")


class ConfigError(ValueError):
    """A config key or value that does not fit the dataclass schema."""


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _unwrap_optional(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def from_dict(cls: type[T], data: dict[str, Any] | None, path: str = "") -> T:
    """Build dataclass ``cls`` from a (nested) dict; unknown keys raise ``ConfigError``."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f" in '{path}'" if path else ""
        raise ConfigError(
            f"unknown config key(s) {unknown}{where} for {cls.__name__}; valid keys: {sorted(fields)}"
        )
    kwargs = {}
    for name, value in data.items():
        tp = _unwrap_optional(hints.get(name, Any))
        sub = f"{path}.{name}" if path else name
        if _is_dataclass_type(tp) and isinstance(value, dict):
            value = from_dict(tp, value, sub)
        elif (tp is tuple or typing.get_origin(tp) is tuple) and isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """Dataclass (nested) -> plain dict of JSON/YAML-friendly values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


_YAML11_BOOL_WORDS = {"yes", "no", "on", "off", "y", "n"}


def parse_overrides(overrides: list[str] | None) -> dict[str, Any]:
    """``["model.num_tokens=64", "train.lr=1e-4"]`` -> nested dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override {item!r} has an empty key")
        # YAML 1.1 reads yes/no/on/off as booleans; on the command line only true/false are
        # (``precision=no`` is the string "no")
        value = raw.strip() if raw.strip().lower() in _YAML11_BOOL_WORDS else (yaml.safe_load(raw) if raw.strip() else "")
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with another override")
        node[parts[-1]] = value
    return out


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge (``update`` wins); returns a new dict."""
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    with path.open() as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level of a config must be a mapping, got {type(data).__name__}")
    return data


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """YAML file (optional) + dotted overrides -> dataclass ``cls``."""
    data = load_yaml(path) if path is not None else {}
    return from_dict(cls, merge(data, parse_overrides(overrides)))


def save_yaml(obj: Any, path: str | Path) -> None:
    atomic_write_text(path, yaml.safe_dump(to_dict(obj), sort_keys=False))


def config_hash(obj: Any) -> str:
    """Stable short hash of a config (dataclass or dict), used to tag checkpoints and shards."""
    blob = json.dumps(to_dict(obj), sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def build_config(cls: type, defaults: dict[str, Any], overrides: dict[str, Any]) -> Any:
    """A registered variant's defaults + user overrides -> its config dataclass; an unknown key
    is a ``ConfigError``.

    The merge is shallow on purpose: ``quantizer={"type": "vq"}`` replaces the whole
    quantizer mapping instead of mixing options of two quantizer types.
    """
    try:
        return from_dict(cls, {**defaults, **overrides})
    except (ConfigError, TypeError) as e:  # TypeError: e.g. a non-dict for a nested field
        raise ConfigError(f"bad override for {cls.__name__}: {e}") from e
