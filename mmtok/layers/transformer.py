"""A stack of timm's pre-norm ViT ``Block`` with an attention mask, and the masks the 1D
tokenizers use.

timm's ``Block.forward(x, attn_mask=None, is_causal=False)`` hands the mask to
``F.scaled_dot_product_attention`` (its non-fused path builds the same additive bias), so
a bool mask means True = may attend, as in SDPA.
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block
from torch import Tensor, nn


class Transformer(nn.Module):
    """``depth`` timm ``Block``s followed by a final LayerNorm; (B, N, C) -> (B, N, C).

    Args:
        dim: token width.
        depth: number of blocks.
        num_heads: attention heads (``dim`` must be divisible by it).
        mlp_ratio: MLP hidden width / ``dim``.
        qkv_bias: bias on the fused qkv projection.
        qk_norm: LayerNorm on queries and keys per head (stabilises bf16 training).
        attn_drop: dropout on the attention weights (training only).
        grad_checkpointing: recompute each block in the backward pass to save memory.

    State-dict keys: ``blocks.{i}.norm1``, ``blocks.{i}.attn.{qkv,q_norm,k_norm,proj}``,
    ``blocks.{i}.norm2``, ``blocks.{i}.mlp.{fc1,fc2}``, ``norm``.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_norm: bool = False,
        attn_drop: float = 0.0,
        grad_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by num_heads={num_heads}")
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, qk_norm=qk_norm, attn_drop=attn_drop,
                  norm_layer=nn.LayerNorm)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.grad_checkpointing = grad_checkpointing

    def forward(self, x: Tensor, attn_mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
        """x: (B, N, C); attn_mask: None or bool (N, N) / (B, 1, N, N), True = may attend;
        ``is_causal``: plain causal attention (token i sees 0..i), without a mask."""
        for blk in self.blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(blk, x, attn_mask, is_causal, use_reentrant=False)
            else:
                x = blk(x, attn_mask, is_causal)
        return self.norm(x)


def prefix_causal_mask(num_prefix: int, num_causal: int, prefix_sees_causal: bool = False, device=None) -> Tensor:
    """Bool (N, N) mask, True = may attend, for a sequence ``[prefix (P), causal (L)]``.

    Prefix tokens (image patches) attend among themselves (and to the causal tokens when
    ``prefix_sees_causal``); causal token i attends to every prefix token and causal tokens
    0..i. This is FlexTok's register mask: token i only carries what tokens < i missed.
    """
    n = num_prefix + num_causal
    mask = torch.zeros(n, n, dtype=torch.bool, device=device)
    mask[:num_prefix, :num_prefix] = True
    if prefix_sees_causal:
        mask[:num_prefix, num_prefix:] = True
    mask[num_prefix:, :num_prefix] = True
    mask[num_prefix:, num_prefix:] = torch.ones(num_causal, num_causal, dtype=torch.bool, device=device).tril()
    return mask
