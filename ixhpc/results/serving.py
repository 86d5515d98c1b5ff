"""InferenceX's ``benchmark_serving`` result -> an ixhpc run-point file (script mode).

In script mode (``ixhpc.inferencex_scripts``) InferenceX's own script runs the client and
writes ``$RESULT_FILENAME.json`` in its working directory (``/workspace``): the
``benchmark_serving`` result format, a flat object of settings and summary numbers
(``completed``, ``duration``, ``*_throughput``, ``mean|median|std|pNN_{ttft,tpot,itl,e2el}_ms``)
and, with ``--save-detailed``, per-request arrays (``input_lens``, ``output_lens``, ``ttfts``
and ``itls`` in seconds, ``errors``, optionally ``e2els``/``start_times``). Here it becomes the
same HDF5 point file an ixhpc-client result is, with the point's metadata; its
``bench_config`` says ``client: inferencex-benchmark_serving`` (an ixhpc-client file has no
``client`` key), so merged tables and reports tell the two apart. The script's
``server.log`` and ``gpu_metrics.csv``, when present, are kept beside the result in the run
directory and inside the HDF5 file (group ``/inferencex``: one string dataset each).

    python -m ixhpc.results.serving workspace --checkout DIR --to DIR
        the job's copy of the checkout (no .git), the script's working directory
    python -m ixhpc.results.serving ingest --run-dir R --job K --conc C --result-filename NAME
            --random-range-ratio X
        after one concurrency's step: move its files into the run directory, write the point

Validity (``ixhpc.bench.validity``, its codes and thresholds): the result's own counts are the
evidence. Requests are ``num_prompts`` (else the per-request rows), failed ones those not
``completed`` (or with an error text); output and input tokens are ``total_output_tokens``
and ``total_input_tokens`` (benchmark_serving's own count of the prompts it sent: the
``client`` counted them); what was requested is the nearest total the random range allows
(each request's length drawn from [ratio x L, L] for the row's ISL and OSL), so only a
realized average outside that range counts against the point. Unknown whether the script
asked for ``ignore_eos``, the OSL check is the lenient one (at least half). A result cannot
show stalls, chunk contents or read lag (``stalled_stream``, ``output_tokens_unconfirmed``,
``client_behind``), nor, without ``--save-detailed``, short requests
(``too_few_output_tokens``): the verdict lists those as ``unchecked``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, TypeGuard

from ixhpc.bench import validity
from ixhpc.errors import ResultFileError, main_guard
from ixhpc.evals.results import EvalSpec, add_ingest_arguments, spec_of
from ixhpc.rundir import Layout

CLIENT = "inferencex-benchmark_serving"
ATTACHMENTS = "inferencex"            # HDF5 group of the script's side files
SERVER_LOG = "server.log"             # InferenceX's names in its working directory
GPU_METRICS = "gpu_metrics.csv"
_CONFIG_KEYS = ("date", "backend", "model_id", "tokenizer_id", "num_prompts", "request_rate",
                "burstiness", "max_concurrency")
_ARRAYS = ("input_lens", "output_lens", "ttfts", "itls", "errors", "generated_texts", "e2els",
           "start_times")
# What no benchmark_serving result can show; and what needs its per-request arrays.
UNCHECKABLE = (validity.STALLED_STREAM, validity.OUTPUT_TOKENS_UNCONFIRMED, validity.CLIENT_BEHIND)
NEEDS_DETAILED = (validity.TOO_FEW_OUTPUT_TOKENS,)


@dataclasses.dataclass(frozen=True)
class Requested:
    """What the row asked for: each request's lengths are drawn from [ratio x L, L]."""

    isl: int
    osl: int
    range_ratio: float    # RANDOM_RANGE_RATIO, the recipe's ixhpc.benchmark.random-range-ratio


