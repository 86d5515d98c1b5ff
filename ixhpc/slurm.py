"""Talking to Slurm's command-line tools: one batched call per question, bounded retries.

Status of a whole run is one ``squeue`` call plus one ``sacct`` call for all its job ids,
never a polling loop per job. Transient failures (slurmctld busy, slurmdbd restarting) are
retried with exponential backoff, a bounded number of times.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from ixhpc.errors import IxhpcError, SlurmError, SlurmTransientError

T = TypeVar("T")
RETRIES = int(os.environ.get("IXHPC_SLURM_RETRIES", "4"))
BACKOFF_S = float(os.environ.get("IXHPC_SLURM_BACKOFF", "0.5"))
# Messages Slurm prints when a retry may help (controller or accounting busy/restarting).
TRANSIENT = ("Socket timed out", "Unable to contact slurm controller", "Connection refused",
             "slurmdbd", "Resource temporarily unavailable", "try again", "Zero Bytes were transmitted")
# How a Slurm client call fails: the process cannot start or time out (OSError, subprocess
# errors) or exits non-zero (our RuntimeError; submitit's FailedJobError/FailedSubmissionError
# are RuntimeErrors). Anything else (TypeError, KeyError...) is a bug: never retried or hidden.
SLURM_FAILURES = (OSError, subprocess.SubprocessError, RuntimeError)


def is_transient(message: str) -> bool:
    return any(t.lower() in message.lower() for t in TRANSIENT)


def with_retries(attempt: Callable[[], T], what: str, retries: int = RETRIES) -> T:
    """Call ``attempt``; retry transient failures with exponential backoff, a bounded number
    of times; any other Slurm failure, or the last one, becomes a one-line SlurmError."""
    delay = BACKOFF_S
    for i in range(retries + 1):
        try:
            return attempt()
        except IxhpcError:
            raise
        except SLURM_FAILURES as exc:  # sbatch errors reach us wrapped in several types
            message = str(exc).strip() or type(exc).__name__
            transient = is_transient(message)
            if not transient or i == retries:
                kind = SlurmTransientError if transient else SlurmError
                raise kind(f"{what} failed: {message.splitlines()[-1]}") from None
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def run(argv: Sequence[str], retries: int = RETRIES, timeout: float = 60) -> str:
    """Run a Slurm client and return its output (see ``with_retries``)."""
    def attempt() -> str:
        try:
            res = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError:
            raise SlurmError(f"`{argv[0]}` not found: is this a Slurm login node?") from None
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"Socket timed out: no answer in {timeout:.0f} s") from None
        if res.returncode != 0:
            raise RuntimeError((res.stderr or res.stdout).strip() or f"exit status {res.returncode}")
        return res.stdout

    return with_retries(attempt, f"`{' '.join(argv[:2])} ...`", retries)


def sbatch(script: str, options: Sequence[str] = (), retries: int = RETRIES) -> str:
    """Submit a batch script with ``sbatch`` itself (a heterogeneous job: submitit cannot) and
    return its job id. ``options`` (``--name=value``) go before the script and override its
    first component's ``#SBATCH`` lines. Retried like every Slurm call (bounded)."""
    out = run(["sbatch", "--parsable", *options, script], retries=retries)
    job_id = out.strip().split(";")[0]
    if not job_id.isdigit():
        raise SlurmError(f"sbatch {script}: expected a job id, found {out.strip()!r}")
    return job_id


def _het_leader(job_id: str) -> str | None:
    """A heterogeneous job's component ``123+N`` as Slurm lists it: the job's own id (123)
    for component 0, which runs the batch script and stands for the job; None for others."""
    base, plus, component = job_id.partition("+")
    if not plus:
        return job_id
    return base if component == "0" else None


@dataclasses.dataclass(frozen=True)
class JobState:
    job_id: str          # as Slurm prints it: 123, 123_4 for an array task
    state: str           # PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, NODE_FAIL, ...
    reason: str          # why pending / the failure reason, "" when none
    exit_code: str       # "0:0" style, "" while queued
    nodes: str           # node list ("" while pending)
    start: str
    end: str


TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
                      "PREEMPTED", "BOOT_FAIL", "DEADLINE"})
UNKNOWN = "UNKNOWN"              # Slurm has no record of the job (any more)
NOT_SUBMITTED = "NOT_SUBMITTED"  # the manifest has no job id for it yet


def is_terminal(state: str) -> bool:
    """Slurm has ended the job for good: it will not run again by itself."""
    return state in TERMINAL


