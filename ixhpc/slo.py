"""The search for the highest concurrency (or request rate) meeting an SLO (``ixhpc submit --slo``).

Objectives and goodput are ``ixhpc.bench.goodput``'s. A concurrency meets the SLO when its point
is not invalid (``ixhpc.bench.validity``) and its goodput fraction reaches the attainment.
``ixhpc submit --slo`` makes a job search its point's concurrency list, inside the one
allocation, with the engine kept up: bisection over the sorted list, assuming that a
concurrency above one that misses the SLO misses it too, so at most ceil(log2(n + 1)) of the n
concurrencies run. With ``rate=`` in the SLO the search bisects those request rates instead,
at the job's highest concurrency as the cap, arrivals gamma-distributed (``burstiness=``; 1:
Poisson); each probe's result is kept (``Layout.slo_rate_probe``) and the cap's point is the
probe at the highest rate met (none met: the lowest rate). The job script asks
``python -m ixhpc.slo next`` for each probe; the search state (every probe, then the answer) is
one JSON file (``Layout.slo_search``) that ingest stores in each probed point's HDF5 file
(``/slo_search``).

    python -m ixhpc.slo start  --run-dir R --job K --slo SPEC --concurrencies C...
        a job's first step: as ``next``, but a probe a killed job left pending without a
        result is run again rather than judged (a resumed search continues from its probes)
    python -m ixhpc.slo next   --run-dir R --job K --slo SPEC --concurrencies C...
        judge the last probe's result, save the state, print the next probe (nothing: done): its
        concurrency, then (a rate search) the client's --request-rate and --burstiness
    python -m ixhpc.slo probes --run-dir R --job K
        print the probed concurrencies (the job ingests their results)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ixhpc.bench.goodput import DEFAULT_ATTAINMENT, LIMITS, Slo, good_requests, goodput, meets, parse
from ixhpc.errors import ConfigError, main_guard

__all__ = ["DEFAULT_ATTAINMENT", "LIMITS", "Slo", "good_requests", "goodput", "meets", "parse", "main"]


# ----------------------------------------------------------------------------- the search


def max_probes(n: int) -> int:
    return math.ceil(math.log2(n + 1)) if n else 0


NO_RESULT = "no result (the client failed)"  # a probe's ``why``: it has no result file, ever


def probe(slo: Slo, conc: int, bench: dict[str, Any] | None, rate: float | None = None) -> dict[str, Any]:
    """One probe's record from its result document (None: the client wrote none); ``rate``:
    a rate search's request rate."""
    at = {"conc": conc, **({"rate": rate} if rate is not None else {})}
    if bench is None:
        return {**at, "met": False, "verdict": "invalid", "why": NO_RESULT,
                "good_requests": 0, "request_goodput": 0.0, "goodput_fraction": 0.0,
                "output_throughput": 0.0, "median_tpot_ms": math.nan}
    summary = bench.get("summary", {})
    verdict = str((bench.get("validity") or {}).get("verdict", "unknown"))
    figures = goodput(slo, bench["requests"], float(summary.get("duration", 0.0)))
    met = meets(slo, figures["goodput_fraction"], verdict)
    why = ("" if met else "invalid point" if verdict == "invalid"
           else f"goodput fraction {figures['goodput_fraction']:.3f} < {slo.attainment:g}")
    return {**at, "met": met, "verdict": verdict, "why": why, **figures,
            "output_throughput": float(summary.get("output_throughput", math.nan)),
            "median_tpot_ms": float(summary.get("median_tpot_ms", math.nan))}


def new_search(slo: Slo, concurrencies: Sequence[int]) -> dict[str, Any]:
    """A concurrency search bisects the concurrencies; a rate search (``slo.rates``) the rates,
    at the highest concurrency as the cap on requests in flight."""
    concs = sorted(set(concurrencies))
    objectives = {k: v for k, v in asdict(slo).items() if k != "rates" and (k != "burstiness" or slo.rates)}
    rate = {"mode": "rate", "rates": list(slo.rates), "cap": concs[-1], "answer_rate": None} if slo.rates else {}
    values = slo.rates or concs
    return {"slo": objectives, "spec": slo.text(), "concurrencies": concs, "probes": [], "mode": "concurrency",
            **rate, "pending": None, "done": False, "answer": None, "max_probes": max_probes(len(values))}


def rate_mode(state: dict[str, Any]) -> bool:
    """Whether the search bisects request rates at one concurrency (else concurrencies)."""
    return state.get("mode") == "rate"


def bisected(state: dict[str, Any]) -> list[Any]:
    """What the search bisects, rising: request rates or concurrencies."""
    return list(state["rates"]) if rate_mode(state) else list(state["concurrencies"])


