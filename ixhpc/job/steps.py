"""Steps a rendered job script runs on its first node, outside any container.

    python -m ixhpc.job.steps has-result --point-dir D --conc C --results-dir R
        exit 0 when the point's HDF5 file is already there and valid (resume skips it)
    python -m ixhpc.job.steps ingest --point-dir D --conc C --results-dir R
        turn the load generator's JSON into the point's HDF5 file, adding what only the
        job knows (job id, node list, start and end times)

Render wrote D/meta-c<C>.json: the point's static metadata and the result file's key.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path

from ixhpc import __version__


def meta_path(point_dir: Path, conc: int) -> Path:
    return point_dir / f"meta-c{conc}.json"


def bench_path(point_dir: Path, conc: int) -> Path:
    return point_dir / f"bench-c{conc}.json"


def result_path(results_dir: Path, point_key: str) -> Path:
    return results_dir / f"{point_key}.h5"


def _rendered(point_dir: Path, conc: int) -> tuple[str, dict]:
    """(result key, static metadata) as render wrote them."""
    doc = json.loads(meta_path(point_dir, conc).read_text())
    return doc["result_key"], doc["metadata"]


def has_result(point_dir: Path, conc: int, results_dir: Path) -> bool:
    from ixhpc.runstate import valid_point_file

    return valid_point_file(result_path(results_dir, _rendered(point_dir, conc)[0]))


def job_meta(bench_file: Path) -> dict[str, str]:
    """What the job adds to a point's metadata (docs/contracts.md)."""
    env = os.environ
    array_job, task = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
    job_id = f"{array_job}_{task}" if array_job and task else env.get("SLURM_JOB_ID", "")
    end = dt.datetime.fromtimestamp(bench_file.stat().st_mtime, dt.timezone.utc)
    bench = json.loads(bench_file.read_text())
    start = end - dt.timedelta(seconds=float(bench["summary"].get("duration", 0.0)))
    return {
        "job_id": job_id,
        "node_list": env.get("SLURM_JOB_NODELIST", ""),
        "start_time": start.replace(microsecond=0).isoformat(),
        "end_time": end.replace(microsecond=0).isoformat(),
        "ixhpc_version": __version__,
    }


def ingest(point_dir: Path, conc: int, results_dir: Path) -> Path:
    from ixhpc.results import write_point

    bench_file = bench_path(point_dir, conc)
    bench = json.loads(bench_file.read_text())
    key, static = _rendered(point_dir, conc)
    meta = {**static, **job_meta(bench_file)}
    out = result_path(results_dir, key)
    write_point(out, bench, meta)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ixhpc.job.steps")
    parser.add_argument("action", choices=["has-result", "ingest"])
    parser.add_argument("--point-dir", type=Path, required=True)
    parser.add_argument("--conc", type=int, required=True)
    parser.add_argument("--results-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.action == "has-result":
            return 0 if has_result(args.point_dir, args.conc, args.results_dir) else 1
        out = ingest(args.point_dir, args.conc, args.results_dir)
        print(f"[ixhpc] result written: {out}")
        return 0
    except (OSError, ValueError, KeyError) as exc:
        print(f"ixhpc.job.steps {args.action}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
