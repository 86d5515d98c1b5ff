"""A disaggregated point whose prefill and decode `hardware` differ: each pool on the partition
serving its hardware, ONE Slurm heterogeneous job submitted with `sbatch` itself (issue 16,
deliverable 4). The cluster-marked test runs it on the local cluster's gb200 and mi355x
partitions with the simulated engine, from submit to HDF5 results."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ixhpc import render, runs, slurm, submission
from ixhpc.errors import PlanError
from ixhpc.profiles import get_profile
from ixhpc.sweep import DisaggPoint, Filters

from slurm_helpers import run as slurm_run

REPO = Path(__file__).resolve().parents[1]

HETERO = """\
sim-hetero:
  image: none
  model: sim/dsr1-like
  model-prefix: simdsr1
  precision: fp4
  framework: sim
  runner: gb200-multinode
  multinode: true
  disagg: true
  kv-p2p-transfer: nixl
  router: {name: sim-router, version: "1.0"}
  scenarios:
    fixed-seq-len:
    - isl: 128
      osl: 64
      search-space:
      - conc-list: [4, 16]
        prefill: {hardware: PREFILL_HW, num-worker: 1, tp: 4, ep: 1, dp-attn: false}
        decode: {hardware: mi355x, num-worker: 2, tp: 4, ep: 1, dp-attn: false}
  ixhpc:
    time-limit: 15
    health-timeout: 90
    benchmark:
      num-prompts-factor: 4
    sim:
      gpu: GB200
      max-batch: 128
