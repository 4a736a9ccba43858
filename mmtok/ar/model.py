"""A Llama-style class-conditional AR generator over mmtok token ids (LlamaGen-like).

    cfg = ARConfig(vocab_size=4096, max_len=256, num_classes=1000)
    model = ARGenerator(cfg)                       # or ar_tiny / ar_s / ar_b(vocab, max_len, ...)
    loss = model.loss(ids, labels)                 # ids (B, K) codes, labels (B,)
    ids = mmtok.ar.sample(model, 8, 256, labels=3, cfg_scale=2.0, top_k=1000)

Decoder-only transformer: RoPE, scaled-dot-product attention, RMSNorm (or LayerNorm), SwiGLU.
Position 0 holds a class token (an embedding of ``num_classes + 1`` entries; the last one,
``null_class``, is the unconditional / dropped label, and the start token of an unconditional
model), so the K tokens of a sequence are predicted from ``[cls, t0 .. t_{K-2}]``: the logits at
position i predict token i. Label dropout (``class_dropout``) in training makes the same model
the unconditional branch of classifier-free guidance.

The KV cache (:class:`KVCache`) is preallocated to ``max_len`` positions; with a cache,
``forward`` consumes *input* tokens after the cached positions (the class token is put first
by the call that finds the cache empty) and RoPE positions continue from the cache length.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class ARConfig:
    """Hyper-parameters of :class:`ARGenerator`.

    vocab_size: number of token ids the model reads and predicts.
    max_len: longest token sequence K (also the KV-cache length: K positions, cls included).
    dim / depth / heads: width, blocks, attention heads (``dim % heads == 0``, even head dim).
    mlp_ratio: SwiGLU hidden width / dim; None = ``int(2/3 * 4 * dim)`` rounded up to 64.
    norm: "rms" (RMSNorm) or "layer" (LayerNorm).
    num_classes: class labels for conditioning; 0 = unconditional.
    class_dropout: probability that a training label becomes the null class (for CFG).
    dropout: attention and residual dropout in training.
    rope_base: RoPE frequency base.
    tie_embeddings: share the token embedding with the output head.
    zero_init: zero-initialise the attention / MLP output projections (blocks start as identity).
    """

    vocab_size: int
    max_len: int
    dim: int = 512
    depth: int = 8
    heads: int = 8
    mlp_ratio: float | None = None
    norm: Literal["rms", "layer"] = "rms"
    num_classes: int = 0
    class_dropout: float = 0.1
    dropout: float = 0.0
    rope_base: float = 10000.0
    tie_embeddings: bool = False
    zero_init: bool = False

    def __post_init__(self) -> None:
        if self.vocab_size < 1 or self.max_len < 1:
            raise ValueError(f"vocab_size and max_len must be >= 1, got {self.vocab_size}, {self.max_len}")
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise ValueError(f"dim ({self.dim}) must be divisible by heads ({self.heads}) with an even head dim")
        if self.norm not in ("rms", "layer"):
            raise ValueError(f"norm must be 'rms' or 'layer', got {self.norm!r}")
        if self.num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {self.num_classes}")
        if not 0.0 <= self.class_dropout < 1.0 or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"class_dropout / dropout must lie in [0, 1), got {self.class_dropout}, {self.dropout}")

    @property
    def hidden_dim(self) -> int:
        """SwiGLU hidden width."""
        if self.mlp_ratio is not None:
            return int(self.mlp_ratio * self.dim)
        return 64 * math.ceil(int(2 / 3 * 4 * self.dim) / 64)


class KVCache:
    """Per-layer keys / values, each (B, heads, max_len, head_dim), allocated on first write.

    ``length`` is the number of positions already stored (the class token included).
    ``ARGenerator.forward(..., cache=cache)`` writes every layer, then advances ``length``.
    """

    def __init__(self, depth: int, max_len: int) -> None:
        self.depth, self.max_len, self.length = depth, max_len, 0
        self.k: list[Tensor | None] = [None] * depth
        self.v: list[Tensor | None] = [None] * depth

    def reset(self) -> None:
        """Forget the stored positions (buffers are kept and overwritten)."""
        self.length = 0

    @property
    def batch_size(self) -> int | None:
        return None if self.k[0] is None else int(self.k[0].shape[0])

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write k, v (B, H, n, Dh) at positions [length, length + n) of ``layer``;
        returns the keys / values of positions [0, length + n)."""
        start, end = self.length, self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions; cannot append {k.shape[2]} after {start}")
        buf_k = self.k[layer]
        if buf_k is None or buf_k.shape[:2] != k.shape[:2] or buf_k.dtype != k.dtype or buf_k.device != k.device:
            if start:
                raise ValueError(f"cache was filled with batch {None if buf_k is None else tuple(buf_k.shape[:2])}, "
                                 f"got keys {tuple(k.shape)}")
            shape = (k.shape[0], k.shape[1], self.max_len, k.shape[3])
            self.k[layer] = k.new_empty(shape)
            self.v[layer] = v.new_empty(shape)
        ck, cv = self.k[layer], self.v[layer]
        assert ck is not None and cv is not None
        ck[:, :, start:end] = k
        cv[:, :, start:end] = v
        return ck[:, :, :end], cv[:, :, :end]