def _number(v: Any) -> TypeGuard[int | float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def bench_result(doc: dict[str, Any], source: str = "", requested: Requested | None = None) -> dict[str, Any]:
    """The ixhpc benchmark-result record (``ixhpc.results.ingest.BenchResult``) of one
    ``benchmark_serving`` result; judged (``validity``) when the row's ``requested`` lengths
    are known."""
    if not isinstance(doc, dict):
        raise ResultFileError(f"{source}: expected a benchmark_serving result object")
    summary = {k: v for k, v in doc.items() if _number(v) and k not in _ARRAYS}
    if "total_token_throughput" not in summary and _number(doc.get("output_throughput")) and \
            _number(doc.get("duration")) and doc["duration"]:
        summary["total_token_throughput"] = (doc.get("total_input_tokens", 0)
                                             + doc.get("total_output_tokens", 0)) / doc["duration"]
    config: dict[str, Any] = {k: doc[k] for k in _CONFIG_KEYS
                              if isinstance(doc.get(k), (str, int, float, bool))}
    config["client"] = CLIENT
    requests = _requests(doc, source)
    out = {"summary": summary, "requests": requests, "config": config,
           "failure": None if doc.get("completed", 1) else "no request completed"}
    if requested is not None:
        ev = evidence(doc, requests, requested)
        judged = validity.judge(ev)
        out["validity"] = {"verdict": judged["verdict"], "reasons": judged["reasons"],
                           "details": judged["details"], "evidence": ev}
    return out


def _float(doc: dict[str, Any], key: str, default: float = 0.0) -> float:
    value = doc.get(key)
    return float(value) if _number(value) else default


def _clamped(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def evidence(doc: dict[str, Any], requests: dict[str, list[Any]], want: Requested) -> dict[str, Any]:
    """``validity.judge``'s evidence from what the result holds (see the module's docstring)."""
    detailed = bool(requests["success"])
    ok = [i for i, good in enumerate(requests["success"]) if good]
    completed = _float(doc, "completed", float(len(ok)))
    n = max(_float(doc, "num_prompts"), float(len(requests["success"])), completed)
    failed = max(n - completed, float(len(requests["success"]) - len(ok)))
    done = n - failed
    outs = float(sum(requests["output_len"][i] for i in ok)) if detailed else _float(doc, "total_output_tokens")
    ins = float(sum(requests["input_len"][i] for i in ok)) if detailed else _float(doc, "total_input_tokens")
    r = want.range_ratio
    unchecked = [*UNCHECKABLE, *([] if detailed else NEEDS_DETAILED)]
    return {
        "requests": n, "failed": failed, "output_tokens": outs,
        "requested_output_tokens": _clamped(outs, done * r * want.osl, done * want.osl),
        "short_requests": sum(requests["output_len"][i] < validity.MIN_OUTPUT_TOKENS for i in ok),
        "requested_input_tokens": _clamped(ins, done * r * want.isl, done * want.isl) if ins else 0.0,
        "reported_input_tokens": ins, "reported_input_requests": done if ins else 0.0,
        "ignore_eos": False, validity.INPUT_COUNTER: "client",
        validity.UNCHECKED: ",".join(c for c in validity.CODES if c in unchecked),
    }


def _requests(doc: dict[str, Any], source: str) -> dict[str, list[Any]]:
    ttfts = doc.get("ttfts")
    if not isinstance(ttfts, list):  # a result without --save-detailed: no per-request data
        return {k: [] for k in ("ttft_ms", "tpot_ms", "e2el_ms", "input_len", "output_len", "success",
                                "error", "start_time", "itl_ms_values")} | {"itl_ms_offsets": [0]}
    n = len(ttfts)
    itls = doc.get("itls") or [[] for _ in range(n)]
    errors = [str(e or "") for e in (doc.get("errors") or [""] * n)]
    ins = [int(x) for x in doc.get("input_lens") or [0] * n]
    outs = [int(x) for x in doc.get("output_lens") or [0] * n]
    lens = {"itls": len(itls), "errors": len(errors), "input_lens": len(ins), "output_lens": len(outs)}
    bad = [k for k, m in lens.items() if m != n]
    if bad:
        raise ResultFileError(f"{source}: {bad[0]} has {lens[bad[0]]} entries, ttfts has {n}")
    ttft_ms = [float(t) * 1000.0 for t in ttfts]
    e2els = doc.get("e2els")
    e2el_ms = ([float(x) * 1000.0 for x in e2els] if isinstance(e2els, list) and len(e2els) == n
               else [t + sum(float(g) for g in gaps) * 1000.0 for t, gaps in zip(ttft_ms, itls)])
    tpot_ms = [(e - t) / (o - 1) if o > 1 else 0.0 for e, t, o in zip(e2el_ms, ttft_ms, outs)]
    starts = doc.get("start_times")
    start = [float(s) for s in starts] if isinstance(starts, list) and len(starts) == n else [math.nan] * n
    values: list[float] = []
    offsets = [0]
    for gaps in itls:
        values += [float(g) * 1000.0 for g in gaps]
        offsets.append(len(values))
    return {"ttft_ms": ttft_ms, "tpot_ms": tpot_ms, "e2el_ms": e2el_ms, "input_len": ins, "output_len": outs,
            "success": [not e for e in errors], "error": errors, "start_time": start,
            "itl_ms_values": values, "itl_ms_offsets": offsets}


def _job_fields(result: Path, duration: float) -> dict[str, str]:
    """What the job adds to a point's metadata (as ``ixhpc.job.steps`` does)."""
    from ixhpc import __version__

    env = os.environ
    array_job, task = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
    end = dt.datetime.fromtimestamp(result.stat().st_mtime, dt.UTC)
    start = end - dt.timedelta(seconds=duration)
    return {"job_id": f"{array_job}_{task}" if array_job and task else env.get("SLURM_JOB_ID", ""),
            "node_list": env.get("SLURM_JOB_NODELIST", ""),
            "start_time": start.replace(microsecond=0).isoformat(),
            "end_time": end.replace(microsecond=0).isoformat(), "ixhpc_version": __version__}


def write_point(out: Path, doc: dict[str, Any], metadata: dict[str, Any],
                attachments: dict[str, Path], range_ratio: float,
                eval_result: tuple[dict[str, Any], dict[str, bytes]] | None = None) -> str:
    """The point file at ``out`` (never replaced), the side files inside it, judged against the
    metadata's ISL and OSL; ``eval_result``: the script's lm-eval scores (ixhpc.evals.results)."""
    import h5py

    from ixhpc import atomic
    from ixhpc.results import ingest

    staging = out.parent / f".{out.name}.serving-staging"
    staging.unlink(missing_ok=True)
    requested = (Requested(int(metadata["isl"]), int(metadata["osl"]), range_ratio)
                 if metadata.get("isl") and metadata.get("osl") else None)   # agentic rows have none
    config = doc.get("config")
    eval_only = isinstance(config, dict) and config.get("eval_only") is True  # ixhpc.results.ingest.no_benchmark
    bench = doc if eval_only else bench_result(doc, str(out), requested)
    result_id = ingest.write_point(staging, bench, metadata, eval_result=eval_result)
    try:
        with h5py.File(staging, "a") as f:
            group = f.create_group(ATTACHMENTS)
            for name, path in attachments.items():
                group.create_dataset(name, data=path.read_text(errors="replace"), dtype=h5py.string_dtype())
        try:
            atomic.link_new(staging, out)
        except FileExistsError:
            raise ingest.ResultExists(f"{out} exists; results are never overwritten") from None
    finally:
        staging.unlink(missing_ok=True)
    return result_id


def ingest_step(layout: Layout, job: str, conc: int, result_filename: str, status: int,
                range_ratio: float, evals: EvalSpec | None = None) -> Path:
    """After one concurrency's step: keep its files in the run directory, write its point.
    ``evals``: the script ran lm-eval (RUN_EVAL); an eval-only one wrote no benchmark result."""
    from ixhpc import atomic
    from ixhpc.evals import results as eval_results
    from ixhpc.results.ingest import no_benchmark

    ws = layout.workspace(job)
    if evals is not None:
        eval_results.take_script_eval(ws, layout.eval_out(job, conc, evals.concs[0]))
    moves = {ws / f"{result_filename}.json": layout.serving_json(job, conc),
             ws / SERVER_LOG: layout.server_log(job, conc), ws / GPU_METRICS: layout.gpu_metrics(job, conc)}
    for src, dst in moves.items():
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
    result = layout.serving_json(job, conc)
    if evals is not None and evals.only and not result.is_file():  # no throughput benchmark ran
        result.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(result, json.dumps(no_benchmark(eval_only=True)))
    if not result.is_file():
        raise ResultFileError(f"the InferenceX script (status {status}) wrote no {result_filename}.json "
                              f"at concurrency {conc}")
    doc = json.loads(result.read_text())
    rendered = json.loads(layout.meta(job, conc).read_text())
    duration = float(doc.get("duration", 0.0)) if _number(doc.get("duration")) else 0.0
    meta = {**rendered["metadata"], **_job_fields(result, duration)}
    attachments = {n: p for n, p in (("server_log", layout.server_log(job, conc)),
                                     ("gpu_metrics_csv", layout.gpu_metrics(job, conc))) if p.is_file()}
    out = layout.result(rendered["result_key"])
    scored = (eval_results.collect({e: layout.eval_out(job, conc, e) for e in evals.concs}, evals)
              if evals is not None else None)
    write_point(out, doc, meta, attachments, range_ratio, scored)
    return out


def copy_workspace(checkout: Path, to: Path) -> None:
    """The job's own copy of the checkout (without .git): concurrent jobs never share the
    files a script writes into its working directory."""
    if to.exists():
        shutil.rmtree(to)
    shutil.copytree(checkout, to, symlinks=True, ignore=shutil.ignore_patterns(".git"))


@main_guard("ixhpc.results.serving")
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ixhpc.results.serving")
    sub = parser.add_subparsers(dest="action", required=True)
    ws = sub.add_parser("workspace")
    ws.add_argument("--checkout", type=Path, required=True)
    ws.add_argument("--to", type=Path, required=True)
    ing = sub.add_parser("ingest")
    ing.add_argument("--run-dir", type=Path, required=True)
    ing.add_argument("--job", required=True)
    ing.add_argument("--conc", type=int, required=True)
    ing.add_argument("--result-filename", required=True)
    ing.add_argument("--status", type=int, default=0)
    ing.add_argument("--random-range-ratio", type=float, required=True,
                     help="the job's RANDOM_RANGE_RATIO: request lengths in [ratio x ISL/OSL, ISL/OSL]")
    add_ingest_arguments(ing)
    args = parser.parse_args(argv)
    if args.action == "workspace":
        copy_workspace(args.checkout, args.to)
        return 0
    from ixhpc.results.ingest import ResultExists

    try:
        out = ingest_step(Layout.of(args.run_dir), args.job, args.conc, args.result_filename, args.status,
                          args.random_range_ratio, spec_of(args.eval_conc, args.eval_task, args.eval_only))
    except ResultExists as exc:
        print(f"[ixhpc] already done: {exc}")
        return 0
    except (OSError, ValueError, KeyError) as exc:
        raise ResultFileError(f"ingest: {type(exc).__name__}: {exc}") from None
    print(f"[ixhpc] result written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
