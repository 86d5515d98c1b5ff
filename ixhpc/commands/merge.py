"""`ixhpc merge PATH... -o merged.h5`: merge run-point files and merged files into one table."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="run-point files, merged files, or directories (searched recursively for *.h5)")
    parser.add_argument("-o", "--output", required=True,
                        help="merged HDF5 file (created or extended); per-request data go beside it, "
                             "in OUTPUT.segments/")
    parser.add_argument("--summary-only", action="store_true",
                        help="keep only the table of points, not their per-request data")
    parser.add_argument("--csv", metavar="FILE", help="also write the whole table as CSV")
    parser.add_argument("--json", metavar="FILE", help="also write InferenceX agg_bmk.json rows")
    parser.add_argument("--progress", action="store_true",
                        help="show a progress bar even when stderr is not a terminal")


def run(args: argparse.Namespace) -> int:
    from ixhpc.errors import ResultFileError
    from ixhpc.results import export, load, merge

    stats = merge.merge(args.paths, args.output, summary_only=args.summary_only,
                        progress=True if args.progress else None)
    print(f"{args.output}: {stats.line()}")
    if args.csv or args.json:
        df = load(args.output)
        try:
            if args.csv:
                print(f"wrote {args.csv} ({export.write_csv(df, args.csv)} points)")
            if args.json:
                print(f"wrote {args.json} ({export.write_agg_json(df, args.json)} points)")
        except OSError as exc:
            raise ResultFileError(f"cannot write an export: {exc.filename or ''}: {exc.strerror or exc}") from None
    # 1 when any input was skipped, so job scripts notice; the good ones are merged regardless.
    return 1 if stats.skipped else 0
