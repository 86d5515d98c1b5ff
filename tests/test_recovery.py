"""Recovery that converges (issue 13, item 5; item 1's repro), on the real local cluster.

`resume` sets a damaged result aside and re-runs its point, resubmits the `submit --merge` job,
never resubmits a live (suspended, requeued) job, lets only one of two concurrent resumes
submit; with Slurm accounting down `status` and `cancel` work from squeue and `resume` refuses.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_operations import _digest, _recipe, _wait_file

from ixhpc import rundir
from ixhpc.errors import PlanError, SlurmTransientError

from slurm_helpers import run as slurm_run
from test_jobs_e2e import REPO, ixhpc, submit, wait_status

pytestmark = pytest.mark.cluster


def _ixhpc_env(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ixhpc", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env={**os.environ, **env})


def _wait_state(job_id: str, env: dict[str, str], want: set[str], timeout: float = 240) -> str:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = slurm_run(["squeue", "-h", "-j", job_id, "-o", "%T"], env, check=False).strip()
        if state in want:
            return state
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} not in {want} after {timeout} s: {state!r}")


def _fake_bin(tmp_path: Path, name: str, body: str) -> dict[str, str]:
    """``name`` earlier on PATH running ``body`` (bash; $REAL is the real program)."""
    import shutil

    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    (bindir / name).write_text(f"#!/bin/bash\nREAL={shutil.which(name)}\n{body}\n")
    (bindir / name).chmod(0o755)
    return {"PATH": f"{bindir}:{os.environ['PATH']}"}


def _manifest(run: Path) -> dict:
    return json.loads(rundir.Layout.of(run).manifest.read_text())


def _result_job_ids(run: Path) -> dict[str, str]:
    """Point key -> the Slurm job id recorded in its result file."""
    from ixhpc.results import store

    out = {}
    for path in sorted(rundir.Layout.of(run).results_dir.glob("*.h5")):
        out[path.name[:-3]] = str(store.read(path, with_requests=False).metadata["job_id"])
    return out


# --- accounting unavailable -----------------------------------------------------------------


def _check_without_accounting(run: Path, job_id: str, env: dict[str, str]) -> None:
    """status/cancel from squeue, saying accounting is unavailable; resume refuses."""
    t0 = time.monotonic()
    res = _ixhpc_env(env, "status", str(run), "--json")
    assert res.returncode == 0, res.stderr
    assert time.monotonic() - t0 < 5  # no 7.8 s of retries
    status = json.loads(res.stdout)
    assert status["accounting_available"] is False and status["accounting_error"]
    assert status["jobs"][0]["state"] == "RUNNING"

    table = _ixhpc_env(env, "status", str(run))
    assert table.returncode == 0 and "RUNNING" in table.stdout
    assert table.stderr.count("\n") == 1 and "accounting" in table.stderr and "unavailable" in table.stderr

    before = rundir.Layout.of(run).manifest.read_bytes()
    refused = _ixhpc_env(env, "resume", str(run))
    assert refused.returncode == SlurmTransientError.exit_code, refused.stderr
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert "cannot tell a finished job from a lost one" in refused.stderr
    assert rundir.Layout.of(run).manifest.read_bytes() == before

    res = _ixhpc_env(env, "cancel", str(run), "--json")
    assert res.returncode == 0, res.stderr
    cancelled = json.loads(res.stdout)
    assert cancelled["cancelled"] == [job_id] and cancelled["accounting_available"] is False

    # Ended a moment ago: the controller still holds it, so it is not UNKNOWN yet.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = json.loads(_ixhpc_env(env, "status", str(run), "--json").stdout)["jobs"][0]["state"]
        if state != "RUNNING":
            break
        time.sleep(0.3)
    assert state in ("CANCELLED", "COMPLETING", "UNKNOWN"), state


def test_a_failing_sacct_leaves_status_and_cancel_working_and_resume_refusing(slurm, tmp_path):
    """sacct fails (as with slurmdbd restarting) while the controller answers."""
    out = submit(_recipe(tmp_path, [2, 4], osl=2048), tmp_path / "results")
    run, job_id = Path(out["run_dir"]), out["jobs"][0]["job_id"]
    _wait_state(job_id, slurm, {"RUNNING"})
    env = _fake_bin(tmp_path, "sacct", 'echo "sacct: error: Sending PersistInit msg: Connection refused" >&2; exit 1')
    try:
        _check_without_accounting(run, job_id, env)
    finally:
        slurm_run(["scancel", job_id], slurm, check=False)
    status = wait_status(str(run), timeout=60)  # accounting back: the real final state
    assert status["accounting_available"] is True and status["jobs"][0]["state"] == "CANCELLED"


def test_with_slurmdbd_down_status_and_cancel_work_and_resume_refuses(slurm, tmp_path):
    """The real outage: the local cluster's slurmdbd is stopped for a few seconds."""
    from ixhpc import local_cluster

    out = submit(_recipe(tmp_path, [2, 4], osl=2048), tmp_path / "results")
    run, job_id = Path(out["run_dir"]), out["jobs"][0]["job_id"]
    _wait_state(job_id, slurm, {"RUNNING"})
    pid = local_cluster.status()["slurmdbd"]
    assert pid is not None
    try:
        os.kill(pid, signal.SIGTERM)
        local_cluster._wait_gone(pid)
        assert slurm_run(["sacct", "-n", "-j", job_id], slurm, check=False) == ""  # sacct fails now
        _check_without_accounting(run, job_id, {})
    finally:
        slurm_run(["scancel", job_id], slurm, check=False)
        local_cluster.up()  # idempotent: starts only the missing slurmdbd
    assert local_cluster.status()["slurmdbd"] not in (None, pid)
    assert all(local_cluster.status().values())
    status = wait_status(str(run), timeout=60)
    assert status["accounting_available"] is True and status["jobs"][0]["state"] == "CANCELLED"


