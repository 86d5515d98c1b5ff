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

from ixhpc.errors import PlanError, SlurmError

from slurm_helpers import run as slurm_run
from slurm_helpers import sbatch
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
    assert bad.returncode == PlanError.exit_code and "Traceback" not in bad.stderr
    assert "no run directory" in bad.stderr


def _fake_sbatch(tmp_path: Path, fail_times: int, message: str) -> dict[str, str]:
    """An `sbatch` earlier on PATH that fails ``fail_times`` times, then runs the real one."""
    import shutil

    real = shutil.which("sbatch")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    counter = tmp_path / "sbatch-calls"
    (bindir / "sbatch").write_text(f"""#!/bin/bash
n=$(($(cat {counter} 2>/dev/null || echo 0) + 1)); echo "$n" > {counter}
if ((n <= {fail_times})); then echo "sbatch: error: {message}" >&2; exit 1; fi
exec {real} "$@"
""")
    (bindir / "sbatch").chmod(0o755)
    return {"PATH": f"{bindir}:{os.environ['PATH']}", "IXHPC_SLURM_BACKOFF": "0.05"}


def _submit_env(recipe: Path, results: Path, env: dict[str, str]):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "ixhpc", "submit", str(recipe), "--cluster", "local",
                           "--results", str(results), "--json"], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120, cwd=REPO)


def test_transient_sbatch_failures_are_retried(slurm, tmp_path):
    env = _fake_sbatch(tmp_path, 2, "Socket timed out on send/recv operation")
    res = _submit_env(REPO / "recipes/examples/sim-single-node.yaml", tmp_path / "results", env)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "sbatch-calls").read_text().strip() == "3"
    out = json.loads(res.stdout)
    assert wait_status(out["run_dir"])["jobs"][0]["state"] == "COMPLETED"


def test_a_lasting_sbatch_error_is_one_line_and_keeps_the_run_directory(slurm, tmp_path):
    env = _fake_sbatch(tmp_path, 99,
                       "Batch job submission failed: Invalid account or account/partition combination specified")
    res = _submit_env(REPO / "recipes/examples/sim-single-node.yaml", tmp_path / "results", env)
    assert res.returncode == SlurmError.exit_code
    assert res.stderr.count("\n") == 1 and "Invalid account" in res.stderr and "Traceback" not in res.stderr
    assert (tmp_path / "sbatch-calls").read_text().strip() == "1"  # not transient: no retry
    manifests = list((tmp_path / "results").glob("*/manifest.json"))
    assert len(manifests) == 1 and '"attempts": []' in manifests[0].read_text()


def test_a_point_that_reaches_its_time_limit_is_marked_timed_out(slurm, tmp_path):
    recipe = _recipe(tmp_path, [2, 64], osl=2048)
    doc = yaml.safe_load(recipe.read_text())
    doc["sim-gb200-disagg"]["ixhpc"]["time-limit"] = 1  # minute; concurrency 64 needs longer
    recipe.write_text(yaml.safe_dump(doc))
    out = submit(recipe, tmp_path / "results")
    status = wait_status(out["run_dir"], timeout=240)
    job = status["jobs"][0]
    assert job["state"] == "TIMEOUT"
    assert job["points_done"] == 1  # concurrency 2 finished in time and is kept
    assert not list((Path(out["run_dir"]) / "results").glob(".*.tmp"))
    log = ixhpc("logs", out["run_dir"], "--role", "job", "-n", "100").stdout
    assert "received SIGTERM" in log and "stopping" in log


