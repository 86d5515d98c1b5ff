"""Seconds a disaggregated job spends around its benchmark on the local cluster.

For recipes/examples/sim-disagg.yaml (1 prefill + 2 decode workers + router on 3 nodes):
  start overhead: from the job's start (sacct Start) to the first benchmark request
  end overhead:   from the last response to the job's end (sacct End)
Target: under 5 s each. Slurm's times have one-second resolution, so figures are +-1 s.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def ixhpc(*args: str) -> str:
    res = subprocess.run([sys.executable, "-m", "ixhpc", *args], capture_output=True, text=True, cwd=REPO)
    if res.returncode not in (0, 1):
        raise SystemExit(res.stderr.strip())
    return res.stdout


def epoch(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="ixhpc-bench-overhead-"))
    out = json.loads(ixhpc("submit", "recipes/examples/sim-disagg.yaml", "--cluster", "local",
                           "--results", str(work), "--json"))
    job = out["jobs"][0]["job_id"]
    while json.loads(ixhpc("status", out["run_dir"], "--json"))["jobs"][0]["state"] in ("PENDING", "RUNNING"):
        time.sleep(1)
    start, end = subprocess.run(["sacct", "-X", "-n", "-P", "-j", job, "-o", "Start,End"],
                                capture_output=True, text=True).stdout.split()[0].split("|")
    run = Path(out["run_dir"])
    benches = sorted(run.glob("points/*/bench-c*.json"), key=lambda p: p.stat().st_mtime)
    # The job log stamps the start of the first client step (its warm-up requests follow).
    log = next(run.glob("logs/*/job-*.out")).read_text().splitlines()
    first = next(line for line in log if "benchmark at concurrency" in line)
    first_request = epoch(first[len("[ixhpc "):first.index("]")])
    last_response = benches[-1].stat().st_mtime
    print(f"job {job}: start -> first benchmark request {first_request - epoch(start):.1f} s; "
          f"last response -> job end {max(epoch(end) - last_response, 0.0):.1f} s (target < 5 s each; "
          f"Slurm times have 1 s resolution)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
