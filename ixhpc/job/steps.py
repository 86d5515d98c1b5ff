"""Steps a rendered job script runs on its first node, outside any container.

    python -m ixhpc.job.steps has-result --run-dir R --job K --conc C
        exit 0 when the point's HDF5 file is already there and valid (resume skips it)
    python -m ixhpc.job.steps ingest --run-dir R --job K --conc C [--power-expect ROLE=N ...]
                                     [--require-power]
        turn the load generator's JSON into the point's HDF5 file, adding what only the
        job knows (job id, node list, start and end times, the GPU power of its window)

Render wrote the job's per-concurrency metadata file (``Layout.meta``): the point's static
metadata and the result file's key.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from pathlib import Path
from typing import Any

from ixhpc import __version__
from ixhpc.errors import ResultFileError, main_guard
from ixhpc.rundir import Layout


def _rendered(layout: Layout, job: str, conc: int) -> tuple[str, dict[str, Any]]:
    """(result key, static metadata) as render wrote them."""
    doc = json.loads(layout.meta(job, conc).read_text())
    return doc["result_key"], doc["metadata"]


def has_result(layout: Layout, job: str, conc: int) -> bool:
    from ixhpc.runstate import valid_point_file

    return valid_point_file(layout.result(_rendered(layout, job, conc)[0]))


def job_meta(bench_file: Path) -> dict[str, str]:
    """What the job adds to a point's metadata (docs/contracts.md)."""
    env = os.environ
    array_job, task = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
    job_id = f"{array_job}_{task}" if array_job and task else env.get("SLURM_JOB_ID", "")
    end = dt.datetime.fromtimestamp(bench_file.stat().st_mtime, dt.UTC)
    bench = json.loads(bench_file.read_text())
    start = end - dt.timedelta(seconds=float(bench["summary"].get("duration", 0.0)))
    return {
        "job_id": job_id,
        "node_list": env.get("SLURM_JOB_NODELIST", ""),
        "start_time": start.replace(microsecond=0).isoformat(),
        "end_time": end.replace(microsecond=0).isoformat(),
        "ixhpc_version": __version__,
    }


def ingest(layout: Layout, job: str, conc: int, power_expect: dict[str, int] | None = None,
           require_power: bool = False) -> Path:
    """``power_expect`` (role kind -> GPUs): the job samples GPU power; the point's verdict and
    readings come from its nodes' sampler files over the benchmark's window."""
    from ixhpc.results import power
    from ixhpc.results.ingest import write_point

    bench_file = layout.bench_json(job, conc)
    bench = json.loads(bench_file.read_text())
    key, static = _rendered(layout, job, conc)
    meta = {**static, **job_meta(bench_file)}
    out = layout.result(key)
    measured = None
    if power_expect:
        # the samplers' readings after the window's end bound it: wait for them to be written
        end = float((bench.get("clock") or {}).get("end_unix", 0.0))
        time.sleep(max(0.0, min(POWER_SETTLE_S, end + POWER_SETTLE_S - time.time())))
        measured = power.for_point(layout.power_csvs(job), bench, power_expect)
    write_point(out, bench, meta, measured, require_power)
    return out


POWER_SETTLE_S = 2.5  # after a benchmark's end: > the samplers' interval (placement.POWER_INTERVAL_S)


def _expect(specs: list[str]) -> dict[str, int]:
    out = {}
    for spec in specs:
        kind, _, n = spec.partition("=")
        out[kind] = int(n)
    return out


@main_guard("ixhpc.job.steps")
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ixhpc.job.steps")
    parser.add_argument("action", choices=["has-result", "ingest"])
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--job", required=True, help="job key")
    parser.add_argument("--conc", type=int, required=True)
    parser.add_argument("--power-expect", action="append", default=[], metavar="ROLE=GPUS",
                        help="GPU power is sampled: the GPUs expected per role kind")
    parser.add_argument("--require-power", action="store_true",
                        help="a point without valid power is invalid")
    args = parser.parse_args(argv)
    layout = Layout.of(args.run_dir)
    try:
        if args.action == "has-result":
            return 0 if has_result(layout, args.job, args.conc) else 1
        from ixhpc.results.ingest import ResultExists

        try:
            out = ingest(layout, args.job, args.conc, _expect(args.power_expect), args.require_power)
        except ResultExists as exc:  # another job wrote this point first: its result stands
            print(f"[ixhpc] already done: {exc}")
            return 0
        print(f"[ixhpc] result written: {out}")
        return 0
    except (OSError, ValueError, KeyError) as exc:  # a missing or malformed bench/metadata file
        raise ResultFileError(f"{args.action}: {type(exc).__name__}: {exc}") from None


if __name__ == "__main__":
    raise SystemExit(main())
