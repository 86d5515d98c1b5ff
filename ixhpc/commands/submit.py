"""`ixhpc submit RECIPE [--cluster NAME] [filters]`: render a run and submit it via submitit."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ixhpc.placement import JobPlan
    from ixhpc.rundir import Manifest
    from ixhpc.runs import Batch


def configure(parser: argparse.ArgumentParser) -> None:
    from ixhpc.rundir import Layout
    from ixhpc.runs import add_run_args, add_slo_arg

    add_run_args(parser)
    add_slo_arg(parser)
    parser.add_argument("--results", type=Path, default=None,
                        help="where run directories go (default: $IXHPC_RESULTS or ./results)")
    parser.add_argument("--dry-run", action="store_true",
                        help="render everything and show what would be submitted; write and submit nothing")
    parser.add_argument("--array-parallelism", type=int, default=64,
                        help="at most this many tasks of a job array run at once (default 64)")
    parser.add_argument("--wait", action="store_true",
                        help="block until every job has ended, then show the status")
    parser.add_argument("--after", metavar="DEPENDENCY", default=None,
                        help="start only after other Slurm jobs: JOBID[,JOBID...] (each must "
                             "succeed) or a Slurm dependency such as afterany:123:124")
    parser.add_argument("--merge", action="store_true",
                        help="also submit a job that merges the run's results into "
                             f"RUN/{Layout.MERGED} once every job of the run has ended")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from ixhpc import rundir, runs, submission

    root = args.results or rundir.default_root()
    run_id = rundir.new_run_id(args.recipe)
    run_dir = root / run_id
    after = submission.dependency(args.after) if args.after else None
    target = runs.target_from_args(args)
    plans = runs.plan(target, run_dir, run_id)
    with rundir.create(root, run_id, "submit") as new:
        manifest = runs.write(target, new.dir, run_id, plans)
        if target.slo:  # status knows each job searches before its first step (ixhpc.slo.seed)
            _seed_searches(new.dir, plans)
        entries = {e.key: e for e in manifest.jobs}
        batch = runs.batches([(p.sbatch, entries[p.key]) for p in plans], run_id)
        for opts, _ in batch:
            if after:  # for this submission only: not in the scripts, which resume reuses
                opts["dependency"] = after
        if args.dry_run:  # rendered in full, then left unpublished: nothing stays behind
            _show_dry_run(run_dir, batch, args.json)
            return 0
        new.publish()
        try:
            submission.submit_groups(run_dir, batch, args.array_parallelism)
        finally:
            rundir.save(run_dir, manifest)  # whatever was submitted is recorded, even on failure
        if args.merge:
            manifest.merge_job_id = submission.submit_merge(run_dir, manifest, target.profile)
            rundir.save(run_dir, manifest)
    _report(run_dir, manifest, args.json)
    if args.wait:
        return _wait(run_dir, args.json)
    return 0


def _seed_searches(run_dir: Path, plans: Sequence[JobPlan]) -> None:
    from ixhpc import rundir, slo

    layout = rundir.Layout.of(run_dir)
    for plan in plans:
        if plan.slo:
            slo.seed(layout.slo_search(plan.key), slo.parse(plan.slo), plan.concs)


def _report(run_dir: Path, manifest: Manifest, as_json: bool) -> None:
    from ixhpc import rundir

    if as_json:
        print(json.dumps({"run_id": manifest.run_id, "run_dir": str(run_dir),
                          "jobs": [{"key": e.key, "job_id": e.job_id} for e in manifest.jobs],
                          "merge_job_id": manifest.merge_job_id}))
        return
    for e in manifest.jobs:
        print(f"{e.job_id:>10}  {e.key}")
    if manifest.merge_job_id:
        print(f"{manifest.merge_job_id:>10}  merge: writes {rundir.Layout.of(run_dir).merged} once every job has ended")
    print(f"run {manifest.run_id}: {len(manifest.jobs)} job(s) submitted; "
          f"follow it with `ixhpc status {run_dir}`")


def _show_dry_run(run_dir: Path, batch: list[Batch], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"run_dir": str(run_dir), "sbatch_calls": [
            {"options": opts, "jobs": [e.key for e in entries]} for opts, entries in batch]}))
        return
    for opts, entries in batch:
        kind = f"job array of {len(entries)}" if len(entries) > 1 else "job"
        print(f"sbatch ({kind}): " + " ".join(f"--{k}" if v is True else f"--{k}={v}"
                                              for k, v in opts.items()))
        for e in entries:
            print(f"    {run_dir / e.script}")
    print(f"dry run: {len(batch)} sbatch call(s) for {run_dir}; nothing written or submitted "
          f"(`ixhpc render` keeps the scripts)")


def _wait(run_dir: Path, as_json: bool) -> int:
    from ixhpc import rundir, runstate, slurm
    from ixhpc.commands import status

    manifest = rundir.load(run_dir)
    while any(slurm.is_live(j.state) for j in runstate.job_statuses(run_dir, manifest)):
        time.sleep(2)
    return status.show(run_dir, manifest, as_json)
