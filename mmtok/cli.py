"""``mmtok`` command line: ``mmtok <command> [args]``; ``mmtok <command> --help`` for each.

Each subcommand owns its argument parser in the module that implements it; this file only
dispatches (imports happen lazily, so ``mmtok --help`` is instant).
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

# name -> (one-line help, "module:function" called with argv and returning the exit code)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "list": ("list registered tokenizers and quantizers", "mmtok.cli:list_main"),
    "demo": ("main job: tiny end-to-end run on built-in synthetic data (CPU-friendly)", "mmtok.demo:main"),
    "train": ("train a tokenizer (or, task: ar, a generator on token shards) from a YAML config", "mmtok.training.cli:train_main"),
    "eval": ("evaluate a checkpoint (rFID, PSNR, SSIM, LPIPS, codebook stats)", "mmtok.metrics.cli:eval_main"),
    "encode": ("encode a dataset into token shards: mmtok encode CHECKPOINT INPUT OUTPUT_DIR", "mmtok.shards.cli:encode_main"),
    "decode": ("decode token shards back to images/audio/video: mmtok decode SHARDS OUT", "mmtok.shards.cli:decode_main"),
    "inspect": ("print token shard metadata, item count and token usage", "mmtok.shards.cli:inspect_main"),
    "convert": ("import a reference checkpoint (TiTok, LlamaGen VQ, DAC, EnCodec): mmtok convert SRC OUT_DIR",
                "mmtok.convert:convert_main"),
    "generate": ("sample an AR generator, decode with its tokenizer, save; gFID: mmtok generate GEN --tokenizer TOK",
                 "mmtok.ar.generate:generate_main"),
}


def _run_target(target: str, argv: list[str]) -> int:
    module, _, fn = target.partition(":")
    return int(getattr(import_module(module), fn)(argv) or 0)


def list_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="mmtok list", description="List registered tokenizers and quantizers.")
    p.add_argument("pattern", nargs="?", default=None, help="substring filter")
    p.add_argument("--modality", choices=["image", "video", "audio"], default=None)
    args = p.parse_args(argv)
    from mmtok.quantize import list_quantizers
    from mmtok.registry import list_tokenizers

    names = list_tokenizers(args.pattern, args.modality)
    print(f"tokenizers ({len(names)}):")
    for n in names:
        print(f"  {n}")
    print("quantizers:")
    for q in list_quantizers():
        print(f"  {q}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    import mmtok

    p = argparse.ArgumentParser(
        prog="mmtok",
        description="mmtok: discrete tokenizers for images, video and audio.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {n:<8} {h}" for n, (h, _) in SUBCOMMANDS.items())
        + "\n\nRun 'mmtok COMMAND --help' for the options of a command.",
    )
    p.add_argument("--version", action="version", version=f"mmtok {mmtok.__version__}")
    p.add_argument("command", nargs="?", choices=list(SUBCOMMANDS), metavar="COMMAND")
    p.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv[:1] if argv and not argv[0].startswith("-") else argv)
    if args.command is None:
        parser.print_help()
        return 0
    name = argv[0]
    return _run_target(SUBCOMMANDS[name][1], argv[1:])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
