"""Submitting rendered job scripts through submitit.

Single-node jobs that need the same allocation become ONE job array (one `sbatch` call,
with a parallelism limit); each multi-node job is one job. The job runs the very script
`render` wrote (`bash scripts/<job>.sbatch`) directly in the batch step (`use_srun=False`),
so its `srun` lines create ordinary steps, exactly as under a hand-typed `sbatch`.

A heterogeneous job (its script has ``#SBATCH hetjob`` lines: a disaggregated point whose
pools run on different hardware) is beyond submitit: its script is handed to ``sbatch``
itself (``ixhpc.slurm.sbatch``, bounded retries), the script being the batch script, and its
job id is recorded in the manifest like any other. Slurm's own time limit stops it (there is
no wrapper to stop it a little earlier).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ixhpc import rundir, slurm
from ixhpc.errors import ConfigError
from ixhpc.job import merge as merge_job
from ixhpc.job import wrapper

if TYPE_CHECKING:
    import submitit

    from ixhpc.profiles import ClusterProfile

# sbatch options submitit sets from its own parameters; everything else passes through.
_OWN = {"job-name", "partition", "nodes", "time", "output", "error", "ntasks-per-node"}


# A Slurm --dependency expression: TYPE[:JOB[+TIME]...] joined by "," (all) or "?" (any).
_DEPENDENCY = re.compile(r"(singleton|[a-z]+(:\d+(_\d+)?(\+\d+)?)+)([,?](singleton|[a-z]+(:\d+(_\d+)?(\+\d+)?)+))*\Z")
_JOB_LIST = re.compile(r"\d+(_\d+)?(,\d+(_\d+)?)*\Z")


def dependency(text: str) -> str:
    """``--after``: job ids (``123,124`` means afterok on both) or a Slurm expression."""
    if _JOB_LIST.match(text):
        return "afterok:" + ":".join(text.split(","))
    if _DEPENDENCY.match(text):
        return text
    raise ConfigError(f"--after {text!r}: expected job ids such as 123,124 or a Slurm dependency "
                    f"such as afterany:123:124")


def executor_parameters(sbatch: dict[str, str | bool], array_parallelism: int = 64) -> dict[str, Any]:
    """submitit.SlurmExecutor parameters equal to a job's #SBATCH options."""
    extra = {k.replace("-", "_"): v for k, v in sbatch.items() if k not in _OWN}
    minutes = _minutes(str(sbatch["time"]))
    # submitit always asks Slurm to signal USR2 before the limit; aim it at the batch shell
    # only (B:) and let that shell ignore it (setup): by default USR2 would kill the shell and
    # with it the roles. run_script stops the job in time instead.
    extra["signal"] = f"B:USR2@{60 if minutes >= 10 else 10}"
    return {
        "job_name": str(sbatch["job-name"]),
        "partition": str(sbatch["partition"]),
        "nodes": int(sbatch["nodes"]),
        "ntasks_per_node": 1,
        "time": minutes,
        "use_srun": False,
        "setup": ["trap '' USR2"],
        "array_parallelism": array_parallelism,
        "additional_parameters": extra,
    }


HETJOB = "#SBATCH hetjob"


def is_hetjob(script: Path) -> bool:
    """Whether a rendered script is a heterogeneous job (several #SBATCH components)."""
    return any(line.strip() == HETJOB for line in script.read_text().splitlines())


def script_options(script: Path) -> dict[str, str | bool]:
    """The #SBATCH options of a rendered script: what `resume` resubmits it with (a
    heterogeneous job's: its first component's, which also name the whole job)."""
    opts: dict[str, str | bool] = {}
    for line in script.read_text().splitlines():
        if line.strip() == HETJOB:
            break
        if line.startswith("#SBATCH --"):
            name, _, value = line[len("#SBATCH --"):].partition("=")
            opts[name] = value if _ else True
    return opts


