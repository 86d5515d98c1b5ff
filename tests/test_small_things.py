"""Small things users hit (issue 13, item 7): logs, broken pipes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ixhpc.rundir import Layout

REPO = Path(__file__).resolve().parents[1]


def _ixhpc(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ixhpc", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


@pytest.fixture
def run_with_logs(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    assert _ixhpc("render", str(REPO / "recipes/examples/sim-single-node.yaml"), "-o", str(run)).returncode == 0
    job = json.loads((run / Layout.MANIFEST).read_text())["jobs"][0]["key"]
    Layout.of(run).role_log(job, "server").write_text("".join(f"line {i}\n" for i in range(20000)))
    return run


def test_logs_line_counts(run_with_logs: Path) -> None:
    zero = _ixhpc("logs", str(run_with_logs), "--role", "server", "-n", "0")
    assert zero.returncode == 0 and zero.stdout.splitlines()[1:] == []
    three = _ixhpc("logs", str(run_with_logs), "--role", "server", "-n", "3")
    assert three.stdout.splitlines()[1:] == ["line 19997", "line 19998", "line 19999"]
    negative = _ixhpc("logs", str(run_with_logs), "-n", "-1")
    assert negative.returncode == 2 and "Traceback" not in negative.stderr
    assert negative.stderr.splitlines()[-1].endswith("expected a number of lines >= 0, found '-1'")


def test_a_closed_pipe_ends_quietly(run_with_logs: Path) -> None:
    """`ixhpc logs RUN | head -1`: no BrokenPipeError traceback, exit 0."""
    proc = subprocess.Popen([sys.executable, "-m", "ixhpc", "logs", str(run_with_logs), "-n", "20000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()   # as `head` does after its line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and err == ""


@pytest.mark.cluster
def test_logs_follow_returns_when_no_job_is_live(slurm: dict[str, str], run_with_logs: Path) -> None:
    manifest = json.loads((run_with_logs / Layout.MANIFEST).read_text())
    manifest["jobs"][0]["attempts"] = [{"job_id": "987654321", "submitted": "2026-01-01T00:00:00+00:00"}]
    (run_with_logs / Layout.MANIFEST).write_text(json.dumps(manifest))
    out = _ixhpc("logs", str(run_with_logs), "--role", "server", "-f", "-n", "1", timeout=30)
    assert out.returncode == 0 and out.stdout.splitlines()[-1] == "line 19999"