"""


def _recipe(tmp_path: Path, prefill_hw: str = "gb200") -> Path:
    path = tmp_path / "hetero.yaml"
    path.write_text(HETERO.replace("PREFILL_HW", prefill_hw))
    return path


def _plan(tmp_path: Path, prefill_hw: str = "gb200"):
    target = runs.RunTarget(_recipe(tmp_path, prefill_hw), get_profile("local"), Filters())
    return runs.plan(target, tmp_path / "run", "run")


def test_each_pool_runs_on_the_partition_serving_its_hardware(tmp_path: Path) -> None:
    (plan,) = _plan(tmp_path)
    point = plan.points[0]
    assert isinstance(point, DisaggPoint) and point.pools is not None
    assert [s.partition for s in point.pools] == ["gb200", "mi355x"]
    assert point.partition == "gb200+mi355x"
    pre, dec = point.topology.roles if point.topology else ()
    assert (pre.gpus_per_node, pre.nodes, pre.het_group) == (4, 1, 0)
    assert (dec.gpus_per_node, dec.nodes, dec.het_group) == (8, 1, 1)   # 2 x tp4 packed on one 8-GPU node
    assert plan.metadata(4)["prefill_partition"] == "gb200" and plan.metadata(4)["decode_partition"] == "mi355x"


def test_the_script_is_one_heterogeneous_job_with_every_srun_in_its_group(tmp_path: Path) -> None:
    (plan,) = _plan(tmp_path)
    text = render.render(plan)
    directives = [line for line in text.splitlines() if line.startswith("#SBATCH")]
    split = directives.index("#SBATCH hetjob")
    first, second = directives[:split], directives[split + 1:]
    assert "#SBATCH --partition=gb200" in first and "#SBATCH --nodes=1" in first
    assert "#SBATCH --gpus-per-node=4" in first and any(d.startswith("#SBATCH --job-name=") for d in first)
    assert "#SBATCH --partition=mi355x" in second and "#SBATCH --gpus-per-node=8" in second
    assert not any(d.startswith(("#SBATCH --job-name", "#SBATCH --output")) for d in second)
    assert '"${SLURM_JOB_NODELIST_HET_GROUP_1}"' in text
    sruns = [line.strip() for line in text.splitlines() if line.strip().startswith("srun ")]
    assert sruns and all(re.search(r"--het-group=[01] ", s) for s in sruns)
    decode = [s for s in sruns if ("--job-name=decode" in s or "--het-group=1" in s)
              and "--job-name=power-" not in s]  # the group's GPU power sampler is a step of its own
    assert len(decode) == 2 and all("--het-group=1" in s and "--relative=0" in s for s in decode)
    assert "heterogeneous job of cluster local: prefill 1 node(s) on partition gb200, decode 1 node(s) " \
           "on partition mi355x" in text
    subprocess.run(["bash", "-n"], input=text, text=True, check=True)
    script = tmp_path / "job.sbatch"
    script.write_text(text)
    assert submission.script_options(script)["partition"] == "gb200"  # what resume resubmits


def test_plan_json_gives_each_component_and_each_process_its_partition(tmp_path: Path) -> None:
    res = _ixhpc("render", str(_recipe(tmp_path)), "--cluster", "local", "--plan-json")
    assert res.returncode == 0, res.stderr
    (job,) = json.loads(res.stdout)["jobs"]
    assert [(c["het_group"], c["partition"], c["nodes"], c["first_node"], c["sbatch"]["gpus-per-node"])
            for c in job["components"]] == [(0, "gb200", 1, 0, "4"), (1, "mi355x", 1, 1, "8")]
    assert job["sbatch"] == job["components"][0]["sbatch"]
    placed = {p["role"]: (p["het_group"], p["partition"], p["node_index"], p["group_node_index"])
              for p in job["processes"]}
    assert placed == {"prefill-0": (0, "gb200", 0, 0), "router": (0, "gb200", 0, 0),
                      "decode-0": (1, "mi355x", 1, 0), "decode-1": (1, "mi355x", 1, 0)}
    same = json.loads(_ixhpc("render", str(_recipe(tmp_path, "mi355x")), "--cluster", "local",
                             "--plan-json").stdout)["jobs"][0]
    assert [(c["het_group"], c["partition"]) for c in same["components"]] == [(None, same["sbatch"]["partition"])]
    assert {p["het_group"] for p in same["processes"]} == {None}


def test_a_hardware_no_partition_serves_is_a_plan_error(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="prefill hardware 'h100' and decode hardware 'mi355x' differ"):
        _plan(tmp_path, "h100")


def test_same_hardware_on_both_pools_is_an_ordinary_job(tmp_path: Path) -> None:
    (plan,) = _plan(tmp_path, "mi355x")
    assert not plan.het_sbatch and "hetjob" not in render.render(plan)


def test_hetjob_submission_goes_through_sbatch_with_only_the_missing_options(tmp_path: Path, monkeypatch) -> None:
    (plan,) = _plan(tmp_path)
    script = tmp_path / "job.sbatch"
    script.write_text(render.render(plan))
    assert submission.is_hetjob(script)
    calls: list[list[str]] = []
    monkeypatch.setattr(slurm, "run", lambda argv, retries=0, timeout=0: calls.append(list(argv)) or "77;local\n")
    opts = {**submission.script_options(script), "dependency": "afterok:5"}
    assert submission.submit_hetjob(script, opts) == "77"
    assert calls == [["sbatch", "--parsable", "--dependency=afterok:5", str(script.resolve())]]


def test_component_zero_stands_for_a_heterogeneous_job_in_states(monkeypatch) -> None:
    out = {"sacct": "334+0|COMPLETED|None|0:0|gb1|s|e\n334+1|COMPLETED|None|0:0|mi1|s|e\n",
           "squeue": "335+0|RUNNING|None|gb2|s\n335+1|RUNNING|None|mi2|s\n"}
    monkeypatch.setattr(slurm, "run", lambda argv, retries=0, timeout=0: out[argv[0]])
    found = slurm.states(["334", "335"])
    assert set(found) == {"334", "335"}
    assert found["334"].state == "COMPLETED" and found["334"].nodes == "gb1,mi1"   # every component's
    assert found["335"].state == "RUNNING" and found["335"].nodes == "gb2,mi2"


# ---------------------------------------------------------------- on the local cluster


def _ixhpc(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ixhpc", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


@pytest.mark.cluster
def test_a_hetero_disaggregated_point_runs_as_one_hetjob_across_gb200_and_mi355x(slurm, tmp_path):
    from ixhpc.results import load

    res = _ixhpc("submit", str(_recipe(tmp_path)), "--cluster", "local", "--results",
                 str(tmp_path / "results"), "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    (job,) = out["jobs"]
    assert job["job_id"].isdigit()
    manifest = json.loads((Path(out["run_dir"]) / "manifest.json").read_text())
    assert manifest["jobs"][0]["attempts"][-1]["job_id"] == job["job_id"]
    deadline = time.monotonic() + 300
    while True:
        status = json.loads(_ixhpc("status", out["run_dir"], "--json").stdout)["jobs"][0]
        if status["state"] in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL") or \
                time.monotonic() > deadline:
            break
        time.sleep(2)
    assert status["state"] == "COMPLETED", status
    assert status["points_done"] == status["points_total"] == 2
    listed = slurm_run(["scontrol", "show", "hostnames", status["nodes"]], slurm).split()
    assert sorted(n[:2] for n in listed) == ["gb", "mi"], status   # the nodes of both components
    steps = slurm_run(["sacct", "-n", "-P", "-j", job["job_id"], "-o", "JobID,JobName,NodeList,Partition"],
                      slurm)
    where = {f[1]: (f[0], f[2]) for f in (line.split("|") for line in steps.splitlines())}
    assert where["prefill-0"][0].startswith(f"{job['job_id']}+0.") and where["prefill-0"][1].startswith("gb")
    assert where["router"][1] == where["prefill-0"][1]
    for name in ("decode-0", "decode-1"):
        assert where[name][0].startswith(f"{job['job_id']}+1.") and where[name][1].startswith("mi")
    frames = [load(str(p)) for p in (Path(out["run_dir"]) / "results").glob("*.h5")]
    assert sorted(int(f["conc"].iloc[0]) for f in frames) == [4, 16]
    for f in frames:
        row = f.iloc[0]
        assert (row["prefill_partition"], row["decode_partition"]) == ("gb200", "mi355x")
        assert (row["prefill_hardware"], row["decode_hardware"]) == ("gb200", "mi355x")
        assert row["kv_p2p_transfer"] == "nixl" and row["router_name"] == "sim-router"
        assert int(row["gpus"]) == 12 and int(row["decode_gpus"]) == 8 and row["tput_per_gpu"] > 0
