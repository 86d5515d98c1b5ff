"""One HDF5 file per run point: write it atomically, read it back, refuse anything else.

Layout (format ``ixhpc-run-point``, version 1)::

    /                     attrs: every metadata key, ixhpc_format, ixhpc_format_version,
                                 result_id, n_requests, failure, record (JSON, see below)
    /summary              attrs: the ixhpc.bench summary (InferenceX benchmark_serving names)
    /metrics              attrs: InferenceX metrics (ixhpc.results.metrics), seconds
    /bench_config         attrs: the load generator's settings
    /requests/<column>    one row per request, ``units`` attribute on each
    /requests/itl_values  every request's inter-token gaps, concatenated (float32 ms)
    /requests/itl_offsets request i's gaps are itl_values[offsets[i]:offsets[i+1]]
    /requests/error_index, error_text   errors of the requests that have one (sparse)

``record`` repeats metadata, summary, metrics, failure, format version, request count and
result id as one JSON string: the attributes are for people and other tools, the record lets
a merge read a point with two attribute reads (format + record) instead of dozens.
``result_id`` is a sha256 over the record and the request arrays: the identity a merge uses to
count a result once however many copies of the file it sees.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

from ixhpc.atomic import atomic_path

FORMAT = "ixhpc-run-point"
VERSION = 1

# dataset name -> (numpy dtype, units)
REQUEST_COLUMNS: dict[str, tuple[str, str]] = {
    "ttft": ("f8", "ms"),
    "tpot": ("f8", "ms"),
    "e2el": ("f8", "ms"),
    "start_time": ("f8", "s since benchmark start"),
    "input_len": ("i4", "tokens"),
    "output_len": ("i4", "tokens"),
    "success": ("?", "bool"),
}
ITL_DTYPE = "f4"  # float32 ms: 60 ns resolution at 1 s, half the bytes of the biggest array


class PointFileError(ValueError):
    """A file that is not a complete, valid run-point file; the message says why."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass
class Point:
    metadata: dict[str, Any]
    summary: dict[str, Any]
    metrics: dict[str, float]
    failure: str
    config: dict[str, Any]
    requests: dict[str, np.ndarray]
    itl_values: np.ndarray
    itl_offsets: np.ndarray
    error_index: np.ndarray
    error_text: list[str]
    result_id: str = field(default="")

    @property
    def n_requests(self) -> int:
        return len(self.itl_offsets) - 1

    def record(self) -> dict[str, Any]:
        """What the result id covers, besides the request arrays."""
        return {"metadata": self.metadata, "summary": self.summary, "metrics": self.metrics,
                "failure": self.failure}


def arrays_digest(point: Point) -> str:
    h = hashlib.sha256()
    for name in REQUEST_COLUMNS:
        h.update(np.ascontiguousarray(point.requests[name], REQUEST_COLUMNS[name][0]).tobytes())
    h.update(np.ascontiguousarray(point.itl_values, ITL_DTYPE).tobytes())
    h.update(np.ascontiguousarray(point.itl_offsets, "i8").tobytes())
    h.update(np.ascontiguousarray(point.error_index, "i8").tobytes())
    h.update("\0".join(point.error_text).encode())
    return h.hexdigest()


