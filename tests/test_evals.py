"""Accuracy evals (ixhpc.evals, docs/evals.md): the generated problem set, the simulated
engine's answers, thresholds and verdicts, the eval steps of a job script, and the whole path
on the local cluster (lm-eval against the simulated engine, scores in the point file, merge,
report and the InferenceX eval export)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
import yaml

from ixhpc import render, runs
from ixhpc.errors import ConfigError
from ixhpc.evals import problems, results, tasks, thresholds
from ixhpc.profiles import get_profile
from ixhpc.recipe import EvalThresholds
from ixhpc.sim import answers
from ixhpc.sweep import Filters

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "recipes/examples/sim-evals.yaml"


def _asked(question: str) -> dict[str, object]:
    """A chat request as lm-eval's local-chat-completions sends it (InferenceX's gsm8k prompt)."""
    text = tasks.PROMPT.replace("{{question}}", question)
    return {"messages": [{"role": "user", "content": "Question: 1 + 1?\nAnswer:"},
                         {"role": "assistant", "content": "#### 2"}, {"role": "user", "content": text}]}


def test_generated_problems_are_gsm8k_rows_whose_answers_solve_reads_back():
    rows = list(problems.problems(7, 300))
    assert rows == list(problems.problems(7, 300))  # seeded: the same set every time
    assert len({r["question"] for r in rows}) > 290
    for r in rows:
        steps, number = r["answer"].split("\n#### ")
        assert steps and int(number) >= 0
        assert problems.solve(r["question"]) == int(number)
    assert problems.solve("What is the capital of France?") is None


def test_the_simulated_engine_answers_with_its_configured_error_rate(monkeypatch):
    rows = list(problems.problems(tasks.SEED, 400))
    monkeypatch.setenv(answers.ERROR_RATE_VAR, "0")
    for r in rows[:20]:
        reply = answers.reply(_asked(r["question"]))
        assert reply is not None and reply.endswith("#### " + r["answer"].split("#### ")[1])
    monkeypatch.setenv(answers.ERROR_RATE_VAR, "0.3")
    wrong = [answers.reply(_asked(r["question"])) != answers.reply(_asked(r["question"])) or
             not str(answers.reply(_asked(r["question"]))).endswith("#### " + r["answer"].split("#### ")[1])
             for r in rows]
    assert 0.22 < sum(wrong) / len(wrong) < 0.38
    assert answers.reply({"messages": [{"role": "user", "content": "hello"}]}) is None
    monkeypatch.setenv(answers.ERROR_RATE_VAR, "1.5")
    with pytest.raises(ValueError, match="from 0 to 1"):
        answers.reply(_asked(rows[0]["question"]))


def test_thresholds_resolve_model_prefix_then_task_default_then_min_score(tmp_path):
    th = thresholds.DEFAULTS
    assert thresholds.resolve(th, "glm5", "gsm8k") == 0.94
    assert thresholds.resolve(th, "somemodel", "gsm8k") == 0.90
    assert thresholds.resolve(th, "dsr1", "gpqa_diamond_cot_n_shot") == 0.30
    assert thresholds.resolve(th, "dsr1", "unknown_task") == thresholds.MIN_SCORE
    f = tmp_path / "th.yaml"
    f.write_text("default:\n  gsm8k: 0.5\nmodels:\n  m1:\n    gsm8k: 0.7\n")
    inline = EvalThresholds(default={"gsm8k": 0.6})
    assert thresholds.load(inline, "th.yaml", tmp_path) is inline
    assert thresholds.load(None, None, tmp_path) is thresholds.DEFAULTS
    loaded = thresholds.load(None, "th.yaml", tmp_path)
    assert loaded == EvalThresholds(default={"gsm8k": 0.5}, models={"m1": {"gsm8k": 0.7}})
    f.write_text("default:\n  gsm8k: 1.5\n")
    with pytest.raises(ConfigError) as err:
        thresholds.load(None, str(f), tmp_path)
    assert re.search(r"th\.yaml:2: default\.gsm8k", err.value.errors[0]), err.value.errors
    with pytest.raises(ConfigError, match="not found"):
        thresholds.load(None, "missing.yaml", tmp_path)


def _metric(value: float) -> dict[str, float]:
    return {"value": value, "stderr": 0.01}


def test_verdict_fails_on_a_low_score_a_missing_metric_task_or_concurrency():
    spec = results.EvalSpec((16, 32), {"gsm8k": 0.9})
    good = {"gsm8k": {"exact_match,strict-match": _metric(0.95), "exact_match,flexible-extract": _metric(0.96)}}
    assert results.judge({"16": good, "32": good}, spec) == []
    low = {"gsm8k": {"exact_match,strict-match": _metric(0.95), "exact_match,flexible-extract": _metric(0.5)}}
    assert results.judge({"16": good, "32": low}, spec) == [
        "gsm8k flexible-extract at eval concurrency 32: exact_match 0.5000 < threshold 0.90"]
    assert results.judge({"16": good}, spec) == ["eval concurrency 32: no lm-eval result"]
    assert results.judge({"16": good, "32": {}}, spec) == ["gsm8k at eval concurrency 32: no result"]
    assert results.judge({"16": good, "32": {"gsm8k": {"acc,none": _metric(1.0)}}}, spec) == [
        "gsm8k at eval concurrency 32: no exact_match metric"]


def _plans(recipe: Path, profile_name: str = "local", **update: object) -> list[runs.JobPlan]:
    profile = get_profile(profile_name).model_copy(update=update)
    run = Path("/scratch/ixhpc-runs/evals-run")
    return runs.plan(runs.RunTarget(recipe, profile, Filters()), run, run.name)


def _flat(script: str) -> str:
    """A script with its continuation lines joined: one command per line."""
    return re.sub(r" \\\n\s*", " ", script)


def test_job_scripts_run_lm_eval_after_the_benchmark_or_instead_of_it():
    by_key = {p.key: p for p in _plans(EXAMPLE)}
    both = _flat(render.render(next(p for k, p in by_key.items() if "throughput-then-eval" in k)))
    only = _flat(render.render(next(p for k, p in by_key.items() if "evals-only" in k)))
    # throughput first, stored only after its evals (at eval concurrencies 4 and 8, one engine)
    assert both.index("run_benchmark \"${CONC}\"") < both.index("run_eval \"${CONC}\" \"${ECONC}\"")
    assert "EVAL_AFTER=(4)" in both and "ECONCS=(4 8)" in both
    assert "--eval-conc=4 --eval-conc=8 --eval-task=ixhpc_arith=0.9" in both
    # the eval client: its own visible srun step running lm-eval offline against the engine
    line = next(ln for ln in both.splitlines() if "--job-name=eval" in ln)
    assert line.strip().startswith("run_eval \"${CONC}\" \"${ECONC}\" srun --overlap")
    assert re.search(r"HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 \"\$\{IXHPC_PYTHON}\" -m lm_eval", both)
    assert "--apply_chat_template" in both and "num_concurrent=${ECONC},tokenized_requests=False" in both
    # eval-only: no throughput for its concurrency, its engine sized for the eval
    assert 'if [[ " 8 " == *" ${CONC} "* ]]; then' in only and "--eval-only" in only
    assert "max_length=4096" in only


def test_an_eval_only_engine_serves_the_eval_context_and_an_eval_image_runs_the_client(tmp_path):
    doc = yaml.safe_load((REPO / "recipes/examples/mi355x-dsr1-sglang.yaml").read_text())
    entry = next(iter(doc.values()))
    entry["seq-len-configs"] = entry["seq-len-configs"][1:]  # 8k1k
    entry["ixhpc"]["eval"] = {"only": True, "concurrencies": [16, 32], "limit": 50, "context-length": 16384}
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(doc))
    plan = _plans(recipe, "mi355x", eval_image="registry.local/lm-eval:0.4.13")[0]
    text = _flat(render.render(plan))
    server = next(r.command for r in plan.roles if r.name == "server")
    assert "--context-length 16384" in _flat(server) and "max_length=16384" in text
    eval_line = text[text.index("--job-name=eval"):text.index("ingest_eval \"${CONC}\"")]
    # the eval image, imported like the engine's before the evals, runs the client
    assert "--container-image=" in eval_line and "registry.local+lm-eval+0.4.13" in eval_line
    assert "python3 -m lm_eval" in eval_line and "ixhpc.containers import registry.local/lm-eval:0.4.13" in text
    assert "--tasks gsm8k" in eval_line and "--limit 50" in eval_line
    assert "--eval-task=gsm8k=0.91" in text  # InferenceX's dsr1 floor
    assert plan.container.image not in eval_line


def test_a_multi_node_point_evals_at_its_eval_conc_and_eval_only_runs_only_that(tmp_path):
    def recipe(name: str, evals: dict[str, object]) -> Path:
        doc = yaml.safe_load((REPO / "recipes/examples" / name).read_text())
        for entry in doc.values():
            entry["ixhpc"]["eval"] = evals
        path = tmp_path / name
        path.write_text(yaml.safe_dump(doc))
        return path

    (disagg,) = _plans(recipe("sim-disagg.yaml", {"run": True}))
    assert disagg.concs == [4, 16] and disagg.evals is not None
    assert [(e.conc, e.eval_concs, e.only) for e in disagg.evals.points] == [(16, (16,), False)]
    assert "EVAL_AFTER=(16)" in render.render(disagg)  # the other concurrency is stored at once
    (agg,) = _plans(recipe("sim-multinode-agg.yaml", {"only": True, "concurrencies": [4, 16]}))
    assert agg.concs == [16] and "CONCURRENCIES=(16)" in render.render(agg)
    assert agg.evals is not None and [(e.conc, e.eval_concs, e.only) for e in agg.evals.points] == [
        (16, (4, 16), True)]


@pytest.mark.cluster
def test_local_cluster_runs_throughput_then_eval_and_eval_only_and_reports_the_verdicts(slurm, tmp_path):
    res = subprocess.run([sys.executable, "-m", "ixhpc", "submit", str(EXAMPLE), "--cluster", "local",
                          "--results", str(tmp_path), "--json"], capture_output=True, text=True, cwd=REPO,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    run = Path(json.loads(res.stdout)["run_dir"])
    deadline = time.monotonic() + 500
    while time.monotonic() < deadline:
        st = json.loads(subprocess.run([sys.executable, "-m", "ixhpc", "status", str(run), "--json"],
                                       capture_output=True, text=True, cwd=REPO).stdout)
        if all(j["state"] in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") for j in st["jobs"]):
            break
        time.sleep(3)
    assert [j["state"] for j in st["jobs"]] == ["COMPLETED", "COMPLETED"], st
    both = next((run / "results").glob("*throughput-then-eval*.h5"))
    only = next((run / "results").glob("*evals-only*.h5"))
    job_log = next((run / "logs").glob("*throughput-then-eval*/job-*.out")).read_text()
    assert job_log.index("benchmark at concurrency 4") < job_log.index("eval of concurrency 4 at eval concurrency 4") \
        < job_log.index("eval of concurrency 4 at eval concurrency 8")
    with h5py.File(both) as f:
        assert f.attrs["n_requests"] > 0 and f["eval"].attrs["eval_verdict"] == "pass"
        assert f["eval/scores/c8/ixhpc_arith"].attrs["exact_match,strict-match"] == 1.0
        samples = bytes(f["eval/samples/c4/ixhpc_arith"][()]).decode().splitlines()
        docs = [json.loads(line) for line in samples]  # one line per problem and filter
        assert len({d["doc_id"] for d in docs}) == 16 and {d["filter"] for d in docs} == {"strict-match",
                                                                                          "flexible-extract"}
    with h5py.File(only) as f:
        assert f.attrs["n_requests"] == 0 and bool(f["eval"].attrs["eval_only"])
        assert f["eval"].attrs["eval_verdict"] == "fail"
        reasons = f["eval"].attrs["eval_reasons"]
        assert "strict-match at eval concurrency 8: exact_match 0.7500 < threshold 0.90" in reasons
    assert not list((run / "logs").glob("*evals-only*/bench-c*.log"))  # no throughput benchmark ran
    merged, ev = tmp_path / "m.h5", tmp_path / "eval.json"
    out = subprocess.run([sys.executable, "-m", "ixhpc", "merge", str(run / "results"), "-o", str(merged),
                          "--eval-json", str(ev)], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "evals: 1 pass, 1 fail" in out.stdout and "eval failed: sim-evals-only" in out.stdout
    from ixhpc.results import load

    df = load(merged).set_index("point_key")
    assert set(df["eval_verdict"]) == {"pass", "fail"}
    assert df.loc[df["eval_only"].astype(bool), "eval_ixhpc_arith_exact_match_strict_match"].item() == 0.75
    rows = json.loads(ev.read_text())
    assert sorted((r["conc"], r["score"]) for r in rows) == [(4, 1.0), (8, 0.75), (8, 1.0)]
    rep = subprocess.run([sys.executable, "-m", "ixhpc", "report", str(merged), "-o", str(tmp_path / "rep")],
                         capture_output=True, text=True, cwd=REPO)
    assert rep.returncode == 0, rep.stderr
    text = (tmp_path / "rep" / "summary.md").read_text()
    assert "## Accuracy evals" in text and "| eval only | ixhpc_arith | 0.750 ± 0.112" in text
    assert "**FAIL**" in text and "exact_match 0.7500 < threshold 0.90" in text
