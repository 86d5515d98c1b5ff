"""One HDF5 file per run point: write it atomically, read it back, refuse anything else.

Layout (format ``ixhpc-run-point``, version 2)::

    /           attrs: every metadata key, ixhpc_format, ixhpc_format_version, result_id,
                       n_requests, failure, validity (valid/invalid/unknown), validity_reasons
                       (comma-separated codes), record (JSON, see below)
    /summary    attrs: the ixhpc.bench summary (InferenceX benchmark_serving names)
    /metrics    attrs: InferenceX metrics (ixhpc.results.metrics), seconds
    /bench_config  attrs: the load generator's settings
    /requests   compound dataset, one row per request (REQUEST_FIELDS); attrs: each field's
                units, error_texts (the point's distinct error messages: field ``error`` indexes
                them, -1 = no error)
    /itl        every request's inter-token gaps, concatenated (float32 ms); request i has
                ``itl_count[i]`` of them, after those of the requests before it
    /created_time  (when recorded) one float64 per request: when the client created it (s since
                the benchmark's start; ``start_time`` is when it was written), so TTFT as
                InferenceX times it (from creation) can be shown beside the true one; files
                written before it have none (record key ``created_time`` absent)
    /server_metrics  (when scraped) attrs: the srv_* figures; datasets ``<role>/<figure>``:
                (n, 2) float64 (seconds from the benchmark's start, value)
    /power      (when sampled) attrs: power_valid, power_reasons and the power figures;
                datasets ``node<K>/gpu<I>``: (n, 2) float64 (seconds from the start, W)
    /agentic    (agentic-coding points) attrs: the flat ``agentic_*`` figures; ``requests/<column>``:
                each request's identity in the replay (ixhpc.results.agentic.ID_COLUMNS), rows as
                /requests; the record holds the replay's metrics document (``agentic``) and the
                columns' digest (``agentic_requests_sha256``)
    /eval       (points that ran lm-eval, ixhpc.evals) attrs: eval_verdict (pass/fail),
                eval_reasons, eval_concs, eval_only; ``scores/c<E>/<task>`` attrs: each metric and
                its stderr; ``samples/c<E>/<task>``: lm-eval's sample log (JSONL bytes); the record's
                ``eval`` holds the whole document (scores, thresholds, samples' sha256, verdict)
    /custom     (custom benchmarks, srt-slurm ``benchmark.type: custom``) attrs: custom_command,
                custom_exit_status, custom_log (the step's stdout and stderr), custom_start_unix,
                custom_end_unix, custom_wall_s; no requests, throughputs NaN; the verdict is the
                exit status (``custom_exit_status``); the record's ``custom`` holds the same

``record`` repeats metadata, summary, metrics, failure, bench config and error texts as one
canonical JSON string, plus ``validity`` (the verdict, ``ixhpc.bench.validity``; absent in files
written before the gate: "unknown"), ``server_metrics`` and ``power`` (when measured) and
``arrays_sha256`` (over the bytes of /requests and /itl). The
attributes and groups are for people and other tools; a merge reads a point with two attribute
reads (record, result_id) and two dataset reads. ``result_id`` is the sha256 of ``record``:
the identity a merge uses to count a result once however many copies of the file it sees.

Version 1 files (one dataset per request column, ITL offsets, sparse error datasets) are still
read: they are results, and results are never abandoned. They are only read, never written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import h5py
import numpy as np
import numpy.typing as npt

from ixhpc.atomic import atomic_path
from ixhpc.bench import validity

if TYPE_CHECKING:
    import pandas

_T = TypeVar("_T")

FORMAT = "ixhpc-run-point"
VERSION = 2

# field -> (little-endian dtype, units); the order is the compound type's (packed) layout
REQUEST_FIELDS: dict[str, tuple[str, str]] = {
    "ttft": ("<f8", "ms"),
    "tpot": ("<f8", "ms"),
    "e2el": ("<f8", "ms"),
    "start_time": ("<f8", "s since benchmark start"),
    "input_len": ("<i4", "tokens"),
    "output_len": ("<i4", "tokens"),
    "itl_count": ("<i4", "gaps in /itl"),
    "error": ("<i4", "index into error_texts, -1 = no error"),
    "success": ("?", "bool"),
}
REQUEST_DTYPE = np.dtype([(name, dtype) for name, (dtype, _) in REQUEST_FIELDS.items()])
ITL_DTYPE = np.dtype("<f4")  # float32 ms: 60 ns resolution at 1 s, half the bytes of float64
_STR = h5py.string_dtype()
_COMPACT_MAX = 60_000  # HDF5's limit is 64 KiB per object header


class PointFileError(ValueError):
    """A file that is not a complete, valid run-point file; the message says why.

    ``kind`` is the ixhpc format the file has instead (e.g. ``ixhpc-merged``), if any.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str, kind: str = "") -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason
        self.kind = kind


