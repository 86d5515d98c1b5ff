"""The eval client where compute nodes have no network (ixhpc.evals.client: a wheelhouse, an
offline install into the job's venv), and `ixhpc validate` of the ``ixhpc.eval`` blocks
(ixhpc.evals.check). docs/evals.md."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
import yaml

from ixhpc import render, runs
from ixhpc.evals import client
from ixhpc.profiles import get_profile
from ixhpc.sweep import Filters

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "recipes/examples/sim-evals.yaml"
BARE_PYTHON = Path("/usr/bin/python3")  # a Python without lm_eval (the system's, not the project's)


def _ixhpc(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ixhpc", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def test_the_pinned_requirements_come_from_the_eval_extra_without_torch():
    assert client.requirements() == ["lm_eval[api]==0.4.13"]


def test_a_wheelhouse_profile_installs_lm_eval_once_per_job_before_its_evals():
    profile = get_profile("local").model_copy(update={"eval_wheelhouse": "/shared/wheels"})
    run = Path("/scratch/ixhpc-runs/evals-run")
    plan = next(p for p in runs.plan(runs.RunTarget(EXAMPLE, profile, Filters()), run, run.name)
                if "throughput-then-eval" in p.key)
    text = render.render(plan)
    install = text.index("--job-name=eval-install")
    assert text.count("--job-name=eval-install") == 1 and install < text.index("run_eval \"${CONC}\" \"${ECONC}\"")
    flat = text.replace("\\\n", " ")
    assert "ixhpc.evals install --venv \"${POINT_DIR}/eval-venv\" --wheelhouse /shared/wheels" in " ".join(
        flat.split())
    assert "\"${EVAL_PYTHON}\" -m lm_eval" in " ".join(flat.split())
    # without a wheelhouse: no install step, lm-eval run by the eval's Python directly
    plain = render.render(next(p for p in runs.plan(runs.RunTarget(EXAMPLE, get_profile("local"), Filters()),
                                                    run, run.name) if "throughput-then-eval" in p.key))
    assert "eval-install" not in plain and "EVAL_PYTHON" not in plain


def test_install_fails_with_one_line_when_the_wheelhouse_is_missing(tmp_path):
    if not BARE_PYTHON.is_file():
        pytest.skip("no system Python without lm_eval here")
    bundle = tmp_path / "ixhpc.pyz"
    from ixhpc import bundle as bundler

    bundler.write(bundle)
    res = subprocess.run([str(BARE_PYTHON), str(bundle), "-m", "ixhpc.evals", "install", "--venv",
                          str(tmp_path / "venv"), "--wheelhouse", str(tmp_path / "none"), "lm_eval[api]==0.4.13"],
                         capture_output=True, text=True)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "cannot import lm_eval and the wheelhouse" in res.stderr and str(tmp_path / "none") in res.stderr


def _wait(run: Path, seconds: float) -> list[str]:
    deadline = time.monotonic() + seconds
    while True:
        st = json.loads(_ixhpc("status", str(run), "--json").stdout)
        states = [j["state"] for j in st["jobs"]]
        if all(s in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") for s in states) or time.monotonic() > deadline:
            return states
        time.sleep(2)


@pytest.mark.cluster
def test_an_eval_python_without_lm_eval_gets_it_from_the_wheelhouse_offline(slurm, tmp_path):
    if not BARE_PYTHON.is_file():
        pytest.skip("no system Python without lm_eval here")
    assert subprocess.run([str(BARE_PYTHON), "-c", "import lm_eval"], capture_output=True).returncode != 0
    wheels = tmp_path / "wheels"
    made = subprocess.run([sys.executable, "-m", "ixhpc.evals", "wheelhouse", str(wheels)],
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr[-2000:]
    assert list(wheels.glob("lm_eval-0.4.13-*.whl")) and not list(wheels.glob("*.tar.gz"))
    assert not list(wheels.glob("torch-*.whl"))  # lm-eval's API client does not need it
    profiles = tmp_path / "clusters.yaml"
    profiles.write_text(yaml.safe_dump({"local-wheels": {"extends": "local", "eval-wheelhouse": str(wheels),
                                                         "eval-python": str(BARE_PYTHON)}}))
    doc = yaml.safe_load(EXAMPLE.read_text())
    entry = doc["sim-evals-only"]
    entry["ixhpc"]["env"] = {"SIM_ANSWER_ERROR_RATE": "0"}
    entry["ixhpc"]["eval"]["limit"] = 10
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"sim-evals-wheels": entry}))
    res = _ixhpc("submit", str(recipe), "--cluster", "local-wheels", "--profiles", str(profiles),
                 "--results", str(tmp_path / "runs"), "--json")
    assert res.returncode == 0, res.stderr
    run = Path(json.loads(res.stdout)["run_dir"])
    assert _wait(run, 240) == ["COMPLETED"]
    install_log = next((run / "logs").glob("*/eval-install.log")).read_text()
    assert "lm_eval installed from " + str(wheels) in install_log and "--no-index" in install_log
    venv_python = next((run / "points").glob("*/eval-venv/bin/python"))
    assert subprocess.run([str(venv_python), "-c", "import torch"], capture_output=True).returncode != 0
    with h5py.File(next((run / "results").glob("*.h5"))) as f:
        assert f["eval"].attrs["eval_verdict"] == "pass"
        assert f["eval/scores/c8/ixhpc_arith"].attrs["exact_match,strict-match"] == 1.0


# ---------------------------------------------------------------- validate


def _recipe(tmp_path: Path, **evals: object) -> Path:
    doc = yaml.safe_load(EXAMPLE.read_text())
    entry = doc["sim-evals-only"]
    entry["ixhpc"]["eval"].update(evals)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"sim-evals-only": entry}, sort_keys=False))
    return path


def test_validate_locates_a_missing_or_bad_thresholds_file_and_unknown_tasks(tmp_path):
    recipe = _recipe(tmp_path, **{"thresholds-file": "missing.yaml", "tasks": ["ixhpc_arith", "mmlu_pro"]})
    res = _ixhpc("validate", str(recipe))
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    text = recipe.read_text().splitlines()
    missing = next(ln for ln in lines if "thresholds-file" in ln)
    line_no = int(missing.split(":")[1])
    assert text[line_no - 1].strip().startswith("thresholds-file:")
    assert missing.endswith(f"{tmp_path / 'missing.yaml'}: no such eval thresholds file")
    unknown = next(ln for ln in lines if "unknown lm-eval task" in ln)
    assert "sim-evals-only.ixhpc.eval.tasks: unknown lm-eval task(s) mmlu_pro:" in unknown
    assert "no task-dir defines them" in unknown
    (tmp_path / "th.yaml").write_text("default:\n  ixhpc_arith: 1.5\n")
    res = _ixhpc("validate", str(_recipe(tmp_path, **{"thresholds-file": "th.yaml"})))
    assert res.returncode == 2 and f"{tmp_path / 'th.yaml'}:2: default.ixhpc_arith" in res.stderr, res.stderr


def test_validate_accepts_tasks_defined_in_the_task_dir(tmp_path):
    tasks = tmp_path / "tasks" / "sub"
    tasks.mkdir(parents=True)
    (tasks / "mine.yaml").write_text("task: my_gsm8k\nprocess_results: !function utils.process\n")
    (tmp_path / "th.yaml").write_text("default:\n  my_gsm8k: 0.5\n")
    ok = _recipe(tmp_path, **{"tasks": ["my_gsm8k", "gsm8k"], "task-dir": "tasks", "thresholds-file": "th.yaml"})
    res = _ixhpc("validate", str(ok))
    assert res.returncode == 0, res.stderr
    res = _ixhpc("validate", str(_recipe(tmp_path, **{"tasks": ["other"], "task-dir": "tasks"})))
    assert res.returncode == 2 and "unknown lm-eval task(s) other" in res.stderr
    assert "nor defined by a task file in tasks" in res.stderr
    res = _ixhpc("validate", str(_recipe(tmp_path, **{"tasks": ["x"], "task-dir": "nodir"})))
    assert res.returncode == 2 and f"{tmp_path / 'nodir'}: no such directory" in res.stderr
