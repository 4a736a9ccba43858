"""1D image tokenizers: TiTok-style (K latent tokens) and FlexTok-style (ordered, nested).

Encoder: a ViT over image patches plus K learnable latent tokens; only the latent outputs
are projected to ``token_dim`` and quantized. Decoder: a ViT over the K quantized tokens
plus one mask token per patch of the output grid; the grid outputs are projected to pixels.

FlexTok-style variants (``nested_dropout=True``, ``causal_latents=True``) let latent
token i attend only to the patches and latent tokens 0..i, and train with nested dropout,
so any prefix ``codes[:, :k]`` decodes and quality grows with k.

Position embeddings are learned (sin-cos initialised) for the training grid and resampled
bicubically for other grids, so any size that is a multiple of the patch size works,
non-square included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from einops import rearrange
from timm.layers import PatchEmbed, build_sincos2d_pos_embed, resample_abs_pos_embed, trunc_normal_
from torch import Tensor, nn

from mmtok.image.common import ImageTokenizer, parse_image_size
from mmtok.image.pixel_heads import CodebookPixelHead, pixel_decoder_spec
from mmtok.layers.latent_norm import build_latent_norm
from mmtok.layers.transformer import Transformer, prefix_causal_mask
from mmtok.quantize import NestedDropout, Quantizer, build as build_quantizer, default_dim
from mmtok.registry import register_family
from mmtok.tokenizer import TokenizerOutput, as_codes


@dataclass
class TiTokConfig:
    """Config of the 1D tokenizer family (TiTok / FlexTok-style variants)."""

    image_size: int = 256  # training resolution (square); other multiples of patch_size also work
    patch_size: int = 16
    in_channels: int = 3
    num_tokens: int = 128  # K latent tokens
    quantizer: dict[str, Any] = field(default_factory=lambda: {"type": "fsq", "levels": [8, 8, 8, 5, 5, 5]})
    token_dim: int | None = None  # quantizer input size; None: the quantizer's default_dim (FSQ len(levels), LFQ log2(codes))
    encoder_width: int = 512
    encoder_depth: int = 8
    encoder_heads: int = 8
    decoder_width: int = 512
    decoder_depth: int = 8
    decoder_heads: int = 8
    mlp_ratio: float = 4.0
    qk_norm: bool = False
    causal_latents: bool = False  # FlexTok: causal attention among latent tokens in the encoder
    nested_dropout: bool = False  # train with nested dropout (any prefix decodes)
    nested_mode: str = "uniform"  # "uniform" or "pow2" prefix lengths
    nested_min_keep: int = 1
    nested_p: float = 1.0  # fraction of samples that get a truncated prefix in training
    grad_checkpointing: bool = False
    # Standardise each latent channel (running batch statistics, no affine) before the
    # quantizer: "none" (the encoder's projection goes straight in) or "batch". Keeps FSQ
    # channels off tanh's flat tails and gives VQ's k-means spread-out vectors (see mmtok.layers.latent_norm).
    latent_norm: str = "none"
    # Reference layout (TiTok's official checkpoints; `mmtok convert` sets these, defaults = mmtok's own):
    class_token: bool = False  # a learned class token first in the encoder's and the decoder's sequence
    ln_pre: bool = False  # LayerNorm over the whole input sequence before the first block (encoder and decoder)
    legacy_token_reshape: bool = False  # TiTok `is_legacy`: the (B, K, W) latents are read as (B, W, K) before proj_out
    # "linear": patch tokens -> pixels; "linear_conv": then a 3x3 conv on the image (TiTok, is_legacy=False);
    # "codebook": logits over a VQGAN codebook -> soft embedding -> conv decoder (TiTok's MaskGIT-VQGAN stage 2)
    decoder_head: str = "linear"
    pixel_decoder: dict[str, Any] | None = None  # "codebook" head sizes (mmtok.image.pixel_heads.MASKGIT_VQGAN keys)


DECODER_HEADS = ("linear", "linear_conv", "codebook")


def _token_dim(token_dim: int | None, quantizer: dict[str, Any]) -> int:
    """``token_dim``, else the quantizer's own ``default_dim`` (a clear error when it has none)."""
    dim = token_dim if token_dim is not None else default_dim(quantizer)
    if dim is None:
        raise ValueError(
            f"token_dim is not set and quantizer {quantizer.get('type')!r} has no default input size; "
            "set token_dim (TiTok's VQ looks codes up in 12-d) or the quantizer's codebook_dim. "
            '(An older config.json with "token_dim": null and a VQ/RVQ quantizer meant 12: write "token_dim": 12 there.)'
        )
    if dim < 1:
        raise ValueError(f"token_dim must be >= 1, got {dim}")
    return int(dim)


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


