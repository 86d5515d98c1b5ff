"""The run directory's layout is spelled in one place: ``ixhpc.rundir.Layout``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from ixhpc.rundir import Layout, ScriptPaths

REPO = Path(__file__).resolve().parents[1]
# Every file and directory name a run directory holds, as Layout spells it.
NAMES = [Layout.MANIFEST, Layout.RECIPE, Layout.PROFILE, Layout.BUNDLE, Layout.MERGED,
         Layout.JOB_LOG, Layout.MERGE_LOG, Layout.DEBUG_LAUNCHER, Layout.DEBUG_ROLES,
         Layout.DEBUG_NODES, *(n.split("{")[0] for n in (Layout.META, Layout.BENCH_JSON, Layout.BENCH_LOG)),
         Layout.SCRIPT.split("}")[-1]]
DIRS = [Layout.SCRIPTS, Layout.POINTS, Layout.LOGS, Layout.RESULTS, Layout.SUBMITIT]


def _joined_dirs(path: Path) -> list[tuple[int, str]]:
    """Directory names joined onto a path: ``run / "logs"``."""
    return [(n.lineno, side.value) for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div)
            for side in (n.left, n.right) if isinstance(side, ast.Constant) and side.value in DIRS]


def _string_literals(path: Path) -> list[tuple[int, str]]:
    """String constants of a module, docstrings excluded (prose may name files)."""
    tree = ast.parse(path.read_text())
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings]


def test_run_file_names_are_spelled_only_by_the_layout() -> None:
    spelled = []
    for path in sorted((REPO / "ixhpc").rglob("*.py")):
        if path.name == "rundir.py":
            continue
        for line, text in _string_literals(path):
            for name in NAMES:
                if name in text:
                    spelled.append(f"{path.relative_to(REPO)}:{line}: {name!r} in {text!r}")
        spelled += [f"{path.relative_to(REPO)}:{line}: directory {d!r}" for line, d in _joined_dirs(path)]
    for path in sorted((REPO / "sbatch_templates").glob("*.j2")):
        code = [ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#")]
        for ln in code:
            for name in NAMES:
                if name in ln:
                    spelled.append(f"{path.relative_to(REPO)}: {name!r} in {ln.strip()!r}")
    assert not spelled, "run-directory names outside ixhpc.rundir.Layout:\n" + "\n".join(spelled)


def test_layout_paths_and_script_words_agree(tmp_path: Path) -> None:
    lay = Layout.of(tmp_path / "run")
    variables = dict(lay.variables("job-a"))
    # The script's words expand, with the script's variables, to the layout's own paths.
    for word, path in ((ScriptPaths.bench_json("c"), lay.bench_json("job-a", 8)),
                       (ScriptPaths.bench_log("c"), lay.log_dir("job-a") / Layout.BENCH_LOG.format(conc=8)),
                       (ScriptPaths.role_log("decode-1"), lay.role_log("job-a", "decode-1")),
                       (ScriptPaths.nodes_file(), lay.debug_file(Layout.DEBUG_NODES)),
                       (ScriptPaths.bundle(), lay.bundle)):
        expanded = re.sub(r"\$\{(\w+)\}", lambda m: {**variables, "c": "8"}[m.group(1)], word.strip('"'))
        assert expanded == str(path)
    assert lay.job_log_pattern("job-a").name.replace("%j", "12") == "job-12.out"
    assert lay.script(Layout.SCRIPT.format(job="x")[:-7]) == lay.root / Layout.script_rel("x")


def test_job_logs_are_found_oldest_first(tmp_path: Path) -> None:
    import os

    lay = Layout.of(tmp_path)
    lay.log_dir("j").mkdir(parents=True)
    for i, jid in enumerate(("20", "3")):
        p = Path(str(lay.job_log_pattern("j")).replace("%j", jid))
        p.write_text("x")
        os.utime(p, (1000 + i, 1000 + i))
    lay.role_log("j", "server").write_text("y")
    assert [p.name for p in lay.job_logs("j")] == ["job-20.out", "job-3.out"]
    assert lay.role_logs("j") == [lay.role_log("j", "server")]
