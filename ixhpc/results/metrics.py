"""InferenceX metrics of one run point, computed once from its topology (never from file names).

Names follow InferenceX's ``utils/process_result.py`` (the rows of ``agg_bmk.json``): per-GPU
throughputs, every ``*_ms`` summary latency in seconds without the suffix, and interactivity
(``*_intvty`` = 1000 / TPOT in ms, i.e. tokens per second seen by one user).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ixhpc.errors import ResultFileError

LATENCIES = ("ttft", "tpot", "itl", "e2el")
STATS = ("mean", "median", "std", "p90", "p99", "p99.9")
# std of TPOT has no inverse meaning, so interactivity is only derived from these.
INTVTY_STATS = ("mean", "median", "p90", "p99", "p99.9")
THROUGHPUTS = ("tput_per_gpu", "output_tput_per_gpu", "input_tput_per_gpu")


def metric_names() -> list[str]:
    names = list(THROUGHPUTS)
    names += [f"{stat}_{lat}" for lat in LATENCIES for stat in STATS]
    names += [f"{stat}_intvty" for stat in INTVTY_STATS]
    return names


def gpu_split(meta: Mapping[str, Any]) -> tuple[int, int]:
    """(GPUs doing prefill, GPUs doing decode); both are the whole allocation when aggregated."""
    keys = ("prefill_gpus", "decode_gpus") if meta.get("disagg") else ("gpus",)
    missing = [k for k in keys if not isinstance(meta.get(k), int) or isinstance(meta.get(k), bool)]
    if missing:
        kind = "a disaggregated" if meta.get("disagg") else "an aggregated"
        raise ResultFileError(f"metadata of {kind} point needs integer {', '.join(missing)}")
    bad = [k for k in keys if meta[k] <= 0]
    if bad:
        raise ResultFileError(f"metadata {', '.join(bad)} must be positive")
    if meta.get("disagg"):
        return meta["prefill_gpus"], meta["decode_gpus"]
    return meta["gpus"], meta["gpus"]


def point_metrics(meta: Mapping[str, Any], summary: Mapping[str, Any]) -> dict[str, float]:
    """The InferenceX metrics of one point from its metadata and ``ixhpc.bench`` summary."""
    total = float(summary.get("total_token_throughput", math.nan))
    output = float(summary.get("output_throughput", math.nan))
    prefill, decode = gpu_split(meta)
    if meta.get("disagg"):
        all_gpus = prefill + decode
    else:
        all_gpus = prefill  # aggregated: every GPU does both phases
    out: dict[str, float] = {
        "tput_per_gpu": total / all_gpus,
        "output_tput_per_gpu": output / decode,
        "input_tput_per_gpu": (total - output) / prefill,
    }
    for lat in LATENCIES:
        for stat in STATS:
            out[f"{stat}_{lat}"] = _float(summary.get(f"{stat}_{lat}_ms")) / 1000.0
    for stat in INTVTY_STATS:
        tpot_ms = _float(summary.get(f"{stat}_tpot_ms"))
        out[f"{stat}_intvty"] = 1000.0 / tpot_ms if tpot_ms > 0 else math.nan
    return out


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _flag(value: Any) -> str:
    """InferenceX writes dp-attention flags as the strings 'true'/'false'."""
    return "true" if value is True else "false"


# ixhpc metadata key -> InferenceX agg_bmk.json key (identity and topology fields).
_IDENTITY = {
    "runner": "hw", "conc": "conc", "image": "image", "model": "model",
    "model_prefix": "infmax_model_prefix", "framework": "framework", "precision": "precision",
    "spec_decoding": "spec_decoding", "disagg": "disagg", "isl": "isl", "osl": "osl",
    "multinode": "is_multinode",
}
_SINGLE_NODE = {"tp": "tp", "ep": "ep"}
_MULTI_NODE = {
    "prefill_tp": "prefill_tp", "prefill_ep": "prefill_ep",
    "prefill_num_worker": "prefill_num_workers", "decode_tp": "decode_tp",
    "decode_ep": "decode_ep", "decode_num_worker": "decode_num_workers",
    "prefill_gpus": "num_prefill_gpu", "decode_gpus": "num_decode_gpu",
}


def agg_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """One ``agg_bmk.json`` row from a merged-table row (metadata + metrics columns)."""
    out = {ix: row[key] for key, ix in _IDENTITY.items() if _present(row.get(key))}
    if row.get("multinode"):
        out.update({ix: row[k] for k, ix in _MULTI_NODE.items() if _present(row.get(k))})
        out["prefill_dp_attention"] = _flag(row.get("prefill_dp_attn"))
        out["decode_dp_attention"] = _flag(row.get("decode_dp_attn"))
    else:
        out.update({ix: row[k] for k, ix in _SINGLE_NODE.items() if _present(row.get(k))})
        out["dp_attention"] = _flag(row.get("dp_attn"))
    for name in metric_names():
        if _present(row.get(name)):
            out[name] = row[name]
    return out


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))
