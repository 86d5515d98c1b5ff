"""What does the agentic replay client cost, next to the fixed-length client, and how many lanes
can one client process replay?

Against the simulated engine (its own process on 127.0.0.1, prefix cache on), with a synthetic
corpus (``ixhpc.bench.agentic.traces.generate``, default knobs, ``--traces`` for a real one):

1. the agentic replay (``python -m ixhpc.bench --scenario agentic-coding``) at each
   ``--concurrency``, trace and server clocks both at ``--time-scale``, and
2. the fixed-length client (``python -m ixhpc.bench``) at the same concurrency with the replay's
   mean ISL and OSL and as many requests,

each a child process: its CPU is the children's rusage around it minus a bare start-up of the
same command (``--help``: interpreter and imports). Printed per request, per output token
(streamed: what the client reads) and per 1k prompt tokens (the replay builds its prompts).

One process's ceiling: the replay's request rate per lane on the trace clock (requests / lane /
second, the highest of the runs: a run whose server fell behind sends less) times its CPU per
request is one lane's share of a core; a process
sustains ``--core-share`` of a core, so ``lanes = core_share / (rate x cpu_per_request)``
(SPEC §5.1: the system-idle cap shortens gaps only when *every* lane is idle, so the rate per
lane measured at a few dozen lanes is an upper bound for more). This machine's 2 cores are
shared: run it twice and read the spread.

    python benchmarks/bench_agentic.py [--concurrency 8 32] [--time-scale 0.1] [--duration 600] [--lanes 4096]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ixhpc.bench.agentic import traces


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def timed(cmd: list[str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of ``cmd`` run to completion."""
    cpu0, t0 = children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode not in (0, 1):  # 1: the point failed its gate, still measured
        raise SystemExit(f"{' '.join(cmd[:6])} ... failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return children_cpu() - cpu0, time.perf_counter() - t0


def start_server(time_scale: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "ixhpc.sim", "serve", "--host", "127.0.0.1", "--port", "0",
                             "--max-batch", "4096", "--time-scale", f"{time_scale}"], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if "ready on " not in line:
        raise SystemExit(f"simulated engine did not start: {line!r}")
    return proc, line.split("ready on ")[1].split()[0]


BENCH = [sys.executable, "-m", "ixhpc.bench"]


def agentic_point(url: str, corpus: Path, conc: int, a: argparse.Namespace, out: Path) -> dict[str, Any]:
    cpu, wall = timed([*BENCH, "--scenario", "agentic-coding", "--traces", str(corpus), "--base-url", url,
                       "--concurrency", str(conc), "--duration", str(a.duration), "--time-scale", str(a.time_scale),
                       "--warmup-requests-per-lane", "2", "--model", "sim-model", "--output", str(out)])
    doc = json.loads(out.read_text())
    req = doc["requests"]
    ok = [i for i in range(len(req["turn"])) if not req["error"][i]]
    isl = sum(max(0, req["input_len"][i]) for i in ok)
    osl = sum(max(0, req["output_len"][i]) for i in ok)
    prof = sum(1 for i in ok if req["phase"][i] == "profiling")
    return {"client": "agentic", "conc": conc, "requests": len(ok), "isl": isl, "osl": osl, "cpu": cpu, "wall": wall,
            "own_cpu": doc["agentic"]["client_cpu_seconds"],
            "rate_per_lane": prof / (a.duration * conc)}  # profiling requests per lane per trace-second


def fixed_point(url: str, conc: int, n: int, isl: int, osl: int, out: Path) -> dict[str, Any]:
    cpu, wall = timed([*BENCH, "--base-url", url, "--model", "sim-model", "--isl", str(isl), "--osl", str(osl),
                       "--max-concurrency", str(conc), "--num-prompts", str(n), "--ignore-eos",
                       "--output", str(out)])
    return {"client": "fixed", "conc": conc, "requests": n, "isl": isl * n, "osl": osl * n, "cpu": cpu, "wall": wall}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--concurrency", type=int, nargs="+", default=[8, 32])
    p.add_argument("--time-scale", type=float, default=0.1, help="trace and server clocks (default %(default)g)")
    p.add_argument("--duration", type=float, default=600.0, help="profile, trace seconds (default %(default)g)")
    p.add_argument("--traces", type=Path, help="corpus (default: 64 synthetic traces)")
    p.add_argument("--core-share", type=float, default=0.8, help="of one core a client may use (default %(default)g)")
    p.add_argument("--lanes", type=int, default=4096,
                   help="lanes to cost (default %(default)d: the largest agentic point of the August reference)")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        corpus = a.traces or work / "synth.jsonl"
        if a.traces is None:
            traces.write_traces(corpus, traces.generate(64, seed=1))
        startup, _ = timed([*BENCH, "--scenario", "agentic-coding", "--help"])
        startup_fixed, _ = timed([*BENCH, "--help"])
        server, url = start_server(a.time_scale)
        rows = []
        try:
            for conc in a.concurrency:
                ag = agentic_point(url, corpus, conc, a, work / f"agentic-{conc}.json")
                n = ag["requests"]
                mean_isl, mean_osl = max(1, ag["isl"] // n), max(1, ag["osl"] // n)
                fx = fixed_point(url, conc, n, mean_isl, mean_osl, work / f"fixed-{conc}.json")
                ag["cpu"] -= startup
                fx["cpu"] -= startup_fixed
                rows += [ag, fx]
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"client CPU on the simulated engine (time-scale {a.time_scale:g}; start-up "
          f"{startup * 1e3:.0f} / {startup_fixed * 1e3:.0f} ms subtracted)")
    print(f"{'client':>8} {'conc':>5} {'requests':>8} {'mean isl':>8} {'mean osl':>8} {'cpu s':>7} {'wall s':>7} "
          f"{'ms/req':>7} {'us/out tok':>10} {'us/1k in':>8}")
    for r in rows:
        n = r["requests"]
        print(f"{r['client']:>8} {r['conc']:>5} {n:>8} {r['isl'] / n:>8.0f} {r['osl'] / n:>8.0f} {r['cpu']:>7.2f} "
              f"{r['wall']:>7.1f} {r['cpu'] / n * 1e3:>7.2f} {r['cpu'] / max(1, r['osl']) * 1e6:>10.1f} "
              f"{r['cpu'] / max(1, r['isl']) * 1e9:>8.1f}")
    # A lane's request rate is the trace's: the least server-bound run (highest rate) says it; a
    # run whose server fell behind (shared cores) sends less per lane, not the trace's rate.
    agentic = [r for r in rows if r["client"] == "agentic"]
    rate = max(r["rate_per_lane"] for r in agentic)
    print(f"\none replay process at {a.core_share:.0%} of a core (trace clock = real time, "
          f"{rate:.3f} requests/lane/s: the highest measured):")
    for r in agentic:
        per_req = r["cpu"] / r["requests"]
        print(f"  CPU measured at conc {r['conc']} ({r['requests'] / r['wall']:.0f} requests/s): "
              f"{per_req * 1e3:.2f} ms/request -> about {a.core_share / (rate * per_req):,.0f} lanes; "
              f"{a.lanes:,} lanes need {a.lanes * rate * per_req:.0%} of a core")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
