"""`ixhpc resume RUN`: resubmit the jobs of a run whose points lack a valid result.

With ``--invalid``, points whose result the validity gate judged invalid are rerun too: their
files are moved aside first (``runstate.set_aside_invalid``), never deleted.

A job searching for an SLO (``ixhpc submit --slo``, ``ixhpc.slo``) is rerun once it has ended
with its search unfinished, started or not (it continues from its recorded probes), or a
probe's result missing; never while queued or running, nor once its search is done and
ingested. An invalid probe of a finished search is one of its findings (an invalid point
misses the SLO), so ``--invalid`` leaves it: to search again, submit anew.

A point with a valid HDF5 file is never run again: the job script itself skips every
concurrency already done, so a resubmitted job runs only what is missing. Jobs still
queued, running, suspended or requeued are left alone (``slurm.is_live``), and nothing is
resubmitted while Slurm accounting is unavailable (a lost job and a finished one look alike).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ixhpc.profiles import ClusterProfile
    from ixhpc.runstate import JobStatus
import json
import re

# A Slurm node name or hostlist expression (gb1, gb[1-4]), as #SBATCH --exclude takes them.
_NODE = re.compile(r"[A-Za-z0-9_.\-\[\]]+\Z")


def node_list(text: str) -> str:
    """--exclude NODES: names separated by commas and/or spaces, as Slurm's comma list."""
    names = [n for n in re.split(r"[\s,]+", text) if n]
    bad = [n for n in names if not _NODE.match(n)]
    if bad:
        raise argparse.ArgumentTypeError(f"expected node names such as gb1,gb2 or gb[1-2], "
                                         f"found {bad[0]!r}")
    return ",".join(names)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run directory or run id (under results/)")
    parser.add_argument("--exclude", default="", metavar="NODES", type=node_list,
                        help="keep the resubmitted jobs off these nodes (e.g. a node that failed)")
    parser.add_argument("--array-parallelism", type=int, default=64)
    parser.add_argument("--invalid", action="store_true",
                        help="also rerun points the validity gate judged invalid (their results are "
                             "moved aside to <point>.h5.invalid-<time>, never deleted)")
    parser.add_argument("--dry-run", action="store_true", help="show what would be resubmitted")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from ixhpc import rundir, runs, runstate, slurm, submission
    from ixhpc.errors import SlurmTransientError
    from ixhpc.shell import directive

    path = rundir.find(args.run)
    with rundir.locked(path, "resume"):
        manifest = rundir.load(path)  # under the lock: another resume may just have saved it
        status = runstate.run_status(path, manifest)
        if not status.accounting:
            # squeue lists only live jobs of this user: without sacct a job missing from it may
            # have ended, been lost, or belong to another account, and resubmitting on a guess
            # can run points twice. Refuse; `status` and `cancel` still work from squeue.
            raise SlurmTransientError(
                f"{slurm.ACCOUNTING_UNAVAILABLE} ({status.accounting_error}): resume cannot tell "
                f"a finished job from a lost one, so nothing was resubmitted; try again once "
                f"`sacct` answers (`ixhpc status {args.run}` works meanwhile)")
        statuses = {s.key: s for s in status.jobs}
        if args.invalid:  # invalid points count as missing: set aside below, then rerun
            for s in status.jobs:
                if s.search is None or not s.search.done:  # a finished search's invalid probes stand
                    s.missing = s.missing + s.invalid
        redo = [e for e in manifest.jobs if statuses[e.key].incomplete and not slurm.is_live(statuses[e.key].state)]
        aside = [] if args.dry_run else runstate.set_aside_damaged(
            path, [k for e in redo for k in statuses[e.key].missing])
        if args.invalid and not args.dry_run:
            aside += runstate.set_aside_invalid(path, [k for e in redo for k in statuses[e.key].invalid])
        jobs = []
        for entry in redo:
            opts = submission.script_options(path / entry.script)
            if args.exclude:
                opts["exclude"] = ",".join(x for x in (str(opts.get("exclude", "")), args.exclude) if x)
                directive(f"--exclude={opts['exclude']}")
            jobs.append((opts, entry))
        if not args.dry_run and jobs:
            try:
                submission.submit_groups(path, runs.batches(jobs, manifest.run_id), args.array_parallelism)
            finally:
                rundir.save(path, manifest)
            merge = statuses.get(runstate.MERGE_KEY)
            if merge and not slurm.is_live(merge.state):  # `submit --merge`: merge again at the end
                manifest.merge_job_id = submission.submit_merge(path, manifest, _profile(path))
                rundir.save(path, manifest)
    missing = sum(len(statuses[e.key].missing) for e in redo)
    if args.json:
        print(json.dumps({"run_id": manifest.run_id, "dry_run": args.dry_run,
                          "resubmitted": [{"key": e.key, "job_id": e.job_id if not args.dry_run else None,
                                           "missing": statuses[e.key].missing} for e in redo],
                          "set_aside": [str(m) for m in aside]}))
    else:
        for moved in aside:
            print(f"{'invalid' if '.invalid-' in moved.name else 'damaged'} result moved aside: {moved}")
        for e in redo:
            print(f"{'(dry run)' if args.dry_run else e.job_id:>10}  {e.key}  ({_why(statuses[e.key])})")
        print(f"run {manifest.run_id}: {len(redo)} job(s), {missing} point(s) "
              f"{'would be ' if args.dry_run else ''}resubmitted; points with results are not rerun")
    return 0


def _why(job: JobStatus) -> str:
    search = job.search
    if search is None or search.done:
        return f"{len(job.missing)} point(s) missing"
    return f"SLO search unfinished after {len(search.probes)} probe(s)" if search.started else "SLO search not started"


def _profile(path: Path) -> ClusterProfile:
    """The profile the run was submitted with (its copy in the run directory)."""
    import yaml

    from ixhpc.profiles import ClusterProfile
    from ixhpc.rundir import Layout

    return ClusterProfile.model_validate(yaml.safe_load(Layout.of(path).profile.read_text()))
