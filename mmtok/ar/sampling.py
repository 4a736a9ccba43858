"""Batched autoregressive sampling from an :class:`~mmtok.ar.model.ARGenerator`.

    ids = sample(model, 16, 256, labels=torch.arange(16) % 10, cfg_scale=2.0, top_k=1000,
                 generator=torch.Generator().manual_seed(0))       # (16, 256) token ids

Each step draws exactly one uniform number per sequence from ``generator`` (``torch.rand``)
and picks the token by inverse-CDF over the filtered distribution, so the same seed gives the
same tokens with and without the KV cache (up to logits that differ by float rounding), and
greedy decoding (temperature 0) consumes the same random stream.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mmtok.ar.model import ARGenerator


def filter_logits(logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None, vocab_mask: Tensor | None = None) -> Tensor:
    """logits (B, V) -> float32 logits (B, V) with disallowed / filtered ids at -inf, divided by
    the temperature (> 0). ``vocab_mask`` (V,) bool: True = allowed. Top-k keeps the k largest;
    top-p keeps the smallest set of most likely ids whose probability reaches p (at least one)."""
    logits = logits.float()
    if vocab_mask is not None:
        logits = logits.masked_fill(~vocab_mask, float("-inf"))
    if temperature > 0:
        logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs  # mass of the more likely ids
        drop_sorted = before >= top_p
        drop_sorted[:, 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def draw(logits: Tensor, u: Tensor, greedy: bool = False) -> Tensor:
    """Pick one id per row of filtered logits (B, V) from uniforms u (B,) in [0, 1) by inverse
    CDF (ids of zero probability are never picked); greedy: the argmax. -> (B,) int64."""
    if greedy:
        return logits.argmax(-1)
    probs = logits.softmax(-1)
    cdf = probs.cumsum(-1)
    idx = torch.searchsorted(cdf, (u.to(cdf) * cdf[:, -1])[:, None], right=True).clamp_max(probs.shape[-1] - 1)
    ok = probs.gather(-1, idx) > 0
    return torch.where(ok, idx, probs.argmax(-1, keepdim=True)).squeeze(-1)


def _labels(model: ARGenerator, labels: int | Tensor | None, num: int, device: torch.device) -> Tensor | None:
    if labels is None:
        return None
    if model.config.num_classes == 0:
        raise ValueError("labels given, but the model is unconditional (num_classes=0)")
    if isinstance(labels, int):
        labels = torch.full((num,), labels, dtype=torch.long)
    if not isinstance(labels, Tensor) or labels.shape != (num,):
        raise ValueError(f"labels must be an int or a tensor of shape ({num},), got {getattr(labels, 'shape', labels)}")
    labels = labels.to(device=device, dtype=torch.long)
    if num and (int(labels.min()) < 0 or int(labels.max()) >= model.config.num_classes):
        raise ValueError(f"labels must lie in [0, {model.config.num_classes}), got [{int(labels.min())}, {int(labels.max())}]")
    return labels


@torch.no_grad()
def sample(model: ARGenerator, num: int, length: int, labels: int | Tensor | None = None,
           temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
           cfg_scale: float = 1.0, use_cache: bool = True, batch_size: int | None = None,
           generator: torch.Generator | None = None, vocab_mask: Tensor | None = None) -> Tensor:
    """Sample ``num`` sequences of ``length`` tokens -> ids (num, length) int64 on the model's device.

    labels: class per sequence (int or (num,)); None = unconditional (null class).
    temperature: 0 = greedy. top_k / top_p: filtering after the temperature.
    cfg_scale: classifier-free guidance, logits = uncond + s * (cond - uncond), both branches in
    one doubled batch; 1 = plain conditional sampling (no unconditional branch is run).
    use_cache: KV cache (one position per step) or a full forward of the prefix per step.
    batch_size: sequences per chunk (default all); random numbers are drawn chunk by chunk.
    vocab_mask: (vocab,) bool, True = may be generated (e.g. codes only, no BOS/EOS).
    The model is put in eval mode for the call and restored afterwards.
    """
    cfg = model.config
    if num < 0 or not 1 <= length <= cfg.max_len:
        raise ValueError(f"need num >= 0 and 1 <= length <= max_len ({cfg.max_len}), got num={num}, length={length}")
    if temperature < 0 or (top_k is not None and top_k < 1) or (top_p is not None and not 0 < top_p <= 1):
        raise ValueError(f"need temperature >= 0, top_k >= 1, 0 < top_p <= 1; got {temperature}, {top_k}, {top_p}")
    device = next(model.parameters()).device
    labels = _labels(model, labels, num, device)
    guided = cfg_scale != 1.0
    if guided and labels is None:
        raise ValueError("cfg_scale != 1 needs labels (classifier-free guidance of a conditional model)")
    if vocab_mask is not None:
        if vocab_mask.shape != (cfg.vocab_size,) or vocab_mask.dtype != torch.bool:
            raise ValueError(f"vocab_mask must be a bool tensor of shape ({cfg.vocab_size},), "
                             f"got {vocab_mask.dtype} {tuple(vocab_mask.shape)}")
        if not bool(vocab_mask.any()):
            raise ValueError("vocab_mask allows no token id")
        vocab_mask = vocab_mask.to(device)
    bs = batch_size or max(num, 1)
    was_training = model.training
    model.eval()
    try:
        out = []
        for s in range(0, num, bs):
            n = min(bs, num - s)
            lab = None if labels is None else labels[s:s + n]
            if guided:
                assert lab is not None
                lab = torch.cat([lab, torch.full_like(lab, model.null_class)])
            ids = torch.zeros(n, 0, dtype=torch.long, device=device)
            cache = model.new_cache() if use_cache else None
            for i in range(length):
                if cache is not None:
                    inp = ids[:, -1:] if i else ids
                    logits = model(torch.cat([inp, inp]) if guided else inp, lab, cache=cache)[:, -1]
                else:  # a dummy last token: position i only reads [cls, t0 .. t_{i-1}]
                    full = torch.cat([ids, ids.new_zeros(n, 1)], dim=1)
                    logits = model(torch.cat([full, full]) if guided else full, lab)[:, -1]
                logits = logits.float()
                if guided:
                    cond, uncond = logits.chunk(2)
                    logits = uncond + cfg_scale * (cond - uncond)
                logits = filter_logits(logits, temperature, top_k, top_p, vocab_mask)
                u = torch.rand(n, generator=generator, device=generator.device if generator else device)
                ids = torch.cat([ids, draw(logits, u.to(device), greedy=temperature == 0)[:, None]], dim=1)
            out.append(ids)
        return torch.cat(out) if out else torch.zeros(0, length, dtype=torch.long, device=device)
    finally:
        model.train(was_training)
