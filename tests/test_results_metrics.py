"""InferenceX metrics from the point's topology, and the agg_bmk.json row names."""

from __future__ import annotations

import math

import pytest

from ixhpc.errors import UserError
from ixhpc.results import metrics

from results_helpers import bench_result, metadata

SUMMARY = {"total_token_throughput": 9000.0, "output_throughput": 3000.0, "mean_ttft_ms": 250.0,
           "p99_ttft_ms": 900.0, "mean_tpot_ms": 20.0, "median_tpot_ms": 25.0, "p99_tpot_ms": 50.0,
           "std_tpot_ms": 4.0, "mean_e2el_ms": 20000.0}


def test_single_node_divides_by_all_gpus():
    m = metrics.point_metrics(metadata(tp=8), SUMMARY)
    assert m["tput_per_gpu"] == 9000 / 8
    assert m["output_tput_per_gpu"] == 3000 / 8
    assert m["input_tput_per_gpu"] == 6000 / 8


def test_disaggregated_splits_prefill_and_decode_gpus():
    meta = metadata(disagg=True, prefill_gpus=4, decode_gpus=12)
    m = metrics.point_metrics(meta, SUMMARY)
    assert m["tput_per_gpu"] == 9000 / 16
    assert m["output_tput_per_gpu"] == 3000 / 12
    assert m["input_tput_per_gpu"] == 6000 / 4


def test_latencies_in_seconds_and_interactivity():
    m = metrics.point_metrics(metadata(), SUMMARY)
    assert m["mean_ttft"] == 0.25 and m["p99_ttft"] == 0.9 and m["mean_e2el"] == 20.0
    assert m["mean_intvty"] == 50.0 and m["median_intvty"] == 40.0 and m["p99_intvty"] == 20.0
    assert "std_intvty" not in m
    assert math.isnan(m["median_ttft"])  # absent from the summary: NaN, not invented


def test_topology_must_be_in_metadata():
    meta = metadata(disagg=True)
    del meta["decode_gpus"]
    with pytest.raises(UserError, match="decode_gpus"):
        metrics.point_metrics(meta, SUMMARY)
    with pytest.raises(UserError, match="positive"):
        metrics.point_metrics({**metadata(tp=8), "gpus": 0}, SUMMARY)  # the model refuses it too


def test_agg_row_uses_inferencex_names():
    meta = metadata(tp=8)
    row = {**meta, **metrics.point_metrics(meta, bench_result()["summary"])}
    agg = metrics.agg_row(row)
    assert agg["hw"] == "b200" and agg["infmax_model_prefix"] == "dsr1"
    assert agg["is_multinode"] is False and agg["dp_attention"] == "false" and agg["tp"] == 8
    assert "num_prefill_gpu" not in agg
    dmeta = metadata(disagg=True)
    drow = {**dmeta, **metrics.point_metrics(dmeta, bench_result()["summary"])}
    dagg = metrics.agg_row(drow)
    assert dagg["num_prefill_gpu"] == 8 and dagg["decode_num_workers"] == 1
    assert dagg["decode_dp_attention"] == "true" and "tp" not in dagg
