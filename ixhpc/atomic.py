"""Atomic file writes: a reader sees the old file or the whole new one, never half of it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success.

    Any writer (h5py, numpy, a subprocess) can fill the temporary file; if the block raises,
    the temporary file is removed and ``path`` is left as it was. The file gets ``mode``, or
    the user's umask applied to 0o666 (mkstemp alone would leave it 0o600).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        tmp_path.chmod(mode if mode is not None else 0o666 & ~umask())
        _fsync(tmp_path)
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _fsync(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def write_bytes(path: str | os.PathLike[str], data: bytes, mode: int | None = None) -> None:
    with atomic_path(path, mode) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike[str], text: str, mode: int | None = None) -> None:
    write_bytes(path, text.encode(), mode)


def umask() -> int:
    """The process umask (reading it means setting it; set it straight back)."""
    current = os.umask(0)
    os.umask(current)
    return current
