"""Pre-norm transformer block with PyTorch SDPA attention and timm's ``Mlp``.

timm's ``Block`` has no attention-mask argument, which the 1D tokenizers need (causal
attention over latent tokens), hence this small block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from torch import Tensor, nn


class Attention(nn.Module):
    """Multi-head self-attention via ``F.scaled_dot_product_attention``.

    Args:
        dim: token width.
        num_heads: heads (``dim`` must be divisible by it).
        qkv_bias: bias on the fused qkv projection.
        qk_norm: LayerNorm on queries and keys per head (stabilises bf16 training).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, qk_norm: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """x: (B, N, C); attn_mask: None or bool (N, N) / (B, 1, N, N), True = may attend."""
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, head_dim)
        q, k = self.q_norm(q), self.k_norm(k)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """``x + attn(norm(x))`` then ``x + mlp(norm(x))``."""

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True, qk_norm: bool = False
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, qk_norm=qk_norm)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        x = x + self.attn(self.norm1(x), attn_mask)
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    """A stack of ``depth`` blocks followed by a final LayerNorm; (B, N, C) -> (B, N, C)."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_norm: bool = False,
        grad_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, qk_norm=qk_norm) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.grad_checkpointing = grad_checkpointing

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        for blk in self.blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(blk, x, attn_mask, use_reentrant=False)
            else:
                x = blk(x, attn_mask)
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
