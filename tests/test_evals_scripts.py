"""Accuracy evals in InferenceX script mode (docs/evals.md): InferenceX's script runs lm-eval
itself when RUN_EVAL is true (no throughput benchmark when EVAL_ONLY is), and the ingest stores
the eval files it leaves (results*.json, samples_*.jsonl, meta_env.json) in the point's HDF5
eval group with the verdict against the thresholds, as ixhpc's own eval step does."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import h5py
import pytest
import yaml
from test_inferencex_scripts import BENCHMARK_LIB, RECIPE, SCRIPT, _ixhpc, fixture_checkout

from ixhpc import render, runs
from ixhpc.evals import tasks
from ixhpc.profiles import get_profile
from ixhpc.sweep import Filters

# The fixture's benchmark_lib.sh, extended with the eval functions InferenceX's scripts call
# (run_eval, append_lm_eval_summary): real lm-eval against the script's server, its files
# moved into the working directory with a meta_env.json, as InferenceX's library does.
EVAL_LIB = BENCHMARK_LIB + r'''
run_eval() {
    EVAL_RESULT_DIR=$(mktemp -d /tmp/eval_out-XXXXXX)
    local args="model=${MODEL},base_url=http://0.0.0.0:${PORT}/v1/chat/completions,num_concurrent=${CONC}"
    args+=",tokenized_requests=False,max_length=${MAX_MODEL_LEN}"
    HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 python3 -m lm_eval --model local-chat-completions \
        --apply_chat_template --fewshot_as_multiturn --tasks ixhpc_arith --include_path utils/evals \
        ${EVAL_LIMIT:+--limit "$EVAL_LIMIT"} --gen_kwargs max_gen_toks=32 \
        --model_args "$args" --output_path "$EVAL_RESULT_DIR" --log_samples
}
append_lm_eval_summary() {
    printf '{"framework": "%s", "precision": "%s", "tp": %s, "conc": %s, "model": "%s", %s}\n' \
        "$FRAMEWORK" "$PRECISION" "$TP" "$CONC" "$MODEL" \
        "\"infmax_model_prefix\": \"$MODEL_PREFIX\", \"hw\": \"$RUNNER_TYPE\"" > meta_env.json
    find "$EVAL_RESULT_DIR" -type f -name "*.json*" -exec mv -f {} ./ \;
}
'''

EVAL_SCRIPT = r'''#!/usr/bin/env bash
source "$(dirname "$0")/../../benchmark_lib.sh"
check_env_vars MODEL TP CONC ISL OSL RANDOM_RANGE_RATIO RESULT_FILENAME PORT MAX_MODEL_LEN RUN_EVAL EVAL_ONLY
if [[ "$RUN_EVAL" == true ]]; then MAX_MODEL_LEN=4096; fi   # room for 5-shot prompts
SERVER_LOG="$PWD/server.log"
python3 -m sglang.launch_server --model-path "$MODEL" --host 0.0.0.0 --port "$PORT" --tensor-parallel-size "$TP" \
    --context-length "$MAX_MODEL_LEN" > "$SERVER_LOG" 2>&1 &
SERVER_PID=$!
wait_for_server_ready --port "$PORT" --server-log "$SERVER_LOG" --server-pid "$SERVER_PID"
status=0
if [[ "$EVAL_ONLY" != true ]]; then
    echo "ts,power" > gpu_metrics.csv
    run_benchmark_serving --model "$MODEL" --port "$PORT" --input-len "$ISL" --output-len "$OSL" \
        --num-prompts $((CONC * 2)) --max-concurrency "$CONC" --result-filename "$RESULT_FILENAME"
    status=$?
fi
if [[ "$RUN_EVAL" == true ]]; then
    run_eval && append_lm_eval_summary || status=1
fi
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null
exit $status
'''


def _recipe(tmp_path: Path) -> Path:
    """Two entries: throughput then eval (30% wrong answers: fails 0.90), and eval-only (passes)."""
    (entry,) = yaml.safe_load(RECIPE).values()
    both = json.loads(json.dumps(entry))
    both["seq-len-configs"][0]["search-space"][0]["conc-list"] = [2]
    both["ixhpc"] |= {"env": {"SIM_ANSWER_ERROR_RATE": "0.3"},
                      "eval": {"run": True, "tasks": [tasks.LOCAL_TASK], "limit": 10}}
    only = json.loads(json.dumps(entry))
    only["seq-len-configs"][0]["search-space"][0]["conc-list"] = [4]
    only["ixhpc"]["eval"] = {"only": True, "tasks": [tasks.LOCAL_TASK], "limit": 10}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"sg-evals-both": both, "sg-evals-only": only}))
    return path


def _checkout(root: Path) -> Path:
    co = fixture_checkout(root)
    (co / "benchmarks" / "benchmark_lib.sh").write_text(EVAL_LIB)
    (co / SCRIPT).write_text(EVAL_SCRIPT)
    tasks.write_local_task(co / "utils" / "evals", co / "utils" / "evals")  # the task the script runs
    return co


def test_the_script_gets_its_eval_marks_per_concurrency_and_the_ingest_its_thresholds(tmp_path):
    co = _checkout(tmp_path / "co")
    run = Path("/scratch/ixhpc-runs/script-evals")
    plans = runs.plan(runs.RunTarget(_recipe(tmp_path), get_profile("local"), Filters(), inferencex=co),
                      run, run.name)
    text = {p.key: " ".join(re.sub(r"\\\n\s*", " ", render.render(p)).split()) for p in plans}
    both = next(t for k, t in text.items() if "both" in k)
    only = next(t for k, t in text.items() if "only" in k)
    assert "\"RUN_EVAL=${RUN_EVAL}\" \"EVAL_ONLY=${EVAL_ONLY}\"" in both and "EVAL_LIMIT=10" in both
    assert ("2) RUN_EVAL=true EVAL_ONLY=false EVAL_ARGS=(--eval-conc=2 --eval-task=ixhpc_arith=0.9) ;;"
            in both)
    assert "4) RUN_EVAL=true EVAL_ONLY=true EVAL_ARGS=(--eval-conc=4 --eval-task=ixhpc_arith=0.9 --eval-only)" in only
    assert '--random-range-ratio 0.8 "${EVAL_ARGS[@]}"' in both


@pytest.mark.cluster
def test_script_mode_evals_land_in_the_point_with_their_verdict(slurm, tmp_path):
    co = _checkout(tmp_path / "co")
    res = _ixhpc("submit", str(_recipe(tmp_path)), "--cluster", "local", "--results", str(tmp_path / "runs"),
                 "--json", "--inferencex", str(co))
    assert res.returncode == 0, res.stderr
    run = Path(json.loads(res.stdout)["run_dir"])
    deadline = time.monotonic() + 240
    while True:
        status = json.loads(_ixhpc("status", str(run), "--json").stdout)
        if all(j["state"] in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") for j in status["jobs"]):
            break
        assert time.monotonic() < deadline, status
        time.sleep(2)
    logs = "\n".join(p.read_text() for p in (run / "logs").glob("*/*.log"))
    assert [j["state"] for j in status["jobs"]] == ["COMPLETED", "COMPLETED"], logs[-3000:]
    both = next((run / "results").glob("*evals-both*.h5"))
    only = next((run / "results").glob("*evals-only*.h5"))
    with h5py.File(both) as f:
        assert f.attrs["n_requests"] > 0 and f["eval"].attrs["eval_verdict"] == "fail"
        assert "ixhpc_arith strict-match at eval concurrency 2: exact_match" in f["eval"].attrs["eval_reasons"]
        assert "< threshold 0.90" in f["eval"].attrs["eval_reasons"]
        samples = bytes(f["eval/samples/c2/ixhpc_arith"][()]).decode().splitlines()
        assert len({json.loads(s)["doc_id"] for s in samples}) == 10
    with h5py.File(only) as f:
        assert f.attrs["n_requests"] == 0 and bool(f["eval"].attrs["eval_only"])
        assert f["eval"].attrs["eval_verdict"] == "pass"
        assert f["eval/scores/c4/ixhpc_arith"].attrs["exact_match,strict-match"] == 1.0
    meta = json.loads(next((run / "points").glob("*evals-only*/eval-c4-e4/meta_env.json")).read_text())
    assert meta["conc"] == 4 and meta["infmax_model_prefix"] == "simdsr1"
    assert not list((run / "points").glob("*/workspace/results*.json"))  # moved out of the workspace
