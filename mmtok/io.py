"""File writes that never leave a torn file, and file hashing.

Every write goes to a temporary file in the destination folder, is fsync'ed, then renamed
over the target, so a crash at any point leaves either the old or the new file, never a
torn one. Files and folders end up with the mode a plain ``open()`` / ``mkdir()`` gives
under the process umask (``tempfile`` would leave them private to the owner, 0600 / 0700,
unreadable by the other users of a shared dataset folder). This module imports nothing of mmtok (the config, checkpoint, shard and metric
rooms all build on it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask (read by setting and restoring it, under a lock)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """Mode of a new file (0666) or folder (0777) under the current umask."""
    return (0o777 if directory else 0o666) & ~current_umask()


def apply_default_modes(root: str | Path) -> None:
    """Give every file and folder under ``root`` the mode a plain ``open()`` / ``mkdir()`` would.

    Libraries that write through their own temporary files (safetensors' ``save_file`` /
    ``save_model`` leave 0600, ``tempfile`` 0600 / 0700) would otherwise leave outputs
    unreadable by the group whatever the umask says.
    """
    file_mode, dir_mode = default_mode(), default_mode(directory=True)
    for p in Path(root).rglob("*"):
        if p.is_symlink():
            continue
        os.chmod(p, dir_mode if p.is_dir() else file_mode)


def atomic_write(path: str | Path, write_fn: Callable[[Path], None]) -> Path:
    """Call ``write_fn(tmp_path)`` then fsync and rename ``tmp_path`` to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write_fn(tmp_path)
        os.chmod(tmp_path, default_mode())
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    """Yield a staging directory next to ``target``; on success fsync its files and swap it
    in for ``target`` (an existing ``target`` stays complete until the swap). On error the
    staging directory is removed and ``target`` is untouched."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        os.chmod(staging, default_mode(directory=True))
        yield staging
        apply_default_modes(staging)
        for f in staging.rglob("*"):
            if f.is_file() and not f.is_symlink():
                with open(f, "rb+") as fh:
                    os.fsync(fh.fileno())
        _fsync_dir(staging)
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
        os.replace(staging, target)
        _fsync_dir(target.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise



@lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file (memoised on resolved path, size and mtime)."""
    st = os.stat(path)
    return _sha256_cached(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
