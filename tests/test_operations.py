"""status / logs / cancel / resume on the real local cluster, with faults injected."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from pathlib import Path

import pytest
import yaml

from slurm_helpers import run as slurm_run, sbatch
from test_jobs_e2e import REPO, _wait_for_process, ixhpc, submit, wait_status

pytestmark = pytest.mark.cluster


def _recipe(tmp_path: Path, concs: list[int], osl: int) -> Path:
    doc = yaml.safe_load((REPO / "recipes/examples/sim-disagg.yaml").read_text())
    cfg = doc["sim-gb200-disagg"]["seq-len-configs"][0]
    cfg["osl"] = osl
    cfg["search-space"][0]["conc-list"] = concs
    path = tmp_path / f"disagg-{osl}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _wait_file(pattern: str, root: Path, timeout: float = 60) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(root.glob(pattern))
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no {pattern} under {root}")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_failed_point_is_resumed_and_finished_points_never_rerun(slurm, tmp_path):
    out = submit(_recipe(tmp_path, [2, 4], osl=512), tmp_path / "results")
    run = Path(out["run_dir"])
    job_id = out["jobs"][0]["job_id"]
    first = _wait_file("results/*.c2.h5", run)
    before = _digest(first)
    os.kill(_wait_for_process(job_id, "--role decode"), signal.SIGKILL)
    status = wait_status(str(run), timeout=60)
    job = status["jobs"][0]
    assert job["state"] == "FAILED" and job["points_done"] == 1 and len(job["missing"]) == 1
    assert not list((run / "results").glob(".*.tmp"))  # no half-written file left behind

    res = ixhpc("resume", str(run), "--json")
    assert res.returncode == 0, res.stderr
    again = json.loads(res.stdout)["resubmitted"]
    assert len(again) == 1 and again[0]["job_id"] != job_id
    status = wait_status(str(run))
    assert status["jobs"][0]["state"] == "COMPLETED"
    assert status["jobs"][0]["points_done"] == 2
    assert _digest(first) == before  # concurrency 2 was not run again
    log = ixhpc("logs", str(run), "--role", "job", "-n", "200").stdout
    assert "concurrency 2: valid result already there, skipped" in log

    nothing = json.loads(ixhpc("resume", str(run), "--json").stdout)
    assert nothing["resubmitted"] == []


def test_cancel_stops_only_this_runs_jobs_and_keeps_finished_results(slurm, tmp_path):
    other = sbatch(slurm, "-p", "debug", "-J", "not-ixhpc", "-o", "/dev/null", "--wrap", "sleep 120")
    try:
        out = submit(_recipe(tmp_path, [2, 4], osl=512), tmp_path / "results")
        run = Path(out["run_dir"])
        done = _wait_file("results/*.c2.h5", run, timeout=90)
        res = ixhpc("cancel", str(run), "--json")
        assert res.returncode == 0 and json.loads(res.stdout)["cancelled"] == [out["jobs"][0]["job_id"]]
        status = wait_status(str(run), timeout=60)
        assert status["jobs"][0]["state"] == "CANCELLED"
        assert status["jobs"][0]["points_done"] == 1
        from ixhpc.runstate import valid_point_file

        assert valid_point_file(done)
        assert not list((run / "results").glob(".*.tmp"))
        still = slurm_run(["squeue", "-h", "-j", other, "-o", "%T"], slurm).strip()
        assert still in ("RUNNING", "PENDING")
    finally:
        slurm_run(["scancel", other], slurm, check=False)


def test_status_and_logs_on_a_finished_run(slurm, tmp_path):
    out = submit(REPO / "recipes/examples/sim-single-node.yaml", tmp_path)
    wait_status(out["run_dir"])
    table = ixhpc("status", out["run_dir"])
    assert table.returncode == 0 and "3/3 points have results" in table.stdout
    assert "COMPLETED" in table.stdout
    logs = ixhpc("logs", out["run_dir"], "--role", "server")
    assert logs.returncode == 0 and "simulated engine" in logs.stdout
    bad = ixhpc("status", str(tmp_path / "no-such-run"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "no run directory" in bad.stderr