@dataclass
class Requests:
    """A point's per-request data: one REQUEST_DTYPE row per request, gaps, error texts."""

    rows: np.ndarray
    itl: np.ndarray
    error_texts: list[str] = field(default_factory=list)
    created_time: np.ndarray | None = None  # s since benchmark start; None: not recorded

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def itl_offsets(self) -> np.ndarray:
        """Request i's gaps are ``itl[offsets[i]:offsets[i + 1]]``."""
        offsets = np.zeros(len(self.rows) + 1, "i8")
        np.cumsum(self.rows["itl_count"], out=offsets[1:])
        return offsets

    def gaps(self, i: int) -> np.ndarray:
        offsets = self.itl_offsets
        return self.itl[offsets[i]:offsets[i + 1]]

    def errors(self) -> list[str]:
        """Each request's error text, "" for none."""
        texts = self.error_texts
        return [texts[e] if e >= 0 else "" for e in self.rows["error"].tolist()]

    @property
    def nbytes(self) -> int:
        return self.rows.nbytes + self.itl.nbytes

    def frame(self) -> pandas.DataFrame:
        """One row per request (timings in ms as stored), with an ``error`` text column."""
        import pandas as pd

        df = pd.DataFrame({name: self.rows[name] for name in REQUEST_FIELDS if name != "error"})
        df["error"] = pd.array([e or None for e in self.errors()], dtype="string")
        if self.created_time is not None:
            df["created_time"] = self.created_time
        return df

    @classmethod
    def from_columns(cls, columns: dict[str, Any], itl: Any, itl_offsets: Any, errors: list[str]) -> Requests:
        """From per-request columns (REQUEST_FIELDS names but itl_count/error), ragged ITL
        offsets and each request's error text ("" for none)."""
        texts: dict[str, int] = {}
        codes = [texts.setdefault(e, len(texts)) if e else -1 for e in errors]
        rows = np.empty(len(codes), REQUEST_DTYPE)
        for name in REQUEST_FIELDS:
            if name not in ("itl_count", "error"):
                rows[name] = columns[name]
        rows["itl_count"] = np.diff(np.asarray(itl_offsets, "i8"))
        rows["error"] = codes
        created = columns.get("created_time")
        return cls(rows, np.asarray(itl, ITL_DTYPE), list(texts),
                   None if created is None else np.asarray(created, "<f8"))


@dataclass
class Point:
    metadata: dict[str, Any]
    summary: dict[str, Any]
    metrics: dict[str, float]
    failure: str
    config: dict[str, Any]
    requests: Requests | None
    result_id: str = ""
    n_requests: int = 0
    requests_sha256: str = ""  # requests_digest of the data; "" when not known (v1, not read)
    # ixhpc.bench.validity's {verdict, reasons, details, evidence}; None: judged before the
    # gate existed, read as "unknown" (never invalid)
    validity: dict[str, Any] | None = None
    # server metrics (ixhpc.bench.servermetrics): the derived srv_* figures, and the series
    # (``<role>/<figure>`` -> (t s from the benchmark's start, value); written, not read back)
    server_metrics: dict[str, float] = field(default_factory=dict)
    server_series: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    # GPU power (ixhpc.results.power): the verdict document, and the readings per device
    power: dict[str, Any] | None = None
    power_series: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    # the SLO search this point was a probe of (ixhpc.slo): objectives, every probe, the answer
    slo_search: dict[str, Any] | None = None
    # agentic-coding points (ixhpc.results.agentic): the replay's metrics document (in the
    # record) and each request's identity columns (/agentic/requests; written, not read back)
    agentic: dict[str, Any] | None = None
    agentic_requests: dict[str, list[Any]] | None = None
    # accuracy evals (ixhpc.evals.results): the document (in the record) and the sample logs,
    # "c<eval conc>/<task>" -> lm-eval's JSONL bytes (/eval/samples; written, not read back)
    eval: dict[str, Any] | None = None
    eval_samples: dict[str, bytes] = field(default_factory=dict)
    # a custom benchmark's step (command, exit status, log, times): its output format is its own
    custom: dict[str, Any] | None = None

    @property
    def verdict(self) -> str:
        return validity.verdict_of(self.validity)


