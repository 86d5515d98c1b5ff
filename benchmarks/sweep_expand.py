"""Median time to load, validate and fully expand InferenceX's master files, both formats.

* March 2026 files (``seq-len-configs``): target under 0.5 s (InferenceX's generator of the
  time took under 1 s for the same).
* Current files (2026-08, ``scenarios``, 1820 rows with eval marking as the generator's
  default): target under a third of InferenceX's generator for the same files and flags.
  With ``$IXHPC_INFERENCEX`` pointing at an InferenceX checkout its generator
  (``utils/matrix_logic/generate_sweep_configs.py full-sweep``) is timed side by side, its
  runs alternating with ixhpc's (a change in the machine's load then hits both alike).

Measured in-process after one warm-up run; also prints the end-to-end CLI time (wall, and the
child's CPU time, steadier on a shared machine). Both tools' modules are byte-compiled first
(as an install leaves them), so neither pays for compiling its sources on every run.
Reference dirs: $IXHPC_REFERENCE (March) / $IXHPC_REFERENCE_CURRENT, default
<repo>/../shared/reference/inferencex-2026-{03,08}.
"""

from __future__ import annotations

import compileall
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = 7
END_TO_END_RUNS = 9
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "reference"
MARCH = Path(os.environ.get("IXHPC_REFERENCE") or SHARED / "inferencex-2026-03")
CURRENT = Path(os.environ.get("IXHPC_REFERENCE_CURRENT") or SHARED / "inferencex-2026-08")
sys.path.insert(0, str(REPO))   # this tree's ixhpc, whatever is installed
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def files(ref: Path) -> list[Path]:
    return [ref / "nvidia-master.yaml", ref / "amd-master.yaml"]


def once(ref: Path, current: bool) -> tuple[float, int]:
    from ixhpc.profiles import load_profiles
    from ixhpc.recipe import load_recipe_files, load_runners
    from ixhpc.sweep import Filters, expand_all

    t0 = time.perf_counter()
    runners = load_runners(ref / "runners.yaml") if current else None
    points = expand_all(load_recipe_files(files(ref)), Filters() if current else Filters(run_evals=True),
                        profiles=load_profiles(), runners=runners)
    rows = [p.to_inferencex_row() for p in points]
    return time.perf_counter() - t0, len(rows)


def timed(argv: list[str], cwd: Path | None = None) -> tuple[float, float]:
    """Wall and CPU seconds (user + system of the child) of one run of ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=True, cwd=cwd, env=ENV)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def medians(runs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def bench(ref: Path, current: bool, label: str, target: str) -> None:
    if not ref.exists():
        print(f"{label}: reference data absent ({ref}), skipped")
        return
    once(ref, current)
    times, n = [], 0
    for _ in range(RUNS):
        dt, n = once(ref, current)
        times.append(dt)
    print(f"{label}: load+validate+expand {len(files(ref))} files -> {n} rows: median "
          f"{statistics.median(times):.3f} s (min {min(times):.3f}, max {max(times):.3f}, {RUNS} runs; "
          f"target {target})")
    argv = [sys.executable, "-m", "ixhpc", "sweep", "full-sweep", "--format", "inferencex",
            "--config-files", *map(str, files(ref))]
    if current:
        argv += ["--runner-config", str(ref / "runners.yaml")]
    compileall.compile_dir(REPO / "ixhpc", quiet=1)
    generator = _generator(ref) if current else None
    ours, theirs = [], []
    for _ in range(END_TO_END_RUNS):  # alternating, so a change in the machine's load hits both
        ours.append(timed(argv))
        if generator:
            theirs.append(timed(*generator))
    wall, cpu = medians(ours)
    print(f"  `ixhpc sweep full-sweep --format inferencex` end to end (incl. interpreter start): "
          f"median {wall:.3f} s wall, {cpu:.3f} s CPU")
    if generator:
        gen_wall, gen_cpu = medians(theirs)
        print(f"  InferenceX's generator ({generator[0][1]}), same files and flags, end to end: median "
              f"{gen_wall:.3f} s wall, {gen_cpu:.3f} s CPU (ixhpc/InferenceX = {wall / gen_wall:.3f} wall, "
              f"{cpu / gen_cpu:.3f} CPU; target < 1/3 = 0.333)")


def _generator(ref: Path) -> tuple[list[str], Path] | None:
    """InferenceX's own generator on the same files and flags, when $IXHPC_INFERENCEX is a
    checkout of it (its argv and directory); None, saying why, when it cannot be timed."""
    checkout = os.environ.get("IXHPC_INFERENCEX")
    if not checkout:
        print("  InferenceX's generator: not timed ($IXHPC_INFERENCEX is not set to a checkout of it)")
        return None
    gen = Path(checkout) / "utils" / "matrix_logic" / "generate_sweep_configs.py"
    if not gen.is_file():
        print(f"  InferenceX's generator: not timed ({gen} does not exist: $IXHPC_INFERENCEX is not a checkout)")
        return None
    argv = [sys.executable, str(gen), "full-sweep", "--config-files", *map(str, files(ref)),
            "--runner-config", str(ref / "runners.yaml")]
    probe = subprocess.run(argv, capture_output=True, text=True, cwd=checkout, env=ENV)
    if probe.returncode != 0:
        tail = (probe.stderr.strip().splitlines() or ["(no output)"])[-1]
        print(f"  InferenceX's generator: not timed (it failed on these files: {tail})")
        return None
    print(f"  InferenceX's generator prints {len(json.loads(probe.stdout))} rows for the same files and flags")
    compileall.compile_dir(gen.parent, quiet=1)
    return argv, Path(checkout)


def main() -> None:
    bench(MARCH, False, "March 2026 files", "< 0.5 s")
    bench(CURRENT, True, "current (2026-08) files", "< 1/3 of InferenceX's generator")


if __name__ == "__main__":
    main()
