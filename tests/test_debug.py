"""`ixhpc debug`: the point's resources from salloc and a ready shell on its first node.

The interactive tests drive a real terminal with tmux (send-keys / capture-pane) against the
local Slurm cluster: the shell comes up on an allocated node, the role script is in its
working directory, the roles start and answer their health checks through it, the benchmark
client runs, and leaving the shell releases the allocation.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from hostile import HOSTILE, PWNED
from slurm_helpers import run, wait_done

REPO = Path(__file__).resolve().parents[1]
SINGLE = REPO / "recipes/examples/sim-single-node.yaml"
DISAGG = REPO / "recipes/examples/sim-disagg.yaml"
PROMPT = re.compile(r"\[ixhpc-debug (\S+) job (\d+)\]")


class Terminal:
    """One tmux pane running bash, on a private tmux server (never the user's)."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.socket = f"ixhpc-test-{os.getpid()}"
        self.env = env
        self._tmux("new-session", "-d", "-s", "t", "-x", "220", "-y", "50", "-c", str(cwd),
                   "bash --norc --noprofile")
        self._tmux("set-option", "-g", "history-limit", "20000")

    def _tmux(self, *args: str) -> str:
        res = subprocess.run(["tmux", "-L", self.socket, *args], env=self.env, capture_output=True,
                             text=True, timeout=30)
        assert res.returncode == 0, f"tmux {args}: {res.stderr}"
        return res.stdout

    def type(self, line: str) -> None:
        self._tmux("send-keys", "-t", "t", "-l", line)
        self._tmux("send-keys", "-t", "t", "Enter")

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-J", "-t", "t", "-S", "-20000")

    def wait_for(self, pattern: str | re.Pattern, timeout: float = 60, after: int = 0) -> re.Match:
        """The first match of ``pattern`` in the pane text after offset ``after``."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            match = re.compile(pattern).search(text, after)
            if match:
                return match
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not on the terminal after {timeout} s:\n{text[-3000:]}")
            time.sleep(0.3)

    def run(self, line: str, done: str, timeout: float = 60) -> re.Match:
        """Type ``line`` and wait for ``done`` in what follows it (a pattern the typed line
        itself cannot match)."""
        start = len(self.screen())
        self.type(line)
        return self.wait_for(done, timeout, after=max(0, start - 200))

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], env=self.env, capture_output=True)


@pytest.fixture
def terminal(slurm, tmp_path):
    if shutil.which("tmux") is None:
        pytest.skip("tmux is installed by `make deps`")
    env = {**slurm, "PS1": "$ ", "PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    term = Terminal(env, tmp_path)
    yield term
    term.close()


def _srun_blocks(text: str) -> set[str]:
    """Every srun command of a script, continuation lines joined and spaces collapsed."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return {" ".join(m.group(0).split()) for m in re.finditer(r"srun --overlap [^\n]*", joined)}


def _open_debug_shell(terminal: Terminal, recipe: Path, runs: Path, *extra: str) -> tuple[str, str, Path]:
    terminal.type(f"{sys.executable} -m ixhpc debug {recipe} --results {runs} {' '.join(extra)}; "
                  f"echo DEBUG-EXIT=$?")
    node, job = terminal.wait_for(PROMPT, timeout=90).groups()
    cwd = Path(terminal.run('echo "CWD=$PWD"', r"CWD=(/\S+)").group(1))
    return node, job, cwd


def _leave(terminal: Terminal, job: str, slurm: dict[str, str]) -> None:
    terminal.run("exit", r"DEBUG-EXIT=0", timeout=60)
    # salloc has returned; the job leaves squeue once Slurm has cleaned up (wait_done polls).
    assert wait_done(job, slurm, timeout=30)[job][0] == "COMPLETED"


def _refused(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2)
    except (urllib.error.URLError, OSError):
        return True
    return False


@pytest.mark.cluster
def test_debug_shell_on_an_allocated_node_runs_the_roles_and_exit_releases_it(terminal, slurm, tmp_path):
    node, job, cwd = _open_debug_shell(terminal, SINGLE, tmp_path / "runs")
    # The shell is on a node of the allocation the job's partition gives (mi355x: mi1, mi2).
    assert node in ("mi1", "mi2")
    assert run(["squeue", "-h", "-j", job, "-o", "%N %P %T"], slurm).split() == [node, "mi355x", "RUNNING"]
    assert terminal.run('echo "ON=$SLURMD_NODENAME JOB=$SLURM_JOB_ID"', r"ON=(\S+) JOB=(\d+)").groups() == (node, job)
    # The role script sits in the shell's working directory and holds the job's exact commands.
    assert cwd.parent == tmp_path / "runs" and cwd.name.startswith("debug-sim-single-node-")
    terminal.run("ls ixhpc-roles.sh && echo listed $((6 * 7))", r"listed 42")
    job_script = next((cwd / "scripts").glob("*.sbatch")).read_text()
    assert _srun_blocks(job_script) <= _srun_blocks((cwd / "ixhpc-roles.sh").read_text())
    # Roles one by one: the server starts, answers its health check, the client runs.
    url = terminal.run("ixhpc_start server && ixhpc_health", r"server is healthy at (\S+)", 90).group(1)
    out = Path(terminal.run("ixhpc_bench 2", r"concurrency 2 done: (\S+)", 90).group(1))
    result = json.loads(out.read_text())
    assert result["summary"]["completed"] > 0 and result["summary"]["max_concurrency"] == 2
    assert len(list((cwd / "results").glob("*.h5"))) == 1   # ingested as the job would
    _leave(terminal, job, slurm)
    assert _refused(url)  # the server went with the allocation


@pytest.mark.cluster
def test_debug_shell_for_a_disaggregated_point_starts_roles_on_their_nodes(terminal, slurm, tmp_path):
    node, job, cwd = _open_debug_shell(terminal, DISAGG, tmp_path / "runs")
    nodes = run(["squeue", "-h", "-j", job, "-o", "%N"], slurm).strip()
    hosts = run(["scontrol", "show", "hostnames", nodes], slurm).split()
    assert len(hosts) == 3 and node == hosts[0] and all(h.startswith("gb") for h in hosts)
    terminal.run("for r in prefill-0 decode-0 decode-1 router; do ixhpc_start $r; done; ixhpc_health "
                 "&& echo healthy $((2 + 2))", r"healthy 4", 120)
    # Each worker step ran on its planned node: the step list names them.
    steps = run(["squeue", "-h", "-s", "-j", job, "-o", "%j %N"], slurm)
    placed = dict(line.split() for line in steps.splitlines() if line.split()[0] != "debug-shell")
    assert placed == {"prefill-0": hosts[0], "decode-0": hosts[1], "decode-1": hosts[2], "router": hosts[0]}
    terminal.run("ixhpc_bench 4", r"concurrency 4 done: (\S+)", 120)
    _leave(terminal, job, slurm)


@pytest.mark.cluster
def test_debug_shell_for_a_heterogeneous_job_allocates_both_partitions(terminal, slurm, tmp_path):
    """prefill on gb200, decode on mi355x: one `salloc ... : ...` allocation, each role's srun in
    its own het group, the shell on component 0's node."""
    from test_hetjob import _recipe

    node, job, cwd = _open_debug_shell(terminal, _recipe(tmp_path), tmp_path / "runs", "--cluster", "local")
    comps = run(["squeue", "-h", "-j", job, "-o", "%i %P %N"], slurm).split("\n")
    where = {f[0]: (f[1], f[2]) for f in (line.split() for line in comps if line.strip())}
    assert where[f"{job}+0"][0] == "gb200" and where[f"{job}+1"][0] == "mi355x", where
    gb, mi = where[f"{job}+0"][1], where[f"{job}+1"][1]
    assert node == gb
    terminal.run("for r in prefill-0 decode-0 decode-1 router; do ixhpc_start $r; done; ixhpc_health "
                 "&& echo healthy $((2 + 2))", r"healthy 4", 120)
    # a step's id names its component's own job id: the leader's plus the component's offset
    comp = {str(int(job) + i): i for i in (0, 1)}
    steps = run(["squeue", "-h", "-s", "-o", "%i %j %N"], slurm)
    placed = {f[1]: (comp[f[0].split(".")[0]], f[2]) for f in (line.split() for line in steps.splitlines())
              if f[0].split(".")[0] in comp and f[1] != "debug-shell"}
    assert placed == {"prefill-0": (0, gb), "router": (0, gb), "decode-0": (1, mi), "decode-1": (1, mi)}, steps
    terminal.run("ixhpc_bench 4", r"concurrency 4 done: (\S+)", 120)
    terminal.run("exit", r"DEBUG-EXIT=0", timeout=60)
    states = wait_done(job, slurm, timeout=30, expect=2)
    assert {s for s, _ in states.values()} == {"COMPLETED"}, states


def test_print_of_a_heterogeneous_job_is_one_salloc_of_both_components(tmp_path):
    from test_hetjob import _recipe

    res = _cli(str(_recipe(tmp_path)), "--cluster", "local", "--print", "--results", str(tmp_path / "r"))
    assert res.returncode == 0, res.stderr
    out = _joined(res.stdout)
    salloc = next(line for line in out if line.startswith("salloc "))
    first, second = salloc.removeprefix("salloc ").split(" : ")
    assert "--partition=gb200" in first and "--gpus-per-node=4" in first and "--job-name=ixhpc-debug-" in first
    assert "--partition=mi355x" in second and "--gpus-per-node=8" in second and "--job-name" not in second
    assert second.endswith("/ixhpc-debug.sh")
    shell_step = out[out.index("# on node 0, the shell step:") + 1]
    assert shell_step.startswith("srun --pty --overlap --het-group=0 --nodes=1 ")
    roles = {line.split("--job-name=")[1].split()[0]: line for line in out if line.startswith("srun --overlap")}
    assert all("--het-group=1 " in roles[r] for r in ("decode-0", "decode-1"))
    assert all("--het-group=0 " in roles[r] for r in ("prefill-0", "router", "bench"))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ixhpc", "debug", *args], capture_output=True, text=True,
                          cwd=REPO)


