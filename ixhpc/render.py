"""Rendering job plans into sbatch scripts (Jinja2 templates in sbatch_templates/).

The templates are package data of ``ixhpc``: ``ixhpc/sbatch_templates`` is a link to the
repository's top-level folder, and wheels and sdists carry the files themselves, so one
loader serves a checkout, an editable install and an installed wheel.

Values are quoted before they reach a template (``ixhpc.shell``); the templates add the
``q`` filter for the few plain variables. Rendering also writes, per concurrency, the
point's static metadata that the job adds to its HDF5 file.
"""

from __future__ import annotations

import functools
import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from ixhpc import atomic
from ixhpc.placement import PORT_BASE_RULE, JobPlan
from ixhpc.rundir import Layout, ScriptPaths

if TYPE_CHECKING:
    import jinja2  # imported when first used: the CLI starts without it

TEMPLATES = "sbatch_templates"  # inside the ixhpc package


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("ixhpc", TEMPLATES),
        undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True,
        trim_blocks=True, lstrip_blocks=True,
        # `{#` starts a Jinja comment by default, and bash writes `${#array[@]}`.
        comment_start_string="{%#", comment_end_string="#%}",
    )
    env.filters["q"] = shlex.quote
    env.globals["paths"] = ScriptPaths  # per-job file names, spelled by the run layout only
    env.globals["port_base_rule"] = PORT_BASE_RULE
    return env


def render(plan: JobPlan) -> str:
    name = ("inferencex_script.sh.j2" if plan.script else  # script mode (ixhpc.inferencex_scripts)
            "disagg.sh.j2" if plan.kind == "disagg" else "single_node.sh.j2")
    return render_template(name, plan=plan)


def render_template(name: str, **context: object) -> str:
    return _environment().get_template(name).render(**context)


def write_job(run_dir: Path, plan: JobPlan) -> Path:
    """The job's script under scripts/ and its per-concurrency metadata under points/."""
    layout = Layout.of(run_dir)
    script = layout.script(plan.key)
    atomic.write_text(script, render(plan), mode=0o755 & ~atomic.umask())
    layout.point_dir(plan.key).mkdir(parents=True, exist_ok=True)
    layout.log_dir(plan.key).mkdir(parents=True, exist_ok=True)
    if plan.standins:  # the local profile: the engines' commands run ixhpc's stand-ins
        from ixhpc.standins import files

        files.write(run_dir, plan)
    agentic = plan.points[0].agentic
    if agentic is not None and agentic.traces is None:  # the replay's synthetic corpus, from its seed
        from ixhpc.bench.agentic import traces

        with atomic.atomic_path(layout.traces(plan.key)) as tmp:
            traces.write_traces(tmp, traces.generate(agentic.synthetic_traces, seed=agentic.seed,
                                                     max_context=agentic.synthetic_max_context))
    for conc in plan.concs:
        meta = {"result_key": plan.result_key(conc), "metadata": plan.metadata(conc)}
        atomic.write_text(layout.meta(plan.key, conc), json.dumps(meta, indent=1, sort_keys=True) + "\n")
    if plan.evals is not None and plan.evals.local_task:  # ixhpc's arithmetic task (ixhpc.evals.tasks)
        from ixhpc.evals import tasks

        seen_as = Layout.of(dict(plan.variables)["RUN_DIR"]).evals_dir  # the run's final name
        tasks.write_local_task(layout.evals_dir, seen_as)
    return script

