"""Agentic-coding results (issue 19): the trace replay's result file -> a run point.

``python -m ixhpc.bench --scenario agentic-coding`` writes its own document (docs/agentic.md,
"Result file"): per-request records with session/turn/subagent identity and the AgentX metrics
of agentx SPEC §3. ``point`` checks it (pydantic, at the edge) and builds the point the store
writes, so merge, report, status and resume treat it as any other point:

* ``/requests`` holds every request (warm-up ones too, ``phase`` tells them apart) with TTFT,
  E2EL and per-request ITL as TPOT; times count from the start of the profiling window, so
  warm-up requests start before 0 and the server metric series and GPU power share the clock.
* the summary (``benchmark_serving`` names) is over the successful profiling requests;
* ``metrics`` adds the flat AgentX figures (``agentic_*``: latency blocks, interactivity, the
  headline E2E-normalised interactivity, throughput per GPU over every engine GPU, the
  theoretical cache-hit rate, request counts) and replaces the per-GPU throughputs with the
  SPEC's (all three over all GPUs); they become merge columns like every metric;
* the verdict is ``validity.judge_agentic`` (the 10 % failure gate, the 900 s floor);
* ``agentic`` (the replay's metrics document) goes into the record, the identity columns into
  ``/agentic/requests`` (``store``).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, StrictFloat, StrictInt, StrictStr, model_validator

from ixhpc.bench import validity
from ixhpc.bench.metrics import distribution

SCENARIO = "agentic-coding"
# Columns of /agentic/requests: the request's identity in the replay (rows as /requests).
ID_COLUMNS: dict[str, str] = {
    "phase": "str", "lane": "int", "trace_id": "str", "play": "int", "session_id": "str",
    "subagent": "str", "turn": "int", "correlation_id": "str", "root_correlation_id": "str",
    "max_tokens": "int", "expected_output_len": "int", "hit_blocks": "int", "total_blocks": "int",
}
LATENCY_BLOCKS = ("ttft", "e2el", "itl", "intvty", "full_response_intvty", "e2e_norm_intvty")
STATS = ("mean", "p50", "p75", "p90", "p95", "std")
HEADLINE = "agentic_e2e_norm_intvty_p90"  # AgentX's x-axis: 1 / p90(E2EL / OSL), tokens/s/user

Num = StrictInt | StrictFloat


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Requests(_Strict):
    phase: list[Literal["warmup", "profiling"]]
    lane: list[StrictInt]
    trace_id: list[StrictStr]
    play: list[StrictInt]
    session_id: list[StrictStr]
    subagent: list[StrictStr]
    turn: list[StrictInt]
    correlation_id: list[StrictStr]
    root_correlation_id: list[StrictStr]
    start: list[Num | None]
    end: list[Num | None]
    ttft: list[Num | None]
    e2el: list[Num | None]
    itl: list[Num | None]
    input_len: list[StrictInt]
    output_len: list[StrictInt]
    max_tokens: list[StrictInt]
    expected_output_len: list[StrictInt]
    hit_blocks: list[StrictInt]
    total_blocks: list[StrictInt]
    error: list[StrictStr]

    @model_validator(mode="after")
    def _same_lengths(self) -> Requests:
        n = len(self.phase)
        bad = [k for k in type(self).model_fields if len(getattr(self, k)) != n]
        if bad:
            raise ValueError(f"requests.{bad[0]} has {len(getattr(self, bad[0]))} entries, phase has {n}")
        return self


class Replay(_Strict):
    """The replay's result document (ixhpc.bench.agentic.cli)."""

    scenario: Literal["agentic-coding"]
    config: dict[str, Any]
    agentic: dict[str, Any]
    requests: Requests
    failure: StrictStr | None = None
    validity: dict[str, Any]
    clock: dict[str, Num]
    server_metrics: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _window(self) -> Replay:
        window = self.agentic.get("profiling_window")
        if not (isinstance(window, list) and len(window) == 2 and all(isinstance(x, (int, float)) for x in window)):
            raise ValueError("agentic.profiling_window: expected [start, end] seconds")
        if "start_unix" not in self.clock:
            raise ValueError("clock.start_unix: missing")
        return self


