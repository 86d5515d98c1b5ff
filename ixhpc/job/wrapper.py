"""The batch step of every ixhpc job: run the rendered script, stop it before the time limit.

submitit pickles ``run_script`` by reference, so this module runs on the compute node; it
imports nothing of ixhpc beyond itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    import threading

TIME_LIMIT_MARK = "[ixhpc] time limit reached: stopping the job"


def run_script(script: str, log_pattern: str) -> None:
    """What runs in the job: the rendered script, its output in the job's log (the run
    layout's Slurm-style pattern, ``%j`` = this job's id).

    Shortly before the job's time limit the script gets SIGTERM, so it stops its roles while
    the results already written stay, and the log records why (``status`` reports TIMEOUT).
    """
    log = Path(log_pattern.replace("%j", os.environ.get("SLURM_JOB_ID", "local")))
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab", buffering=0) as out:
        child = subprocess.Popen(["bash", script], stdout=out, stderr=subprocess.STDOUT)
        timer = _time_limit_timer(child, out)
        status = child.wait()
        if timer:
            timer.cancel()
    if status != 0:
        raise RuntimeError(f"{script} exited with status {status}; see {log}")


def _time_limit_timer(child: subprocess.Popen[bytes], out: IO[bytes]) -> threading.Timer | None:
    """Arm a timer for the job's end time as Slurm has it (one squeue call)."""
    import datetime as dt
    import threading
    import time

    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    try:
        end = subprocess.run(["squeue", "-h", "-j", job, "-o", "%e"], capture_output=True,
                             text=True, timeout=30).stdout.strip()
        deadline = dt.datetime.fromisoformat(end).timestamp()
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None  # no end time known (e.g. no limit): Slurm's own TERM still applies
    left = deadline - time.time()

    def stop() -> None:
        out.write(f"{TIME_LIMIT_MARK}\n".encode())
        child.send_signal(signal.SIGTERM)

    timer = threading.Timer(max(0.0, left - (60 if left > 600 else 10)), stop)
    timer.daemon = True
    timer.start()
    return timer
