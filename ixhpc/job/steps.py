"""Steps a rendered job script runs on its first node, outside any container.

    python -m ixhpc.job.steps has-result --run-dir R --job K --conc C
        exit 0 when the point's HDF5 file is already there and valid (resume skips it)
    python -m ixhpc.job.steps ingest --run-dir R --job K --conc C [--power-expect ROLE=N ...]
                                     [--require-power] [--slo-search]
                                     [--eval-conc E ... --eval-task TASK=MIN ... [--eval-only]]
                                     [--custom-command CMD --custom-status N
                                      --custom-start T --custom-end T]
        turn the load generator's JSON into the point's HDF5 file, adding what only the
        job knows (job id, node list, start and end times, the GPU power of its window;
        with --slo-search, the job's SLO search: ``ixhpc.slo``; with --custom-*, a custom
        benchmark's step: exit status, log and wall time, no throughput metrics)

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

from ixhpc import __version__, atomic
from ixhpc.errors import ResultFileError, main_guard
from ixhpc.evals.results import EvalSpec, add_ingest_arguments, spec_of
from ixhpc.rundir import Layout


def _rendered(layout: Layout, job: str, conc: int) -> tuple[str, dict[str, Any]]:
    """(result key, static metadata) as render wrote them."""
    doc = json.loads(layout.meta(job, conc).read_text())
    return doc["result_key"], doc["metadata"]


def has_result(layout: Layout, job: str, conc: int) -> bool:
    from ixhpc.runstate import valid_point_file

    return valid_point_file(layout.result(_rendered(layout, job, conc)[0]))


def job_meta(bench_file: Path, bench: dict[str, Any]) -> dict[str, str]:
    """What the job adds to a point's metadata (docs/contracts.md); ``bench``: the file's result."""
    from ixhpc.results import agentic  # pydantic models: not on the has-result path

    env = os.environ
    array_job, task = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
    job_id = f"{array_job}_{task}" if array_job and task else env.get("SLURM_JOB_ID", "")
    end = dt.datetime.fromtimestamp(bench_file.stat().st_mtime, dt.UTC)
    if agentic.is_replay(bench):  # the replay's profiling window
        lo, hi = agentic.window(bench)
        start, end = dt.datetime.fromtimestamp(lo, dt.UTC), dt.datetime.fromtimestamp(hi, dt.UTC)
    else:
        start = end - dt.timedelta(seconds=float(bench["summary"].get("duration", 0.0)))
    return {
        "job_id": job_id,
        "node_list": env.get("SLURM_JOB_NODELIST", ""),
        "start_time": start.replace(microsecond=0).isoformat(),
        "end_time": end.replace(microsecond=0).isoformat(),
        "ixhpc_version": __version__,
    }


def ingest(layout: Layout, job: str, conc: int, power_expect: dict[str, int] | None = None,
           require_power: bool = False, slo_search: bool = False, evals: EvalSpec | None = None,
           custom: dict[str, Any] | None = None) -> Path:
    """``power_expect`` (role kind -> GPUs): the job samples GPU power; the point's verdict and
    readings come from its nodes' sampler files over the benchmark's window. ``evals``: the
    point ran lm-eval (ixhpc.evals): its scores and verdict go into the point's file. ``custom``:
    a custom benchmark's step (command, exit_status, start_unix, end_unix): recorded with its
    log path and wall time instead of a load generator's result."""
    from ixhpc import slo
    from ixhpc.evals import results as eval_results
    from ixhpc.results import power
    from ixhpc.results.ingest import no_benchmark, write_point

    bench_file = layout.bench_json(job, conc)
    if evals is not None and evals.only and not bench_file.exists():  # no throughput benchmark ran
        atomic.write_text(bench_file, json.dumps(no_benchmark(eval_only=True)))
    if custom is not None:   # the command's output is its own: the step's record stands for it
        custom = {**custom, "log": str(layout.bench_log(job, conc)),
                  "wall_s": round(custom["end_unix"] - custom["start_unix"], 3)}
        atomic.write_text(bench_file, json.dumps(no_benchmark(custom_benchmark=True)))
    bench = json.loads(bench_file.read_text())
    key, static = _rendered(layout, job, conc)
    meta = {**static, **job_meta(bench_file, bench)}
    if custom is not None:
        meta.update({k: dt.datetime.fromtimestamp(custom[f"{k[:-5]}_unix"], dt.UTC).replace(microsecond=0)
                     .isoformat() for k in ("start_time", "end_time")})
    out = layout.result(key)
    measured = None
    if power_expect:
        window = _power_window(bench)
        # the samplers' readings after the window's end bound it: wait for them to be written
        end = float((window.get("clock") or {}).get("end_unix", 0.0))
        time.sleep(max(0.0, min(POWER_SETTLE_S, end + POWER_SETTLE_S - time.time())))
        measured = power.for_point(layout.power_csvs(job), window, power_expect)
    search = slo.load(layout.slo_search(job)) if slo_search else None
    if slo_search and search is None:
        raise ResultFileError(f"{layout.slo_search(job)}: no SLO search recorded there")
    scored = (eval_results.collect({e: layout.eval_out(job, conc, e) for e in evals.concs}, evals)
              if evals is not None else None)
    write_point(out, bench, meta, measured, require_power, search, eval_result=scored, custom=custom)
    return out


