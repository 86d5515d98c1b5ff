"""`ixhpc cancel RUN`: scancel the jobs of one run, and only those (ids from its manifest)."""

from __future__ import annotations

import argparse
import json
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run directory or run id (under results/)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from ixhpc import rundir, slurm

    path = rundir.find(args.run)
    manifest = rundir.load(path)
    states = slurm.states(manifest.slurm_ids)  # the merge job too: nothing of the run is left
    live = sorted(j for j, s in states.items() if slurm.is_live(s.state))
    slurm.cancel(live)
    if args.json:
        print(json.dumps({"run_id": manifest.run_id, "cancelled": live,
                          "accounting_available": states.accounting,
                          "accounting_error": states.accounting_error}))
    else:
        if not states.accounting:  # squeue lists every live job: the cancel is still whole
            print(f"warning: {slurm.ACCOUNTING_UNAVAILABLE} ({states.accounting_error}); "
                  "cancelled the jobs squeue lists", file=sys.stderr)
        print(f"run {manifest.run_id}: cancelled {len(live)} job(s)"
              + (f": {' '.join(live)}" if live else " (none was queued or running)"))
    return 0