def test_a_node_that_dies_fails_its_point_and_resume_excludes_it(slurm, tmp_path):
    from ixhpc import local_cluster

    out = submit(_recipe(tmp_path, [2, 4], osl=2048), tmp_path / "results")
    run = Path(out["run_dir"])
    job_id = out["jobs"][0]["job_id"]
    _wait_for_process(job_id, "--role decode")
    nodes = slurm_run(["squeue", "-h", "-j", job_id, "-o", "%N"], slurm).strip()
    victim = slurm_run(["scontrol", "show", "hostnames", nodes], slurm).split()[1]  # a decode node
    pid = local_cluster.status()[f"slurmd-{victim}"]
    try:
        os.kill(pid, signal.SIGKILL)
        status = wait_status(str(run), timeout=120)
        job = status["jobs"][0]
        assert job["state"] == "NODE_FAIL", job
        assert victim in job["reason"]
        res = ixhpc("resume", str(run), "--exclude", victim, "--json")
        assert res.returncode == 0, res.stderr
        new_job = json.loads(res.stdout)["resubmitted"][0]["job_id"]
        deadline = time.monotonic() + 60
        placed = ""
        while not placed and time.monotonic() < deadline:
            placed = slurm_run(["squeue", "-h", "-j", new_job, "-o", "%N"], slurm).strip()
            time.sleep(0.5)
        assert placed and victim not in slurm_run(["scontrol", "show", "hostnames", placed], slurm).split()
        ixhpc("cancel", str(run))
    finally:
        local_cluster.up()  # the node's slurmd comes back and the node is resumed


def test_an_image_that_cannot_be_imported_fails_the_job_naming_it(slurm, tmp_path):
    """enroot runtime with a stand-in `enroot` that cannot pull: bounded attempts, clear error."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    calls = tmp_path / "enroot-calls"
    (bindir / "enroot").write_text(f'#!/bin/bash\necho "$@" >> {calls}\n'
                                   'echo "[ERROR] URL https://registry/v2/ returned error code: 401 Unauthorized" >&2\n'
                                   'exit 1\n')
    (bindir / "enroot").chmod(0o755)
    profiles = tmp_path / "clusters.yaml"
    profiles.write_text(yaml.safe_dump({"local-enroot": {
        "extends": "local", "container-runtime": "enroot", "squash-cache": str(tmp_path / "cache")}}))
    doc = yaml.safe_load((REPO / "recipes/examples/sim-single-node.yaml").read_text())
    doc["sim-mi355x-single"]["image"] = "nvcr.io/nvidia/no-such-image:1.0"
    recipe = tmp_path / "image.yaml"
    recipe.write_text(yaml.safe_dump(doc))
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "ixhpc", "submit", str(recipe), "--cluster", "local-enroot",
                          "--profiles", str(profiles), "--results", str(tmp_path / "results"), "--json"],
                         capture_output=True, text=True, timeout=120, cwd=REPO,
                         env={**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"})
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    job = wait_status(out["run_dir"], timeout=120)["jobs"][0]
    assert job["state"] == "FAILED"
    log = ixhpc("logs", out["run_dir"], "--role", "job", "-n", "100").stdout
    assert "nvcr.io/nvidia/no-such-image:1.0" in log and "401 Unauthorized" in log
    assert "container image could not be imported" in job["reason"]
    assert 1 <= len(calls.read_text().splitlines()) <= 3  # bounded, not forever
    assert not list((tmp_path / "cache").glob("*.sqsh"))


def test_secrets_from_the_environment_never_land_in_the_run_directory(slurm, tmp_path):
    import subprocess
    import sys

    secret = "hf_ixhpcTestSecret0123456789"
    res = subprocess.run([sys.executable, "-m", "ixhpc", "submit", str(REPO / "recipes/examples/sim-single-node.yaml"),
                          "--cluster", "local", "--results", str(tmp_path), "--json"],
                         capture_output=True, text=True, timeout=120, cwd=REPO,
                         env={**os.environ, "HF_TOKEN": secret})
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert wait_status(out["run_dir"])["jobs"][0]["state"] == "COMPLETED"
    leaked = [p for p in Path(out["run_dir"]).rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert leaked == []
    for d in [Path(out["run_dir"]), *Path(out["run_dir"]).rglob("*")]:
        if d.is_dir():
            assert not d.stat().st_mode & 0o002, f"{d} is world-writable"