def _record_digest(record: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def fingerprint(point: Point) -> str:
    """The result id: covers the record and, through its digest, every request array."""
    return _record_digest({**point.record(), "arrays_sha256": arrays_digest(point)})


def write(path: str | os.PathLike[str], point: Point) -> str:
    """Write ``point`` to ``path`` atomically (a killed writer leaves no file); return its id."""
    point.result_id = fingerprint(point)
    with atomic_path(path) as tmp, h5py.File(tmp, "w", libver="latest") as f:
        f.attrs.update({k: v for k, v in point.metadata.items()})
        f.attrs.update({
            "ixhpc_format": FORMAT, "ixhpc_format_version": VERSION,
            "result_id": point.result_id, "n_requests": point.n_requests,
            "failure": point.failure,
            "record": json.dumps({**point.record(), "arrays_sha256": arrays_digest(point),
                                  "format_version": VERSION, "n_requests": point.n_requests,
                                  "result_id": point.result_id}),
        })
        for group, values in (("summary", point.summary), ("metrics", point.metrics),
                              ("bench_config", point.config)):
            f.create_group(group).attrs.update(values)
        req = f.create_group("requests")
        for name, (dtype, units) in REQUEST_COLUMNS.items():
            data = np.asarray(point.requests[name], dtype=dtype)
            req.create_dataset(name, data=data, dcpl=_layout(data.nbytes))
            req[name].attrs["units"] = units
        req.create_dataset("itl_values", data=np.asarray(point.itl_values, dtype=ITL_DTYPE))
        req["itl_values"].attrs["units"] = "ms"
        offsets = np.asarray(point.itl_offsets, dtype="i8")
        req.create_dataset("itl_offsets", data=offsets, dcpl=_layout(offsets.nbytes))
        req.create_dataset("error_index", data=np.asarray(point.error_index, dtype="i8"))
        req.create_dataset("error_text", data=point.error_text, dtype=h5py.string_dtype())
    return point.result_id


_COMPACT_MAX = 60_000  # HDF5's limit is 64 KiB per object header


def _layout(nbytes: int):
    """Compact layout for small arrays: stored in the object header, read with it in one go,
    which is most of what makes reading many small point files fast."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    if 0 < nbytes <= _COMPACT_MAX:
        dcpl.set_layout(h5py.h5d.COMPACT)
    return dcpl


def read(path: str | os.PathLike[str], with_requests: bool = True) -> Point:
    """Read and validate a run-point file; raise PointFileError saying what is wrong with it.

    Uses h5py's low-level API: a merge reads thousands of small files and the high-level
    API's per-call overhead (~100 us per lookup) would dominate the time.
    """
    fid = _open(path)
    try:
        return _read_fid(fid, path, with_requests)
    except PointFileError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise PointFileError(path, f"damaged run-point file: {short_error(exc)}") from None
    finally:
        fid.close()


def _open(path: str | os.PathLike[str]):
    try:
        if os.path.getsize(path) == 0:
            raise PointFileError(path, "empty file")
        return h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDONLY)
    except FileNotFoundError:
        raise PointFileError(path, "no such file") from None
    except OSError as exc:
        raise PointFileError(path, f"not a readable HDF5 file (truncated or corrupt): {short_error(exc)}") from None


_STR = h5py.string_dtype()


def _str_attr(fid, name: str) -> str | None:
    """A string attribute, or None if absent or not a string (a foreign file)."""
    try:
        attr = h5py.h5a.open(fid, name.encode())
        out = np.empty((), _STR)
        attr.read(out)
    except (KeyError, OSError, TypeError, ValueError):
        return None
    value = out[()]
    return value.decode() if isinstance(value, bytes) else str(value)


def _dataset(group, name: str, dtype: str, size: int) -> np.ndarray:
    """Read a 1-D dataset whose length the record already told us (a mismatch raises)."""
    out = np.empty(size, dtype)
    dset = h5py.h5d.open(group, name.encode())
    if dset.get_space().get_simple_extent_npoints() != size:
        raise ValueError(f"{name} has the wrong length (expected {size})")
    if size:
        dset.read(h5py.h5s.ALL, h5py.h5s.ALL, out)
    return out


def _read_fid(fid, path, with_requests: bool) -> Point:
    fmt = _str_attr(fid, "ixhpc_format")
    if fmt != FORMAT:
        what = f"an ixhpc file of kind {fmt!r}" if fmt else "HDF5, but not written by ixhpc"
        raise PointFileError(path, f"not a run-point file ({what})")
    rec = json.loads(_str_attr(fid, "record") or "null")
    version = int(rec["format_version"])
    if version > VERSION:
        raise PointFileError(path, f"format version {version} is newer than this ixhpc reads ({VERSION})")
    n = int(rec["n_requests"])
    covered = {k: rec[k] for k in ("metadata", "summary", "metrics", "failure", "arrays_sha256")}
    if _record_digest(covered) != rec["result_id"]:
        raise PointFileError(path, "record does not match its result id (altered or corrupt)")
    point = Point(
        metadata=rec["metadata"], summary=rec["summary"], metrics=rec["metrics"],
        failure=rec["failure"], config={}, requests={}, itl_values=np.empty(0, ITL_DTYPE),
        itl_offsets=np.zeros(n + 1, "i8"), error_index=np.empty(0, "i8"), error_text=[],
        result_id=str(rec["result_id"]),
    )
    if with_requests:
        _read_requests(fid, path, point, n)
        if arrays_digest(point) != rec["arrays_sha256"]:
            raise PointFileError(path, "request data do not match their checksum (corrupt)")
    return point


def _read_requests(fid, path, point: Point, n: int) -> None:
    req = h5py.h5g.open(fid, b"requests")
    for name, (dtype, _) in REQUEST_COLUMNS.items():
        point.requests[name] = _dataset(req, name, dtype, n)
    offs = point.itl_offsets = _dataset(req, "itl_offsets", "i8", n + 1)
    if offs[0] != 0 or np.any(offs[1:] < offs[:-1]):
        raise PointFileError(path, "requests/itl_offsets do not start at 0 and rise")
    point.itl_values = _dataset(req, "itl_values", ITL_DTYPE, int(offs[-1]))
    point.error_index = _dataset(req, "error_index", "i8", _length(req, "error_index"))
    if point.error_index.size:
        text = _dataset(req, "error_text", _STR, point.error_index.size)
        point.error_text = [t.decode() if isinstance(t, bytes) else str(t) for t in text]
        if np.any((point.error_index < 0) | (point.error_index >= n)):
            raise PointFileError(path, "requests/error_index points outside the requests")


def _length(group, name: str) -> int:
    return int(h5py.h5d.open(group, name.encode()).get_space().get_simple_extent_npoints())


def short_error(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]

