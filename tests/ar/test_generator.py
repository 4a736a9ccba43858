"""ARGenerator and sampling: shapes, KV cache, seeded sampling, CFG, label dropout, learning, errors."""

import math

import pytest
import torch
from torch import Tensor

from mmtok.ar import ARConfig, ARGenerator, ar_b, ar_s, ar_tiny, sample

V, K, C = 24, 16, 3


def _model(**kw) -> ARGenerator:
    torch.manual_seed(0)
    return ar_tiny(V, K, num_classes=C, **kw).eval()


def _gen(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_shapes_sizes_and_hidden_width():
    m = _model()
    ids, lab = torch.randint(0, V, (2, K)), torch.tensor([0, 2])
    assert m(ids, lab).shape == (2, K, V)
    assert m(ids[:, :5]).shape == (2, 5, V)  # unconditional (null class)
    assert m.loss(ids, lab).ndim == 0
    assert abs(m.loss(ids, lab).item() - math.log(V)) < 0.3
    assert ARConfig(V, K, dim=512).hidden_dim == 1408 and ARConfig(V, K, dim=768).hidden_dim == 2048
    assert ARConfig(V, K, dim=128, mlp_ratio=2.0).hidden_dim == 256
    s, b = ar_s(16384, 256, num_classes=1000), ar_b(16384, 256, num_classes=1000)
    assert (s.config.dim, s.config.depth, s.config.heads) == (512, 8, 8)
    assert 105e6 < b.num_params() < 115e6  # LlamaGen-B: 111M
    tied = ar_tiny(V, K, tie_embeddings=True, norm="layer", zero_init=True)
    assert tied.head.weight is tied.tok_emb.weight
    assert tied.num_params() == ar_tiny(V, K, norm="layer").num_params() - V * 128


def test_causal_position_i_reads_only_cls_and_earlier_tokens():
    m = _model()
    ids, lab = torch.randint(0, V, (2, K)), torch.tensor([1, 1])
    later = ids.clone()
    later[:, 8:] = (later[:, 8:] + 1) % V
    out, out2 = m(ids, lab), m(later, lab)
    torch.testing.assert_close(out[:, :9], out2[:, :9])  # logits 8 predict token 8 from t0..t7
    assert not torch.allclose(out[:, 9:], out2[:, 9:])
    assert not torch.allclose(out[:, 0], m(ids, torch.tensor([2, 2]))[:, 0])  # the class matters


def test_kv_cache_logits_equal_full_sequence():
    m = _model()
    ids, lab = torch.randint(0, V, (3, K)), torch.tensor([0, 1, 2])
    full = m(ids, lab)
    cache = m.new_cache()
    parts = [m(ids[:, :0], lab, cache=cache)]  # the class token alone: logits of token 0
    parts += [m(ids[:, i:i + 1], cache=cache) for i in range(K - 1)]
    assert cache.length == K
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=0)
    cache.reset()  # chunks of several positions (masked attention over the cache)
    chunked = torch.cat([m(ids[:, :4], lab, cache=cache), m(ids[:, 4:K - 1], cache=cache)], 1)
    torch.testing.assert_close(chunked, full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kw", [{}, {"top_k": 5}, {"top_p": 0.7}, {"temperature": 0.0}, {"cfg_scale": 2.5}])
def test_same_seed_same_tokens_with_and_without_cache(kw):
    m = _model()
    a = sample(m, 4, K, labels=torch.tensor([0, 1, 2, 0]), generator=_gen(), **kw)
    b = sample(m, 4, K, labels=torch.tensor([0, 1, 2, 0]), generator=_gen(), use_cache=False, **kw)
    assert a.shape == (4, K) and a.dtype == torch.long
    assert torch.equal(a, b)
    assert torch.equal(a, sample(m, 4, K, labels=torch.tensor([0, 1, 2, 0]), generator=_gen(), **kw))
    if not kw:
        assert not torch.equal(a, sample(m, 4, K, labels=torch.tensor([0, 1, 2, 0]), generator=_gen(2)))


def test_top_k_one_is_greedy_and_cfg_scale_one_is_conditional():
    m = _model()
    greedy = sample(m, 2, 8, labels=1, temperature=0.0, generator=_gen())
    assert torch.equal(sample(m, 2, 8, labels=1, top_k=1, generator=_gen(5)), greedy)
    cond = sample(m, 3, 8, labels=2, generator=_gen())
    assert torch.equal(sample(m, 3, 8, labels=2, cfg_scale=1.0, generator=_gen()), cond)
    # a guided sampler with a scale close to 1 differs from it only by rounding
    assert torch.equal(sample(m, 3, 8, labels=2, cfg_scale=1.0 + 1e-6, generator=_gen()), cond)
    assert torch.equal(sample(m, 3, 8, labels=2, batch_size=3, generator=_gen()), cond)


def test_label_dropout_only_in_training():
    m = _model(class_dropout=0.25)
    labels = torch.zeros(20000, dtype=torch.long)
    assert (m.class_ids(labels, 20000, labels.device) == m.null_class).sum() == 0
    m.train()
    frac = (m.class_ids(labels, 20000, labels.device) == m.null_class).float().mean().item()
    assert abs(frac - 0.25) < 0.02
    assert (m.class_ids(None, 4, labels.device) == m.null_class).all()


class _ForbiddenLover(ARGenerator):
    """Logits that strongly favour ids 0 and 1 (think BOS / EOS)."""

    def forward(self, ids: Tensor, labels: Tensor | None = None, cache=None) -> Tensor:
        out = super().forward(ids, labels, cache).clone()
        out[..., :2] += 30.0
        return out


def test_generated_codes_stay_in_the_allowed_vocabulary():
    torch.manual_seed(0)
    m = _ForbiddenLover(ARConfig(V, K, dim=32, depth=1, heads=2, num_classes=C)).eval()
    mask = torch.ones(V, dtype=torch.bool)
    mask[:2] = False
    assert (sample(m, 8, K, labels=0, generator=_gen()) < 2).float().mean() > 0.9  # without the mask
    for kw in [{}, {"temperature": 0.0}, {"top_k": 3}, {"top_p": 0.5}, {"cfg_scale": 4.0}, {"temperature": 5.0}]:
        ids = sample(m, 8, K, labels=1, generator=_gen(), vocab_mask=mask, **kw)
        assert ids.min() >= 2 and ids.max() < V, kw


def test_learns_class_conditional_markov_chains():
    """Each class follows its own Markov chain (next = perm_c[prev] w.p. 0.9); the loss must fall
    well below the unigram entropy of the tokens."""
    g = torch.Generator().manual_seed(0)
    v, k, c, n = 16, 24, 4, 512
    perms = torch.stack([torch.randperm(v, generator=g) for _ in range(c)])
    labels = torch.randint(0, c, (n,), generator=g)
    ids = torch.empty(n, k, dtype=torch.long)
    ids[:, 0] = labels * 4  # class-dependent first token
    for t in range(1, k):
        nxt = perms[labels, ids[:, t - 1]]
        noise = torch.rand(n, generator=g) < 0.1
        ids[:, t] = torch.where(noise, torch.randint(0, v, (n,), generator=g), nxt)
    p = torch.bincount(ids.flatten(), minlength=v).float() / ids.numel()
    unigram = -(p[p > 0] * p[p > 0].log()).sum().item()
    torch.manual_seed(0)
    m = ar_tiny(v, k, num_classes=c, class_dropout=0.1).train()
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3, weight_decay=0.0)
    for step in range(150):
        idx = torch.randint(0, n, (32,), generator=g)
        loss = m.loss(ids[idx], labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    final = m.loss(ids[:128], labels[:128]).item()
    assert final < 0.7 * unigram, (final, unigram)
    out = sample(m, 16, k, labels=torch.arange(16) % c, temperature=0.0)
    follows = (perms[(torch.arange(16) % c)[:, None], out[:, :-1]] == out[:, 1:]).float().mean()
    assert follows > 0.9 and out.max() < v


def test_bad_inputs_raise_clear_errors():
    m = _model()
    ids = torch.randint(0, V, (2, K))
    with pytest.raises(ValueError, match="token ids must lie"):
        m(ids + V)
    with pytest.raises(ValueError, match="max_len"):
        m(torch.zeros(2, K + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="integer tensor"):
        m(ids.float())
    with pytest.raises(ValueError, match="labels must lie"):
        m(ids, torch.tensor([0, C + 1]))
    with pytest.raises(ValueError, match="shape"):
        m(ids, torch.tensor([0]))
    with pytest.raises(ValueError, match="unconditional"):
        ar_tiny(V, K)(ids, torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="unconditional"):
        sample(ar_tiny(V, K), 2, 4, labels=0)
    with pytest.raises(ValueError, match="cfg_scale"):
        sample(m, 2, 4, cfg_scale=2.0)
    with pytest.raises(ValueError, match="labels must lie"):
        sample(m, 2, 4, labels=C)  # the null class is not a sampling label
    with pytest.raises(ValueError, match="max_len"):
        sample(m, 2, K + 1)
    with pytest.raises(ValueError, match="vocab_mask"):
        sample(m, 2, 4, vocab_mask=torch.zeros(V, dtype=torch.bool))
    with pytest.raises(ValueError, match="vocab_mask"):
        sample(m, 2, 4, vocab_mask=torch.ones(V + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="top_p"):
        sample(m, 2, 4, top_p=0.0)
    with pytest.raises(ValueError, match="exceed max_len"):
        m(ids, None, cache=m.new_cache())  # cls + 16 inputs = 17 positions > max_len
    cache = m.new_cache()
    m(ids[:, :3], torch.tensor([0, 1]), cache=cache)
    with pytest.raises(ValueError, match="batch"):
        m(ids[:1, 3:4], cache=cache)
    with pytest.raises(ValueError, match="divisible"):
        ARConfig(V, K, dim=30, heads=4)
    with pytest.raises(ValueError, match="norm"):
        ARConfig(V, K, norm="batch")  # type: ignore[arg-type]