def test_print_shows_the_jobs_allocation_and_commands_and_allocates_nothing(tmp_path):
    res = _cli(str(DISAGG), "--cluster", "local", "--print", "--results", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert list(tmp_path.iterdir()) == []
    out = re.sub(r"\\\n\s*", " ", res.stdout)
    # The same #SBATCH options the job has, as salloc options (batch-only ones left out).
    rendered = subprocess.run([sys.executable, "-m", "ixhpc", "render", str(DISAGG), "--cluster", "local",
                               "-o", str(tmp_path / "r")], capture_output=True, text=True, cwd=REPO)
    assert rendered.returncode == 0, rendered.stderr
    script = next((tmp_path / "r").glob("scripts/*.sbatch")).read_text()
    options = re.findall(r"^#SBATCH (\S+)", script, re.M)
    salloc = next(line for line in out.splitlines() if line.startswith("salloc "))
    expected = [o for o in options if not o.startswith(("--job-name", "--output", "--no-requeue"))]
    assert salloc.split()[1:len(expected) + 1] == expected
    assert "--job-name=ixhpc-debug-" in salloc
    # Every srun line of the job, the same apart from its run directory.
    run_dir = str(tmp_path / "r")
    printed_dir = re.search(r"(\S+)/ixhpc-debug\.sh", salloc).group(1)
    assert {b.replace(run_dir, printed_dir) for b in _srun_blocks(script)} <= _srun_blocks(out)


def test_an_unknown_point_is_one_line_and_exit_2(tmp_path):
    res = _cli(str(SINGLE), "--point", "nope", "--print")
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "--point nope" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_stay_data_in_the_debug_shell(tmp_path, value):
    """The rcfile, sourced the way the debug shell does, runs nothing from a recipe value."""
    import yaml

    from ixhpc import debug, runs
    from ixhpc.profiles import get_profile
    from ixhpc.rundir import Layout
    from ixhpc.sweep import Filters

    if os.path.exists(PWNED):
        os.unlink(PWNED)
    doc = yaml.safe_load(SINGLE.read_text())
    entry = doc["sim-mi355x-single"]
    entry.update({"model": value or "x", "image": value or "x"})
    entry["ixhpc"].update({"env": {"HOSTILE_NOTE": value}, "engine-args": {"server": [value]}})
    recipe = tmp_path / "hostile.yaml"
    recipe.write_text(yaml.safe_dump(doc))
    run_dir = tmp_path / "run"
    plan = runs.plan(runs.RunTarget(recipe, get_profile("local"), Filters()), run_dir, "run")[0]
    session = debug.session(plan, run_dir, host=False)
    run_dir.mkdir()
    debug.write(session)
    (run_dir / Layout.DEBUG_NODES).write_text("NODES=(n0)\ndeclare -A ADDR=([n0]=127.0.0.1)\nPORT_BASE=20000\n")
    # The recipe's env is a word of the role's srun line (never a variable of this shell).
    out = subprocess.run(["bash", "-c", f'source {run_dir / debug.ROLES} >/dev/null; trap - EXIT; '
                                        f'[[ -z "${{HOSTILE_NOTE+set}}" ]] || exit 3; '
                                        f'srun() {{ printf "%s\\0" "$@"; }}; role_server'],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert f"HOSTILE_NOTE={value}" in out.stdout.split("\0")
    assert not os.path.exists(PWNED)


def _joined(text: str) -> list[str]:
    """Lines with continuations joined and runs of spaces collapsed."""
    return [" ".join(line.split()) for line in re.sub(r"\\\n", " ", text).splitlines()]


def test_the_shell_opens_inside_the_points_container_unless_host(tmp_path):
    res = _cli(str(REPO / "recipes/examples/mi355x-dsr1-sglang.yaml"), "--cluster", "mi355x", "--print",
               "--results", str(tmp_path), "--seq-lens", "1k1k")
    assert res.returncode == 0, res.stderr
    out = _joined(res.stdout)
    step = out[out.index("# on node 0, the shell step:") + 1]
    run_dir = re.search(r"--rcfile (\S+)/ixhpc-roles\.sh", step).group(1)
    # pyxis flags, the run directory mounted at its own path and the shell starting there.
    assert step.startswith("srun --pty --overlap --nodes=1 --ntasks=1 --relative=0 ")
    assert "--container-image=" in step and f"--container-workdir={run_dir} " in step
    assert f",{run_dir}:{run_dir}" in step and "--container-env=HF_TOKEN," in step
    host = _cli(str(REPO / "recipes/examples/mi355x-dsr1-sglang.yaml"), "--cluster", "mi355x", "--print",
                "--results", str(tmp_path), "--seq-lens", "1k1k", "--host")
    host_step = _joined(host.stdout)[3]
    assert host_step.startswith("srun --pty") and "--container-" not in host_step
