"""Script mode (ixhpc.inferencex_scripts): InferenceX's own scripts, their choice and environment."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ixhpc import inferencex_scripts as ix
from ixhpc.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def _rows(reference: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads((reference / "expected" / "full-single.json").read_text())
    assert len(rows) == 1172
    return rows


def _expected(row: dict[str, Any]) -> tuple[str, str]:
    """The launchers' two names, spelled independently of the module."""
    code = row["exp-name"].split("_")[0]
    hw = row["runner"].replace("cluster:", "").split("-")[0]
    sub = "agentic/" if row.get("scenario-type") == "agentic-coding" else "fixed_seq_len/"
    mtp = "_mtp" if row["spec-decoding"] == "mtp" else ""
    trt = "_trt" if row["framework"] == "trt" else ""
    base = f"benchmarks/single_node/{sub}{code}_{row['precision']}_{hw}"
    return f"{base}_{row['framework']}{mtp}.sh", f"{base}{trt}{mtp}.sh"


def _touch(root: Path, rel: str) -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text("#!/bin/bash\n")


def test_script_choice_for_every_single_node_row(inferencex_current: Path, tmp_path: Path) -> None:
    rows = _rows(inferencex_current)
    tagged, legacy = tmp_path / "tagged", tmp_path / "legacy"
    for row in rows:
        _touch(tagged, _expected(row)[0])
        _touch(legacy, _expected(row)[1])
    for row in rows:
        framework_name, fallback = _expected(row)
        assert ix.choose(tagged, row) == framework_name
        # a checkout with only the historical names: the launchers' fallback
        assert ix.choose(legacy, row) == fallback
    assert ix.checkout_layout(tagged) == "current"


def test_march_layout_names(tmp_path: Path) -> None:
    row = {"exp-name": "dsr1_1k1k", "precision": "fp8", "runner": "h200", "framework": "trt",
           "spec-decoding": "mtp"}
    _touch(tmp_path, "benchmarks/dsr1_fp8_h200_trt_mtp.sh")
    assert ix.checkout_layout(tmp_path) == "march"
    assert ix.choose(tmp_path, row) == "benchmarks/dsr1_fp8_h200_trt_mtp.sh"


def test_environment_for_every_single_node_row(inferencex_current: Path) -> None:
    for row in _rows(inferencex_current):
        env = ix.environment(row, ix.Site(model="/models/x", hf_hub_cache="/models", port="20000",
                                          runner_name="local_r1"))
        names = [k for k, _ in env]
        assert names == list(ix.ENV_NAMES)
        e = dict(env)
        agentic = row.get("scenario-type") == "agentic-coding"
        assert e["MODEL"] == "/models/x" and e["HF_HUB_CACHE"] == "/models"
        assert e["MODEL_PREFIX"] == row["model-prefix"] and e["EXP_NAME"] == row["exp-name"]
        assert (e["TP"], e["EP_SIZE"], e["PP_SIZE"], e["DCP_SIZE"], e["PCP_SIZE"]) == tuple(
            str(row[k]) for k in ("tp", "ep", "pp", "dcp-size", "pcp-size"))
        assert e["DP_ATTENTION"] == ("true" if row["dp-attn"] else "false")
        assert e["CONC"] == str(row["conc"]) and e["SPEC_DECODING"] == row["spec-decoding"]
        assert e["RUN_EVAL"] == ("true" if row["run-eval"] else "false") and e["EVAL_ONLY"] == "false"
        assert e["IMAGE"] == row["image"] and e["FRAMEWORK"] == row["framework"]
        assert e["PRECISION"] == row["precision"] and e["RUNNER_TYPE"] == row["runner"]
        assert e["PORT"] == "20000" and e["RANDOM_RANGE_RATIO"] == "0.8"
        assert e["GPU_COUNT"] == str(row["tp"] * row["pp"] * row["pcp-size"])
        if agentic:
            assert (e["ISL"], e["OSL"], e["MAX_MODEL_LEN"], e["IS_AGENTIC"]) == ("0", "0", "0", "1")
            assert e["SCENARIO_SUBDIR"] == "agentic/" and e["KV_OFFLOADING"] == row["kv-offloading"]
            assert e["DURATION"] == str(row["duration"])
        else:
            assert (e["ISL"], e["OSL"], e["MAX_MODEL_LEN"]) == (str(row["isl"]), str(row["osl"]),
                                                                 str(row["max-model-len"]))
            assert e["SCENARIO_SUBDIR"] == "fixed_seq_len/" and e["IS_AGENTIC"] == "0"
        assert e["RESULT_FILENAME"] == (
            f"{row['exp-name']}_{row['precision']}_{row['framework']}_tp{row['tp']}-pp{row['pp']}"
            f"-dcp{row['dcp-size']}-pcp{row['pcp-size']}-ep{row['ep']}-dpa{e['DP_ATTENTION']}"
            f"_disagg-{e['DISAGG']}_spec-{row['spec-decoding']}_conc{row['conc']}_local_r1")
        assert "HF_TOKEN" not in e  # secrets: by name only
        assert ix.writable_root(row["runner"]) == row["runner"].removeprefix("cluster:").startswith(
            ("mi355x", "mi325x"))