def is_live(state: str) -> bool:
    """Slurm may still run the job: queued, running, suspended, requeued, completing...
    The one rule behind `status --watch`, `submit --wait`, `cancel` and `resume`: a live
    job is waited for, cancelled, never resubmitted; a job with no record is not live."""
    return state not in TERMINAL and state not in (UNKNOWN, NOT_SUBMITTED)


class States(dict[str, JobState]):
    """Job id -> JobState, and whether Slurm accounting (sacct/slurmdbd) answered.

    Without accounting the states come from the controller alone (``squeue``): a job it
    still lists (queued, running, or ended a moment ago) has its state; any other job has
    no entry, so callers see it as UNKNOWN (not live).
    """

    def __init__(self, accounting_error: str = "") -> None:
        super().__init__()
        self.accounting_error = accounting_error  # why sacct failed; "" when it answered

    @property
    def accounting(self) -> bool:
        return not self.accounting_error


# sacct is retried less than the controller: when slurmdbd is down, answering from squeue
# alone in a second beats failing after the full backoff.
SACCT_RETRIES = int(os.environ.get("IXHPC_SACCT_RETRIES", "1"))
ACCOUNTING_UNAVAILABLE = "Slurm accounting (sacct/slurmdbd) is unavailable"


def states(job_ids: Iterable[str]) -> States:
    """Current state of every job (and array task) in ``job_ids``: one sacct + one squeue call.

    squeue is authoritative for queued and running jobs (with the pending reason); sacct for
    finished ones. Array ids expand to one entry per task ("123_4"). When sacct fails (slurmdbd
    down or restarting, accounting disabled) the answer comes from squeue alone, including the
    jobs the controller still remembers as ended, and ``accounting_error`` says why.
    """
    ids = sorted({str(j).split("_")[0] for j in job_ids})
    found = States()
    if not ids:
        return found
    try:
        acct = run(["sacct", "-X", "-n", "-P", "-j", ",".join(ids),
                    "-o", "JobID,State,Reason,ExitCode,NodeList,Start,End"], retries=SACCT_RETRIES)
    except SlurmError as exc:
        found.accounting_error = str(exc)
        acct = ""
    others: dict[str, dict[str, None]] = {}   # a heterogeneous job's nodes of components 1..
    for line in acct.splitlines():
        f = line.split("|")
        job = _het_leader(f[0]) if len(f) == 7 else None
        if len(f) == 7:
            _other_component(f[0], f[4], others)
        if job is not None and "[" not in job:
            found[job] = JobState(job, f[1].split()[0], _reason(f[2]), f[3], f[4], f[5], f[6])
    # `squeue -j` fails once a job has left the controller, so list ours and filter. Without
    # accounting, also the ended jobs the controller still holds (MinJobAge).
    every = ["-t", "all"] if found.accounting_error else []
    queue = run(["squeue", "-h", "-r", "--me", *every, "-o", "%i|%T|%r|%N|%S"])
    wanted = set(ids)
    for line in queue.splitlines():
        f = line.split("|")
        job = _het_leader(f[0]) if len(f) == 5 else None
        if len(f) == 5:
            _other_component(f[0], f[3], others)
        if job is not None and job.split("_")[0] in wanted:
            old = found.get(job)
            found[job] = JobState(job, f[1], _reason(f[2]), old.exit_code if old else "",
                                  f[3], f[4], old.end if old else "")
    for job, nodes in others.items():   # a heterogeneous job's nodes: every component's
        st = found.get(job)
        if st is not None:
            every = [n for n in (st.nodes, *nodes) if n]
            found[job] = dataclasses.replace(st, nodes=",".join(dict.fromkeys(every)))
    return found


def _other_component(job_id: str, nodes: str, into: dict[str, dict[str, None]]) -> None:
    """Note the nodes of a heterogeneous job's component ``123+N`` (N > 0) under its job (123)."""
    base, plus, component = job_id.partition("+")
    if plus and component != "0" and nodes and nodes not in ("None assigned", "(null)"):
        into.setdefault(base, {})[nodes] = None


def _reason(text: str) -> str:
    return "" if text in ("None", "(null)") else text


def cancel(job_ids: Iterable[str]) -> None:
    ids = sorted({str(j) for j in job_ids})
    if ids:
        run(["scancel", *ids])


def hostnames(nodelist: str) -> list[str]:
    return run(["scontrol", "show", "hostnames", nodelist]).split() if nodelist else []
