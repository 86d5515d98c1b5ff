"""Bench JSON + run-point metadata -> a run-point HDF5 file (the edge where inputs are checked).

The metadata is checked against the one point-metadata model (``ixhpc.point_metadata``), the
same that ``sweep`` builds it with: closed, strict, one of three point shapes.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from typing import Any, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from ixhpc import point_metadata
from ixhpc.bench import servermetrics, validity
from ixhpc.errors import ResultFileError
from ixhpc.results import agentic, metrics, store

Scalar = StrictBool | StrictInt | StrictFloat | StrictStr
Number = StrictInt | StrictFloat

SHAPES = get_args(point_metadata.PointKind)


class _Strict(BaseModel):
    # strict: "12" is not a number and 1 is not a bool (ints are still accepted as floats)
    model_config = ConfigDict(extra="forbid", strict=True)


class Requests(_Strict):
    ttft_ms: list[float]
    tpot_ms: list[float]
    e2el_ms: list[float]
    input_len: list[StrictInt]
    output_len: list[StrictInt]
    success: list[StrictBool]
    error: list[StrictStr]
    start_time: list[float]
    created_time: list[float] | None = None  # absent: a client older than the field
    itl_ms_values: list[float]
    itl_ms_offsets: list[StrictInt]

    @model_validator(mode="after")
    def _same_lengths(self) -> Requests:
        n = len(self.ttft_ms)
        per_request = ("tpot_ms", "e2el_ms", "input_len", "output_len", "success", "error", "start_time")
        bad = [k for k in per_request if len(getattr(self, k)) != n]
        if self.created_time is not None and len(self.created_time) != n:
            bad.append("created_time")
        if bad:
            raise ValueError(f"requests.{bad[0]} has {len(getattr(self, bad[0]))} entries, ttft_ms has {n}")
        offs = self.itl_ms_offsets
        if len(offs) != n + 1 or offs[0] != 0 or offs[-1] != len(self.itl_ms_values) or any(
            b < a for a, b in zip(offs, offs[1:])
        ):
            raise ValueError("requests.itl_ms_offsets must start at 0, never decrease, end at "
                             "len(itl_ms_values) and have one entry more than there are requests")
        return self


class Validity(_Strict):
    """The client's verdict (``ixhpc.bench.validity``): ingest judges its evidence again."""
    verdict: StrictStr
    reasons: list[StrictStr]
    details: dict[str, StrictStr]
    evidence: dict[str, Scalar]


class BenchResult(_Strict):
    summary: dict[str, Number]
    requests: Requests
    config: dict[str, Scalar | None]
    failure: StrictStr | None = None
    validity: Validity | None = None  # None: a client older than the validity gate (unknown)
    clock: dict[str, Number] | None = None  # the benchmark's window (start/end unix)
    server_metrics: dict[str, Any] | None = None  # ixhpc.bench.servermetrics' document

    @model_validator(mode="after")
    def _throughputs(self) -> BenchResult:
        missing = [k for k in ("total_token_throughput", "output_throughput") if k not in self.summary]
        if missing:
            raise ValueError(f"summary lacks {', '.join(missing)}")
        return self


def _validated(validate: Callable[[Any], Any], data: Any, what: str) -> Any:
    try:
        return validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        # a tagged union's errors start with the tag (the metadata's shape): not a key
        loc = err["loc"][1:] if err["loc"][:1] and err["loc"][0] in SHAPES else err["loc"]
        where = ".".join(str(p) for p in loc)
        raise ResultFileError(f"{what}: {where + ': ' if where else ''}{err['msg']}") from None


