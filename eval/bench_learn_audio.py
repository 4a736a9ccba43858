"""Does the tiny audio codec learn speech in a short CPU run? Before / after in one run.

Trains two recipes with the shared loop (``mmtok train``), each within the same CPU-time
budget on 1 thread, in parallel subprocesses:

- ``new``: ``audio/rvq_codec_tiny_speech`` (mel + STFT + SI-SDR waveform term, no quantizer dropout);
- ``old``: ``audio/rvq_codec_tiny_synthetic``'s losses (mel + STFT only, quantizer dropout) on the same speech;

then scores them on held-out speech clips (espeak-ng sentences the training set does not
contain) next to the untrained model and mu-law PCM at the same bitrate (4 and 8 bit,
``mmtok.metrics.baselines.mulaw``). Prints one table and writes JSON under ``runs/``.

    python eval/bench_learn_audio.py --budget-min 10          # about 2 x 10 CPU minutes (2 cores: ~11 min wall)
    python eval/bench_learn_audio.py --budget-min 2 --clips 32 --only new

Steps are set from the budget: a calibration of a few training steps in this process gives
the CPU seconds per step; "CPU min" in the table is the training subprocess's measured CPU time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
SISDR = ["loss.terms.corr.weight=0.0"]  # the recipe without its corr term, for the dB SI-SDR rows
RECIPES = {
    "new": ("audio/rvq_codec_tiny_speech", []),
    "old": ("audio/rvq_codec_tiny_synthetic", []),
    # candidates and earlier settings (not trained by default)
    "sisdr01": ("audio/rvq_codec_tiny_speech", SISDR + ["loss.terms.sisdr.weight=0.1"]),  # the recipe before corr
    "sisdr1": ("audio/rvq_codec_tiny_speech", SISDR + ["loss.terms.sisdr.weight=1.0", "loss.terms.gain.weight=1.0"]),
    "sisdr03": ("audio/rvq_codec_tiny_speech", SISDR + ["loss.terms.sisdr.weight=0.3", "loss.terms.gain.weight=1.0"]),
    "sisdr03g03": ("audio/rvq_codec_tiny_speech", SISDR + ["loss.terms.sisdr.weight=0.3"]),
    "sisdr015": ("audio/rvq_codec_tiny_speech", SISDR + ["loss.terms.sisdr.weight=0.15"]),
    "ema_avg": ("audio/rvq_codec_tiny_speech", SISDR + ["loss.terms.sisdr.weight=0.1", "ema.buffers=average"]),
    "corr2": ("audio/rvq_codec_tiny_speech", ["loss.terms.corr.weight=2.0"]),
    "corr10": ("audio/rvq_codec_tiny_speech", ["loss.terms.corr.weight=10.0"]),
    "corr5g1": ("audio/rvq_codec_tiny_speech", ["loss.terms.gain.weight=1.0"]),
}
DEFAULT = ["new", "old"]
LABELS = {"new": "trained: rvq_codec_tiny_speech recipe (corr 5)", "old": "trained: OLD recipe (mel + STFT, dropout)",
          "sisdr01": "trained: speech recipe, sisdr 0.1 instead of corr (before)",
          "sisdr1": "trained: speech recipe, sisdr 1.0 + gain 1.0", "sisdr03": "trained: speech recipe, sisdr 0.3 + gain 1.0",
          "sisdr03g03": "trained: speech recipe, sisdr 0.3", "sisdr015": "trained: speech recipe, sisdr 0.15",
          "ema_avg": "trained: speech recipe (sisdr 0.1), EMA averaging buffers (old)",
          "corr2": "trained: speech recipe, corr 2", "corr10": "trained: speech recipe, corr 10",
          "corr5g1": "trained: speech recipe, gain 1.0"}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_config(recipe: str, overrides: list[str]) -> Any:
    from mmtok.training.cli import resolve_recipe
    from mmtok.training.config import load_train_config

    return load_train_config(resolve_recipe(recipe), overrides)


def seconds_per_step(cfg: Any, steps: int = 3) -> float:
    """CPU seconds of one generator step (forward, losses, backward, AdamW) of ``cfg``'s model."""
    from mmtok.training.setup import build_loss, build_tokenizer

    torch.manual_seed(0)
    tok = build_tokenizer(cfg).train()
    loss_fn = build_loss(cfg, in_channels=tok.channels, context=tok.preprocessing())
    opt = torch.optim.AdamW(tok.parameters(), lr=cfg.optim.lr)
    x = (0.1 * torch.randn(cfg.optim.batch_size, tok.channels, tok.config.segment_length)).clamp(-1, 1)

    def step(i: int) -> None:
        out = tok(x)
        g = loss_fn.generator_loss(x, out, i, last_layer=tok.last_layer_weight)
        opt.zero_grad()
        g.total.backward()
        opt.step()

    step(0)
    t0 = time.process_time()
    for i in range(steps):
        step(i + 1)
    return (time.process_time() - t0) / steps