def requests_digest(req: Requests) -> str:
    h = hashlib.sha256(np.ascontiguousarray(req.rows, REQUEST_DTYPE).data)
    h.update(np.ascontiguousarray(req.itl, ITL_DTYPE).data)
    if req.created_time is not None:  # absent: a file without it keeps its digest
        h.update(np.ascontiguousarray(req.created_time, "<f8").data)
    return h.hexdigest()


def check_requests(req: Requests, n_itl: int | None = None) -> str | None:
    """What is inconsistent in ``req`` (None: nothing)."""
    counts = req.rows["itl_count"]
    if np.any(counts < 0) or int(counts.sum()) != len(req.itl) or (n_itl is not None and n_itl != len(req.itl)):
        return "ITL counts do not add up to the ITL values"
    if req.created_time is not None and len(req.created_time) != len(req.rows):
        return "created_time does not have one value per request"
    errors = req.rows["error"]
    if np.any((errors < -1) | (errors >= len(req.error_texts))):
        return "an error index points outside the error texts"
    return None


# ----------------------------------------------------------------------------- writing


def _record(point: Point) -> dict[str, Any]:
    req = point.requests
    assert req is not None
    return {"format": FORMAT, "format_version": VERSION, "metadata": point.metadata,
            "summary": point.summary, "metrics": point.metrics, "failure": point.failure,
            "config": point.config, "n_requests": len(req), "n_itl": len(req.itl),
            "error_texts": req.error_texts, "arrays_sha256": requests_digest(req),
            **({"created_time": True} if req.created_time is not None else {}),
            **({"validity": point.validity} if point.validity is not None else {}),
            **({"server_metrics": point.server_metrics} if point.server_metrics else {}),
            **({"power": point.power} if point.power is not None else {}),
            **({"slo_search": point.slo_search} if point.slo_search is not None else {}),
            **({"agentic": point.agentic, "agentic_requests_sha256": _columns_digest(point.agentic_requests)}
               if point.agentic is not None else {}),
            **({"eval": point.eval} if point.eval is not None else {}),
            **({"custom": point.custom} if point.custom is not None else {})}


def _columns_digest(columns: dict[str, list[Any]] | None) -> str:
    return hashlib.sha256(json.dumps(columns or {}, sort_keys=True).encode()).hexdigest()


def write(path: str | os.PathLike[str], point: Point) -> str:
    """Write ``point`` to ``path`` atomically (a killed writer leaves no file); return its id.

    Never replaces a file: if ``path`` exists, or another writer publishes it first, raise
    FileExistsError (the decision is one system call: ``atomic.link_new``)."""
    req = point.requests
    if req is None:
        raise ValueError("a run-point file needs its per-request data")
    problem = check_requests(req)
    if problem:
        raise ValueError(problem)
    record = json.dumps(_record(point), sort_keys=True)
    point.result_id = hashlib.sha256(record.encode()).hexdigest()
    point.n_requests = len(req)
    point.requests_sha256 = requests_digest(req)
    with write_hdf5(path, replace=False) as f:
        f.attrs.update(point.metadata)
        f.attrs.update(ixhpc_format=FORMAT, ixhpc_format_version=VERSION, result_id=point.result_id,
                       n_requests=len(req), failure=point.failure, record=record,
                       validity=point.verdict, validity_reasons=",".join(_reasons(point.validity)))
        for group, values in (("summary", point.summary), ("metrics", point.metrics),
                              ("bench_config", point.config)):
            f.create_group(group).attrs.update(values)
        rows = f.create_dataset("requests", data=np.ascontiguousarray(req.rows, REQUEST_DTYPE),
                                dcpl=_layout(req.rows.nbytes))
        rows.attrs.update({name: units for name, (_, units) in REQUEST_FIELDS.items()})
        rows.attrs.create("error_texts", req.error_texts, dtype=_STR)
        itl = f.create_dataset("itl", data=np.asarray(req.itl, ITL_DTYPE), dcpl=_layout(req.itl.nbytes))
        itl.attrs["units"] = "ms"
        if req.created_time is not None:
            created = f.create_dataset("created_time", data=np.ascontiguousarray(req.created_time, "<f8"),
                                       dcpl=_layout(req.created_time.nbytes))
            created.attrs["units"] = "s since benchmark start (request created; start_time: written)"
        _write_series(f, "server_metrics", point.server_series, point.server_metrics, "value")
        if point.power is not None:
            _write_series(f, "power", point.power_series, _power_attrs(point.power), "W")
        if point.slo_search is not None:
            _write_slo_search(f, point.slo_search)
        if point.agentic is not None:
            _write_agentic(f, point)
        if point.eval is not None:
            _write_eval(f, point.eval, point.eval_samples)
        if point.custom is not None:
            f.create_group("custom").attrs.update({f"custom_{k}": v for k, v in point.custom.items()})
    return point.result_id


