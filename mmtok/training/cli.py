"""``mmtok train CONFIG [key=value ...]``: the command-line face of :func:`mmtok.training.train`."""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from mmtok.config import ConfigError, to_dict
from mmtok.training.config import load_train_config
from mmtok.training.guard import NonFiniteLossError

EXIT_NONFINITE = 3


def builtin_recipes() -> dict[str, Path]:
    """Recipes shipped inside the package (``mmtok/configs``), by name (``image/titok_t32_fsq_synthetic``)."""
    root = Path(str(resources.files("mmtok") / "configs"))
    return {p.relative_to(root).with_suffix("").as_posix(): p for p in sorted(root.rglob("*.yaml"))}


def resolve_recipe(name_or_path: str) -> Path:
    """A YAML path, or the name of a built-in recipe (with or without ``configs/`` and ``.yaml``)."""
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p
    key = name_or_path.removeprefix("configs/").removesuffix(".yaml")
    recipes = builtin_recipes()
    if key in recipes:
        return recipes[key]
    matches = [v for k, v in recipes.items() if k.split("/")[-1] == key]
    if len(matches) == 1:
        return matches[0]
    raise FileNotFoundError(f"config file not found: {name_or_path} (built-in recipes: {', '.join(recipes)})")


def recipe_task(path: Path) -> str:
    """What a recipe trains: ``task: ar`` (a generator on token shards) or a tokenizer (default)."""
    import yaml

    raw = yaml.safe_load(Path(path).read_text()) or {}
    return str(raw.get("task", "tokenizer")) if isinstance(raw, dict) else "tokenizer"


def _train_ar(path: Path, args: argparse.Namespace) -> int:
    from mmtok.ar.train import load_ar_config, train_ar

    cfg = load_ar_config(path, args.overrides)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        return 0
    try:
        return train_ar(cfg)
    except (ConfigError, FileNotFoundError, NotADirectoryError, ValueError) as e:
        if args.debug:
            raise
        print(f"mmtok train: error: {e}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mmtok train",
        description="Train a tokenizer from a YAML recipe (a path, or a built-in name such as "
        "image/titok_t32_fsq_synthetic) with dotted key=value overrides.",
        epilog="example: mmtok train image/titok_t32_fsq_synthetic schedule.total_steps=200 run_dir=runs/demo",
    )
    p.add_argument("config", help="YAML recipe or built-in recipe name (mmtok train --list)", nargs="?")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=2e-4 model.overrides.num_tokens=64")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--list", action="store_true", help="list the built-in recipes and exit")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    return p


def train_main(argv: list[str] | None = None) -> int:
    """Entry point of ``mmtok train`` / ``python train/tokenizer.py``; returns the exit code."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.list:
        for name, path in builtin_recipes().items():
            print(f"{name:<40} {path}")
        return 0
    if not args.config:
        print("mmtok train: error: a CONFIG is required (a YAML path or a built-in name; see mmtok train --list)", file=sys.stderr)
        return 2
    try:
        path = resolve_recipe(args.config)
        if recipe_task(path) == "ar":  # a generator on token shards (mmtok.ar.train)
            return _train_ar(path, args)
        cfg = load_train_config(path, args.overrides)
    except (ConfigError, FileNotFoundError) as e:
        print(f"mmtok train: error: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        import yaml

        print(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        return 0
    from mmtok.training.loop import train

    try:
        return train(cfg)
    except NonFiniteLossError as e:
        print(f"mmtok train: error: {e}", file=sys.stderr)
        return EXIT_NONFINITE
    except (ConfigError, FileNotFoundError, NotADirectoryError, ValueError) as e:
        if args.debug:
            raise
        print(f"mmtok train: error: {e}", file=sys.stderr)
        return 2