def launch(name: str, budget_s: float, train_spec: str, out: Path, seed: int = 0) -> tuple[subprocess.Popen, dict[str, Any]]:
    recipe, extra = RECIPES[name]
    base = [f"data.train={train_spec}", "cpu_threads=1", "resume=never", f"seed={seed}"]
    cfg = load_config(recipe, extra + base)
    sps = seconds_per_step(cfg) * 1.1  # loop overhead: data, EMA, logging
    steps = max(20, int(budget_s / sps))
    run_dir = out / name
    ov = extra + base + [
        f"run_dir={run_dir}", f"schedule.total_steps={steps}",
        f"schedule.warmup_steps={min(cfg.schedule.warmup_steps, steps // 10)}",
        f"checkpoint.every={steps}", "checkpoint.keep_last=1", "logging.image_every=0", "logging.tensorboard=false",
        "logging.progress=false", f"logging.every={max(1, steps // 10)}",
    ]
    cmd = [sys.executable, "-c", "import sys; from mmtok.training.cli import train_main; sys.exit(train_main())", recipe, *ov]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    _log(f"[{name}] {recipe}: {sps:.2f} CPU s/step -> {steps} steps in {budget_s / 60:.1f} CPU min")
    log = open(out / f"{name}.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    return proc, {"recipe": recipe, "steps": steps, "s_per_step_calibrated": sps, "run_dir": str(run_dir), "cmd": cmd[3:]}


def wait_all(procs: dict[str, tuple[subprocess.Popen, dict[str, Any]]]) -> None:
    """Wait for every child; record each one's CPU time (user + sys) from wait4."""
    pending = {p.pid: name for name, (p, _) in procs.items()}
    while pending:
        pid, status, usage = os.wait4(-1, 0)
        if pid not in pending:
            continue
        name = pending.pop(pid)
        info = procs[name][1]
        info["cpu_s"] = usage.ru_utime + usage.ru_stime
        info["returncode"] = os.waitstatus_to_exitcode(status)
        procs[name][0].returncode = info["returncode"]
        _log(f"[{name}] done: exit {info['returncode']}, {info['cpu_s'] / 60:.2f} CPU min")


def heldout_clips(train_n: int, n: int, sample_rate: int, seconds: float) -> torch.Tensor:
    """(n, 1, S) the first ``seconds`` of the sentences ``train_n .. train_n + n - 1`` of
    ``speech:(train_n + n)`` (``speech:train_n`` holds sentences 0 .. train_n - 1 only)."""
    import torch.nn.functional as F

    from mmtok.data.audio import load_audio, speech_corpus

    root = speech_corpus(train_n + n)
    files = sorted((f for f in root.rglob("*.wav") if int(f.stem) >= train_n), key=lambda f: int(f.stem))[:n]
    s = int(round(seconds * sample_rate))
    xs = []
    for f in files:
        w = load_audio(f, sample_rate=sample_rate, channels=1)[0].clamp(-1, 1)[..., :s]
        xs.append(F.pad(w, (0, s - w.shape[-1])))
    return torch.stack(xs)


def score(est: torch.Tensor, ref: torch.Tensor, sample_rate: int) -> dict[str, float]:
    from mmtok.metrics.audio import quality as q

    def nanmean(v: torch.Tensor) -> float:
        ok = torch.isfinite(v)
        return float(v[ok].mean()) if ok.any() else math.nan

    return {
        "si_sdr": float(q.si_sdr(est, ref).mean()),
        "rms_ratio": float(est.pow(2).mean().sqrt() / ref.pow(2).mean().sqrt().clamp_min(1e-12)),
        "mel": float(q.mel_distance(est, ref, sample_rate).mean()),
        "pesq": nanmean(q.pesq_wb(est, ref, sample_rate)),
        "stoi": nanmean(q.stoi(est, ref, sample_rate)),
    }


def reconstruct(tok: Any, x: torch.Tensor, batch: int = 16) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([tok.decode(tok.encode(x[i : i + batch]))[..., : x.shape[-1]] for i in range(0, len(x), batch)])


def table(rows: list[dict[str, Any]]) -> str:
    head = ["method", "kbps", "SI-SDR (dB)", "RMS out/in", "mel dist", "PESQ-WB", "STOI", "CPU min"]
    fmt = lambda v, f: "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, f)  # noqa: E731
    body = [[r["method"], fmt(r["kbps"], ".2f"), fmt(r["si_sdr"], ".2f"), fmt(r["rms_ratio"], ".3f"), fmt(r["mel"], ".3f"),
             fmt(r["pesq"], ".3f"), fmt(r["stoi"], ".3f"), fmt(r.get("cpu_min"), ".2f")] for r in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(head, *body)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, body)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--budget-min", type=float, default=10.0, help="CPU minutes of training per recipe (1 thread)")
    p.add_argument("--clips", type=int, default=32, help="held-out speech clips")
    p.add_argument("--seconds", type=float, default=2.0, help="seconds per held-out clip")
    p.add_argument("--train", type=int, default=512, help="training sentences (speech:N)")
    p.add_argument("--only", choices=sorted(RECIPES), nargs="*", default=None, help="recipes to train (default: new old)")
    p.add_argument("--out", default=str(ROOT / "runs" / "bench_learn_audio"))
    p.add_argument("--seed", type=int, default=0, help="training seed of every recipe (init, data order)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import mmtok
    from mmtok.data.audio import speech_corpus
    from mmtok.metrics.baselines import mulaw

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_spec = f"speech:{args.train}"
    speech_corpus(args.train)  # generate once, before the children race for it
    names = args.only or DEFAULT
    procs = {n: launch(n, args.budget_min * 60, train_spec, out, args.seed) for n in names}
    wait_all(procs)

    first = mmtok.load_tokenizer(Path(procs[names[0]][1]["run_dir"]) / "final", modality="audio").eval()
    sr, kbps = first.sample_rate, float(first.kbps())
    x = heldout_clips(args.train, args.clips, sr, args.seconds)
    rows: list[dict[str, Any]] = []
    for n in names:
        info = procs[n][1]
        if info["returncode"] != 0:
            _log(f"[{n}] failed; see {out / (n + '.log')}")
            continue
        tok = mmtok.load_tokenizer(Path(info["run_dir"]) / "final", modality="audio").eval()
        rows.append({"method": LABELS[n], "kbps": float(tok.kbps()), **score(reconstruct(tok, x), x, sr),
                     "cpu_min": info["cpu_s"] / 60, "steps": info["steps"]})
    torch.manual_seed(0)
    untrained = type(first)(first.config).eval()
    rows.append({"method": "untrained (seed 0)", "kbps": kbps, **score(reconstruct(untrained, x), x, sr), "cpu_min": 0.0})
    for b in (4, 8):
        from mmtok.metrics.baselines import mulaw_rate

        rows.append({"method": f"mu-law {b} bit @ {mulaw_rate(kbps, b)} Hz", "kbps": kbps,
                     **score(mulaw(x, sr, kbps, b), x, sr), "cpu_min": 0.0})
    text = table(rows)
    print(f"held-out speech: {len(x)} clips x {args.seconds:g} s at {sr} Hz (sentences {args.train}..); "
          f"budget {args.budget_min:g} CPU min per recipe, 1 thread")
    print(text)
    report = {"budget_min": args.budget_min, "clips": len(x), "seconds": args.seconds, "train": train_spec,
              "sample_rate": sr, "runs": {n: procs[n][1] for n in names}, "rows": rows}
    path = out / "results.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nJSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