class GridPosEmbed(nn.Module):
    """Learned 2D position embedding for a (G_h, G_w) grid, resampled for other grids."""

    def __init__(self, grid: tuple[int, int], dim: int) -> None:
        super().__init__()
        self.grid = grid
        init = build_sincos2d_pos_embed(list(grid), dim=dim) if dim % 4 == 0 else torch.randn(grid[0] * grid[1], dim) * 0.02
        self.weight = nn.Parameter(init.reshape(1, grid[0] * grid[1], dim).clone())

    def forward(self, grid: tuple[int, int]) -> Tensor:
        """-> (1, gh*gw, dim)."""
        if tuple(grid) == tuple(self.grid):
            return self.weight
        return resample_abs_pos_embed(self.weight, new_size=list(grid), old_size=list(self.grid), num_prefix_tokens=0)


@dataclass(frozen=True)
class ViTSize:
    """Width, depth and heads of one ViT stack (encoder or decoder) and its block options."""

    width: int
    depth: int
    heads: int
    mlp_ratio: float = 4.0
    qk_norm: bool = False
    grad_checkpointing: bool = False

    def transformer(self) -> Transformer:
        return Transformer(self.width, self.depth, self.heads, self.mlp_ratio, qk_norm=self.qk_norm,
                           grad_checkpointing=self.grad_checkpointing)


class LatentEncoder(nn.Module):
    """Patches + K latent tokens -> ViT -> (B, K, token_dim) continuous latents."""

    def __init__(self, *, image_size: int, patch_size: int, in_channels: int, num_tokens: int, token_dim: int,
                 vit: ViTSize, causal_latents: bool = False, latent_norm: str = "none", class_token: bool = False,
                 ln_pre: bool = False, legacy_token_reshape: bool = False) -> None:
        super().__init__()
        g, width = image_size // patch_size, vit.width
        self.num_tokens, self.causal_latents = num_tokens, causal_latents
        self.legacy_token_reshape = legacy_token_reshape
        # TiTok layout: [class token, patches, latents]; the class token holds its position embedding
        self.cls_token = nn.Parameter(torch.randn(1, width) * 0.02) if class_token else None
        self.ln_pre = nn.LayerNorm(width) if ln_pre else None
        self.patch_embed = PatchEmbed(
            img_size=image_size, patch_size=patch_size, in_chans=in_channels, embed_dim=width, strict_img_size=False
        )
        self.pos_embed = GridPosEmbed((g, g), width)
        self.latent_tokens = nn.Parameter(torch.randn(num_tokens, width) * 0.02)
        self.transformer = vit.transformer()
        self.proj_out = nn.Linear(width, token_dim)
        self.latent_norm = build_latent_norm(latent_norm, token_dim)

    def forward(self, x: Tensor, grid: tuple[int, int]) -> Tensor:
        """x: (B, C, H, W) -> (B, K, token_dim)."""
        patches = self.patch_embed(x) + self.pos_embed(grid)  # (B, N, W)
        b, n, _ = patches.shape
        latents = self.latent_tokens.to(patches.dtype).expand(b, -1, -1)
        seq = [patches, latents]
        if self.cls_token is not None:
            seq.insert(0, self.cls_token.to(patches.dtype).expand(b, -1, -1))
            n += 1
        mask = prefix_causal_mask(n, self.num_tokens, device=x.device) if self.causal_latents else None
        seq = torch.cat(seq, dim=1)
        h = self.transformer(seq if self.ln_pre is None else self.ln_pre(seq), mask)[:, n:]  # (B, K, W)
        if self.legacy_token_reshape:  # the reference's memory reinterpretation, kept for its weights
            h = h.reshape(b, h.shape[2], self.num_tokens).transpose(1, 2)
        z = self.proj_out(h)
        return z if self.latent_norm is None else self.latent_norm(z)


