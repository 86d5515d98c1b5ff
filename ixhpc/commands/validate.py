"""`ixhpc validate FILE...`: check recipe files, print every located error, exit 2 if any."""

from __future__ import annotations

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="recipe files (YAML)")


def run(args: argparse.Namespace) -> int:
    from ixhpc.recipe import load_recipe_files, validate_file

    failed = False
    for path in args.files:
        errors = validate_file(path)
        if errors:
            failed = True
            print("\n".join(errors), file=sys.stderr)
        else:
            print(f"{path}: OK")
    if not failed and len(args.files) > 1:
        # Files valid one by one may still clash: a config key defined in two of them.
        from ixhpc.yamlmodel import ConfigError
        try:
            load_recipe_files(args.files)
        except ConfigError as exc:
            print("\n".join(exc.errors), file=sys.stderr)
            failed = True
    return 2 if failed else 0
