"""`ixhpc render RECIPE [--cluster NAME] -o DIR`: scripts and manifest, nothing submitted;
`ixhpc render RECIPE --plan-json`: every process of every job as JSON, nothing written."""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    from ixhpc.runs import add_run_args, add_slo_arg

    add_run_args(parser)
    add_slo_arg(parser)
    out = parser.add_mutually_exclusive_group(required=True)
    out.add_argument("-o", "--output", type=Path,
                     help="directory to create (a run directory, as submit would make)")
    out.add_argument("--plan-json", action="store_true",
                     help="print the plan as data (every process, its argv, env, GPUs, ports, "
                          "files; the benchmark steps) as JSON; write nothing")


def run(args: argparse.Namespace) -> int:
    from ixhpc import rundir, runs

    target = runs.target_from_args(args)
    if args.plan_json:
        return _plan_json(args, target)
    out = args.output
    plans = runs.plan(target, out, out.name)
    with rundir.create(out.parent, out.name, "render") as new:
        manifest = runs.write(target, new.dir, out.name, plans)
        new.publish()
    for job in manifest.jobs:
        print(f"{out / job.script}  ({job.kind}, {job.nodes} node(s), "
              f"concurrencies {' '.join(str(p.conc) for p in job.points)})")
    print(f"{len(manifest.jobs)} job script(s) and {rundir.Layout.of(out).manifest} written; nothing submitted")
    return 0


def _plan_json(args: argparse.Namespace, target: object) -> int:
    import json

    from ixhpc import plan_data, rundir, runs

    assert isinstance(target, runs.RunTarget)
    run_id = rundir.new_run_id(args.recipe)
    run_dir = rundir.default_root() / run_id   # where submit would put it; nothing is written
    plans = runs.plan(target, run_dir, run_id)
    recipe_env = sorted({name for p in plans for pt in p.points for name in pt.ixhpc.env_names()}
                        | {name for p in plans for name in p.recipe_env})
    doc = plan_data.document(run_id, target.profile.name, plans, recipe_env,
                             target.profile.gpu_visibility_env)
    print(json.dumps(doc, indent=1))
    return 0
