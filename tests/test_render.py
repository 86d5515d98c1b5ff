"""Rendered job scripts: golden files, `bash -n`, shellcheck, and hostile recipe values."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ixhpc import debug, render, runs
from ixhpc.profiles import get_profile
from ixhpc.sweep import Filters

from hostile import HOSTILE, PWNED

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden" / "scripts"
RUN_DIR = Path("/scratch/ixhpc-runs/golden-run")


def _plans(recipe: Path, cluster: str, **filters):
    target = runs.RunTarget(recipe, get_profile(cluster), Filters(**filters))
    return runs.plan(target, RUN_DIR, RUN_DIR.name)


def _normalise(text: str) -> str:
    # Machine-specific paths: the Python that runs ixhpc, the checkout's recipes, the home.
    return (text.replace(sys.executable, "<python>").replace(str(REPO), "<repo>")
            .replace(str(Path.home()), "<home>"))


CASES = {
    "gb200-disagg": (REPO / "recipes/examples/gb200-dsr1-dynamo-sglang.yaml", "gb200-nvl72", {}),
    "mi355x-single": (REPO / "recipes/examples/mi355x-dsr1-sglang.yaml", "mi355x",
                      {"seq_lens": ((1024, 1024),)}),
    "local-sim-disagg": (REPO / "recipes/examples/sim-disagg.yaml", "local", {}),
    "local-sim-single": (REPO / "recipes/examples/sim-single-node.yaml", "local", {}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_script_matches_its_golden_file(case):
    recipe, cluster, filters = CASES[case]
    plan = _plans(recipe, cluster, **filters)[0]
    text = _normalise(render.render(plan))
    golden = GOLDEN / f"{case}.sbatch"
    if os.environ.get("IXHPC_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text(), f"re-render with IXHPC_UPDATE_GOLDEN=1 and review {golden}"


def _all_scripts(tmp_path: Path) -> list[Path]:
    """Every job script of the cases, and the `ixhpc debug` launcher and rcfile of each job
    (in the container and, with --host, beside it)."""
    out = []
    for case, (recipe, cluster, filters) in CASES.items():
        for i, plan in enumerate(_plans(recipe, cluster, **filters)):
            path = tmp_path / f"{case}-{i}.sbatch"
            path.write_text(render.render(plan))
            out.append(path)
            for host in (False, True):
                session = debug.session(plan, tmp_path / f"{case}-{i}-debug-{host}", host)
                session.run_dir.mkdir()
                debug.write(session)
                out += [session.run_dir / debug.LAUNCHER, session.run_dir / debug.ROLES]
    return out


def test_every_rendered_script_parses_with_bash_n(tmp_path):
    for script in _all_scripts(tmp_path):
        res = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert res.returncode == 0, f"{script}: {res.stderr}"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is installed by `make deps`")
def test_every_rendered_script_is_shellcheck_clean(tmp_path):
    scripts = [str(s) for s in _all_scripts(tmp_path)]
    res = subprocess.run(["shellcheck", "-s", "bash", *scripts], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-4000:]


def _hostile_recipe(tmp_path: Path, value: str) -> Path:
    import yaml

    text = (REPO / "recipes/examples/sim-single-node.yaml").read_text()
    doc = yaml.safe_load(text)
    entry = doc["sim-mi355x-single"]
    entry["image"] = value or "x"
    entry["model"] = value or "x"
    entry["ixhpc"]["engine-args"] = {"server": [value]}
    entry["ixhpc"]["env"] = {"HOSTILE_NOTE": value}
    entry["ixhpc"]["model-path"] = value or "x"
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_recipe_values_stay_data(tmp_path, value):
    """Every field that reaches the script carries the value as one quoted word: parsing the
    script runs nothing, and the value is still there verbatim after the shell has read it."""
    if os.path.exists(PWNED):
        os.unlink(PWNED)
    plan = _plans(_hostile_recipe(tmp_path, value), "local")[0]
    script = tmp_path / "job.sbatch"
    script.write_text(render.render(plan))
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    # The recipe's env is a word of the server's srun line, not a variable of the script:
    # evaluate only that start_role call (it spans lines), printing the words it would run.
    text = script.read_text()
    assert "HOSTILE_NOTE=" not in text[:text.index("\nCONCURRENCIES=(")]
    start = text.index("start_role server ")
    call = text[start:text.index("\nwait_healthy", start)]
    out = subprocess.run(["bash", "-c", "start_role() { shift 2; printf '%s\\0' \"$@\"; }\n" + call],
                         capture_output=True, text=True)
    assert f"HOSTILE_NOTE={value}" in out.stdout.split("\0")
    assert not os.path.exists(PWNED)


def test_secret_looking_env_in_a_recipe_is_refused(tmp_path):
    import yaml

    from ixhpc.errors import UserError

    doc = yaml.safe_load((REPO / "recipes/examples/sim-single-node.yaml").read_text())
    doc["sim-mi355x-single"]["ixhpc"]["env"] = {"HF_TOKEN": "hf_abc"}
    path = tmp_path / "secret.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(UserError, match="HF_TOKEN.*secret"):
        _plans(path, "local")


def _packed_recipe(tmp_path: Path, framework: str) -> Path:
    """Two TP2 prefill and two TP2 decode workers on mi355x's 8-GPU nodes: two per node."""
    import yaml

    doc = {"packed-" + framework: {
        "image": "lmsysorg/sglang:v0.5.9-rocm700-mi35x", "model": "deepseek-ai/DeepSeek-R1-0528",
        "model-prefix": "dsr1", "precision": "fp8", "framework": framework, "runner": "mi355x-disagg",
        "multinode": True, "disagg": True,
        "seq-len-configs": [{"isl": 1024, "osl": 1024, "search-space": [{
            "conc-list": [8],
            "prefill": {"num-worker": 2, "tp": 2, "ep": 1, "dp-attn": False},
            "decode": {"num-worker": 2, "tp": 2, "ep": 1, "dp-attn": False}}]}]}}
    path = tmp_path / f"packed-{framework}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _ports(script: str, port_base: int) -> dict[str, int]:
    """Every NAME_PORT / NAME_KV_PORT the script sets, evaluated by bash."""
    lines = re.findall(r"^[A-Z0-9_]+_PORT=\$\(\(.*\)\)$", script, re.M)
    names = [line.split("=")[0] for line in lines]
    out = subprocess.run(["bash", "-c", f"PORT_BASE={port_base}\n" + "\n".join(lines) + "\n" +
                          "".join(f'echo "{n} ${n}"\n' for n in names)], capture_output=True, text=True)
    return {n: int(v) for n, v in (line.split() for line in out.stdout.splitlines())}


