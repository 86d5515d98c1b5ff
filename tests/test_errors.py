"""Errors: one base, a few kinds, one reporting path; validate catches what render would trip on.

Covers issue 12's rows `framework: simm`, a NUL in engine-args and `resume --exclude "gb1 gb2"`,
the exit-code table of docs/contracts.md, retries that never hide a bug, and the test-suite
rules (reference data skipped by name when absent, Slurm only under the `cluster` marker).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import pytest
import yaml
from pydantic import AfterValidator

from ixhpc import cli, errors, slurm
from ixhpc.yamlmodel import StrictModel, printable

REPO = Path(__file__).resolve().parents[1]
SINGLE = REPO / "recipes/examples/sim-single-node.yaml"
KEY = "sim-mi355x-single"


def ixhpc(*args: str, module: str = "ixhpc") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          cwd=REPO, timeout=120)


def recipe(tmp_path: Path, change: dict[str, Any], ixhpc_block: dict[str, Any] | None = None) -> Path:
    """The single-node example with ``change`` applied to its entry (and its ixhpc block)."""
    doc = yaml.safe_load(SINGLE.read_text())
    doc[KEY].update(change)
    doc[KEY]["ixhpc"].update(ixhpc_block or {})
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def one_line_error(res: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    assert res.returncode == code, res.stderr
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    for needle in needles:
        assert needle in res.stderr, res.stderr
    return res.stderr


# ---------------------------------------------------------------------------- the kinds


def test_docs_list_every_kind_with_its_exit_code():
    text = (REPO / "docs/contracts.md").read_text()
    table = dict(re.findall(r"^\| (\d+) \| `(\w+)`", text, re.M))
    assert {name: int(code) for code, name in table.items()} == \
        {k.__name__: k.exit_code for k in errors.KINDS}
    assert len({k.exit_code for k in errors.KINDS}) == len(errors.KINDS)


def test_user_error_is_the_base_under_its_old_name():
    assert errors.UserError is errors.IxhpcError
    assert all(issubclass(k, errors.UserError) for k in errors.KINDS)
    from ixhpc.yamlmodel import ConfigError
    assert ConfigError is errors.ConfigError and ConfigError(["a:1: x"]).errors == ["a:1: x"]


@pytest.mark.parametrize("kind", errors.KINDS)
def test_cli_maps_each_kind_to_its_code_in_one_line(monkeypatch, capsys, kind):
    from ixhpc.commands import local_cluster

    def boom(args):
        raise kind("the thing is wrong")

    monkeypatch.setattr(local_cluster, "run", boom)
    assert cli.main(["local-cluster", "status"]) == kind.exit_code
    assert capsys.readouterr().err == "ixhpc local-cluster: error: the thing is wrong\n"


def test_a_bug_keeps_its_traceback():
    def bug() -> int:
        raise KeyError("oops")

    with pytest.raises(KeyError):
        errors.guard("prog", bug)


# ---------------------------------------------------------------------------- retries


@pytest.mark.parametrize("bug", [TypeError("x"), KeyError("Socket timed out"), AttributeError("try again")])
def test_retries_never_catch_programming_errors(bug):
    calls = []

    def attempt():
        calls.append(1)
        raise bug

    with pytest.raises(type(bug)):
        slurm.with_retries(attempt, "sbatch")
    assert len(calls) == 1


def test_a_lasting_transient_failure_is_its_own_kind(monkeypatch):
    monkeypatch.setattr(slurm, "BACKOFF_S", 0.001)

    def attempt():
        raise subprocess.CalledProcessError(1, "sbatch", stderr="x")  # str() has no hint

    with pytest.raises(errors.SlurmError) as refused:
        slurm.with_retries(attempt, "sbatch", retries=2)
    assert type(refused.value) is errors.SlurmError

    def busy():
        raise OSError("Socket timed out")

    with pytest.raises(errors.SlurmTransientError, match="sbatch failed: Socket timed out"):
        slurm.with_retries(busy, "sbatch", retries=2)


# ---------------------------------------------------------------------------- validate


def test_framework_simm_is_a_located_validate_error_and_never_a_render_traceback(tmp_path):
    path = recipe(tmp_path, {"framework": "simm"})
    res = ixhpc("validate", str(path))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert re.match(rf"{re.escape(str(path))}:\d+: {KEY}\.framework: expected a known framework "
                    r"\(did you mean 'sim'\?\)", res.stderr), res.stderr
    for command in (["sweep", str(path)], ["render", str(path), "-o", str(tmp_path / "out")]):
        one_line_error(ixhpc(*command), 2, "framework")
    assert not (tmp_path / "out").exists()


def test_a_nul_in_engine_args_is_a_located_validate_error(tmp_path):
    path = recipe(tmp_path, {}, {"engine-args": {"server": ["--x", "a\u0000b"]}})
    res = ixhpc("validate", str(path))
    assert res.returncode == 2, res.stderr
    assert f"{KEY}.ixhpc.engine-args.server[1]: expected text without control characters" in res.stderr
    one_line_error(ixhpc("render", str(path), "-o", str(tmp_path / "out")), 2, "control characters")


@pytest.mark.parametrize("change,block,where", [
    ({"model": "m\x1b[31m"}, {}, f"{KEY}.model:"),
    ({}, {"env": {"NOTE": "a\nb"}}, f"{KEY}.ixhpc.env.NOTE:"),
    ({}, {"env": {"HF_TOKEN": "hf_x"}}, f"{KEY}.ixhpc.env.HF_TOKEN: looks like a secret"),
    ({}, {"container-mounts": ["/a:/b:RO!"]}, f"{KEY}.ixhpc.container-mounts[0]: expected mount flags"),
    ({}, {"container-mounts": ["/a/b"]}, f"{KEY}.ixhpc.container-mounts[0]: expected src:dst"),
])
def test_validate_reports_every_check_that_needs_no_cluster(tmp_path, change, block, where):
    from ixhpc.recipe import validate_file

    found = validate_file(recipe(tmp_path, change, block))
    assert len(found) == 1 and where in found[0], found


def test_a_control_character_in_a_config_key_is_located(tmp_path):
    from ixhpc.recipe import validate_file

    doc = yaml.safe_load(SINGLE.read_text())
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"bad\u0007key": doc[KEY]}))
    assert validate_file(path) == [f"{path}:1: bad\u0007key: expected text without control "
                                   f"characters, found '\\x07' at offset 3 of \"bad\\u0007key\""]


def _bare_strings(tp: Any, metadata: list[Any]) -> bool:
    """Does ``tp`` hold a ``str`` that is not one of yamlmodel's shared string types?"""
    if get_origin(tp) is Annotated:
        base, *meta = get_args(tp)
        return _bare_strings(base, meta)
    if tp is str:
        return not any(isinstance(m, AfterValidator) and m.func is printable for m in metadata)
    if get_origin(tp) is Literal:
        return False
    return any(_bare_strings(a, []) for a in get_args(tp))


