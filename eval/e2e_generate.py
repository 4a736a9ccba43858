"""End to end on CPU: train the tiny tokenizer -> encode shards -> train the tiny AR -> sample ->
decode -> gFID, with the samples grid. Each stage is the ``mmtok`` command a user would run
(printed before it runs), so this file doubles as the documented command list.

    python eval/e2e_generate.py --out runs/e2e                       # Inception from the torch hub cache
    python eval/e2e_generate.py --out runs/e2e --inception-weights random   # smoke run: random Inception (gFID not comparable)

Defaults take about 10-15 minutes on a 2-core CPU: tokenizer 2000 steps (the main job),
2048 encoded synthetic images, AR tiny 1500 steps, 256 samples scored against 1024 reference
images. ``--quick`` shrinks every stage to a couple of minutes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def run(cmd: list[str]) -> None:
    from mmtok.cli import main

    print("\n$ mmtok " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    code = main(cmd)
    print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    if code != 0:
        sys.exit(f"stage failed with exit code {code}: mmtok {' '.join(cmd)}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/e2e", help="folder for every stage's outputs")
    p.add_argument("--quick", action="store_true", help="tiny budgets (a smoke run)")
    p.add_argument("--inception-weights", default="auto", help="'auto' (torch hub cache), a path, or 'random' (smoke runs only)")
    p.add_argument("--cfg-scale", type=float, default=1.5)
    args = p.parse_args()
    out = Path(args.out)
    tok_steps, n_encode, ar_steps, n_gen, n_ref = (150, 512, 200, 64, 128) if args.quick else (2000, 2048, 1500, 256, 1024)
    weights = args.inception_weights
    if weights == "random":
        from mmtok.metrics import save_random_inception_weights

        weights = str(save_random_inception_weights(out / "inception_random.pth"))
        print("note: random-init Inception: the gFID below checks the pipeline, it is not comparable to published numbers")
    tok, tokens, ar = out / "tokenizer", out / "tokens", out / "ar"
    t0 = time.perf_counter()
    run(["train", "image/titok_t32_fsq_synthetic", f"run_dir={tok}", f"schedule.total_steps={tok_steps}",
         "logging.progress=false"])
    run(["encode", str(tok / "final"), f"synthetic:{n_encode}", str(tokens), "--batch-size", "64", "--workers", "0", "--no-progress"])
    run(["train", "ar/ar_tiny_synthetic", f"run_dir={ar}", f"data.shards={tokens}", f"data.tokenizer={tok / 'final'}",
         f"schedule.total_steps={ar_steps}", "logging.progress=false"])
    run(["generate", str(ar / "final"), "--tokenizer", str(tok / "final"), "--num", str(n_gen), "--cfg-scale",
         str(args.cfg_scale), "--out", str(out / "samples"), "--fid", "--reference", f"synthetic:{n_ref}",
         "--inception-weights", weights])
    rep = json.loads((out / "samples" / "report.json").read_text())
    print(f"\nend to end in {time.perf_counter() - t0:.0f} s: gFID {rep['gfid']:.2f} ({n_gen} samples vs {n_ref} "
          f"reference images, protocol {rep['protocol']['id']}); grid: {out / 'samples' / 'grid.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
