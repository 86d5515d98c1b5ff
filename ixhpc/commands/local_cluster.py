"""`ixhpc local-cluster up|down|status`: the project's real Slurm cluster on this machine."""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["up", "down", "status", "env"],
                        help="up: start (idempotent); down: stop our daemons; status: show them; "
                             "env: print the export line for Slurm clients")
    parser.add_argument("--dir", type=Path, default=None,
                        help="state directory (default: $IXHPC_LOCAL_CLUSTER_DIR or "
                             "~/.local/state/ixhpc/local-cluster)")
    parser.add_argument("--no-link", action="store_true",
                        help="with up: leave /etc/slurm/slurm.conf alone (use SLURM_CONF)")


def run(args: argparse.Namespace) -> int:
    from ixhpc import local_cluster as lc

    if args.action == "up":
        seconds, how = lc.up(args.dir, link=not args.no_link)
        print(f"local cluster {lc.CLUSTER_NAME} is up in {seconds:.1f} s "
              f"({len(lc.nodes())} nodes); Slurm clients: {how}")
        return 0
    if args.action == "down":
        stopped = lc.down(args.dir)
        print(f"stopped {len(stopped)} daemon(s): {', '.join(stopped) or 'none were running'}")
        return 0
    if args.action == "env":
        print(f"export SLURM_CONF={lc.client_env(args.dir)['SLURM_CONF']}")
        return 0
    states = lc.status(args.dir)
    for name, pid in states.items():
        print(f"{name:14} {'running pid ' + str(pid) if pid else 'stopped'}")
    return 0 if all(states.values()) else 3
