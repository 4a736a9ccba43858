"""The AR recipe end to end: tokenizer -> mmtok encode -> mmtok train (task: ar) -> mmtok generate
(decode + gFID): loss below the tokens' unigram entropy, exact resume, foreign shards and
tokenizers refused, generated codes inside the vocabulary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import mmtok
from mmtok.cli import main
from mmtok.training.logging import read_metrics

RECIPE = "ar/ar_tiny_synthetic"


def _tokenizer(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    tok = mmtok.create_tokenizer("titok_t32_fsq", num_tokens=8, encoder_width=32, encoder_depth=1, encoder_heads=2,
                                 decoder_width=32, decoder_depth=1, decoder_heads=2, patch_size=8,
                                 quantizer={"type": "fsq", "levels": [5, 4, 4]})
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("ar")
    tok = _tokenizer(root / "tok", seed=0)
    other = _tokenizer(root / "other", seed=1)
    assert main(["encode", str(tok), "synthetic:64", str(root / "tokens"), "--batch-size", "32", "--workers", "0",
                 "--no-progress"]) == 0
    return root, tok, other


def _run(root: Path, name: str, tok: Path, steps: int, *extra: str) -> list[str]:
    return ["train", RECIPE, f"run_dir={root / name}", f"data.shards={root / 'tokens'}", f"data.tokenizer={tok}",
            f"schedule.total_steps={steps}", "schedule.warmup_steps=5", "optim.batch_size=16", "logging.every=10",
            "logging.progress=false", "checkpoint.every=10", "cpu_threads=1", *extra]


def _unigram_entropy(tokens: Path) -> float:
    from mmtok.shards import TokenDataset

    ds = TokenDataset(tokens, shuffle=False)
    ids = np.concatenate([ds[i]["input_ids"].numpy() for i in range(ds.num_items)])
    p = np.bincount(ids) / len(ids)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def test_loss_falls_well_below_the_unigram_entropy(pipeline):
    root, tok, _ = pipeline
    assert main(_run(root, "fit", tok, 150, "optim.lr=3e-3")) == 0
    rows = read_metrics(root / "fit")
    h = _unigram_entropy(root / "tokens")
    assert rows[0]["loss/ce"] > 0.9 * h  # starts near chance ...
    assert rows[-1]["loss/ce"] < 0.6 * h, (rows[-1]["loss/ce"], h)  # ... ends well below the unigram entropy
    meta = json.loads((root / "fit" / "final" / "ar_config.json").read_text())
    assert meta["generator"]["vocab_size"] == 80 and meta["generator"]["max_len"] == 8
    assert meta["generator"]["num_classes"] > 1  # the synthetic images carry their scene kind as the label


def test_exact_resume(pipeline):
    root, tok, _ = pipeline
    assert main(_run(root, "straight", tok, 20)) == 0
    assert main(_run(root, "split", tok, 20, "stop_at_step=10")) == 0
    assert not (root / "split" / "final").exists()
    assert main(_run(root, "split", tok, 20)) == 0
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]  # noqa: E731
    assert strip(read_metrics(root / "straight")) == strip(read_metrics(root / "split"))
    a, b = (load_file(str(root / n / "final" / "model.safetensors")) for n in ("straight", "split"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_generate_decodes_and_scores_gfid(pipeline, inception_weights, tmp_path, capsys):
    root, tok, other = pipeline
    if not (root / "fit" / "final").exists():
        assert main(_run(root, "fit", tok, 30)) == 0
    out = tmp_path / "gen"
    assert main(["generate", str(root / "fit" / "final"), "--tokenizer", str(tok), "--num", "8", "--cfg-scale", "2.0",
                 "--top-k", "20", "--out", str(out), "--fid", "--reference", "synthetic:16",
                 "--inception-weights", str(inception_weights)]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["gfid"] > 0 and rep["protocol"]["id"] and rep["sampling"]["cfg_scale"] == 2.0
    assert len(list(out.glob("sample_*.png"))) == 8 and (out / "grid.png").is_file()
    capsys.readouterr()
    # a tokenizer the shards were not made with is refused, in training and in generation
    assert main(["generate", str(root / "fit" / "final"), "--tokenizer", str(other), "--num", "2", "--out", str(tmp_path / "x")]) == 2
    assert "trained on tokens of" in capsys.readouterr().err
    assert main(_run(root, "foreign", other, 2)) == 2
    assert "mmtok train: error:" in capsys.readouterr().err


def test_generated_codes_stay_in_the_vocabulary(pipeline):
    from mmtok.ar.generate import ids_to_codes
    from mmtok.ar.sampling import sample
    from mmtok.ar.train import load_generator

    root, tok, _ = pipeline
    if not (root / "fit" / "final").exists():
        assert main(_run(root, "fit", tok, 30)) == 0
    model, meta = load_generator(root / "fit" / "final")
    ids = sample(model, 16, 8, labels=torch.arange(16) % meta["generator"]["num_classes"], temperature=1.5,
                 generator=torch.Generator().manual_seed(0))
    codes = ids_to_codes(ids, meta["shards"])
    assert codes.shape == (16, 8) and int(codes.min()) >= 0 and int(codes.max()) < 80
    t = mmtok.load_tokenizer(tok)
    assert t.decode(codes).shape == (16, 3, 32, 32)
