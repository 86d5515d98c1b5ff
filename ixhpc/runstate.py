"""What state a run is in: its manifest, Slurm's word on each job, and the result files.

A point is done when its HDF5 file is there and whole, whatever Slurm says (its validity
verdict, ``ixhpc.bench.validity``, is reported beside: ``resume --invalid`` reruns invalid ones); a job's state
comes from one batched squeue+sacct call for the whole run (``ixhpc.slurm.states``).
A job that searches its concurrencies for an SLO (``ixhpc.slo``; ``submit`` records the search,
not started, before the job is queued) is counted by its search: its points are the
concurrencies the search has chosen (its probes and the one it is probing), none before its
first probe; the others are never missing, as the search picks them. It needs a run until
the search is done and its probes are ingested (``JobStatus.incomplete``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

from ixhpc import rundir, slurm
from ixhpc.bench import validity
from ixhpc.job.wrapper import TIME_LIMIT_MARK

MERGE_KEY = f"(merge into {rundir.Layout.MERGED})"   # the `submit --merge` job's status row


@dataclasses.dataclass(frozen=True)
class ProbeStatus:
    """One probe of a job's SLO search: at ``conc`` (a rate search: at ``rate`` req/s)."""

    conc: int
    met: bool
    failed: bool            # its client wrote no result: counted as missed, but a failed run
    rate: float | None = None


@dataclasses.dataclass(frozen=True)
class SearchStatus:
    """A job's SLO search (ixhpc.slo) as ``status`` and ``resume`` see it."""

    spec: str
    started: bool           # its first step has run (``submit`` records it not started)
    done: bool
    answer: int | None      # the highest concurrency met (a rate search: its cap); None: none
    rate_answer: float | None
    probes: tuple[ProbeStatus, ...]
    pending: int | float | None   # the probe under way (a rate search: its rate)
    open: list[int]         # concurrencies it may still probe
    settled: list[int]      # concurrencies the bisection settled without a run
    mode: str               # "concurrency" or "rate"
    cap: int | None         # a rate search's concurrency
    bisects: list[Any]      # what it bisects, rising: concurrencies or request rates
    max_probes: int | None

    @property
    def failed_probes(self) -> bool:
        return any(p.failed for p in self.probes)


@dataclasses.dataclass
class JobStatus:
    key: str
    kind: str
    job_id: str | None
    state: str            # Slurm state, NOT_SUBMITTED, or UNKNOWN when Slurm has no record
    reason: str           # pending reason, exit code, or the job's last ERROR line
    nodes: str
    points_done: int
    points_total: int
    missing: list[str]    # point keys without a valid result
    invalid: list[str] = dataclasses.field(default_factory=list)  # results the validity gate rejected
    search: SearchStatus | None = None   # its SLO search (ixhpc.slo), if it searches

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def incomplete(self) -> bool:
        """Points without a result, or an SLO search not finished (one not started has no
        points yet): what ``resume`` reruns once the job has ended."""
        return bool(self.missing) or (self.search is not None and not self.search.done)

    @property
    def failed_probes(self) -> bool:
        """Its SLO search judged a probe whose client wrote no result as missed: the answer rests
        on a failed run (``resume`` cannot redo a finished search: submit again)."""
        return self.search is not None and self.search.failed_probes


def valid_point_file(path: Path) -> bool:
    """True when ``path`` is a whole, readable run-point file (a half-written one never is)."""
    from ixhpc.results import store

    try:
        store.read(path, with_requests=False)
    except store.PointFileError:
        return False
    return True


def point_verdict(path: Path) -> str | None:
    """The validity verdict of a whole run-point file (``unknown`` for one judged before the
    gate existed); None when there is no whole file."""
    from ixhpc.results import store

    try:
        return store.read(path, with_requests=False).verdict
    except store.PointFileError:
        return None


def point_done(run: Path, point_key: str) -> bool:
    return valid_point_file(rundir.Layout.of(run).result(point_key))


def set_aside_invalid(run: Path, point_keys: list[str]) -> list[Path]:
    """Move the result files of these points that the validity gate judged invalid aside
    (``<key>.h5.invalid-<stamp>``: kept, never merged, never deleted), so their job runs them
    again; any other file is left alone."""
    layout = rundir.Layout.of(run)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    moved = []
    for key in point_keys:
        path = layout.result(key)
        if point_verdict(path) != validity.INVALID:
            continue
        target, n = path.with_name(f"{path.name}.invalid-{stamp}"), 1
        while target.exists():  # never over an earlier one
            target, n = path.with_name(f"{path.name}.invalid-{stamp}-{n}"), n + 1
        path.rename(target)
        moved.append(target)
    return moved


def set_aside_damaged(run: Path, point_keys: list[str]) -> list[Path]:
    """Move the damaged result files of these points (missing: no valid result) aside, so
    their job can publish a whole one; a point without a file is left alone."""
    layout = rundir.Layout.of(run)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    moved = []
    for key in point_keys:
        path = layout.result(key)
        if path.exists() and not valid_point_file(path):
            path.rename(layout.set_aside(key, stamp))
            moved.append(layout.set_aside(key, stamp))
    return moved


