"""Exports of a merged table: InferenceX ``agg_bmk.json`` rows and CSV.

An ``agg_bmk.json`` row is what InferenceX's ``utils/process_result.py`` (843c6254f,
``build_result`` plus its power step) prints for one ``benchmark_serving`` result and the
job's environment. ``inferencex_row`` is that rule, over the same two inputs (the result's
fields, InferenceX's environment variable names); ``point_inputs`` gives both for one point of
a merged table, so every exported row is computed the way InferenceX computes it:

* identity: ``hw`` (RUNNER_TYPE), ``conc`` (max_concurrency), ``image``, ``model`` (model_id),
  ``infmax_model_prefix``, ``framework``, ``precision``, ``spec_decoding``, ``disagg``,
  ``recipe_fingerprint`` (RECIPE_FINGERPRINT, "" when unset), ``isl``, ``osl``, then
  ``router`` ({name, version}) and ``kv_p2p_transfer`` when set;
* single-node: ``tp``, ``pp``, ``dcp_size``, ``pcp_size``, ``ep``, ``dp_attention`` ("true"/
  "false"), throughputs per GPU over tp*pp*pcp (InferenceX's count, which ignores ep);
* multi-node: ``prefill_``/``decode_`` tp, pp, dcp_size, pcp_size, ep, dp_attention,
  num_workers, ``num_prefill_gpu``/``num_decode_gpu``, total throughput over both pools, output
  over decode GPUs (all GPUs when there are none: an aggregated multi-node point), input over
  prefill GPUs; a pool without GPUs reports tp 0, ep 0, pp/dcp/pcp 1; ``prefill_hw``/``decode_hw``
  when both pools name their hardware;
* every ``*_ms`` field of the result in seconds without the suffix, and for every TPOT one
  ``*_intvty`` = 1000 / TPOT(ms), ``std_intvty`` included (InferenceX's quirk: it is not a
  standard deviation);
* ``power_metric_schema_version`` (2) and ``power_valid`` (0/1) always; the whole-deployment and
  per-role power metrics (``POWER_METRIC_KEYS``) only when ``power_valid``, rounded as
  InferenceX rounds them (3 decimals for W and J, 6 otherwise). A merged table carries them as
  columns of those names when the point was measured.

``recipe_fingerprint`` is InferenceX's: sha256 of the point's matrix row without conc,
exp-name and recipe-fingerprint (``matrix_fingerprint``), which a point records as
``inferencex_fingerprint``; a point written before it was recorded exports "" (as InferenceX
does when the variable is unset), never ixhpc's own ``recipe_fingerprint`` (the entry's hash).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from ixhpc import atomic
from ixhpc.bench import validity
from ixhpc.errors import ResultFileError

if TYPE_CHECKING:
    import pandas


def records(df: pandas.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain Python values, absent ones as None."""
    # cast: pandas has no type information here (ignore_missing_imports), so this is Any
    return cast("list[dict[str, Any]]", df.astype(object).where(df.notna(), None).to_dict("records"))


def ok_rows(df: pandas.DataFrame, include_invalid: bool = False) -> pandas.DataFrame:
    """Points whose benchmark succeeded and that the validity gate did not find invalid
    (unless ``include_invalid``): failed and invalid points stay in the table, not in
    comparisons. A point judged before the gate (no verdict: unknown) is kept. An eval-only
    point ran no throughput benchmark (ixhpc.evals): its scores are in the eval export."""
    if "failure" in df:
        df = df[df["failure"].isna()]
    if "eval_only" in df:
        df = df[(df["eval_only"] != True).fillna(True).astype(bool)]  # noqa: E712 (a nullable column)
    if not include_invalid and "validity" in df:
        df = df[(df["validity"] != validity.INVALID).fillna(True).astype(bool)]
    return df


def invalid_rows(df: pandas.DataFrame) -> pandas.DataFrame:
    """Points the validity gate judged invalid."""
    if "validity" not in df:
        return df.iloc[0:0]
    return df[(df["validity"] == validity.INVALID).fillna(False).astype(bool)]


def agg_rows(df: pandas.DataFrame, include_invalid: bool = False) -> list[dict[str, Any]]:
    """One row per point; agentic-coding points as InferenceX writes theirs (agentx SPEC §3.6,
    ``ixhpc.results.agentic.export_row``)."""
    from ixhpc.results import agentic

    return [agentic.export_row(row) if row.get("scenario_type") == agentic.SCENARIO
            else inferencex_row(*point_inputs(row)) for row in records(ok_rows(df, include_invalid))]


