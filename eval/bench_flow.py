#!/usr/bin/env python
"""The flow decoder beside the deterministic decoder: decode speed vs flow steps, and quality
after a short CPU training run on real photos.

1. Speed: ``flextok_t32_fsq_flow`` and ``flextok_t32_fsq`` at 64x64 (patch 8, 32 tokens),
   decode img/s at batch ``--batch`` for each number of Euler steps (``--steps``), with and
   without classifier-free guidance (which doubles the batch), beside the deterministic
   decoder, measured in the same process, one thread.
2. Learning (``--budget-min`` CPU minutes per row, one thread, process CPU time): both
   presets trained on ``photos`` crops (flow: its flow loss; deterministic: L1 + L2), then
   held-out ``photos_val`` crops encoded and decoded with all 32 tokens: PSNR, and LPIPS
   (VGG) when its trunk weights are in the local torch cache (never downloaded; otherwise
   the table says so and LPIPS is not reported).

    python eval/bench_flow.py                          # speed + 4 CPU min per row
    python eval/bench_flow.py --budget-min 0 --steps 1 4 16
    python eval/bench_flow.py --skip-speed --budget-min 6

The JSON goes to ``runs/bench_flow/<time>.json`` (``--json`` to choose).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # eval/benchlib.py
from benchlib import learn_bench_args, run_learn_rows, table, train_for_cpu_budget, write_learn_json  # noqa: E402

RES, PATCH = 64, 8
COMMON = dict(image_size=RES, patch_size=PATCH, latent_norm="batch", qk_norm=True)
OPTIM = dict(batch=32, lr=1e-3, warmup_steps=100, betas=(0.9, 0.99), weight_decay=1e-4, min_lr_ratio=0.1, ema=0.995)
ROWS: dict[str, dict[str, Any]] = {
    "deterministic": dict(label="flextok_t32_fsq (ViT decoder, L1 + L2)", preset="flextok_t32_fsq",
                          overrides=COMMON, optim={**OPTIM, "l1": 1.0, "l2": 1.0}),
    "flow": dict(label="flextok_t32_fsq_flow (DiT flow decoder, flow loss)", preset="flextok_t32_fsq_flow",
                 overrides={**COMMON, "flow_patch_size": PATCH}, optim={**OPTIM, "l1": 0.0, "l2": 0.0}),
    "flow_x": dict(label="flextok_t32_fsq_flow, prediction=x (clean-sample output, velocity loss)",
                   preset="flextok_t32_fsq_flow", overrides={**COMMON, "flow_patch_size": PATCH, "prediction": "x"},
                   optim={**OPTIM, "l1": 0.0, "l2": 0.0}),
}
EVAL_STEPS = (4, 25)


def set_threads() -> None:
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)


def lpips_or_reason() -> tuple[Any, str | None]:
    """The VGG LPIPS metric from the local torch cache, or (None, why it is missing)."""
    from mmtok.layers.lpips import LPIPS

    try:
        return LPIPS(net="vgg", weights="auto"), None
    except FileNotFoundError as e:
        return None, str(e).split(". ")[0]


def held_out(n: int, seed: int = 0):
    import torch

    from mmtok.data import open_dataset

    ds = open_dataset(f"photos_val:{n}", "image", resolution=RES, seed=seed)
    return torch.stack([ds[i]["x"] for i in range(len(ds))])


def psnr(a, b) -> float:
    import torch

    mse = ((a.clamp(-1, 1) - b) / 2).pow(2).flatten(1).mean(1)
    return float((10 * torch.log10(1 / mse.clamp_min(1e-10))).mean())


def evaluate(tok: Any, x, flow: bool) -> dict[str, Any]:
    import torch

    lp, why = lpips_or_reason()
    tok.eval()
    out: dict[str, Any] = {}
    with torch.no_grad():
        codes = torch.cat([tok.encode(x[i:i + 16]) for i in range(0, len(x), 16)])
        settings = [(s, 1.0) for s in EVAL_STEPS] + [(EVAL_STEPS[-1], 2.0)] if flow else [(None, None)]
        for steps, cfg in settings:
            kw = dict(steps=steps, cfg_scale=cfg, seed=0) if flow else {}
            rec = torch.cat([tok.decode(codes[i:i + 16], **kw) for i in range(0, len(x), 16)])
            key = f"flow_steps{steps}_cfg{cfg:g}" if flow else "decode"
            out[key] = {"psnr": psnr(rec, x),
                        "lpips": float(lp(rec, x).mean()) if lp is not None else None}
    out["lpips_missing"] = why
    out["used_codes"] = int(codes.unique().numel())
    return out


def train_row(spec: dict[str, Any], budget_s: float, val: int, seed: int) -> dict[str, Any]:
    import torch

    import mmtok
    from mmtok.data import open_dataset

    set_threads()
    torch.manual_seed(seed)
    tok = mmtok.create_tokenizer(spec["preset"], **spec["overrides"])
    data = open_dataset("photos:1000000", "image", resolution=RES, flip=True, seed=seed)
    model, steps, used = train_for_cpu_budget(tok, data, spec["optim"], budget_s)
    res = evaluate(model, held_out(val, seed), spec["preset"].endswith("_flow"))
    best = res.get("decode") or res[f"flow_steps{EVAL_STEPS[-1]}_cfg1"]
    return {"row": spec["row"], "label": spec["label"], "steps": steps, "cpu_s": used,
            "params_m": tok.num_parameters() / 1e6, "psnr": best["psnr"], **res}


def speed(batch: int, steps_list: list[int], repeat: int) -> list[dict[str, Any]]:
    import torch

    import mmtok

    set_threads()
    torch.manual_seed(0)
    det = mmtok.create_tokenizer("flextok_t32_fsq", **COMMON).eval()
    flow = mmtok.create_tokenizer("flextok_t32_fsq_flow", **COMMON, flow_patch_size=PATCH).eval()
    x = held_out(batch)
    codes = det.encode(x)

    def rate(fn) -> float:
        fn()  # warm-up
        t0 = time.perf_counter()
        for _ in range(repeat):
            fn()
        return batch * repeat / (time.perf_counter() - t0)

    with torch.no_grad():
        rows = [{"decoder": "deterministic (ViT 128x2)", "steps": "-", "cfg": "-",
                 "img_s": rate(lambda: det.decode(codes))}]
        for s in steps_list:
            for cfg in (1.0, 2.0):
                rows.append({"decoder": "flow (DiT 128x4)", "steps": s, "cfg": cfg,
                             "img_s": rate(lambda: flow.decode(codes, steps=s, cfg_scale=cfg, seed=0))})
    base = rows[0]["img_s"]
    for r in rows:
        r["vs_deterministic"] = r["img_s"] / base
    return rows


def main() -> None:
    p = learn_bench_args(__doc__, "bench_flow", list(ROWS), list(ROWS), budget_min=4.0, val=64, what="photo crops")
    p.add_argument("--steps", type=int, nargs="*", default=[1, 2, 4, 8, 16, 32], help="flow steps to time")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--skip-speed", action="store_true")
    args = p.parse_args()
    if args._one:
        run_learn_rows(os.path.abspath(__file__), args, ROWS, train_row)
        return
    facts: dict[str, Any] = {"resolution": RES, "tokens": 32, "threads": 1}
    if not args.skip_speed:
        rows = speed(args.batch, args.steps, args.repeat)
        print(f"\ndecode speed at {RES}x{RES}, batch {args.batch}, 1 thread (untrained weights; speed does not depend on them)")
        print(table(["decoder", "flow steps", "cfg scale", "img/s", "x deterministic"],
                    [[r["decoder"], r["steps"], r["cfg"], f"{r['img_s']:.1f}", f"{r['vs_deterministic']:.3f}"] for r in rows]))
        facts["speed"] = rows
    results: list[dict[str, Any]] = []
    if args.budget_min > 0:
        got = run_learn_rows(os.path.abspath(__file__), args, ROWS, train_row) or {}
        results = [got[r] for r in args.rows]
        print(f"\nheld-out photos_val ({args.val} crops, {RES}x{RES}), all 32 tokens, after {args.budget_min:g} CPU min per row")
        body = []
        for r in results:
            for key in [k for k in r if k == "decode" or k.startswith("flow_steps")]:
                lp = r[key]["lpips"]
                body.append([r["label"], key, f"{r['params_m']:.2f}M", r["steps"], f"{r[key]['psnr']:.2f}",
                             "n/a" if lp is None else f"{lp:.4f}"])
        print(table(["row", "decode", "params", "train steps", "PSNR dB", "LPIPS (vgg)"], body))
        missing = next((r["lpips_missing"] for r in results if r.get("lpips_missing")), None)
        if missing:
            print(f"\nLPIPS not measured: {missing}")
    write_learn_json(args, "bench_flow", results, **facts)


if __name__ == "__main__":
    main()
