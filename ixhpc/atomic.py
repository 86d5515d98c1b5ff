"""Atomic file writes: a reader sees the old file or the whole new one, never half of it."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], mode: int | None = None, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success.

    ``replace=False``: publish only if ``path`` does not exist, atomically (``link_new``);
    FileExistsError otherwise, and ``path`` is left as another writer made it.

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
        if replace:
            os.replace(tmp_path, target)
        else:
            link_new(tmp_path, target)
            tmp_path.unlink(missing_ok=True)  # (renamed away when there are no hard links)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def link_new(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Make ``dst`` name the file ``src`` names, unless ``dst`` exists (FileExistsError): one
    system call decides, so of two writers exactly one wins (no check-then-rename race).

    A hard link where the filesystem has them; else rename with RENAME_NOREPLACE (``src``
    is then gone)."""
    try:
        os.link(src, dst)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
            raise
        _rename_noreplace(src, dst)


_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


def rename_new(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Rename ``src`` (a file or a directory) to ``dst`` unless ``dst`` exists (FileExistsError):
    a plain rename would silently replace an empty directory."""
    _rename_noreplace(src, dst)


def _rename_noreplace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        raise OSError(errno.ENOSYS, "no hard links and no renameat2 here: cannot publish without replacing", str(dst))
    if renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(dst))


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
