"""ShardEncoder without datasets or modality branches; metadata from the tokenizer; stored codes decode;
writers per modality; an encode of unreadable inputs only fails loudly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import mmtok
from mmtok.shards import TokenDataset, encode_dataset, iter_shard_items, read_shard, read_shard_meta
from mmtok.shards.encoder import EncodeResult, ShardEncoder
from mmtok.shards.writers import PNGWriter, SampleWriter, register_sample_writer, sample_writer_for


class ToyTokenizer:
    """What ShardEncoder reads of a tokenizer, for a made-up modality with two residual levels."""

    modality = "toy"
    codebook_sizes = (16, 16)
    codes_shape = (4, 2)
    device = torch.device("cpu")

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # (B, 8) in [-1, 1] -> (B, 4, 2)
        return ((x + 1) * 7.5).round().long().reshape(-1, 4, 2)

    def describe(self) -> dict:
        return {"modality": self.modality, "codebook_sizes": list(self.codebook_sizes), "frame_rate": 50}


class ToyViews:
    names = ["orig", "neg"]

    def views(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x, -x]

    def describe(self) -> dict:
        return {"augmentations": self.names}


def _batch(keys: list[str], x: torch.Tensor | None, errors=()) -> dict:
    n = len(keys)
    return {"x": x, "key": keys, "path": [f"/src/{k}" for k in keys], "label": torch.arange(n),
            "meta": [{"caption": f"about {k}"} for k in keys], "errors": list(errors)}


def _toy_encoder(out: Path) -> ShardEncoder:
    ident = {"tokenizer": "toy", "family": "ToyTokenizer", "config_hash": "0", "checkpoint_hash": "1" * 64}
    return ShardEncoder(ToyTokenizer(), ToyViews(), out, identity=ident, preprocessing={"sample_rate": 8},
                        source="toy:4", shard_size=3)


def test_shard_encoder_writes_any_modality_from_a_stream_of_batches(tmp_path):
    se = _toy_encoder(tmp_path)
    x = torch.linspace(-1, 1, 8).repeat(3, 1)
    stream = [(0, _batch(["a", "b"], x[:2])), (0, _batch(["c"], x[2:], errors=[("/src/bad", "OSError: x")])),
              (1, _batch([], None, errors=[("/src/gone", "OSError: y")]))]
    res = se.encode_shards(iter(stream), EncodeResult(tmp_path, 0, 1, 2))
    assert res.shards_written == [0] and res.items_written == 6 and len(res.errors) == 2
    assert [b.index for b in se.held] == [1]  # every input of shard 1 was unreadable: the driver decides
    doc = read_shard_meta(tmp_path / "shard-000000.parquet")
    assert doc["modality"] == "toy" and doc["codebook_sizes"] == [16, 16] and doc["token_shape"] == [4, 2]
    assert doc["modality_info"]["frame_rate"] == 50
    assert doc["preprocessing"] == {"sample_rate": 8, "augmentations": ["orig", "neg"]}
    t = read_shard(tmp_path / "shard-000000.parquet").to_pydict()
    assert t["key"] == ["a", "a", "b", "b", "c", "c"] and t["aug"] == ["orig", "neg"] * 3
    assert t["caption"][:2] == ["about a"] * 2 and t["shape"][0] == [4, 2]
    (first,) = [b for b in iter_shard_items(tmp_path / "shard-000000.parquet")]
    assert first["codes"].dtype == torch.int64 and first["codes"].shape == (6, 4, 2)
    assert torch.equal(first["codes"][0], ToyTokenizer().encode(x[:1])[0])
    assert torch.equal(first["codes"][1], ToyTokenizer().encode(-x[:1])[0])
    se.write_held(res)
    assert res.shards_written == [0, 1] and read_shard_meta(tmp_path / "shard-000001.parquet")["num_items"] == 0
    with pytest.raises(ValueError, match="not consecutive"):
        se.encode_shards(iter([(2, stream[0][1]), (3, stream[0][1]), (2, stream[0][1])]), EncodeResult(tmp_path, 0, 1, 4))


def test_metadata_comes_from_the_tokenizer(tmp_path, tiny_ckpt):
    out = tmp_path / "tok"
    encode_dataset(tiny_ckpt, "synthetic:4", out, batch_size=4, shard_size=4, num_workers=0, progress=False)
    tok = mmtok.load_tokenizer(tiny_ckpt)
    doc = read_shard_meta(out / "shard-000000.parquet")
    assert doc["codebook_sizes"] == list(tok.codebook_sizes)
    assert doc["token_shape"] == list(tok.codes_shape) and doc["modality"] == tok.modality
    assert doc["modality_info"] == tok.describe()
    assert doc["preprocessing"] == {**tok.preprocessing(), "augmentations": ["orig"], "crop_scale": None, "seed": 0}


def test_codes_read_back_as_uint16_decode_like_int64(tmp_path, tiny_ckpt):
    out = tmp_path / "tok"
    encode_dataset(tiny_ckpt, "synthetic:4", out, batch_size=4, shard_size=4, num_workers=0, progress=False)
    ds = TokenDataset(out, shuffle=False)
    stored = torch.from_numpy(np.stack([ds.codes(i) for i in range(4)]))
    assert stored.dtype == torch.uint16
    tok = mmtok.load_tokenizer(tiny_ckpt)
    with torch.inference_mode():
        ref = tok.decode(stored.to(torch.int64))
        assert torch.equal(tok.decode(stored), ref)


def test_a_tokenizer_of_a_modality_without_datasets_gets_a_clear_error(tmp_path, tiny_ckpt, monkeypatch):
    from mmtok.image.titok import TiTokTokenizer

    monkeypatch.setattr(TiTokTokenizer, "modality", "toy")
    with pytest.raises(ValueError, match="no datasets for modality 'toy'"):
        encode_dataset(tiny_ckpt, "synthetic:4", tmp_path / "tok", num_workers=0, progress=False)


def test_encode_of_only_unreadable_inputs_fails_and_writes_no_shard(tmp_path, tiny_ckpt, capsys):
    src = tmp_path / "bad"
    src.mkdir()
    for name in ("a.png", "b.jpg", "c.png"):
        (src / name).write_bytes(b"not an image")
    out = tmp_path / "tok"
    from mmtok.shards.cli import encode_main

    rc = encode_main([str(tiny_ckpt), str(src), str(out), "--workers", "0", "--no-progress", "--shard-size", "2"])
    err = capsys.readouterr().err
    assert rc != 0 and "all 3 inputs" in err and str(out / "errors.jsonl") in err
    assert not list(out.glob("shard-*")) and not (out / "manifest.json").exists()
    assert len((out / "errors.jsonl").read_text().splitlines()) == 3


def test_sample_writers_are_chosen_by_modality(tmp_path, meta_factory):
    assert sample_writer_for("image") is PNGWriter
    with pytest.raises(ValueError, match="no sample writer for 'toy'"):
        sample_writer_for("toy")

    class TextWriter(SampleWriter):
        extension = ".txt"

        def write(self, path, x):
            path.write_text(" ".join(f"{v:.1f}" for v in x.tolist()))

    register_sample_writer("toy", TextWriter)
    try:
        w = sample_writer_for("toy")(tmp_path, meta_factory(modality="toy"))
        paths = w.write_batch({"recon": torch.tensor([[0.5, -1.0]]), "key": ["clips/a b"], "aug": ["neg"]})
        assert [p.name for p in paths] == ["clips_a_b__neg.txt"] and paths[0].read_text() == "0.5 -1.0"
    finally:
        from mmtok.shards import writers

        writers._WRITERS.pop("toy")


def test_ray_actor_writes_the_torch_engines_bytes_without_ray(tmp_path, tiny_ckpt):
    from mmtok.shards.ray_engine import _ShardActor

    kw = dict(batch_size=4, shard_size=4, flip=True)
    encode_dataset(tiny_ckpt, "synthetic:8", tmp_path / "torch", num_workers=0, progress=False, **kw)
    actor = _ShardActor(str(tiny_ckpt), "synthetic:8", str(tmp_path / "actor"), dict(kw, num_workers=0, device="cpu"))
    out = actor({"shard": np.array([1])})
    assert out["num_items"].tolist() == [8] and out["num_errors"].tolist() == [0]
    name = "shard-000001.parquet"
    assert (tmp_path / "actor" / name).read_bytes() == (tmp_path / "torch" / name).read_bytes()