def _write_agentic(f: h5py.File, point: Point) -> None:
    """``/agentic``: attrs the flat agentic figures; ``requests/<column>``: each request's
    identity in the replay (phase, lane, trace, session, subagent, turn...), rows as /requests."""
    g = f.create_group("agentic")
    g.attrs.update({k: v for k, v in point.metrics.items() if k.startswith("agentic_")})
    req = g.create_group("requests")
    for name, values in (point.agentic_requests or {}).items():
        if values and isinstance(values[0], str):
            req.create_dataset(name, data=np.array(values, dtype=object), dtype=_STR)
        else:
            req.create_dataset(name, data=np.asarray(values, "<i8"))


def read_agentic_requests(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """An agentic point file's ``/agentic/requests`` columns (strings decoded); {} for others."""
    with h5py.File(path, "r") as f:
        if "agentic/requests" not in f:
            return {}
        g = f["agentic/requests"]
        return {name: (g[name].asstr()[()] if h5py.check_string_dtype(g[name].dtype) else g[name][()])
                for name in g}


SLO_PROBE_FIELDS = ("conc", "met", "good_requests", "goodput_fraction", "request_goodput", "output_throughput",
                    "median_tpot_ms", "rate")  # rate: a rate search's request rate (NaN: a concurrency search)


def _write_eval(f: h5py.File, doc: dict[str, Any], samples: dict[str, bytes]) -> None:
    """``/eval``: attrs eval_verdict, eval_reasons (one per line), eval_concs; ``scores/c<E>/<task>``
    attrs ``<metric>,<filter>`` and ``<metric>_stderr,<filter>``; ``samples/c<E>/<task>``: lm-eval's
    sample log (JSONL bytes, gzip)."""
    g = f.create_group("eval")
    g.attrs.update(eval_verdict=doc["verdict"], eval_reasons="\n".join(doc["reasons"]),
                   eval_concs=",".join(str(c) for c in doc["concs"]), eval_only=bool(doc.get("eval_only")))
    for conc, tasks in doc["scores"].items():
        for task, metrics in tasks.items():
            t = g.create_group(f"scores/c{conc}/{task}")
            for key, m in metrics.items():
                metric, _, flt = key.partition(",")
                t.attrs.update({key: m["value"], f"{metric}_stderr,{flt}": m["stderr"]})
    for name, data in sorted(samples.items()):
        g.create_dataset(f"samples/{name}", data=np.frombuffer(data, np.uint8), compression="gzip")


def _write_slo_search(f: h5py.File, search: dict[str, Any]) -> None:
    """``/slo_search``: attrs spec, answer (-1: none), attainment and limits (ms); dataset
    ``probes``: one row per probe, in the order they ran."""
    g = f.create_group("slo_search")
    answer = search.get("answer")
    g.attrs.update(spec=search["spec"], answer=-1 if answer is None else int(answer),
                   **{k: float(v) for k, v in search["slo"].items() if v is not None})
    rows = [tuple(float(p.get(k, np.nan)) for k in SLO_PROBE_FIELDS) for p in search["probes"]]
    g.create_dataset("probes", data=np.array(rows, dtype=np.float64).reshape(-1, len(SLO_PROBE_FIELDS)))
    g["probes"].attrs["columns"] = ",".join(SLO_PROBE_FIELDS)


def _write_series(f: h5py.File, group: str, series: dict[str, tuple[Any, Any]], attrs: dict[str, Any],
                  units: str) -> None:
    """``/group/<name>``: (n, 2) float64 rows of (seconds from the benchmark's start, value)."""
    if not series and not attrs:
        return
    g = f.create_group(group)
    g.attrs.update(attrs)
    g.attrs["clock"] = "seconds from the benchmark's start (the client's time.perf_counter())"
    for name, (t, v) in sorted(series.items()):
        ds = g.create_dataset(name, data=np.column_stack([np.asarray(t, np.float64), np.asarray(v, np.float64)]))
        ds.attrs.update(columns="t_s,value", units=units)


def _power_attrs(doc: dict[str, Any]) -> dict[str, Any]:
    return {"power_valid": bool(doc.get("power_valid")), "power_reasons": ",".join(doc.get("reasons", [])),
            **{k: float(v) for k, v in doc.get("metrics", {}).items()}}


def read_series(path: str | os.PathLike[str], group: str) -> dict[str, np.ndarray]:
    """``/server_metrics`` or ``/power`` series of a point file: name -> (n, 2) array."""
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        if group not in f:
            return out

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()]
        f[group].visititems(visit)
    return out


