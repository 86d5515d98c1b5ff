"""`ixhpc status RUN`: every job and point of a run, from one squeue and one sacct call.

With Slurm accounting down the states come from squeue alone: said on stderr (a field in
``--json``), jobs the queue no longer lists show as UNKNOWN.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ixhpc import rundir
    from ixhpc.runstate import JobStatus


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run directory or run id (under results/)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--watch", nargs="?", const=10.0, type=float, metavar="SECONDS",
                        help="refresh every SECONDS (default 10) until every job has ended")


def run(args: argparse.Namespace) -> int:
    from ixhpc import rundir

    path = rundir.find(args.run)
    return show(path, rundir.load(path), args.json, args.watch)


def show(path: Path, manifest: rundir.Manifest, as_json: bool, watch: float | None = None) -> int:
    """Print the run's status (every ``watch`` seconds until no job is live); exit code 1 when
    a job has ended with points missing."""
    from ixhpc import runstate, slurm

    while True:
        status = runstate.run_status(path, manifest)
        jobs = status.jobs
        if as_json:  # without accounting: a field, and no line on stderr to parse around
            print(json.dumps({"run_id": manifest.run_id, "accounting_available": status.accounting,
                              "accounting_error": status.accounting_error,
                              "jobs": [j.as_dict() for j in jobs]}), flush=True)
        else:
            if not status.accounting:
                print(status.accounting_note(), file=sys.stderr)
            _print_table(manifest.run_id, jobs)
        if not watch or not any(slurm.is_live(j.state) for j in jobs):
            break
        time.sleep(watch)
    failed = any(j.missing and slurm.is_terminal(j.state) for j in jobs)
    return 1 if failed else 0


def _print_table(run_id: str, jobs: list[JobStatus]) -> None:
    done = sum(j.points_done for j in jobs)
    total = sum(j.points_total for j in jobs)
    print(f"run {run_id}: {done}/{total} points have results")
    width = max([len(j.key) for j in jobs] + [3])
    print(f"{'JOB':{width}}  {'JOB ID':10}  {'STATE':13}  {'POINTS':7}  NODES / REASON")
    invalid = sum(len(j.invalid) for j in jobs)
    if invalid:
        print(f"{invalid} point(s) judged invalid by the validity gate (`ixhpc resume --invalid` reruns them)")
    for j in jobs:
        extra = " ".join(x for x in (j.nodes, j.reason, f"invalid: {', '.join(j.invalid)}" if j.invalid else "")
                         if x)
        print(f"{j.key:{width}}  {j.job_id or '-':10}  {j.state:13}  "
              f"{f'{j.points_done}/{j.points_total}':7}  {extra}")
