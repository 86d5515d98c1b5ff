"""One writer per run: `submit` and `resume` hold the run's lock; a second one refuses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ixhpc import rundir

REPO = Path(__file__).resolve().parents[1]


def _ixhpc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ixhpc", *args], capture_output=True, text=True,
                          timeout=60, cwd=REPO)


def test_a_second_resume_refuses_while_the_run_is_locked(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert _ixhpc("render", str(REPO / "recipes/examples/sim-single-node.yaml"), "-o", str(run)).returncode == 0
    before = (run / rundir.Layout.MANIFEST).read_bytes()
    with rundir.locked(run, "submit"):
        out = _ixhpc("resume", str(run))
    assert out.returncode == 3, out.stderr
    assert out.stderr.count("\n") == 1 and "being submitted by `ixhpc submit` (pid" in out.stderr
    assert (run / rundir.Layout.MANIFEST).read_bytes() == before  # nothing submitted or recorded


def test_the_lock_is_released_when_its_holder_dies(tmp_path: Path) -> None:
    code = ("import os, sys; from pathlib import Path; from ixhpc import rundir\n"
            "with rundir.locked(Path(sys.argv[1]), 'resume'): os._exit(9)")
    assert subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO).returncode == 9
    with rundir.locked(tmp_path, "resume"):
        pass


def test_resume_sets_damaged_results_aside(tmp_path: Path) -> None:
    """A truncated result file is moved aside (kept), so the point can run again and publish."""
    from ixhpc import runstate

    lay = rundir.Layout.of(tmp_path)
    lay.results_dir.mkdir()
    lay.result("p1").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 40)  # a truncated HDF5 file
    moved = runstate.set_aside_damaged(tmp_path, ["p1", "p2"])
    assert [m.name.split(".damaged-")[0] for m in moved] == ["p1.h5"]
    assert not lay.result("p1").exists() and moved[0].exists()
