"""Making a run: recipe + cluster profile -> run points -> job plans -> a run directory.

`render` stops after writing the directory; `submit` then hands the scripts to Slurm
through submitit (``ixhpc.submission``) and records the job ids in the manifest.
Validation happens before anything is written: a bad recipe leaves no trace.

The library API takes typed values (``RunTarget``, ``Filters``); ``target_from_args`` and
``add_run_args`` are the command line's side of it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ixhpc import bundle, placement, render, rundir
from ixhpc.errors import ConfigError, PlanError

if TYPE_CHECKING:
    from ixhpc.placement import JobPlan
    from ixhpc.profiles import ClusterProfile
    from ixhpc.recipe import Recipes
    from ixhpc.sweep import Filters, RunPoint

DEFAULT_CLUSTER = "local"
# sbatch options that name one job, not the allocation it needs.
PER_JOB_OPTIONS = ("job-name", "output")


@dataclasses.dataclass(frozen=True)
class RunTarget:
    """What to run and where: a recipe file, a cluster profile, a selection of its points."""

    recipe: Path
    profile: ClusterProfile
    filters: Filters
    engine_check: bool = True   # check each role's engine flags (ixhpc.engine_check) before writing
    # script mode (ixhpc.inferencex_scripts): single-node points without an engine override
    # run this InferenceX checkout's own scripts; None: ixhpc's own launch
    inferencex: Path | None = None
    # srt-slurm recipe directories for InferenceX's CONFIG_FILE settings, after the profile's
    # srt-recipes (ixhpc.srtslurm.config_file)
    srt_recipes: tuple[Path, ...] = ()
    # SLO objectives (``ixhpc.slo``, canonical spelling): each job searches its concurrencies
    # for the highest meeting them; "": every concurrency runs
    slo: str = ""
    # agentic-coding points (docs/agentic.md "Running agentic points"): InferenceX's runners.yaml
    # (the DRAM budget of kv-offloading: dram), and overrides of the recipe's replay settings
    runner_config: Path | None = None
    agentic_duration: int | None = None
    traces: Path | None = None


def add_run_args(parser: argparse.ArgumentParser) -> None:
    from ixhpc.sweep import add_filter_args

    parser.add_argument("recipe", type=Path, help="recipe file (an InferenceX master config is one)")
    parser.add_argument("--cluster", default=os.environ.get("IXHPC_CLUSTER", DEFAULT_CLUSTER),
                        help="cluster profile (default: $IXHPC_CLUSTER or 'local')")
    parser.add_argument("--profiles", type=Path, default=None,
                        help="cluster profiles file (default: $IXHPC_PROFILES or "
                             "~/.config/ixhpc/clusters.yaml)")
    parser.add_argument("--no-engine-check", dest="engine_check", action="store_false",
                        help="do not check engine flags against the engine version's flag list")
    add_inferencex_arg(parser)
    add_srt_recipes_arg(parser)
    add_agentic_args(parser)
    add_filter_args(parser)


def add_agentic_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("agentic-coding points (docs/agentic.md)")
    g.add_argument("--runner-config", type=Path, default=None, metavar="FILE",
                   help="InferenceX runners.yaml: sizes total-cpu-dram-gb of kv-offloading: dram points")
    g.add_argument("--traces", type=Path, default=None, metavar="PATH",
                   help="trace corpus (JSONL, agentx SPEC §1) every agentic point replays, over the "
                        "recipe's ixhpc.agentic.traces (default: a synthetic corpus from its seed)")
    g.add_argument("--agentic-duration", type=int, default=None, metavar="SECONDS",
                   help="profiling seconds of every agentic point (InferenceX: 3600; below 900 the "
                        "verdict is invalid: below_duration_floor)")


def add_inferencex_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inferencex", type=Path, default=None, metavar="PATH",
                        help="an InferenceX checkout: single-node points without an ixhpc engine "
                             "override run its own benchmark scripts (default: the profile's "
                             "inferencex-checkout; docs/inferencex-scripts.md)")


def add_srt_recipes_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--srt-recipes", action="append", type=Path, default=[], metavar="DIR",
                        help="srt-slurm recipe directory that InferenceX's CONFIG_FILE=recipes/... "
                             "settings are looked up in (repeatable; after the profile's srt-recipes)")


def target_from_args(args: argparse.Namespace) -> RunTarget:
    from ixhpc.profiles import get_profile
    from ixhpc.sweep import filters_from_args

    profile = get_profile(args.cluster, args.profiles)
    checkout = args.inferencex or (Path(profile.inferencex_checkout).expanduser()
                                   if profile.inferencex_checkout else None)
    slo = getattr(args, "slo", None)
    duration = getattr(args, "agentic_duration", None)
    if duration is not None and duration < 1:
        raise ConfigError(f"--agentic-duration: expected seconds > 0, found {duration}")
    return RunTarget(args.recipe, profile, filters_from_args(args), engine_check=args.engine_check,
                     inferencex=checkout, srt_recipes=tuple(args.srt_recipes),
                     slo=_slo_spec(slo) if slo else "", runner_config=getattr(args, "runner_config", None),
                     agentic_duration=duration, traces=getattr(args, "traces", None))


def _slo_spec(text: str) -> str:
    from ixhpc import slo

    return slo.parse(text).text()


def add_slo_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--slo", metavar="SPEC", default=None,
                        help="search each job's concurrencies, inside its allocation, for the highest "
                             "meeting these objectives: ttft=2s,tpot=50ms[,e2el=..][,attainment=0.9] "
                             "(with rate=1..64[,burstiness=1]: the highest request rate at the job's "
                             "highest concurrency; docs/slo.md)")


def _agentic_settings(p: RunPoint, target: RunTarget) -> RunPoint:
    """An agentic point with the command line's overrides, its corpus an absolute path (the
    recipe's is relative to the recipe file) that exists."""
    a = p.agentic
    if a is None:
        return p
    given = target.traces or (Path(p.source).parent / Path(a.traces).expanduser() if a.traces else None)
    if given is not None and not given.is_file():
        what = "--traces" if target.traces else f"{p.source}: {p.config_key}: ixhpc.agentic.traces"
        raise ConfigError(f"{what}: {given}: no such file (a JSONL trace corpus, agentx SPEC §1)")
    update = {"traces": str(given.resolve()) if given else None,
              "duration": target.agentic_duration or a.duration}
    return p.model_copy(update={"agentic": a.model_copy(update=update)})


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def plan(target: RunTarget, run_dir: Path, run_id: str, warn: Callable[[str], None] = _stderr) -> list[JobPlan]:
    """Validate everything and plan the jobs; write nothing. Engine flag warnings go to ``warn``."""
    from ixhpc.recipe import load_recipe_files, load_runners
    from ixhpc.srtslurm import plan as srt
    from ixhpc.sweep import expand

    if srt.is_srt_file(target.recipe):  # an srt-slurm recipe: its own planner (ixhpc.srtslurm.plan)
        if target.slo:
            raise ConfigError(f"--slo: {target.recipe} is an srt-slurm recipe, whose jobs cannot search")
        return srt.plan_target(target, run_dir, run_id, warn)
    recipes = load_recipe_files([target.recipe])
    runners = load_runners(target.runner_config) if target.runner_config else None
    points = [_agentic_settings(p, target) for p in
              expand(recipes, target.filters, cluster=target.profile, runners=runners)]
    if not points:
        raise PlanError(f"{target.recipe}: no run point is left after the filters")
    if target.slo:
        _check_searchable(points, recipes)
    from ixhpc.srtslurm import config_file

    named = [p for p in points if config_file.point_value(p) is not None]  # CONFIG_FILE: the recipe's deployment
    dirs = config_file.recipe_dirs(target.profile.srt_recipes, target.srt_recipes)
    srt_plans = [config_file.plan_point(p, dirs, target.profile, run_dir, run_id,
                                        warn if target.engine_check else None) for p in named]
    points = [p for p in points if config_file.point_value(p) is None]
    plans = [_plan_group(target, g, run_dir, run_id) for g in placement.group_points(points)]
    if target.engine_check:
        from ixhpc import engine_check

        report = engine_check.check_plans(plans, recipes.entries)
        for line in report.warnings:
            warn(line)
        if report.errors:
            raise ConfigError(list(report.errors))
    plans += srt_plans
    if target.slo and (fixed := [p.key for p in plans if not p.slo]):
        raise ConfigError(f"--slo: job(s) {', '.join(fixed)} run InferenceX's script or an srt-slurm "
                          "recipe, which cannot search concurrencies")
    for p in plans:
        render.render(p)  # a template error must surface before the directory exists
    return plans


