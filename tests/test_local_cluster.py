"""The project's local Slurm cluster, used for real: placement, arrays, accounting, submitit."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slurm_helpers import run, sbatch, wait_done

pytestmark = pytest.mark.cluster


def _sinfo(env: dict[str, str], partition: str) -> list[tuple[str, str, str]]:
    out = run(["sinfo", "-h", "-N", "-p", partition, "-o", "%N %t %G"], env)
    return [tuple(line.split()) for line in out.splitlines()]


def test_partitions_have_the_required_shape(slurm):
    gb = _sinfo(slurm, "gb200")
    mi = _sinfo(slurm, "mi355x")
    assert len(gb) >= 4 and all(g == "gpu:4" for _, _, g in gb)
    assert len(mi) >= 2 and all(g == "gpu:8" for _, _, g in mi)
    debug = {n for n, _, _ in _sinfo(slurm, "debug")}
    assert debug == {n for n, _, _ in gb} | {n for n, _, _ in mi}
    assert all(state == "idle" for _, state, _ in gb + mi)


def test_three_node_job_runs_each_step_on_its_node(slurm, tmp_path):
    script = tmp_path / "place.sh"
    script.write_text(f"""#!/bin/bash
#SBATCH -N3 -p gb200 -J ixhpc-test-place -o {tmp_path}/slurm-%j.out
mapfile -t hosts < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
for i in 0 1 2; do
  srun -N1 -n1 --relative=$i bash -c 'echo "$SLURMD_NODENAME"' > "{tmp_path}/step$i.out" &
done
wait
printf '%s\\n' "${{hosts[@]}}" > "{tmp_path}/hosts.out"
""")
    job = sbatch(slurm, str(script))
    assert wait_done(job, slurm)[job][0] == "COMPLETED"
    hosts = (tmp_path / "hosts.out").read_text().split()
    ran_on = [(tmp_path / f"step{i}.out").read_text().strip() for i in range(3)]
    assert len(set(hosts)) == 3
    assert ran_on == hosts


def test_job_array_runs_every_task(slurm, tmp_path):
    job = sbatch(slurm, "-p", "mi355x", "--array=0-3", "-J", "ixhpc-test-array",
                 "-o", f"{tmp_path}/%A_%a.out",
                 "--wrap", f'echo "$SLURM_ARRAY_TASK_ID $SLURMD_NODENAME" > {tmp_path}/task$SLURM_ARRAY_TASK_ID')
    states = wait_done(job, slurm, expect=4)
    assert sorted(states) == [f"{job}_{i}" for i in range(4)]
    assert {s for s, _ in states.values()} == {"COMPLETED"}
    for i in range(4):
        task, node = (tmp_path / f"task{i}").read_text().split()
        assert task == str(i) and node in {"mi1", "mi2"}


def test_sacct_reports_completed_failed_and_cancelled_truthfully(slurm):
    ok = sbatch(slurm, "-p", "debug", "-J", "ixhpc-test-ok", "-o", "/dev/null", "--wrap", "true")
    bad = sbatch(slurm, "-p", "debug", "-J", "ixhpc-test-bad", "-o", "/dev/null", "--wrap", "exit 3")
    slow = sbatch(slurm, "-p", "debug", "-J", "ixhpc-test-cancel", "-o", "/dev/null", "--wrap", "sleep 300")
    assert wait_done(ok, slurm)[ok] == ("COMPLETED", "0:0")
    assert wait_done(bad, slurm)[bad] == ("FAILED", "3:0")
    _wait_running(slow, slurm)
    run(["scancel", slow], slurm)
    assert wait_done(slow, slurm)[slow][0] == "CANCELLED"


def _wait_running(job: str, env: dict[str, str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run(["squeue", "-h", "-j", job, "-o", "%T"], env).strip() == "RUNNING":
            return
        time.sleep(0.2)
    raise AssertionError(f"job {job} never started")


def test_steps_see_their_gpus(slurm):
    out = run(["srun", "-p", "gb200", "-N1", "--gres=gpu:2", "-J", "ixhpc-test-gpu",
               "bash", "-c", "echo $SLURM_GPUS_ON_NODE $CUDA_VISIBLE_DEVICES"], slurm)
    count, *visible = out.split()
    assert count == "2"
    if visible:  # set only where the placeholder GPU devices could be made with mknod
        assert visible == ["0,1"]


def _where_am_i():
    import submitit

    env = submitit.JobEnvironment()
    return env.hostnames, os.environ["SLURMD_NODENAME"], env.global_rank


def test_submitit_two_node_job_returns_its_hostnames(slurm, tmp_path):
    import cloudpickle
    import submitit

    # The job's Python cannot import this test module: ship the function by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit")
    executor.update_parameters(slurm_partition="gb200", nodes=2, tasks_per_node=1,
                               timeout_min=5, slurm_job_name="ixhpc-test-submitit")
    job = executor.submit(_where_am_i)
    results = sorted(job.results(), key=lambda r: r[2])
    hostnames = results[0][0]
    assert len(hostnames) == 2 and len(set(hostnames)) == 2
    assert [r[1] for r in results] == hostnames  # rank i ran on the i-th node
    assert all(r[0] == hostnames for r in results)
    assert wait_done(job.job_id, slurm)[job.job_id][0] == "COMPLETED"
    # submitit reads the state from sacct: real accounting, not UNKNOWN.
    deadline = time.monotonic() + 30
    while job.state != "COMPLETED" and time.monotonic() < deadline:
        time.sleep(1)
        job.watcher.update()
    assert job.state == "COMPLETED"


def test_a_second_cluster_comes_up_and_down_leaving_nothing(tmp_path, slurm):
    """up is idempotent and down stops exactly the pids up started, never a stranger."""
    env = {**os.environ, "IXHPC_LOCAL_CLUSTER_DIR": str(tmp_path / "c2"),
           "IXHPC_LOCAL_CLUSTER_PORT": "17810"}
    env.pop("SLURM_CONF", None)
    cli = [sys.executable, "-m", "ixhpc", "local-cluster"]

    def ixhpc(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], env=env, capture_output=True, text=True, timeout=180)

    first = ixhpc("up", "--no-link")
    assert first.returncode == 0, first.stderr
    assert "is up in" in first.stdout
    pids = _status_pids(ixhpc("status").stdout)
    assert len(pids) == 10
    again = ixhpc("up", "--no-link")
    assert again.returncode == 0 and _status_pids(ixhpc("status").stdout) == pids

    stranger = subprocess.Popen(["sleep", "60"])
    (tmp_path / "c2" / "pids" / "slurmd-gb4.pid").write_text(f"{stranger.pid}\n")
    down = ixhpc("down")
    assert down.returncode == 0
    assert stranger.poll() is None, "down killed a process it did not start"
    stranger.kill()
    stranger.wait()
    alive = [p for name, p in pids.items() if name != "slurmd-gb4" and Path(f"/proc/{p}").exists()
             and _state(p) != "Z"]
    assert alive == []
    gb4 = pids["slurmd-gb4"]  # its pid file was overwritten: stop it by hand, as a user would
    if Path(f"/proc/{gb4}").exists():
        os.kill(gb4, 15)
    assert ixhpc("status").returncode == 3


def _status_pids(text: str) -> dict[str, int]:
    return {line.split()[0]: int(line.split()[-1]) for line in text.splitlines() if "running" in line}


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