def _newest_log(run: Path, job_key: str) -> list[str]:
    logs = rundir.Layout.of(run).job_logs(job_key)
    return logs[-1].read_text(errors="replace").splitlines() if logs else []


def last_error(lines: list[str]) -> str:
    """The last line the job script logged as an error."""
    errors = [line for line in lines if "ERROR" in line]
    return errors[-1].split("] ", 1)[-1] if errors else ""


def failed_nodes(nodelist: str) -> str:
    """Which nodes of a job's node list are down or drained now (one sinfo call)."""
    out = slurm.run(["sinfo", "-h", "-N", "-n", nodelist, "-t", "down,drained,draining,fail",
                     "-o", "%N"])
    return ",".join(sorted(set(out.split())))


@dataclasses.dataclass
class RunStatus:
    jobs: list[JobStatus]
    accounting_error: str   # why Slurm accounting did not answer; "" when it did

    @property
    def accounting(self) -> bool:
        return not self.accounting_error

    def accounting_note(self) -> str:
        """One line for stderr when the states come from the queue alone ("" otherwise)."""
        if self.accounting:
            return ""
        return (f"warning: {slurm.ACCOUNTING_UNAVAILABLE} ({self.accounting_error}); states are "
                f"from squeue alone, a job it no longer lists shows as {slurm.UNKNOWN}")


def _searched(layout: rundir.Layout, entry: rundir.JobEntry) -> tuple[list[rundir.PointRef], SearchStatus | None]:
    """The points a job must have results for, and its SLO search (None: no search)."""
    from ixhpc import slo

    state = slo.load(layout.slo_search(entry.key))
    if state is None:
        return entry.points, None
    wanted = set(slo.chosen(state))
    _, still_open = slo.needed(state)
    tried = {q["conc"] for q in state["probes"]}
    settled = [p.conc for p in entry.points if p.conc not in {*wanted, *still_open, *tried}]
    rate = slo.rate_mode(state)
    probes = tuple(ProbeStatus(q["conc"], q["met"], q.get("why") == slo.NO_RESULT, q.get("rate"))
                   for q in state["probes"])
    return [p for p in entry.points if p.conc in wanted], SearchStatus(
        spec=state.get("spec", ""), started=slo.started(state), done=state["done"], answer=state.get("answer"),
        rate_answer=state.get("answer_rate"), probes=probes, pending=state.get("pending"), open=still_open,
        settled=settled, mode="rate" if rate else "concurrency", cap=state.get("cap"),
        bisects=slo.bisected(state), max_probes=state.get("max_probes"))


def job_statuses(run: Path, manifest: rundir.Manifest) -> list[JobStatus]:
    return run_status(run, manifest).jobs


def run_status(run: Path, manifest: rundir.Manifest) -> RunStatus:
    """Every job of the run (and the `submit --merge` job) with its points, from one
    batched Slurm query, and whether accounting answered it."""
    states = slurm.states(manifest.slurm_ids)
    out = []
    layout = rundir.Layout.of(run)
    for entry in manifest.jobs:
        points, search = _searched(layout, entry)
        verdicts = {p.key: point_verdict(layout.result(p.key)) for p in points}  # one read each
        missing = [key for key, verdict in verdicts.items() if verdict is None]
        invalid = [key for key, verdict in verdicts.items() if verdict == validity.INVALID]
        st = states.get(entry.job_id or "")
        state = st.state if st else (slurm.NOT_SUBMITTED if not entry.job_id else slurm.UNKNOWN)
        reason = st.reason if st else ""
        if state == slurm.UNKNOWN and not states.accounting:
            reason = "not in the queue; accounting unavailable"
        if slurm.is_terminal(state) and state != "COMPLETED":
            lines = _newest_log(run, entry.key)
            if state == "FAILED" and TIME_LIMIT_MARK in lines:
                # Stopped on Slurm's warning just before the limit (see ixhpc.job.wrapper.run_script).
                state, reason = "TIMEOUT", "stopped at the time limit"
            elif state == "NODE_FAIL" and st:
                reason = f"node(s) failed: {failed_nodes(st.nodes) or st.nodes}"
            else:
                detail = last_error(lines)
                reason = "; ".join(x for x in (reason, f"exit {st.exit_code}" if st else "", detail) if x)
        out.append(JobStatus(entry.key, entry.kind, entry.job_id, state, reason,
                             st.nodes if st else "", len(points) - len(missing),
                             len(points), missing, invalid, search))
    if manifest.merge_job_id:  # `submit --merge`: one row more, no points of its own
        st = states.get(manifest.merge_job_id)
        out.append(JobStatus(MERGE_KEY, "merge", manifest.merge_job_id,
                             st.state if st else slurm.UNKNOWN, st.reason if st else "", st.nodes if st else "",
                             0, 0, []))
    return RunStatus(out, states.accounting_error)