def _submit(executor: submitit.SlurmExecutor, scripts: list[str], logs: list[str]) -> list[submitit.Job[None]]:
    # submitit lets sbatch write to our stderr; its message reaches the user once, in the
    # one-line error, so hold it back here.
    with _quiet_stderr():
        if len(scripts) == 1:
            return [executor.submit(wrapper.run_script, scripts[0], logs[0])]
        return executor.map_array(wrapper.run_script, scripts, logs)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
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


def submit_groups(run: Path, groups: Sequence[tuple[dict[str, str | bool], list[rundir.JobEntry]]],
                  array_parallelism: int) -> None:
    """Submit each group (same sbatch options) as one array or one job; record job ids."""
    import submitit

    for sbatch, entries in groups:
        first = run / entries[0].script
        if len(entries) == 1 and is_hetjob(first):
            job_id = submit_hetjob(first, sbatch)
            entries[0].attempts.append(rundir.Attempt(job_id=job_id, submitted=rundir.now()))
            continue
        executor = submitit.SlurmExecutor(folder=rundir.Layout.of(run).submitit_dir)
        executor.update_parameters(**executor_parameters(sbatch, array_parallelism))
        scripts = [str((run / e.script).resolve()) for e in entries]
        logs = [str(rundir.Layout.of(run).job_log_pattern(e.key)) for e in entries]
        jobs = slurm.with_retries(functools.partial(_submit, executor, scripts, logs), "sbatch")
        for entry, job in zip(entries, jobs):
            entry.attempts.append(rundir.Attempt(job_id=job.job_id, submitted=rundir.now()))


def submit_hetjob(script: Path, sbatch: dict[str, str | bool]) -> str:
    """Submit a heterogeneous job's script with ``sbatch`` itself. ``sbatch``: the options the
    job is to have; those its script's first component does not already say (a dependency,
    nodes to exclude) go on the command line."""
    written = script_options(script)
    extra = [f"--{k}" if v is True else f"--{k}={v}" for k, v in sbatch.items() if written.get(k) != v]
    return slurm.sbatch(str(script.resolve()), extra)


def merge_options(profile: ClusterProfile, job_partition: str) -> dict[str, Any]:
    """submitit settings of the ``--merge`` job: one task, no GPUs, in the profile's
    merge-partition (a CPU one) when it names one, else in the run's first job's partition,
    with the profile's account, qos and excluded nodes; its reservation only in the job's own
    partition, whose nodes a reservation holds."""
    opts: dict[str, Any] = {"partition": profile.merge_partition or job_partition}
    for name in ("account", "qos"):
        if getattr(profile, name):
            opts[name] = str(getattr(profile, name))
    if profile.exclude:
        opts["exclude"] = ",".join(profile.exclude)
    if profile.reservation and not profile.merge_partition:
        opts["additional_parameters"] = {"reservation": str(profile.reservation)}
    return opts


def submit_merge(run: Path, manifest: rundir.Manifest, profile: ClusterProfile) -> str | None:
    """One small job that merges the run's results once every job of it has ended (afterany)."""
    import submitit

    ids = sorted({e.job_id.split("_")[0] for e in manifest.jobs if e.job_id}, key=int)
    if not ids:
        return None
    opts = merge_options(profile, manifest.jobs[0].partition)
    extra = {**opts.pop("additional_parameters", {}), "dependency": "afterany:" + ":".join(ids),
             "output": str(rundir.Layout.of(run).merge_log_pattern)}
    executor = submitit.SlurmExecutor(folder=rundir.Layout.of(run).submitit_dir)
    executor.update_parameters(job_name=f"ixhpc-{manifest.run_id}-merge"[:200], nodes=1, ntasks_per_node=1,
                               time=30, use_srun=False, additional_parameters=extra, **opts)
    with _quiet_stderr():
        job = slurm.with_retries(lambda: executor.submit(merge_job.merge_run, str(run.resolve())), "sbatch")
    return str(job.job_id)