class RoPE(nn.Module):
    """Rotary position embedding (rotate-half form) with cos / sin tables for max_len positions."""

    def __init__(self, head_dim: int, max_len: int, base: float = 10000.0) -> None:
        super().__init__()
        inv = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
        ang = torch.arange(max_len, dtype=torch.float64)[:, None] * inv[None]  # (L, Dh/2)
        ang = torch.cat([ang, ang], dim=-1)
        self.register_buffer("cos", ang.cos().float(), persistent=False)
        self.register_buffer("sin", ang.sin().float(), persistent=False)

    def forward(self, x: Tensor, start: int) -> Tensor:
        """x (B, H, n, Dh) at positions [start, start + n) -> rotated x (same shape / dtype)."""
        n = x.shape[2]
        cos, sin = self.cos[start:start + n].to(x.dtype), self.sin[start:start + n].to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat([-x2, x1], dim=-1) * sin


def _norm(kind: str, dim: int) -> nn.Module:
    return nn.RMSNorm(dim, eps=1e-6) if kind == "rms" else nn.LayerNorm(dim, eps=1e-6)


class Attention(nn.Module):
    """Causal multi-head self-attention with RoPE and an optional KV cache."""

    def __init__(self, cfg: ARConfig, rope: RoPE, layer: int) -> None:
        super().__init__()
        self.heads, self.layer, self.dropout = cfg.heads, layer, cfg.dropout
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=False)
        self.proj = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.rope = rope

    def forward(self, x: Tensor, start: int, cache: KVCache | None) -> Tensor:
        """x (B, n, dim) at positions [start, start + n) -> (B, n, dim)."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k = self.rope(q, start), self.rope(k, start)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)
        drop = self.dropout if self.training else 0.0
        if start == 0:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True)
        elif n == 1:  # one new query sees every cached key
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        else:  # queries at start..start+n-1 over keys 0..start+n-1
            mask = torch.ones(n, start + n, dtype=torch.bool, device=x.device).tril(diagonal=start)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class SwiGLU(nn.Module):
    """w2(silu(w1 x) * w3 x)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: ARConfig, rope: RoPE, layer: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = _norm(cfg.norm, cfg.dim), _norm(cfg.norm, cfg.dim)
        self.attn = Attention(cfg, rope, layer)
        self.mlp = SwiGLU(cfg.dim, cfg.hidden_dim)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, start: int, cache: KVCache | None) -> Tensor:
        x = x + self.drop(self.attn(self.norm1(x), start, cache))
        return x + self.drop(self.mlp(self.norm2(x)))


