"""The body of the ``submit --merge`` job: merge the run's results once every job has ended."""

from __future__ import annotations

import subprocess
import sys

from ixhpc.rundir import Layout


def merge_run(run_dir: str) -> None:
    """What the merge job runs: ``ixhpc merge`` of the run's results into RUN/merged.h5."""
    run = Layout.of(run_dir)
    subprocess.run([sys.executable, "-m", "ixhpc", "merge", str(run.results_dir), "-o", str(run.merged)],
                   check=True)
