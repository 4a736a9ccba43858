"""Audio token shards: chunked encodes of long files, valid lengths, WAV decode / join, inspect, AR packing."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import mmtok
from mmtok.shards import (
    ShardMismatchError,
    TokenDataset,
    decode_shards,
    encode_dataset,
    expected_metadata,
    read_shard,
)
from mmtok.shards.encode import read_errors
from mmtok.shards.format import build_table, shard_name, split_chunk_key, write_manifest, write_shard

SR, SEG = 16000, 8000  # rvq_codec_tiny: 16 kHz, items of 0.5 s, hop 160 -> codes (50, 4)
# 16 kHz mono files of 0.3 s, 1.2 s, 2.05 s, and 0.75 s of 44.1 kHz stereo (12000 samples once resampled).
FILES = {"short": (4800, SR, 1), "speech/mid": (19200, SR, 1), "long": (32800, SR, 1), "stereo44k": (33075, 44100, 2)}
MODEL_LEN = {"short": 4800, "speech/mid": 19200, "long": 32800, "stereo44k": 12000}


def _save_codec(root: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    mmtok.create_tokenizer("rvq_codec_tiny").save_pretrained(root)
    return root


@pytest.fixture(scope="module")
def audio_ckpt(tmp_path_factory) -> Path:
    return _save_codec(tmp_path_factory.mktemp("ackpt") / "rvq", 0)


@pytest.fixture(scope="module")
def audio_folder(tmp_path_factory) -> Path:
    from mmtok.data.audio import save_wav

    root = tmp_path_factory.mktemp("wavs")
    rng = np.random.default_rng(0)
    for name, (n, sr, ch) in FILES.items():
        t = np.arange(n) / sr
        x = 0.4 * np.sin(2 * np.pi * rng.uniform(200, 900) * t)[None].repeat(ch, 0) + 0.05 * rng.standard_normal((ch, n))
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        save_wav(root / f"{name}.wav", x.astype(np.float32), sr)
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00not a wave file" * 4)
    return root


@pytest.fixture(scope="module")
def folder_shards(tmp_path_factory, audio_ckpt, audio_folder) -> Path:
    out = tmp_path_factory.mktemp("atok") / "tok"
    encode_dataset(audio_ckpt, audio_folder, out, batch_size=4, shard_size=4, num_workers=0, progress=False)
    return out


def _rows(out: Path) -> dict[str, dict]:
    rows = {}
    for f in sorted(out.glob("shard-*.parquet")):
        for r in read_shard(f).to_pylist():
            rows[r["key"]] = r
    return rows


def test_synthetic_encode_records_audio_metadata_and_tokenizer_codes(tmp_path, audio_ckpt):
    out = tmp_path / "syn"
    res = encode_dataset(audio_ckpt, "synthetic:12", out, batch_size=4, shard_size=5, num_workers=0, progress=False)
    assert res.manifest["num_items"] == 12 and len(res.manifest["shards"]) == 3
    from mmtok.shards import load_metadata, resolve_shards

    meta = load_metadata(resolve_shards(out)[0])
    assert meta.modality == "audio" and meta.token_shape == [50, 4] and meta.codebook_sizes == [256] * 4
    assert meta.num_codebooks == 4 and meta.codes_dtype == "uint16"
    info = meta.modality_info
    assert (info["sample_rate"], info["frame_rate"], info["hop_length"]) == (SR, 100.0, 160)
    assert info["kbps"] == pytest.approx(3.2)
    assert meta.preprocessing["segment"] == "chunks" and meta.preprocessing["segment_length"] == SEG
    rows = _rows(out)
    assert all(r["shape"] == [50, 4] and r["length"] == SEG for r in rows.values())
    tok = mmtok.load_tokenizer(audio_ckpt)
    from mmtok.data import open_dataset

    ds = open_dataset("synthetic:12", modality="audio", **tok.preprocessing())
    x = torch.stack([ds[i]["x"] for i in (5, 6, 7, 8)])  # shard 1's first batch
    codes = tok.encode(x)
    for j, i in enumerate((5, 6, 7, 8)):
        assert np.array_equal(np.array(rows[f"synthetic/{i:06d}"]["codes"]).reshape(50, 4), codes[j].numpy())


def test_folder_chunks_keys_valid_lengths_errors_and_codes(folder_shards, audio_ckpt, audio_folder):
    rows = _rows(folder_shards)
    want = {f"{name}@{o}": min(SEG, n - o) for name, n in MODEL_LEN.items() for o in range(0, n, SEG)}
    assert len(rows) == sum(math.ceil(n / SEG) for n in MODEL_LEN.values()) == 11
    assert {k: r["length"] for k, r in rows.items()} == want
    assert all(r["shape"] == [50, 4] for r in rows.values())
    assert split_chunk_key("speech/mid@16000") == ("speech/mid", 16000) and split_chunk_key("a/b") == ("a/b", None)
    (err,) = read_errors(folder_shards)
    assert Path(err["path"]).name == "broken.wav" and err["error"]
    manifest = json.loads((folder_shards / "manifest.json").read_text())
    assert manifest["num_items"] == 11 and manifest["num_errors"] == 1

    tok = mmtok.load_tokenizer(audio_ckpt)
    from mmtok.data import collate, open_dataset

    ds = open_dataset(str(audio_folder), modality="audio", **tok.preprocessing(), segment="chunks")
    items = {it["key"]: it for it in (ds[i] for i in range(len(ds))) if it["x"] is not None}
    assert items["stereo44k@8000"]["meta"]["source_sample_rate"] == 44100
    f = folder_shards / "shard-000001.parquet"  # long@16000 .. stereo44k@0: padded tail + resampled stereo
    keys = read_shard(f, ["key"]).column("key").to_pylist()
    codes = tok.encode(collate([items[k] for k in keys])["x"])
    for j, k in enumerate(keys):
        assert np.array_equal(np.array(rows[k]["codes"]).reshape(50, 4), codes[j].numpy()), k

    # AR view of real shards: level-interleaved rows with per-level ids.
    td = TokenDataset(folder_shards, shuffle=False)
    assert td.vocab_size == 4 * 256 and td.num_items == 11
    c = td.codes(0)
    assert c.shape == (50, 4)
    ids = td[0]["input_ids"].numpy()
    assert np.array_equal(ids, (c.astype(np.int64) + 256 * np.arange(4)).reshape(-1))
    assert torch.equal(td.to_codes(ids), torch.from_numpy(c.astype(np.int64)))


def test_decode_writes_trimmed_wavs_and_joined_files(tmp_path, folder_shards, audio_ckpt):
    tok = mmtok.load_tokenizer(audio_ckpt)
    recon, lengths = {}, {}
    for b in decode_shards(folder_shards, batch_size=8, device="cpu"):
        recon.update(zip(b["key"], b["recon"]))
        lengths.update(zip(b["key"], b["length"]))
        assert b["recon"].shape[1:] == (1, SEG)
    for k in ("long@32000", "stereo44k@0"):  # the tokenizer's own decode of the stored codes
        codes = torch.tensor(_rows(folder_shards)[k]["codes"]).reshape(1, 50, 4)
        assert torch.allclose(recon[k], tok.decode(codes)[0], atol=1e-6)

    from mmtok.shards.cli import decode_main

    out = tmp_path / "wav"
    assert decode_main([str(folder_shards), str(out), "--no-progress", "--device", "cpu"]) == 0
    assert len(list(out.glob("*.wav"))) == 11
    for k in ("long@32000", "speech/mid@16000", "short@0", "long@8000"):
        data, rate = sf.read(out / f"{k.replace('/', '_').replace('@', '_')}.wav", dtype="float32", always_2d=True)
        assert rate == SR and data.shape == (lengths[k], 1)
        np.testing.assert_allclose(data[:, 0], recon[k][0, : lengths[k]].numpy(), atol=1.5 / 32767)

    joined = tmp_path / "joined"
    assert decode_main([str(folder_shards), str(joined), "--no-progress", "--device", "cpu", "--join"]) == 0
    assert sorted(p.name for p in joined.glob("*.wav")) == ["long.wav", "short.wav", "speech_mid.wav", "stereo44k.wav"]
    data, rate = sf.read(joined / "long.wav", dtype="float32", always_2d=True)
    assert rate == SR and data.shape == (MODEL_LEN["long"], 1)
    ref = torch.cat([recon[f"long@{o}"][0, : lengths[f"long@{o}"]] for o in range(0, 32800, SEG)])
    np.testing.assert_allclose(data[:, 0], ref.numpy(), atol=1.5 / 32767)
    assert sf.info(str(joined / "stereo44k.wav")).frames == MODEL_LEN["stereo44k"]


def test_inspect_reports_audio_facts(folder_shards, capsys):
    from mmtok.shards.cli import inspect_main

    assert inspect_main([str(folder_shards)]) == 0
    text = capsys.readouterr().out
    for s in ("16000 Hz", "100 frames/s", "4 levels x 256", "3.20 kbps", "items 11", "padded items    4", "level usage"):
        assert s in text, s
    assert inspect_main([str(folder_shards), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["num_tokens"] == 11 * 200 and len(stats["level_usage"]) == 4 and stats["num_padded"] == 4


def test_resume_skips_finished_shards_and_another_codec_is_refused(tmp_path, folder_shards, audio_ckpt, audio_folder,
                                                                    capsys):
    out = tmp_path / "tok"
    shutil.copytree(folder_shards, out)
    before = {f.name: f.read_bytes() for f in sorted(out.glob("shard-*"))}
    (out / "shard-000001.parquet").unlink()
    kw = dict(batch_size=4, shard_size=4, num_workers=0, progress=False)
    res = encode_dataset(audio_ckpt, audio_folder, out, **kw)
    assert res.shards_skipped == [0, 2] and res.shards_written == [1]
    assert {f.name: f.read_bytes() for f in sorted(out.glob("shard-*"))} == before
    other = _save_codec(tmp_path / "other", 1)
    with pytest.raises(ShardMismatchError, match="checkpoint_hash"):
        encode_dataset(other, audio_folder, out, **kw)
    with pytest.raises(ShardMismatchError, match="preprocessing.segment"):
        encode_dataset(audio_ckpt, audio_folder, out, segment="start", **kw)
    with pytest.raises(ShardMismatchError, match="checkpoint_hash"):
        TokenDataset(out, expect=expected_metadata(other))
    # The CLI's audio option: one item per file from its start, keyed by the file.
    from mmtok.shards.cli import encode_main

    start = tmp_path / "start"
    assert encode_main([str(audio_ckpt), str(audio_folder), str(start), "--segment", "start", "--workers", "0",
                        "--no-progress"]) == 0
    capsys.readouterr()
    assert {k: r["length"] for k, r in _rows(start).items()} == {k: min(n, SEG) for k, n in MODEL_LEN.items()}


def _audio_shards(root: Path, frames: list[list[int]], K: int, Q: int, meta_factory, seed: int = 0) -> list[np.ndarray]:
    """Hand-made audio shards whose items are (T, Q) codes with the given T; returns the codes in storage order."""
    meta = meta_factory(modality="audio", codebook_sizes=[K] * Q, token_shape=[max(max(f) for f in frames), Q],
                        modality_info={"sample_rate": SR, "frame_rate": 100.0, "hop_length": 160})
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    allc, n = [], 0
    for si, ts in enumerate(frames):
        codes = [rng.integers(0, K, size=(t, Q)) for t in ts]
        keys = [f"clip{n + j}@0" for j in range(len(ts))]
        write_shard(root / shard_name(si), build_table(meta, keys, codes, lengths=[t * 160 for t in ts],
                                                       extra_meta={"shard_index": si, "errors": []}))
        allc += codes
        n += len(ts)
    write_manifest(root, len(frames))
    return allc


@pytest.mark.parametrize("frames", [[[6, 6, 6], [6, 6]], [[3, 6], [5, 2, 4]]], ids=["fixed", "ragged"])
def test_token_dataset_interleaves_levels_with_per_level_ids(tmp_path, meta_factory, frames):
    K, Q = 10, 3
    codes = _audio_shards(tmp_path / "s", frames, K, Q, meta_factory)
    ds = TokenDataset(tmp_path / "s", shuffle=False, bos_id=30, eos_id=31)
    assert ds.code_vocab_size == Q * K and ds.vocab_size == 32
    flat = [(c + K * np.arange(Q)).reshape(-1) for c in codes]  # t0q0, t0q1, t0q2, t1q0, ...
    for i, c in enumerate(codes):
        ids = ds[i]["input_ids"].numpy()
        assert np.array_equal(ids, np.concatenate([[30], flat[i], [31]]))
        assert np.array_equal(ids[1:-1] % K, c.reshape(-1)) and np.array_equal(ids[1:-1] // K, np.tile(np.arange(Q), len(c)))
        assert torch.equal(ds.to_codes(ids[1:-1]), torch.from_numpy(c))
    # Packing: the stream of [bos] + item + [eos] cut into seq_len chunks, in order.
    stream = np.concatenate([np.concatenate([[30], f, [31]]) for f in flat])
    L = 7
    packed = TokenDataset(tmp_path / "s", shuffle=False, bos_id=30, eos_id=31, seq_len=L, batch_size=2)
    got = torch.cat([b["input_ids"] for b in packed.loader()]).reshape(-1).numpy()
    n = len(stream) // L // 2 * 2 * L
    assert len(packed) == len(stream) // L // 2 and np.array_equal(got, stream[:n])
    # Shared ids: the raw codes, vocabulary max(K).
    shared = TokenDataset(tmp_path / "s", shuffle=False, level_offsets=False, vocab_offset=5)
    assert shared.code_vocab_size == K and shared.vocab_size == K + 5
    assert np.array_equal(shared[1]["input_ids"].numpy(), codes[1].reshape(-1) + 5)
    assert torch.equal(shared.to_codes(shared[1]["input_ids"]), torch.from_numpy(codes[1]))
    with pytest.raises(ValueError, match="collides"):
        TokenDataset(tmp_path / "s", bos_id=K + 3)  # inside the per-level vocabulary [0, Q * K)
    state = ds.state_dict()
    assert state["level_offsets"] is True
    with pytest.raises(ValueError, match="level_offsets"):
        TokenDataset(tmp_path / "s", shuffle=False, bos_id=30, eos_id=31, level_offsets=False).load_state_dict(state)
