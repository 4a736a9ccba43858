"""Tokenizer registry (timm-style): one registered function per named variant.

    @register_tokenizer
    def titok_s128_fsq(**overrides) -> Tokenizer: ...

    tok = create_tokenizer("titok_s128_fsq", num_tokens=64)

Families (the tokenizer classes) are registered too, so a saved ``config.json`` that names
its family rebuilds the model without knowing the variant function.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mmtok.tokenizer import Tokenizer

_VARIANTS: dict[str, Callable[..., "Tokenizer"]] = {}
_VARIANT_MODALITY: dict[str, str] = {}
_FAMILIES: dict[str, type] = {}

# Modules whose import registers tokenizers; imported on first registry lookup only.
_PROVIDERS = ("mmtok.image", "mmtok.video", "mmtok.audio")
_loaded = False


def register_tokenizer(fn: Callable[..., "Tokenizer"] | None = None, *, modality: str | None = None):
    """Register a variant function under its ``__name__``; usable as ``@register_tokenizer``."""

    def wrap(f: Callable[..., "Tokenizer"]) -> Callable[..., "Tokenizer"]:
        name = f.__name__
        if name in _VARIANTS and _VARIANTS[name] is not f:
            raise ValueError(f"tokenizer {name!r} is already registered")
        _VARIANTS[name] = f
        parts = f.__module__.split(".")
        _VARIANT_MODALITY[name] = modality or (parts[1] if parts[0] == "mmtok" and len(parts) > 1 else "other")
        return f

    return wrap(fn) if fn is not None else wrap


def register_family(cls: type) -> type:
    """Register a tokenizer class so ``load_tokenizer`` can rebuild it from config.json."""
    _FAMILIES[cls.__name__] = cls
    return cls


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    for mod in _PROVIDERS:
        try:
            import_module(mod)
        except ModuleNotFoundError as e:  # a modality package that does not exist yet
            if e.name != mod:
                raise
    _loaded = True  # only once every provider imported: a failed import is retried next time


def list_tokenizers(pattern: str | None = None, modality: str | None = None) -> list[str]:
    """Sorted names of registered tokenizer variants (optionally filtered by substring/modality)."""
    _ensure_loaded()
    names = sorted(_VARIANTS)
    if pattern:
        names = [n for n in names if pattern in n]
    if modality:
        names = [n for n in names if _VARIANT_MODALITY.get(n) == modality]
    return names


def create_tokenizer(name: str, **overrides: Any) -> "Tokenizer":
    """Build a registered tokenizer variant with fresh weights; ``overrides`` patch its config."""
    _ensure_loaded()
    if name not in _VARIANTS:
        close = difflib.get_close_matches(name, list(_VARIANTS), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown tokenizer {name!r}.{hint} See mmtok.list_tokenizers().")
    tok = _VARIANTS[name](**overrides)
    tok.variant_name = name
    return tok


def get_family(name: str) -> type:
    _ensure_loaded()
    if name not in _FAMILIES:
        raise KeyError(f"unknown tokenizer family {name!r}; known: {sorted(_FAMILIES)}")
    return _FAMILIES[name]
