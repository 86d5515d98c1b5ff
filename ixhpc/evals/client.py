"""lm-eval for compute nodes without network: a wheelhouse on shared storage, installed offline
into a venv of the job when the eval environment lacks ``lm_eval`` (docs/evals.md).

    python -m ixhpc.evals wheelhouse DIR [--python PY] [--platform P --python-version V]
        on the login node: wheels of the pinned requirement set (ixhpc's ``eval`` extra; no
        torch: lm-eval's API client does not import it) in DIR, sdists built into wheels
    python3 BUNDLE -m ixhpc.evals install --venv DIR --wheelhouse DIR REQUIREMENT...
        the job's eval-install step, run by the eval's Python (in its container): nothing when
        it imports ``lm_eval``; else a venv (the image's packages visible) with the requirements
        installed from the wheelhouse with ``pip install --no-index``

Standard library only: ``install`` runs from the run's bundle inside the eval's container.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from ixhpc.errors import ConfigError, IxhpcError, main_guard

EXTRA = "eval"  # setup.cfg's extra holding the pinned eval client


class InstallError(IxhpcError):
    """The eval client could not be installed from the wheelhouse."""


def requirements() -> list[str]:
    """The pinned eval client: the ``eval`` extra of ixhpc's own metadata (one place for the pins)."""
    from importlib import metadata

    try:
        declared = metadata.requires("ixhpc") or []
    except metadata.PackageNotFoundError:
        raise ConfigError("ixhpc is not installed (pip install -e .): its pinned eval requirements are "
                          "unknown") from None
    return [req.strip() for req, _, marker in (line.partition(";") for line in declared)
            if f'extra == "{EXTRA}"' in marker]


def _run(argv: list[str]) -> None:
    print("+ " + " ".join(argv), flush=True)
    status = subprocess.run(argv).returncode
    if status:
        raise InstallError(f"{argv[0]} {' '.join(argv[1:4])} ... failed with status {status}")


def wheelhouse(directory: Path, python: str, reqs: list[str], platform: str | None,
               python_version: str | None) -> int:
    """Wheels of ``reqs`` and their dependencies in ``directory``; returns how many there are.
    ``pip wheel`` builds the sdist-only ones (pure Python) so the offline install builds nothing;
    for another platform, ``pip download`` then adds that platform's binary wheels."""
    directory.mkdir(parents=True, exist_ok=True)
    _run([python, "-m", "pip", "wheel", "--wheel-dir", str(directory), *reqs])
    if platform or python_version:
        _run([python, "-m", "pip", "download", "--only-binary=:all:", "--find-links", str(directory),
              "--dest", str(directory), *(["--platform", platform] if platform else []),
              *(["--python-version", python_version] if python_version else []), *reqs])
    return len(list(directory.glob("*.whl")))


def _imports_lm_eval(python: str | Path) -> bool:
    return subprocess.run([str(python), "-c", "import lm_eval"], capture_output=True).returncode == 0


def install(venv: Path, wheelhouse_dir: Path, reqs: list[str]) -> str:
    """The Python that runs lm-eval: this one when it imports ``lm_eval``, else ``venv``'s,
    created (the image's packages visible, so a GPU torch is never reinstalled) and filled
    from the wheelhouse offline; a venv that already imports it is kept (a resumed job)."""
    here = sys.executable
    if _imports_lm_eval(here):
        shutil.rmtree(venv, ignore_errors=True)  # the job script runs lm-eval with this Python then
        print(f"{here} imports lm_eval: nothing to install")
        return here
    python = venv / "bin" / "python"
    if python.exists() and _imports_lm_eval(python):
        print(f"{venv}: lm_eval already installed")
        return str(python)
    if not wheelhouse_dir.is_dir():
        raise InstallError(f"{here} cannot import lm_eval and the wheelhouse {wheelhouse_dir} does not exist")
    shutil.rmtree(venv, ignore_errors=True)
    pip = ["install", "--no-index", "--find-links", str(wheelhouse_dir), "--no-compile",
           "--disable-pip-version-check", *reqs]
    try:
        _run([here, "-m", "venv", "--system-site-packages", str(venv)])
        _run([str(python), "-m", "pip", *pip])
    except InstallError:  # no ensurepip in the image (Debian without python3-venv): its own pip
        shutil.rmtree(venv, ignore_errors=True)
        _run([here, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)])
        _run([here, "-m", "pip", "--python", str(python), *pip])
    if not _imports_lm_eval(python):
        raise InstallError(f"{venv}: lm_eval still not importable after the install")
    print(f"{venv}: lm_eval installed from {wheelhouse_dir}")
    return str(python)


@main_guard("ixhpc.evals")
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ixhpc.evals")
    sub = parser.add_subparsers(dest="action", required=True)
    wh = sub.add_parser("wheelhouse", help="wheels of the pinned eval client, for offline installs")
    wh.add_argument("directory", type=Path)
    wh.add_argument("--python", default=sys.executable,
                    help="the Python whose pip builds the wheels (same version and platform as the eval's)")
    wh.add_argument("--platform", help="another platform's binary wheels too (pip's --platform)")
    wh.add_argument("--python-version", help="for another Python version (pip's --python-version)")
    ins = sub.add_parser("install", help="the job's eval-install step")
    ins.add_argument("--venv", type=Path, required=True)
    ins.add_argument("--wheelhouse", type=Path, required=True)
    ins.add_argument("requirement", nargs="+")
    args = parser.parse_args(argv)
    if args.action == "wheelhouse":
        reqs = requirements()
        n = wheelhouse(args.directory.expanduser().resolve(), args.python, reqs, args.platform, args.python_version)
        print(f"{n} wheels for {' '.join(reqs)} in {args.directory}: name it as eval-wheelhouse in the profile")
        return 0
    install(args.venv, args.wheelhouse, args.requirement)
    return 0
