"""Nested-dropout training: after a short CPU run, more tokens reconstruct better."""

import pytest
import torch
import torch.nn.functional as F

import mmtok


def smooth_images(n: int, seed: int = 0) -> torch.Tensor:
    """(n, 3, 32, 32) colour fields interpolated from random 2x2 grids (12 numbers per image)."""
    g = torch.Generator().manual_seed(seed)
    grid = torch.rand(n, 3, 2, 2, generator=g) * 2 - 1
    return F.interpolate(grid, size=(32, 32), mode="bilinear", align_corners=True)


def synthetic_images(n: int) -> torch.Tensor:
    try:
        from mmtok.data import SyntheticImages
    except ImportError:  # pragma: no cover - data package not available
        return smooth_images(n)
    ds = SyntheticImages(num_items=n, resolution=32, seed=0)
    return torch.stack([ds[i]["x"] for i in range(n)])


def train_and_measure(data: torch.Tensor, steps: int, num_tokens: int = 8, batch: int = 32) -> dict[int, float]:
    torch.manual_seed(0)
    tok = mmtok.create_tokenizer("flextok_t32_fsq", patch_size=8, num_tokens=num_tokens)
    opt = torch.optim.AdamW(tok.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.0)
    g = torch.Generator().manual_seed(0)

    def errors() -> dict[int, float]:
        tok.eval()
        codes = tok.encode(data)
        with torch.no_grad():
            errs = {k: (tok.decode(codes[:, :k]) - data).pow(2).mean().item() for k in range(1, num_tokens + 1)}
        tok.train()
        return errs

    before = errors()
    tok.train()
    for _ in range(steps):
        x = data[torch.randint(0, len(data), (batch,), generator=g)]
        out = tok(x)  # nested dropout: a random prefix per sample
        loss = (out.recon - x).pow(2).mean() + out.loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = errors()
    after["before_full"] = before[num_tokens]
    return after


def test_prefix_quality_improves_with_k_smooth_images():
    errs = train_and_measure(smooth_images(64), steps=150)
    assert errs[8] < errs[1]
    assert errs[8] < 0.75 * errs["before_full"]  # it learned something


@pytest.mark.slow
def test_prefix_quality_improves_with_k_synthetic_images():
    errs = train_and_measure(synthetic_images(64), steps=300)
    assert errs[8] < 0.95 * errs[1]
    assert errs[4] < errs[1]
    assert errs[8] < errs["before_full"]
