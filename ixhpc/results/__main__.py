"""`python -m ixhpc.results ingest BENCH.json --meta META.json -o POINT.h5` (for job scripts)."""

from __future__ import annotations

import argparse
import sys

from ixhpc.errors import UserError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ixhpc.results")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("ingest", help="turn an ixhpc.bench result + run-point metadata into a point file")
    p.add_argument("bench", help="ixhpc.bench --output JSON")
    p.add_argument("--meta", required=True, help="run-point metadata JSON (flat object)")
    p.add_argument("-o", "--output", required=True, help="run-point HDF5 file to create")
    args = parser.parse_args(argv)
    from ixhpc.results import ingest

    try:
        result_id = ingest.ingest(args.bench, args.meta, args.output)
    except UserError as exc:
        print(f"ixhpc.results ingest: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"wrote {args.output} (result {result_id[:12]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
