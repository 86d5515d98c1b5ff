"""The replay scheduler under a deterministic toy latency model (no network): SPEC §6's worked
example, and a cheap way to see what a corpus does at a concurrency before running it."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from ixhpc.bench.agentic.plan import TracePlan
from ixhpc.bench.agentic.schedule import Config, Scheduler, Send


def toy_latency(send: Send) -> float:
    """SPEC §6.2: a 1-token request takes 0.5 s, any other 1.0 s + 0.01 s per max token."""
    return 0.5 if send.max_tokens == 1 else 1.0 + 0.01 * send.max_tokens


@dataclass
class Log:
    warmup: list[tuple[float, str]] = field(default_factory=list)  # (w, event)
    profiling: list[tuple[float, str]] = field(default_factory=list)  # (p, event)
    sends: list[tuple[float, Send]] = field(default_factory=list)


def run(plans: list[TracePlan], cfg: Config, latency: Callable[[Send], float] = toy_latency,
        until: float | None = None) -> Log:
    """Replay ``plans`` to the end of profiling (or ``until`` s of it); every event logged."""
    log = Log()
    sched: Scheduler

    def record(now: float, text: str) -> None:
        if sched.phase == "profiling" or sched.phase == "done":
            log.profiling.append((round(now - sched.profiling_start, 2), text))
        else:
            log.warmup.append((round(now, 3), text))

    sched = Scheduler(plans, cfg, record)
    done: list[tuple[float, int, Send]] = []
    seq = itertools.count()
    now = 0.0
    sched.start(now)
    while True:
        for send in sched.poll(now):
            end = now + latency(send)
            play = send.play
            if send.phase == "profiling":
                record(now, f"lane{play.lane} {play.name} {play.label(send.stream, send.turn)} SEND "
                            f"max_tokens={send.max_tokens} (done at {end - sched.profiling_start:.2f})")
            else:
                record(now, f"lane{play.lane} {play.name} {play.label(send.stream, send.turn)} "
                            f"{'PRIMER' if send.primer else 'WARMUP'} SEND max_tokens=1")
            log.sends.append((now, send))
            heapq.heappush(done, (end, next(seq), send))
        if sched.done and not done:
            break
        due = sched.next_due()
        nxt = min([x for x in (due, done[0][0] if done else None) if x is not None], default=None)
        if nxt is None:
            break
        now = max(now, nxt)
        if until is not None and sched.phase in ("profiling", "done") and now - sched.profiling_start > until:
            break
        if done and done[0][0] <= now:
            _, _, send = heapq.heappop(done)
            play = send.play
            record(now, f"lane{play.lane} {play.name} {play.label(send.stream, send.turn)} DONE")
            sched.complete(send.ticket, now)
    return log
