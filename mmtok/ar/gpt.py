"""A tiny decoder-only transformer (GPT) to check that token shards train a generator end to end.

    model = TinyGPT(vocab_size=ds.vocab_size, max_len=ds.seq_len)
    loss = model.loss(batch["input_ids"])          # next-token cross-entropy
    ids = model.generate(prompt, 32)               # greedy / sampled continuation

Built on the shared ``mmtok.layers.Transformer`` with causal attention. It is a reference
for examples and tests, not a tuned generator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmtok.layers.transformer import Transformer


class TinyGPT(nn.Module):
    """Causal transformer LM over a (shared) token vocabulary.

    Args:
        vocab_size: number of token ids (``TokenDataset.vocab_size``).
        max_len: longest sequence (``seq_len`` of packed data, or the item length).
        dim / depth / heads: width, number of blocks, attention heads.
        mlp_ratio: MLP hidden width / ``dim``.
        dropout: attention dropout in training.
    """

    def __init__(self, vocab_size: int, max_len: int, dim: int = 128, depth: int = 2, heads: int = 4,
                 mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.vocab_size, self.max_len = vocab_size, max_len
        self.tok_emb = nn.Embedding(vocab_size, dim)
        self.pos_emb = nn.Parameter(torch.zeros(1, max_len, dim))
        nn.init.normal_(self.pos_emb, std=0.02)
        self.transformer = Transformer(dim, depth, heads, mlp_ratio=mlp_ratio, attn_drop=dropout)
        self.head = nn.Linear(dim, vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight  # tied embeddings
        nn.init.normal_(self.tok_emb.weight, std=0.02)  # small logits at init: loss starts near ln(vocab)

    def forward(self, ids: Tensor) -> Tensor:
        """ids: (B, L) int64 with L <= max_len -> logits (B, L, vocab_size)."""
        if ids.ndim != 2 or ids.shape[1] > self.max_len:
            raise ValueError(f"ids must be (B, L) with L <= {self.max_len}, got {tuple(ids.shape)}")
        if int(ids.max()) >= self.vocab_size or int(ids.min()) < 0:
            raise ValueError(f"token ids must lie in [0, {self.vocab_size}), got [{int(ids.min())}, {int(ids.max())}]")
        x = self.tok_emb(ids) + self.pos_emb[:, : ids.shape[1]]
        return self.head(self.transformer(x, is_causal=True))

    def loss(self, ids: Tensor, ignore_index: int = -100) -> Tensor:
        """Mean next-token cross-entropy of ids (B, L): predicts ids[:, 1:] from ids[:, :-1]."""
        logits = self(ids[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), ignore_index=ignore_index)

    @torch.no_grad()
    def generate(self, prompt: Tensor, num_new: int, temperature: float = 0.0,
                 generator: torch.Generator | None = None) -> Tensor:
        """Continue prompt (B, L0) by ``num_new`` tokens (greedy when temperature == 0)."""
        ids = prompt
        for _ in range(num_new):
            logits = self(ids[:, -self.max_len:])[:, -1]
            if temperature > 0:
                nxt = torch.multinomial(F.softmax(logits / temperature, -1), 1, generator=generator)
            else:
                nxt = logits.argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], dim=1)
        return ids