# --- live jobs are never resubmitted --------------------------------------------------------


def _resume_leaves_it_alone(run: Path, job_id: str) -> None:
    before = rundir.Layout.of(run).manifest.read_bytes()
    res = ixhpc("resume", str(run), "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["resubmitted"] == []
    assert rundir.Layout.of(run).manifest.read_bytes() == before
    assert _manifest(run)["jobs"][0]["attempts"][-1]["job_id"] == job_id


def test_resume_never_resubmits_a_suspended_or_requeued_job(slurm, tmp_path):
    out = submit(_recipe(tmp_path, [2, 4], osl=2048), tmp_path / "results")
    run, job_id = Path(out["run_dir"]), out["jobs"][0]["job_id"]
    try:
        _wait_state(job_id, slurm, {"RUNNING"})
        slurm_run(["scontrol", "suspend", job_id], slurm)
        _wait_state(job_id, slurm, {"SUSPENDED"})
        status = json.loads(ixhpc("status", str(run), "--json").stdout)
        assert status["jobs"][0]["state"] == "SUSPENDED" and status["jobs"][0]["missing"]
        _resume_leaves_it_alone(run, job_id)
        slurm_run(["scontrol", "resume", job_id], slurm)
        _wait_state(job_id, slurm, {"RUNNING"})

        # ixhpc submits with --no-requeue; an admin (or a preemption policy) can still requeue.
        slurm_run(["scontrol", "update", f"jobid={job_id}", "requeue=1"], slurm)
        slurm_run(["scontrol", "requeuehold", job_id], slurm)
        state = _wait_state(job_id, slurm, {"PENDING", "REQUEUED", "REQUEUE_HOLD"})
        status = json.loads(ixhpc("status", str(run), "--json").stdout)
        assert status["jobs"][0]["state"] in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "COMPLETING"), (state, status)
        _resume_leaves_it_alone(run, job_id)
    finally:
        slurm_run(["scancel", job_id], slurm, check=False)
    assert wait_status(str(run), timeout=60)["jobs"][0]["state"] == "CANCELLED"


# --- a damaged result is set aside and its point runs again ---------------------------------


