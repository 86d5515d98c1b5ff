"""`ixhpc validate FILE...`: check recipe files, print every located error, exit 2 if any.

Every check that needs no cluster runs here (the schema, known frameworks, control
characters, secret-looking env names, mount syntax, the expansion into run points), so a
file that validates cannot fail in `render` for a reason of its own.

Each role's engine flags are checked too (``ixhpc.engine_check``) unless ``--no-engine-check``:
an unknown flag or a value outside its choices is a located error; an image whose engine
version has no flag list of its own is a warning (stderr, exit code unchanged).

InferenceX ``CONFIG_FILE=`` settings are resolved in the srt-slurm recipe directories
(``--srt-recipes DIR``, repeatable, then ``srt-recipes`` of the ``--cluster`` profile if given):
a recipe not found, invalid, or disagreeing with the entry's topology is a located error at the
additional-settings item; with no directory at all, one warning says they were not checked.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ixhpc.recipe import Recipes
    from ixhpc.sweep import AnyPoint


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="recipe files (YAML)")
    parser.add_argument("--no-engine-check", dest="engine_check", action="store_false",
                        help="do not check engine flags against the engine version's flag list")
    from ixhpc.runs import add_inferencex_arg

    add_inferencex_arg(parser)  # script mode: each single-node point's InferenceX script must exist
    from ixhpc.runs import add_srt_recipes_arg

    add_srt_recipes_arg(parser)
    parser.add_argument("--cluster", default=None,
                        help="cluster profile whose srt-recipes directories CONFIG_FILE values are looked up in")
    parser.add_argument("--profiles", type=Path, default=None, help="cluster profiles file")


def _expansion_errors(path: str, engine_check: bool, inferencex: Path | None = None) -> list[str]:
    """What expanding the file into run points refuses (no cluster: runners stay unresolved),
    then the ``ixhpc.eval`` blocks (thresholds files, task names), then the engine flags of
    every role of every point (warnings go to stderr)."""
    from ixhpc.errors import ConfigError
    from ixhpc.recipe import load_recipe_files
    from ixhpc.sweep import expand_all

    try:
        recipes = load_recipe_files([path])
        points = expand_all(recipes, profiles={})
    except ConfigError as exc:
        return exc.errors
    from ixhpc.evals import check as eval_check

    evals = eval_check.errors(points)  # all at once with what follows
    return evals + _runnable_errors(path, points, recipes, engine_check, inferencex)


def _runnable_errors(path: str, points: list[AnyPoint], recipes: Recipes, engine_check: bool,
                     inferencex: Path | None) -> list[str]:
    from ixhpc.errors import PlanError
    from ixhpc.frameworks import FRAMEWORKS
    from ixhpc.sweep import AgenticMultiPoint, AgenticSinglePoint, runnable_agentic

    # Points ixhpc cannot run (render/submit refuse them with a PlanError): frameworks without
    # an ixhpc engine (InferenceX's current files name a few). Agentic points are checked as
    # they run; without a runner config a DRAM budget of 1 GB stands in (flags, not sizes).
    unknown = sorted({p.framework for p in points if p.framework not in FRAMEWORKS})
    if unknown:
        print(f"{path}: warning: framework(s) {', '.join(unknown)} have no ixhpc engine yet: "
              f"their points are listed by `sweep`, not rendered", file=sys.stderr)
    runnable, shapes = [], set[str]()
    for p in points:
        if p.framework not in FRAMEWORKS:
            continue
        if isinstance(p, (AgenticSinglePoint, AgenticMultiPoint)):
            try:
                p = runnable_agentic(p if p.total_cpu_dram_gb is not None else
                                     p.model_copy(update={"total_cpu_dram_gb": 1}))
            except PlanError as exc:  # valid InferenceX, a shape ixhpc does not run
                shapes.add(f"{path}: warning: {exc}; not rendered")
                continue
        runnable.append(p)
    if shapes:
        print("\n".join(sorted(shapes)), file=sys.stderr)
    if inferencex is not None:  # script mode: the scripts replace the engine launch
        from ixhpc import inferencex_scripts

        missing = inferencex_scripts.script_errors(points, inferencex)  # type: ignore[arg-type]
        if missing:
            return missing
        runnable = [p for p in runnable if not inferencex_scripts.uses_script(p)]
    if not engine_check:
        return []
    from ixhpc import engine_check as check

    report = check.check_points(runnable, recipes.entries)
    if report.warnings:
        print("\n".join(report.warnings), file=sys.stderr)
    return list(report.errors)


def _srt_recipe_dirs(args: argparse.Namespace) -> list[Path]:
    from ixhpc.srtslurm.config_file import recipe_dirs

    profile_dirs: list[str] = []
    if getattr(args, "cluster", None):
        from ixhpc.profiles import get_profile

        profile_dirs = list(get_profile(args.cluster, args.profiles).srt_recipes)
    return recipe_dirs(profile_dirs, getattr(args, "srt_recipes", None))


def run(args: argparse.Namespace) -> int:
    from ixhpc.errors import ConfigError
    from ixhpc.recipe import load_recipe_files, validate_file
    from ixhpc.srtslurm import config_file
    from ixhpc.srtslurm import file_errors as srt_file_errors

    failed = False
    srt = {path: srt_file_errors(path, args.engine_check) for path in args.files}  # None: not an srt-slurm recipe
    dirs = _srt_recipe_dirs(args)
    unchecked = False
    for path in args.files:
        errors = srt[path] if srt[path] is not None else (
            validate_file(path) or _expansion_errors(path, args.engine_check, args.inferencex))
        if srt[path] is None and not errors:
            if dirs:
                errors = config_file.check_file(path, dirs)
            else:
                unchecked = unchecked or bool(config_file.file_references(path))
        if errors:
            failed = True
            print("\n".join(errors), file=sys.stderr)
        else:
            print(f"{path}: OK")
    if unchecked:
        print(f"ixhpc validate: warning: CONFIG_FILE values were not checked: no srt-slurm recipe directory "
              f"({config_file.FLAG} DIR or `{config_file.PROFILE_FIELD}:` in the --cluster profile)",
              file=sys.stderr)
    own = [path for path in args.files if srt[path] is None]
    if not failed and len(own) > 1:
        # Files valid one by one may still clash: a config key defined in two of them.
        try:
            load_recipe_files(own)
        except ConfigError as exc:
            print("\n".join(exc.errors), file=sys.stderr)
            failed = True
    return ConfigError.exit_code if failed else 0
