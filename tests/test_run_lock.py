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


def test_a_refusal_names_the_holder_not_an_earlier_one(tmp_path: Path) -> None:
    """The lock file is emptied when released; a refusal that comes between the holder's lock
    and its writing its name waits for the name instead of naming an earlier holder."""
    import fcntl
    import os
    import threading

    import pytest

    from ixhpc.errors import PlanError

    with rundir.locked(tmp_path, "submit"):
        pass
    lock = rundir.Layout.of(tmp_path).lock
    assert lock.read_text() == ""
    fd = os.open(lock, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # taken, its name not written yet
    late = threading.Timer(0.3, os.pwrite, (fd, b"`ixhpc resume` (pid 7)\n", 0))
    late.start()
    try:
        with pytest.raises(PlanError, match=r"being submitted by `ixhpc resume` \(pid 7\)"):
            with rundir.locked(tmp_path, "resume"):
                pass
    finally:
        late.join()
        os.close(fd)


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


def test_a_run_directory_is_written_whole_or_not_at_all(tmp_path: Path) -> None:
    """A failure while the run is being written leaves nothing; a dry run leaves nothing."""
    import pytest

    from ixhpc.errors import PlanError

    with pytest.raises(RuntimeError), rundir.create(tmp_path, "r1", "submit") as new:
        (new.dir / "scripts" / "half.sbatch").write_text("#!/bin/bash\n")
        raise RuntimeError("render failed half-way")
    assert list(tmp_path.iterdir()) == []
    with rundir.create(tmp_path, "r2", "render") as new:
        new.publish()
    assert [p.name for p in tmp_path.iterdir()] == ["r2"]
    with pytest.raises(PlanError, match="already exists"), rundir.create(tmp_path, "r2", "render"):
        pass
    with pytest.raises(PlanError, match="'%'"), rundir.create(tmp_path / "a%jb", "r3", "render"):
        pass
    out = _ixhpc("submit", str(REPO / "recipes/examples/sim-single-node.yaml"), "--dry-run",
                 "--results", str(tmp_path / "dry"))
    assert out.returncode == 0 and str(tmp_path / "dry") in out.stdout, out.stderr
    assert not (tmp_path / "dry").exists() or not any((tmp_path / "dry").iterdir())


def test_keys_are_unique_and_bounded(tmp_path: Path) -> None:
    """Config keys `a b` and `a-b` (and non-ASCII keys of equal length) get distinct result
    files; a 300-character key and a 60-concurrency job still give file names that fit."""
    import yaml

    from ixhpc import names, runs
    from ixhpc.profiles import get_profile
    from ixhpc.sweep import Filters

    doc = yaml.safe_load((REPO / "recipes/examples/sim-single-node.yaml").read_text())
    [entry] = doc.values()
    entry["seq-len-configs"][0]["search-space"][0].pop("conc-start", None)
    entry["seq-len-configs"][0]["search-space"][0].pop("conc-end", None)
    entry["seq-len-configs"][0]["search-space"][0]["conc-list"] = list(range(1, 61))
    keys = ["a b", "a-b", "αβ", "γδ", "k" * 300]
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({k: entry for k in keys}, allow_unicode=True))
    plans = runs.plan(runs.RunTarget(recipe, get_profile("local"), Filters()), tmp_path / "run", "run")
    results = [p.result_key(c) for p in plans for c in p.concs]
    assert len(set(results)) == len(results) == 5 * 60
    assert len({p.key for p in plans}) == 5
    assert all(len(k) <= names.MAX_KEY + 10 for k in results + [p.key for p in plans])
    with rundir.create(tmp_path, "run", "render") as new:
        runs.write(runs.RunTarget(recipe, get_profile("local"), Filters()), new.dir, "run", plans)
        new.publish()
    assert len(list((tmp_path / "run" / "scripts").iterdir())) == 5
