"""Median wall time of `python -m ixhpc --help` over 20 runs (target: under 100 ms).

Also checks what --help imports: pandas, h5py and submitit must stay out of it.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

RUNS = 20
HEAVY = ("pandas", "h5py", "submitit", "numpy", "matplotlib", "pydantic", "jinja2")


def main() -> None:
    argv = [sys.executable, "-m", "ixhpc", "--help"]
    subprocess.run(argv, capture_output=True, check=True)  # warm the page cache and .pyc files
    times = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    probe = subprocess.run(
        [sys.executable, "-c",
         "import sys, runpy; sys.argv=['ixhpc','--help']\n"
         "try: runpy.run_module('ixhpc', run_name='__main__')\n"
         "except SystemExit: pass\n"
         f"print('HEAVY:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"],
        capture_output=True, text=True, check=True)
    heavy = probe.stdout.rsplit("HEAVY:", 1)[1].strip()
    baseline = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], capture_output=True, check=True)
        baseline.append(time.perf_counter() - t0)
    print(f"python -m ixhpc --help: median {statistics.median(times) * 1000:.1f} ms over {RUNS} runs "
          f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}); "
          f"bare interpreter start: {statistics.median(baseline) * 1000:.1f} ms; target < 100 ms")
    print(f"heavy modules imported by --help: {heavy or 'none'}")


if __name__ == "__main__":
    main()
