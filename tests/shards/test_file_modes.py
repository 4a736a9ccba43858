"""Written files get the mode a plain ``open()`` gives under the umask, not tempfile's 0600."""

from __future__ import annotations

import os
import stat

import pytest

from mmtok.io import atomic_directory, atomic_write_text, default_mode


@pytest.fixture(params=[0o022, 0o002, 0o077])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_atomic_files_and_folders_follow_the_umask(tmp_path, umask):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    f = atomic_write_text(tmp_path / "a.txt", "hello")
    assert _mode(f) == _mode(plain) == 0o666 & ~umask == default_mode()
    with atomic_directory(tmp_path / "d") as staging:
        (staging / "inner.bin").write_bytes(b"1")
    plain_dir = tmp_path / "plain_dir"
    plain_dir.mkdir()
    assert _mode(tmp_path / "d") == _mode(plain_dir) == 0o777 & ~umask


def test_encode_outputs_are_readable_by_the_group(tmp_path, tiny_ckpt):
    from mmtok.shards import encode_dataset

    old = os.umask(0o022)
    try:
        encode_dataset(tiny_ckpt, "synthetic:6", tmp_path / "out", batch_size=3, progress=False)
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert files and any(p.suffix == ".parquet" for p in files)
    for p in files:
        assert _mode(p) == 0o644, (p, oct(_mode(p)))
