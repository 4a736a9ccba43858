"""Loading external weight files (metric networks, perceptual-loss trunks) without running code.

A ``.pth`` / ``.pt`` file is a pickle: ``torch.load(weights_only=False)`` on a crafted file
runs arbitrary code. Every external weight file mmtok reads goes through
:func:`load_state_dict_file`, which only accepts plain tensors and containers
(``torch.load(weights_only=True)``) or safetensors, and refuses anything else with a clear
error before any of it is used.

Known public files are named ``<name>-<first 8 hex digits of their sha256>.pth`` (the torch
hub convention, which ``torch.hub`` itself checks); :func:`verify_known_file` checks a file of
such a name against the digits in its name, so a truncated or swapped download is caught
with a message saying where to get the right one.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from mmtok.io import file_sha256

_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.(?:pth|pt|safetensors)$")


def hub_cache_path(name: str) -> Path:
    """Where the torch hub cache keeps ``name``: ``<torch hub dir>/checkpoints/<name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def resolve_weights_file(weights: str | os.PathLike | None, name: str, what: str, source: str,
                         flag: str, alternative: str = "") -> Path:
    """The local file of an external network's weights; never downloads.

    ``weights``: a path (a folder holding ``name`` works too), or None / "auto" for
    :func:`hub_cache_path` of ``name``. A missing file raises ``FileNotFoundError`` naming the
    file, where to get it (``source``), the folder to put it in, the option that takes a path
    (``flag``) and ``alternative`` (e.g. how to skip the metric).
    """
    cache = hub_cache_path(name)
    auto = weights is None or str(weights) == "auto"
    path = cache if auto else Path(weights).expanduser()
    if path.is_dir():
        path = path / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{what} not found: {path}. mmtok never downloads at run time; place the file {name} (from {source}) "
            f"in {cache.parent}/, or pass its path ({flag})" + (f", or {alternative}" if alternative else "") + "."
        )
    return path


class WeightsError(ValueError):
    """An external weights file is not safe to load, damaged, or not the expected network."""


def name_hash_prefix(name: str) -> str | None:
    """The sha256 prefix a torch-hub style file name carries (``vgg16-397923af.pth`` -> ``397923af``)."""
    m = _HASH_IN_NAME.search(name)
    return m.group(1) if m else None


def verify_known_file(path: str | os.PathLike, expected_name: str, url: str) -> bool:
    """Check ``path`` against the sha256 prefix in ``expected_name`` when ``path`` has that name.

    Returns True when verified, False when ``path`` has another name (a user's own file: its
    hash is still recorded by the caller, but it is not the reference network). Raises
    :class:`WeightsError` when a file of the expected name has the wrong content.
    """
    path = Path(path)
    prefix = name_hash_prefix(expected_name)
    if path.name != expected_name or prefix is None:
        return False
    digest = file_sha256(path)
    if not digest.startswith(prefix):
        raise WeightsError(
            f"{path} has sha256 {digest[:16]}..., but {expected_name} must start with {prefix}: the file is "
            f"damaged or a different file. Download it again from {url} and place it at {path}."
        )
    return True


def load_state_dict_file(path: str | os.PathLike, what: str = "weights") -> dict[str, Any]:
    """A state dict from ``path`` (safetensors, or a torch file of plain tensors), never unpickling code.

    Raises :class:`WeightsError` (naming ``what`` and the file) when the file holds anything
    but tensors and plain containers, is truncated, or is not a mapping.
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            try:
                state: Any = load_file(str(path), device="cpu")
            except Exception as e:  # safetensors raises its own SafetensorError
                raise ValueError(str(e)) from e
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise WeightsError(
            f"refusing to load {what} from {path}: it is not a plain tensor file (it holds Python objects or code, "
            "which mmtok never unpickles); use the original file, or re-save its tensors with torch.save(state_dict)"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, TypeError) as e:
        raise WeightsError(f"cannot read {what} from {path} ({type(e).__name__}: {str(e)[:300]})") from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors ({what})")
    return state


def load_checkpoint_file(path: str | os.PathLike, what: str = "checkpoint") -> dict[str, Any]:
    """The whole mapping in a reference checkpoint (``.pth`` / ``.pt`` / ``.bin`` / ``.th`` or safetensors).

    Unlike :func:`load_state_dict_file` the result may nest: official training checkpoints
    hold ``{"model": state_dict, "metadata": {...}}``-style dicts of tensors, numbers and
    strings. Still never unpickles code (``torch.load(weights_only=True)``); anything else is
    a :class:`WeightsError`. A safetensors file's string metadata, when present, is returned
    under the key ``"__metadata__"``.
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            try:
                with safe_open(str(path), framework="pt", device="cpu") as f:
                    state: Any = {k: f.get_tensor(k) for k in f.keys()}
                    meta = f.metadata()
            except Exception as e:  # safetensors raises its own SafetensorError
                raise ValueError(str(e)) from e
            if meta:
                state["__metadata__"] = dict(meta)
        else:
            import argparse

            # training scripts (LlamaGen's among them) save their argparse.Namespace next to the
            # weights; rebuilding one only sets attributes, so it is allowed beside plain containers
            with torch.serialization.safe_globals([argparse.Namespace]):
                state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e).lower()
        if "global" not in msg and "reduce" not in msg:  # no forbidden object: a damaged or foreign file
            detail = next((ln.strip() for ln in str(e).splitlines() if ln.strip().startswith("Unsupported")), str(e)[:120])
            raise WeightsError(f"cannot read {what} from {path}: damaged, not a torch.save file, or a pickle beyond "
                               f"tensors and plain containers, which mmtok never unpickles ({detail})") from None
        raise WeightsError(
            f"refusing to load {what} from {path}: it holds Python objects or code beyond tensors and plain "
            "containers, which mmtok never unpickles; re-save its tensors with torch.save(state_dict)"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, TypeError) as e:
        raise WeightsError(f"cannot read {what} from {path} ({type(e).__name__}: {str(e)[:300]})") from e
    if not isinstance(state, dict):
        raise WeightsError(f"{path} does not hold a mapping ({what}), but {type(state).__name__}")
    return state