def build_point(bench_result: dict[str, Any], metadata: dict[str, Any],
                power: tuple[dict[str, Any], dict[str, Any]] | None = None,
                require_power: bool = False, slo_search: dict[str, Any] | None = None) -> store.Point:
    """Check both inputs and compute the InferenceX metrics once, from the metadata's topology.

    ``power``: the GPU power verdict and readings (``ixhpc.results.power.for_point``); with
    ``require_power`` a point whose power is not valid is invalid (reason ``power_invalid``).
    ``slo_search``: the job's SLO search (``ixhpc.slo``) this point was a probe of.
    An agentic-coding replay's result is built by ``_agentic_point``."""
    if agentic.is_replay(bench_result):
        return _agentic_point(bench_result, metadata, power, require_power)
    bench = _validated(BenchResult.model_validate, bench_result, "benchmark result")
    meta = _validated(point_metadata.ADAPTER.validate_python, metadata, "metadata").record()
    req = bench.requests
    columns = {"ttft": req.ttft_ms, "tpot": req.tpot_ms, "e2el": req.e2el_ms, "start_time": req.start_time,
               "input_len": req.input_len, "output_len": req.output_len, "success": req.success,
               "created_time": req.created_time}
    return store.Point(
        metadata=meta,
        summary=dict(bench.summary),
        metrics=metrics.point_metrics(meta, bench.summary),
        failure=bench.failure or "",
        config={k: v for k, v in bench.config.items() if v is not None},
        requests=store.Requests.from_columns(columns, req.itl_ms_values, req.itl_ms_offsets, req.error),
        validity=_with_power(_judged(bench.validity), power[0] if power else None, require_power),
        **_server_metrics(bench.server_metrics, float(bench.summary.get("duration", 0.0))),
        **_power_fields(power),
        slo_search=_validated(SloSearch.model_validate, slo_search, "SLO search").model_dump()
        if slo_search is not None else None,
    )


def _agentic_point(doc: dict[str, Any], metadata: dict[str, Any],
                   power: tuple[dict[str, Any], dict[str, Any]] | None, require_power: bool) -> store.Point:
    """An agentic-coding replay's point (``ixhpc.results.agentic``)."""
    replay = _validated(agentic.Replay.model_validate, doc, "agentic result")
    meta = _validated(point_metadata.ADAPTER.validate_python, metadata, "metadata").record()
    summary = agentic.summary(replay)
    columns, itl, offsets, errors = agentic.request_columns(replay)
    lo, hi = replay.agentic["profiling_window"]
    return store.Point(
        metadata=meta, summary=summary,
        metrics=agentic.metrics(replay.agentic, metrics.point_metrics(meta, summary)),
        failure=replay.failure or "",
        config={k: v if isinstance(v, (bool, int, float, str)) else json.dumps(v)
                for k, v in replay.config.items() if v is not None},
        requests=store.Requests.from_columns(columns, itl, offsets, errors),
        validity=_with_power(agentic.judged(replay), power[0] if power else None, require_power),
        agentic=replay.agentic, agentic_requests=agentic.id_columns(replay),
        **_server_metrics(replay.server_metrics, float(hi) - float(lo)),
        **_power_fields(power),
    )


def _server_metrics(doc: dict[str, Any] | None, duration: float) -> Any:
    """The srv_* figures (derived again here, over the benchmark's window) and the series."""
    if not doc:
        return {}
    try:
        targets = doc["targets"]
        series: dict[str, tuple[Any, Any]] = {}
        for i, tg in enumerate(targets):
            role = str(tg["role"]).replace("/", "_") or f"target{i}"
            if any(name.startswith(role + "/") for name in series):
                role = f"{role}.{i}"
            for key, s in tg["series"].items():
                if len(s["t"]) != len(s["v"]):
                    raise ValueError(f"{role}/{key}: {len(s['t'])} times, {len(s['v'])} values")
                series[f"{role}/{key}"] = (s["t"], s["v"])
        figures = servermetrics.summarize(targets, 0.0, duration)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ResultFileError(f"benchmark result: server_metrics: {exc}") from None
    return {"server_metrics": figures, "server_series": series}


def _power_fields(power: tuple[dict[str, Any], dict[str, Any]] | None) -> Any:
    return {"power": power[0], "power_series": power[1]} if power else {}


