"""A recipe's `ixhpc.env`: it reaches the role and benchmark steps only, never the job's shell.

The job script's own variables (run-directory paths, ports, ...) live in a namespace a
recipe cannot reach: the recipe's env is an `env NAME=VALUE` prefix of each step's command.
Names that would still be dangerous or meaningless in a step's environment, and every name
the job script defines itself, are located `validate` errors.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from ixhpc import debug, placement, render, runs
from ixhpc.cli import main
from ixhpc.profiles import get_profile
from ixhpc.recipe import validate_file
from ixhpc.rundir import Layout
from ixhpc.sweep import Filters

from hostile import HOSTILE, PWNED

REPO = Path(__file__).resolve().parents[1]
SINGLE = REPO / "recipes/examples/sim-single-node.yaml"
DISAGG = REPO / "recipes/examples/sim-disagg.yaml"
ENTRY = "sim-mi355x-single"


def _recipe(tmp_path: Path, env: dict[str, str], source: Path = SINGLE) -> Path:
    doc = yaml.safe_load(source.read_text())
    next(iter(doc.values()))["ixhpc"]["env"] = env
    path = tmp_path / "env.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _env_line(path: Path, name: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1)
                if line.strip().startswith(f"{name}:"))


# ------------------------------------------------------------------ forbidden names

FORBIDDEN = [
    # what finds and loads code
    "PATH", "HOME", "SHELL", "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT",
    "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE",
    # what shells read when they start
    "BASH_ENV", "ENV", "IFS",
    # Slurm's, the container runtime's, ixhpc's
    "SLURM_JOB_ID", "SLURM_CONF", "SRUN_CPUS_PER_TASK", "SBATCH_PARTITION", "ENROOT_REMAP_ROOT",
    "PYXIS_X", "IXHPC_SRC", "IXHPC_NOTE_X",
    # the job script's own variables, from the one place each is named
    *Layout.VARIABLES, *placement.SCRIPT_VARIABLES, *placement.JOB_VARIABLES,
    "SERVER_HOST", "SERVER_PORT", "ROUTER_PORT", "PREFILL_0_KV_PORT", "DECODE_11_HOST", "NATS_PORT",
]


@pytest.mark.parametrize("name", sorted(set(FORBIDDEN)))
def test_a_name_the_job_uses_itself_is_a_located_validate_error(tmp_path, capsys, name):
    path = _recipe(tmp_path, {"MY_ENGINE_KNOB": "1", name: "/tmp/elsewhere"})
    assert main(["validate", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert err.splitlines() == [
        f"{path}:{_env_line(path, name)}: {ENTRY}.ixhpc.env.{name}: expected a name the job does "
        f"not use itself ({_reason(err)}), found {name!r}"]


def _reason(err: str) -> str:
    m = re.search(r"itself \((.+)\), found", err)
    assert m, err
    return m.group(1)


@pytest.mark.parametrize("name", ["MY_ENGINE_KNOB", "SGLANG_USE_AITER", "NCCL_DEBUG", "path",
                                  "PYTHONUNBUFFERED", "CUDA_VISIBLE_DEVICES", "HF_HOME",
                                  "LDFLAGS", "MY_PATH", "SERVER_HOSTNAME", "NUM_NODES_X"])
def test_ordinary_engine_settings_are_allowed(tmp_path, name):
    assert validate_file(_recipe(tmp_path, {name: "1"})) == []


def test_the_job_variables_list_covers_every_variable_the_scripts_set(tmp_path):
    """Every upper-case name a rendered job script or `ixhpc debug` file assigns is one the
    validator refuses: the list cannot fall behind the templates."""
    assigned: set[str] = set()
    for n, (recipe, cluster) in enumerate(((SINGLE, "local"), (DISAGG, "local"), (
            REPO / "recipes/examples/gb200-dsr1-dynamo-sglang.yaml", "gb200-nvl72"))):
        for i, plan in enumerate(runs.plan(runs.RunTarget(recipe, get_profile(cluster), Filters()),
                                           tmp_path / f"run-{n}", "r")):
            texts = [render.render(plan)]
            session = debug.session(plan, tmp_path / f"debug-{n}-{i}", False)
            session.run_dir.mkdir(parents=True)
            debug.write(session)
            texts += [(session.run_dir / f).read_text() for f in (debug.LAUNCHER, debug.ROLES)]
            for text in texts:
                joined = re.sub(r"\\\n", " ", text)  # a wrapped srun line is one statement
                assigned |= set(re.findall(r"^\s*(?:export\s+|local\s+)?([A-Z][A-Z0-9_]*)=", joined, re.M))
                assigned |= set(re.findall(r"(?:declare -A|mapfile -t|for) ([A-Z][A-Z0-9_]*)", joined))
    assert {"RUN_DIR", "POINT_DIR", "CONC", "SERVER_PORT", "PREFILL_0_HOST", "NODES"} <= assigned
    for name in sorted(assigned):
        errors = validate_file(_recipe(tmp_path, {name: "x"}))
        assert len(errors) == 1 and "expected a name the job does not use itself" in errors[0], name


# ------------------------------------------------------------------ the namespace


def test_the_recipe_env_is_on_each_step_never_in_the_scripts_shell(tmp_path):
    path = _recipe(tmp_path, {"MY_ENGINE_KNOB": "a b'c", "SGLANG_USE_AITER": "1"}, DISAGG)
    plan = runs.plan(runs.RunTarget(path, get_profile("local"), Filters()), tmp_path / "run", "run")[0]
    script = render.render(plan)
    values = script[:script.index("\nCONCURRENCIES=(")]
    exports = [ln for ln in script.splitlines() if ln.lstrip().startswith("export ")]
    # The one export is ixhpc's own stand-ins line (local profile), never a recipe value.
    assert "MY_ENGINE_KNOB=" not in values and all("engine stand-ins" in ln for ln in exports)
    assert not any("MY_ENGINE_KNOB" in ln or "SGLANG_USE_AITER" in ln for ln in exports)
    joined = re.sub(r"\s*\\\n\s*", " ", script)
    steps = [line for line in joined.splitlines() if " srun " in f" {line}" and "--job-name=" in line
             and "--job-name=power-" not in line]  # ixhpc's own host-side sampler steps: no recipe env
    assert len(steps) == len(plan.roles) + 1  # every role and the benchmark client
    for line in steps:
        assert "env 'MY_ENGINE_KNOB=a b'\"'\"'c' SGLANG_USE_AITER=1 " in line, line
    # Containers: the values travel inside the step's command, not as --container-env names.
    assert plan.container.env_names == list(placement.SECRET_PASSTHROUGH)


def test_the_recipe_env_comes_before_the_engines_own_env():
    """Merged into one `env` prefix, so the program after it is still found (and an engine's
    own setting of a name wins, being later)."""
    argv = ["env", "A=engine", "python", "-m", "x"]
    assert placement.with_env([("A", "recipe"), ("B", "2")], argv) == \
        ["env", "A=recipe", "B=2", "A=engine", "python", "-m", "x"]
    assert placement.with_env([], argv) == argv
    assert placement.with_env([("B", "2")], ["etcd"]) == ["env", "B=2", "etcd"]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_env_value_stays_data_on_the_step(tmp_path, value):
    """The step's command, evaluated as the job's shell does, hands `env` the value verbatim."""
    if os.path.exists(PWNED):
        os.unlink(PWNED)
    plan = runs.plan(runs.RunTarget(_recipe(tmp_path, {"MY_ENGINE_KNOB": value}), get_profile("local"),
                                    Filters()), tmp_path / "run", "run")[0]
    script = render.render(plan)
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    for command in (plan.roles[0].command, plan.bench_command):
        assert command in script
        out = subprocess.run(["bash", "-c", "srun() { printf '%s\\0' \"$@\"; }\n" + command],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        words = out.stdout.split("\0")
        assert words[words.index("env") + 1] == f"MY_ENGINE_KNOB={value}"
    assert not os.path.exists(PWNED)


# ------------------------------------------------------------------ on the local cluster


def _engine_environ(job_id: str, timeout: float = 90) -> dict[str, str]:
    """The environment of the job's simulated engine process (a host process under `none`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmd = (proc / "cmdline").read_bytes().split(b"\0")
                raw = (proc / "environ").read_bytes()
            except OSError:
                continue
            env = dict(e.decode(errors="replace").partition("=")[::2] for e in raw.split(b"\0") if e)
            if (cmd[0] != b"srun" and b"serve" in cmd and any(b"ixhpc.sim" in c for c in cmd)
                    and env.get("SLURM_JOB_ID") == job_id):
                return env
        time.sleep(0.2)
    raise AssertionError(f"no simulated engine of job {job_id} found")


@pytest.mark.cluster
def test_an_allowed_env_var_reaches_the_engine_step_in_a_real_job(slurm, tmp_path):
    from test_jobs_e2e import submit, wait_status

    value = "a b'c $(touch /tmp/ixhpc-pwned)"
    path = _recipe(tmp_path, {"MY_ENGINE_KNOB": value, "SGLANG_USE_AITER": "1"})
    doc = yaml.safe_load(path.read_text())
    doc[ENTRY]["seq-len-configs"][0]["search-space"][0].update({"conc-start": 2, "conc-end": 2})
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    if os.path.exists(PWNED):
        os.unlink(PWNED)
    out = submit(path, tmp_path / "results")
    env = _engine_environ(out["jobs"][0]["job_id"])
    assert env["MY_ENGINE_KNOB"] == value and env["SGLANG_USE_AITER"] == "1"
    # The job itself is unchanged by it: it completes, its result where the run keeps it.
    job = wait_status(out["run_dir"])["jobs"][0]
    assert job["state"] == "COMPLETED", job
    assert list((Path(out["run_dir"]) / Layout.RESULTS).glob("*.h5"))
    assert not os.path.exists(PWNED)
