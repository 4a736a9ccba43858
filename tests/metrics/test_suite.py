"""A modality plugs into the evaluation with a metric suite alone: the loop has no modality branches."""

import json
from dataclasses import dataclass

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from mmtok.data import make_item
from mmtok.metrics import MeanMetric, MetricInfo, MetricSuite, evaluate_reconstruction, metric_suite
from mmtok.metrics import suite as suite_module
from mmtok.tokenizer import Tokenizer, check_range


@dataclass
class SignalConfig:
    length: int = 16


class SignalTokenizer(Tokenizer):
    """(B, 1, S) signals -> (B, S, 2) codes: 8 levels per sample, plus a second (redundant) residual level."""

    config_class = SignalConfig
    modality = "signal"

    def __init__(self, config: SignalConfig) -> None:
        super().__init__(config)
        self.anchor = nn.Parameter(torch.zeros(()))

    @property
    def token_shape(self):
        return (self.config.length,)

    @property
    def codebook_sizes(self):
        return (8, 8)

    def preprocessing(self):
        return {"length": self.config.length}

    def check_input(self, x):
        if x.ndim != 3 or x.shape[1:] != (1, self.config.length):
            raise ValueError(f"expected (B, 1, {self.config.length}), got {tuple(x.shape)}")
        check_range(x)

    def encode(self, x):
        q = ((x[:, 0] + 1) * 3.5).round().long().clamp(0, 7)
        return torch.stack([q, (q + 1) % 8], dim=-1)

    def decode(self, codes):
        return (codes[..., 0].float() / 3.5 - 1)[:, None]


class Signals(Dataset):
    def __init__(self, n, length=16):
        self.x = torch.linspace(-1, 1, n * length).reshape(n, 1, length)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return make_item(self.x[i], key=f"s{i:03d}", path=f"signals/{i}")


class MSESuite(MetricSuite):
    modality = "signal"
    item = "clip"
    unit = "clip"
    metrics = (MetricInfo("mse", "MSE", lower_is_better=True),)
    rates = (MetricInfo("bits_per_sample", "bits/sample"),)

    def __init__(self, tok, *, scale=1.0, **common):
        super().__init__(tok, **common)
        self.scale = scale
        self.mse = {k: MeanMetric() for k in self.lengths}

    def add_batch(self, x, keys):
        self.x = x

    def add_reconstruction(self, k, rec):
        self.mse[k].update(self.scale * (rec - self.x).pow(2).flatten(1).mean(1))

    def compute(self, num_items):
        return {k: {"mse": m.compute()} for k, m in self.mse.items()}

    def protocol_fields(self, identity, num_items):
        return {"dataset": identity, "num_clips": num_items, "scale": self.scale}

    def rate_fields(self, bits_per_item):
        return {"bits_per_sample": bits_per_item / self.tok.config.length}


@pytest.fixture
def signal_suite(monkeypatch):
    monkeypatch.setitem(suite_module._SUITES, "signal", MSESuite)
    return MSESuite


def test_new_modality_plugs_in(signal_suite, tmp_path):
    tok = SignalTokenizer(SignalConfig())
    rep = evaluate_reconstruction(tok, Signals(7), batch_size=3, out_dir=tmp_path, scale=2.0, progress=False)
    assert metric_suite("signal") is MSESuite
    assert rep["num_clips"] == 7 and rep["metrics"]["tokens_per_clip"] == 16
    assert rep["metrics"]["bits_per_clip"] == pytest.approx(16 * 6.0)
    assert rep["metrics"]["bits_per_sample"] == pytest.approx(6.0)
    assert rep["tokenizer"]["modality"] == "signal" and rep["tokenizer"]["codebook_sizes"] == [8, 8]
    assert rep["tokenizer"]["length"] == 16  # the tokenizer's describe() / preprocessing() facts
    x = Signals(7).x
    expect = 2.0 * (((x + 1) * 3.5).round().clamp(0, 7) / 3.5 - 1 - x).pow(2).mean().item()
    assert rep["metrics"]["mse"] == pytest.approx(expect, rel=1e-6)
    # one histogram level per residual level: level 0 and level 1 use the same number of ids
    assert rep["codebook"]["levels"] == 2 and rep["codebook"]["codes_counted"] == 7 * 16 * 2
    assert rep["throughput"]["encode_clips_per_s"] > 0 and rep["prefix"] == []
    assert rep["protocol"]["scale"] == 2.0 and len(rep["protocol"]["id"]) == 16
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["files"] == {"json": "report.json", "markdown": "report.md"}
    md = (tmp_path / "report.md").read_text()
    assert "| MSE |" in md and "bits/sample" in md and "clip/s" in md
    with pytest.raises(TypeError, match="fid"):  # options belong to the suite of the modality
        evaluate_reconstruction(tok, Signals(2), fid=False, progress=False)


def test_unregistered_modality_is_a_clear_error():
    with pytest.raises(ValueError, match=r"no metric suite for 'smell' tokenizers; registered modalities: \[.*'image'"):
        metric_suite("smell")
    with pytest.raises(TypeError, match="MetricSuite"):
        suite_module.register_metric_suite("smell", object)