def test_every_string_field_of_a_yaml_model_refuses_control_characters():
    import importlib
    import pkgutil

    import ixhpc

    for mod in pkgutil.walk_packages(ixhpc.__path__, "ixhpc."):  # every module that defines models
        if not mod.name.endswith("__main__") and ".standins.lib" not in mod.name:
            importlib.import_module(mod.name)

    def models(cls: type) -> list[type]:
        return [cls, *(m for sub in cls.__subclasses__() for m in models(sub))]

    bare = [f"{m.__name__}.{name}" for m in models(StrictModel) for name, f in m.model_fields.items()
            if _bare_strings(f.annotation, list(f.metadata))]
    assert bare == [], "use yamlmodel.Str/Text (not str) for these fields"


# ---------------------------------------------------------------------------- resume --exclude


@pytest.mark.parametrize("text,expected", [("gb1 gb2", "gb1,gb2"), ("gb1,gb2", "gb1,gb2"),
                                           (" gb1 , gb[3-4] ", "gb1,gb[3-4]"), ("", "")])
def test_exclude_takes_commas_or_spaces(text, expected):
    from ixhpc.commands.resume import node_list

    assert node_list(text) == expected


def test_resume_exclude_with_spaces_works_and_a_bad_name_is_one_line(tmp_path):
    run = tmp_path / "run"
    res = ixhpc("render", str(SINGLE), "-o", str(run))
    assert res.returncode == 0, res.stderr
    ok = ixhpc("resume", str(run), "--exclude", "gb1 gb2", "--dry-run")
    assert ok.returncode == 0 and "Traceback" not in ok.stderr, ok.stderr
    bad = ixhpc("resume", str(run), "--exclude", "gb1;x", "--dry-run")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "expected node names such as gb1,gb2" in bad.stderr


