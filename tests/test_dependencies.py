"""Job dependencies on the real local cluster: `submit --after` and `submit --merge`."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from slurm_helpers import run, sbatch, wait_done

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes/examples/sim-single-node.yaml"


def _submit(results: Path, *extra: str) -> dict:
    res = subprocess.run([sys.executable, "-m", "ixhpc", "submit", str(RECIPE), "--cluster", "local",
                          "--results", str(results), "--json", *extra], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _times(job: str, env: dict[str, str]) -> tuple[dt.datetime, dt.datetime]:
    start, end = run(["sacct", "-X", "-n", "-P", "-j", job, "-o", "Start,End"], env).split()[0].split("|")
    return dt.datetime.fromisoformat(start), dt.datetime.fromisoformat(end)


def test_after_holds_the_run_until_the_named_job_has_succeeded(slurm, tmp_path):
    before = sbatch(slurm, "-p", "mi355x", "-N1", "-o", str(tmp_path / "sleep.out"), "--wrap", "sleep 4")
    out = _submit(tmp_path, "--max-conc", "2", "--after", before)
    job = out["jobs"][0]["job_id"]
    assert wait_done(job, slurm, timeout=180)[job][0] == "COMPLETED"
    assert _times(job, slurm)[0] >= _times(before, slurm)[1]
    # The dependency belongs to this submission, not to the script `resume` reuses.
    assert "dependency" not in next(Path(out["run_dir"], "scripts").glob("*.sbatch")).read_text()


def test_merge_job_merges_every_result_once_all_jobs_have_ended(slurm, tmp_path):
    from ixhpc.results import load

    out = _submit(tmp_path, "--merge")
    merge = out["merge_job_id"]
    assert merge and wait_done(merge, slurm, timeout=240)[merge][0] == "COMPLETED"
    job = out["jobs"][0]["job_id"]
    assert _times(merge, slurm)[0] >= _times(job, slurm)[1]
    partitions = run(["sacct", "-X", "-n", "-P", "-j", f"{job},{merge}", "-o", "JobID,Partition"], slurm)
    assert dict(line.split("|") for line in partitions.split()) == {job: "mi355x", merge: "debug"}
    table = load(str(Path(out["run_dir"]) / "merged.h5"))
    assert sorted(table["conc"].tolist()) == [2, 4, 8]
    manifest = json.loads((Path(out["run_dir"]) / "manifest.json").read_text())
    assert manifest["merge_job_id"] == merge
    status = subprocess.run([sys.executable, "-m", "ixhpc", "status", out["run_dir"], "--json"],
                            capture_output=True, text=True, cwd=REPO)
    rows = {j["job_id"]: j["state"] for j in json.loads(status.stdout)["jobs"]}
    assert rows == {job: "COMPLETED", merge: "COMPLETED"}


def test_a_bad_dependency_is_one_line_and_writes_nothing(tmp_path):
    res = subprocess.run([sys.executable, "-m", "ixhpc", "submit", str(RECIPE), "--results", str(tmp_path),
                          "--after", "afterok:1;touch /tmp/x"], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "--after" in res.stderr
    assert list(tmp_path.iterdir()) == []


def test_merge_job_options_follow_the_profile():
    from ixhpc.profiles import load_profiles
    from ixhpc.submission import merge_options

    local = load_profiles()["local"]
    assert merge_options(local, "mi355x") == {"partition": "debug"}
    gpu_only = local.model_copy(update={"merge_partition": None, "account": "perf", "qos": "high",
                                        "reservation": "bench", "exclude": ["gb3", "gb4"]})
    assert merge_options(gpu_only, "gb200") == {
        "partition": "gb200", "account": "perf", "qos": "high", "exclude": "gb3,gb4",
        "additional_parameters": {"reservation": "bench"}}
    cpu = gpu_only.model_copy(update={"merge_partition": "cpu"})
    assert merge_options(cpu, "gb200") == {"partition": "cpu", "account": "perf", "qos": "high",
                                           "exclude": "gb3,gb4"}  # the GPU reservation stays behind
