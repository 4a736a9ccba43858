"""``mmtok generate GENERATOR --tokenizer TOK --num N``: sample tokens, decode them, save the media, gFID.

    mmtok generate runs/ar/final --tokenizer runs/tok/final --num 64 --cfg-scale 2.0 --out samples/
    mmtok generate runs/ar/final --tokenizer runs/tok/final --num 1000 --fid --reference synthetic:1000

The generator's ``ar_config.json`` records the shards it was trained on; a tokenizer whose
identity (name, config hash, weights hash) differs is refused. Samples are written by the
modality's sample writer (PNG / WAV / MP4) plus, for images, ``grid.png``. ``--fid`` (images)
computes gFID with the rFID machinery: the same Inception features and statistics, against
reference statistics of a dataset spec (``--reference synthetic:N`` or a folder, opened at the
tokenizer's preprocessing) or an ``.npz`` with ``mu`` / ``sigma``; the protocol is fingerprinted
into ``report.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

PROG = "mmtok generate"


def ids_to_codes(ids: torch.Tensor, shards_meta: dict[str, Any]) -> torch.Tensor:
    """Generated ids (N, L) in the generator's vocabulary -> tokenizer codes (N, *codes_shape):
    residual levels are un-offset (TokenDataset's ``level_offsets``), the grid is restored."""
    sizes = [int(k) for k in shards_meta["codebook_sizes"]]
    shape = [int(s) for s in shards_meta["token_shape"]]
    codes = ids.long().clone()
    if len(sizes) > 1:
        starts = torch.tensor([sum(sizes[:q]) for q in range(len(sizes))], device=ids.device)
        level = torch.arange(ids.shape[1], device=ids.device) % len(sizes)
        codes = codes - starts[level]
    return codes.reshape(ids.shape[0], *shape)


def check_tokenizer(tok_dir: str | Path, shards_meta: dict[str, Any]) -> None:
    """Refuse a tokenizer that did not make the shards the generator learned from."""
    from mmtok.shards.identity import checkpoint_identity

    ident = checkpoint_identity(tok_dir)
    for key in ("tokenizer", "config_hash", "checkpoint_hash"):
        if shards_meta.get(key) and ident.get(key) != shards_meta.get(key):
            raise ValueError(f"the generator was trained on tokens of {shards_meta.get('tokenizer')} "
                             f"({key} {str(shards_meta.get(key))[:16]}), but {tok_dir} has {key} {str(ident.get(key))[:16]}; "
                             "pass the tokenizer checkpoint the shards were encoded with")


def gfid(images: torch.Tensor, reference: str, tok: Any, inception_weights: str, batch_size: int = 32) -> dict[str, Any]:
    """gFID of generated uint8 images (N, 3, H, W) against a dataset spec or an ``.npz`` of statistics."""
    from mmtok.metrics.fid import FeatureStats, GaussianStats, fid_from_stats
    from mmtok.metrics.image.inception import FEATURE_DIM, get_inception

    net = get_inception(inception_weights)
    fake = FeatureStats(FEATURE_DIM)
    for i in range(0, len(images), batch_size):
        fake.update(net(images[i: i + batch_size]))
    if str(reference).endswith(".npz"):
        ref, source = GaussianStats.load(reference), f"statistics file {reference}"
    else:
        from mmtok.data import make_loader, open_dataset, to_uint8

        ds = open_dataset(reference, modality="image", **tok.preprocessing())
        real = FeatureStats(FEATURE_DIM)
        for batch in make_loader(ds, batch_size=batch_size, shuffle=False):
            if batch["x"] is not None:
                real.update(net(to_uint8(batch["x"])))
        ref, source = real.compute(), f"dataset {reference} ({len(ds)} images)"
    gen = fake.compute()
    return {"gfid": float(fid_from_stats(gen, ref)), "num_generated": len(images), "reference": source,
            "feature_extractor": net.describe()}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Sample from an AR generator, decode with its tokenizer, save; optional gFID.")
    p.add_argument("generator", help="AR generator directory (run_dir/final of an mmtok train configs/ar/... run)")
    p.add_argument("--tokenizer", required=True, help="the tokenizer checkpoint the training shards were encoded with")
    p.add_argument("--num", type=int, default=16, help="number of samples")
    p.add_argument("--labels", default=None, help="comma-separated class labels (cycled); default: 0..C-1 cycled")
    p.add_argument("--cfg-scale", type=float, default=1.0, help="classifier-free guidance scale (1 = conditional)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--num-tokens", type=int, default=None, help="nested 1D tokenizers: generate this many tokens and decode the prefix")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-cache", action="store_true", help="sample without the KV cache (same tokens, slower)")
    p.add_argument("--flow-steps", type=int, default=None,
                   help="flow-decoder tokenizers: sampling steps of decode (default: the tokenizer's)")
    p.add_argument("--flow-cfg-scale", type=float, default=None,
                   help="flow-decoder tokenizers: guidance scale of decode (default: the tokenizer's)")
    p.add_argument("--out", default=None, help="output folder (default: GENERATOR/../samples)")
    p.add_argument("--fid", action="store_true", help="images: compute gFID")
    p.add_argument("--reference", default=None, help="gFID reference: a dataset spec or an .npz with mu/sigma")
    p.add_argument("--inception-weights", default="auto")
    p.add_argument("--device", default=None)
    p.add_argument("--debug", action="store_true")
    return p


def _is_flow(tok: Any) -> bool:
    from mmtok.metrics.flow_sweep import supports_flow_steps

    return supports_flow_steps(tok)


def _run(args: argparse.Namespace) -> int:
    import mmtok
    from mmtok.ar.sampling import sample
    from mmtok.ar.train import load_generator
    from mmtok.metrics.protocol import protocol_fingerprint
    from mmtok.shards.format import ShardMetadata
    from mmtok.shards.writers import sample_writer_for

    if args.num < 1:
        raise ValueError(f"--num must be >= 1, got {args.num}")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, meta = load_generator(args.generator, device)
    shards = meta["shards"]
    check_tokenizer(args.tokenizer, shards)
    tok = mmtok.load_tokenizer(args.tokenizer, device=device)
    flow_kw: dict[str, Any] = {}
    if args.flow_steps is not None or args.flow_cfg_scale is not None or _is_flow(tok):
        if not _is_flow(tok):
            raise ValueError("--flow-steps / --flow-cfg-scale need a tokenizer with a flow decoder (a *_flow variant)")
        flow_kw = {"steps": args.flow_steps, "cfg_scale": args.flow_cfg_scale}
    spec = meta["generator"]
    length = int(spec["max_len"])
    if args.num_tokens is not None:
        if not tok.is_nested or not 1 <= args.num_tokens <= length:
            raise ValueError(f"--num-tokens needs a nested 1D tokenizer and a value in [1, {length}]")
        length = args.num_tokens
    labels = None
    if spec.get("num_classes"):
        pool = [int(v) for v in args.labels.split(",")] if args.labels else list(range(int(spec["num_classes"])))
        labels = torch.tensor([pool[i % len(pool)] for i in range(args.num)], device=device)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    ids = sample(model, args.num, length, labels=labels, temperature=args.temperature, top_k=args.top_k,
                 top_p=args.top_p, cfg_scale=args.cfg_scale, use_cache=not args.no_cache,
                 batch_size=args.batch_size, generator=gen)
    if length < int(spec["max_len"]):
        codes = ids.long()  # a prefix of nested 1D tokens decodes directly
    else:
        codes = ids_to_codes(ids, shards)
    out = Path(args.out) if args.out else Path(args.generator).resolve().parent / "samples"
    out.mkdir(parents=True, exist_ok=True)
    recon = []
    with torch.no_grad():
        for i in range(0, args.num, args.batch_size):
            # flow decoders sample: one seed per batch, derived from --seed (same command, same images)
            decode_kw = {**flow_kw, "seed": args.seed + i} if flow_kw else {}
            recon.append(tok.decode(codes[i: i + args.batch_size], **decode_kw).float().clamp(-1, 1).cpu())
    x = torch.cat(recon)
    writer = sample_writer_for(tok.modality)(out, ShardMetadata.from_dict(shards))
    keys = [f"sample_{i:05d}" + (f"_class{int(labels[i])}" if labels is not None else "") for i in range(args.num)]
    writer.write_batch({"recon": x, "key": keys, "aug": ["orig"] * args.num})
    report: dict[str, Any] = {"generator": str(args.generator), "tokenizer": str(args.tokenizer), "num": args.num,
                              "sampling": {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p,
                                           "cfg_scale": args.cfg_scale, "seed": args.seed, "tokens": length,
                                           "kv_cache": not args.no_cache}}
    if tok.modality == "image":
        from torchvision.utils import make_grid

        from mmtok.training.samples import save_grid_png

        save_grid_png(make_grid(x[:64] * 0.5 + 0.5, nrow=8, padding=2, pad_value=1.0), out / "grid.png")
        report["grid"] = "grid.png"
    if args.fid:
        if tok.modality != "image":
            raise ValueError(f"--fid is defined for images; this tokenizer is {tok.modality}")
        if not args.reference:
            raise ValueError("--fid needs --reference (a dataset spec such as synthetic:1000, a folder, or an .npz)")
        from mmtok.data import to_uint8

        fid = gfid(to_uint8(x), args.reference, tok, args.inception_weights, args.batch_size)
        report["gfid"] = fid["gfid"]
        report["protocol"] = protocol_fingerprint({"metric": "gFID", "num_generated": fid["num_generated"],
                                                   "reference": fid["reference"], "sampling": report["sampling"],
                                                   "feature_extractor": fid["feature_extractor"]})
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.num} samples to {out}" + (f"; gFID {report['gfid']:.3f} vs {args.reference}" if "gfid" in report else ""))
    return 0


def generate_main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return _run(args)
    except (ValueError, FileNotFoundError, KeyError, TypeError) as e:
        if args.debug:
            raise
        print(f"{PROG}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
