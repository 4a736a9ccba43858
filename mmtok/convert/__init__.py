"""Import weights from the official checkpoint layouts of reference tokenizers.

``mmtok convert SRC OUT_DIR`` (or :func:`convert_checkpoint`) reads a local reference
checkpoint (never downloads), maps its state dict onto the matching mmtok model and writes a
``save_pretrained`` folder that ``mmtok.load_tokenizer`` opens like any other checkpoint.
``mmtok.load_tokenizer(path)`` also accepts such a file or folder directly and converts it
in memory.

Each format lives in its own module and registers a :class:`Converter`:

- ``detect(state, path) -> bool``: whether a loaded state dict has this layout;
- ``convert(state, path, **options) -> (Tokenizer, notes)``: the mmtok model with the weights
  loaded (eval mode) and a list of notes saying where the architectures differ.

Reference files are read with :func:`mmtok.weights.load_checkpoint_file`: plain tensors and
containers only, so no code in a downloaded file ever runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mmtok.weights import WeightsError, load_checkpoint_file

__all__ = [
    "Converter",
    "ConversionReport",
    "ConversionError",
    "register_converter",
    "list_converters",
    "detect_format",
    "convert_checkpoint",
    "looks_like_reference_checkpoint",
]


class ConversionError(ValueError):
    """A reference checkpoint cannot be mapped onto an mmtok model (wrong layout, unsupported option)."""


@dataclass
class Converter:
    """One reference layout: ``name`` (e.g. ``"dac"``), what it reads, and its two functions."""

    name: str
    description: str
    detect: Callable[[dict[str, Any], Path], bool]
    convert: Callable[..., tuple[Any, list[str]]]
    # file names tried, in order, when SRC is a folder (e.g. ("model.safetensors", "pytorch_model.bin"))
    file_names: tuple[str, ...] = ()


@dataclass
class ConversionReport:
    """What a conversion did: the format, the source file, the tokenizer built and the notes."""

    format: str
    source: str
    family: str
    num_parameters: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "source": self.source, "family": self.family,
                "num_parameters": self.num_parameters, "notes": list(self.notes)}


_CONVERTERS: dict[str, Converter] = {}
_LOADED = False


def register_converter(conv: Converter) -> Converter:
    if conv.name in _CONVERTERS:
        raise ValueError(f"converter {conv.name!r} is already registered")
    _CONVERTERS[conv.name] = conv
    return conv


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    from importlib import import_module

    for mod in ("titok", "llamagen", "dac", "encodec"):
        try:
            import_module(f"mmtok.convert.{mod}")
        except ModuleNotFoundError as e:  # a format module not written yet in this tree
            if e.name != f"mmtok.convert.{mod}":
                raise


def list_converters() -> dict[str, str]:
    """Registered formats -> one-line description."""
    _load_all()
    return {n: c.description for n, c in sorted(_CONVERTERS.items())}


def _get(name: str) -> Converter:
    _load_all()
    if name not in _CONVERTERS:
        raise ConversionError(f"unknown checkpoint format {name!r}; known: {sorted(_CONVERTERS)}")
    return _CONVERTERS[name]


def _source_file(src: Path, conv: Converter | None) -> Path:
    if src.is_file():
        return src
    if not src.exists():
        raise FileNotFoundError(f"reference checkpoint not found: {src}")
    names = conv.file_names if conv is not None else tuple(n for c in _CONVERTERS.values() for n in c.file_names)
    for n in names:
        if (src / n).is_file():
            return src / n
    raise FileNotFoundError(f"{src} is a folder without a known checkpoint file (looked for {sorted(set(names))})")


def detect_format(state: dict[str, Any], path: Path) -> str:
    """The one registered format whose ``detect`` accepts ``state``; a clear error otherwise."""
    _load_all()
    hits = [n for n, c in sorted(_CONVERTERS.items()) if c.detect(state, path)]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise ConversionError(
            f"{path}: the state dict matches no known reference layout ({', '.join(sorted(_CONVERTERS))}); "
            f"pass --format to name it. First keys: {list(state)[:6]}")
    raise ConversionError(f"{path}: the state dict matches several layouts {hits}; pass --format to choose")


def convert_checkpoint(src: str | os.PathLike, format: str = "auto", **options: Any) -> tuple[Any, ConversionReport]:
    """Build the mmtok tokenizer for the reference checkpoint ``src`` (a file or its folder).

    ``format``: a registered name (``mmtok convert --list``) or ``"auto"`` to detect it from
    the keys. ``options`` go to the format's converter (e.g. a config the file lacks).
    Returns the model in eval mode and a :class:`ConversionReport`.
    """
    _load_all()
    conv = None if format == "auto" else _get(format)
    path = _source_file(Path(src).expanduser(), conv)
    state = load_checkpoint_file(path, what="reference checkpoint")
    name = detect_format(state, path) if conv is None else conv.name
    conv = _get(name)
    model, notes = conv.convert(state, path, **options)
    model.eval()
    report = ConversionReport(format=name, source=str(path), family=type(model).__name__,
                              num_parameters=model.num_parameters(), notes=list(notes))
    return model, report


def _is_mmtok_folder(p: Path) -> bool:
    """Whether ``p/config.json`` is mmtok's own (``family`` + ``config``): reference folders
    such as TiTok's Hugging Face repos have a ``config.json`` of their own. An unreadable
    ``config.json`` counts as mmtok's, so its loader reports what is wrong with it."""
    import json

    if not (p / "config.json").is_file():
        return False
    try:
        meta = json.loads((p / "config.json").read_text())
    except (OSError, ValueError):
        return True
    return isinstance(meta, dict) and "family" in meta and "config" in meta


