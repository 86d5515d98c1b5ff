"""`ixhpc logs RUN [--point KEY] [--role NAME] [-f]`: the logs of a run, a job or one role."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run directory or run id (under results/)")
    parser.add_argument("--point", help="a job key or point key (prefix match)")
    parser.add_argument("--role", help="role log: job, server, prefill-0, decode-1, router, bench-c64 ...")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing as the log grows")
    parser.add_argument("-n", "--lines", type=int, default=50, help="lines from the end (default 50)")
    parser.add_argument("--json", action="store_true", help="list the log files as JSON")


def run(args: argparse.Namespace) -> int:
    from ixhpc import rundir
    from ixhpc.errors import UserError

    path = rundir.find(args.run)
    manifest = rundir.load(path)
    jobs = [e for e in manifest.jobs
            if not args.point or e.key.startswith(args.point)
            or any(p.key.startswith(args.point) for p in e.points)]
    if not jobs:
        raise UserError(f"no job or point matching {args.point!r} in run {manifest.run_id}")
    files = [f for e in jobs for f in _role_logs(path / "logs" / e.key, args.role)]
    if args.json:
        print(json.dumps([str(f) for f in files]))
        return 0
    if not files:
        raise UserError(f"no log yet for {args.point or 'this run'}"
                        + (f" role {args.role}" if args.role else ""), 1)
    if args.follow:
        os.execvp("tail", ["tail", "-n", str(args.lines), "-F", *map(str, files)])
    for f in files:
        print(f"==> {f} <==")
        print("\n".join(f.read_text(errors="replace").splitlines()[-args.lines:]))
    return 0


def _role_logs(log_dir: Path, role: str | None) -> list[Path]:
    logs = sorted(log_dir.glob("*.log")) + sorted(log_dir.glob("job-*.out"))
    if role:
        logs = [f for f in logs if f.stem == role or (role == "job" and f.name.startswith("job-"))]
    return logs
