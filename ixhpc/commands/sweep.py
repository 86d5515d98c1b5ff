"""`ixhpc sweep`: expand recipes into run points, as InferenceX matrix rows or a table.

Accepts InferenceX's `generate_sweep_configs.py` flags, so
``ixhpc sweep full-sweep --config-files A.yaml B.yaml --runner-config runners.yaml ...`` and
``ixhpc sweep test-config --config-keys 'dsr1-*' --config-files ...`` print the same rows (as a
multiset) as InferenceX does for the same files, with the rules of the files' format (March:
`seq-len-configs`, current: `scenarios`). Agentic points are listed here; they cannot run yet.
``ixhpc sweep changelog --base-ref A --head-ref B`` prints the matrix buckets of the entries
added to perf-changelog.yaml between A and B, as InferenceX's process_changelog.py
(``ixhpc.changelog``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ixhpc.sweep import AnyPoint


SUBCOMMANDS = ("full-sweep", "test-config")
CHANGELOG_FLAGS = ("base_ref", "head_ref", "changelog_file", "trim_conc", "checkout")


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
                        help="inferencex: a JSON array of matrix rows (which say nothing of where points "
                             "run: no cluster profile is read unless --cluster/--profiles names one); "
                             "table: for people")
    parser.add_argument("--json", action="store_true",
                        help="print the run points (all fields, topology) as a JSON array")
    parser.add_argument("--cluster", metavar="NAME",
                        help="resolve runners on this cluster profile (default: the first "
                             "profile serving each runner)")
    parser.add_argument("--profiles", metavar="FILE", help="user cluster profile file")
    from ixhpc.sweep import add_filter_args
    add_filter_args(parser)
    g = parser.add_argument_group("changelog (`ixhpc sweep changelog`: InferenceX's process_changelog.py)")
    g.add_argument("--base-ref", metavar="REV", help="the revision before the new changelog entries")
    g.add_argument("--head-ref", metavar="REV", help="the revision after them")
    g.add_argument("--changelog-file", metavar="FILE", help="the changelog (default perf-changelog.yaml)")
    g.add_argument("--trim-conc", action="store_true", help="throughput rows at their lowest concurrency")
    g.add_argument("--checkout", metavar="DIR", help="the InferenceX checkout to run git in (default .); "
                   "relative --config-files/--runner-config/--changelog-file are read there")


def run(args: argparse.Namespace) -> int:
    from ixhpc import sweep
    from ixhpc.errors import ConfigError
    from ixhpc.recipe import load_recipe_files, load_runners

    words = list(args.files)
    changelog_flags = [f"--{n.replace('_', '-')}" for n in CHANGELOG_FLAGS if getattr(args, n)]
    if words[:1] == ["changelog"]:
        return _changelog(args, words[1:])
    if changelog_flags:
        raise ConfigError(f"{', '.join(changelog_flags)}: only for `ixhpc sweep changelog`")
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
    # InferenceX's rows do not say where a point runs: no cluster profile is read for them
    # unless one is named (--cluster, --profiles).
    sited = args.json or args.format != "inferencex" or args.cluster or args.profiles
    known = {}
    if sited:
        from ixhpc.profiles import load_profiles
        known = load_profiles(args.profiles)
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
        _emit(_json_array(p.to_inferencex_row() for p in points))
    else:
        _emit(_table(points))
        print(f"{len(points)} run points, {sum(len(p.conc) for p in points)} benchmarks",
              file=sys.stderr)
    return 0


def _changelog(args: argparse.Namespace, words: list[str]) -> int:
    """`ixhpc sweep changelog --base-ref A --head-ref B`: the matrix buckets of the entries
    added to perf-changelog.yaml between A and B (ixhpc.changelog)."""
    from ixhpc import changelog, sweep
    from ixhpc.errors import ConfigError

    given = [f for f in sweep.filters_from_args(args).given() if f not in ("--evals-only", "--all-evals")]
    given += [f for f, on in (("FILE", words), ("--json", args.json), ("--cluster", args.cluster),
                              ("--profiles", args.profiles), ("--format", args.format != "table")) if on]
    missing = [f for f in ("--base-ref", "--head-ref") if not getattr(args, f[2:].replace("-", "_"))]
    if given or missing:
        raise ConfigError((["changelog needs " + " and ".join(missing)] if missing else []) +
                          ([f"{', '.join(given)}: not a changelog flag (it takes --base-ref, --head-ref, "
                            f"--changelog-file, --trim-conc, --checkout, --config-files, --runner-config, "
                            f"--evals-only, --all-evals; it prints JSON)"] if given else []))
    matrix = changelog.process(
        args.checkout or ".", args.base_ref, args.head_ref,
        changelog_file=args.changelog_file or changelog.CHANGELOG_FILE,
        config_files=args.config_files or changelog.MASTER_CONFIGS,
        runner_config=args.runner_config or changelog.RUNNER_CONFIG,
        trim=args.trim_conc, evals_only=args.evals_only, all_evals=args.all_evals)
    _emit(changelog.NO_ENTRIES if matrix is None else matrix.to_json())
    return 0


def _json_array(rows: Iterable[dict[str, Any]]) -> str:
    """``json.dumps(list(rows))``, the same text, encoded a row at a time: the fragments of a
    megabyte of matrix are never all alive at once. Rows are fresh trees, so the encoder's
    cycle bookkeeping is left out."""
    encode = json.JSONEncoder(check_circular=False).encode
    return "[" + ", ".join([encode(row) for row in rows]) + "]"


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
