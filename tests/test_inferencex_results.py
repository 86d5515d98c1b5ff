"""InferenceX-exact results (issue 18 item 4): the ``agg_bmk.json`` row as InferenceX's
``process_result.py`` prints it, against the reference examples of its own processing
(``inferencex-2026-08/results/``, through the ``inferencex_current`` fixture); InferenceX's
recipe-fingerprint; the ``benchmark_serving`` result format; created vs written times."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_bench import _short, scripted_server

from ixhpc import changelog
from ixhpc.bench import __main__ as bench_main
from ixhpc.bench import client, metrics
from ixhpc.errors import ResultFileError
from ixhpc.results import export, ingest, serving, store

from results_helpers import bench_result, metadata

CASES = ("single-node", "multi-node")


def _reference(root: Path, case: str) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """(benchmark_serving input, the environment its README states, the row InferenceX printed)."""
    results = root / "results"
    readme = (results / "README.md").read_text()
    section = readme[readme.index(f"`{case}/`"):]
    stated = re.search(r"environment:\s*`([^`]*)`", section, re.S)
    assert stated, f"README states no environment for {case}"
    env = dict(re.findall(r"(\w+)=(<[^>]*>|\S+)", stated.group(1)))
    expected = json.loads((results / case / "agg_row.json").read_text())
    if "RECIPE_FINGERPRINT" in env:  # "<as in agg_row.json>": an input of the job, not derived
        env["RECIPE_FINGERPRINT"] = expected["recipe_fingerprint"]
    return json.loads((results / case / "input.json").read_text()), env, expected


def _same(got: dict[str, Any], expected: dict[str, Any]) -> None:
    """Field for field: the same names, values (floats to the bit) and JSON types."""
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        assert type(got[key]) is type(value) and got[key] == value, (key, got[key], value)


@pytest.mark.parametrize("case", CASES)
def test_the_rule_reproduces_inferencex_rows(inferencex_current: Path, case: str) -> None:
    result, env, expected = _reference(inferencex_current, case)
    row = export.inferencex_row(result, env)
    _same(row, expected)
    assert json.loads(json.dumps(row, allow_nan=False)) == expected


def _table_row(result: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """The merged-table row of the ixhpc point behind a reference example (metadata keys,
    the bench summary's ``*_ms`` names, other columns that must not leak into the export)."""
    multinode = env.get("IS_MULTINODE") == "true"
    row: dict[str, Any] = {
        "runner": env["RUNNER_TYPE"], "framework": env["FRAMEWORK"], "precision": env["PRECISION"],
        "spec_decoding": env["SPEC_DECODING"], "isl": int(env["ISL"]), "osl": int(env["OSL"]),
        "disagg": env["DISAGG"] == "true", "multinode": multinode, "model_prefix": env["MODEL_PREFIX"],
        "image": env["IMAGE"], "model": result["model_id"], "conc": result["max_concurrency"],
        "recipe_fingerprint": "ab" * 32, "max_model_len": 1536, "job_id": "7", "validity": "valid",
        "completed": result["completed"], "tput_per_gpu": -1.0, "srv_mean_running": 3.0,
    }
    row |= {k: v for k, v in result.items() if k.endswith(("_ms", "_throughput"))}
    if "RECIPE_FINGERPRINT" in env:
        row["inferencex_fingerprint"] = env["RECIPE_FINGERPRINT"]
    if multinode:
        for role in ("prefill", "decode"):
            up = role.upper()
            row |= {f"{role}_num_worker": int(env[f"{up}_NUM_WORKERS"]), f"{role}_tp": int(env[f"{up}_TP"]),
                    f"{role}_ep": int(env[f"{up}_EP"]), f"{role}_dp_attn": env[f"{up}_DP_ATTN"] == "true",
                    f"{role}_gpus": int(env[f"{up}_GPUS"])}
        row["gpus"] = row["prefill_gpus"] + row["decode_gpus"]
    else:
        row |= {"tp": int(env["TP"]), "ep": int(env["EP_SIZE"]), "dp_attn": env["DP_ATTENTION"] == "true",
                "gpus": int(env["TP"])}
    return row


@pytest.mark.parametrize("case", CASES)
def test_the_export_of_an_ixhpc_point_matches_inferencex(inferencex_current: Path, case: str) -> None:
    result, env, expected = _reference(inferencex_current, case)
    _same(export.inferencex_row(*export.point_inputs(_table_row(result, env))), expected)


def test_current_format_fields_reach_the_row() -> None:
    """pp/dcp/pcp per pool, router, kv-p2p-transfer, hardware per pool, an aggregated
    multi-node point (no decode pool), the power fields only when valid."""
    row = {**metadata(disagg=True), **bench_result()["summary"], "router_name": "dynamo-router",
           "router_version": "0.9.0", "kv_p2p_transfer": "nixl", "prefill_pp": 2, "prefill_dcp_size": 1,
           "prefill_pcp_size": 2, "decode_pp": 1, "decode_dcp_size": 4, "decode_pcp_size": 1,
           "prefill_hardware": "b200", "decode_hardware": "h100"}
    out = export.inferencex_row(*export.point_inputs(row))
    assert out["router"] == {"name": "dynamo-router", "version": "0.9.0"} and out["kv_p2p_transfer"] == "nixl"
    assert (out["prefill_pp"], out["prefill_pcp_size"], out["decode_dcp_size"]) == (2, 2, 4)
    assert (out["prefill_hw"], out["decode_hw"]) == ("b200", "h100")
    assert out["recipe_fingerprint"] == "" and out["power_valid"] == 0
    assert "avg_power_w" not in out and out["power_metric_schema_version"] == 2
    agg = {**metadata(disagg=True), **bench_result()["summary"], "disagg": False, "decode_num_worker": 0}
    out = export.inferencex_row(*export.point_inputs(agg))
    assert (out["decode_tp"], out["decode_ep"], out["num_decode_gpu"]) == (0, 0, 0)
    assert out["output_tput_per_gpu"] == agg["output_throughput"] / agg["gpus"]
    single = {**metadata(tp=4), **bench_result()["summary"], "pp": 2, "dcp_size": 2, "pcp_size": 2, "ep": 8,
              "power_valid": True, "avg_power_w": 612.34567, "joules_per_output_token": 1.23456789}
    out = export.inferencex_row(*export.point_inputs(single))
    assert out["tput_per_gpu"] == single["total_token_throughput"] / 16  # tp*pp*pcp, not ep
    assert (out["avg_power_w"], out["joules_per_output_token"], out["power_valid"]) == (612.346, 1.234568, 1)
    assert list(out)[-4:] == ["power_metric_schema_version", "power_valid", "avg_power_w",
                              "joules_per_output_token"]
    with pytest.raises(ResultFileError, match="non-finite"):
        export.inferencex_row(*export.point_inputs({**single, "avg_power_w": math.inf}))


def test_recipe_fingerprint_is_inferencex_s_hash_of_the_matrix_row() -> None:
    row = {"image": "lmsysorg/sglang:v0.5", "model": "org/model", "model-prefix": "ex1", "precision": "fp8",
           "framework": "sglang", "runner": "b200", "isl": 8192, "osl": 1024, "tp": 8, "pp": 1, "dcp-size": 1,
           "pcp-size": 1, "conc": 4, "max-model-len": 9472, "ep": 1, "dp-attn": False, "spec-decoding": "none",
           "exp-name": "ex1_8k1k", "disagg": False, "run-eval": False,
           "router": {"name": "sgl-router", "version": "0.2.1"}}
    rest = {k: v for k, v in row.items() if k not in ("conc", "exp-name")}
    expected = hashlib.sha256(json.dumps(rest, sort_keys=True, separators=(",", ":"),
                                         ensure_ascii=True).encode()).hexdigest()
    assert export.matrix_fingerprint(row) == expected
    assert export.matrix_fingerprint({**row, "conc": 64, "exp-name": "x", "recipe-fingerprint": "y"}) == expected
    assert export.matrix_fingerprint({**row, "run-eval": True}) != expected


def test_points_record_the_fingerprint_of_their_matrix_row() -> None:
    from ixhpc import profiles, recipe, sweep

    examples = Path(__file__).resolve().parents[1] / "recipes" / "examples"
    recipes = recipe.load_recipe_files(sorted(examples.glob("sim-*.yaml")))
    points = [p for p in sweep.expand_all(recipes, cluster=profiles.get_profile("local")) if p.resolved]
    assert {p.multinode for p in points} == {False, True}
    for p in points:
        meta = p.metadata(p.conc[0]).record()
        assert meta["inferencex_fingerprint"] == changelog.fingerprint(p.to_inferencex_row())
        assert meta["inferencex_fingerprint"] != meta["recipe_fingerprint"]  # ixhpc's: the entry's hash


def _results(n: int = 6) -> tuple[list[client.RequestResult], float]:
    """Finished requests on a perf_counter clock starting at 100 s; the last one failed."""
    out = []
    for i in range(n):
        r = client.RequestResult(input_len=10 + i, max_tokens=4)
        r.queued, r.start = 100.0 + i * 0.5, 100.0 + i * 0.5 + 20e-6 * (i + 1)
        r.token_times.extend(r.start + 0.04 + (0.02 + 0.001 * i) * k for k in range(4))
        r.end, r.output_len, r.success, r.usage_reported = r.token_times[-1], 4, True, True
        out.append(r)
    out[-1].success, out[-1].error, out[-1].output_len = False, "HTTP 500: boom", 0
    return out, 100.0


def test_benchmark_serving_format_round_trips() -> None:
    results, start = _results()
    summary = metrics.summarize(results, 3.5, 4, math.inf)
    arrays = metrics.request_arrays(results, start)
    doc = metrics.serving_document(summary, arrays, {"model": "m"}, 1.7e9, "20261130-080000")
    doc = json.loads(json.dumps(doc))
    assert doc["benchmark_end_time_unix"] - doc["benchmark_start_time_unix"] == pytest.approx(3.5)
    assert doc["request_rate"] == "inf" and doc["max_concurrency"] == 4 and doc["model_id"] == "m"
    assert doc["ttfts"][-1] == 0.0 and doc["itls"][-1] == [] and doc["errors"][-1] == "HTTP 500: boom"
    back = serving.bench_result(doc, "doc")
    for key in ("completed", "failed", "total_output_tokens", "output_throughput", "total_token_throughput"):
        assert back["summary"].get(key, summary[key]) == summary[key]
    assert {k: back["summary"][k] for k in summary if k.endswith("_ms")} == \
        {k: v for k, v in summary.items() if k.endswith("_ms")}
    req = back["requests"]
    ok = slice(0, len(results) - 1)
    np.testing.assert_allclose(req["ttft_ms"][ok], arrays["ttft_ms"][ok], rtol=1e-12)
    np.testing.assert_allclose(req["e2el_ms"][ok], arrays["e2el_ms"][ok], rtol=1e-12)
    np.testing.assert_allclose(req["itl_ms_values"], arrays["itl_ms_values"], rtol=1e-12)
    assert req["itl_ms_offsets"] == arrays["itl_ms_offsets"] and req["success"] == arrays["success"]
    assert req["start_time"] == arrays["start_time"]
    # InferenceX's process_result reads it
    env = {"RUNNER_TYPE": "h200", "FRAMEWORK": "sim", "PRECISION": "fp8", "SPEC_DECODING": "none", "ISL": "16",
           "OSL": "4", "DISAGG": "false", "MODEL_PREFIX": "sim", "IMAGE": "none", "TP": "2", "EP_SIZE": "1",
           "DP_ATTENTION": "false"}
    row = export.inferencex_row(doc, env)
    assert row["conc"] == 4 and row["mean_ttft"] == summary["mean_ttft_ms"] / 1000.0
    assert row["std_intvty"] == 1000.0 / summary["std_tpot_ms"]


def test_created_and_written_times_are_kept(tmp_path: Path) -> None:
    results, start = _results()
    arrays = metrics.request_arrays(results, start)
    assert arrays["created_time"] == [round(i * 0.5, 6) for i in range(6)]
    assert all(w > c for w, c in zip(arrays["start_time"], arrays["created_time"]))
    created = metrics.created_ttft(results)
    assert created["created_to_written_mean"] == pytest.approx(0.02 * 3, rel=1e-6)  # ms, over the 5 ok
    assert created["mean"] - created["mean_true"] == pytest.approx(created["created_to_written_mean"])
    bench = bench_result(n=6)
    bench["requests"]["created_time"] = [0.001 * i for i in range(6)]
    point = ingest.build_point(bench, metadata())
    store.write(tmp_path / "new.h5", point)
    back = store.read(tmp_path / "new.h5")
    assert back.requests is not None and back.requests.created_time is not None
    assert back.requests.created_time.tolist() == bench["requests"]["created_time"]
    assert "created_time" in back.requests.frame()
    # a file without it (an older client) is read as before, with the same digest rule
    del bench["requests"]["created_time"]
    old = ingest.build_point(bench, metadata())
    store.write(tmp_path / "old.h5", old)
    again = store.read(tmp_path / "old.h5")
    assert again.requests is not None and again.requests.created_time is None
    assert again.result_id != back.result_id
    bench["requests"]["created_time"] = [0.0]
    with pytest.raises(ResultFileError, match="created_time"):
        ingest.build_point(bench, metadata())


def test_cli_writes_benchmark_serving_results(tmp_path: Path) -> None:
    out, extra, native = tmp_path / "s.json", tmp_path / "x.json", tmp_path / "n.json"
    with scripted_server(_short) as url:
        common = ["--base-url", url, "--model", "m", "--isl", "16", "--osl", "2", "--max-concurrency", "2",
                  "--num-prompts", "4", "--num-warmups", "0"]
        assert bench_main.main([*common, "--output", str(out), "--result-format", "benchmark_serving"]) == 0
        assert bench_main.main([*common, "--output", str(native), "--serving-output", str(extra)]) == 0
    for path in (out, extra):
        doc = json.loads(path.read_text())
        assert doc["completed"] == 4 and "benchmark_start_time_unix" in doc and len(doc["ttfts"]) == 4
        assert serving.bench_result(doc, str(path))["summary"]["completed"] == 4
    native_doc = json.loads(native.read_text())
    assert len(native_doc["requests"]["created_time"]) == 4
