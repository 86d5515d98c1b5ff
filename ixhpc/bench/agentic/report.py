"""SPEC §3: per-request records, the aggregate ``request_metrics`` and the validity gate.

Statistics: mean, p50/p75/p90/p95 (numpy's linear interpolation), population std, rounded to
5 decimals. Only successful profiling records count; values <= 0 or non-finite are skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ixhpc.bench.agentic.gate import FAILURE_THRESHOLD as FAILURE_THRESHOLD  # re-exported
from ixhpc.bench.agentic.gate import MIN_CANONICAL_DURATION as MIN_CANONICAL_DURATION

QS = (50, 75, 90, 95)
OVERFLOW_MARKERS = ("context length", "maximum context", "prompt is too long", "context window",
                    "too many tokens")


def is_overflow(error: str) -> bool:
    low = error.lower()
    return any(m in low for m in OVERFLOW_MARKERS)


@dataclass
class Record:
    phase: str
    lane: int
    trace_id: str
    play: int  # pass
    session_id: str  # stream: "<trace>" or "<trace>::sa:<agent>"
    subagent: str  # "" for the root
    turn: int
    correlation_id: str
    root_correlation_id: str
    start: float  # seconds since the replay's start (perf_counter based)
    end: float
    ttft: float  # s; nan on failure
    isl: int  # server prompt_tokens (-1 unknown)
    osl: int
    max_tokens: int
    expected_osl: int  # recorded out
    hit_blocks: int
    total_blocks: int
    error: str

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def e2el(self) -> float:
        return self.end - self.start if self.ok else math.nan

    @property
    def itl(self) -> float:
        return (self.e2el - self.ttft) / (self.osl - 1) if self.ok and self.osl >= 2 else math.nan


def _r(x: float) -> float | int:
    v = round(float(x), 5)
    return int(v) if v >= 1 and v == int(v) else v


def _raw(values: list[float]) -> dict[str, float]:
    a = np.asarray([v for v in values if math.isfinite(v) and v > 0], dtype=float)
    if not a.size:
        return {}
    out = {"mean": float(a.mean())}
    for q in QS:
        out[f"p{q}"] = float(np.percentile(a, q))
    out["std"] = float(a.std())
    return out


def stats(values: list[float]) -> dict[str, float | int]:
    return {k: _r(v) for k, v in _raw(values).items()}


def _inverse(values: list[float]) -> dict[str, float | int]:
    """Interactivity: 1 / stat of the values; std = pstdev of the per-request inverses."""
    a = [v for v in values if math.isfinite(v) and v > 0]
    base = _raw(a)
    if not base:
        return {}
    out: dict[str, float | int] = {k: _r(1.0 / v) for k, v in base.items() if k != "std"}
    out["std"] = _r(float(np.std([1.0 / v for v in a])))
    return out


def qps(ends: list[float]) -> dict[str, Any]:
    if not ends:
        return {}
    ends = sorted(ends)
    first, last = ends[0], ends[-1]
    counts = []
    c = first
    idx = 0
    while c + 1 <= last:
        n = 0
        while idx < len(ends) and ends[idx] < c + 1:
            if ends[idx] >= c:
                n += 1
            idx += 1
        counts.append(float(n))
        c += 1
    return {**stats(counts), "window_seconds": 1, "samples": len(counts)}


def request_metrics(records: list[Record], num_gpus: int = 1) -> dict[str, Any]:
    ok = [r for r in records if r.phase == "profiling" and r.ok]
    itl = [r.itl for r in ok]
    full_itl = itl  # the client's last token time is the end of the stream (see client.py)
    norm = [r.e2el / r.osl for r in ok if r.osl > 0 and r.e2el > 0]
    latency = {"ttft": stats([r.ttft for r in ok]), "e2el": stats([r.e2el for r in ok]),
               "itl": stats(itl), "tpot": stats(itl), "intvty": _inverse(itl),
               "full_response_itl": stats(full_itl), "full_response_intvty": _inverse(full_itl),
               "e2e_norm_intvty": _inverse(norm)}
    isl = sum(max(r.isl, 0) for r in ok)
    osl = sum(r.osl for r in ok)
    duration = (max(r.end for r in ok) - min(r.start for r in ok)) if ok else 0.0
    tput = {"duration": _r(duration)}
    if duration > 0:
        tput.update({"input_tokens_per_second": _r(isl / duration), "output_tokens_per_second": _r(osl / duration),
                     "total_tokens_per_second": _r((isl + osl) / duration)})
        tput_gpu = {k: _r(float(v) / num_gpus) for k, v in tput.items() if k != "duration"}
    else:
        tput_gpu = {}
    hits = sum(r.hit_blocks for r in ok)
    total = sum(r.total_blocks for r in ok)
    return {
        "qps": qps([r.end for r in ok]),
        "latency": latency,
        "tokens": {"input": stats([float(r.isl) for r in ok]), "output_actual": stats([float(r.osl) for r in ok]),
                   "output_expected": stats([float(r.expected_osl) for r in ok])},
        "throughput": {**tput, "per_gpu": tput_gpu, "num_gpus": num_gpus},
        "cache": {"theoretical_cache_hit_rate": _r(hits / total) if total else None},
    }


def accounting(records: list[Record]) -> dict[str, Any]:
    warm = sum(1 for r in records if r.phase == "warmup")
    prof = [r for r in records if r.phase == "profiling"]
    errors = [r for r in prof if not r.ok]
    cats: dict[str, int] = {}
    for r in errors:
        key = (r.error.split() or ["error"])[0].rstrip(":")
        cats[key] = cats.get(key, 0) + 1
    return {"records_total": len(records), "records_warmup_dropped": warm,
            "records_error_dropped": len(errors), "error_categories": cats,
            "context_overflows": sum(1 for r in errors if is_overflow(r.error))}


def gate(records: list[Record], duration: float, exit_reason: str = "") -> tuple[str | None, bool]:
    """(failure or None, canonical) per SPEC §3.7 and the 900 s floor of §2.1."""
    prof = [r for r in records if r.phase == "profiling"]
    errors = sum(1 for r in prof if not r.ok)
    completed = len(prof)
    failure = None
    if exit_reason:
        failure = exit_reason
    elif completed - errors <= 0:
        failure = "no successful profiling request"
    elif errors / completed > FAILURE_THRESHOLD:
        failure = f"{errors} of {completed} profiling requests failed (> {FAILURE_THRESHOLD:.0%})"
    return failure, duration >= MIN_CANONICAL_DURATION


def request_arrays(records: list[Record]) -> dict[str, list[Any]]:
    """Per-request columns for the result file (times in s from the replay's start)."""
    def col(f: Any) -> list[Any]:
        return [f(r) for r in records]

    def num(x: float) -> float | None:
        return round(x, 6) if math.isfinite(x) else None

    return {
        "phase": col(lambda r: r.phase), "lane": col(lambda r: r.lane), "trace_id": col(lambda r: r.trace_id),
        "play": col(lambda r: r.play), "session_id": col(lambda r: r.session_id),
        "subagent": col(lambda r: r.subagent), "turn": col(lambda r: r.turn),
        "correlation_id": col(lambda r: r.correlation_id), "root_correlation_id": col(lambda r: r.root_correlation_id),
        "start": col(lambda r: num(r.start)), "end": col(lambda r: num(r.end)), "ttft": col(lambda r: num(r.ttft)),
        "e2el": col(lambda r: num(r.e2el)), "itl": col(lambda r: num(r.itl)),
        "input_len": col(lambda r: r.isl), "output_len": col(lambda r: r.osl),
        "max_tokens": col(lambda r: r.max_tokens), "expected_output_len": col(lambda r: r.expected_osl),
        "hit_blocks": col(lambda r: r.hit_blocks), "total_blocks": col(lambda r: r.total_blocks),
        "error": col(lambda r: r.error),
    }