def _reasons(judged: dict[str, Any] | None) -> list[str]:
    return list(judged.get("reasons", [])) if judged else []


@contextlib.contextmanager
def write_hdf5(path: str | os.PathLike[str], replace: bool = True) -> Iterator[h5py.File]:
    """An HDF5 file built in memory, then written to ``path`` atomically (``atomic_path``).

    HDF5 never writes to disk itself: on a full or failing disk it leaves half-closed files
    behind and can crash the process; plain writes of the finished image fail with an OSError.
    """
    f = h5py.File(f"{path}.in-memory", "w", driver="core", backing_store=False, libver="latest")
    try:
        yield f
        f.flush()
        image = f.id.get_file_image()
    finally:
        f.close()
    with atomic_path(path, replace=replace) as tmp:
        tmp.write_bytes(image)


def _layout(nbytes: int) -> Any:  # an h5py property list (h5py has no type information)
    """Compact layout for small arrays: stored in the object header (checksummed), read with
    it in one go, which is much of what makes reading many small point files fast."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    if 0 < nbytes <= _COMPACT_MAX:
        dcpl.set_layout(h5py.h5d.COMPACT)
    return dcpl


# ----------------------------------------------------------------------------- reading


class PointReader:
    """An open run-point file: ``point()`` reads the record (cheap), ``add_requests()`` the arrays.

    Uses h5py's low-level API: a merge reads thousands of small files and the high-level
    API's per-call overhead (~100 us per lookup) would dominate the time.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path
        self._fid = _open(path)
        self._rec: dict[str, Any] = {}

    def __enter__(self) -> PointReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fid.close()

    def point(self) -> Point:
        return self._guarded(self._point)

    def add_requests(self, point: Point) -> Point:
        """Give ``point`` (from ``point()``) its per-request data, checked against its checksum."""
        read = self._requests_v1 if self._rec.get("format_version") == 1 else self._requests
        point.requests = self._guarded(read)
        point.requests_sha256 = point.requests_sha256 or requests_digest(point.requests)
        return point

    def _guarded(self, read: Callable[[], _T]) -> _T:
        try:
            return read()
        except PointFileError:
            raise
        except (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError) as exc:
            raise PointFileError(self.path, f"damaged run-point file: {short_error(exc)}") from None

    def _point(self) -> Point:
        text = _str_attr(self._fid, "record")
        if text is None:
            fmt = _str_attr(self._fid, "ixhpc_format")
            what = f"an ixhpc file of kind {fmt!r}" if fmt else "HDF5, but not written by ixhpc"
            raise PointFileError(self.path, f"not a run-point file ({what})", kind=fmt or "")
        rec = self._rec = json.loads(text)
        _check_record(rec)
        version = int(rec["format_version"])
        if version > VERSION:
            raise PointFileError(self.path, f"format version {version} is newer than this ixhpc reads ({VERSION})")
        if version == 1:
            result_id = _v1_result_id(rec)
        else:
            result_id = hashlib.sha256(text.encode()).hexdigest()
        if result_id != _str_attr(self._fid, "result_id"):
            raise PointFileError(self.path, "record does not match its result id (altered or corrupt)")
        return Point(metadata=rec["metadata"], summary=rec["summary"], metrics=rec["metrics"],
                     failure=rec["failure"], config=rec["config"] if version > 1 else self._config_v1(),
                     requests=None, result_id=result_id, n_requests=int(rec["n_requests"]),
                     requests_sha256=rec["arrays_sha256"] if version > 1 else "",
                     validity=rec.get("validity"), server_metrics=rec.get("server_metrics", {}),
                     power=rec.get("power"), slo_search=rec.get("slo_search"), agentic=rec.get("agentic"),
                     eval=rec.get("eval"), custom=rec.get("custom"))

    def _requests(self) -> Requests:
        rec = self._rec
        rows = _dataset(self._fid, "requests", REQUEST_DTYPE, int(rec["n_requests"]))
        itl = _dataset(self._fid, "itl", ITL_DTYPE, int(rec["n_itl"]))
        created = _dataset(self._fid, "created_time", "<f8", len(rows)) if rec.get("created_time") is True else None
        req = Requests(rows, itl, list(rec["error_texts"]), created)
        if requests_digest(req) != rec["arrays_sha256"]:
            raise PointFileError(self.path, "request data do not match their checksum (corrupt)")
        problem = check_requests(req)
        if problem:
            raise PointFileError(self.path, problem)
        return req

    # --- version 1: read-only

    def _config_v1(self) -> dict[str, Any]:
        group = h5py.Group(h5py.h5g.open(self._fid, b"bench_config"))
        return {k: v.item() if isinstance(v, np.generic) else v for k, v in group.attrs.items()}

    def _requests_v1(self) -> Requests:
        n = int(self._rec["n_requests"])
        req = h5py.h5g.open(self._fid, b"requests")
        columns = {name: _dataset(req, name, dtype, n) for name, (dtype, _) in _V1_COLUMNS.items()}
        offsets = _dataset(req, "itl_offsets", "<i8", n + 1)
        if offsets[0] != 0 or np.any(offsets[1:] < offsets[:-1]):
            raise PointFileError(self.path, "requests/itl_offsets do not start at 0 and rise")
        itl = _dataset(req, "itl_values", ITL_DTYPE, int(offsets[-1]))
        index = _dataset(req, "error_index", "<i8", _length(req, "error_index"))
        text: npt.NDArray[Any] | list[str] = _dataset(req, "error_text", _STR, len(index)) if len(index) else []
        if np.any((index < 0) | (index >= n)):
            raise PointFileError(self.path, "requests/error_index points outside the requests")
        if _v1_arrays_digest(columns, itl, offsets, index, text) != self._rec["arrays_sha256"]:
            raise PointFileError(self.path, "request data do not match their checksum (corrupt)")
        errors = [""] * n
        for i, t in zip(index.tolist(), text):
            errors[i] = t.decode() if isinstance(t, bytes) else str(t)
        return Requests.from_columns(columns, itl, offsets, errors)


