"""Registered 1D image tokenizer variants, one explicit table entry per name.

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

from mmtok.config import build_config
from mmtok.quantize import ROBUST_VQ
from mmtok.image.titok import TiTokConfig, TiTokTokenizer
from mmtok.registry import register_tokenizer

# Widths follow TiTok's ViT sizes (S: 512x8, B: 768x12, L: 1024x24); "t" is for tests / CPU demos.
SIZES: dict[str, dict[str, Any]] = {
    "t": dict(image_size=32, patch_size=4, width=128, depth=2, heads=4),
    "s": dict(image_size=256, patch_size=16, width=512, depth=8, heads=8),
    "b": dict(image_size=256, patch_size=16, width=768, depth=12, heads=12),
    "l": dict(image_size=256, patch_size=16, width=1024, depth=24, heads=16),
}

# Quantizer presets per kind, (full size, tiny): the config fields each sets.
QUANTIZERS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # FlexTok / Cosmos levels (64,000 codes); tiny: 1,000 codes
    "fsq": (
        dict(quantizer={"type": "fsq", "levels": [8, 8, 8, 5, 5, 5]}),
        dict(quantizer={"type": "fsq", "levels": [8, 5, 5, 5]}),
    ),
    # TiTok: l2-normalised codes looked up in 12-d, plus k-means init and dead-code restart
    "vq": (
        dict(token_dim=12, quantizer={"type": "vq", "codebook_size": 4096, "commitment_weight": 0.25, **ROBUST_VQ}),
        dict(token_dim=12, quantizer={"type": "vq", "codebook_size": 1024, "commitment_weight": 0.25, **ROBUST_VQ}),
    ),
    # Open-MAGVIT2-style LFQ with its entropy term (per-sample entropy down, batch entropy up)
    "lfq": (
        dict(quantizer={"type": "lfq", "codebook_size": 2**12, "entropy_loss_weight": 0.1}),
        dict(quantizer={"type": "lfq", "codebook_size": 2**10, "entropy_loss_weight": 0.1}),
    ),
}

TITOK_VARIANTS: dict[str, dict[str, Any]] = {
    "titok_t32_vq": dict(size="t", num_tokens=32, quant="vq"),
    "titok_t32_fsq": dict(size="t", num_tokens=32, quant="fsq"),
    "titok_t32_lfq": dict(size="t", num_tokens=32, quant="lfq"),
    "titok_t64_vq": dict(size="t", num_tokens=64, quant="vq"),
    "titok_t64_fsq": dict(size="t", num_tokens=64, quant="fsq"),
    "titok_t64_lfq": dict(size="t", num_tokens=64, quant="lfq"),
    "titok_t128_vq": dict(size="t", num_tokens=128, quant="vq"),
    "titok_t128_fsq": dict(size="t", num_tokens=128, quant="fsq"),
    "titok_t128_lfq": dict(size="t", num_tokens=128, quant="lfq"),
    "titok_t256_vq": dict(size="t", num_tokens=256, quant="vq"),
    "titok_t256_fsq": dict(size="t", num_tokens=256, quant="fsq"),
    "titok_t256_lfq": dict(size="t", num_tokens=256, quant="lfq"),
    "titok_s32_vq": dict(size="s", num_tokens=32, quant="vq"),
    "titok_s32_fsq": dict(size="s", num_tokens=32, quant="fsq"),
    "titok_s32_lfq": dict(size="s", num_tokens=32, quant="lfq"),
    "titok_s64_vq": dict(size="s", num_tokens=64, quant="vq"),
    "titok_s64_fsq": dict(size="s", num_tokens=64, quant="fsq"),
    "titok_s64_lfq": dict(size="s", num_tokens=64, quant="lfq"),
    "titok_s128_vq": dict(size="s", num_tokens=128, quant="vq"),
    "titok_s128_fsq": dict(size="s", num_tokens=128, quant="fsq"),
    "titok_s128_lfq": dict(size="s", num_tokens=128, quant="lfq"),
    "titok_s256_vq": dict(size="s", num_tokens=256, quant="vq"),
    "titok_s256_fsq": dict(size="s", num_tokens=256, quant="fsq"),
    "titok_s256_lfq": dict(size="s", num_tokens=256, quant="lfq"),
    "titok_b32_vq": dict(size="b", num_tokens=32, quant="vq"),
    "titok_b32_fsq": dict(size="b", num_tokens=32, quant="fsq"),
    "titok_b32_lfq": dict(size="b", num_tokens=32, quant="lfq"),
    "titok_b64_vq": dict(size="b", num_tokens=64, quant="vq"),
    "titok_b64_fsq": dict(size="b", num_tokens=64, quant="fsq"),
    "titok_b64_lfq": dict(size="b", num_tokens=64, quant="lfq"),
    "titok_b128_vq": dict(size="b", num_tokens=128, quant="vq"),
    "titok_b128_fsq": dict(size="b", num_tokens=128, quant="fsq"),
    "titok_b128_lfq": dict(size="b", num_tokens=128, quant="lfq"),
    "titok_b256_vq": dict(size="b", num_tokens=256, quant="vq"),
    "titok_b256_fsq": dict(size="b", num_tokens=256, quant="fsq"),
    "titok_b256_lfq": dict(size="b", num_tokens=256, quant="lfq"),
    "titok_l32_vq": dict(size="l", num_tokens=32, quant="vq"),
    "titok_l32_fsq": dict(size="l", num_tokens=32, quant="fsq"),
    "titok_l32_lfq": dict(size="l", num_tokens=32, quant="lfq"),
    "titok_l64_vq": dict(size="l", num_tokens=64, quant="vq"),
    "titok_l64_fsq": dict(size="l", num_tokens=64, quant="fsq"),
    "titok_l64_lfq": dict(size="l", num_tokens=64, quant="lfq"),
    "titok_l128_vq": dict(size="l", num_tokens=128, quant="vq"),
    "titok_l128_fsq": dict(size="l", num_tokens=128, quant="fsq"),
    "titok_l128_lfq": dict(size="l", num_tokens=128, quant="lfq"),
    "titok_l256_vq": dict(size="l", num_tokens=256, quant="vq"),
    "titok_l256_fsq": dict(size="l", num_tokens=256, quant="fsq"),
    "titok_l256_lfq": dict(size="l", num_tokens=256, quant="lfq"),
}

# Ordered 1D tokens: causal attention among the latent tokens and nested dropout.
FLEXTOK_VARIANTS: dict[str, dict[str, Any]] = {
    "flextok_t32_fsq": dict(size="t", num_tokens=32, quant="fsq"),
    "flextok_t64_fsq": dict(size="t", num_tokens=64, quant="fsq"),
    "flextok_t128_fsq": dict(size="t", num_tokens=128, quant="fsq"),
    "flextok_t256_fsq": dict(size="t", num_tokens=256, quant="fsq"),
    "flextok_s32_fsq": dict(size="s", num_tokens=32, quant="fsq"),
    "flextok_s64_fsq": dict(size="s", num_tokens=64, quant="fsq"),
    "flextok_s128_fsq": dict(size="s", num_tokens=128, quant="fsq"),
    "flextok_s256_fsq": dict(size="s", num_tokens=256, quant="fsq"),
    "flextok_b32_fsq": dict(size="b", num_tokens=32, quant="fsq"),
    "flextok_b64_fsq": dict(size="b", num_tokens=64, quant="fsq"),
    "flextok_b128_fsq": dict(size="b", num_tokens=128, quant="fsq"),
    "flextok_b256_fsq": dict(size="b", num_tokens=256, quant="fsq"),
    "flextok_l32_fsq": dict(size="l", num_tokens=32, quant="fsq"),
    "flextok_l64_fsq": dict(size="l", num_tokens=64, quant="fsq"),
    "flextok_l128_fsq": dict(size="l", num_tokens=128, quant="fsq"),
    "flextok_l256_fsq": dict(size="l", num_tokens=256, quant="fsq"),
}


def variant_defaults(size: str, num_tokens: int, quant: str, flextok: bool = False) -> dict[str, Any]:
    """The TiTokConfig fields a table entry stands for."""
    s = SIZES[size]
    d: dict[str, Any] = dict(
        image_size=s["image_size"],
        patch_size=s["patch_size"],
        num_tokens=num_tokens,
        encoder_width=s["width"],
        encoder_depth=s["depth"],
        encoder_heads=s["heads"],
        decoder_width=s["width"],
        decoder_depth=s["depth"],
        decoder_heads=s["heads"],
        **QUANTIZERS[quant][size == "t"],
    )
    if flextok:
        d.update(causal_latents=True, nested_dropout=True, nested_mode="uniform")
    return d


def _register(name: str, size: str, num_tokens: int, quant: str, flextok: bool = False) -> Callable[..., TiTokTokenizer]:
    defaults = variant_defaults(size, num_tokens, quant, flextok)

    def variant(**overrides: Any) -> TiTokTokenizer:
        return TiTokTokenizer(build_config(TiTokConfig, defaults, overrides))

    kind = "ordered (nested-dropout, causal latents)" if flextok else "1D"
    variant.__name__ = variant.__qualname__ = name
    px, patch = SIZES[size]["image_size"], SIZES[size]["patch_size"]
    variant.__doc__ = (
        f"{kind} tokenizer, size {size!r}, {num_tokens} tokens, {quant.upper()} "
        f"({px}px, patch {patch}); keyword overrides patch TiTokConfig."
    )
    return register_tokenizer(variant)


for _name, _entry in TITOK_VARIANTS.items():
    _register(_name, **_entry)
for _name, _entry in FLEXTOK_VARIANTS.items():
    _register(_name, **_entry, flextok=True)
del _name, _entry
