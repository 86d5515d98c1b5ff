"""The package as a user installs it: an sdist, a wheel built from it, a fresh venv, a real job.

The venv finds the dependencies in the test's own environment (a path line in a ``.pth``
file: no network needed, and nothing assumed of the base interpreter's packages), so the test
checks that ``ixhpc`` itself comes from the wheel installed in the venv, not from this
checkout, and runs everything from outside the repository.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[1]
TEMPLATES = sorted(p.name for p in (REPO / "sbatch_templates").glob("*.j2"))


def _run(argv: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    res = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)
    assert res.returncode == 0, f"{' '.join(argv)}\n{res.stdout}\n{res.stderr}"
    return res


def _build(out: Path) -> tuple[Path, Path]:
    """An sdist of the checkout, and a wheel built from that sdist (as pip would from PyPI)."""
    _run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
          "build_meta.build_sdist(sys.argv[1])", str(out)], cwd=REPO)
    sdist = next(out.glob("ixhpc-*.tar.gz"))
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
          "--no-index", "-w", str(out), str(sdist)], cwd=out)
    return sdist, next(out.glob("ixhpc-*.whl"))


def _see_dependencies(python: Path) -> None:
    """The venv's own site-packages come first; the test environment's follow them. Its .pth
    files are not run from there, so the checkout's editable install stays out of the venv."""
    ours = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                cwd=python.parent).stdout.strip()
    (Path(site) / "test-environment.pth").write_text("".join(f"{p}\n" for p in ours))


def test_a_wheel_in_a_fresh_venv_renders_submits_and_runs_a_job(slurm, tmp_path):
    sdist, wheel = _build(tmp_path / "dist")
    with tarfile.open(sdist) as tf:
        assert {Path(n).name for n in tf.getnames() if "/ixhpc/sbatch_templates/" in n} == set(TEMPLATES)
    with zipfile.ZipFile(wheel) as zf:
        assert sorted(Path(n).name for n in zf.namelist() if n.startswith("ixhpc/sbatch_templates/")) == TEMPLATES

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    python, cli = venv / "bin" / "python", venv / "bin" / "ixhpc"
    _see_dependencies(python)
    # --force-reinstall: the checkout's editable install, seen through that path, has the same
    # version; pip installs into the venv and leaves that one alone.
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--force-reinstall",
          str(wheel)], cwd=tmp_path)
    where = _run([str(python), "-c", "import ixhpc; print(ixhpc.__file__)"], cwd=tmp_path).stdout.strip()
    assert Path(where).is_relative_to(venv), where

    recipe = REPO / "recipes/examples/sim-single-node.yaml"
    rendered = tmp_path / "rendered"
    _run([str(cli), "render", str(recipe), "--cluster", "local", "--max-conc", "2", "-o", str(rendered)],
         cwd=tmp_path)
    from ixhpc.rundir import Layout

    [script] = (rendered / Layout.SCRIPTS).iterdir()
    assert f"IXHPC_PYTHON={python}\n" in script.read_text()  # host steps: the venv's ixhpc
    assert Layout.of(rendered).bundle.is_file()                 # roles and client: the bundle
    _run([str(cli), "submit", str(recipe), "--cluster", "local", "--max-conc", "2",
          "--results", str(tmp_path / "results"), "--wait"], cwd=tmp_path)
    [run] = (tmp_path / "results").iterdir()
    status = json.loads(_run([str(cli), "status", str(run), "--json"], cwd=tmp_path).stdout)
    [job] = status["jobs"]
    assert job["state"] == "COMPLETED" and job["points_done"] == job["points_total"] == 1, status

    from ixhpc.results import load

    [result] = Layout.of(run).results_dir.glob("*.h5")
    assert load(str(result))["conc"].tolist() == [2]