# ---------------------------------------------------------------------------- python -m entry points


@pytest.mark.parametrize("module,args,code,needle", [
    ("ixhpc.job.steps", ["ingest", "--run-dir", "/nonexistent", "--job", "j", "--conc", "1"], 4,
     "ixhpc.job.steps: error: ingest: "),
    ("ixhpc.containers", ["srun-args", "img", "--runtime", "none", "--mount", "/a"], 2,
     "ixhpc.containers: error: "),
    ("ixhpc.sim", ["router", "--port", "0", "--prefill", "ftp://x", "--decode", "http://y"], 2,
     "ixhpc.sim: error: worker URLs must start with http"),
    ("ixhpc.bench", ["--base-url", "http://127.0.0.1:9", "--isl", "8", "--osl", "8",
                     "--max-concurrency", "1"], 1, "ixhpc.bench: error: cannot list models"),
    ("ixhpc.slo", ["next", "--run-dir", "/nonexistent", "--job", "j", "--slo", "ttft=soon",
                   "--concurrencies", "1"], 2, "ixhpc.slo: error: --slo: ttft"),
])
def test_every_entry_point_reports_one_line(module, args, code, needle):
    one_line_error(ixhpc(*args, module=module), code, needle)


def test_every_entry_point_main_is_guarded():
    import importlib

    mains = ["ixhpc.bench.__main__", "ixhpc.sim.__main__", "ixhpc.job.steps", "ixhpc.containers",
             "ixhpc.engine_flags", "ixhpc.standins.__main__", "ixhpc.job.power", "ixhpc.results.serving", "ixhpc.slo",
             "ixhpc.evals.__main__"]
    found = {str(p.relative_to(REPO).with_suffix("")).replace("/", ".")
             for p in (REPO / "ixhpc").rglob("*.py")
             if re.search(r'^if __name__ == "__main__":', p.read_text(), re.M)}
    assert found <= set(mains), f"new entry point(s) {found - set(mains)}: decorate main with main_guard"
    for name in mains:
        assert hasattr(importlib.import_module(name).main, "__wrapped__"), name


# ---------------------------------------------------------------------------- the test suite's rules


def _pytest(*args: str, cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("IXHPC_REQUIRE_REFERENCE", "IXHPC_REFERENCE_DIR", "PYTEST_ADDOPTS")}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                          capture_output=True, text=True, cwd=cwd, env={**clean, **env}, timeout=300)


REFERENCE_TEST = "tests/test_recipe.py::test_inferencex_master_files_are_valid_recipes"


def test_absent_reference_data_skips_by_name_and_fails_where_required():
    skipped = _pytest(REFERENCE_TEST, "-rs", IXHPC_REFERENCE_DIR="/nonexistent")
    assert skipped.returncode == 0 and "1 skipped" in skipped.stdout, skipped.stdout
    assert "reference data absent: /nonexistent/inferencex-2026-03" in skipped.stdout
    required = _pytest(REFERENCE_TEST, IXHPC_REFERENCE_DIR="/nonexistent", IXHPC_REQUIRE_REFERENCE="1")
    assert required.returncode == 1 and "IXHPC_REQUIRE_REFERENCE=1 requires it" in required.stdout


def test_ci_requires_the_reference_data():
    assert "export IXHPC_REQUIRE_REFERENCE=1" in (REPO / ".ci/run").read_text()


def test_the_slurm_fixture_fails_a_test_without_the_cluster_marker(tmp_path):
    (tmp_path / "conftest.py").write_text((REPO / "tests/conftest.py").read_text())
    (tmp_path / "test_x.py").write_text(textwrap.dedent("""\
        import pytest

        def test_unmarked(slurm):
            pass

        @pytest.mark.cluster
        def test_marked(slurm):
            pass
        """))
    ini = "[pytest]\nmarkers =\n    cluster: needs Slurm\n"
    (tmp_path / "pytest.ini").write_text(ini)
    res = _pytest("-m", "not cluster", str(tmp_path), cwd=tmp_path)
    assert res.returncode == 1, res.stdout
    assert "test_unmarked uses the slurm fixture without @pytest.mark.cluster" in res.stdout
    assert "1 deselected" in res.stdout  # the marked one never ran: no daemon was started
