"""End to end on the real local cluster: submit -> Slurm -> roles -> benchmark -> HDF5.

The simulated engine (framework `sim`) runs as processes on this host under the `none`
container runtime; everything else is what a GPU cluster runs.
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
import yaml

from slurm_helpers import run as slurm_run

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[1]


def ixhpc(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ixhpc", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def submit(recipe: Path, results: Path, *extra: str) -> dict:
    res = ixhpc("submit", str(recipe), "--cluster", "local", "--results", str(results), "--json", *extra)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def wait_status(run_dir: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        res = ixhpc("status", run_dir, "--json")
        assert res.stdout, f"status printed nothing (exit {res.returncode}): {res.stderr}"
        status = json.loads(res.stdout)
        if all(j["state"] in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL")
               for j in status["jobs"]):
            return status
        time.sleep(1)
    raise AssertionError(f"run {run_dir} not finished: {status}")


def test_single_node_sweep_of_three_concurrencies_on_mi355x(slurm, tmp_path):
    from ixhpc.results import load

    out = submit(REPO / "recipes/examples/sim-single-node.yaml", tmp_path)
    assert len(out["jobs"]) == 1  # one engine, three concurrencies in turn
    status = wait_status(out["run_dir"])
    job = status["jobs"][0]
    assert job["state"] == "COMPLETED", job
    assert job["points_done"] == job["points_total"] == 3
    run = Path(out["run_dir"])
    table = load(str(next((run / "results").glob("*c4*.h5"))))
    assert table["conc"].tolist() == [4]
    acct = slurm_run(["sacct", "-n", "-P", "-j", job["job_id"], "-o", "JobName,NodeList"], slurm)
    assert "server" in acct and "bench" in acct
    assert any(n in acct for n in ("mi1", "mi2"))


def test_client_workers_run_in_one_bench_step_with_a_cpu_each(slurm, tmp_path):
    doc = yaml.safe_load((REPO / "recipes/examples/sim-single-node.yaml").read_text())
    entry = doc["sim-mi355x-single"]
    entry["seq-len-configs"][0]["search-space"] = [{"tp": 8, "ep": 1, "conc-list": [8]}]
    entry["ixhpc"]["benchmark"]["client-workers"] = 2
    recipe = tmp_path / "workers.yaml"
    recipe.write_text(yaml.safe_dump(doc))
    out = submit(recipe, tmp_path / "results")
    job = wait_status(out["run_dir"])["jobs"][0]
    assert job["state"] == "COMPLETED" and job["points_done"] == 1, job
    bench = json.loads(next(Path(out["run_dir"], "points").glob("*/bench-c8.json")).read_text())
    assert bench["config"]["workers"] == 2 and bench["summary"]["completed"] == 32
    steps = slurm_run(["sacct", "-n", "-P", "-j", job["job_id"], "-o", "JobName,AllocCPUS"], slurm)
    assert "bench|2" in steps.split()


def test_disaggregated_point_spreads_over_three_gb200_nodes(slurm, tmp_path):
    from ixhpc.results import load

    out = submit(REPO / "recipes/examples/sim-disagg.yaml", tmp_path)
    status = wait_status(out["run_dir"])
    job = status["jobs"][0]
    assert job["state"] == "COMPLETED", job
    steps = slurm_run(["sacct", "-n", "-P", "-j", job["job_id"], "-o", "JobName,NodeList"], slurm)
    where = dict(line.split("|") for line in steps.splitlines() if line.split("|")[0] in
                 ("prefill-0", "decode-0", "decode-1", "router"))
    assert len({where["prefill-0"], where["decode-0"], where["decode-1"]}) == 3
    assert where["router"] == where["prefill-0"]
    frames = {int(f["conc"].iloc[0]): f for f in
              (load(str(p)) for p in (Path(out["run_dir"]) / "results").glob("*.h5"))}
    assert sorted(frames) == [4, 16]  # one allocation ran the whole concurrency list
    for f in frames.values():
        assert int(f["gpus"].iloc[0]) == 12 and int(f["decode_gpus"].iloc[0]) == 8
        assert f["tput_per_gpu"].iloc[0] > 0
    # The simulated engine batches: more concurrency, more throughput per GPU.
    assert frames[16]["tput_per_gpu"].iloc[0] > frames[4]["tput_per_gpu"].iloc[0]


def test_a_killed_role_ends_the_job_within_seconds_with_its_log_tail(slurm, tmp_path):
    doc = yaml.safe_load((REPO / "recipes/examples/sim-disagg.yaml").read_text())
    entry = doc["sim-gb200-disagg"]
    entry["seq-len-configs"][0]["search-space"][0]["conc-list"] = [4, 8]
    entry["seq-len-configs"][0]["osl"] = 2048  # long enough to kill a worker mid-benchmark
    recipe = tmp_path / "long.yaml"
    recipe.write_text(yaml.safe_dump(doc))
    out = submit(recipe, tmp_path / "results")
    run = Path(out["run_dir"])
    pid = _wait_for_process(out["jobs"][0]["job_id"], "--role decode")
    time.sleep(2)
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    status = wait_status(str(run), timeout=60)
    ended = time.monotonic()
    job = status["jobs"][0]
    assert job["state"] == "FAILED"
    assert "decode-" in job["reason"] and "exited" in job["reason"]
    assert ended - killed < 30
    log = ixhpc("logs", str(run), "--role", "job").stdout
    assert "last lines of" in log and "    | " in log


def _wait_for_process(job_id: str, pattern: str, timeout: float = 60) -> int:
    """A role's engine process on this host (the `none` runtime runs roles as host processes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                env = (proc / "environ").read_bytes().decode(errors="replace")
            except OSError:
                continue
            engine = not cmd.startswith("srun")  # the engine itself, not the srun client
            if engine and "ixhpc.sim serve" in cmd and pattern in cmd and f"SLURM_JOB_ID={job_id}\0" in env:
                return int(proc.name)
        time.sleep(0.2)
    raise AssertionError(f"no process matching {pattern!r} in job {job_id}")
