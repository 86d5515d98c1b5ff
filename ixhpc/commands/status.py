"""`ixhpc status RUN`: every job and point of a run, from one squeue and one sacct call.

With Slurm accounting down the states come from squeue alone: said on stderr (a field in
``--json``), jobs the queue no longer lists show as UNKNOWN.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ixhpc import rundir
    from ixhpc.runstate import JobStatus, ProbeStatus, SearchStatus


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run directory or run id (under results/)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--watch", nargs="?", const=10.0, type=float, metavar="SECONDS",
                        help="refresh every SECONDS (default 10) until every job has ended")


def run(args: argparse.Namespace) -> int:
    from ixhpc import rundir

    path = rundir.find(args.run)
    return show(path, rundir.load(path), args.json, args.watch)


def show(path: Path, manifest: rundir.Manifest, as_json: bool, watch: float | None = None) -> int:
    """Print the run's status (every ``watch`` seconds until no job is live); exit code 1 when
    a job has ended with points missing or its SLO search unfinished."""
    from ixhpc import runstate, slurm

    while True:
        status = runstate.run_status(path, manifest)
        jobs = status.jobs
        power = power_verdicts(path, manifest)
        if as_json:  # without accounting: a field, and no line on stderr to parse around
            print(json.dumps({"run_id": manifest.run_id, "accounting_available": status.accounting,
                              "accounting_error": status.accounting_error,
                              "jobs": [{**j.as_dict(), "power": power.get(j.key, {})} for j in jobs]}),
                  flush=True)
        else:
            if not status.accounting:
                print(status.accounting_note(), file=sys.stderr)
            _print_table(manifest.run_id, jobs)
            _print_power(power)
        if not watch or not any(slurm.is_live(j.state) for j in jobs):
            break
        time.sleep(watch)
    failed = any((j.incomplete or j.failed_probes) and slurm.is_terminal(j.state) for j in jobs)
    return 1 if failed else 0


def power_verdicts(path: Path, manifest: rundir.Manifest) -> dict[str, dict[str, str]]:
    """Per job, each result's GPU power verdict (ixhpc.results.power): "valid", or "invalid:
    REASONS"; points without a result or without sampled power are left out."""
    from ixhpc import rundir
    from ixhpc.results import store

    layout = rundir.Layout.of(path)
    out: dict[str, dict[str, str]] = {}
    for entry in manifest.jobs:
        for ref in entry.points:
            try:
                doc = store.read(layout.result(ref.key), with_requests=False).power
            except store.PointFileError:
                continue
            if doc is not None:
                out.setdefault(entry.key, {})[ref.key] = (
                    "valid" if doc.get("power_valid") else f"invalid: {','.join(doc.get('reasons', [])) or '?'}")
    return out


def _print_power(power: dict[str, dict[str, str]]) -> None:
    verdicts = [v for job in power.values() for v in job.values()]
    if not verdicts:
        return
    bad = {k: v for job in power.values() for k, v in job.items() if v != "valid"}
    print(f"GPU power: {len(verdicts) - len(bad)} valid, {len(bad)} not valid")
    for key, verdict in sorted(bad.items()):
        print(f"  power {verdict}: {key}")


def _print_table(run_id: str, jobs: list[JobStatus]) -> None:
    from ixhpc import slurm

    done = sum(j.points_done for j in jobs)
    total = sum(j.points_total for j in jobs)
    searching = sum(1 for j in jobs if j.search is not None and not j.search.done)
    print(f"run {run_id}: {done}/{total} points have results"
          + (f"; {searching} SLO search(es) unfinished, each picking its points as it goes" if searching else ""))
    width = max([len(j.key) for j in jobs] + [3])
    print(f"{'JOB':{width}}  {'JOB ID':10}  {'STATE':13}  {'POINTS':7}  NODES / REASON")
    invalid = sum(len(j.invalid) for j in jobs if not _searched(j))
    if invalid:
        print(f"{invalid} point(s) judged invalid by the validity gate (`ixhpc resume --invalid` reruns them)")
    for j in jobs:
        extra = " ".join(x for x in (j.nodes, j.reason, f"invalid: {', '.join(j.invalid)}" if j.invalid else "")
                         if x)
        points = "search" if j.search is not None and not j.search.started else f"{j.points_done}/{j.points_total}"
        print(f"{j.key:{width}}  {j.job_id or '-':10}  {j.state:13}  {points:7}  {extra}")
    for j in jobs:
        if j.search is not None:
            print(f"{j.key}: {_search_line(j.search, slurm.is_live(j.state))}")


def _searched(job: JobStatus) -> bool:
    """A finished SLO search: its invalid probes are findings (missed), not reruns."""
    return job.search is not None and job.search.done


def _search_line(search: SearchStatus, live: bool) -> str:
    """The search's progress: not started, probing (``live``: its job is queued or running), cut
    short (the job ended first: ``resume`` continues it), or its answer."""
    rate = search.mode == "rate"
    if not search.started:
        bisects = (f"request rates {', '.join(f'{r:g}' for r in search.bisects)}/s at concurrency {search.cap}"
                   if rate else f"concurrencies {', '.join(map(str, search.bisects))}")
        return (f"SLO search {search.spec} not started: bisects {bisects}, at most {search.max_probes} "
                f"probe(s){'' if live else '; the job ended first: `ixhpc resume` runs it'}")
    probes = ", ".join(f"{_probe_at(p)} {'met' if p.met else 'failed (no result)' if p.failed else 'missed'}"
                       for p in search.probes) or "none yet"
    if not search.done:
        pending = search.pending
        now = (f"; probing {f'{pending:g}/s' if rate else f'c{pending}'}" if live and pending is not None else "")
        others = [c for c in search.open if c != pending]  # a rate search's open is its cap
        later = f"; may still probe {', '.join(map(str, others))}" if others and not rate else ""
        return (f"SLO search {search.spec} {'running' if live else 'unfinished'} (probes: {probes}{now}{later})"
                + ("" if live else ": `ixhpc resume` continues it"))
    found = ("none meets it" if search.answer is None
             else f"answer {search.rate_answer:g} req/s at concurrency {search.answer}"
             if search.rate_answer is not None else f"answer {search.answer}")
    failed = ("; a failed probe counted as missed: submit the job again for a trustworthy answer"
              if search.failed_probes else "")
    settled = ", ".join(map(str, search.settled)) or "-"
    return f"SLO search {search.spec}: {found} (probes: {probes}; not run, settled by the search: {settled}){failed}"


def _probe_at(probe: ProbeStatus) -> str:
    return f"{probe.rate:g}/s" if probe.rate is not None else f"c{probe.conc}"
