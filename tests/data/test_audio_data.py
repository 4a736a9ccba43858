"""Audio datasets: folder reading policy (rates, channels, padding, errors), segments, synthetic clips, speech."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from mmtok.data import (
    AudioFolder,
    AudioViews,
    SyntheticAudio,
    load_audio,
    make_loader,
    open_dataset,
    save_wav,
    views_for,
)
from mmtok.data.synthetic_audio import KINDS

SR = 16000
UNICODE_NAME = "ünïcødé 音"


def _tone(seconds: float, rate: int, freq: float = 440.0, channels: int = 1, amp: float = 0.5, seed: int = 0) -> np.ndarray:
    """(frames, channels) float32: a tone plus a little noise, channels at different gains."""
    t = np.arange(int(round(seconds * rate))) / rate
    rng = np.random.default_rng(seed)
    mono = amp * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(len(t))
    return (mono[:, None] * np.linspace(1.0, 0.5, channels)[None]).astype(np.float32)


@pytest.fixture
def audio_folder(tmp_path: Path) -> Path:
    """root/{bad,music,speech}/...: good wav / flac / ogg / 44.1 kHz stereo / short / loud float /
    unicode-named files, and a corrupt, an empty, a silent and a text-as-.wav file."""
    root = tmp_path / "sounds"
    for d in ("bad", "music", "speech"):
        (root / d).mkdir(parents=True)
    sf.write(root / "speech" / "a16k.wav", _tone(0.75, SR), SR, subtype="PCM_16")
    sf.write(root / "speech" / "b.flac", _tone(0.6, SR, 300), SR)
    sf.write(root / "music" / "c.ogg", _tone(0.6, SR, 600), SR, format="OGG", subtype="VORBIS")
    sf.write(root / "music" / "d44k_stereo.wav", _tone(1.0, 44100, 500, channels=2), 44100, subtype="FLOAT")
    sf.write(root / "music" / "e_short.wav", _tone(0.3, SR), SR, subtype="PCM_16")
    sf.write(root / "music" / "f_loud.wav", _tone(0.6, SR, amp=1.5), SR, subtype="FLOAT")
    sf.write(root / "music" / f"{UNICODE_NAME}.wav", _tone(0.6, SR, 700), SR, subtype="PCM_16")
    (root / "bad" / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00garbage-garbage")
    sf.write(root / "bad" / "empty.wav", np.zeros((0, 1), np.float32), SR, subtype="PCM_16")
    sf.write(root / "bad" / "silent.wav", np.zeros((SR // 2, 1), np.float32), SR, subtype="PCM_16")
    (root / "bad" / "notes.wav").write_text("not audio at all")
    (root / "readme.txt").write_text("ignored")
    return root


def _open(root: Path, **kw) -> AudioFolder:
    opts = {"sample_rate": SR, "segment_length": 8000, "segment": "start", **kw}
    return open_dataset(root, modality="audio", **opts)


def _by_key(ds) -> dict[str, dict]:
    return {ds[i]["key"]: ds[i] for i in range(len(ds))}


def test_folder_items_keys_meta_and_errors(audio_folder: Path) -> None:
    ds = _open(audio_folder)
    assert isinstance(ds, AudioFolder) and len(ds) == 11  # readme.txt ignored
    items = _by_key(ds)
    good = {k: it for k, it in items.items() if it["x"] is not None}
    assert set(good) == {"speech/a16k", "speech/b", "music/c", "music/d44k_stereo", "music/e_short", "music/f_loud",
                         f"music/{UNICODE_NAME}"}
    for it in good.values():
        x = it["x"]
        assert x.dtype == torch.float32 and x.shape == (1, 8000) and float(x.abs().max()) <= 1.0
        m = it["meta"]
        assert m["offset"] == 0 and m["sample_rate"] == SR and 0 < m["length"] <= 8000
        assert set(m) == {"offset", "sample_rate", "length", "source_sample_rate", "source_channels", "clipped"}
    assert good["speech/a16k"]["label"] == 2 and good["music/c"]["label"] == 1  # sorted sub-folders: bad, music, speech
    assert good["music/d44k_stereo"]["meta"]["source_sample_rate"] == 44100
    assert good["music/d44k_stereo"]["meta"]["source_channels"] == 2
    errors = {k: it for k, it in items.items() if it["x"] is None}
    assert set(errors) == {"bad/corrupt", "bad/empty", "bad/silent", "bad/notes"}
    for k, it in errors.items():
        assert it["path"] == str(audio_folder / f"{k}.wav") and it["error"]
    assert "empty" in errors["bad/empty"]["error"] and "silent" in errors["bad/silent"]["error"]


def test_resample_and_mixdown_match_torchaudio(audio_folder: Path) -> None:
    it = _by_key(_open(audio_folder))["music/d44k_stereo"]
    data, rate = sf.read(audio_folder / "music" / "d44k_stereo.wav", dtype="float32", always_2d=True)
    ref = torchaudio.functional.resample(torch.from_numpy(data.T.copy()).mean(0, keepdim=True), rate, SR)
    torch.testing.assert_close(it["x"], ref[:, :8000], atol=1e-5, rtol=0)
    assert it["meta"]["length"] == 8000


def test_wrong_rate_without_resampling_is_an_error_item(audio_folder: Path) -> None:
    it = _by_key(_open(audio_folder, resample=False))["music/d44k_stereo"]
    assert it["x"] is None and "file is 44100 Hz, model expects 16000 Hz; set resample: true" in it["error"]


def test_padding_clipping_and_channels(audio_folder: Path, tmp_path: Path) -> None:
    items = _by_key(_open(audio_folder))
    short = items["music/e_short"]
    assert short["meta"]["length"] == 4800 and torch.all(short["x"][:, 4800:] == 0) and short["x"][:, :4800].abs().max() > 0
    loud = items["music/f_loud"]
    assert loud["meta"]["clipped"] > 0 and float(loud["x"].abs().max()) == 1.0
    assert items["speech/a16k"]["meta"]["clipped"] == 0
    stereo = _by_key(_open(audio_folder, channels=2))
    assert stereo["speech/a16k"]["x"].shape == (2, 8000)
    torch.testing.assert_close(stereo["speech/a16k"]["x"][0], stereo["speech/a16k"]["x"][1])  # mono duplicated
    assert not torch.equal(stereo["music/d44k_stereo"]["x"][0], stereo["music/d44k_stereo"]["x"][1])  # kept apart
    (tmp_path / "three").mkdir()
    sf.write(tmp_path / "three" / "x.wav", _tone(0.6, SR, channels=3), SR)
    bad = _open(tmp_path / "three", channels=2)[0]
    assert bad["x"] is None and "3 channels" in bad["error"]


def test_chunks_cover_each_file_exactly(tmp_path: Path) -> None:
    root = tmp_path / "long"
    root.mkdir()
    sf.write(root / "a44k.wav", _tone(2.3, 44100, 330, channels=2), 44100, subtype="FLOAT")
    sf.write(root / "b16k.wav", _tone(1.1, SR, 220), SR, subtype="PCM_16")
    ds = _open(root, segment="chunks", segment_length=3000)
    a_len = -(-int(2.3 * 44100) * 160 // 441)  # resampled length: ceil(frames * 16000 / 44100)
    b_len = int(1.1 * SR)
    assert len(ds) == -(-a_len // 3000) + -(-b_len // 3000)
    items = [ds[i] for i in range(len(ds))]
    for name, n, (src, rate) in (("a44k", a_len, sf.read(root / "a44k.wav", dtype="float32", always_2d=True)),
                                 ("b16k", b_len, sf.read(root / "b16k.wav", dtype="float32", always_2d=True))):
        chunks = [it for it in items if it["key"].startswith(name + "@")]
        assert [it["key"] for it in chunks] == [f"{name}@{o}" for o in range(0, n, 3000)]
        assert [it["meta"]["offset"] for it in chunks] == list(range(0, n, 3000))
        assert all(it["x"].shape == (1, 3000) for it in chunks)
        assert chunks[-1]["meta"]["length"] == n - 3000 * (len(chunks) - 1)
        whole = torch.cat([it["x"][:, : it["meta"]["length"]] for it in chunks], dim=1)
        ref = torch.from_numpy(src.T.copy()).mean(0, keepdim=True)
        if rate != SR:
            ref = torchaudio.functional.resample(ref, rate, SR)
        assert whole.shape == ref.shape == (1, n)
        torch.testing.assert_close(whole, ref, atol=1e-5, rtol=0)
    assert len(_open(root, segment="chunks", segment_length=3000, max_items=5)) == 5


def test_random_segments_depend_on_seed_epoch_index(tmp_path: Path) -> None:
    root = tmp_path / "r"
    root.mkdir()
    for i in range(3):
        sf.write(root / f"{i}.wav", _tone(2.0, SR, 200 + 100 * i, seed=i), SR, subtype="PCM_16")
    a, b = _open(root, segment="random", seed=1), _open(root, segment="random", seed=1)
    offsets = lambda ds: [ds[i]["meta"]["offset"] for i in range(len(ds))]  # noqa: E731
    first = offsets(a)
    assert first == offsets(b) and all(0 <= o <= 2 * SR - 8000 for o in first)
    for it, o in zip((a[i] for i in range(3)), first):
        ref, _ = load_audio(root / f"{it['key']}.wav")
        torch.testing.assert_close(it["x"], ref[:, o : o + 8000])
    a.set_epoch(1)
    assert offsets(a) != first
    a.set_epoch(0)
    assert offsets(a) == first
    assert offsets(_open(root, segment="random", seed=2)) != first
    assert offsets(_open(root, segment="start")) == [0, 0, 0]


def test_save_wav_load_audio_roundtrip(tmp_path: Path) -> None:
    x = torch.from_numpy(_tone(0.25, 24000, channels=2).T.copy())
    path = save_wav(tmp_path / "out" / "x.wav", x, 24000)
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.wav"]  # atomic: no temp file left
    info = sf.info(path)
    assert info.samplerate == 24000 and info.channels == 2 and info.subtype == "PCM_16"
    y, rate = load_audio(path)
    assert rate == 24000 and y.shape == x.shape
    torch.testing.assert_close(y, x, atol=1.0 / 32767, rtol=0)
    mono, rate = load_audio(path, sample_rate=SR, channels=1)
    ref = torchaudio.functional.resample(y.mean(0, keepdim=True), 24000, SR)
    assert rate == SR and mono.shape == ref.shape
    torch.testing.assert_close(mono, ref, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="set resample: true"):
        load_audio(path, sample_rate=SR, resample=False)


def test_synthetic_audio_deterministic_and_in_range() -> None:
    a, b = SyntheticAudio(40, SR, 1, 4000, seed=3), SyntheticAudio(40, SR, 1, 4000, seed=3)
    items = [a[i] for i in range(40)]
    for i, it in enumerate(items):
        assert it["x"].shape == (1, 4000) and it["x"].dtype == torch.float32
        assert 0.29 <= float(it["x"].abs().max()) <= 0.9 + 1e-6
        assert torch.equal(it["x"], b[i]["x"]) and it["key"] == f"synthetic/{i:06d}"
        assert it["meta"]["kind"] == KINDS[it["label"]] and it["meta"]["length"] == 4000
    assert {it["meta"]["kind"] for it in items} == set(KINDS)
    assert not torch.equal(items[0]["x"], SyntheticAudio(40, SR, 1, 4000, seed=4)[0]["x"])
    stereo = SyntheticAudio(4, 22050, 2, 2205, seed=3)[1]["x"]
    assert stereo.shape == (2, 2205) and float(stereo.abs().max()) <= 0.9 + 1e-6
    ds = open_dataset("synthetic:7", modality="audio", sample_rate=SR, segment_length=1000, seed=3)
    assert isinstance(ds, SyntheticAudio) and len(ds) == 7 and ds.seed == 3


def test_open_audio_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synthetic:N"):
        open_dataset("synthetic:x", modality="audio", sample_rate=SR, segment_length=100)
    with pytest.raises(FileNotFoundError):
        open_dataset(tmp_path / "missing", modality="audio", sample_rate=SR, segment_length=100)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no audio files"):
        open_dataset(tmp_path / "empty", modality="audio", sample_rate=SR, segment_length=100)
    with pytest.raises(ValueError, match="segment_length"):
        open_dataset("synthetic", modality="audio", sample_rate=SR)
    with pytest.raises(ValueError, match="segment must be one of"):
        open_dataset("synthetic", modality="audio", sample_rate=SR, segment_length=100, segment="middle")


def test_speech_needs_espeak(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="apt-get install espeak-ng"):
        open_dataset("speech:2", modality="audio", sample_rate=SR, segment_length=8000, cache_dir=tmp_path)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_speech_dataset_generated_once(tmp_path: Path) -> None:
    ds = open_dataset("speech:3", modality="audio", sample_rate=SR, segment_length=8000, segment="start", cache_dir=tmp_path)
    assert isinstance(ds, AudioFolder) and len(ds) == 3
    items = [ds[i] for i in range(3)]
    assert all(it["x"] is not None and it["x"].abs().max() > 0.05 for it in items)
    assert all(it["meta"]["source_sample_rate"] == 22050 for it in items)
    manifest = next(tmp_path.glob("speech/*/manifest.json"))
    stamp = manifest.stat().st_mtime_ns
    again = open_dataset("speech:3", modality="audio", sample_rate=SR, segment_length=8000, cache_dir=tmp_path)
    assert again.files == ds.files and manifest.stat().st_mtime_ns == stamp


def test_loader_batches_audio_and_reports_errors(audio_folder: Path) -> None:
    ds = _open(audio_folder)
    batches = list(make_loader(ds, batch_size=4))
    assert sum(len(b["key"]) for b in batches) == 7
    assert all(b["x"].shape == (len(b["key"]), 1, 8000) for b in batches if b["x"] is not None)
    errors = [e for b in batches for e in b["errors"]]
    assert len(errors) == 4 and all(os.path.isfile(path) for path, _ in errors)
    assert batches[0]["x"] is None and len(batches[0]["errors"]) == 4  # bad/ sorts first
    assert batches[1]["meta"][0]["sample_rate"] == SR and batches[1]["label"].tolist() == [1, 1, 1, 1]


def test_audio_views() -> None:
    v = views_for("audio", sample_rate=SR, channels=1, segment_length=8000)
    assert isinstance(v, AudioViews) and v.names == ["orig"] and v.describe() == {"augmentations": ["orig"]}
    assert v.load_preprocessing == {"sample_rate": SR, "channels": 1, "segment_length": 8000, "segment": "chunks"}
    x = torch.zeros(2, 1, 8000)
    assert len(v.views(x)) == 1 and v.views(x)[0] is x
    with pytest.raises(ValueError, match="no augmentation views"):
        AudioViews(sample_rate=SR, flip=True)


@pytest.mark.parametrize("subtype,tol", [("PCM_U8", 2 / 128), ("PCM_16", 2 / 32768), ("PCM_24", 1e-6),
                                         ("PCM_32", 1e-6), ("FLOAT", 1e-7), ("DOUBLE", 1e-7)])
def test_every_wav_sample_format_reads_to_the_same_signal(tmp_path: Path, subtype: str, tol: float) -> None:
    """8-bit unsigned, 16/24/32-bit integer and float WAVs all read as the same float waveform."""
    ref = _tone(0.5, SR)
    path = tmp_path / f"{subtype}.wav"
    sf.write(path, ref, SR, subtype=subtype)
    assert sf.info(str(path)).subtype == subtype
    item = _open(tmp_path)[0]
    assert item["x"] is not None and item["x"].dtype == torch.float32
    np.testing.assert_allclose(item["x"][0].numpy(), ref[:, 0], atol=tol)
