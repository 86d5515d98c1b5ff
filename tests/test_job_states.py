"""One job-state rule (`slurm.is_live` / `is_terminal`) for status, submit --wait, cancel, resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ixhpc import slurm

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("state", ["PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED",
                                   "REQUEUED", "REQUEUE_HOLD", "RESIZING", "STOPPED", "SIGNALING"])
def test_queued_running_suspended_and_requeued_jobs_are_live(state: str) -> None:
    assert slurm.is_live(state) and not slurm.is_terminal(state)


@pytest.mark.parametrize("state", sorted(slurm.TERMINAL))
def test_ended_jobs_are_terminal_and_not_live(state: str) -> None:
    assert slurm.is_terminal(state) and not slurm.is_live(state)


@pytest.mark.parametrize("state", [slurm.UNKNOWN, slurm.NOT_SUBMITTED])
def test_a_job_without_a_record_is_neither(state: str) -> None:
    assert not slurm.is_live(state) and not slurm.is_terminal(state)


def _ixhpc(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ixhpc", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


@pytest.mark.cluster
def test_wait_and_watch_end_for_a_job_slurm_does_not_know(slurm: dict[str, str], tmp_path: Path) -> None:
    """`submit --wait` used to loop for ever on a job that stays UNKNOWN; now it ends, as
    `status --watch` does, and `resume` resubmits nothing for a live job."""
    from ixhpc.commands import submit

    run = tmp_path / "run"
    out = _ixhpc("render", str(REPO / "recipes/examples/sim-single-node.yaml"), "-o", str(run))
    assert out.returncode == 0, out.stderr
    manifest = json.loads((run / "manifest.json").read_text())
    for job in manifest["jobs"]:
        job["attempts"] = [{"job_id": "987654321", "submitted": "2026-01-01T00:00:00+00:00"}]
    (run / "manifest.json").write_text(json.dumps(manifest))
    assert submit._wait(run, as_json=True) == 0  # returns: no live job (status: UNKNOWN)
    watched = _ixhpc("status", str(run), "--watch", "0.1", "--json")
    assert watched.stdout.count("\n") == 1 and '"UNKNOWN"' in watched.stdout
