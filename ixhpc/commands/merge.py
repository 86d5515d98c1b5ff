"""`ixhpc merge PATH... -o merged.h5`: merge run-point files and merged files into one table."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas


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
    parser.add_argument("--eval-json", metavar="FILE",
                        help="also write InferenceX agg_eval_all.json rows (points that ran evals)")
    parser.add_argument("--include-invalid", action="store_true",
                        help="keep points the validity gate judged invalid in the --json export")
    parser.add_argument("--progress", action="store_true",
                        help="show a progress bar even when stderr is not a terminal")


def run(args: argparse.Namespace) -> int:
    from ixhpc.errors import ResultFileError
    from ixhpc.results import export, load, merge

    stats = merge.merge(args.paths, args.output, summary_only=args.summary_only,
                        progress=True if args.progress else None)
    print(f"{args.output}: {stats.line()}")
    if os.path.exists(args.output):
        _print_validity(args.output)
        _print_evals(args.output)
    if args.csv or args.json or args.eval_json:
        df = load(args.output)
        try:
            if args.csv:
                print(f"wrote {args.csv} ({export.write_csv(df, args.csv)} points)")
            if args.json:
                print(f"wrote {args.json} ({export.write_agg_json(df, args.json, args.include_invalid)} points)")
            if args.eval_json:
                print(f"wrote {args.eval_json} ({export.write_eval_json(df, args.eval_json)} eval rows)")
        except OSError as exc:
            raise ResultFileError(f"cannot write an export: {exc.filename or ''}: {exc.strerror or exc}") from None
    # 1 when any input was skipped, so job scripts notice; the good ones are merged regardless.
    return 1 if stats.skipped else 0


def _print_validity(path: str) -> None:
    """The validity gate's verdicts over the merged points, and each invalid point's reasons
    (four columns read, not the table)."""
    import h5py

    from ixhpc.bench import validity
    from ixhpc.results import export, table

    with h5py.File(path, "r") as f:
        df: pandas.DataFrame = table.frame(table.read_columns(
            f, ["validity", "validity_reasons", "point_key", "result_id"]))

    verdicts = (df["validity"].fillna(validity.UNKNOWN) if "validity" in df else None)
    counts = {v: int((verdicts == v).sum()) if verdicts is not None else 0 for v in validity.VERDICTS}
    counts[validity.UNKNOWN] = len(df) - counts[validity.VALID] - counts[validity.INVALID]
    print("validity: " + ", ".join(f"{counts[v]} {v}" for v in validity.VERDICTS)
          + (" (invalid points are left out of reports and exports unless --include-invalid)"
             if counts[validity.INVALID] else ""))
    for row in export.records(export.invalid_rows(df)):
        print(f"  invalid: {row.get('point_key') or row.get('result_id')}: {row.get('validity_reasons') or ''}")


def _print_evals(path: str) -> None:
    """The accuracy evals' verdicts (ixhpc.evals), each failing point with its reasons."""
    import h5py

    from ixhpc.results import export, table

    with h5py.File(path, "r") as f:
        df: pandas.DataFrame = table.frame(table.read_columns(f, ["eval_verdict", "eval_reasons", "point_key"]))
    if "eval_verdict" not in df:
        return
    verdicts = df["eval_verdict"].dropna()
    print(f"evals: {int((verdicts == 'pass').sum())} pass, {int((verdicts == 'fail').sum())} fail")
    for row in export.records(df[(df["eval_verdict"] == "fail").fillna(False).astype(bool)]):
        print(f"  eval failed: {row.get('point_key')}: {row.get('eval_reasons') or ''}")
