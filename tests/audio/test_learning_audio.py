"""Does the audio codec learn the waveform (phase and level), not just the spectral envelope?

Fast: the structural fix. A waveform L1 rewards shrinking an output whose phase is
uncertain (the cause of the old near-silent, -40 dB SI-SDR codecs); the ``sisdr`` and ``corr``
terms do not, and they lift SI-SDR in a few steps where mel + STFT alone do not.
Slow: the ``rvq_codec_tiny_speech`` recipe on espeak-ng speech for under 4 CPU minutes beats
mu-law at the same bitrate on mel distance and reaches an SI-SDR far above the old mel + STFT
recipe (measured: -0.9 dB at 200 steps with the corr term, -6.1 dB with sisdr 0.1, vs the old
recipe's -30.5 dB after 10 CPU minutes; 10 CPU minutes reach +1.8 dB, see docs/audio.md).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import torch

import mmtok
from mmtok.losses import CorrelationLoss, GainLoss, SISDRLoss, TokenizerLoss
from mmtok.metrics.audio.quality import mel_distance, si_sdr
from mmtok.metrics.baselines import mulaw

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "mmtok" / "configs" / "audio" / "rvq_codec_tiny_speech.yaml"


def _voiced(n: int, s: int, sr: int = 16000, seed: int = 0) -> torch.Tensor:
    """(n, 1, s) harmonic 'vowels': random pitch, decaying harmonics, a slow envelope."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(s) / sr
    out = []
    for _ in range(n):
        f0 = 100 + 150 * torch.rand((), generator=g)
        w = sum((0.6 / k) * torch.sin(2 * torch.pi * k * f0 * t + 6.28 * torch.rand((), generator=g)) for k in range(1, 8))
        env = 0.5 + 0.5 * torch.sin(2 * torch.pi * 3 * t + 6.28 * torch.rand((), generator=g))
        out.append((0.15 * w * env)[None])
    return torch.stack(out)


def test_waveform_l1_rewards_shrinking_sisdr_does_not() -> None:
    x = _voiced(4, 4000)
    shifted = torch.roll(x, 20, dims=-1)  # right spectrum, wrong phase: what a mel-trained codec outputs
    l1 = lambda y: (y - x).abs().mean()  # noqa: E731
    assert l1(0.2 * shifted) < l1(shifted)  # L1 prefers a quieter wrong-phase output...
    sisdr = SISDRLoss()
    assert torch.allclose(sisdr(0.2 * shifted, x), sisdr(shifted, x), atol=1e-3)  # ...SI-SDR is scale-blind
    assert sisdr(x + 0.01 * torch.randn_like(x), x) < sisdr(shifted, x)
    gain = GainLoss()
    assert gain(x, x) == 0 and torch.isclose(gain(0.1 * x, x), torch.tensor(1.0), atol=1e-3)  # one decade
    assert torch.isclose(-sisdr(shifted, x), si_sdr(shifted, x).mean().float(), atol=1e-2)  # = the metric


def test_correlation_loss_is_the_bounded_form_of_sisdr() -> None:
    x = _voiced(4, 4000)
    corr, sisdr = CorrelationLoss(), SISDRLoss()
    noisy = [x + s * x.std() * torch.randn_like(x) for s in (0.01, 0.3, 1.0)]
    c = torch.stack([corr(y, x) for y in noisy])
    assert torch.all(c[1:] > c[:-1]) and c[0] < 1e-3  # more noise, larger loss; ~0 when equal
    assert torch.allclose(corr(0.2 * noisy[1], x), c[1], atol=1e-5)  # scale-blind like SI-SDR
    # SI-SDR is a function of the correlation alone: 10 log10(rho^2 / (1 - rho^2))
    rho = 1 - CorrelationLoss()(noisy[2][:1], x[:1])
    assert torch.isclose(-sisdr(noisy[2][:1], x[:1]), 10 * torch.log10(rho**2 / (1 - rho**2)), atol=1e-2)
    assert torch.isclose(corr(-x, x), torch.tensor(2.0), atol=1e-4)  # bounded in [0, 2]
    assert corr(torch.zeros_like(x), x) == 1  # a silent output: finite loss, no NaN
    # the gradient does not blow up for a nearly uncorrelated output (the dB form's does)
    y = torch.randn_like(x).requires_grad_()
    corr(y, x).backward()
    g_corr = y.grad.norm()
    y.grad = None
    sisdr(y, x).backward()
    assert torch.isfinite(g_corr) and g_corr < y.grad.norm()
    assert corr(x, torch.zeros_like(x)) == 0  # silent targets are left out


