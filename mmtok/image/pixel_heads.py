"""Pixel heads of the 1D decoder that go through a 2D VQGAN decoder.

TiTok's two-stage recipe (and its released ``titok_*`` checkpoints) does not project the
decoder ViT's patch tokens to pixels: it predicts, per patch, logits over the codebook of a
frozen MaskGIT VQGAN, embeds the softmax of those logits in that codebook and decodes the
resulting latent map with the VQGAN's conv decoder. :class:`CodebookPixelHead` is that head
built from mmtok parts (``ConvDecoder2d`` without attention, ``level_blocks`` res blocks per
level); its default sizes are the MaskGIT VQGAN's (1024 codes x 256-d, f16, width 128).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from mmtok.layers.conv import ConvDecoder2d

# The MaskGIT VQGAN (f16, 256px) that TiTok's released tokenizers decode through.
MASKGIT_VQGAN: dict[str, Any] = {
    "codebook_size": 1024,
    "z_channels": 256,
    "base_channels": 128,
    "channel_mult": [1, 1, 2, 2, 4],
    "num_res_blocks": 2,
    "soft": True,  # softmax-weighted codebook embedding (TiTok stage 2); False: the argmax code (stage 1 eval)
}


def pixel_decoder_spec(spec: Mapping[str, Any] | None) -> dict[str, Any]:
    """``spec`` completed with the MaskGIT VQGAN defaults; unknown keys raise a ``ValueError``."""
    spec = dict(spec or {})
    unknown = sorted(set(spec) - set(MASKGIT_VQGAN))
    if unknown:
        raise ValueError(f"unknown pixel_decoder option(s) {unknown}; valid: {sorted(MASKGIT_VQGAN)}")
    out = {**MASKGIT_VQGAN, **spec}
    out["channel_mult"] = [int(m) for m in out["channel_mult"]]
    return out


class CodebookPixelHead(nn.Module):
    """(B, gh*gw, width) patch tokens -> logits over a VQGAN codebook -> soft codebook
    embedding (B, z_channels, gh, gw) -> conv decoder -> (B, out_channels, gh*f, gw*f).

    ``soft=False`` embeds the argmax code instead (how TiTok's stage-1 models are evaluated
    through the separate MaskGIT VQGAN); it passes no gradient to the logits.

    ``f = 2 ** (len(channel_mult) - 1)`` must equal the ViT's patch size.
    """

    def __init__(self, *, width: int, out_channels: int, codebook_size: int, z_channels: int, base_channels: int,
                 channel_mult: list[int] | tuple[int, ...], num_res_blocks: int, soft: bool = True) -> None:
        super().__init__()
        self.soft = soft
        self.factor = 2 ** (len(channel_mult) - 1)
        # two 1x1 convs with tanh between them in TiTok: per-token linears here
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.Tanh(), nn.Linear(2 * width, codebook_size))
        self.codebook = nn.Parameter(torch.randn(codebook_size, z_channels) * z_channels**-0.5)
        self.decoder = ConvDecoder2d(
            out_channels=out_channels, base_channels=base_channels, channel_mult=tuple(channel_mult),
            num_res_blocks=num_res_blocks, z_channels=z_channels, mid_attention=False, level_blocks=num_res_blocks,
        )

    @property
    def weight(self) -> Tensor:
        """The final conv's weight (the decoder's last layer, for the adaptive GAN weight)."""
        return self.decoder.conv_out.weight

    def logits(self, h: Tensor) -> Tensor:
        """h: (B, N, width) -> (B, N, codebook_size) logits over the VQGAN codes."""
        return self.mlp(h)

    def forward(self, h: Tensor, grid: tuple[int, int]) -> Tensor:
        """h: (B, gh*gw, width) -> (B, out_channels, gh*f, gw*f)."""
        logits = rearrange(self.logits(h).float(), "b (gh gw) c -> b c gh gw", gh=grid[0], gw=grid[1])
        if self.soft:  # channels-first, as TiTok computes it (bitwise the same soft embedding)
            z = torch.einsum("bchw,cd->bdhw", logits.softmax(1), self.codebook.float())
        else:  # hard codes: no gradient reaches the ViT through this path
            z = self.codebook.float()[logits.argmax(1)].permute(0, 3, 1, 2)
        return self.decoder(z.to(h.dtype))  # z: (B, z_channels, gh, gw)
