"""Median time to load, validate and fully expand both InferenceX reference files.

Target: under 0.5 s (InferenceX's own generator takes under 1 s for the same). Measured
in-process after one warm-up run; also prints the end-to-end CLI time for reference.
Reference dir: $IXHPC_REFERENCE or <repo>/../shared/reference/inferencex-2026-03.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = 7
REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("IXHPC_REFERENCE")
                 or REPO.parent / "shared" / "reference" / "inferencex-2026-03")
FILES = [REFERENCE / "nvidia-master.yaml", REFERENCE / "amd-master.yaml"]


def once() -> tuple[float, int]:
    from ixhpc.profiles import load_profiles
    from ixhpc.recipe import load_recipe_files
    from ixhpc.sweep import Filters, expand

    t0 = time.perf_counter()
    points = expand(load_recipe_files(FILES), Filters(run_evals=True), profiles=load_profiles())
    rows = [p.to_inferencex_row() for p in points]
    return time.perf_counter() - t0, len(rows)


def main() -> None:
    once()
    times, n = [], 0
    for _ in range(RUNS):
        dt, n = once()
        times.append(dt)
    print(f"load+validate+expand {len(FILES)} files -> {n} rows: median {statistics.median(times):.3f} s "
          f"(min {min(times):.3f}, max {max(times):.3f}, {RUNS} runs; target < 0.5 s)")
    argv = [sys.executable, "-m", "ixhpc", "sweep", "full-sweep", "--format", "inferencex",
            "--config-files", *map(str, FILES)]
    cli = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        cli.append(time.perf_counter() - t0)
    print(f"`ixhpc sweep full-sweep --format inferencex` end to end (incl. interpreter start): "
          f"median {statistics.median(cli):.3f} s")


if __name__ == "__main__":
    main()
