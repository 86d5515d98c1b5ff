"""`ixhpc debug` with accuracy evals: the shell's ``ixhpc_eval CONC`` runs the point's eval step
as the job does (ixhpc.debug, debug_roles.sh.j2; docs/evals.md)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import yaml
from test_debug import _leave, _open_debug_shell, _srun_blocks, terminal  # noqa: F401 (a fixture)

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "recipes/examples/sim-evals.yaml"


def _debug(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ixhpc", "debug", *args], capture_output=True, text=True, cwd=REPO)


def test_print_shows_the_eval_step_of_the_job(tmp_path):
    res = _debug(str(EXAMPLE), "--point", "sim-evals-throughput-then-eval_128x32_tp8-ep1_c4", "--cluster", "local",
                 "--print", "--results", str(tmp_path))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "# lm-eval of CONC=4, for ECONC in 4 8" in lines
    flat = " ".join(re.sub(r"\\\n\s*", " ", res.stdout).split())
    assert "--job-name=eval" in flat and "-m lm_eval --model local-chat-completions" in flat
    assert not list(tmp_path.iterdir())  # --print allocates and writes nothing


def _eval_recipe(tmp_path: Path) -> Path:
    doc = yaml.safe_load(EXAMPLE.read_text())
    entry = doc["sim-evals-only"]
    entry["ixhpc"]["eval"]["limit"] = 8
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"sim-evals-debug": entry}))
    return path


@pytest.mark.cluster
def test_ixhpc_eval_in_the_debug_shell_runs_the_jobs_eval_and_writes_the_point(terminal, slurm, tmp_path):  # noqa: F811
    node, job, cwd = _open_debug_shell(terminal, _eval_recipe(tmp_path), tmp_path / "runs")
    job_script = next((cwd / "scripts").glob("*.sbatch")).read_text()
    roles = (cwd / "ixhpc-roles.sh").read_text()
    evals = {b for b in _srun_blocks(job_script) if "--job-name=eval" in b}
    assert evals and evals <= _srun_blocks(roles)  # the job's own eval step, word for word
    terminal.run("ixhpc_eval 99", r"concurrency 99 runs no eval; these do: 8")
    terminal.run("ixhpc_start server && ixhpc_health", r"server is healthy at (\S+)", 90)
    terminal.run("ixhpc_eval 8", r"eval of concurrency 8 done", 120)
    (result,) = (cwd / "results").glob("*.h5")
    with h5py.File(result) as f:  # 30% wrong answers: below the 0.90 threshold, as in the job
        assert f["eval"].attrs["eval_verdict"] == "fail" and bool(f["eval"].attrs["eval_only"])
        assert "< threshold 0.90" in f["eval"].attrs["eval_reasons"]
    _leave(terminal, job, slurm)
