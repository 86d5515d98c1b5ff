"""Command-line frame: ``python -m ixhpc`` / ``ixhpc``.

Each subcommand lives in ``ixhpc/commands/<name>.py`` with two functions,
``configure(parser)`` and ``run(args) -> int``. Only the module of the command being run is
imported, and those modules import heavy libraries (pandas, h5py, submitit) inside ``run``,
so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from ixhpc import __version__

# Young objects between two passes of the cyclic collector (CPython's default: 700). A command
# allocates about a million objects that live until it ends (modules, models, parsed recipes,
# points); at 700 the collector walks them over and over (a tenth of `ixhpc sweep`'s time) and
# finds nothing: garbage here is freed by reference counting. Long-running commands (submit
# --wait, debug) still get a pass every 100,000 allocations.
GC_YOUNG_THRESHOLD = 100_000

# name -> one-line help. Order is the order shown by --help.
COMMANDS: dict[str, str] = {
    "validate": "check recipe files and report every error with its location",
    "sweep": "expand recipes into run points (InferenceX matrix format or a table)",
    "render": "write the sbatch scripts and manifest for a recipe, submitting nothing",
    "submit": "submit a recipe's run points to Slurm and create a run directory",
    "status": "show the state of every point of a run",
    "logs": "show the logs of a run, a point or a role",
    "cancel": "cancel the Slurm jobs of a run (and only those)",
    "resume": "resubmit the points of a run that have no valid result",
    "merge": "merge run-point HDF5 files into one file and table",
    "report": "write a Markdown summary and plots from a merged file",
    "debug": "get a point's resources with salloc and open a ready shell",
    "local-cluster": "bring the project's local multi-node Slurm cluster up or down",
}


def _module_name(command: str) -> str:
    return "ixhpc.commands." + command.replace("-", "_")


def build_parser(selected: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ixhpc",
        description="Run InferenceX-style LLM inference benchmarks on Slurm clusters.",
    )
    parser.add_argument("--version", action="version", version=f"ixhpc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # A command line naming its command parses with that command's parser alone (each one
    # built costs a few hundred microseconds); otherwise every command is listed.
    for name in [selected] if selected else COMMANDS:
        sp = sub.add_parser(name, help=COMMANDS[name], description=COMMANDS[name])
        if name == selected:
            importlib.import_module(_module_name(name)).configure(sp)
    return parser


def _selected_command(argv: Sequence[str]) -> str | None:
    """The command the line names first; None when an option comes before it (ixhpc's own,
    --help or --version, which then answer for every command)."""
    first = argv[0] if argv else None
    return first if first in COMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its known failures become one line and the exit code of their kind
    (``ixhpc.errors``, listed in docs/contracts.md)."""
    from ixhpc import errors

    argv = list(sys.argv[1:] if argv is None else argv)
    selected = _selected_command(argv)
    parser = build_parser(selected)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return errors.ConfigError.exit_code  # a usage error, as argparse's own
    command = importlib.import_module(_module_name(args.command))
    return errors.guard(f"ixhpc {args.command}", lambda: command.run(args))


def entry() -> NoReturn:
    """The process: ``python -m ixhpc`` and the ``ixhpc`` script (``main`` is what tests call
    in-process, leaving the collector as it was)."""
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    code = main()
    # Everything alive now dies with the process: frozen, it is spared the collector's last
    # walk over all of it at interpreter exit (7% of `ixhpc sweep`'s time).
    gc.freeze()
    raise SystemExit(code)
