"""``mmtok encode`` / ``mmtok decode`` / ``mmtok inspect`` (dispatched from ``mmtok.cli``)."""

from __future__ import annotations

import argparse
import json
import os
import sys


def _user_errors(prog: str):
    """Decorator: report bad input (missing paths, mismatched shards, bad values) as one line, exit code 2."""

    def wrap(fn):
        def run(argv: list[str] | None = None) -> int:
            try:
                return fn(argv)
            except (FileNotFoundError, NotADirectoryError, ValueError, NotImplementedError, ImportError) as e:
                print(f"{prog}: error: {e}", file=sys.stderr)
                return 2

        run.__name__, run.__doc__ = fn.__name__, fn.__doc__
        return run

    return wrap


def _encode_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mmtok encode",
        description="Encode a dataset into token shards (Parquet). Rerun the same command to resume; "
        "launch with torchrun for several GPUs/nodes (each rank writes its own shards).",
    )
    p.add_argument("checkpoint", help="tokenizer checkpoint directory (save_pretrained output)")
    p.add_argument("input", help="dataset of the tokenizer's modality (image: folder, tar shards (glob or {a..b}), "
                   "or synthetic:N; audio: folder of wav/flac/ogg, or synthetic:N; video: folder of "
                   "mp4/webm/mkv/avi/mov, or synthetic:N)")
    p.add_argument("output_dir", help="folder for shard-NNNNNN.parquet, manifest.json, errors.jsonl")
    # Modality options (see mmtok.shards.encode.OPTION_GROUPS); unset = the modality's default.
    img = p.add_argument_group("image and video options")
    img.add_argument("--resolution", type=int, default=None, help="input size (default: the tokenizer's preprocessing)")
    img.add_argument("--crop", choices=["center", "random"], default=None,
                     help="square crop of each image / clip (center)")
    img.add_argument("--flip", action="store_true", default=None, help="also store a horizontally flipped copy of every item")
    img = p.add_argument_group("image options")
    img.add_argument("--crops", type=int, default=None, help="multi-crop copies (1-5: center, then corners; 1)")
    img.add_argument("--crop-scale", type=float, default=None, help="resize factor before multi-crop (1.125)")
    vid = p.add_argument_group("video options")
    vid.add_argument("--num-frames", type=int, default=None,
                     help="frames per clip (default: the tokenizer's preprocessing; causal: 1 + n * temporal factor)")
    vid.add_argument("--fps", type=float, default=None,
                     help="resample every video's timeline to this frame rate (default: each file's own rate)")
    vid.add_argument("--frame-stride", type=int, default=None, help="take every n-th frame of the timeline (1)")
    vid.add_argument("--clip", choices=["chunks", "start", "random"], default=None,
                     help="items of a video: chunks (default: every video in consecutive clips keyed "
                     "<file>@<start_frame>), start (the first clip only), random (one seeded random clip)")
    aud = p.add_argument_group("audio options")
    aud.add_argument("--segment", choices=["chunks", "start", "random"], default=None,
                     help="items of a file: chunks (default: every file in consecutive segments keyed <file>@<offset>), "
                     "start (the first segment only), random (one seeded random segment)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--shard-size", type=int, default=4096, help="source items per shard")
    p.add_argument("--workers", type=int, default=None,
                   help="data decoding processes; 0: one background decode thread (default: up to 8 with CUDA, "
                   "0 on a CPU)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda:LOCAL_RANK if available)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    p.add_argument("--compression", default="zstd", help="Parquet compression codec")
    p.add_argument("--seed", type=int, default=0, help="seed of random dataset transforms (e.g. random crops)")
    p.add_argument("--engine", choices=["torch", "ray"], default="torch")
    p.add_argument("--ray-address", default=None, help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--ray-actors", type=int, default=None, help="model actors (default: GPUs, or 1 on CPU)")
    p.add_argument("--ray-gpus-per-actor", type=float, default=None, help="GPUs per actor (default 1 if GPUs, else 0)")
    p.add_argument("--no-progress", action="store_true")
    return p


@_user_errors("mmtok encode")
def encode_main(argv: list[str] | None = None) -> int:
    from mmtok.shards.encode import OPTION_GROUPS

    args = _encode_parser().parse_args(argv)
    common = dict(batch_size=args.batch_size, shard_size=args.shard_size, precision=args.precision,
                  compression=args.compression, seed=args.seed,
                  **{k: getattr(args, k) for k in OPTION_GROUPS if getattr(args, k) is not None})
    if args.engine == "ray":
        from mmtok.shards.ray_engine import encode_with_ray

        manifest = encode_with_ray(args.checkpoint, args.input, args.output_dir, address=args.ray_address,
                                   num_actors=args.ray_actors, gpus_per_actor=args.ray_gpus_per_actor,
                                   num_workers=args.workers, device=args.device, **common)
        print(f"wrote {len(manifest['shards'])} shards, {manifest['num_items']} items, "
              f"{manifest['num_errors']} errors to {args.output_dir}")
        return 0
    from mmtok.shards.encode import encode_dataset

    res = encode_dataset(args.checkpoint, args.input, args.output_dir, num_workers=args.workers,
                         device=args.device, progress=not args.no_progress, **common)
    print(f"rank {res.rank}/{res.world_size}: wrote {len(res.shards_written)} shards "
          f"({res.items_written} items, {res.items_per_second:.1f} items/s), skipped {len(res.shards_skipped)} "
          f"finished shards, {len(res.errors)} inputs skipped")
    if res.errors:
        print(f"  skipped inputs are listed in {os.path.join(args.output_dir, 'errors.jsonl')}")
    if res.manifest is not None:
        print(f"manifest: {res.manifest['num_items']} items in {len(res.manifest['shards'])} shards")
    else:
        print("manifest: written by the last rank to finish")
    return 0


@_user_errors("mmtok decode")
def decode_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mmtok decode", description="Decode token shards back to media files "
                                "(the writer of the shards' modality: PNG for images, WAV for audio, MP4 for video "
                                "at each clip's recorded frame rate).")
    p.add_argument("shards", help="shard folder, shard file or glob")
    p.add_argument("out", help="output folder for <key>[__<aug>].<ext>")
    p.add_argument("--join", action="store_true", help="audio: write one WAV per source file, its chunks "
                   "(<file>@<offset>) put back in offset order and trimmed to their valid lengths")
    p.add_argument("--checkpoint", default=None, help="tokenizer checkpoint (default: the path recorded in the shards)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default=None)
    p.add_argument("--limit", type=int, default=None, help="decode only the first N items")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    from mmtok.shards.decode import decode_to_files

    n = decode_to_files(args.shards, args.out, args.checkpoint, batch_size=args.batch_size, device=args.device,
                         limit=args.limit, join=args.join, progress=not args.no_progress)
    print(f"wrote {n} files to {args.out}")
    return 0


@_user_errors("mmtok inspect")
def inspect_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mmtok inspect", description="Print token shard metadata, item count and token usage.")
    p.add_argument("shards", help="shard folder, shard file or glob")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of the report")
    p.add_argument("--bins", type=int, default=16, help="histogram bins")
    args = p.parse_args(argv)
    from mmtok.shards.stats import format_stats, shard_stats

    stats = shard_stats(args.shards)
    if args.json:
        stats = dict(stats)
        stats["histogram"] = stats["histogram"].tolist()
        json.dump(stats, sys.stdout, indent=2)
        print()
    else:
        print(format_stats(stats, bins=args.bins))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(encode_main())