_RECORD_DICTS = ("metadata", "summary", "metrics")


def _check_record(rec: Any) -> None:
    """Raise ValueError unless the record has the shape ixhpc writes (a foreign or altered file
    must fail here, not later in a merge)."""
    if not isinstance(rec, dict):
        raise ValueError("record is not a JSON object")
    for name in _RECORD_DICTS + (("config",) if rec.get("format_version") != 1 else ()):
        if not isinstance(rec.get(name), dict):
            raise ValueError(f"record {name} is not a JSON object")
    if not isinstance(rec.get("failure"), str):
        raise ValueError("record failure is not text")
    for name in ("format_version", "n_requests") + (("n_itl",) if rec.get("format_version") != 1 else ()):
        if type(rec.get(name)) is not int:
            raise ValueError(f"record {name} is not an integer")
    if not isinstance(rec.get("arrays_sha256"), str):
        raise ValueError("record arrays_sha256 is not text")
    judged = rec.get("validity")
    if judged is not None and not (isinstance(judged, dict) and judged.get("verdict") in validity.VERDICTS
                                   and isinstance(judged.get("reasons"), list)
                                   and all(type(r) is str for r in judged["reasons"])):
        raise ValueError("record validity is not a verdict with reasons")
    if rec.get("format_version") != 1:
        texts = rec.get("error_texts")
        if not isinstance(texts, list) or not all(type(t) is str and "\0" not in t for t in texts):
            raise ValueError("record error_texts is not a list of texts")
        try:
            "".join(texts).encode()
        except UnicodeEncodeError:
            raise ValueError("record error_texts hold invalid characters") from None


