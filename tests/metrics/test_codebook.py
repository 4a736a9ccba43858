import math

import pytest
import torch

from mmtok.metrics.codebook import CodebookHistogram


def test_uniform_codes_have_full_usage_and_max_entropy():
    h = CodebookHistogram(16)
    for _ in range(3):
        h.update(torch.arange(16).repeat(4).reshape(8, 8))
    s = h.compute()
    assert s["usage"] == 1.0 and s["used_codes"] == 16
    assert s["entropy_bits"] == pytest.approx(4.0)
    assert s["perplexity"] == pytest.approx(16.0)
    assert s["normalized_entropy"] == pytest.approx(1.0)
    assert s["codes_counted"] == 3 * 64


def test_skewed_codes_match_direct_entropy():
    codes = torch.tensor([[0, 0, 0, 1], [2, 0, 1, 0]])
    h = CodebookHistogram(8)
    h.update(codes[:1])
    h.update(codes[1:])  # accumulating batches == one histogram over the dataset
    p = torch.tensor([5, 2, 1]) / 8
    ent = float(-(p * p.log2()).sum())
    s = h.compute()
    assert s["usage"] == pytest.approx(3 / 8)
    assert s["entropy_bits"] == pytest.approx(ent)
    assert s["perplexity"] == pytest.approx(2**ent)


def test_residual_levels_and_dropped_levels():
    # (B, N, Q) codes: level 0 uses 2 codes, level 1 uses 4; -1 (dropped) is ignored
    codes = torch.tensor([[[0, 0], [1, 1], [0, 2], [1, 3]], [[0, -1], [1, -1], [0, -1], [1, -1]]])
    h = CodebookHistogram(4, num_levels=2)
    h.update(codes)
    s = h.compute()
    assert s["usage"] == pytest.approx((2 / 4 + 4 / 4) / 2)
    assert s["entropy_bits"] == pytest.approx((1.0 + 2.0) / 2)


def test_sparse_path_for_huge_codebooks():
    h = CodebookHistogram(2**30)
    h.update(torch.tensor([[5, 5, 2**29, 7]]))
    s = h.compute()
    assert s["used_codes"] == 3
    assert s["entropy_bits"] == pytest.approx(-(0.5 * math.log2(0.5) + 2 * 0.25 * math.log2(0.25)))


def test_bad_codes():
    h = CodebookHistogram(4)
    with pytest.raises(ValueError, match="codebook_size"):
        h.update(torch.tensor([[4]]))
    with pytest.raises(TypeError):
        h.update(torch.tensor([[0.5]]))