def _value(state: dict[str, Any], p: dict[str, Any]) -> Any:
    return p["rate"] if rate_mode(state) else p["conc"]


def step(state: dict[str, Any], slo: Slo, bench: dict[str, Any] | None) -> dict[str, Any]:
    """The search after judging the pending probe's ``bench`` (ignored when none is pending),
    with the next probe pending, or done with its answer: the highest concurrency met (a rate
    search: its cap, and ``answer_rate`` the highest rate met); None: none met it."""
    state = {**state, "probes": list(state["probes"])}
    if state["pending"] is not None:
        state["probes"].append(probe(slo, state["cap"], bench, state["pending"]) if rate_mode(state)
                               else probe(slo, state["pending"], bench))
        state["pending"] = None
    values = bisected(state)
    lo, hi = _bounds(state)
    if hi - lo <= 1:
        state["done"] = True
        if rate_mode(state):
            state["answer"], state["answer_rate"] = (state["cap"], values[lo]) if lo >= 0 else (None, None)
        else:
            state["answer"] = values[lo] if lo >= 0 else None
    else:
        state["pending"] = values[(lo + hi) // 2]
    return state


def _bounds(state: dict[str, Any]) -> tuple[int, int]:
    """Indexes into the values searched: the highest met (-1: none), the lowest missed (len: none)."""
    values = bisected(state)
    lo, hi = -1, len(values)
    for p in state["probes"]:
        i = values.index(_value(state, p))
        if p["met"]:
            lo = max(lo, i)
        else:
            hi = min(hi, i)
    return lo, hi


def needed(state: dict[str, Any]) -> tuple[list[int], list[int]]:
    """The concurrencies a job's search needs results for: (those that have or will have a result
    file, those it may still probe: none once done). The others are settled without a run. A
    rate search's one point is its cap, ingested once the search is done."""
    probed = [p["conc"] for p in state["probes"] if p.get("why") != NO_RESULT]
    if rate_mode(state):
        return ((sorted(set(probed)), []) if state["done"] else ([], [state["cap"]]))
    if state["done"]:
        return probed, []
    lo, hi = _bounds(state)
    tried = {p["conc"] for p in state["probes"]}
    return probed, [c for c in state["concurrencies"][lo + 1:hi] if c not in tried]


def started(state: dict[str, Any]) -> bool:
    """Whether the job's first step has run: a search ``submit`` seeded has no probe yet."""
    return bool(state["probes"]) or state.get("pending") is not None or bool(state["done"])


def chosen(state: dict[str, Any]) -> list[int]:
    """The concurrencies the search has chosen to run so far, each to end with a result file:
    its probes (but those whose client wrote nothing) and the one it is probing now; nothing
    before its first probe. A rate search's one point is its cap, once it has started."""
    probed, _ = needed(state)
    if rate_mode(state):
        return probed if state["done"] else [state["cap"]] if started(state) else []
    pending = state.get("pending")
    return [*probed, *([pending] if pending is not None and pending not in probed else [])]


def seed(path: Path, slo: Slo, concurrencies: Sequence[int]) -> None:
    """Record a job's search, not started, at submit: until its first step runs, ``status``
    knows the job searches (so none of its concurrencies is missing yet) and ``resume`` reruns
    it if the job ends before it finishes. Any search already there is kept."""
    from ixhpc import atomic

    if load(path) is None:
        atomic.write_text(path, json.dumps(new_search(slo, concurrencies), indent=1))


# Why agentic-coding points cannot search (``runs.plan`` locates it at each such recipe entry): a
# replay runs each concurrency (lane count) in an allocation of its own, with a cold prefix
# cache, and has no request rate (closed-loop sessions with their own think times).
UNSEARCHABLE_AGENTIC = ("--slo: agentic-coding points cannot search (one allocation per concurrency, "
                        "no request rate; docs/slo.md)")


def load(path: Path) -> dict[str, Any] | None:
    """A job's saved search (None: none recorded (a run submitted before `seed`), or the file is not one)."""
    state = _read_json(path)
    return state if state is not None and {"probes", "done", "concurrencies"} <= state.keys() else None


def summary_line(state: dict[str, Any]) -> str:
    if rate_mode(state):
        tried = ", ".join(f"{p['rate']:g}/s:{'met' if p['met'] else 'missed'}" for p in state["probes"])
        rate = state.get("answer_rate")
        result = (f"highest request rate meeting it at concurrency {state['cap']}: {rate:g}/s" if rate is not None
                  else f"no request rate meets it at concurrency {state['cap']}")
    else:
        tried = ", ".join(f"c{p['conc']}:{'met' if p['met'] else 'missed'}" for p in state["probes"])
        answer = state["answer"]
        result = f"highest concurrency meeting it: {answer}" if answer is not None else "no concurrency meets it"
    return f"SLO {state['spec']}: {result} (probes {tried or 'none'})"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class ProbeFiles:
    """Where a job's probes write their results: ``bench(conc)`` the client's file; a rate
    search keeps each probe's as ``kept(conc, rate)`` (they share one concurrency)."""
    bench: Callable[[int], Path]
    kept: Callable[[int, float], Path]


@dataclass(frozen=True)
class Probe:
    conc: int
    rate: float | None = None  # a rate search's request rate

    def words(self, burstiness: float) -> str:
        """What the job script reads: the concurrency, then the client's extra arguments."""
        if self.rate is None:
            return str(self.conc)
        return f"{self.conc} --request-rate {self.rate!r} --burstiness {burstiness!r}"


def next_probe(state_path: Path, files: ProbeFiles, slo: Slo, concurrencies: Sequence[int],
               start: bool = False) -> Probe | None:
    """One step of a job's search, saved atomically; the probe to run next, or None.
    ``start``: the job's first step, so a pending probe without a result was cut short by the
    end of an earlier job (scancel, time limit, node failure): it runs again, unjudged."""
    from ixhpc import atomic

    state = load(state_path)
    if state is None or state.get("spec") != slo.text() or state.get("concurrencies") != sorted(set(concurrencies)):
        state = new_search(slo, concurrencies)
    if state["done"]:
        if rate_mode(state) and not files.bench(state["cap"]).exists():  # the job ended before the copy
            _keep_answer(state, files)
        return None
    pending = state["pending"]
    bench_path = files.bench(state["cap"] if rate_mode(state) else pending) if pending is not None else None
    if start and bench_path is not None and not bench_path.exists():
        print(f"[ixhpc] SLO search resumed after {len(state['probes'])} probe(s): "
              f"{'rate' if rate_mode(state) else 'concurrency'} {pending:g} again", file=sys.stderr)
        return _probe(state, pending)
    bench = _read_json(bench_path) if bench_path is not None else None
    if rate_mode(state) and bench_path is not None and bench_path.exists():
        os.replace(bench_path, files.kept(state["cap"], pending))  # the next probe writes the same file
    state = step(state, slo, bench)
    atomic.write_text(state_path, json.dumps(state, indent=1))
    if state["done"] and rate_mode(state):  # after the state: a done search makes this copy again
        _keep_answer(state, files)
    if state["done"]:
        print(f"[ixhpc] {summary_line(state)}", file=sys.stderr)
    return None if state["done"] else _probe(state, state["pending"])


def _probe(state: dict[str, Any], pending: Any) -> Probe:
    return Probe(state["cap"], float(pending)) if rate_mode(state) else Probe(int(pending))


def _keep_answer(state: dict[str, Any], files: ProbeFiles) -> None:
    """A finished rate search's point (its cap) is the probe at the highest rate met, or, when
    none met, at the lowest rate probed: its result becomes the cap's, which the job ingests."""
    from ixhpc import atomic

    rates = [p["rate"] for p in state["probes"] if p.get("why") != NO_RESULT]
    if not rates:
        return
    rate = state["answer_rate"] if state["answer_rate"] is not None else min(rates)
    atomic.write_bytes(files.bench(state["cap"]), files.kept(state["cap"], rate).read_bytes())


@main_guard("ixhpc.slo")
def main(argv: list[str] | None = None) -> int:
    from ixhpc.rundir import Layout

    p = argparse.ArgumentParser(prog="python -m ixhpc.slo", description="one step of a job's SLO search")
    p.add_argument("action", choices=("start", "next", "probes"))
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--job", required=True)
    p.add_argument("--slo", help="the objectives (next)")
    p.add_argument("--concurrencies", type=int, nargs="+", default=[], help="the point's list (next)")
    args = p.parse_args(argv)
    layout = Layout.of(args.run_dir)
    path = layout.slo_search(args.job)
    if args.action == "probes":
        state = load(path) or {"probes": []}
        concs = dict.fromkeys(pr["conc"] for pr in state["probes"])  # a rate search's: one, its cap
        print(" ".join(str(c) for c in concs if layout.bench_json(args.job, c).exists()))
        return 0
    if not args.slo or not args.concurrencies:
        raise ConfigError(f"{args.action} needs --slo and --concurrencies")
    objectives = parse(args.slo)
    files = ProbeFiles(lambda c: layout.bench_json(args.job, c), lambda c, r: layout.slo_rate_probe(args.job, c, r))
    nxt = next_probe(path, files, objectives, args.concurrencies, start=args.action == "start")
    if nxt is not None:
        print(nxt.words(objectives.burstiness))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