def read(path: str | os.PathLike[str], with_requests: bool = True) -> Point:
    """Read and validate a run-point file; raise PointFileError saying what is wrong with it."""
    with PointReader(path) as reader:
        point = reader.point()
        return reader.add_requests(point) if with_requests else point


def _open(path: str | os.PathLike[str]) -> Any:  # an h5py FileID
    try:
        if os.path.getsize(path) == 0:
            raise PointFileError(path, "empty file")
        return h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDONLY)
    except FileNotFoundError:
        raise PointFileError(path, "no such file") from None
    except OSError as exc:
        raise PointFileError(path, f"not a readable HDF5 file (truncated or corrupt): {short_error(exc)}") from None


_MEMORY_TYPES: dict[np.dtype, Any] = {}


def _memory_type(dtype: Any) -> Any:  # an h5py TypeID
    """The HDF5 memory type of ``dtype``, made once: h5py would make it on every read, and
    for the compound type that took longer than the read itself."""
    dtype = np.dtype(dtype)
    if dtype not in _MEMORY_TYPES:
        _MEMORY_TYPES[dtype] = h5py.h5t.py_create(dtype)  # as h5py makes it for a read
    return _MEMORY_TYPES[dtype]


def _str_attr(fid: Any, name: str) -> str | None:
    """A string attribute, or None if absent or not a string (a foreign file)."""
    try:
        attr = h5py.h5a.open(fid, name.encode())
        out = np.empty((), _STR)
        attr.read(out, mtype=_memory_type(_STR))
    except (KeyError, OSError, TypeError, ValueError):
        return None
    value = out[()]
    return value.decode() if isinstance(value, bytes) else str(value)


def _dataset(loc: Any, name: str, dtype: Any, size: int) -> np.ndarray:
    """Read a 1-D dataset whose length the record already told us (a mismatch raises)."""
    out = np.empty(size, dtype)
    dset = h5py.h5d.open(loc, name.encode())
    if dset.get_space().get_simple_extent_npoints() != size:
        raise ValueError(f"{name} has the wrong length (expected {size})")
    if size:
        dset.read(h5py.h5s.ALL, h5py.h5s.ALL, out, mtype=_memory_type(out.dtype))
    return out


def _length(loc: Any, name: str) -> int:
    return int(h5py.h5d.open(loc, name.encode()).get_space().get_simple_extent_npoints())


# version 1 layout: dataset name -> (dtype, units), plus itl_values/itl_offsets/error_index/error_text
_V1_COLUMNS: dict[str, tuple[str, str]] = {
    "ttft": ("<f8", "ms"), "tpot": ("<f8", "ms"), "e2el": ("<f8", "ms"),
    "start_time": ("<f8", "s since benchmark start"), "input_len": ("<i4", "tokens"),
    "output_len": ("<i4", "tokens"), "success": ("?", "bool"),
}


def _v1_result_id(rec: dict[str, Any]) -> str:
    covered = {k: rec[k] for k in ("metadata", "summary", "metrics", "failure", "arrays_sha256")}
    return hashlib.sha256(json.dumps(covered, sort_keys=True).encode()).hexdigest()


def _v1_arrays_digest(columns: dict[str, np.ndarray], itl: np.ndarray, offsets: np.ndarray,
                      index: np.ndarray, text: Any) -> str:
    h = hashlib.sha256()
    for name, (dtype, _) in _V1_COLUMNS.items():
        h.update(np.ascontiguousarray(columns[name], dtype).tobytes())
    for values, values_dtype in ((itl, ITL_DTYPE), (offsets, "<i8"), (index, "<i8")):
        h.update(np.ascontiguousarray(values, values_dtype).tobytes())
    h.update("\0".join(t.decode() if isinstance(t, bytes) else str(t) for t in text).encode())
    return h.hexdigest()


def short_error(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]
