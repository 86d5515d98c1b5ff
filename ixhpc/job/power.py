"""GPU power sampler: one visible ``srun`` step per node of the job, started before the first
benchmark and stopped after the last (``sbatch_templates/_lib.sh.j2``)::

    python -m ixhpc.job.power --source SOURCE --node K --out FILE [--interval S]
                              [--gpu INDEX=ROLE ...] [--sim ROLE=URL ...]

It appends ``unix_time,device,role,power_w`` rows to FILE (``Layout.power_csv``), each stamped
with this host's wall clock when the reading arrived; devices are ``node<K>/gpu<INDEX>``.
Sources (the profile's ``power-source``; the command lines are ``command``'s, one seam):

* ``nvidia-smi``: ``nvidia-smi --query-gpu=index,power.draw --format=csv,noheader,nounits -lms MS``
* ``dcgm``: ``dcgmi dmon -e 155 -d MS`` (field 155: power usage, W)
* ``amd-smi``: ``amd-smi metric --power --csv --watch S`` (column ``socket_power``)
* ``sim``: the simulated engines' per-GPU gauge (``ixhpc.bench.servermetrics.SIM_POWER``) read
  from each ``--sim ROLE=URL`` every interval: its value follows the engine's batch occupancy.

With ``--gpu``, only those GPU indices are kept, each labelled with its role; SIGTERM ends it.
Standard library only.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import IO

from ixhpc.bench import servermetrics
from ixhpc.errors import main_guard

SOURCES = ("nvidia-smi", "dcgm", "amd-smi", "sim")
HEADER = "unix_time,device,role,power_w\n"
DCGM_POWER_FIELD = "155"  # DCGM_FI_DEV_POWER_USAGE
AMD_POWER_COLUMNS = ("socket_power", "current_socket_power", "average_socket_power")


def command(source: str, interval_s: float) -> list[str]:
    """The vendor tool's command line that prints power readings every ``interval_s``."""
    ms = str(max(100, round(interval_s * 1000)))
    if source == "nvidia-smi":
        return ["nvidia-smi", "--query-gpu=index,power.draw", "--format=csv,noheader,nounits", f"-lms={ms}"]
    if source == "dcgm":
        return ["dcgmi", "dmon", "-e", DCGM_POWER_FIELD, "-d", ms]
    if source == "amd-smi":
        return ["amd-smi", "metric", "--power", "--csv", "--watch", str(max(1, round(interval_s)))]
    raise ValueError(f"power source {source!r} has no command (known: nvidia-smi, dcgm, amd-smi)")


class LineParser:
    """One tool's output line -> [(gpu index, watts)]; keeps the CSV header it saw (amd-smi)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.columns: tuple[int, int] | None = None

    def __call__(self, line: str) -> list[tuple[str, float]]:
        line = line.strip()
        if not line:
            return []
        try:
            if self.source == "nvidia-smi":
                index, watts = (f.strip() for f in line.split(",")[:2])
                return [(str(int(index)), float(watts))]
            if self.source == "dcgm":
                fields = line.split()
                if len(fields) < 3 or fields[0] != "GPU":
                    return []  # "#Entity POWER" / "ID W" header lines
                return [(str(int(fields[1])), float(fields[2]))]
            fields = [f.strip().lower() for f in line.split(",")]
            if "gpu" in fields and any(c in fields for c in AMD_POWER_COLUMNS):
                power = next(fields.index(c) for c in AMD_POWER_COLUMNS if c in fields)
                self.columns = (fields.index("gpu"), power)
                return []
            if self.columns is None:
                return []
            gpu, power = self.columns
            return [(str(int(fields[gpu])), float(fields[power].split()[0]))]
        except (ValueError, IndexError):
            return []  # "[N/A]", a banner, a truncated line


def _role_map(specs: list[str]) -> dict[str, str]:
    out = {}
    for spec in specs:
        key, sep, role = spec.partition("=")
        if not sep or not key or not role:
            raise SystemExit(f"ixhpc.job.power: expected INDEX=ROLE or ROLE=URL, found {spec!r}")
        out[key] = role
    return out


def _writer(out: IO[str], node: int) -> Callable[[float, str, str, float], None]:
    def write(t: float, gpu: str, role: str, watts: float) -> None:
        out.write(f"{t:.3f},node{node}/gpu{gpu},{role},{watts:.3f}\n")
    return write


def run_tool(source: str, interval: float, gpus: dict[str, str], write: Callable[..., None],
             flush: Callable[[], None]) -> int:
    proc = subprocess.Popen(command(source, interval), stdout=subprocess.PIPE, text=True, bufsize=1)
    parse = LineParser(source)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.time()
            for gpu, watts in parse(line):
                if not gpus or gpu in gpus:
                    write(now, gpu, gpus.get(gpu, ""), watts)
            flush()
        return proc.wait()
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)


def run_sim(interval: float, engines: dict[str, str], write: Callable[..., None], flush: Callable[[], None]) -> int:
    """Read each simulated engine's per-GPU gauge every ``interval``; its GPUs are numbered
    on from the previous engine's on this node."""
    next_at = time.perf_counter()
    while True:
        first = 0
        for role, url in engines.items():
            try:
                gauge = servermetrics.parse_labelled(servermetrics.fetch(url, timeout=interval + 1.0),
                                                     servermetrics.SIM_POWER, "gpu")
            except Exception:  # noqa: BLE001 - an engine not up (yet): no reading, a gap
                gauge = {}
            now = time.time()
            for gpu, watts in sorted(gauge.items(), key=lambda kv: int(kv[0])):
                write(now, str(first + int(gpu)), role, watts)
            first += len(gauge)
        flush()
        next_at += interval
        time.sleep(max(0.0, next_at - time.perf_counter()))


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)


@main_guard("python -m ixhpc.job.power")
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ixhpc.job.power")
    p.add_argument("--source", choices=SOURCES, required=True)
    p.add_argument("--node", type=int, required=True, help="node index in the allocation")
    p.add_argument("--out", required=True, help="CSV file (appended)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between readings")
    p.add_argument("--gpu", action="append", default=[], metavar="INDEX=ROLE")
    p.add_argument("--sim", action="append", default=[], metavar="ROLE=URL")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    with open(args.out, "a", encoding="utf-8") as out:
        if out.tell() == 0:
            out.write(HEADER)
        write = _writer(out, args.node)
        if args.source == "sim":
            return run_sim(args.interval, _role_map(args.sim), write, out.flush)
        try:
            return run_tool(args.source, args.interval, _role_map(args.gpu), write, out.flush)
        except FileNotFoundError as exc:
            print(f"ixhpc.job.power: {exc.filename}: not found on this node; no power readings",
                  file=sys.stderr)
            return 1


if __name__ == "__main__":
    raise SystemExit(main())
