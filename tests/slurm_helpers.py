"""Small helpers for tests that use the real local Slurm cluster."""

from __future__ import annotations

import subprocess
import time

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
            "PREEMPTED", "BOOT_FAIL", "DEADLINE"}


def run(argv: list[str], env: dict[str, str], check: bool = True) -> str:
    res = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    if check and res.returncode != 0:
        raise AssertionError(f"{argv} failed ({res.returncode}): {res.stderr}")
    return res.stdout


def sbatch(env: dict[str, str], *args: str) -> str:
    return run(["sbatch", "--parsable", *args], env).strip().split(";")[0]


def sacct_states(job_id: str, env: dict[str, str]) -> dict[str, tuple[str, str]]:
    """JobID -> (State, ExitCode) for the job and its array tasks, steps left out."""
    out = run(["sacct", "-X", "-n", "-P", "-j", job_id, "-o", "JobID,State,ExitCode"], env)
    rows = [line.split("|") for line in out.splitlines() if line]
    return {r[0]: (r[1].split()[0], r[2]) for r in rows}


def wait_done(job_id: str, env: dict[str, str], timeout: float = 120,
              expect: int = 1) -> dict[str, tuple[str, str]]:
    """Wait until sacct shows ``expect`` records of the job (array tasks), all terminal.

    slurmdbd learns of array tasks a moment after they end, so the count matters.
    """
    deadline = time.monotonic() + timeout
    states: dict[str, tuple[str, str]] = {}
    while time.monotonic() < deadline:
        states = sacct_states(job_id, env)
        pending = run(["squeue", "-h", "-j", job_id, "-o", "%i"], env, check=False).strip()
        if len(states) == expect and not pending and all(s in TERMINAL for s, _ in states.values()):
            return states
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} not finished after {timeout} s: {states}")