def is_replay(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("scenario") == SCENARIO


def window(doc: dict[str, Any]) -> tuple[float, float]:
    """The profiling window (unix seconds) of a replay document."""
    lo, hi = doc["agentic"]["profiling_window"]
    start = float(doc["clock"]["start_unix"])
    return start + float(lo), start + float(hi)


def _f(x: float | None) -> float:
    return math.nan if x is None else float(x)


def summary(r: Replay) -> dict[str, Any]:
    """``benchmark_serving``-named figures over the successful profiling requests (per-request
    ITL stands for both TPOT and ITL: the replay keeps no per-token gaps)."""
    req, ag = r.requests, r.agentic
    prof = [i for i, ph in enumerate(req.phase) if ph == "profiling"]
    ok = [i for i in prof if not req.error[i]]
    tput = ag.get("request_metrics", {}).get("throughput", {})
    duration = float(tput.get("duration") or 0.0)
    total_in = sum(max(req.input_len[i], 0) for i in ok)
    total_out = sum(req.output_len[i] for i in ok)

    def rate(x: float) -> float:
        return x / duration if duration > 0 else math.nan

    out: dict[str, Any] = {
        "completed": len(ok), "failed": len(prof) - len(ok), "duration": duration,
        "total_input_tokens": total_in, "total_output_tokens": total_out,
        "request_throughput": rate(len(ok)), "output_throughput": rate(total_out),
        "total_token_throughput": rate(total_in + total_out),
    }
    for name, col in (("ttft", req.ttft), ("tpot", req.itl), ("itl", req.itl), ("e2el", req.e2el)):
        values = np.array([_f(col[i]) for i in ok], dtype=float) * 1e3
        out.update(distribution(name, values[np.isfinite(values)]))
    out.update(max_concurrency=int(r.config.get("concurrency", ag.get("conc", 0))), num_prompts=len(prof),
               request_rate=math.inf)
    return out


def flat_metrics(ag: dict[str, Any]) -> dict[str, float]:
    """The replay's metrics as flat ``agentic_*`` figures (merge columns); absent ones: NaN."""
    rm = ag.get("request_metrics", {})
    lat = rm.get("latency", {})
    out: dict[str, float] = {}
    for block in LATENCY_BLOCKS:
        for stat in STATS:
            out[f"agentic_{block}_{stat}"] = _num(lat.get(block, {}).get(stat))
    tput = rm.get("throughput", {})
    per_gpu = tput.get("per_gpu", {})
    for kind in ("input", "output", "total"):
        out[f"agentic_{kind}_tokens_per_s"] = _num(tput.get(f"{kind}_tokens_per_second"))
        out[f"agentic_{kind}_tokens_per_s_per_gpu"] = _num(per_gpu.get(f"{kind}_tokens_per_second"))
    out["agentic_qps_mean"] = _num(rm.get("qps", {}).get("mean"))
    out["agentic_theoretical_cache_hit_rate"] = _num(rm.get("cache", {}).get("theoretical_cache_hit_rate"))
    acct = ag.get("request_accounting", {})
    out["agentic_requests_total"] = _num(ag.get("num_requests_total"))
    out["agentic_requests_successful"] = _num(ag.get("num_requests_successful"))
    out["agentic_requests_failed"] = _num(acct.get("records_error_dropped"))
    out["agentic_warmup_requests"] = _num(acct.get("records_warmup_dropped"))
    out["agentic_context_overflows"] = _num(acct.get("context_overflows"))
    out["agentic_canonical"] = 1.0 if ag.get("canonical") else 0.0
    out["agentic_client_cpu_s"] = _num(ag.get("client_cpu_seconds"))
    return out


def _num(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else math.nan


def metrics(ag: dict[str, Any], base: dict[str, float]) -> dict[str, float]:
    """``base`` (InferenceX's per-point metrics) with the SPEC's per-GPU throughputs (every
    figure over all the engine GPUs, §3.4) and the flat AgentX figures."""
    flat = flat_metrics(ag)
    return {**base, "tput_per_gpu": flat["agentic_total_tokens_per_s_per_gpu"],
            "output_tput_per_gpu": flat["agentic_output_tokens_per_s_per_gpu"],
            "input_tput_per_gpu": flat["agentic_input_tokens_per_s_per_gpu"], **flat}


def evidence(r: Replay) -> dict[str, Any]:
    prof = [e for ph, e in zip(r.requests.phase, r.requests.error) if ph == "profiling"]
    return {"profiling_requests": len(prof), "failed": sum(1 for e in prof if e),
            "duration": float(r.config.get("duration", 0.0))}


def judged(r: Replay) -> dict[str, Any]:
    """The verdict (``validity.judge_agentic``) over the replay's evidence, judged here again."""
    ev = evidence(r)
    return {**validity.judge_agentic(ev), "evidence": ev}


def request_columns(r: Replay) -> tuple[dict[str, Any], list[float], list[int], list[str]]:
    """The /requests columns (ms; times from the profiling start), empty gaps, error texts."""
    req = r.requests
    origin = float(r.agentic["profiling_window"][0])
    n = len(req.phase)
    columns = {
        "ttft": [_f(x) * 1e3 for x in req.ttft], "tpot": [_f(x) * 1e3 for x in req.itl],
        "e2el": [_f(x) * 1e3 for x in req.e2el], "start_time": [_f(x) - origin for x in req.start],
        "input_len": req.input_len, "output_len": req.output_len, "success": [not e for e in req.error],
        "created_time": None,
    }
    return columns, [], [0] * (n + 1), list(req.error)


def id_columns(r: Replay) -> dict[str, list[Any]]:
    return {name: list(getattr(r.requests, name)) for name in ID_COLUMNS}


# ----------------------------------------------------------------------------- InferenceX's row


def export_row(row: dict[str, Any]) -> dict[str, Any]:
    """The aggregate row InferenceX writes for an agentic point (agentx SPEC §3.6), from a
    merged-table row: identity and topology as ``export.inferencex_row`` builds them (without
    isl/osl, latencies and the flat throughputs), ``scenario_type``, the KV-offload fields,
    the counts, ``request_metrics`` (rebuilt from the ``agentic_*`` columns: latency blocks,
    throughput with ``per_gpu``, qps mean, theoretical cache hit), ``server_metrics`` (the
    engines' prefix-cache hit and KV usage when scraped) and the power fields."""
    from ixhpc.results import export

    result, env, power = export.point_inputs({**row, "isl": 0, "osl": 0})
    result = {k: result[k] for k in ("max_concurrency", "model_id", "total_token_throughput", "output_throughput")}
    data = export.inferencex_row(result, env, power)
    for key in ("isl", "osl", "tput_per_gpu", "output_tput_per_gpu", "input_tput_per_gpu"):
        data.pop(key, None)
    data["scenario_type"] = SCENARIO
    version = row.get("kv_offload_backend_version")
    backend = ({"name": row["kv_offload_backend_name"], **({"version": version} if _given(version) else {})}
               if _given(row.get("kv_offload_backend_name")) else None)
    data |= {"kv_offloading": row.get("kv_offloading") or "none", "kv_offload_backend": backend,
             "allocated_cpu_dram_gb": int(row.get("total_cpu_dram_gb") or 0),
             "agentic_traces": row.get("agentic_traces"), "duration": row.get("duration"),
             "num_requests_total": _int(row.get("agentic_requests_total")),
             "num_requests_successful": _int(row.get("agentic_requests_successful")),
             "request_metrics": _request_metrics(row), "server_metrics": _server_metrics(row)}
    return data


def _given(x: Any) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def _int(x: Any) -> int:
    return int(x) if _given(x) else 0


def _block(row: dict[str, Any], prefix: str) -> dict[str, float]:
    return {s: float(row[f"{prefix}_{s}"]) for s in STATS if _given(row.get(f"{prefix}_{s}"))}


def _request_metrics(row: dict[str, Any]) -> dict[str, Any]:
    latency = {b: _block(row, f"agentic_{b}") for b in LATENCY_BLOCKS}
    latency["tpot"] = latency["itl"]
    latency["full_response_itl"] = latency["itl"]  # the client's end is the last token (docs/agentic.md)
    throughput: dict[str, Any] = {"per_gpu": {}}
    for kind in ("input", "output", "total"):
        if _given(row.get(f"agentic_{kind}_tokens_per_s")):
            throughput[f"{kind}_tokens_per_second"] = float(row[f"agentic_{kind}_tokens_per_s"])
        if _given(row.get(f"agentic_{kind}_tokens_per_s_per_gpu")):
            throughput["per_gpu"][f"{kind}_tokens_per_second"] = float(row[f"agentic_{kind}_tokens_per_s_per_gpu"])
    hit = row.get("agentic_theoretical_cache_hit_rate")
    return {"qps": {"mean": float(row["agentic_qps_mean"])} if _given(row.get("agentic_qps_mean")) else {},
            "latency": latency, "throughput": throughput,
            "cache": {"theoretical_cache_hit_rate": _num(hit) if _given(hit) else None}}


def _server_metrics(row: dict[str, Any]) -> dict[str, Any]:
    hit, usage = row.get("srv_prefix_cache_hit_rate"), row.get("srv_kv_cache_usage_max")
    present = _given(hit) or _given(usage)
    return {"present": present,
            "cache": {"gpu_cache_hit_rate": _num(hit)} if _given(hit) else {},
            "kv_cache": {"gpu_usage_pct": _num(usage)} if _given(usage) else {}}