def test_waveform_terms_learn_phase_in_a_few_steps() -> None:
    """Same model, data and steps: mel + STFT alone stay far below 0 dB; + sisdr or + corr climbs."""
    torch.set_num_threads(1)
    x = _voiced(4, 1600)
    small = dict(segment_length=1600, strides=(2, 4), latent_dim=8, base_channels=8, decoder_channels=32,
                 quantizer={"type": "rvq", "num_levels": 2, "codebook_size": 32, "codebook_dim": 4, "quantizer_dropout": False})

    def train(term: str, weight: float) -> float:
        torch.manual_seed(0)
        tok = mmtok.create_tokenizer("rvq_codec_tiny", **small).train()
        terms = {"mel": (1.0, {"sample_rate": 16000, "n_mels": (10, 20, 40), "window_lengths": (64, 128, 256)}),
                 "stft": (1.0, {"fft_sizes": (256,), "hop_sizes": (64,), "win_lengths": (256,)}),
                 term: (weight, {})}
        loss_fn = TokenizerLoss.from_weights(l1_weight=0.0, perceptual=None, extra_terms=terms)
        opt = torch.optim.AdamW(tok.parameters(), lr=3e-3, betas=(0.8, 0.99))
        for step in range(40):
            g = loss_fn.generator_loss(x, tok(x), step)
            opt.zero_grad()
            g.total.backward()
            opt.step()
        with torch.no_grad():
            return float(si_sdr(tok(x).recon, x).mean())

    t0 = time.process_time()
    spectral_only, with_sisdr, with_corr = train("sisdr", 0.0), train("sisdr", 0.1), train("corr", 5.0)
    assert with_sisdr > spectral_only + 3, (spectral_only, with_sisdr)
    assert with_corr > spectral_only + 3, (spectral_only, with_corr)
    assert time.process_time() - t0 < 45


def test_speech_recipe_asks_for_the_waveform() -> None:
    from mmtok.training.config import load_train_config

    cfg = load_train_config(RECIPE)
    assert cfg.loss.terms["corr"]["weight"] > 0 and cfg.loss.terms["mel"]["weight"] > 0
    assert cfg.model.overrides["quantizer"]["quantizer_dropout"] is False
    assert cfg.data.train.startswith("speech")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="the speech dataset needs espeak-ng")
def test_tiny_speech_codec_learns_speech(tmp_path: Path) -> None:
    """A short run of the recipe (<= 4 CPU min, 1 thread): on held-out sentences SI-SDR above
    -4 dB (the old recipe: -30.5 dB after 10 CPU min; measured here: -0.9 dB), the level
    within 0.6-1.5x (measured 0.74), and the mel distance beats mu-law 4 / 8 bit at 3.2 kbps."""
    import sys

    sys.path.insert(0, str(ROOT / "eval"))
    from bench_learn_audio import heldout_clips

    from mmtok.training import load_train_config, train

    torch.set_num_threads(1)
    run = tmp_path / "run"
    cfg = load_train_config(RECIPE, [f"run_dir={run}", "schedule.total_steps=200", "schedule.warmup_steps=20",
                                     "checkpoint.every=200", "logging.image_every=0", "logging.tensorboard=false",
                                     "logging.progress=false", "cpu_threads=1"])
    t0 = time.process_time()
    assert train(cfg) == 0
    assert time.process_time() - t0 < 4 * 60
    tok = mmtok.load_tokenizer(run / "final", modality="audio").eval()
    x = heldout_clips(512, 8, tok.sample_rate, 2.0)
    with torch.inference_mode():
        y = tok.decode(tok.encode(x))[..., : x.shape[-1]]
    sdr = float(si_sdr(y, x).mean())
    assert sdr > -4, sdr
    rms = float(y.pow(2).mean().sqrt() / x.pow(2).mean().sqrt())
    assert 0.6 < rms < 1.5, rms
    mel = float(mel_distance(y, x, tok.sample_rate).mean())
    for bits in (4, 8):
        assert mel < float(mel_distance(mulaw(x, tok.sample_rate, tok.kbps(), bits), x, tok.sample_rate).mean())
