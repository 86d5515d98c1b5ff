"""The merged file: a columnar table of run points plus their concatenated per-request data.

Layout (format ``ixhpc-merged``, version 1)::

    /            attrs: ixhpc_format, ixhpc_format_version, n_points, n_requests, n_itl,
                        summary_only
    /points/<column>       one resizable dataset per column, n_points rows; ``kind`` attribute:
                           float (NaN = absent), int (int64, INT_MISSING = absent),
                           bool (int8, -1 = absent), str (UTF-8, "" = absent)
    /requests/<column>     every point's requests concatenated (the run-point file's columns);
                           point i's rows are req_start[i] : req_start[i] + req_count[i]
    /requests/itl_count    gaps per request; point i's gaps start at itl_start[i] in itl_values
    /requests/itl_values   float32 ms
    /requests/error_row, error_text   the requests that have an error (sparse)

Columns are metadata keys, the bench summary (raw ``*_ms`` names), InferenceX metrics
(``ixhpc.results.metrics``) and bookkeeping (result_id, source_*, req_*, itl_*, failure).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Iterable

import h5py
import numpy as np

from ixhpc.results import store

FORMAT = "ixhpc-merged"
VERSION = 1
INT_MISSING = np.iinfo(np.int64).min
_STR = h5py.string_dtype()
_STORAGE = {"float": "f8", "int": "i8", "bool": "i1", "str": _STR}
_MISSING: dict[str, Any] = {"float": math.nan, "int": INT_MISSING, "bool": -1, "str": ""}
ROW_CHUNK = 4096
REQ_CHUNK = 65536


class MergedFileError(ValueError):
    pass


@dataclass(frozen=True)
class Source:
    path: str
    size: int
    mtime_ns: int


def kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "str"


def combined_kind(old: str | None, new: str) -> str | None:
    """The kind a column must have to hold both; None when it cannot (text vs number)."""
    if old is None or old == new:
        return new
    if {old, new} == {"int", "float"}:
        return "float"
    return None


def point_row(point: store.Point, source: Source | None = None) -> dict[str, Any]:
    """One table row. Later groups win on a name clash; bookkeeping always wins."""
    row: dict[str, Any] = {**point.summary, **point.metadata, **point.metrics}
    row.update(result_id=point.result_id, failure=point.failure, n_requests=point.n_requests)
    if source is not None:
        row.update(source_path=source.path, source_size=source.size, source_mtime_ns=source.mtime_ns)
    return row


# ----------------------------------------------------------------------------- writing


def create(f: h5py.File, summary_only: bool) -> None:
    f.attrs.update(ixhpc_format=FORMAT, ixhpc_format_version=VERSION, n_points=0,
                   n_requests=0, n_itl=0, summary_only=summary_only)
    f.create_group("points")
    if not summary_only:
        req = f.create_group("requests")
        for name, (dtype, units) in store.REQUEST_COLUMNS.items():
            _new_column(req, name, dtype, REQ_CHUNK).attrs["units"] = units
        _new_column(req, "itl_count", "i4", REQ_CHUNK)
        _new_column(req, "itl_values", store.ITL_DTYPE, 4 * REQ_CHUNK).attrs["units"] = "ms"
        _new_column(req, "error_row", "i8", 1024)
        _new_column(req, "error_text", _STR, 1024)


def _new_column(group: h5py.Group, name: str, dtype: Any, chunk: int) -> h5py.Dataset:
    return group.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(chunk,))


def _append(ds: h5py.Dataset, values: np.ndarray) -> None:
    n = ds.shape[0]
    if len(values):
        ds.resize((n + len(values),))
        ds[n:] = values


def column_kinds(f: h5py.File) -> dict[str, str]:
    return {name: str(ds.attrs["kind"]) for name, ds in f["points"].items()}


def append_rows(f: h5py.File, rows: list[dict[str, Any]], kinds: dict[str, str]) -> None:
    """Append rows whose values fit ``kinds`` (the caller reconciled them with combined_kind)."""
    points = f["points"]
    n = int(f.attrs["n_points"])
    for name, kind in kinds.items():
        if name not in points:
            ds = _new_column(points, name, _STORAGE[kind], ROW_CHUNK)
            ds.attrs["kind"] = kind
            _append(ds, _filled(kind, n))
        elif points[name].attrs["kind"] != kind:  # int column that must now hold floats
            _retype(points, name, kind)
        _append(points[name], _column(kind, [row.get(name) for row in rows]))
    f.attrs["n_points"] = n + len(rows)


def _filled(kind: str, n: int) -> np.ndarray:
    return np.full(n, _MISSING[kind], dtype=object if kind == "str" else _STORAGE[kind])


def _column(kind: str, values: list[Any]) -> np.ndarray:
    missing = _MISSING[kind]
    if kind == "str":
        return np.array(["" if v is None else str(v) for v in values], dtype=object)
    return np.array([missing if v is None else v for v in values], dtype=_STORAGE[kind])


def _retype(points: h5py.Group, name: str, kind: str) -> None:
    old = points[name][()]
    values = np.where(old == INT_MISSING, math.nan, old.astype("f8"))
    del points[name]
    ds = _new_column(points, name, _STORAGE[kind], ROW_CHUNK)
    ds.attrs["kind"] = kind
    _append(ds, values)


def append_requests(f: h5py.File, batch: list[store.Point], rows: list[dict[str, Any]]) -> None:
    """Concatenate the batch's request arrays; record where each point's rows start in ``rows``."""
    req = f["requests"]
    n_req, n_itl = int(f.attrs["n_requests"]), int(f.attrs["n_itl"])
    for point, row in zip(batch, rows):
        row.update(req_start=n_req, req_count=point.n_requests, itl_start=n_itl,
                   itl_count=int(point.itl_offsets[-1]))
        n_req += point.n_requests
        n_itl += int(point.itl_offsets[-1])
    for name in store.REQUEST_COLUMNS:
        _append(req[name], np.concatenate([p.requests[name] for p in batch]))
    _append(req["itl_count"], np.concatenate([np.diff(p.itl_offsets) for p in batch]).astype("i4"))
    _append(req["itl_values"], np.concatenate([p.itl_values for p in batch]))
    _append(req["error_row"], np.concatenate(
        [p.error_index + row["req_start"] for p, row in zip(batch, rows)]).astype("i8"))
    _append(req["error_text"], np.array([t for p in batch for t in p.error_text], dtype=object))
    f.attrs.update(n_requests=n_req, n_itl=n_itl)


# ----------------------------------------------------------------------------- reading


def check(f: h5py.File, path: str | os.PathLike[str]) -> None:
    """Raise MergedFileError unless ``f`` is a complete merged file this ixhpc can read."""
    if f.attrs.get("ixhpc_format") != FORMAT:
        raise MergedFileError(f"{path} is not an ixhpc merged file")
    if int(f.attrs["ixhpc_format_version"]) > VERSION:
        raise MergedFileError(f"{path} has a newer merged-file format than this ixhpc reads")
    n = int(f.attrs["n_points"])
    short = [name for name, ds in f["points"].items() if ds.shape[0] != n]
    if short:
        raise MergedFileError(f"{path}: column {short[0]} does not have {n} rows")


def read_columns(f: h5py.File, names: Iterable[str] | None = None) -> dict[str, tuple[str, np.ndarray]]:
    points = f["points"]
    n = int(f.attrs["n_points"])
    wanted = list(points) if names is None else [c for c in names if c in points]
    out = {}
    for name in wanted:
        ds = points[name]
        kind = str(ds.attrs["kind"])
        out[name] = (kind, ds.asstr()[:n] if kind == "str" else ds[:n])
    return out


def frame(columns: dict[str, tuple[str, np.ndarray]]):
    """pandas DataFrame with nullable dtypes: absent values are <NA>, never sentinels."""
    import pandas as pd

    data = {}
    for name, (kind, values) in columns.items():
        if kind == "float":
            data[name] = values.astype("f8")
        elif kind == "int":
            data[name] = pd.arrays.IntegerArray(values.astype("i8"), values == INT_MISSING)
        elif kind == "bool":
            data[name] = pd.arrays.BooleanArray(values == 1, values < 0)
        else:
            data[name] = pd.array(np.where(values == "", None, values.astype(object)), dtype="string")
    return pd.DataFrame(data)


def rows_frame(rows: list[dict[str, Any]]):
    """The same DataFrame shape for rows that never went through a merged file."""
    kinds: dict[str, str] = {}
    for row in rows:
        for name, value in row.items():
            kinds[name] = combined_kind(kinds.get(name), kind_of(value)) or "str"
    return frame({name: (kind, _column(kind, [r.get(name) for r in rows])) for name, kind in kinds.items()})


def load(path: str | os.PathLike[str]):
    """Table of a merged file, or the one-row table of a run-point file."""
    from ixhpc.errors import UserError

    try:
        if not os.path.exists(path):
            raise UserError(f"{path}: no such file")
        with h5py.File(path, "r") as f:
            fmt = f.attrs.get("ixhpc_format")
            if fmt == FORMAT:
                check(f, path)
                return frame(read_columns(f))
    except OSError as exc:
        raise UserError(f"{path}: not a readable HDF5 file ({store.short_error(exc)})") from None
    except MergedFileError as exc:
        raise UserError(str(exc)) from None
    try:
        return rows_frame([point_row(store.read(path, with_requests=False))])
    except store.PointFileError as exc:
        raise UserError(str(exc)) from None
