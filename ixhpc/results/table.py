"""The merged file: a columnar table of run points; their per-request data are in segments.

Layout (format ``ixhpc-merged``, version 2)::

    /            attrs: ixhpc_format, ixhpc_format_version, n_points, summary_only,
                        merges (how many merges have committed: names their segments)
    /points/<column>       one resizable dataset per column, n_points rows; ``kind`` attribute:
                           float (NaN = absent), int (int64, INT_MISSING = absent),
                           bool (int8, -1 = absent), str (UTF-8, "" = absent)

Columns are metadata keys, the bench summary (raw ``*_ms`` names), InferenceX metrics
(``ixhpc.results.metrics``), the load generator's settings (``bench_<name>``) and bookkeeping
(result_id, failure, validity, validity_reasons, n_requests, requests_sha256, source_*, and
where the point's per-request data are: ``segments.REFS``). The per-request data live in ``<file>.segments/`` (see
ixhpc.results.segments), so a merge rewrites only this small table.

Version 1 (per-request data inside the file) is still loaded as a table; merges refuse it as
an output and take only its table as an input (it is derived data: its run-point files hold
everything).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import h5py
import numpy as np
import numpy.typing as npt

from ixhpc.evals.results import columns as eval_columns
from ixhpc.results import segments, store

if TYPE_CHECKING:
    import pandas

FORMAT = "ixhpc-merged"
VERSION = 2
INT_MISSING = np.iinfo(np.int64).min
_STR = h5py.string_dtype()
_STORAGE = {"float": "f8", "int": "i8", "bool": "i1", "str": _STR}
_MISSING: dict[str, Any] = {"float": math.nan, "int": INT_MISSING, "bool": -1, "str": ""}
ROW_CHUNK = 4096


class MergedFileError(ValueError):
    pass


@dataclass(frozen=True)
class Source:
    path: str
    size: int
    mtime_ns: int


_KINDS = {bool: "bool", int: "int", float: "float", str: "str"}


def kind_of(value: Any) -> str:
    kind = _KINDS.get(type(value))  # the common case, without an isinstance chain
    if kind:
        return kind
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
    row.update({f"bench_{k}": v for k, v in point.config.items()})
    row.update(point.server_metrics)
    if point.power is not None:
        row.update({k: v for k, v in point.power.get("metrics", {}).items()},
                   power_valid=bool(point.power.get("power_valid")),
                   power_reasons=",".join(point.power.get("reasons", [])))
    if point.slo_search is not None:  # the search this point was a probe of (ixhpc.slo)
        search, conc = point.slo_search, point.metadata.get("conc")
        answer = search.get("answer")
        row.update(slo_spec=search["spec"], slo_answer=-1 if answer is None else int(answer),
                   slo_met=any(p["met"] for p in search["probes"] if p["conc"] == conc),
                   **{f"slo_{k}": float(v) for k, v in search["slo"].items() if v is not None})
    row.update(eval_columns(point.eval))  # accuracy evals: verdict, reasons, lowest scores
    if point.custom is not None:  # a custom benchmark's step: no throughput, its exit status and log
        row.update({f"custom_{k}": v for k, v in point.custom.items()})
    row.update(result_id=point.result_id, failure=point.failure, n_requests=point.n_requests,
               validity=point.verdict)
    if point.validity and point.validity.get("reasons"):
        row["validity_reasons"] = ",".join(point.validity["reasons"])
    if point.requests_sha256:
        row["requests_sha256"] = point.requests_sha256
    if source is not None:
        row.update(source_path=source.path, source_size=source.size, source_mtime_ns=source.mtime_ns)
    return row


_INT64 = (-(2**63), 2**63 - 1)
_NOT_NAMES = {"", ".", ".."}


def unfit(row: dict[str, Any]) -> str | None:
    """Why ``row`` cannot become table columns (None: it can). Its names become HDF5 dataset
    names: a ``/`` or ``.`` there would make groups or clash, and break the merged file for
    good. Only scalars fit a column. Run per point in a merge: a few microseconds."""
    names = "\x01".join(row)
    if "/" in names or "\0" in names or not _utf8(names) or not _NOT_NAMES.isdisjoint(row):
        bad = next(k for k in row if "/" in k or "\0" in k or k in _NOT_NAMES or not _utf8(k))
        return f"column name {bad!r} is not a plain name"
    for name, value in row.items():
        t = type(value)
        if t is str:
            if "\0" in value or not _utf8(value):
                return f"{name}: text with NUL or invalid characters"
        elif t is int:
            if not _INT64[0] < value <= _INT64[1]:  # int64 min is the missing-value marker
                return f"{name}: integer out of range"
        elif t is not float and t is not bool:
            return f"{name}: not a number, text or bool ({t.__name__})"
    return None


def _utf8(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:  # lone surrogates, as JSON can carry them
        return False
    return True


def widen(kinds: dict[str, str], row: dict[str, Any]) -> str | None:
    """Widen ``kinds`` to take ``row``, or say why the row cannot join (``kinds`` unchanged)."""
    wanted = {}
    for name, value in row.items():
        have, kind = kinds.get(name), kind_of(value)
        if have != kind:
            combined = combined_kind(have, kind)
            if combined is None:
                return f"{name} is {kind} here but {have} in the merged table"
            if combined != have:
                wanted[name] = combined
    kinds.update(wanted)
    return None


@dataclass
class Batch:
    """Rows as columns: each column's kind and values in storage form (absent = missing).

    A merge moves rows in batches so that its single writing process does per-column work,
    not per-value work: workers turn rows into batches.
    """

    where: list[str]  # each row's origin, for messages
    columns: dict[str, tuple[str, np.ndarray]]

    def __len__(self) -> int:
        return len(self.where)

    @classmethod
    def from_rows(cls, rows: list[dict[str, Any]], where: list[str]) -> tuple[Batch, list[int]]:
        """The batch of ``rows``, but for those whose kinds clash with earlier rows' (their
        indices are returned: they join as batches of their own, to be checked one by one)."""
        kinds: dict[str, str] = {}
        odd = [i for i, row in enumerate(rows) if widen(kinds, row) is not None]
        if odd:
            out = set(odd)
            keep = [i for i in range(len(rows)) if i not in out]
            rows, where = [rows[i] for i in keep], [where[i] for i in keep]
        return cls(where, {name: (kind, _column(kind, rows, name)) for name, kind in kinds.items()}), odd

    def select(self, rows: np.ndarray) -> Batch:
        """The rows a boolean mask or an index array selects."""
        index = np.flatnonzero(rows) if rows.dtype == bool else rows
        return Batch([self.where[i] for i in index],
                     {name: (kind, values[index]) for name, (kind, values) in self.columns.items()})

    def present(self, name: str) -> np.ndarray:
        """Which rows have a value in column ``name``."""
        if name not in self.columns:
            return np.zeros(len(self), bool)
        kind, values = self.columns[name]
        # cast: numpy types an element-wise comparison of a dtype-Any array as Any
        return cast(npt.NDArray[np.bool_],
                    values == values if kind == "float" else values != _MISSING[kind])  # NaN != NaN

    def column_as(self, name: str, kind: str) -> np.ndarray:
        """Column ``name`` stored as ``kind`` (a wider kind than its own, or the same)."""
        if name not in self.columns:
            return _filled(kind, len(self))
        have, values = self.columns[name]
        if have == "int" and kind == "float":
            return np.where(values == INT_MISSING, math.nan, values.astype("f8"))
        return values


# ----------------------------------------------------------------------------- writing


def create(f: h5py.File, summary_only: bool) -> None:
    f.attrs.update(ixhpc_format=FORMAT, ixhpc_format_version=VERSION, n_points=0,
                   summary_only=summary_only, merges=0)
    f.create_group("points")


def _new_column(group: h5py.Group, name: str, dtype: Any, chunk: int) -> h5py.Dataset:
    return group.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(chunk,))


def _append(ds: h5py.Dataset, values: np.ndarray) -> None:
    n = ds.shape[0]
    if len(values):
        ds.resize((n + len(values),))
        ds[n:] = values


def column_kinds(f: h5py.File) -> dict[str, str]:
    return {name: str(ds.attrs["kind"]) for name, ds in f["points"].items()}


def append(f: h5py.File, batches: list[Batch], kinds: dict[str, str], stored: dict[str, str]) -> None:
    """Append the batches' rows; ``kinds`` (every column's) must be wide enough for them.
    ``stored`` (column_kinds of ``f``, kept up to date here) spares re-reading every column."""
    points = f["points"]
    n = int(f.attrs["n_points"])
    for name, kind in kinds.items():
        have = stored.get(name)
        if have is None:
            ds = _new_column(points, name, _STORAGE[kind], ROW_CHUNK)
            ds.attrs["kind"] = kind
            _append(ds, _filled(kind, n))
        elif have != kind:  # int column that must now hold floats
            ds = _retype(points, name, kind)
        else:
            ds = points[name]
        stored[name] = kind
        _append(ds, np.concatenate([b.column_as(name, kind) for b in batches]))
    f.attrs["n_points"] = n + sum(len(b) for b in batches)


def _filled(kind: str, n: int) -> np.ndarray:
    return np.full(n, _MISSING[kind], dtype=object if kind == "str" else _STORAGE[kind])


def _column(kind: str, rows: list[dict[str, Any]], name: str) -> np.ndarray:
    """Column ``name`` of ``rows`` (whose values fit ``kind``; absent = missing, never None)."""
    missing = _MISSING[kind]
    return np.array([row.get(name, missing) for row in rows], dtype=object if kind == "str" else _STORAGE[kind])


def _retype(points: h5py.Group, name: str, kind: str) -> h5py.Dataset:
    old = points[name][()]
    values = np.where(old == INT_MISSING, math.nan, old.astype("f8"))
    del points[name]
    ds = _new_column(points, name, _STORAGE[kind], ROW_CHUNK)
    ds.attrs["kind"] = kind
    _append(ds, values)
    return ds


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


def frame(columns: dict[str, tuple[str, np.ndarray]]) -> pandas.DataFrame:
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
            texts = values.astype(object)  # a copy: "" (absent) becomes None, i.e. <NA>
            texts[values == ""] = None
            data[name] = pd.array(texts, dtype="string")
    return pd.DataFrame(data)


def rows_frame(rows: list[dict[str, Any]]) -> pandas.DataFrame:
    """The same DataFrame shape for rows that never went through a merged file."""
    batch, odd = Batch.from_rows(rows, [""] * len(rows))
    assert not odd, "rows of differing kinds"
    return frame(batch.columns)


def python_columns(columns: dict[str, tuple[str, np.ndarray]], drop: Iterable[str] = ()) -> dict[str, list[Any]]:
    """Columns as lists of plain Python values, None where absent (see ``row_at``)."""
    dropped = set(drop)
    return {name: _python(kind, data) for name, (kind, data) in columns.items() if name not in dropped}


def row_at(columns: dict[str, list[Any]], i: int) -> dict[str, Any]:
    """Row ``i`` of ``python_columns`` with absent values left out, as point_row makes it."""
    return {name: values[i] for name, values in columns.items() if values[i] is not None}


def _python(kind: str, data: np.ndarray) -> list[Any]:
    if kind == "float":
        return [None if v != v else v for v in data.tolist()]  # NaN != NaN
    if kind == "int":
        return [None if v == INT_MISSING else v for v in data.tolist()]
    if kind == "bool":
        return [None if v < 0 else bool(v) for v in data.tolist()]
    return [v or None for v in data.tolist()]


def _open_merged(path: str | os.PathLike[str]) -> h5py.File | None:
    """``path`` opened if it is a merged file (checked), None if it is another HDF5 file."""
    from ixhpc.errors import ResultFileError

    if not os.path.exists(path):
        raise ResultFileError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ResultFileError(f"{path}: not a readable HDF5 file ({store.short_error(exc)})") from None
    if f.attrs.get("ixhpc_format") != FORMAT:
        f.close()
        return None
    try:
        check(f, path)
    except (MergedFileError, KeyError, OSError) as exc:
        f.close()
        raise ResultFileError(str(exc) if isinstance(exc, MergedFileError)
                              else f"{path}: damaged merged file") from None
    return f


def load(path: str | os.PathLike[str]) -> pandas.DataFrame:
    """Table of a merged file, or the one-row table of a run-point file."""
    from ixhpc.errors import ResultFileError

    f = _open_merged(path)
    if f is not None:
        with f:
            return frame(read_columns(f))
    try:
        return rows_frame([point_row(store.read(path, with_requests=False))])
    except store.PointFileError as exc:
        raise ResultFileError(str(exc)) from None


def requests(path: str | os.PathLike[str], result_id: str | None = None) -> store.Requests:
    """Per-request data of the point ``result_id`` (a unique prefix will do) of a merged file,
    or of a run-point file (``result_id`` optional there)."""
    from ixhpc.errors import ResultFileError

    f = _open_merged(path)
    if f is None:
        try:
            point = store.read(path)
        except store.PointFileError as exc:
            raise ResultFileError(str(exc)) from None
        if result_id and not point.result_id.startswith(result_id):
            raise ResultFileError(f"{path} holds result {point.result_id[:12]}, not {result_id}")
        assert point.requests is not None
        return point.requests
    with f:
        refs = _refs(f, path, result_id)
    try:
        return segments.fetch(segments.directory(path), refs)
    except segments.SegmentError as exc:
        raise ResultFileError(str(exc)) from None


def _refs(f: h5py.File, path: str | os.PathLike[str], result_id: str | None) -> dict[str, Any]:
    """Where the point ``result_id`` of merged file ``f`` keeps its per-request data."""
    from ixhpc.errors import ResultFileError

    if not result_id:
        raise ResultFileError(f"{path} is a merged file: say which point (its result_id)")
    if f.attrs["summary_only"]:
        raise ResultFileError(f"{path} was merged with --summary-only: it holds no per-request data")
    if int(f.attrs["ixhpc_format_version"]) < 2:
        raise ResultFileError(f"{path} was merged by an older ixhpc: merge its run-point files again "
                              f"for per-request data")
    ids = read_columns(f, ["result_id"])["result_id"][1].astype(str)
    hits = np.flatnonzero(np.char.startswith(ids, result_id))
    if len(hits) != 1:
        raise ResultFileError(f"{path}: {'no' if not len(hits) else 'more than one'} point with result id {result_id}")
    return row_at(python_columns(read_columns(f, [*segments.REFS, "requests_sha256"])), int(hits[0]))
