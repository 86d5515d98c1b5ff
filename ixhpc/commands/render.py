"""`ixhpc render RECIPE [--cluster NAME] -o DIR`: scripts and manifest, nothing submitted."""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    from ixhpc.runs import add_run_args

    add_run_args(parser)
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="directory to create (a run directory, as submit would make)")


def run(args: argparse.Namespace) -> int:
    from ixhpc import rundir, runs

    out = args.output
    target = runs.target_from_args(args)
    plans = runs.plan(target, out, out.name)
    with rundir.create(out.parent, out.name, "render") as new:
        manifest = runs.write(target, new.dir, out.name, plans)
        new.publish()
    for job in manifest.jobs:
        print(f"{out / job.script}  ({job.kind}, {job.nodes} node(s), "
              f"concurrencies {' '.join(str(p.conc) for p in job.points)})")
    print(f"{len(manifest.jobs)} job script(s) and {rundir.Layout.of(out).manifest} written; nothing submitted")
    return 0