# ----------------------------------------------------------------------------- InferenceX's row

POWER_METRIC_SCHEMA_VERSION = 2
POWER_METRIC_KEYS = (  # InferenceX utils power: whole-deployment, then per role
    "avg_power_w", "avg_total_gpu_power_w", "total_gpu_energy_j", "joules_per_successful_query",
    "joules_per_input_token", "joules_per_output_token", "joules_per_total_token",
    "prefill_gpu_energy_j", "decode_gpu_energy_j", "prefill_avg_power_w", "decode_avg_power_w",
    "prefill_joules_per_input_token", "decode_joules_per_output_token",
)
_BASE_ENV = ("RUNNER_TYPE", "FRAMEWORK", "PRECISION", "SPEC_DECODING", "ISL", "OSL", "DISAGG",
             "MODEL_PREFIX", "IMAGE")
_MULTINODE_ENV = ("PREFILL_GPUS", "DECODE_GPUS", "PREFILL_NUM_WORKERS", "PREFILL_TP", "PREFILL_EP",
                  "PREFILL_DP_ATTN", "DECODE_NUM_WORKERS", "DECODE_TP", "DECODE_EP", "DECODE_DP_ATTN")
_LATENCIES = ("ttft", "tpot", "itl", "e2el")
_STATS = ("mean", "median", "std", "p90", "p99", "p99.9")


def matrix_fingerprint(row: Mapping[str, Any]) -> str:
    """InferenceX's ``recipe-fingerprint`` of a matrix row (process_changelog): sha256 of the
    raw row without conc, exp-name and recipe-fingerprint, as canonical ASCII JSON."""
    from ixhpc import changelog

    return changelog.fingerprint(dict(row))


def _require(env: Mapping[str, str], names: tuple[str, ...]) -> None:
    missing = [n for n in names if env.get(n) is None]
    if missing:
        raise ResultFileError(f"InferenceX result row: missing {', '.join(missing)}")


def _parallelism(env: Mapping[str, str], prefix: str) -> dict[str, int]:
    out = {"tp": int(env[f"{prefix}TP"]), "pp": int(env.get(f"{prefix}PP_SIZE", "1")),
           "dcp_size": int(env.get(f"{prefix}DCP_SIZE", "1")), "pcp_size": int(env.get(f"{prefix}PCP_SIZE", "1")),
           "ep": int(env[f"{prefix}EP" if prefix else "EP_SIZE"])}
    if any(out[k] <= 0 for k in ("pp", "dcp_size", "pcp_size")):
        raise ResultFileError(f"InferenceX result row: {prefix}PP, DCP and PCP sizes must be positive")
    return out


def _router(raw: str | None) -> dict[str, str] | None:
    if raw in (None, "", "null"):
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise ResultFileError("ROUTER_METADATA must contain valid JSON") from None
    if not isinstance(value, dict) or set(value) != {"name", "version"} or not all(
            isinstance(v, str) and v for v in value.values()):
        raise ResultFileError("ROUTER_METADATA must hold exactly non-empty 'name' and 'version'")
    return value