def test_a_truncated_result_is_set_aside_and_its_point_runs_again(slurm, tmp_path):
    from ixhpc.runstate import valid_point_file

    out = submit(_recipe(tmp_path, [2, 4], osl=64), tmp_path / "results")
    run = Path(out["run_dir"])
    assert wait_status(str(run))["jobs"][0]["state"] == "COMPLETED"
    results = rundir.Layout.of(run).results_dir
    kept, damaged = sorted(results.glob("*.h5"), key=lambda p: ".c2." not in p.name)
    kept_digest = _digest(kept)
    size = damaged.stat().st_size
    with damaged.open("r+b") as f:
        f.truncate(size // 2)
    assert not valid_point_file(damaged)

    status = wait_status(str(run))
    assert status["jobs"][0]["points_done"] == 1 and status["jobs"][0]["missing"] == [damaged.name[:-3]]
    res = ixhpc("resume", str(run), "--json")
    assert res.returncode == 0, res.stderr
    answer = json.loads(res.stdout)
    again = answer["resubmitted"]
    assert len(again) == 1 and again[0]["missing"] == [damaged.name[:-3]]
    aside = list(results.glob(f"{damaged.name}.damaged-*"))
    assert [Path(p) for p in answer["set_aside"]] == aside
    assert len(aside) == 1 and aside[0].stat().st_size == size // 2  # kept as it was

    status = wait_status(str(run))
    assert status["jobs"][0]["state"] == "COMPLETED" and status["jobs"][0]["points_done"] == 2
    assert valid_point_file(damaged) and _digest(kept) == kept_digest
    assert _result_job_ids(run)[damaged.name[:-3]] == again[0]["job_id"]
    assert ixhpc("status", str(run)).returncode == 0


# --- resume after `submit --merge` and `cancel` merges again --------------------------------


def test_resume_after_a_cancelled_merge_run_resubmits_the_merge_job(slurm, tmp_path):
    out = submit(_recipe(tmp_path, [2, 4], osl=512), tmp_path / "results", "--merge")
    run = Path(out["run_dir"])
    merge_job = _manifest(run)["merge_job_id"]
    assert merge_job
    _wait_file("results/*.c2.h5", run, timeout=240)
    res = ixhpc("cancel", str(run), "--json")
    assert res.returncode == 0 and len(json.loads(res.stdout)["cancelled"]) == 2  # the merge job too
    status = wait_status(str(run), timeout=60)
    assert {j["state"] for j in status["jobs"]} == {"CANCELLED"}
    merged = rundir.Layout.of(run).merged
    assert not merged.exists()

    res = ixhpc("resume", str(run), "--json")
    assert res.returncode == 0, res.stderr
    new_merge = _manifest(run)["merge_job_id"]
    assert new_merge and new_merge != merge_job
    status = wait_status(str(run))
    assert {j["state"] for j in status["jobs"]} == {"COMPLETED"}, status
    from ixhpc.results import load

    assert sorted(load(str(merged))["conc"].unique().tolist()) == [2, 4]


# --- two concurrent resumes: one submits, the other refuses ---------------------------------


def test_concurrent_resumes_submit_once_and_the_manifest_lists_the_job_that_ran(slurm, tmp_path):
    out = submit(_recipe(tmp_path, [2, 4, 6, 8], osl=128), tmp_path / "results")
    run, first = Path(out["run_dir"]), out["jobs"][0]["job_id"]
    _wait_file("results/*.c2.h5", run, timeout=240)
    assert ixhpc("cancel", str(run)).returncode == 0
    status = wait_status(str(run), timeout=60)
    done_before = status["jobs"][0]["points_done"]
    assert status["jobs"][0]["state"] == "CANCELLED" and done_before < 4

    # A slow sbatch keeps the first resume inside the run lock while the second one starts.
    calls = tmp_path / "sbatch-calls"
    env = {**os.environ, **_fake_bin(tmp_path, "sbatch", f'echo x >> {calls}; sleep 4; exec $REAL "$@"')}
    argv = [sys.executable, "-m", "ixhpc", "resume", str(run), "--json"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env, cwd=REPO) for _ in range(2)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, PlanError.exit_code], results
    (_, won, _), = [r for r in results if r[0] == 0]
    (_, _, refused), = [r for r in results if r[0] != 0]
    assert refused.count("\n") == 1 and "being submitted by `ixhpc resume` (pid" in refused
    assert len(calls.read_text().split()) == 1  # exactly one sbatch
    again = json.loads(won)["resubmitted"]
    assert len(again) == 1 and len(again[0]["missing"]) == 4 - done_before
    second = again[0]["job_id"]
    assert second != first and _manifest(run)["jobs"][0]["attempts"][-1]["job_id"] == second

    status = wait_status(str(run))
    assert status["jobs"][0]["state"] == "COMPLETED" and status["jobs"][0]["points_done"] == 4
    ran = _result_job_ids(run)
    assert len(ran) == 4 and set(ran.values()) <= {first, second}
    assert sorted(k for k, j in ran.items() if j == second) == sorted(again[0]["missing"])
    log = ixhpc("logs", str(run), "--role", "job", "-n", "400").stdout
    assert log.count("valid result already there, skipped") == done_before  # nothing ran twice