def _power_window(bench: dict[str, Any]) -> dict[str, Any]:
    """What power integration reads (clock window, summary counts): an agentic replay's are its
    profiling window's (agentx SPEC §3.6: power over AIPerf's profiling start...end)."""
    from ixhpc.results import agentic

    if not agentic.is_replay(bench):
        return bench
    lo, hi = agentic.window(bench)
    return {"clock": {"start_unix": lo, "end_unix": hi},
            "summary": agentic.summary(agentic.Replay.model_validate(bench))}


POWER_SETTLE_S = 2.5  # after a benchmark's end: > the samplers' interval (placement.POWER_INTERVAL_S)


def _custom(args: argparse.Namespace) -> dict[str, Any] | None:
    if args.custom_command is None:
        return None
    if args.custom_status is None or args.custom_start is None or args.custom_end is None:
        raise ValueError("--custom-command needs --custom-status, --custom-start and --custom-end")
    return {"command": args.custom_command, "exit_status": args.custom_status,
            "start_unix": args.custom_start, "end_unix": args.custom_end}


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
    parser.add_argument("--slo-search", action="store_true",
                        help="store the job's SLO search (probes and answer, ixhpc.slo) in the point")
    add_ingest_arguments(parser)
    parser.add_argument("--custom-command", help="a custom benchmark ran this command (bash -lc)")
    parser.add_argument("--custom-status", type=int, help="its step's exit status")
    parser.add_argument("--custom-start", type=float, help="when the step started (s since the epoch)")
    parser.add_argument("--custom-end", type=float, help="when it ended (s since the epoch)")
    args = parser.parse_args(argv)
    layout = Layout.of(args.run_dir)
    try:
        if args.action == "has-result":
            return 0 if has_result(layout, args.job, args.conc) else 1
        from ixhpc.results.ingest import ResultExists

        try:
            out = ingest(layout, args.job, args.conc, _expect(args.power_expect), args.require_power,
                         args.slo_search, spec_of(args.eval_conc, args.eval_task, args.eval_only),
                         _custom(args))
        except ResultExists as exc:  # another job wrote this point first: its result stands
            print(f"[ixhpc] already done: {exc}")
            return 0
        print(f"[ixhpc] result written: {out}")
        return 0
    except (OSError, ValueError, KeyError) as exc:  # a missing or malformed bench/metadata file
        raise ResultFileError(f"{args.action}: {type(exc).__name__}: {exc}") from None


if __name__ == "__main__":
    raise SystemExit(main())
