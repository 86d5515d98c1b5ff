"""The stand-in files render writes into a run directory (profiles with ``engine-standins``).

``RUN/standins/bin``: ``vllm``, ``trtllm-serve``, ``trtllm-llmapi-launch``, ``etcd``,
``nats-server``, ``numactl``, ``mooncake_master`` (and ``python3``, the job's Python, which has
the simulated engine's packages);
``RUN/standins/lib``: ``sglang.launch_server``, ``sglang_router.launch_router``,
``dynamo.frontend|sglang|vllm|trtllm``, ``atom.entrypoints.openai_server``; each runs
``ixhpc.standins`` from the run's bundle. ``RUN/standins/jobs/<job>.json``: the job's config,
the flag tables of the releases its image implies (``ixhpc.engine_flags``, resolved here,
on the submitting host) and the simulated engine's settings.

Not part of the bundle: this module runs at render time only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ixhpc import atomic
from ixhpc.frameworks import FRAMEWORKS
from ixhpc.rundir import Layout
from ixhpc.standins import commands, flagtable

if TYPE_CHECKING:
    from ixhpc.placement import JobPlan

EXECUTABLES = ("vllm", "trtllm-serve", "trtllm-llmapi-launch", "etcd", "nats-server", "numactl",
               "mooncake_master")
MODULES = tuple(c for c in commands.COMMANDS if "." in c)
# ixhpc's engine family -> the ixhpc.engine_flags families its roles' commands belong to.
FLAG_FAMILIES: dict[str, tuple[str, ...]] = {
    "sglang": ("sglang", "sglang_router"), "vllm": ("vllm",), "trt": ("trt",), "atom": ("atom",),
    "dynamo-sglang": ("dynamo",), "dynamo-vllm": ("dynamo",), "dynamo-trt": ("dynamo", "trt"), "sim": (),
}
_COMMANDS_OF = {fam: [c for c, spec in commands.COMMANDS.items() if spec.family == fam]
                for fam in ("sglang", "sglang_router", "vllm", "trt", "dynamo", "atom")}
_COMMANDS_OF["trt"].append("llm_api_options")


def _executable(name: str, bundle: str) -> str:
    return (f"#!/bin/sh\n# ixhpc engine stand-in (local profile only): `{name}` runs ixhpc's simulated "
            f"engine (ixhpc.standins).\nhere=$(cd \"$(dirname \"$0\")\" && pwd)\n"
            f"exec \"${{IXHPC_STANDIN_PYTHON:?set by the job script}}\" \"$here/{bundle}\" "
            f"-m ixhpc.standins {name} \"$@\"\n")


_PYTHON = ("#!/bin/sh\n# ixhpc engine stand-ins (local profile only): `python3` is the job's Python, "
           "which runs them.\nexec \"${IXHPC_STANDIN_PYTHON:?set by the job script}\" \"$@\"\n")


def _module(name: str, bundle: str) -> str:
    return (f'"""ixhpc engine stand-in (local profile only): `python3 -m {name}` runs ixhpc\'s '
            f'simulated engine."""\nimport os\nimport sys\n\nif __name__ == "__main__":\n'
            f"    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), {bundle!r}))\n"
            f"    from ixhpc.standins.main import main\n\n"
            f"    sys.exit(main([{name!r}, *sys.argv[1:]]))\n")


def write_programs(layout: Layout) -> None:
    """bin/ and lib/: the same for every job of the run."""
    layout.standins_bin.mkdir(parents=True, exist_ok=True)
    for name in EXECUTABLES:
        rel = os.path.relpath(layout.bundle, layout.standins_bin)
        atomic.write_text(layout.standins_bin / name, _executable(name, rel), mode=0o755 & ~atomic.umask())
    atomic.write_text(layout.standins_bin / "python3", _PYTHON, mode=0o755 & ~atomic.umask())
    for name in MODULES:
        *packages, leaf = name.split(".")
        where = layout.standins_lib.joinpath(*packages)
        where.mkdir(parents=True, exist_ok=True)
        for i in range(1, len(packages) + 1):
            init = layout.standins_lib.joinpath(*packages[:i], "__init__.py")
            if not init.exists():
                atomic.write_text(init, '"""ixhpc engine stand-ins (local profile only)."""\n')
        atomic.write_text(where / f"{leaf}.py", _module(name, os.path.relpath(layout.bundle, where)))


def family_tables(family: str, image: str) -> dict[str, Any]:
    """One family's flag tables for the release ``image`` implies (or the nearest known one)."""
    engine_flags = flagtable.load_engine_flags()
    if engine_flags is None:
        return {"version": None, "source": flagtable.FALLBACK_SOURCE, "warning": None,
                "commands": {c: flagtable.to_json(t) for c, t in flagtable.FALLBACK[family].items()}}
    wanted = engine_flags.version_from_image(family, image)
    version, warning = engine_flags.resolve(family, wanted)
    known = engine_flags.commands(family, version)
    tables = {c: flagtable.to_json(flagtable.from_engine_flags(engine_flags.flags(family, version, c)))
              for c in _COMMANDS_OF[family] if c in known}
    return {"version": version, "source": engine_flags.source(family, version), "warning": warning,
            "commands": tables}


def job_config(plan: JobPlan) -> dict[str, Any]:
    p = plan.points[0]
    family = FRAMEWORKS[p.framework]
    sim = p.ixhpc.sim
    settings: dict[str, Any] = {"precision": p.precision, "gpu": _gpu(p.runner)}
    if sim is not None:
        settings.update({k: v for k, v in sim.model_dump().items() if v is not None})
    return {"job": plan.key, "image": p.image,
            "families": {f: family_tables(f, p.image) for f in FLAG_FAMILIES[family]},
            "sim": settings}


def _gpu(runner: str) -> str | None:
    from ixhpc.sim.model import GPUS

    head = runner.removeprefix("cluster:").split("-")[0].upper()  # agentic rows: cluster:h200-...
    return head if head in GPUS else None


def write(run_dir: Path, plan: JobPlan) -> Path:
    """Everything the job's stand-ins need; returns the job's config file."""
    layout = Layout.of(run_dir)
    write_programs(layout)
    path = layout.standin_config(plan.key)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, json.dumps(job_config(plan), indent=1, sort_keys=True) + "\n")
    return path
