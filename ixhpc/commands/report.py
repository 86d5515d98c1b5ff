"""`ixhpc report merged.h5 -o DIR`: Markdown summary table and PNG plots."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("merged", help="merged HDF5 file (or a single run-point file)")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="directory for summary.md and plots")
    for name, kind in (("hw", str), ("framework", str), ("model-prefix", str), ("precision", str),
                       ("isl", int), ("osl", int)):
        parser.add_argument(f"--{name}", action="append", type=kind, metavar=name.upper().replace("-", "_"),
                            help=f"keep only points with this {name} (repeat for several)")


    parser.add_argument("--include-invalid", action="store_true",
                        help="compare points the validity gate judged invalid too (marked as such)")


def run(args: argparse.Namespace) -> int:
    import os

    from ixhpc.errors import ConfigError, PlanError, ResultFileError
    from ixhpc.results import load, report

    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise ConfigError(f"-o {args.output}: exists and is not a directory (the report is a directory "
                          "of summary.md and plots)")
    df = report.filtered(load(args.merged), hw=args.hw, framework=args.framework,
                         model_prefix=args.model_prefix, precision=args.precision,
                         isl=args.isl, osl=args.osl)
    if df.empty:
        raise PlanError(f"no points in {args.merged} match the filters")
    try:
        written = report.write_report(df, args.output, args.include_invalid)
    except OSError as exc:
        where = exc.filename or args.output
        raise ResultFileError(f"cannot write the report: {where}: {exc.strerror or exc}") from None
    for path in written:
        print(f"wrote {path}")
    return 0