def inferencex_row(result: Mapping[str, Any], env: Mapping[str, str],
                   power: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``agg_bmk.json`` row InferenceX's process_result prints for a ``benchmark_serving``
    result and the job's environment (InferenceX's variable names); ``power``: the power
    fields (``power_valid`` and ``POWER_METRIC_KEYS``), none = not measured (power_valid 0).
    A latency that is absent (None/NaN) is left out, and a TPOT of 0 gives no interactivity,
    where InferenceX would fail."""
    _require(env, _BASE_ENV)
    disagg = env["DISAGG"].lower() == "true"
    data: dict[str, Any] = {
        "hw": env["RUNNER_TYPE"], "conc": int(result["max_concurrency"]), "image": env["IMAGE"],
        "model": result["model_id"], "infmax_model_prefix": env["MODEL_PREFIX"],
        "framework": env["FRAMEWORK"], "precision": env["PRECISION"], "spec_decoding": env["SPEC_DECODING"],
        "disagg": disagg, "recipe_fingerprint": env.get("RECIPE_FINGERPRINT", ""),
        "isl": int(env["ISL"]), "osl": int(env["OSL"]),
    }
    router = _router(env.get("ROUTER_METADATA"))
    if router is not None:
        data["router"] = router
    if env.get("KV_P2P_TRANSFER"):
        data["kv_p2p_transfer"] = env["KV_P2P_TRANSFER"]
    total, output = float(result["total_token_throughput"]), float(result["output_throughput"])
    if env.get("IS_MULTINODE", "false").lower() == "true":
        _require(env, _MULTINODE_ENV)
        prefill_hw, decode_hw = env.get("PREFILL_HARDWARE", ""), env.get("DECODE_HARDWARE", "")
        if bool(prefill_hw) != bool(decode_hw):
            raise ResultFileError("PREFILL_HARDWARE and DECODE_HARDWARE must be specified together")
        prefill_gpus, decode_gpus = int(env["PREFILL_GPUS"]), int(env["DECODE_GPUS"])
        prefill, decode = _parallelism(env, "PREFILL_"), _parallelism(env, "DECODE_")
        if prefill_gpus <= 0:
            raise ResultFileError("multinode results require at least one prefill GPU")
        if decode_gpus <= 0:  # no decode pool: InferenceX's aggregated multi-node convention
            decode = {"tp": 0, "pp": 1, "dcp_size": 1, "pcp_size": 1, "ep": 0}
        all_gpus = prefill_gpus + decode_gpus
        data |= {"is_multinode": True, **{f"prefill_{k}": v for k, v in prefill.items()},
                 "prefill_dp_attention": env["PREFILL_DP_ATTN"],
                 "prefill_num_workers": int(env["PREFILL_NUM_WORKERS"]),
                 **{f"decode_{k}": v for k, v in decode.items()},
                 "decode_dp_attention": env["DECODE_DP_ATTN"],
                 "decode_num_workers": int(env["DECODE_NUM_WORKERS"]),
                 "num_prefill_gpu": prefill_gpus, "num_decode_gpu": decode_gpus,
                 "tput_per_gpu": total / all_gpus,
                 "output_tput_per_gpu": output / (decode_gpus if decode_gpus > 0 else all_gpus),
                 "input_tput_per_gpu": (total - output) / prefill_gpus}
        if prefill_hw:
            data |= {"prefill_hw": prefill_hw, "decode_hw": decode_hw}
    else:
        if disagg:
            raise ResultFileError("disaggregated mode requires multinode setup")
        _require(env, ("TP", "EP_SIZE", "DP_ATTENTION"))
        par = _parallelism(env, "")
        gpus = par["tp"] * par["pp"] * par["pcp_size"]
        data |= {"is_multinode": False, **par, "dp_attention": env["DP_ATTENTION"],
                 "tput_per_gpu": total / gpus, "output_tput_per_gpu": output / gpus,
                 "input_tput_per_gpu": (total - output) / gpus}
    for key, value in result.items():
        if not isinstance(key, str) or not _finite(value):
            continue
        if key.endswith("ms"):
            data[key.replace("_ms", "")] = float(value) / 1000.0
        if "tpot" in key and float(value) != 0.0:
            data[key.replace("_ms", "").replace("tpot", "intvty")] = 1000.0 / float(value)
    return _with_power(data, power or {})


def _with_power(data: dict[str, Any], power: Mapping[str, Any]) -> dict[str, Any]:
    """InferenceX's ``with_power_metrics``: the schema version and verdict always, the metrics
    only for a valid measurement (a valid one with a non-finite metric is refused)."""
    for key in POWER_METRIC_KEYS:
        data.pop(key, None)
    valid = bool(power.get("power_valid"))
    data["power_metric_schema_version"] = POWER_METRIC_SCHEMA_VERSION
    data["power_valid"] = int(valid)
    if valid:
        for key in POWER_METRIC_KEYS:
            value = power.get(key)
            if value is None:
                continue
            if not _finite(value):
                raise ResultFileError(f"non-finite power metric: {key}")
            data[key] = round(float(value), 3 if key.endswith(("_w", "_j")) else 6)
    return data


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _flag(value: Any) -> str:
    return "true" if value is True else "false"


def point_inputs(row: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """(benchmark_serving result, InferenceX environment, power fields) of one merged-table row
    (metadata, the bench summary with its ``*_ms`` names, and the power columns if any)."""
    def given(key: str) -> bool:
        value = row.get(key)
        return value is not None and not (isinstance(value, float) and math.isnan(value))

    def text(key: str) -> str:
        value = row[key]
        return _flag(value) if isinstance(value, bool) else str(value)

    result: dict[str, Any] = {"max_concurrency": row["conc"], "model_id": row["model"],
                              "total_token_throughput": row.get("total_token_throughput", math.nan),
                              "output_throughput": row.get("output_throughput", math.nan)}
    result |= {f"{s}_{lat}_ms": row[f"{s}_{lat}_ms"] for lat in _LATENCIES for s in _STATS
               if given(f"{s}_{lat}_ms")}
    env = {"RUNNER_TYPE": text("runner"), "FRAMEWORK": text("framework"), "PRECISION": text("precision"),
           "SPEC_DECODING": text("spec_decoding"), "ISL": text("isl"), "OSL": text("osl"),
           "DISAGG": _flag(bool(row.get("disagg"))), "MODEL_PREFIX": text("model_prefix"),
           "IMAGE": text("image"), "IS_MULTINODE": _flag(bool(row.get("multinode")))}
    if given("inferencex_fingerprint"):
        env["RECIPE_FINGERPRINT"] = text("inferencex_fingerprint")
    if given("router_name") and given("router_version"):
        env["ROUTER_METADATA"] = json.dumps({"name": row["router_name"], "version": row["router_version"]})
    if given("kv_p2p_transfer"):
        env["KV_P2P_TRANSFER"] = text("kv_p2p_transfer")
    if row.get("multinode"):
        disagg = bool(row.get("disagg"))
        env |= {"PREFILL_GPUS": text("prefill_gpus") if disagg else text("gpus"),
                "DECODE_GPUS": text("decode_gpus") if disagg else "0"}
        for role in ("prefill", "decode"):
            up = role.upper()
            env |= {f"{up}_NUM_WORKERS": text(f"{role}_num_worker"), f"{up}_TP": text(f"{role}_tp"),
                    f"{up}_EP": text(f"{role}_ep"), f"{up}_DP_ATTN": _flag(row.get(f"{role}_dp_attn"))}
            for key, var in (("pp", "PP_SIZE"), ("dcp_size", "DCP_SIZE"), ("pcp_size", "PCP_SIZE")):
                if given(f"{role}_{key}"):
                    env[f"{up}_{var}"] = text(f"{role}_{key}")
        if given("prefill_hardware") and given("decode_hardware"):
            env |= {"PREFILL_HARDWARE": text("prefill_hardware"), "DECODE_HARDWARE": text("decode_hardware")}
    else:
        env |= {"TP": text("tp"), "EP_SIZE": text("ep"), "DP_ATTENTION": _flag(row.get("dp_attn"))}
        for key, var in (("pp", "PP_SIZE"), ("dcp_size", "DCP_SIZE"), ("pcp_size", "PCP_SIZE")):
            if given(key):
                env[var] = text(key)
    power = {k: row[k] for k in ("power_valid", *POWER_METRIC_KEYS) if given(k)}
    return result, env, power


def write_agg_json(df: pandas.DataFrame, path: str | os.PathLike[str], include_invalid: bool = False) -> int:
    rows = agg_rows(df, include_invalid)
    # allow_nan=False: InferenceX's consumers include strict JSON parsers
    atomic.write_text(path, json.dumps(rows, indent=2, allow_nan=False) + "\n")
    return len(rows)


def write_eval_json(df: pandas.DataFrame, path: str | os.PathLike[str]) -> int:
    """InferenceX's agg_eval_all.json rows of every point that ran evals (ixhpc.evals.report)."""
    from ixhpc.evals.report import inferencex_rows

    rows = inferencex_rows(records(df))
    atomic.write_text(path, json.dumps(rows, indent=2, allow_nan=False) + "\n")
    return len(rows)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def write_csv(df: pandas.DataFrame, path: str | os.PathLike[str]) -> int:
    """The table as CSV; text cells a spreadsheet would run as a formula are defused."""
    atomic.write_text(path, defused(df).to_csv(index=False))
    return len(df)


def defused(df: pandas.DataFrame) -> pandas.DataFrame:
    """``df`` with every text cell starting like a formula (=, +, -, @, tab, CR) prefixed by
    ``'`` (OWASP's advice). Only text columns: numbers, negative ones too, stay numbers."""
    import pandas as pd

    out = df.copy(deep=False)
    for name in df.columns:
        column = df[name]
        if column.dtype.kind in "OSU" or isinstance(column.dtype, pd.StringDtype):  # text, never numbers
            text = column.astype("string")
            risky = text.str.startswith(_FORMULA_START).fillna(False).astype(bool)
            if risky.any():
                out[name] = text.mask(risky, "'" + text)
    out.columns = [_defuse(str(c)) for c in df.columns]
    return out


def _defuse(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_START) else text
