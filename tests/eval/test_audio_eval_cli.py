"""``mmtok eval`` on an audio checkpoint: the audio suite, a row per residual level, real-time
factors, WAV / spectrogram samples, one-line errors."""

from __future__ import annotations

import json

import pytest
import soundfile as sf
import torch

import mmtok
from mmtok.metrics.cli import eval_main


@pytest.fixture(scope="module")
def audio_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("audio") / "rvq_tiny"
    mmtok.create_tokenizer("rvq_codec_tiny", segment_length=3200).save_pretrained(path)
    return path


def test_eval_reports_every_level_and_writes_wavs(audio_ckpt, tmp_path, capsys):
    out = tmp_path / "ev"
    assert eval_main([str(audio_ckpt), "--data", "synthetic:6", "--batch-size", "3", "--out", str(out), "--no-progress",
                      "--num-samples", "2"]) == 0
    console = capsys.readouterr().out
    assert "levels    1:" in console and "levels    4:" in console
    rep = json.loads((out / "report.json").read_text())
    assert rep["num_clips"] == 6 and rep["ladder_unit"] == "levels"
    rows = rep["prefix"]
    assert [r["levels"] for r in rows] == [1, 2, 3, 4]
    assert [round(r["kbps"], 3) for r in rows] == [0.8, 1.6, 2.4, 3.2]  # 100 Hz x 8 bits per level
    assert all(r["mel_distance"] > 0 for r in rows) and rep["metrics"]["kbps"] == pytest.approx(3.2)
    assert rep["throughput"]["encode_real_time_factor"] > 0 and rep["throughput"]["decode_real_time_factor"] > 0
    assert rep["protocol"]["sample_rate"] == 16000 and rep["tokenizer"]["frame_rate"] == 100.0
    wavs = sorted((out / "samples").glob("*.wav"))
    assert len(wavs) == 4 and all(sf.info(str(w)).samplerate == 16000 for w in wavs)
    assert len(list((out / "samples").glob("*_spec.png"))) == 2 and (out / "prefix_curve.png").is_file()
    assert "Quality vs number of levels" in (out / "report.md").read_text()


def test_eval_audio_bad_input_is_one_line(audio_ckpt, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert eval_main([str(audio_ckpt), "--data", str(empty), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mmtok eval: error: ") and err.count("\n") == 1
