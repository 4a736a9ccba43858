"""The shared training loop on audio codecs: loss goes down, exact resume with the adversarial
part (MPD + STFT discriminators, LSGAN, feature matching), the non-finite guard, and bad
audio files skipped and counted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from safetensors.torch import load_file

import mmtok
from mmtok.checkpoint import latest_training_state, list_training_states
from mmtok.training.logging import read_metrics

from train_recipe_helpers import ROOT, tiny_model_overrides, tiny_run_overrides

RVQ_RECIPE = str(ROOT / "configs/audio/rvq_codec_tiny_synthetic.yaml")
TINY = tiny_model_overrides("rvq_codec_tiny")


def test_mel_loss_goes_down_and_samples_are_wavs(recipe, tmp_path: Path) -> None:
    run = tmp_path / "run"
    ov = tiny_run_overrides(run, steps=30, audio=True) + TINY + [
        "data.train=synthetic:4", "optim.batch_size=4", "optim.lr=3e-3", "schedule.kind=constant", "checkpoint.every=100",
        "logging.every=1", "logging.image_every=30",
    ]
    assert recipe["main"]([RVQ_RECIPE, *ov]) == 0
    mel = [r["loss/mel"] for r in read_metrics(run)]
    assert len(mel) == 30 and np.mean(mel[-5:]) < 0.8 * np.mean(mel[:3])  # fits 4 fixed clips
    wavs = sorted((run / "samples" / "step_00000030").glob("*.wav"))
    assert [w.name for w in wavs] == ["clip0_orig.wav", "clip0_recon.wav", "clip1_orig.wav", "clip1_recon.wav"]
    info = sf.info(str(wavs[1]))
    assert info.samplerate == 16000 and info.frames == 1600 and info.channels == 1
    assert (run / "samples" / "step_00000030" / "spectrogram.png").is_file()
    tok = mmtok.load_tokenizer(run / "final", modality="audio")
    assert tok.encode(torch.zeros(1, 1, 1600), n_q=1).shape == (1, 200, 1)
    # quality rises with the number of levels (quantizer dropout trained every bitrate)
    from mmtok.data import SyntheticAudio
    from mmtok.metrics.audio.quality import mel_distance

    x = torch.stack([SyntheticAudio(4, 16000, 1, 1600)[i]["x"] for i in range(4)])
    codes = tok.encode(x)
    dist = [mel_distance(tok.decode(codes[..., :k]), x, 16000).mean().item() for k in (1, 2)]
    assert dist[1] < dist[0], dist
    assert tok.kbps(2) == 2 * tok.kbps(1) == 2 * tok.frame_rate * 5 / 1000  # 32 codes = 5 bits per level


def test_exact_resume_with_audio_discriminators(recipe, tmp_path: Path) -> None:
    """4 steps straight == 2 steps + resume: every metrics.jsonl key, D terms and final weights."""
    base = TINY + [
        "loss.gan_weight=1.0", "loss.gan_start_step=1", "loss.adaptive_gan_weight=false", "loss.gan_loss=lsgan",
        "loss.feature_matching_weight=2.0", "discriminator.type=audio", "discriminator.options.width=0.03125",
        "discriminator.start_step=0", "ema.decay=0.9",
    ]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert recipe["main"]([RVQ_RECIPE, *tiny_run_overrides(straight, steps=4, audio=True), *base]) == 0
    assert recipe["main"]([RVQ_RECIPE, *tiny_run_overrides(split, steps=4, audio=True), *base, "stop_at_step=2"]) == 0
    assert latest_training_state(split / "checkpoints").name == "step_00000002"
    assert recipe["main"]([RVQ_RECIPE, *tiny_run_overrides(split, steps=4, audio=True), *base]) == 0
    a = [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in read_metrics(straight)]
    b = [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in read_metrics(split)]
    assert len(a) == len(b) == 4 and a == b
    assert a[-1]["loss/feature_matching"] > 0 and a[-1]["disc/d_loss"] != 0 and "loss/mel" in a[-1]
    wa, wb = load_file(str(straight / "final" / "model.safetensors")), load_file(str(split / "final" / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_nonfinite_audio_loss_stops_at_the_last_good_checkpoint(recipe, tmp_path: Path, monkeypatch, capsys) -> None:
    from mmtok.losses import TokenizerLoss

    orig = TokenizerLoss.generator_loss

    def poisoned(self, x, out, step, last_layer=None):
        terms = orig(self, x, out, step, last_layer)
        if step >= 3:
            terms.total = terms.total * float("inf")
        return terms

    monkeypatch.setattr(TokenizerLoss, "generator_loss", poisoned)
    run = tmp_path / "run"
    ov = tiny_run_overrides(run, steps=6, audio=True) + TINY + ["checkpoint.every=2", "logging.every=3"]
    assert recipe["main"]([RVQ_RECIPE, *ov]) == recipe["EXIT_NONFINITE"]
    assert "non-finite loss at step 3" in capsys.readouterr().err
    assert [p.name for p in list_training_states(run / "checkpoints")] == ["step_00000002"]
    assert not (run / "final").exists()


def test_bad_audio_files_are_skipped_and_counted(recipe, tmp_path: Path) -> None:
    folder = tmp_path / "wavs"
    folder.mkdir()
    t = np.arange(4000) / 16000
    for i in range(5):
        sf.write(folder / f"tone{i}.wav", 0.5 * np.sin(2 * np.pi * (200 + 100 * i) * t), 16000)
    sf.write(folder / "silent.wav", np.zeros(4000), 16000)
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    (folder / "empty.flac").write_bytes(b"")
    run = tmp_path / "run"
    ov = tiny_run_overrides(run, steps=4, audio=True) + TINY + [f"data.train={folder}", "optim.batch_size=4"]
    assert recipe["main"]([RVQ_RECIPE, *ov]) == 0
    assert read_metrics(run)[-1]["data/skipped_files"] >= 3  # 8 files, 4 steps x 4: each met at least once
    log = (run / "train.log").read_text()
    assert "broken.wav" in log and "empty.flac" in log and "silent.wav" in log
