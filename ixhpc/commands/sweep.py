"""`ixhpc sweep`: expand recipes into run points, as InferenceX matrix rows or a table.

Accepts InferenceX's `generate_sweep_configs.py` flags, so
``ixhpc sweep full-sweep --config-files A.yaml B.yaml --runner-config runners.yaml ...`` and
``ixhpc sweep test-config --config-keys 'dsr1-*' --config-files ...`` print the same rows (as a
multiset) as InferenceX does for the same files, with the rules of the files' format (March:
`seq-len-configs`, current: `scenarios`). Agentic points are listed here; they cannot run yet.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ixhpc.sweep import AnyPoint


SUBCOMMANDS = ("full-sweep", "test-config")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="*", metavar="FILE",
                        help="recipe files; a first word `full-sweep` (the default) or "
                             "`test-config` (needs --config-keys) names InferenceX's subcommand")
    parser.add_argument("--config-files", nargs="+", default=[], metavar="FILE",
                        help="recipe / InferenceX master config files")
    parser.add_argument("--runner-config", metavar="FILE",
                        help="InferenceX runners.yaml (either form): --runner-type labels are "
                             "checked against it; --runner-node-filter and KV offloading read it")
    parser.add_argument("--format", choices=("inferencex", "table"), default="table",
                        help="inferencex: a JSON array of matrix rows; table: for people")
    parser.add_argument("--json", action="store_true",
                        help="print the run points (all fields, topology) as a JSON array")
    parser.add_argument("--cluster", metavar="NAME",
                        help="resolve runners on this cluster profile (default: the first "
                             "profile serving each runner)")
    parser.add_argument("--profiles", metavar="FILE", help="user cluster profile file")
    from ixhpc.sweep import add_filter_args
    add_filter_args(parser)


def run(args: argparse.Namespace) -> int:
    from ixhpc import profiles, sweep
    from ixhpc.errors import ConfigError
    from ixhpc.recipe import load_recipe_files, load_runners

    words = list(args.files)
    mode = words.pop(0) if words and words[0] in SUBCOMMANDS else "full-sweep"
    files = words + list(args.config_files)
    if not files:
        raise ConfigError("no recipe files given (FILE... or --config-files)")
    filters = sweep.filters_from_args(args)
    if mode == "test-config" and not filters.config_keys:
        raise ConfigError("test-config needs --config-keys KEY... (globs * and ? allowed)")
    if mode == "full-sweep" and filters.config_keys and args.files and args.files[0] == "full-sweep":
        raise ConfigError("--config-keys is a test-config flag (ixhpc sweep test-config ...)")
    runners = None
    if args.runner_config:
        runners = load_runners(args.runner_config)
        unknown = sorted(set(filters.runner_type) - set(runners.labels))
        if unknown:
            raise ConfigError(f"invalid runner type(s) {', '.join(unknown)}; "
                              f"{args.runner_config} defines: {', '.join(sorted(runners.labels))}")
    recipes = load_recipe_files(files)
    known = profiles.load_profiles(args.profiles)
    cluster = None
    if args.cluster:
        if args.cluster not in known:
            raise ConfigError(f"unknown cluster profile '{args.cluster}' "
                            f"(known: {', '.join(sorted(known))})")
        cluster = known[args.cluster]
    points = sweep.expand_all(recipes, filters, cluster=cluster, profiles=known, runners=runners)
    if args.json:
        _emit(json.dumps([p.model_dump(mode="json") for p in points], indent=1))
    elif args.format == "inferencex":
        _emit(json.dumps([p.to_inferencex_row() for p in points]))
    else:
        _emit(_table(points))
        print(f"{len(points)} run points, {sum(len(p.conc) for p in points)} benchmarks",
              file=sys.stderr)
    return 0


def _emit(text: str) -> None:
    """Write the output in one go; a closed pipe (`| head`) is not an error."""
    import os
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _table(points: list[AnyPoint]) -> str:
    header = ("KEY", "RUNNER", "CLUSTER/PARTITION", "NODES", "GPUS", "CONC", "EVAL")
    rows = [(p.key, p.runner, f"{p.cluster}/{p.partition}" if p.resolved else "-",
             str(p.nodes if p.nodes is not None else "-"), str(p.gpus if p.gpus is not None else "-"),
             ",".join(map(str, p.conc)), "yes" if p.run_eval else "")
            for p in points]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
                     for r in [header, *rows])