def test_missing_script_is_a_located_error(tmp_path: Path) -> None:
    (tmp_path / "benchmarks" / "single_node").mkdir(parents=True)
    row = {"exp-name": "dsr1_1k1k", "precision": "fp8", "runner": "cluster:b300-nv", "framework": "sglang",
           "spec-decoding": "none"}
    with pytest.raises(ix.ScriptNotFound, match="fixed_seq_len/dsr1_fp8_b300_sglang.sh"):
        ix.choose(tmp_path, row)
    with pytest.raises(ConfigError, match="not an InferenceX checkout"):
        ix.checkout_layout(tmp_path / "nowhere")


RECIPE = """\
sg-mi355x:
  image: lmsysorg/sglang:v0.5.5-rocm700-mi35x
  model: sim/dsr1-like
  model-prefix: simdsr1
  precision: fp8
  framework: sglang
  runner: mi355x
  multinode: false
  seq-len-configs:
  - isl: 128
    osl: 64
    search-space:
    - { tp: 8, ep: 1, conc-list: [2, 4] }
  ixhpc:
    time-limit: 10
    health-timeout: 60
    sim: {gpu: MI355X, model-params-b: 671, active-params-b: 37, max-batch: 64}
"""
SCRIPT = "benchmarks/single_node/fixed_seq_len/simdsr1_fp8_mi355x_sglang.sh"


def _ixhpc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ixhpc", *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO)


