"""Registered 1D image tokenizer variants.

Names: ``titok_{size}{K}_{quant}`` and ``flextok_{size}{K}_fsq`` with size in
t (tiny, 32x32, CPU-friendly), s, b, l; K in 32/64/128/256; quant in vq/fsq/lfq.

    tok = mmtok.create_tokenizer("titok_s128_fsq")              # ~50M parameters
    tok = mmtok.create_tokenizer("flextok_t32_fsq", image_size=64)

Every config field of :class:`~mmtok.image.titok.TiTokConfig` can be overridden; an
unknown key raises ``ConfigError``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mmtok.image.common import build_config
from mmtok.image.titok import TiTokConfig, TiTokTokenizer
from mmtok.registry import register_tokenizer

# Widths follow TiTok's ViT sizes (S: 512x8, B: 768x12, L: 1024x24); "t" is for tests / CPU demos.
SIZES: dict[str, dict[str, Any]] = {
    "t": dict(image_size=32, patch_size=4, width=128, depth=2, heads=4),
    "s": dict(image_size=256, patch_size=16, width=512, depth=8, heads=8),
    "b": dict(image_size=256, patch_size=16, width=768, depth=12, heads=12),
    "l": dict(image_size=256, patch_size=16, width=1024, depth=24, heads=16),
}
TOKEN_COUNTS = (32, 64, 128, 256)


def default_quantizer(quant: str, size: str) -> dict[str, Any]:
    """The quantizer mapping a variant name implies."""
    tiny = size == "t"
    if quant == "fsq":
        return {"type": "fsq", "levels": [8, 5, 5, 5] if tiny else [8, 8, 8, 5, 5, 5]}
    if quant == "vq":  # TiTok: l2-normalised codes looked up in 12-d
        return {"type": "vq", "codebook_size": 1024 if tiny else 4096, "use_cosine_sim": True, "commitment_weight": 0.25}
    if quant == "lfq":
        return {"type": "lfq", "codebook_size": 2**10 if tiny else 2**12}
    raise ValueError(f"unknown quantizer kind {quant!r}")


def variant_defaults(family: str, size: str, num_tokens: int, quant: str) -> dict[str, Any]:
    s = SIZES[size]
    d: dict[str, Any] = dict(
        image_size=s["image_size"],
        patch_size=s["patch_size"],
        num_tokens=num_tokens,
        quantizer=default_quantizer(quant, size),
        encoder_width=s["width"],
        encoder_depth=s["depth"],
        encoder_heads=s["heads"],
        decoder_width=s["width"],
        decoder_depth=s["depth"],
        decoder_heads=s["heads"],
    )
    if family == "flextok":
        d.update(causal_latents=True, nested_dropout=True, nested_mode="uniform")
    return d


def _make_variant(family: str, size: str, num_tokens: int, quant: str) -> Callable[..., TiTokTokenizer]:
    name = f"{family}_{size}{num_tokens}_{quant}"
    defaults = variant_defaults(family, size, num_tokens, quant)

    def variant(**overrides: Any) -> TiTokTokenizer:
        return TiTokTokenizer(build_config(TiTokConfig, defaults, overrides))

    kind = "ordered (nested-dropout, causal latents)" if family == "flextok" else "1D"
    variant.__name__ = variant.__qualname__ = name
    px, patch = SIZES[size]["image_size"], SIZES[size]["patch_size"]
    variant.__doc__ = (
        f"{kind} tokenizer, size {size!r}, {num_tokens} tokens, {quant.upper()} "
        f"({px}px, patch {patch}); keyword overrides patch TiTokConfig."
    )
    return register_tokenizer(variant)


for _size in SIZES:
    for _k in TOKEN_COUNTS:
        for _quant in ("vq", "fsq", "lfq"):
            _fn = _make_variant("titok", _size, _k, _quant)
            globals()[_fn.__name__] = _fn
        _fn = _make_variant("flextok", _size, _k, "fsq")
        globals()[_fn.__name__] = _fn
del _size, _k, _quant, _fn
