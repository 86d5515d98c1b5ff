"""The run's code bundle: the ixhpc modules that run inside a job's containers, as one zipapp.

A job's roles and benchmark client never import ixhpc from the login node's installation (a
container does not see it, and it may change while jobs wait): ``write`` puts the modules
they need in the run directory once per run (``rundir.Layout.bundle``), and the scripts run

    python3 BUNDLE -m ixhpc.bench ARGS...     (or -c CODE ARGS...)

which reads like ``python3 -m`` with the archive first on ``sys.path``: no environment
variable has to cross into the container, and the image's own ``PYTHONPATH`` stays as it is.
The container needs a ``python3`` (3.11 or newer) and the third-party packages of
``REQUIRES``, which engine images have. Host-side job steps (``ixhpc.job.steps``) keep
using the installed package through the job's ``IXHPC_PYTHON``.

The modules are the import closure of ``ENTRY_POINTS`` found by reading their ``import``
statements, so a new import is bundled without a list to keep. The archive is
deterministic (sorted entries, fixed timestamps): the same code gives the same bytes.
"""

from __future__ import annotations

import ast
import io
import sys
import zipfile
from pathlib import Path

from ixhpc import atomic

PACKAGE = "ixhpc"
ROOT = Path(__file__).resolve().parent          # the installed ixhpc package
ENTRY_POINTS = ("ixhpc.bench", "ixhpc.sim", "ixhpc.standins",  # run as `-m` inside containers
                "ixhpc.evals")  # the eval-install step (ixhpc.evals.client, stdlib only)
# Imports from outside the standard library, by entry point; uvloop is used when present.
REQUIRES = {"ixhpc.bench": ("numpy",), "ixhpc.sim": ("aiohttp",),
            "ixhpc.standins": ("aiohttp", "yaml"),  # engine stand-ins: the local profile only
            "ixhpc.evals": ()}
OPTIONAL = ("uvloop",)
_EPOCH = (1980, 1, 1, 0, 0, 0)                   # the earliest time a zip entry can carry

_MAIN = '''\
"""`python3 BUNDLE -m MODULE ARG...` or `-c CODE ARG...`: python's own flags, with this
archive first on sys.path (see ixhpc.bundle)."""
import runpy
import sys

if len(sys.argv) < 3 or sys.argv[1] not in ("-m", "-c"):
    sys.exit(f"usage: python3 {sys.argv[0]} -m MODULE [ARG...] | -c CODE [ARG...]")
_flag, _target, *_args = sys.argv[1:]
if _flag == "-m":
    sys.argv = [_target, *_args]
    runpy.run_module(_target, run_name="__main__", alter_sys=True)
else:
    sys.argv = ["-c", *_args]
    exec(compile(_target, "<string>", "exec"), {"__name__": "__main__"})
'''


def _file(module: str) -> Path | None:
    """The source file of an ixhpc module or package, None if there is none."""
    base = ROOT.joinpath(*module.split(".")[1:])
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


def _imports(module: str, path: Path) -> tuple[set[str], set[str]]:
    """(ixhpc modules, other top-level names) that ``module``'s source imports, lazily or not."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    ours: set[str] = set()
    others: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}".rstrip(".")
            # `from pkg import name`: name may be a submodule; _file tells.
            names = [base, *(f"{base}.{a.name}" for a in node.names)]
        else:
            continue
        for name in names:
            top = name.partition(".")[0]
            if top == PACKAGE:
                ours.add(name)
            elif top != "__future__":
                others.add(top)
    return ours, others


def closure(entry_points: tuple[str, ...] = ENTRY_POINTS) -> tuple[dict[str, Path], set[str]]:
    """Every ixhpc module the entry points import (archive name -> file), and the other
    top-level names they import that are not in the standard library."""
    todo = [*entry_points, *(f"{e}.__main__" for e in entry_points)]
    files: dict[str, Path] = {}
    third_party: set[str] = set()
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = _file(module)
        if path is None:
            continue                     # an imported name, not a module
        files[path.relative_to(ROOT.parent).as_posix()] = path
        parts = module.split(".")
        ours, others = _imports(module, path)
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages
        todo += sorted(ours)
        third_party |= {n for n in others if n not in sys.stdlib_module_names}
    return files, third_party


def build() -> bytes:
    """The zipapp's bytes: the same for the same code."""
    files, _ = closure()
    entries = {"__main__.py": _MAIN.encode(), **{name: path.read_bytes() for name, path in files.items()}}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, entries[name])
    return out.getvalue()


def write(path: Path) -> Path:
    """Write the bundle to ``path`` (``rundir.Layout(run).bundle``)."""
    atomic.write_bytes(path, build())
    return path