class PixelDecoder(nn.Module):
    """(B, K, token_dim) quantized tokens + mask tokens for the patch grid -> ViT -> pixels."""

    def __init__(self, *, image_size: int, patch_size: int, out_channels: int, num_tokens: int, token_dim: int,
                 vit: ViTSize, class_token: bool = False, ln_pre: bool = False, head: str = "linear",
                 pixel_decoder: dict[str, Any] | None = None) -> None:
        super().__init__()
        g, width = image_size // patch_size, vit.width
        self.patch_size, self.out_channels = patch_size, out_channels
        if head not in DECODER_HEADS:
            raise ValueError(f"decoder_head must be one of {DECODER_HEADS}, got {head!r}")
        self.head_kind = head
        self.proj_in = nn.Linear(token_dim, width)
        self.latent_pos = nn.Parameter(torch.randn(num_tokens, width) * 0.02)
        self.mask_token = nn.Parameter(torch.randn(width) * 0.02)
        self.pos_embed = GridPosEmbed((g, g), width)
        self.cls_token = nn.Parameter(torch.randn(1, width) * 0.02) if class_token else None
        self.ln_pre = nn.LayerNorm(width) if ln_pre else None
        self.transformer = vit.transformer()
        self.head_conv: nn.Conv2d | None = None
        if head == "codebook":
            spec = pixel_decoder_spec(pixel_decoder)
            self.head = CodebookPixelHead(width=width, out_channels=out_channels, **spec)
            if self.head.factor != patch_size:
                raise ValueError(f"the codebook head's conv decoder upsamples by {self.head.factor}, "
                                 f"but patch_size is {patch_size}; they must be equal")
        else:
            if pixel_decoder is not None:
                raise ValueError(f"pixel_decoder is only used with decoder_head='codebook', not {head!r}")
            self.head = nn.Linear(width, patch_size * patch_size * out_channels)
            if head == "linear_conv":
                self.head_conv = nn.Conv2d(out_channels, out_channels, 3, padding=1)

    def forward(self, z: Tensor, grid: tuple[int, int]) -> Tensor:
        """z: (B, K, token_dim) -> (B, C, gh*p, gw*p)."""
        b = z.shape[0]
        gh, gw = grid
        latents = self.proj_in(z) + self.latent_pos.to(z.dtype)
        queries = self.mask_token.to(latents.dtype).expand(b, gh * gw, -1) + self.pos_embed(grid).to(latents.dtype)
        seq, c0 = [queries, latents], 0
        if self.cls_token is not None:
            seq, c0 = [self.cls_token.to(latents.dtype).expand(b, -1, -1), *seq], 1
        seq = torch.cat(seq, dim=1)
        h = self.transformer(seq if self.ln_pre is None else self.ln_pre(seq))[:, c0 : c0 + gh * gw]
        if self.head_kind == "codebook":
            return self.head(h, grid)
        p = self.patch_size
        out = rearrange(self.head(h), "b (gh gw) (p q c) -> b c (gh p) (gw q)", gh=gh, p=p, q=p)
        return out if self.head_conv is None else self.head_conv(out)