def looks_like_reference_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file (or a folder that is not an mmtok checkpoint) that ``convert_checkpoint`` may read."""
    p = Path(path).expanduser()
    if p.is_file():
        return True
    return p.is_dir() and not _is_mmtok_folder(p) and any(
        (p / n).is_file() for c in (_load_all() or _CONVERTERS.values()) for n in c.file_names)


def convert_main(argv: list[str]) -> int:
    """``mmtok convert SRC OUT_DIR [--format F] [--option key=value ...]``."""
    import argparse
    import json
    import sys

    from mmtok.config import parse_overrides

    p = argparse.ArgumentParser(
        prog="mmtok convert",
        description="Convert a reference checkpoint (TiTok, LlamaGen VQ, DAC, EnCodec; local file) "
                    "into an mmtok save_pretrained folder.")
    p.add_argument("src", nargs="?", help="reference checkpoint file (or folder holding it)")
    p.add_argument("out", nargs="?", help="output folder (written atomically)")
    p.add_argument("--format", default="auto", help="checkpoint layout (default: detect from the keys)")
    p.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                   help="converter option (e.g. a config value the file lacks); repeatable")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.add_argument("--list", action="store_true", help="list the known formats and exit")
    args = p.parse_args(argv)
    if args.list:
        for n, d in list_converters().items():
            print(f"  {n:<12} {d}")
        return 0
    if not args.src or not args.out:
        p.error("SRC and OUT are required (or --list)")
    out = Path(args.out)
    if out.exists() and not args.force:
        print(f"mmtok convert: error: {out} exists (pass --force to replace it)", file=sys.stderr)
        return 2
    try:
        options = parse_overrides(args.option)
        model, report = convert_checkpoint(args.src, format=args.format, **options)
    except (ConversionError, WeightsError, FileNotFoundError, ValueError) as e:
        print(f"mmtok convert: error: {e}", file=sys.stderr)
        return 2
    model.save_pretrained(out)
    from mmtok.io import atomic_write_text

    atomic_write_text(out / "conversion.json", json.dumps(report.to_dict(), indent=2) + "\n")
    print(f"converted {report.source} ({report.format}) -> {out} [{report.family}, "
          f"{report.num_parameters / 1e6:.1f}M parameters]")
    for n in report.notes:
        print(f"  note: {n}")
    return 0
