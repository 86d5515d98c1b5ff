"""The CLI frame: help, version, lazy imports, one-line errors."""

from __future__ import annotations

import subprocess
import sys

from ixhpc import __version__

HEAVY = ("pandas", "h5py", "submitit", "matplotlib")


def ixhpc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ixhpc", *args], capture_output=True, text=True,
                          timeout=60)


def test_version():
    res = ixhpc("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"ixhpc {__version__}"


def test_help_lists_local_cluster_and_imports_nothing_heavy():
    code = ("import sys, runpy\nsys.argv = ['ixhpc', '--help']\n"
            "try:\n    runpy.run_module('ixhpc', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            f"print('HEAVY:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "local-cluster" in res.stdout
    assert res.stdout.rsplit("HEAVY:", 1)[1].strip() == ""


def test_unknown_command_is_a_one_line_usage_error():
    res = ixhpc("no-such-command")
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and "invalid choice" in res.stderr


def test_user_error_is_one_line_and_exit_code(monkeypatch, capsys):
    from ixhpc import cli
    from ixhpc.commands import local_cluster

    def boom(args):
        from ixhpc.errors import PlanError
        raise PlanError("the thing is wrong")

    monkeypatch.setattr(local_cluster, "run", boom)
    assert cli.main(["local-cluster", "status"]) == 3
    err = capsys.readouterr().err
    assert err == "ixhpc local-cluster: error: the thing is wrong\n"


def test_no_command_prints_help_and_fails():
    res = ixhpc()
    assert res.returncode == 2 and "COMMAND" in res.stdout