class ARGenerator(nn.Module):
    """Class-conditional decoder-only transformer over token ids (see the module docstring)."""

    def __init__(self, cfg: ARConfig) -> None:
        super().__init__()
        self.config = cfg
        self.null_class = cfg.num_classes  # index of the unconditional class embedding
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.cls_emb = nn.Embedding(cfg.num_classes + 1, cfg.dim)
        rope = RoPE(cfg.dim // cfg.heads, cfg.max_len, cfg.rope_base)
        self.blocks = nn.ModuleList(Block(cfg, rope, i) for i in range(cfg.depth))
        self.rope = rope
        self.norm = _norm(cfg.norm, cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.apply(self._init)
        if cfg.zero_init:
            for blk in self.blocks:
                nn.init.zeros_(blk.attn.proj.weight)
                nn.init.zeros_(blk.mlp.w2.weight)
        if cfg.tie_embeddings:
            self.head.weight = self.tok_emb.weight

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    def num_params(self, embeddings: bool = True) -> int:
        """Parameters (each shared tensor once); without the token / class embeddings if asked."""
        n = sum(p.numel() for p in self.parameters())
        if not embeddings:
            n -= self.cls_emb.weight.numel()
            if not self.config.tie_embeddings:
                n -= self.tok_emb.weight.numel()
        return n

    def new_cache(self) -> KVCache:
        """An empty KV cache for ``max_len`` positions (buffers are allocated by the first forward)."""
        return KVCache(self.config.depth, self.config.max_len)

    def class_ids(self, labels: Tensor | None, batch: int, device: torch.device) -> Tensor:
        """Class-embedding indices (batch,) int64: labels, the null class where labels is None or
        the model is unconditional, and -- in training -- labels dropped to null with prob
        ``class_dropout``. Labels may already be ``null_class`` (the unconditional branch)."""
        nc = self.config.num_classes
        if labels is None:
            return torch.full((batch,), self.null_class, dtype=torch.long, device=device)
        if nc == 0:
            raise ValueError("labels given, but the model is unconditional (num_classes=0)")
        if not isinstance(labels, Tensor) or labels.shape != (batch,) or labels.dtype.is_floating_point:
            raise ValueError(f"labels must be an integer tensor of shape ({batch},), got "
                             f"{type(labels).__name__} {tuple(getattr(labels, 'shape', ()))}")
        labels = labels.to(device=device, dtype=torch.long)
        if batch and not torch.compiler.is_compiling() and (int(labels.min()) < 0 or int(labels.max()) > nc):
            raise ValueError(f"labels must lie in [0, {nc}) (or {nc} = null class), "
                             f"got [{int(labels.min())}, {int(labels.max())}]")
        if self.training and self.config.class_dropout > 0:
            drop = torch.rand(batch, device=device) < self.config.class_dropout
            labels = labels.masked_fill(drop, self.null_class)
        return labels

    def _check_ids(self, ids: Tensor) -> None:
        if not isinstance(ids, Tensor) or ids.ndim != 2 or ids.dtype.is_floating_point or ids.dtype == torch.bool:
            raise ValueError(f"ids must be an integer tensor (B, L), got {type(ids).__name__} "
                             f"{tuple(getattr(ids, 'shape', ()))} {getattr(ids, 'dtype', '')}")
        if torch.compiler.is_compiling():  # data-dependent checks would break the graph
            return
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.config.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.config.vocab_size}), "
                             f"got [{int(ids.min())}, {int(ids.max())}]")

    def forward(self, ids: Tensor, labels: Tensor | None = None, cache: KVCache | None = None) -> Tensor:
        """Logits over the vocabulary.

        Without a cache (teacher forcing): ids (B, L) tokens t0..t_{L-1}, L <= max_len; the
        input is [cls, t0 .. t_{L-2}] and the output (B, L, vocab) logits, position i predicting
        token i (ids[:, -1] is not read).
        With a cache: ids (B, n) are the *inputs* at the positions after the cached ones; an
        empty cache puts the class token first (so n = 0 is allowed), giving (B, 1 + n, vocab);
        otherwise (B, n, vocab). The logits at absolute position p predict token p. ``labels``
        only matters on the call that writes position 0.
        """
        self._check_ids(ids)
        b, n = ids.shape
        if cache is None:
            if not 1 <= n <= self.config.max_len:
                raise ValueError(f"sequence length must lie in [1, {self.config.max_len}] (max_len), got {n}")
            start = 0
            x = torch.cat([self.cls_emb(self.class_ids(labels, b, ids.device))[:, None],
                           self.tok_emb(ids[:, :-1])], dim=1)
        else:
            start = cache.length
            x = self.tok_emb(ids)
            if start == 0:
                x = torch.cat([self.cls_emb(self.class_ids(labels, b, ids.device))[:, None], x], dim=1)
            elif n == 0:
                raise ValueError("no new tokens to append to a non-empty cache")
            if cache.batch_size not in (None, b):
                raise ValueError(f"cache holds batch {cache.batch_size}, got ids of batch {b}")
            if start + x.shape[1] > self.config.max_len:
                raise ValueError(f"{start} cached + {x.shape[1]} new positions exceed max_len {self.config.max_len}")
        for blk in self.blocks:
            x = blk(x, start, cache)
        if cache is not None:
            cache.length = start + x.shape[1]
        return self.head(self.norm(x))

    def loss(self, ids: Tensor, labels: Tensor | None = None, ignore_index: int = -100) -> Tensor:
        """Mean next-token cross-entropy over all K tokens of ids (B, K) (label dropout in training)."""
        logits = self(ids, labels)
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), ids.reshape(-1), ignore_index=ignore_index)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self.config).items())


def _build(vocab_size: int, max_len: int, dim: int, depth: int, heads: int, **kw: Any) -> ARGenerator:
    return ARGenerator(ARConfig(vocab_size=vocab_size, max_len=max_len, dim=dim, depth=depth, heads=heads, **kw))


def ar_tiny(vocab_size: int, max_len: int, **kw: Any) -> ARGenerator:
    """dim 128, depth 2, heads 4 (tests, smoke runs)."""
    return _build(vocab_size, max_len, 128, 2, 4, **kw)


def ar_s(vocab_size: int, max_len: int, **kw: Any) -> ARGenerator:
    """dim 512, depth 8, heads 8."""
    return _build(vocab_size, max_len, 512, 8, 8, **kw)


def ar_b(vocab_size: int, max_len: int, **kw: Any) -> ARGenerator:
    """dim 768, depth 12, heads 12 (LlamaGen-B-like)."""
    return _build(vocab_size, max_len, 768, 12, 12, **kw)


AR_SIZES = {"tiny": ar_tiny, "s": ar_s, "b": ar_b}