def test_validate_and_render_with_a_checkout(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    checkout = tmp_path / "co"
    (checkout / "benchmarks" / "single_node").mkdir(parents=True)
    res = _ixhpc("validate", str(recipe), "--inferencex", str(checkout))
    assert res.returncode == 2
    assert f"{recipe}: sg-mi355x: no InferenceX script" in res.stderr and SCRIPT in res.stderr
    _touch(checkout, SCRIPT)
    assert _ixhpc("validate", str(recipe), "--inferencex", str(checkout)).returncode == 0
    out = tmp_path / "run"
    res = _ixhpc("render", str(recipe), "--cluster", "local", "--inferencex", str(checkout), "-o", str(out))
    assert res.returncode == 0, res.stderr
    (script,) = (out / "scripts").glob("*.sbatch")
    text = script.read_text()
    assert f"bash {SCRIPT}" in text and '"CONC=${CONC}"' in text and '"PORT=${PORT_BASE}"' in text
    assert "ixhpc.results.serving ingest" in text and "--job-name=inferencex" in text
    metas = [json.loads(m.read_text()) for m in out.rglob("*.json")]
    prints = {m["metadata"]["inferencex_fingerprint"] for m in metas if "inferencex_fingerprint" in
              (m.get("metadata") or {})}
    assert len(prints) == 1 and f"RECIPE_FINGERPRINT={prints.pop()}" in text  # the row's, as the HDF5's


def test_recipe_fingerprint_is_the_one_inferencex_computes(inferencex_current: Path) -> None:
    """process_changelog's own output carries recipe-fingerprint, computed over the raw generator
    row (SPEC.md 9.3: before its pydantic round trip added ``eval-only: false``): the
    environment of that raw row, as a point gives it, has the same."""
    out = json.loads((inferencex_current / "examples" / "process-changelog-out.json").read_text())
    rows = [r for bucket in out["single_node"].values() for r in bucket]
    assert rows and all(len(r["recipe-fingerprint"]) == 64 for r in rows)
    for row in rows:
        raw = {k: v for k, v in row.items() if k not in ("recipe-fingerprint", "eval-only")}
        assert dict(ix.environment(raw, ix.Site(model="m")))["RECIPE_FINGERPRINT"] == row["recipe-fingerprint"]


def test_container_flags_of_a_script_step() -> None:
    from ixhpc import containers

    spec = containers.ContainerSpec(image="rocm/sgl:1", mounts=["/w:/workspace"], workdir="/workspace",
                                    entrypoint=False, writable=True, remap_root=True, env_names=["HF_TOKEN"])
    args = containers.runtime("pyxis").srun_args(spec)
    assert "--no-container-entrypoint" in args and "--container-writable" in args
    assert "--container-remap-root" in args and "--container-workdir=/workspace" in args
    assert "--container-env=HF_TOKEN" in args
    wrapped = containers.runtime("enroot", squash_cache="/cache").wrap(spec, ["bash", "s.sh"])
    assert wrapped[wrapped.index("ixhpc-enroot") + 3] == "skip"   # enroot start --rc: no entrypoint


def test_serving_result_becomes_a_point(tmp_path: Path) -> None:
    from ixhpc.results import serving

    doc = {"backend": "vllm", "model_id": "m", "duration": 2.0, "completed": 2, "total_input_tokens": 20,
           "total_output_tokens": 6, "request_throughput": 1.0, "output_throughput": 3.0,
           "total_token_throughput": 13.0, "mean_ttft_ms": 10.0, "median_ttft_ms": 10.0,
           "input_lens": [10, 10], "output_lens": [3, 3], "ttfts": [0.01, 0.01],
           "itls": [[0.005, 0.005], [0.004, 0.006]], "errors": ["", ""], "generated_texts": ["a", "b"]}
    bench = serving.bench_result(doc)
    assert bench["config"]["client"] == serving.CLIENT
    assert bench["requests"]["itl_ms_offsets"] == [0, 2, 4]
    assert bench["requests"]["e2el_ms"][0] == pytest.approx(20.0)
    assert bench["requests"]["tpot_ms"][0] == pytest.approx(5.0)
    assert "input_lens" not in bench["summary"] and bench["summary"]["completed"] == 2


AGGREGATE = {"backend": "vllm", "model_id": "m", "num_prompts": 40, "duration": 4.0, "completed": 40,
             "total_input_tokens": 40 * 900, "total_output_tokens": 40 * 92, "request_throughput": 10.0,
             "output_throughput": 920.0, "total_token_throughput": 9920.0, "mean_ttft_ms": 30.0,
             "median_tpot_ms": 5.0, "p99_itl_ms": 9.0}   # a result without --save-detailed


def test_a_result_without_per_request_arrays_gets_a_verdict_from_its_totals(tmp_path: Path) -> None:
    from ixhpc.bench import validity
    from ixhpc.results import serving, store

    from results_helpers import metadata

    want = serving.Requested(isl=1000, osl=100, range_ratio=0.8)   # lengths drawn from [0.8 L, L]

    def judged(**changes: Any) -> dict[str, Any]:
        return validity.judge(serving.bench_result({**AGGREGATE, **changes}, "r.json", want)["validity"]["evidence"])

    good = judged()
    assert good["verdict"] == "valid" and good["unchecked"] == [
        "stalled_stream", "too_few_output_tokens", "output_tokens_unconfirmed", "client_behind"]
    assert judged(total_output_tokens=40 * 80)["verdict"] == "valid"     # the range's low end: fine
    assert judged(completed=38)["reasons"] == ["failed_requests"]        # 2 of 40 never completed
    assert judged(total_output_tokens=40 * 30)["reasons"] == ["osl_off"]  # far below even 0.8 x OSL
    short_prompts = judged(total_input_tokens=40 * 500)
    assert short_prompts["reasons"] == ["isl_off"] and "client counted 500" in short_prompts["details"]["isl_off"]
    assert judged(total_output_tokens=0)["reasons"][0] == "no_output_tokens"
    assert judged(num_prompts=40, completed=0)["verdict"] == "invalid"
    # stored as any point's verdict, with what could not be checked
    out = tmp_path / "p.h5"
    serving.write_point(out, AGGREGATE, metadata(conc=4, isl=1000, osl=100, tp=8), {}, 0.8)
    point = store.read(out, with_requests=False)
    assert point.verdict == "valid" and point.validity is not None
    assert validity.line(point.validity) == ("valid; not checked: stalled_stream, too_few_output_tokens, "
                                             "output_tokens_unconfirmed, client_behind")


def test_a_detailed_result_is_judged_per_request() -> None:
    from ixhpc.bench import validity
    from ixhpc.results import serving

    n = 10
    doc = {**AGGREGATE, "num_prompts": n, "completed": n, "input_lens": [950] * n, "output_lens": [95] * n,
           "ttfts": [0.03] * n, "itls": [[0.005] * 94] * n, "errors": [""] * n}
    want = serving.Requested(isl=1000, osl=100, range_ratio=0.8)
    ok = validity.judge(serving.bench_result(doc, "r.json", want)["validity"]["evidence"])
    assert ok["verdict"] == "valid" and "too_few_output_tokens" not in ok["unchecked"]
    doc["output_lens"] = [1] * 5 + [95] * 5
    bad = validity.judge(serving.bench_result(doc, "r.json", want)["validity"]["evidence"])
    assert "too_few_output_tokens" in bad["reasons"]
    doc["errors"] = ["boom"] + [""] * (n - 1)
    assert "failed_requests" in validity.judge(serving.bench_result(doc, "r.json", want)["validity"]["evidence"])[
        "reasons"]


# ---------------------------------------------------------------- end to end (local cluster)

BENCHMARK_LIB = r'''#!/usr/bin/env bash
# Test fixture: the benchmark_lib.sh functions InferenceX's scripts use.
export PORT="${PORT:-8888}"
check_env_vars() {
    local missing=()
    for v in "$@"; do [[ -n "${!v:-}" ]] || missing+=("$v"); done
    if ((${#missing[@]})); then echo "Error: not set: ${missing[*]}"; exit 1; fi
}
wait_for_server_ready() {
    local port="" log="" pid=""
    while [[ $# -gt 0 ]]; do
        case $1 in
            --port) port=$2; shift 2;; --server-log) log=$2; shift 2;; --server-pid) pid=$2; shift 2;; *) shift;;
        esac
    done
    until curl -sf -o /dev/null "http://0.0.0.0:${port}/health"; do
        kill -0 "$pid" 2>/dev/null || { echo "server died"; cat "$log"; exit 1; }
        sleep 0.5
    done
}
run_benchmark_serving() {
    python3 utils/bench_serving/benchmark_serving.py "$@" --save-result --save-detailed
}
'''

FIXTURE_SCRIPT = r'''#!/usr/bin/env bash
source "$(dirname "$0")/../../benchmark_lib.sh"
check_env_vars MODEL TP CONC ISL OSL RANDOM_RANGE_RATIO RESULT_FILENAME PORT MAX_MODEL_LEN
SERVER_LOG="$PWD/server.log"
python3 -m sglang.launch_server --model-path "$MODEL" --host 0.0.0.0 --port "$PORT" --tensor-parallel-size "$TP" \
    --context-length "$MAX_MODEL_LEN" > "$SERVER_LOG" 2>&1 &
SERVER_PID=$!
wait_for_server_ready --port "$PORT" --server-log "$SERVER_LOG" --server-pid "$SERVER_PID"
echo "ts,power" > gpu_metrics.csv
run_benchmark_serving --model "$MODEL" --port "$PORT" --input-len "$ISL" --output-len "$OSL" \
    --num-prompts $((CONC * 2)) --max-concurrency "$CONC" --result-filename "$RESULT_FILENAME"
status=$?
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null
exit $status
'''

CLIENT = r'''"""Test fixture: a small benchmark_serving writing InferenceX's result format."""
import argparse, http.client, json, threading, time

p = argparse.ArgumentParser()
for a in ("--model", "--result-filename"): p.add_argument(a)
for a in ("--port", "--input-len", "--output-len", "--num-prompts", "--max-concurrency"):
    p.add_argument(a, type=int)
p.add_argument("--save-result", action="store_true"); p.add_argument("--save-detailed", action="store_true")
args = p.parse_args()
res = {"ttfts": [], "itls": [], "errors": [], "input_lens": [], "output_lens": []}
lock = threading.Lock()
todo = list(range(args.num_prompts))

def one():
    conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=60)
    body = json.dumps({"model": args.model, "prompt": "x " * args.input_len, "max_tokens": args.output_len,
                       "stream": True, "ignore_eos": True})
    t0 = time.perf_counter(); last = None; ttft = 0.0; gaps = []; n = 0; err = ""
    try:
        conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        for line in r:
            line = line.strip()
            if not line.startswith(b"data:") or line == b"data: [DONE]":
                continue
            now = time.perf_counter()
            if last is None: ttft = now - t0
            else: gaps.append(now - last)
            last = now; n += 1
    except Exception as exc:
        err = str(exc)
    with lock:
        res["ttfts"].append(ttft); res["itls"].append(gaps); res["errors"].append(err)
        res["input_lens"].append(args.input_len); res["output_lens"].append(n)

def worker():
    while True:
        with lock:
            if not todo: return
            todo.pop()
        one()

start = time.perf_counter()
ts = [threading.Thread(target=worker) for _ in range(args.max_concurrency)]
[t.start() for t in ts]; [t.join() for t in ts]
dur = time.perf_counter() - start
out = sum(res["output_lens"]); inp = sum(res["input_lens"])
ok = [t for t, e in zip(res["ttfts"], res["errors"]) if not e]
doc = {"backend": "vllm", "model_id": args.model, "duration": dur, "completed": len(ok),
       "max_concurrency": args.max_concurrency, "total_input_tokens": inp, "total_output_tokens": out,
       "request_throughput": len(ok) / dur, "output_throughput": out / dur,
       "total_token_throughput": (inp + out) / dur,
       "mean_ttft_ms": 1000 * sum(ok) / max(1, len(ok)),
       "median_ttft_ms": 1000 * sorted(ok)[len(ok) // 2] if ok else 0.0,
       **res}
json.dump(doc, open(f"{args.result_filename}.json", "w"))
'''


def fixture_checkout(root: Path) -> Path:
    (root / "benchmarks" / "single_node" / "fixed_seq_len").mkdir(parents=True)
    (root / "utils" / "bench_serving").mkdir(parents=True)
    (root / "benchmarks" / "benchmark_lib.sh").write_text(BENCHMARK_LIB)
    (root / SCRIPT).write_text(FIXTURE_SCRIPT)
    (root / "utils" / "bench_serving" / "benchmark_serving.py").write_text(CLIENT)
    return root


@pytest.mark.cluster
def test_script_mode_end_to_end(slurm: dict[str, str], tmp_path: Path) -> None:
    import time

    from ixhpc.results import load

    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    checkout = fixture_checkout(tmp_path / "co")
    res = _ixhpc("submit", str(recipe), "--cluster", "local", "--results", str(tmp_path / "a"), "--json",
                 "--inferencex", str(checkout))
    assert res.returncode == 0, res.stderr
    script_run = json.loads(res.stdout)["run_dir"]
    res = _ixhpc("submit", str(recipe), "--cluster", "local", "--results", str(tmp_path / "b"), "--json")
    assert res.returncode == 0, res.stderr
    own_run = json.loads(res.stdout)["run_dir"]
    for run in (script_run, own_run):
        deadline = time.monotonic() + 240
        while True:
            status = json.loads(_ixhpc("status", run, "--json").stdout)
            if all(j["state"] in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") for j in status["jobs"]):
                break
            assert time.monotonic() < deadline, status
            time.sleep(1)
        assert all(j["state"] == "COMPLETED" for j in status["jobs"]), (run, status)
    assert not (checkout / "server.log").exists()  # the job worked in its own copy
    merged = tmp_path / "merged.h5"
    res = _ixhpc("merge", str(Path(script_run) / "results"), str(Path(own_run) / "results"), "-o", str(merged))
    assert res.returncode == 0, res.stderr
    table = load(str(merged))
    assert len(table) == 4
    clients = sorted(table["bench_client"].fillna("ixhpc").tolist())
    assert clients == ["inferencex-benchmark_serving"] * 2 + ["ixhpc"] * 2
    assert set(table["validity"]) == {"valid"}   # script-mode points judged from their own counts
    report = _ixhpc("report", str(merged), "-o", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "| inferencex-benchmark_serving |" in summary and "| ixhpc |" in summary  # both, labelled
    assert (table["total_token_throughput"] > 0).all() if "total_token_throughput" in table else True
