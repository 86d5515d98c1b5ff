"""`ixhpc validate FILE...`: check recipe files, print every located error, exit 2 if any.

Every check that needs no cluster runs here (the schema, known frameworks, control
characters, secret-looking env names, mount syntax, the expansion into run points), so a
file that validates cannot fail in `render` for a reason of its own.
"""

from __future__ import annotations

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="recipe files (YAML)")


def _expansion_errors(path: str) -> list[str]:
    """What expanding the file into run points refuses (no cluster: runners stay unresolved)."""
    from ixhpc.errors import ConfigError
    from ixhpc.recipe import load_recipe_files
    from ixhpc.sweep import expand

    try:
        expand(load_recipe_files([path]), profiles={})
    except ConfigError as exc:
        return exc.errors
    return []


def run(args: argparse.Namespace) -> int:
    from ixhpc.errors import ConfigError
    from ixhpc.recipe import load_recipe_files, validate_file

    failed = False
    for path in args.files:
        errors = validate_file(path) or _expansion_errors(path)
        if errors:
            failed = True
            print("\n".join(errors), file=sys.stderr)
        else:
            print(f"{path}: OK")
    if not failed and len(args.files) > 1:
        # Files valid one by one may still clash: a config key defined in two of them.
        try:
            load_recipe_files(args.files)
        except ConfigError as exc:
            print("\n".join(exc.errors), file=sys.stderr)
            failed = True
    return ConfigError.exit_code if failed else 0
