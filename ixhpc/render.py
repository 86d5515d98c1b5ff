"""Rendering job plans into sbatch scripts (Jinja2 templates in sbatch_templates/).

Values are quoted before they reach a template (``ixhpc.shell``); the templates add the
``q`` filter for the few plain variables. Rendering also writes, per concurrency, the
point's static metadata that the job adds to its HDF5 file.
"""

from __future__ import annotations

import functools
import json
import shlex
from pathlib import Path

from ixhpc import atomic
from ixhpc.placement import JobPlan

TEMPLATES = Path(__file__).resolve().parents[1] / "sbatch_templates"


@functools.lru_cache(maxsize=1)
def _environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True,
        trim_blocks=True, lstrip_blocks=True,
        # `{#` starts a Jinja comment by default, and bash writes `${#array[@]}`.
        comment_start_string="{%#", comment_end_string="#%}",
    )
    env.filters["q"] = shlex.quote
    return env


def render(plan: JobPlan) -> str:
    name = "disagg.sh.j2" if plan.kind == "disagg" else "single_node.sh.j2"
    return render_template(name, plan=plan)


def render_template(name: str, **context) -> str:
    return _environment().get_template(name).render(**context)


def write_job(run_dir: Path, plan: JobPlan) -> Path:
    """The job's script under scripts/ and its per-concurrency metadata under points/."""
    script = run_dir / "scripts" / plan.script_name
    atomic.write_text(script, render(plan), mode=0o755 & ~atomic.umask())
    point_dir = run_dir / "points" / plan.key
    point_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "logs" / plan.key).mkdir(parents=True, exist_ok=True)
    for conc in plan.concs:
        meta = {"result_key": plan.result_key(conc), "metadata": plan.metadata(conc)}
        atomic.write_text(point_dir / f"meta-c{conc}.json", json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return script