def _check_searchable(points: Sequence[RunPoint], recipes: Recipes) -> None:
    """`--slo` on agentic-coding points: one located line per recipe entry (ixhpc.slo)."""
    from ixhpc.slo import UNSEARCHABLE_AGENTIC

    entries = (recipes.entries[p.config_key] for p in points if p.agentic is not None)
    if lines := list(dict.fromkeys(f"{e.file}:{e.line}: {e.key}: {UNSEARCHABLE_AGENTIC}" for e in entries)):
        raise ConfigError(lines)


def _plan_group(target: RunTarget, group: list[RunPoint], run_dir: Path, run_id: str) -> JobPlan:
    from ixhpc.inferencex_scripts import uses_script

    if target.inferencex is not None and uses_script(group[0]):  # script mode
        return placement.plan_script_job(group, target.profile, run_dir, run_id, target.inferencex)
    return placement.plan_job(group, target.profile, run_dir, run_id, target.slo)


def write(target: RunTarget, run_dir: Path, run_id: str, plans: Sequence[JobPlan]) -> rundir.Manifest:
    """Fill a run directory that ``rundir.create`` is making (its lock held meanwhile)."""
    import yaml

    from ixhpc import __version__, atomic
    from ixhpc.srtslurm.load import split_selector

    layout = rundir.Layout.of(run_dir)
    bundle.write(layout.bundle)  # the code the job's roles and client run, once per run
    shutil.copyfile(split_selector(target.recipe)[0], layout.recipe)  # srt-slurm: file.yaml[:selector]
    atomic.write_text(layout.profile, yaml.safe_dump(
        target.profile.model_dump(mode="json", by_alias=True), sort_keys=False))
    jobs = []
    for p in plans:
        render.write_job(run_dir, p)
        jobs.append(rundir.JobEntry(
            key=p.key, kind=p.kind, script=p.script_rel, partition=str(p.sbatch["partition"]),
            nodes=sum(int(o["nodes"]) for o in (p.sbatch, *p.het_sbatch)), gpus=int(p.points[0].gpus or 0),
            points=[rundir.PointRef(key=p.result_key(c), conc=c) for c in p.concs]))
    manifest = rundir.Manifest(run_id=run_id, created=rundir.now(), ixhpc_version=__version__,
                               recipe=str(target.recipe), cluster=target.profile.name, jobs=jobs)
    rundir.save(run_dir, manifest)
    return manifest


Batch = tuple[dict[str, str | bool], list[rundir.JobEntry]]


def batches(jobs: Sequence[tuple[dict[str, str | bool], rundir.JobEntry]], run_id: str) -> list[Batch]:
    """Jobs that can share one `sbatch` (a job array): single-node jobs asking for the same
    allocation. Each multi-node job is an sbatch of its own (a heterogeneous one goes to
    ``sbatch`` itself, see ``ixhpc.submission``). Submit and resume both use it."""
    groups: dict[str, Batch] = {}
    for opts, entry in jobs:
        shared = {k: v for k, v in opts.items() if k not in PER_JOB_OPTIONS}
        ident = repr(sorted(shared.items())) if entry.kind == "single" else f"multi:{entry.key}"
        groups.setdefault(ident, (shared, []))[1].append(entry)
    out = []
    for i, (shared, entries) in enumerate(groups.values()):
        name = (next(o for o, e in jobs if e is entries[0])["job-name"] if len(entries) == 1
                else f"ixhpc-{run_id}-array{i}")
        out.append(({**shared, "job-name": name}, entries))
    return out
