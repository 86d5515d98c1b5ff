"""Wall time of `ixhpc submit` for a 100-point single-node sweep on the local cluster.

The 100 points differ in sequence length, so each is its own job; they must go to Slurm as
ONE job array: one `sbatch` call (target < 3 s). The run is cancelled right after.
Needs the local cluster: `python -m ixhpc local-cluster up`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

POINTS = 100


def recipe(path: Path) -> None:
    entry = yaml.safe_load((Path(__file__).parents[1] / "recipes/examples/sim-single-node.yaml").read_text())
    spec = entry["sim-mi355x-single"]
    spec["seq-len-configs"] = [{"isl": 64 + i, "osl": 32, "search-space": [{"tp": 8, "conc-list": [1]}]}
                               for i in range(POINTS)]
    path.write_text(yaml.safe_dump(entry))


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="ixhpc-bench-submit-"))
    recipe(work / "sweep100.yaml")
    argv = [sys.executable, "-m", "ixhpc", "submit", str(work / "sweep100.yaml"), "--cluster", "local",
            "--results", str(work / "results"), "--json"]
    t0 = time.perf_counter()
    res = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"submit failed: {res.stderr.strip()}")
    out = json.loads(res.stdout)
    arrays = {j["job_id"].split("_")[0] for j in out["jobs"]}
    subprocess.run([sys.executable, "-m", "ixhpc", "cancel", out["run_dir"]], capture_output=True)
    print(f"submit of {len(out['jobs'])} single-node points: {wall:.2f} s wall "
          f"(render + sbatch), {len(arrays)} sbatch call(s) (job array {', '.join(sorted(arrays))}); "
          f"target < 3 s and 1 call")


if __name__ == "__main__":
    main()