def _with_power(judged: dict[str, Any] | None, power: dict[str, Any] | None, required: bool) -> dict[str, Any] | None:
    if not required or (power is not None and power.get("power_valid")):
        return judged
    why = ",".join(power.get("reasons", [])) if power else "no power sampler"
    base = judged or {"verdict": validity.UNKNOWN, "reasons": [], "details": {}, "evidence": {}}
    return {**base, "verdict": validity.INVALID, "reasons": [*base["reasons"], "power_invalid"],
            "details": {**base["details"], "power_invalid": f"power is required and not valid: {why}"}}


def _judged(given: Validity | None) -> dict[str, Any] | None:
    """The verdict over the client's evidence, by this ixhpc's thresholds (one place:
    ``ixhpc.bench.validity``); None when the client measured none."""
    if given is None:
        return None
    evidence = dict(given.evidence)
    return {**validity.judge(evidence), "evidence": evidence}


class SloProbe(BaseModel):
    model_config = ConfigDict(extra="allow")
    conc: StrictInt
    met: StrictBool
    goodput_fraction: float


class SloSearch(BaseModel):
    """A job's SLO search (``ixhpc.slo``): its objectives, probes and answer."""
    model_config = ConfigDict(extra="allow")
    spec: StrictStr
    slo: dict[str, Number | None]
    concurrencies: list[StrictInt]
    probes: list[SloProbe]
    done: StrictBool
    answer: StrictInt | None


class ResultExists(ResultFileError):
    """The point's result file exists already (another writer may have just published it)."""


def write_point(path: str | os.PathLike[str], bench_result: dict[str, Any], metadata: dict[str, Any],
                power: tuple[dict[str, Any], dict[str, Any]] | None = None, require_power: bool = False,
                slo_search: dict[str, Any] | None = None,
                eval_result: tuple[dict[str, Any], dict[str, bytes]] | None = None,
                custom: dict[str, Any] | None = None) -> str:
    """Write one run-point file atomically; returns its result id. Never overwrites a result:
    publishing is an atomic no-replace, so of two concurrent writers exactly one wins.
    ``eval_result``: the point's eval document and sample logs (``ixhpc.evals.results``).
    ``custom``: a custom benchmark's step record (``no_benchmark``); its verdict is the exit status."""
    if os.path.exists(path):  # cheap early answer; store.write decides race-free
        raise ResultExists(f"{path} exists; results are never overwritten")
    point = build_point(bench_result, metadata, power, require_power, slo_search)
    if eval_result is not None:
        point.eval, point.eval_samples = eval_result
    if custom is not None:
        point.custom, point.validity = custom, validity.judge_custom(int(custom["exit_status"]))
    try:
        return store.write(path, point)
    except FileExistsError:
        raise ResultExists(f"{path} exists; results are never overwritten") from None


def no_benchmark(**config: Any) -> dict[str, Any]:
    """The benchmark result of a point whose load generator did not run (an eval-only point, a
    custom benchmark's): no requests and no throughput (NaN, never 0); ``config`` says why."""
    return {"summary": {"completed": 0, "failed": 0, "duration": 0.0, "total_input_tokens": 0,
                        "total_output_tokens": 0, "total_token_throughput": math.nan,
                        "output_throughput": math.nan},
            "requests": {"ttft_ms": [], "tpot_ms": [], "e2el_ms": [], "input_len": [], "output_len": [],
                         "success": [], "error": [], "start_time": [], "itl_ms_values": [],
                         "itl_ms_offsets": [0]},
            "config": config}


def load_json(path: str | os.PathLike[str], what: str) -> Any:
    """Python-flavoured JSON (NaN, Infinity) as ixhpc.bench writes it."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise ResultFileError(f"{what} {path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultFileError(f"{what} {path}: not readable JSON ({exc})") from None


def ingest(bench_path: str | os.PathLike[str], meta_path: str | os.PathLike[str],
           output: str | os.PathLike[str]) -> str:
    return write_point(output, load_json(bench_path, "benchmark result"), load_json(meta_path, "metadata"))
