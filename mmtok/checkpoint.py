"""Checkpoints: ``save_pretrained`` / ``load_tokenizer`` (safetensors + config.json) and
training state for exact resume. Writes are atomic (``mmtok.io``)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mmtok.io import atomic_directory, atomic_write, atomic_write_bytes, atomic_write_json, atomic_write_text, file_sha256  # noqa: F401

if TYPE_CHECKING:
    from mmtok.tokenizer import Tokenizer

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def save_pretrained(model: "Tokenizer", save_directory: str | Path, **_: Any) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``save_directory``.

    The directory is assembled under a temporary name and swapped in, so an existing
    checkpoint at the same path stays loadable until the new one is complete.
    """
    import mmtok
    from mmtok.config import config_hash, to_dict
    from safetensors.torch import save_model

    target = Path(save_directory)
    with atomic_directory(target) as staging:
        save_model(model, str(staging / WEIGHTS_NAME))
        cfg = to_dict(model.config)
        meta = {
            "mmtok_version": mmtok.__version__,
            "family": type(model).__name__,
            "variant": getattr(model, "variant_name", None),
            "modality": model.modality,
            "config_hash": config_hash(cfg),
            "config": cfg,
        }
        (staging / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")
    return target


def _resolve(path_or_id: str | Path, allow_download: bool = False) -> Path:
    p = Path(path_or_id)
    if p.is_dir():
        return p
    if p.exists():
        raise NotADirectoryError(f"{p} is a file; a checkpoint is a directory holding {WEIGHTS_NAME} and {CONFIG_NAME}")
    s = str(path_or_id)
    looks_local = s.startswith((".", "/", "~")) or s.count("/") != 1 or os.sep + os.sep in s
    if looks_local:
        raise FileNotFoundError(f"checkpoint directory not found: {p}")
    # a hub id such as "org/name": the local hub cache only, unless a download is asked for
    # (allow_download=True) and HF_HUB_OFFLINE is not set
    offline = not allow_download or os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=s, allow_patterns=[WEIGHTS_NAME, CONFIG_NAME], local_files_only=offline))
    except Exception as e:  # not cached / offline / no such repo
        how = "not in the local hub cache (pass allow_download=True to fetch it)" if offline else "not downloadable"
        raise FileNotFoundError(
            f"{s!r} is neither a local checkpoint directory nor a hub id {how} ({type(e).__name__}: {e}). "
            f"Place {WEIGHTS_NAME} and {CONFIG_NAME} in a directory and pass its path."
        ) from e


def read_checkpoint_config(path_or_id: str | Path, allow_download: bool = False) -> dict[str, Any]:
    """The parsed ``config.json`` of a checkpoint (family, variant, modality, config, version)."""
    d = _resolve(path_or_id, allow_download)
    cfg_path = d / CONFIG_NAME
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{d} has no {CONFIG_NAME}; is it an mmtok checkpoint?")
    try:
        meta = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{cfg_path} is not valid JSON: {e}") from e
    for key in ("family", "config"):
        if key not in meta:
            raise ValueError(f"{cfg_path} lacks the '{key}' entry; not an mmtok checkpoint")
    return meta


def _a(word: str) -> str:
    """``word`` with its indefinite article ("an image", "a video")."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def load_tokenizer(
    path_or_id: str | Path,
    device: str | torch.device = "cpu",
    modality: str | None = None,
    strict: bool = True,
    allow_download: bool = False,
) -> "Tokenizer":
    """Rebuild a tokenizer from a ``save_pretrained`` directory (or hub id) in eval mode.

    ``modality`` ("image", "video", "audio"), when given, is checked against the checkpoint.
    A hub id is read from the local hub cache only; ``allow_download=True`` lets it fetch
    (unless ``HF_HUB_OFFLINE`` is set).
    """
    from mmtok.config import from_dict
    from mmtok.registry import get_family
    from safetensors.torch import load_model

    from mmtok.convert import convert_checkpoint, looks_like_reference_checkpoint

    if looks_like_reference_checkpoint(path_or_id):  # an official TiTok / LlamaGen / DAC / EnCodec file
        model, _ = convert_checkpoint(path_or_id)
        if modality is not None and model.modality != modality:
            raise ValueError(f"{path_or_id} is {_a(model.modality)} tokenizer ({type(model).__name__}), "
                             f"but {_a(modality)} tokenizer is required")
        return model.to(device).eval()
    d = _resolve(path_or_id, allow_download)
    meta = read_checkpoint_config(d)
    if modality is not None and meta.get("modality") != modality:
        raise ValueError(
            f"{path_or_id} is {_a(str(meta.get('modality')))} tokenizer ({meta['family']}), but {_a(modality)} tokenizer is required"
        )
    cls = get_family(meta["family"])
    model = cls(from_dict(cls.config_class, meta["config"]))
    model.variant_name = meta.get("variant")
    weights = d / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"{d} has no {WEIGHTS_NAME}")
    try:
        missing, unexpected = load_model(model, str(weights), strict=False)
    except Exception as e:  # safetensors raises its own SafetensorError on a damaged or foreign file
        if isinstance(e, RuntimeError) and "size mismatch" in str(e):
            raise
        raise ValueError(f"cannot read {weights}: not a valid safetensors file ({type(e).__name__}: {str(e)[:200]}); "
                         "the checkpoint is damaged or was not written by save_pretrained") from e
    if strict and (missing or unexpected):
        raise RuntimeError(f"weights in {weights} do not match {meta['family']}: missing={missing} unexpected={unexpected}")
    return model.to(device).eval()


# --- training state (resume) --------------------------------------------------------------
#
# A run's checkpoints live in ``<run_dir>/checkpoints/step_XXXXXXXX/``: module weights as
# ``<name>.safetensors`` (no pickle), optimiser / scaler / RNG / data position as
# ``<name>.pt`` (plain tensors and containers, loaded with ``weights_only=True``) and
# ``state.json`` (step + metadata). A step directory is assembled under a hidden temporary
# name and renamed into place only when complete, so a crash mid-write leaves the previous
# checkpoints untouched and never a half-written one under a ``step_*`` name.

STATE_NAME = "state.json"
_STEP_PREFIX = "step_"


def _step_dir_name(step: int) -> str:
    return f"{_STEP_PREFIX}{int(step):08d}"


def _save_object(obj: Any, path: Path) -> None:
    torch.save(obj, path)


def list_training_states(root: str | Path) -> list[Path]:
    """Complete checkpoint directories under ``root`` (``step_*`` holding ``state.json``), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for d in root.iterdir():
        if d.is_dir() and d.name.startswith(_STEP_PREFIX) and (d / STATE_NAME).is_file():
            try:
                found.append((int(d.name[len(_STEP_PREFIX):]), d))
            except ValueError:
                continue
    return [d for _, d in sorted(found)]


