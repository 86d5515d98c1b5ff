"""Per-request arrays and the summary, named as InferenceX ``benchmark_serving`` names them."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ixhpc.bench import validity
from ixhpc.bench.client import RequestResult

PERCENTILES = {"median": 50.0, "p90": 90.0, "p99": 99.0, "p99.9": 99.9}
MAX_FAILED_SHARE = 0.05
_DECIMALS = 4  # milliseconds: 0.1 us resolution is far below timer jitter


def itl_ms(result: RequestResult) -> np.ndarray:
    """Gaps between successive streamed chunks of one request, in ms."""
    if not result.success or len(result.token_times) < 2:
        return np.empty(0)
    return np.diff(np.frombuffer(result.token_times, dtype=np.float64)) * 1e3


def distribution(name: str, values_ms: np.ndarray) -> dict[str, float]:
    """``{mean,median,std,p90,p99,p99.9}_<name>_ms`` over the finite values (NaN when none)."""
    values = values_ms[np.isfinite(values_ms)]
    if values.size == 0:
        return {f"{stat}_{name}_ms": math.nan for stat in ("mean", "std", *PERCENTILES)}
    out = {f"mean_{name}_ms": float(values.mean()), f"std_{name}_ms": float(values.std())}
    for stat, q in PERCENTILES.items():
        out[f"{stat}_{name}_ms"] = float(np.percentile(values, q))
    return out


def request_arrays(results: list[RequestResult], bench_start: float) -> dict[str, Any]:
    """The contract's ``requests`` object: one row per request, ITL gaps as a ragged array."""
    gaps = [itl_ms(r) for r in results]
    offsets = np.zeros(len(results) + 1, dtype=np.int64)
    np.cumsum([g.size for g in gaps], out=offsets[1:])

    def ms(values: list[float]) -> list[float]:
        out: list[float] = np.round(np.asarray(values, dtype=np.float64) * 1e3, _DECIMALS).tolist()
        return out

    return {
        "ttft_ms": ms([r.ttft for r in results]),
        "tpot_ms": ms([r.tpot for r in results]),
        "e2el_ms": ms([r.e2el for r in results]),
        "input_len": [r.input_len for r in results],
        "output_len": [r.output_len for r in results],
        "success": [r.success for r in results],
        "error": [r.error for r in results],
        "start_time": np.round(np.array([r.start for r in results]) - bench_start, 6).tolist(),
        "itl_ms_values": np.round(np.concatenate(gaps) if gaps else np.empty(0), _DECIMALS).tolist(),
        "itl_ms_offsets": offsets.tolist(),
    }


def summarize(
    results: list[RequestResult], duration: float, max_concurrency: int, request_rate: float
) -> dict[str, Any]:
    ok = [r for r in results if r.success]
    total_in = sum(r.input_len for r in ok)
    total_out = sum(r.output_len for r in ok)
    summary: dict[str, Any] = {
        "completed": len(ok),
        "failed": len(results) - len(ok),
        "duration": duration,
        "total_input_tokens": total_in,
        "total_output_tokens": total_out,
        "request_throughput": len(ok) / duration if duration > 0 else math.nan,
        "output_throughput": total_out / duration if duration > 0 else math.nan,
        "total_token_throughput": (total_in + total_out) / duration if duration > 0 else math.nan,
    }
    gaps = [itl_ms(r) for r in ok]
    for name, values in (
        ("ttft", np.array([r.ttft for r in ok]) * 1e3),
        ("tpot", np.array([r.tpot for r in ok]) * 1e3),
        ("itl", np.concatenate(gaps) if gaps else np.empty(0)),
        ("e2el", np.array([r.e2el for r in ok]) * 1e3),
    ):
        summary.update(distribution(name, values))
    summary.update(max_concurrency=max_concurrency, num_prompts=len(results), request_rate=request_rate)
    return summary


def point_failure(summary: dict[str, Any]) -> str | None:
    """Why this benchmark point failed, or None when it passed."""
    total = summary["completed"] + summary["failed"]
    if total and summary["failed"] > MAX_FAILED_SHARE * total:
        return f"{summary['failed']} of {total} requests failed (more than {MAX_FAILED_SHARE:.0%})"
    if summary["total_output_tokens"] == 0:
        return "no output tokens came back"
    return None


def validity_evidence(results: list[RequestResult], summary: dict[str, Any], ignore_eos: bool,
                      stall_timeout: float) -> dict[str, Any]:
    """What ``validity.judge`` needs, measured once over the finished requests (flat numbers:
    stored as they are in the point's file)."""
    ok = [r for r in results if r.success]
    errors = [r.error for r in results if not r.success]
    nousage = [r for r in ok if not r.usage_reported]
    reported = [r for r in ok if r.prompt_tokens >= 0]
    lags = [r.read_lag for r in ok]
    itl = summary.get("mean_itl_ms", math.nan)
    return {
        "requests": len(results),
        "failed": len(errors),
        "timed_out": sum(e.startswith("timeout") for e in errors),
        "stalled": sum(e.startswith("stalled") for e in errors),
        "refused": sum("refused" in e.lower() for e in errors),
        "output_tokens": sum(r.output_len for r in ok),
        "requested_output_tokens": sum(r.max_tokens for r in ok),
        "short_requests": sum(r.output_len < validity.MIN_OUTPUT_TOKENS for r in ok),
        "nousage_requests": len(nousage),
        "nousage_chunks": sum(len(r.token_times) for r in nousage),
        "nousage_max_tokens": sum(r.max_tokens for r in nousage),
        "nousage_multi_word_chunks": sum(r.multi_word_chunks for r in nousage),
        "nousage_text_chars": sum(r.text_chars for r in nousage),
        "requested_input_tokens": sum(r.input_len for r in reported),
        "reported_input_tokens": sum(r.prompt_tokens for r in reported),
        "reported_input_requests": len(reported),
        "median_read_lag_ms": float(np.median(lags)) * 1e3 if lags else 0.0,
        "mean_itl_ms": itl if isinstance(itl, float) and math.isfinite(itl) else 0.0,
        "ignore_eos": ignore_eos,
        "stall_timeout": stall_timeout if math.isfinite(stall_timeout) else 0.0,
    }
