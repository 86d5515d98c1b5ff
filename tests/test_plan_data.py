"""The plan as data (`ixhpc render --plan-json`): every process of every job."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ixhpc import engines, plan_data, runs
from ixhpc.profiles import get_profile
from ixhpc.sweep import Filters

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "recipes/examples"


def _plan_json(recipe: Path, *args: str, cwd: Path = REPO) -> dict:
    out = subprocess.run([sys.executable, "-m", "ixhpc", "render", str(recipe), "--plan-json", *args],
                         capture_output=True, text=True, cwd=cwd, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_every_process_with_its_program_env_origin_gpus_and_ports(tmp_path: Path) -> None:
    doc = _plan_json(EXAMPLES / "gb200-dsr1-dynamo-sglang.yaml", "--cluster", "gb200-nvl72", cwd=tmp_path)
    assert (doc["format"], doc["version"]) == (plan_data.FORMAT, plan_data.VERSION)
    assert not (tmp_path / "results").exists()                 # nothing written
    job = doc["jobs"][0]
    procs = {p["role"]: p for p in job["processes"]}
    assert {"etcd", "nats", "router", "prefill-0", "decode-0"} <= set(procs)
    prefill = procs["prefill-0"]
    assert prefill["argv"][:3] == ["python3", "-m", "dynamo.sglang"] and prefill["worker"] == 0
    assert "--disaggregation-bootstrap-port" in prefill["argv"]
    assert "${PREFILL_0_KV_PORT}" in prefill["argv"] and prefill["kv_port_offset"] == 20 + prefill["port_offset"]
    origins = {e["name"]: e["origin"] for e in prefill["env"]}
    assert origins["DYN_SYSTEM_PORT"] == "engine" and origins["ETCD_ENDPOINTS"] == "engine"
    assert all(o == "recipe" for n, o in origins.items() if n == "NCCL_MNNVL_ENABLE")
    assert procs["etcd"]["gpus_per_node"] == 0 and procs["router"]["health_path"] == "/health"
    steps = job["benchmark"]
    assert [s["conc"] for s in steps] == job["concurrencies"]
    first = steps[0]["argv"]
    assert first[first.index("--max-concurrency") + 1] == str(steps[0]["conc"])
    assert first[first.index("--num-prompts") + 1] == str(10 * steps[0]["conc"])


def test_the_document_is_the_plan(tmp_path: Path) -> None:
    """Each process's env + files + argv rebuild exactly the role's planned argv."""
    target = runs.RunTarget(EXAMPLES / "mi355x-dsr1-sglang.yaml", get_profile("mi355x"), Filters())
    plans = runs.plan(target, tmp_path / "run", "run")
    recipe_env = sorted({n for p in plans for pt in p.points for n in pt.ixhpc.env})
    doc = plan_data.document("run", "mi355x", plans, recipe_env, ["CUDA_VISIBLE_DEVICES"])
    assert len(doc["jobs"]) == len(plans)
    for plan, job in zip(plans, doc["jobs"]):
        for role, proc in zip(plan.roles, job["processes"]):
            built = engines.unbuild(role.argv)
            assert proc["argv"] == [plan_data.shown(a) for a in built.program]
            assert [(e["name"], e["value"]) for e in proc["env"]] == [(k, plan_data.shown(v)) for k, v in built.env]
            rebuilt = (["env", *(f"{k}={v}" for k, v in built.env)] if built.env else [])
            for path, content in built.files:
                rebuilt += [*engines._WRITER, content, path]
            assert rebuilt + list(built.program) == role.argv
        assert any(e["origin"] == "recipe" for p in job["processes"] for e in p["env"])
    json.dumps(doc)  # plain JSON


def test_unbuild_takes_build_apart() -> None:
    argv = ["env", "A=1", "B=x=y", *engines._WRITER, "k: v", "/tmp/c.yaml", "prog", "--flag", "-x=1"]
    built = engines.unbuild(argv)
    assert built.env == (("A", "1"), ("B", "x=y"))
    assert built.files == (("/tmp/c.yaml", "k: v"),) and built.program == ("prog", "--flag", "-x=1")
    assert engines.unbuild(["prog"]).program == ("prog",)