def latest_training_state(root: str | Path) -> Path | None:
    """The newest complete checkpoint directory under ``root``, or None."""
    states = list_training_states(root)
    return states[-1] if states else None


def save_training_state(
    root: str | Path,
    step: int,
    modules: dict[str, Any],
    objects: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    keep_last: int | None = None,
) -> Path:
    """Write ``root/step_XXXXXXXX`` atomically and keep only the newest ``keep_last``.

    modules: name -> ``nn.Module`` (saved with safetensors' ``save_model``, shared weights
             handled) or a ``{key: Tensor}`` state dict.
    objects: name -> picklable-free state (optimiser / scaler state dicts, RNG, positions).
    meta:    JSON-serialisable extras stored in ``state.json`` with the step.
    """
    from safetensors.torch import save_file, save_model

    root = Path(root)
    with atomic_directory(root / _step_dir_name(step)) as staging:
        for name, m in modules.items():
            path = staging / f"{name}.safetensors"
            if isinstance(m, torch.nn.Module):
                save_model(m, str(path))
            else:
                save_file({k: v.detach().contiguous().cpu() for k, v in m.items()}, str(path))
        for name, obj in (objects or {}).items():
            _save_object(obj, staging / f"{name}.pt")
        state = {"step": int(step), "modules": sorted(modules), "objects": sorted(objects or {}), **(meta or {})}
        (staging / STATE_NAME).write_text(json.dumps(state, indent=2) + "\n")
    target = root / _step_dir_name(step)
    # leftovers of interrupted writes and checkpoints beyond keep_last
    for d in root.iterdir():
        if d.name.startswith(f".{_STEP_PREFIX}") and d.is_dir():
            shutil.rmtree(d, ignore_errors=True)
    if keep_last is not None and keep_last > 0:
        for d in list_training_states(root)[:-keep_last]:
            shutil.rmtree(d, ignore_errors=True)
    return target


def load_training_state(
    step_dir: str | Path,
    modules: dict[str, Any] | None = None,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Load a ``save_training_state`` directory.

    Weights are loaded in place into ``modules`` (name -> ``nn.Module``; strict: a missing
    or unexpected key is an error). Returns ``{"meta": state.json, "objects": {name: obj},
    "tensors": {name: state dict}}`` where ``tensors`` holds saved weights not in ``modules``.
    """
    from safetensors.torch import load_file, load_model

    d = Path(step_dir)
    if not (d / STATE_NAME).is_file():
        raise FileNotFoundError(f"{d} is not a complete training checkpoint (no {STATE_NAME})")
    dev = torch.device(map_location)
    map_location = "cpu" if dev.type == "cpu" else str(dev)  # safetensors rejects "cpu:0"
    meta = json.loads((d / STATE_NAME).read_text())
    modules = modules or {}
    tensors: dict[str, dict[str, torch.Tensor]] = {}
    for name in meta.get("modules", []):
        path = d / f"{name}.safetensors"
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {d} lacks {path.name}")
        if name in modules:
            missing, unexpected = load_model(modules[name], str(path), strict=False, device=str(map_location))
            if missing or unexpected:
                raise RuntimeError(f"{path} does not match the '{name}' module: missing={missing} unexpected={unexpected}")
        else:
            tensors[name] = load_file(str(path), device=str(map_location))
    not_saved = sorted(set(modules) - set(meta.get("modules", [])))
    if not_saved:
        raise KeyError(f"checkpoint {d} holds no weights for {not_saved} (it has {meta.get('modules')})")
    objects = {}
    for name in meta.get("objects", []):
        path = d / f"{name}.pt"
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {d} lacks {path.name}")
        try:
            objects[name] = torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError:
            raise ValueError(f"refusing to load {path}: it holds Python objects beyond tensors and plain containers "
                             "(mmtok never unpickles code); the checkpoint was not written by mmtok or was altered") from None
        except (RuntimeError, EOFError) as e:
            raise ValueError(f"cannot read {path} ({type(e).__name__}: {str(e)[:200]}); the checkpoint is damaged") from e
    return {"meta": meta, "objects": objects, "tensors": tensors}
