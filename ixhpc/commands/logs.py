"""`ixhpc logs RUN [--point KEY] [--role NAME] [-f]`: the logs of a run, a job or one role."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ixhpc import rundir


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of lines >= 0, found {text!r}")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run directory or run id (under results/)")
    parser.add_argument("--point", help="a job key or point key (prefix match)")
    from ixhpc.rundir import Layout

    client = Path(Layout.BENCH_LOG.format(conc=64)).stem
    parser.add_argument("--role", help=f"role log: job, server, prefill-0, decode-1, router, {client} ...")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing as the log grows")
    parser.add_argument("-n", "--lines", type=_count, default=50, help="lines from the end (default 50)")
    parser.add_argument("--json", action="store_true", help="list the log files as JSON")


def run(args: argparse.Namespace) -> int:
    from ixhpc import rundir
    from ixhpc.errors import ConfigError, UserError

    path = rundir.find(args.run)
    manifest = rundir.load(path)
    jobs = [e for e in manifest.jobs
            if not args.point or e.key.startswith(args.point)
            or any(p.key.startswith(args.point) for p in e.points)]
    if not jobs:
        raise ConfigError(f"no job or point matching {args.point!r} in run {manifest.run_id}")
    layout = rundir.Layout.of(path)
    files = [f for e in jobs for f in _role_logs(layout, e.key, args.role)]
    if args.json:
        print(json.dumps([str(f) for f in files]))
        return 0
    if not files:
        raise UserError(f"no log yet for {args.point or 'this run'}"
                        + (f" role {args.role}" if args.role else ""))
    live = [e.job_id for e in jobs if e.job_id]
    if args.follow and _any_live(live):
        return _follow(files, args.lines, live)
    for f in files:
        print(f"==> {f} <==")
        if args.lines:
            lines = f.read_text(errors="replace").splitlines()
            print("\n".join(lines[len(lines) - args.lines:]))
    return 0


def _any_live(job_ids: list[str]) -> bool:
    from ixhpc import slurm

    return any(slurm.is_live(s.state) for s in slurm.states(job_ids).values())


def _follow(files: list[Path], lines: int, job_ids: list[str], poll: float = 5.0) -> int:
    """`tail -F` the logs while any of the jobs is live; return once none is."""
    import subprocess
    import time

    tail = subprocess.Popen(["tail", "-n", str(lines), "-F", *map(str, files)])
    try:
        while tail.poll() is None and _any_live(job_ids):
            time.sleep(poll)
        time.sleep(1.0)  # the last lines the job wrote
    finally:
        tail.terminate()
        tail.wait()
    return 0


def _role_logs(layout: rundir.Layout, job: str, role: str | None) -> list[Path]:
    roles, batch = layout.role_logs(job), layout.job_logs(job)
    if role == "job":
        return batch
    if role:
        return [f for f in roles if f == layout.role_log(job, role)]
    return roles + batch
