"""The reference AR generator: causal, starts at chance level, learns, generates."""

import math

import pytest
import torch

from mmtok.ar import TinyGPT


def test_logits_are_causal_and_loss_starts_at_chance():
    torch.manual_seed(0)
    model = TinyGPT(vocab_size=50, max_len=12, dim=32, depth=2, heads=4).eval()
    ids = torch.randint(0, 50, (2, 12))
    later = ids.clone()
    later[:, 8:] = torch.randint(0, 50, (2, 4))
    torch.testing.assert_close(model(ids)[:, :8], model(later)[:, :8])
    assert not torch.allclose(model(ids)[:, 8:], model(later)[:, 8:])
    assert abs(model.loss(ids).item() - math.log(50)) < 0.3


def test_learns_a_repeating_sequence_and_generates_it():
    torch.manual_seed(0)
    model = TinyGPT(vocab_size=8, max_len=16, dim=32, depth=1, heads=2)
    ids = (torch.arange(16)[None] + torch.arange(8)[:, None]).remainder(8)  # k k+1 ... 7 0 1 ... (mod 8)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss = model.loss(ids)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1
    model.eval()
    out = model.generate(torch.tensor([[3]]), 6)
    assert out.tolist() == [[3, 4, 5, 6, 7, 0, 1]]
    sampled = model.generate(torch.tensor([[3]]), 20, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert sampled.shape == (1, 21)  # longer than max_len: the window slides


def test_bad_arguments():
    with pytest.raises(ValueError, match="divisible"):
        TinyGPT(10, 8, dim=30, heads=4)
    model = TinyGPT(10, 8, dim=16, depth=1, heads=2)
    with pytest.raises(ValueError, match="token ids must lie"):
        model(torch.tensor([[10]]))
    with pytest.raises(ValueError, match="L <= 8"):
        model(torch.zeros(1, 9, dtype=torch.long))
