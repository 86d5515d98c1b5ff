"""Submitting rendered job scripts through submitit.

Single-node jobs that need the same allocation become ONE job array (one `sbatch` call,
with a parallelism limit); each multi-node job is one job. The job runs the very script
`render` wrote (`bash scripts/<job>.sbatch`) directly in the batch step (`use_srun=False`),
so its `srun` lines create ordinary steps, exactly as under a hand-typed `sbatch`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Sequence

from ixhpc import rundir, slurm

# sbatch options submitit sets from its own parameters; everything else passes through.
_OWN = {"job-name", "partition", "nodes", "time", "output", "error", "ntasks-per-node"}


def run_script(script: str, log_dir: str) -> None:
    """What runs in the job: the rendered script, its output in the run's log directory."""
    log = Path(log_dir) / f"job-{os.environ.get('SLURM_JOB_ID', 'local')}.out"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab", buffering=0) as out:
        status = subprocess.call(["bash", script], stdout=out, stderr=subprocess.STDOUT)
    if status != 0:
        raise RuntimeError(f"{script} exited with status {status}; see {log}")


def executor_parameters(sbatch: dict[str, str | bool], array_parallelism: int = 64) -> dict:
    """submitit.SlurmExecutor parameters equal to a job's #SBATCH options."""
    extra = {k.replace("-", "_"): v for k, v in sbatch.items() if k not in _OWN}
    return {
        "job_name": str(sbatch["job-name"]),
        "partition": str(sbatch["partition"]),
        "nodes": int(sbatch["nodes"]),
        "ntasks_per_node": 1,
        "time": _minutes(str(sbatch["time"])),
        "use_srun": False,
        "array_parallelism": array_parallelism,
        "signal_delay_s": 60,
        "additional_parameters": extra,
    }


def script_options(script: Path) -> dict[str, str | bool]:
    """The #SBATCH options of a rendered script: what `resume` resubmits it with."""
    opts: dict[str, str | bool] = {}
    for line in script.read_text().splitlines():
        if line.startswith("#SBATCH --"):
            name, _, value = line[len("#SBATCH --"):].partition("=")
            opts[name] = value if _ else True
    return opts


def _submit(executor, scripts: list[str], logs: list[str]) -> list:
    # submitit lets sbatch write to our stderr; its message reaches the user once, in the
    # one-line error, so hold it back here.
    with _quiet_stderr():
        if len(scripts) == 1:
            return [executor.submit(run_script, scripts[0], logs[0])]
        return executor.map_array(run_script, scripts, logs)


@contextlib.contextmanager
def _quiet_stderr():
    import sys
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _minutes(hms: str) -> int:
    h, m, s = (int(x) for x in hms.split(":"))
    return max(1, h * 60 + m + (1 if s else 0))


def submit_groups(run: Path, groups: Sequence[tuple[dict, list[rundir.JobEntry]]],
                  array_parallelism: int) -> None:
    """Submit each group (same sbatch options) as one array or one job; record job ids."""
    import submitit

    for sbatch, entries in groups:
        executor = submitit.SlurmExecutor(folder=run / "submitit")
        executor.update_parameters(**executor_parameters(sbatch, array_parallelism))
        scripts = [str((run / e.script).resolve()) for e in entries]
        logs = [str((run / "logs" / e.key).resolve()) for e in entries]
        jobs = slurm.with_retries(lambda: _submit(executor, scripts, logs), "sbatch")
        for entry, job in zip(entries, jobs):
            entry.attempts.append(rundir.Attempt(job_id=job.job_id, submitted=rundir.now()))
