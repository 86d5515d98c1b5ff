"""The run's code bundle (ixhpc.bundle): what runs inside a job's containers, from the run directory."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ixhpc import bundle
from ixhpc.rundir import Layout

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bundle.write(Layout.of(tmp_path_factory.mktemp("run")).bundle)


def _isolated(pyz: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python3 -I BUNDLE ARGS``: no PYTHONPATH, no user site, no current directory: the
    archive is the only place ixhpc can come from (the engine images bring numpy, aiohttp)."""
    return subprocess.run([sys.executable, "-I", str(pyz), *args], capture_output=True, text=True,
                          cwd=cwd, timeout=60)


def test_the_bundle_is_the_same_bytes_for_the_same_code(tmp_path):
    a = bundle.write(tmp_path / "a.pyz").read_bytes()
    b = bundle.write(tmp_path / "b.pyz").read_bytes()
    assert a == b
    with zipfile.ZipFile(tmp_path / "a.pyz") as zf:
        infos = zf.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}


@pytest.mark.parametrize("module", bundle.ENTRY_POINTS)
def test_entry_points_run_from_the_bundle_alone(pyz, tmp_path, module):
    res = _isolated(pyz, "-m", module, "--help", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"python -m {module}" in res.stdout
    where = _isolated(pyz, "-c", f"import ixhpc, {module}.__main__; print(ixhpc.__file__)", cwd=tmp_path)
    assert where.stdout.strip() == str(pyz / "ixhpc" / "__init__.py"), where.stderr


def test_code_given_with_c_gets_its_arguments(pyz, tmp_path):
    res = _isolated(pyz, "-c", "import sys, ixhpc.sim.model; print(sys.argv)", "a", "b c", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "['-c', 'a', 'b c']"


def test_anything_else_is_a_usage_error(pyz, tmp_path):
    res = _isolated(pyz, "ixhpc.bench", cwd=tmp_path)
    assert res.returncode != 0 and f"usage: python3 {pyz} -m MODULE" in res.stderr


def test_what_the_bundle_imports_from_outside_is_documented():
    files, third_party = bundle.closure()
    assert third_party == {*(n for names in bundle.REQUIRES.values() for n in names), *bundle.OPTIONAL}
    assert set(bundle.REQUIRES) == set(bundle.ENTRY_POINTS)
    # Host-only code (recipes, placement, results, Slurm) stays out of the containers.
    assert not any(name.startswith(("ixhpc/results/", "ixhpc/job/", "ixhpc/commands/")) for name in files)
    assert "ixhpc/placement.py" not in files


def test_render_writes_the_bundle_once_per_run(tmp_path):
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "ixhpc", "render", str(REPO / "recipes/examples/sim-disagg.yaml"),
                          "--cluster", "local", "-o", str(out)], capture_output=True, text=True, timeout=120,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert res.returncode == 0, res.stderr
    assert Layout.of(out).bundle.read_bytes() == bundle.build()
    scripts = list((out / Layout.SCRIPTS).iterdir())
    assert scripts and all(Layout.BUNDLE in s.read_text() for s in scripts)