@pytest.mark.parametrize("framework", ["sglang", "dynamo-sglang", "dynamo-vllm"])
def test_workers_packed_on_one_node_get_distinct_ports(tmp_path, framework):
    plan = _plans(_packed_recipe(tmp_path, framework), "mi355x")[0]
    script = render.render(plan)
    workers = [r for r in plan.roles if r.name.startswith(("prefill", "decode"))]
    assert sorted(r.node_index for r in workers) == [0, 0, 1, 1]
    ports = _ports(script, 20000)
    assert len(set(ports.values())) == len(ports)
    # Two jobs never share a port either: blocks follow each other.
    assert max(ports.values()) < min(_ports(script, 20040).values())
    joined = re.sub(r"\s*\\\n\s*", " ", script)
    for r in workers:
        line = next(x for x in joined.splitlines() if f"--job-name={r.name} " in x)
        if framework.endswith("sglang") and r.name.startswith("prefill"):
            assert f'--disaggregation-bootstrap-port "${{{r.var}_KV_PORT}}"' in line
            if framework == "sglang":  # the router names each prefill worker's bootstrap port
                assert f'"http://${{{r.var}_HOST}}:${{{r.var}_PORT}}" "${{{r.var}_KV_PORT}}"' in joined
        if framework.endswith("vllm"):
            assert f'"VLLM_NIXL_SIDE_CHANNEL_PORT=${{{r.var}_KV_PORT}}"' in line
