"""Making a run: recipe + cluster profile -> run points -> job plans -> a run directory.

`render` stops after writing the directory; `submit` then hands the scripts to Slurm
through submitit (``ixhpc.submission``) and records the job ids in the manifest.
Validation happens before anything is written: a bad recipe leaves no trace.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from ixhpc import placement, render, rundir
from ixhpc.errors import UserError

DEFAULT_CLUSTER = "local"


def add_run_args(parser: argparse.ArgumentParser) -> None:
    from ixhpc.sweep import add_filter_args

    parser.add_argument("recipe", type=Path, help="recipe file (an InferenceX master config is one)")
    parser.add_argument("--cluster", default=os.environ.get("IXHPC_CLUSTER", DEFAULT_CLUSTER),
                        help="cluster profile (default: $IXHPC_CLUSTER or 'local')")
    parser.add_argument("--profiles", type=Path, default=None,
                        help="cluster profiles file (default: $IXHPC_PROFILES or "
                             "~/.config/ixhpc/clusters.yaml)")
    add_filter_args(parser)


def plan(args: argparse.Namespace, run_dir: Path, run_id: str):
    """Validate everything and plan the jobs; write nothing."""
    from ixhpc.profiles import get_profile
    from ixhpc.recipe import load_recipe_files
    from ixhpc.sweep import expand, filters_from_args

    profile = get_profile(args.cluster, args.profiles)
    recipes = load_recipe_files([args.recipe])
    points = expand(recipes, filters_from_args(args), cluster=profile)
    if not points:
        raise UserError(f"{args.recipe}: no run point is left after the filters", 2)
    plans = [placement.plan_job(g, profile, run_dir, run_id) for g in placement.group_points(points)]
    for p in plans:
        render.render(p)  # a template error must surface before the directory exists
    return profile, plans


def write(args: argparse.Namespace, run_dir: Path, run_id: str, profile, plans) -> rundir.Manifest:
    import yaml

    from ixhpc import __version__, atomic

    rundir.create(run_dir.parent, run_dir.name)
    shutil.copyfile(args.recipe, run_dir / "recipe.yaml")
    atomic.write_text(run_dir / "profile.yaml",
                      yaml.safe_dump(profile.model_dump(mode="json", by_alias=True), sort_keys=False))
    jobs = []
    for p in plans:
        render.write_job(run_dir, p)
        jobs.append(rundir.JobEntry(
            key=p.key, kind=p.kind, script=f"scripts/{p.script_name}", partition=str(p.sbatch["partition"]),
            nodes=int(p.sbatch["nodes"]), gpus=int(p.points[0].gpus or 0),
            points=[rundir.PointRef(key=p.result_key(c), conc=c) for c in p.concs]))
    manifest = rundir.Manifest(run_id=run_id, created=rundir.now(), ixhpc_version=__version__,
                               recipe=str(args.recipe), cluster=profile.name, jobs=jobs)
    rundir.save(run_dir, manifest)
    return manifest


def submission_groups(plans) -> list[tuple[dict, list[str]]]:
    """Jobs that can share one `sbatch` (a job array): single-node, same allocation."""
    groups: dict[str, tuple[dict, list[str]]] = {}
    for p in plans:
        opts = {k: v for k, v in p.sbatch.items() if k not in ("job-name", "output")}
        ident = repr(sorted(opts.items())) if p.kind == "single" else f"multi:{p.key}"
        groups.setdefault(ident, (opts, []))[1].append(p.key)
    return list(groups.values())
