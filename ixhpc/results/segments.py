"""Per-request data of a merged file: write-once segment files beside its table.

    merged.h5                                  the table (ixhpc.results.table)
    merged.h5.segments/seg-<merge>-<k>.h5      per-request data, never modified once written

Layout of a segment (format ``ixhpc-segment``, version 1)::

    /              attrs: ixhpc_format, ixhpc_format_version, n_points
    /requests      compound (store.REQUEST_DTYPE): the points' requests, concatenated
    /itl           float32 ms: the points' inter-token gaps, concatenated
    /error_texts   the points' error texts, concatenated (a point's ``error`` field indexes its own)

A table row finds its point at ``requests[req_start:][:req_count]``, ``itl[itl_start:][:itl_count]``
and ``error_texts[text_start:][:text_count]`` of the segment it names; ``requests_sha256`` in the
row checks the data. A merge writes its segments (temp file + rename each) before it replaces
the table, so every table a reader can open refers only to whole segments; segments of a merge
killed before its table was replaced are named by a merge number the table never reached, and
the next merge removes them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ixhpc.results import store

FORMAT = "ixhpc-segment"
VERSION = 1
REFS = ("segment", "req_start", "req_count", "itl_start", "itl_count", "text_start", "text_count")
_NAME = re.compile(r"seg-(\d+)-(\d+)\.h5")
_STR = h5py.string_dtype()


class SegmentError(ValueError):
    pass


def directory(table: str | os.PathLike[str]) -> Path:
    """Beside the table's real file: a symlink to a merged file finds its segments too."""
    table = Path(os.path.realpath(table))
    return table.with_name(table.name + ".segments")


def name(merge_no: int, k: int) -> str:
    return f"seg-{merge_no:06d}-{k:04d}.h5"


def merge_number(file_name: str) -> int | None:
    """The merge that wrote the segment called ``file_name``; None if it is not a segment name."""
    match = _NAME.fullmatch(file_name)
    return int(match.group(1)) if match else None


class Writer:
    """Collects points' per-request data, then writes them as one segment file at ``path``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._rows: list[np.ndarray] = []
        self._itl: list[np.ndarray] = []
        self._texts: list[str] = []
        self._n_req = self._n_itl = 0
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, req: store.Requests) -> dict[str, Any]:
        """Take ``req``; return the table bookkeeping (REFS) that finds it again."""
        refs = {"segment": self.path.name, "req_start": self._n_req, "req_count": len(req),
                "itl_start": self._n_itl, "itl_count": len(req.itl),
                "text_start": len(self._texts), "text_count": len(req.error_texts)}
        self._rows.append(req.rows)
        self._itl.append(req.itl)
        self._texts.extend(req.error_texts)
        self._n_req += len(req)
        self._n_itl += len(req.itl)
        self.nbytes += req.nbytes
        return refs

    def write(self) -> bool:
        """Write the segment atomically; False (and no file) when nothing was added."""
        if not self._rows:
            return False
        with store.write_hdf5(self.path) as f:
            f.attrs.update(ixhpc_format=FORMAT, ixhpc_format_version=VERSION, n_points=len(self._rows))
            rows = f.create_dataset("requests", data=np.concatenate(self._rows).astype(store.REQUEST_DTYPE, copy=False))
            rows.attrs.update({name: units for name, (_, units) in store.REQUEST_FIELDS.items()})
            itl = np.concatenate(self._itl).astype(store.ITL_DTYPE, copy=False)
            f.create_dataset("itl", data=itl).attrs["units"] = "ms"
            f.create_dataset("error_texts", data=np.array(self._texts, dtype=object), dtype=_STR)
        self._rows, self._itl, self._texts = [], [], []
        return True


def _open(path: Path) -> h5py.File:
    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise SegmentError(f"{path} is missing (a merged file's .segments directory must stay beside it)") from None
    except OSError as exc:
        raise SegmentError(f"{path}: not a readable HDF5 file ({store.short_error(exc)})") from None
    if f.attrs.get("ixhpc_format") != FORMAT or int(f.attrs.get("ixhpc_format_version", 0)) > VERSION:
        f.close()
        raise SegmentError(f"{path} is not a segment this ixhpc reads")
    return f


def _requests(rows: np.ndarray, itl: np.ndarray, texts: Any, refs: Mapping[str, Any], where: str) -> store.Requests:
    req = store.Requests(rows, itl, [t.decode() if isinstance(t, bytes) else str(t) for t in texts])
    if len(req) != refs["req_count"] or len(req.itl) != refs["itl_count"]:
        raise SegmentError(f"{where}: the segment is shorter than the table says")
    digest = refs.get("requests_sha256")
    if digest and store.requests_digest(req) != digest:
        raise SegmentError(f"{where}: per-request data do not match their checksum (corrupt)")
    problem = store.check_requests(req)
    if problem:
        raise SegmentError(f"{where}: {problem}")
    return req


def fetch(seg_dir: Path, refs: Mapping[str, Any]) -> store.Requests:
    """One point's per-request data (reads only its slices)."""
    path = seg_dir / str(refs["segment"])
    with _open(path) as f:
        try:
            rows = f["requests"][_span(refs, "req")]
            itl = f["itl"][_span(refs, "itl")]
            texts = f["error_texts"][_span(refs, "text")]
        except (KeyError, OSError, ValueError) as exc:
            raise SegmentError(f"{path}: damaged segment ({store.short_error(exc)})") from None
    return _requests(rows.astype(store.REQUEST_DTYPE, copy=False), itl, texts, refs, str(path))


class Loaded:
    """A whole segment in memory, to take many points from (segments are a merge task's size)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with _open(path) as f:
            try:
                self.rows = f["requests"][()].astype(store.REQUEST_DTYPE, copy=False)
                self.itl = f["itl"][()]
                self.texts = f["error_texts"][()]
            except (KeyError, OSError, ValueError) as exc:
                raise SegmentError(f"{path}: damaged segment ({store.short_error(exc)})") from None

    def requests(self, refs: Mapping[str, Any]) -> store.Requests:
        return _requests(self.rows[_span(refs, "req")], self.itl[_span(refs, "itl")],
                         self.texts[_span(refs, "text")], refs, str(self.path))


def _span(refs: Mapping[str, Any], what: str) -> slice:
    start = int(refs[f"{what}_start"])
    return slice(start, start + int(refs[f"{what}_count"]))
