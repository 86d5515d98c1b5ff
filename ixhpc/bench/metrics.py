"""Per-request arrays and the summary, named as InferenceX ``benchmark_serving`` names them."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ixhpc.bench import goodput as slos
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
        "created_time": np.round(np.array([r.queued for r in results]) - bench_start, 6).tolist(),
        "itl_ms_values": np.round(np.concatenate(gaps) if gaps else np.empty(0), _DECIMALS).tolist(),
        "itl_ms_offsets": offsets.tolist(),
    }


def created_ttft(results: list[RequestResult]) -> dict[str, float]:
    """TTFT counted from when the client created each request (InferenceX's timer starts
    there) beside the true one (from when it was written), and their difference, in ms over
    the successful requests; {} when none succeeded."""
    ok = [r for r in results if r.success and math.isfinite(r.queued)]
    if not ok:
        return {}
    true = np.array([r.ttft for r in ok]) * 1e3
    lead = np.array([r.start - r.queued for r in ok]) * 1e3
    return {"mean": float((true + lead).mean()), "mean_true": float(true.mean()),
            "created_to_written_mean": float(lead.mean()),
            "created_to_written_p99": float(np.percentile(lead, 99))}


SERVING_STATS = ("mean", "median", "std", "p90", "p99", "p99.9")  # benchmark_serving's key order


def serving_document(summary: dict[str, Any], requests: dict[str, Any], config: dict[str, Any],
                     start_unix: float, date: str) -> dict[str, Any]:
    """The result in InferenceX's ``benchmark_serving`` format (its ``--save-result
    --save-detailed`` JSON, with its ``benchmark_start_time_unix``/``_end_time_unix``), so
    InferenceX's tools (process_result, power aggregation) read an ixhpc run. Times in seconds
    in the arrays, ms in the summary; a failed request has TTFT 0 and no gaps, as there;
    ``e2els`` and ``start_times`` (when the request was written, since the start) are the
    fork's optional arrays. Texts are not kept: ``generated_texts`` are empty."""
    offsets = requests["itl_ms_offsets"]
    gaps = requests["itl_ms_values"]
    rate = summary["request_rate"]

    def s(ms: float) -> float:
        return ms / 1000.0 if math.isfinite(ms) else 0.0

    doc: dict[str, Any] = {
        "date": date, "backend": "openai", "model_id": config["model"], "tokenizer_id": config["model"],
        "best_of": 1, "num_prompts": summary["num_prompts"],
        "request_rate": "inf" if math.isinf(rate) else rate, "burstiness": config.get("burstiness", 1.0),
        "max_concurrency": summary["max_concurrency"], "duration": summary["duration"],
        "benchmark_start_time_unix": start_unix, "benchmark_end_time_unix": start_unix + summary["duration"],
    }
    doc |= {k: summary[k] for k in ("completed", "total_input_tokens", "total_output_tokens",
                                    "request_throughput")}
    doc["request_goodput:"] = summary.get("request_goodput")  # sic: benchmark_serving's key
    doc |= {k: summary[k] for k in ("output_throughput", "total_token_throughput")}
    doc |= {
        "input_lens": requests["input_len"], "output_lens": requests["output_len"],
        "ttfts": [s(t) for t in requests["ttft_ms"]],
        "itls": [[g / 1000.0 for g in gaps[a:b]] for a, b in zip(offsets, offsets[1:])],
        "generated_texts": ["" for _ in requests["ttft_ms"]], "errors": requests["error"],
        "e2els": [s(t) for t in requests["e2el_ms"]], "start_times": requests["start_time"],
    }
    for name in ("ttft", "tpot", "itl", "e2el"):
        doc |= {f"{stat}_{name}_ms": summary[f"{stat}_{name}_ms"] for stat in SERVING_STATS}
    return doc


def summarize(
    results: list[RequestResult], duration: float, max_concurrency: int, request_rate: float,
    slo: slos.Slo | None = None,
) -> dict[str, Any]:
    """The summary; with ``slo`` also its goodput figures (``ixhpc.bench.goodput``)."""
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
    if slo is not None:
        summary.update(slos.goodput(slo, {"ttft_ms": [r.ttft * 1e3 for r in results],
                                          "tpot_ms": [r.tpot * 1e3 for r in results],
                                          "e2el_ms": [r.e2el * 1e3 for r in results],
                                          "success": [r.success for r in results]}, duration))
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