@register_family
class TiTokTokenizer(ImageTokenizer):
    """1D tokenizer: ``encode`` (B, 3, H, W) in [-1, 1] -> (B, K) int64 codes; ``decode`` back.

    Any prefix ``codes[:, :k]`` decodes: the missing tail is filled with the learned mask
    token (nested variants, trained for it) or with zeros (plain TiTok, not trained for it).
    """

    config_class = TiTokConfig

    def __init__(self, config: TiTokConfig) -> None:
        super().__init__(config)
        c = config
        if c.patch_size < 1 or c.image_size % c.patch_size:
            raise ValueError(f"image_size ({c.image_size}) must be a positive multiple of patch_size ({c.patch_size})")
        if c.num_tokens < 1:
            raise ValueError(f"num_tokens must be >= 1, got {c.num_tokens}")
        if c.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {c.in_channels}")
        self.token_dim = token_dim = _token_dim(c.token_dim, c.quantizer)
        blocks = dict(mlp_ratio=c.mlp_ratio, qk_norm=c.qk_norm, grad_checkpointing=c.grad_checkpointing)
        shared = dict(image_size=c.image_size, patch_size=c.patch_size, num_tokens=c.num_tokens, token_dim=token_dim)
        self.encoder = LatentEncoder(in_channels=c.in_channels, causal_latents=c.causal_latents,
                                     latent_norm=c.latent_norm, class_token=c.class_token, ln_pre=c.ln_pre,
                                     legacy_token_reshape=c.legacy_token_reshape, **shared,
                                     vit=ViTSize(c.encoder_width, c.encoder_depth, c.encoder_heads, **blocks))
        self.quantizer: Quantizer = build_quantizer(dict(c.quantizer), dim=token_dim)
        self.decoder = PixelDecoder(out_channels=c.in_channels, class_token=c.class_token, ln_pre=c.ln_pre,
                                    head=c.decoder_head, pixel_decoder=c.pixel_decoder, **shared,
                                    vit=ViTSize(c.decoder_width, c.decoder_depth, c.decoder_heads, **blocks))
        self.nested: NestedDropout | None = None
        if c.nested_dropout:
            self.nested = NestedDropout(
                token_dim, c.num_tokens, mode=c.nested_mode, min_keep=c.nested_min_keep, p=c.nested_p
            )
        self.encoder.apply(_init_weights)
        self.decoder.apply(_init_weights)
        # Unit-scale latents at init: with 0.02-std projections every token would round to
        # the same FSQ / LFQ code and learning would start from a collapsed codebook.
        nn.init.normal_(self.encoder.proj_out.weight, std=c.encoder_width**-0.5)
        nn.init.normal_(self.decoder.proj_in.weight, std=token_dim**-0.5)

    # --- properties -------------------------------------------------------------------
    @property
    def token_shape(self) -> tuple[int, ...]:
        return (self.config.num_tokens,)

    @property
    def is_nested(self) -> bool:
        return self.nested is not None

    @property
    def patch_size(self) -> int:
        return self.config.patch_size

    @property
    def size_multiple(self) -> int:
        return self.config.patch_size

    @property
    def last_layer_weight(self) -> Tensor:
        """Weight of the pixel head (for the adaptive GAN weight)."""
        return self.decoder.head.weight

    # --- protocol ---------------------------------------------------------------------
    def _grid(self, x: Tensor) -> tuple[int, int]:
        """Check ``x`` and return its patch grid."""
        self.check_input(x)
        return x.shape[2] // self.patch_size, x.shape[3] // self.patch_size

    def encode_latents(self, x: Tensor) -> Tensor:
        """(B, C, H, W) in [-1, 1] -> (B, K, token_dim) continuous (pre-quantization) latents."""
        return self.encoder(x, self._grid(x))

    def decode_latents(self, z: Tensor, image_size: Any = None) -> Tensor:
        """(B, K, token_dim) quantized latents -> (B, C, H, W) (not clamped)."""
        if z.ndim != 3 or z.shape[1] != self.num_tokens or z.shape[2] != self.token_dim:
            raise ValueError(f"latents must be (B, {self.num_tokens}, {self.token_dim}), got {tuple(z.shape)}")
        h, w = parse_image_size(self.config.image_size if image_size is None else image_size, self.patch_size)
        return self.decoder(z, (h // self.patch_size, w // self.patch_size))

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """x: (B, 3, H, W) float32 in [-1, 1], H and W multiples of the patch size -> (B, K) int64."""
        return self.quantizer.encode(self.encode_latents(x))

    def decode(self, codes: Tensor, image_size: int | tuple[int, int] | None = None) -> Tensor:
        """codes: (B, k) ids of any integer dtype with 1 <= k <= K (a prefix of ``encode``'s
        output) -> (B, 3, H, W) in [-1, 1].

        ``image_size`` (int or (H, W)) picks the output size; default: the training size.
        """
        codes = as_codes(codes, self.device)
        if codes.ndim not in (2, 3) or not 1 <= codes.shape[1] <= self.num_tokens:
            raise ValueError(f"codes must be (B, k) with 1 <= k <= {self.num_tokens}, got shape {tuple(codes.shape)}")
        z = self.quantizer.decode(codes)  # (B, k, token_dim) fp32
        k = z.shape[1]
        if k < self.num_tokens:
            if self.nested is not None:
                z = self.nested.pad(z)
            else:
                z = torch.cat([z, z.new_zeros(z.shape[0], self.num_tokens - k, z.shape[2])], dim=1)
        return self.decode_latents(z.to(self.decoder.proj_in.weight.dtype), image_size).clamp(-1, 1)

    def _nested_prefix(self, zq: Tensor, keep: Tensor | int | None, metrics: dict[str, Tensor]) -> Tensor:
        """Nested variants: ``zq`` with a random prefix per sample kept in train mode (or ``keep``
        tokens when given) and the tail masked; records ``keep_mean`` in ``metrics``."""
        if self.nested is not None and (self.training or keep is not None):
            nd = self.nested(zq, keep)
            metrics["keep_mean"] = nd.keep.float().mean().detach()
            return nd.tokens
        if keep is not None:
            raise ValueError(f"{type(self).__name__} without nested dropout does not take 'keep'")
        return zq

    def forward(self, x: Tensor, keep: Tensor | int | None = None) -> TokenizerOutput:
        """Training pass. Nested variants keep a random prefix per sample in train mode
        (or ``keep`` tokens when given) and mask the tail before decoding."""
        grid = self._grid(x)
        q = self.quantizer(self.encoder(x, grid))
        zq = q.quantized
        metrics = dict(q.metrics)
        zq = self._nested_prefix(zq, keep, metrics)
        recon = self.decoder(zq, grid)
        return TokenizerOutput(recon=recon, codes=q.codes, loss=q.loss, metrics=metrics)
