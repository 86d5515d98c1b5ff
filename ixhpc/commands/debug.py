"""`ixhpc debug RECIPE [--point KEY] [--cluster NAME] [--print]`: a point's resources from salloc
and a shell on its first node with the job's environment and role commands ready."""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    from ixhpc.runs import add_run_args

    add_run_args(parser)
    parser.add_argument("--point", default=None,
                        help="the point (or job) key to debug (default: the recipe's first job)")
    parser.add_argument("--results", type=Path, default=None,
                        help="where the debug run directory goes (default: $IXHPC_RESULTS or ./results)")
    parser.add_argument("--host", action="store_true",
                        help="open the shell on the node itself, not inside the point's container")
    parser.add_argument("--print", dest="print_only", action="store_true",
                        help="only print the salloc, shell and role commands; allocate nothing")


def run(args: argparse.Namespace) -> int:
    import os
    import shutil
    import sys

    from ixhpc import debug, rundir, runs
    from ixhpc.errors import SlurmError

    root = args.results or rundir.default_root()
    run_id = "debug-" + rundir.new_run_id(args.recipe)
    run_dir = root / run_id
    target = runs.target_from_args(args)
    plans = runs.plan(target, run_dir, run_id)
    plan = debug.select_job(plans, args.point)
    s = debug.session(plan, run_dir, args.host)
    if args.print_only:
        sys.stdout.write(debug.printed(s))
        return 0
    if shutil.which("salloc") is None:
        raise SlurmError("salloc not found on PATH: run `ixhpc debug` on a login node of the cluster")
    with rundir.create(root, run_id, "debug") as new:
        runs.write(target, new.dir, run_id, [plan])
        new.publish()
    debug.write(s)
    others = f" ({len(plans)} jobs in this recipe; choose one with --point)" if len(plans) > 1 else ""
    print(f"ixhpc debug: job {plan.key}{others}\n  run directory {run_dir}\n  asking salloc for "
          f"{plan.sbatch['nodes']} node(s) on partition {plan.sbatch['partition']}", flush=True)
    os.execvp("salloc", s.salloc)
    return 0  # not reached
