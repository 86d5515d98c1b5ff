"""The replay state machine of SPEC §2, free of any clock or network.

A driver calls ``start(now)``, then repeatedly ``poll(now)`` (the requests to send now) and
``complete(ticket, now, ok, overflow)``, sleeping until ``next_due()`` or the next completion;
``simulate.run`` drives it under a toy latency model, ``replay`` on the live client. Times are
seconds on the driver's clock. ``log`` gets ``(now, text)`` for drains, recycles, idle caps and
phase changes (the event wording of SPEC §6).
"""

from __future__ import annotations

import hashlib
import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ixhpc.bench.agentic.plan import TracePlan

ZERO_ID = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class Config:
    concurrency: int
    duration: float = 3600.0
    seed: int = 42
    window: tuple[float, float] = (0.25, 0.75)
    warmup_per_lane: int = 10
    tree_idle_cap: float = 300.0
    system_idle_cap: float = 10.0
    lead_cap: float = 300.0
    benchmark_id: str = ZERO_ID


def marker(benchmark_id: str, pass_: int, lane: int, trace_id: str) -> str:
    return "[rid:" + hashlib.sha256(f"{benchmark_id}:{pass_}:{lane}:{trace_id}".encode()).hexdigest()[:12] + "]"


def t_star(seed: int, trace_id: str, lane: int, lo: float, hi: float, span: tuple[float, float]) -> float:
    """SPEC §2.4, bit-exact with AIPerf: numpy PCG64 seeded from SHA-256 of ``seed:trace:lane``."""
    key = int.from_bytes(hashlib.sha256(f"{seed}:{trace_id}:{lane}".encode()).digest()[:8], "big")
    u = float(np.random.default_rng(key).uniform(lo, hi))
    return span[0] + u * (span[1] - span[0])


@dataclass(eq=False)
class Play:
    """One live replay of a trace (root + subagents) on a lane."""

    plan: TracePlan
    lane: int
    pass_: int
    marker: str
    nxt: list[int]  # next turn per stream
    spawned: list[bool]
    gates: dict[int, int]  # join turn -> unfinished gating children
    correlation: list[str]
    timers: dict[int, float] = field(default_factory=dict)  # stream -> due
    held: set[int] = field(default_factory=set)  # streams whose turn is due but gated
    in_flight: set[int] = field(default_factory=set)
    last_done: dict[int, float] = field(default_factory=dict)
    first_offset: dict[int, float] = field(default_factory=dict)  # t(next) - t* of initially live streams
    parked: set[int] = field(default_factory=set)  # stage B: due, but the lane's quota is used
    advanced: set[int] = field(default_factory=set)  # streams that sent a stage-B request
    drained: bool = False

    @property
    def name(self) -> str:
        return f"{self.plan.trace.id}#{self.pass_}"

    def finished(self, s: int) -> bool:
        return self.nxt[s] >= len(self.plan.streams[s].turns)

    def label(self, s: int, turn: int) -> str:
        if s == 0:
            return f"root{turn}"
        return f"SA{turn}" if len(self.plan.streams) == 2 else f"SA{s - 1}.{turn}"

    def idle(self) -> bool:
        return not self.in_flight


@dataclass(frozen=True, eq=False)
class Send:
    ticket: int
    play: Play
    stream: int
    turn: int
    max_tokens: int
    phase: str  # "warmup" or "profiling"
    primer: bool = False


class RootPrimerFailed(RuntimeError):
    pass


class Scheduler:
    def __init__(self, plans: list[TracePlan], cfg: Config, log: Callable[[float, str], None] | None = None) -> None:
        if not plans:
            raise ValueError("no traces to replay")
        self.plans, self.cfg = plans, cfg
        self._log = log or (lambda now, text: None)
        self._sampler = itertools.cycle(range(len(plans)))
        self._passes: dict[str, int] = {}
        self.lanes: list[Play] = []
        self.phase = "init"  # warmup_a, warmup_b, profiling, done
        self.profiling_start = float("nan")
        self.profiling_end = float("nan")
        self._tickets = itertools.count()
        self._pending: dict[int, Send] = {}
        self._ready: list[tuple[Play, int]] = []
        self._quota: list[int] = []
        self._idle_since = 0.0
        self.t_stars: list[float] = []

    # -- plays ----------------------------------------------------------------------------------
    def _mint(self, plan: TracePlan, lane: int) -> Play:
        tid = plan.trace.id
        p = self._passes.get(tid, 0)
        self._passes[tid] = p + 1
        n = len(plan.streams)
        keys = (f"{self.cfg.benchmark_id}:{p}:{lane}:{tid}:{s}".encode() for s in range(n))
        corr = [str(uuid.UUID(bytes=hashlib.sha256(k).digest()[:16], version=4)) for k in keys]
        play = Play(plan, lane, p, marker(self.cfg.benchmark_id, p, lane, tid), [0] * n, [False] * n,
                    {j: len(m) for j, m in plan.joins.items()}, corr)
        play.spawned[0] = True
        return play

    def _draw(self, lane: int, now: float, why: str) -> Play:
        plan = self.plans[next(self._sampler)]
        play = self._mint(plan, lane)
        self._log(now, f"lane{lane} {why} draws {plan.trace.id} (pass {play.pass_}, marker {play.marker})")
        return play

    def _snapshot(self, plan: TracePlan, lane: int) -> tuple[Play, float, dict[int, float]] | None:
        ts = t_star(self.cfg.seed, plan.trace.id, lane, *self.cfg.window, plan.span)
        streams = plan.streams
        nxt = [next((k for k, t in enumerate(s.turns) if t.t >= ts), len(s.turns)) for s in streams]
        live = [nxt[0] < len(streams[0].turns)]
        for s in streams[1:]:
            spawned = nxt[0] > s.spawn_turn
            live.append(spawned and nxt[streams.index(s)] < len(s.turns))
        if not any(live):
            return None
        play = self._mint(plan, lane)
        for i, s in enumerate(streams):
            play.nxt[i] = nxt[i] if live[i] else (len(s.turns) if i == 0 or nxt[0] > s.spawn_turn else 0)
            play.spawned[i] = i == 0 or nxt[0] > s.spawn_turn
        for j, members in plan.joins.items():
            play.gates[j] = sum(1 for c in members if not play.finished(c))
        primers = {}
        for i, s in enumerate(streams):
            if live[i]:
                play.first_offset[i] = s.turns[nxt[i]].t - ts
                if nxt[i] >= 1:
                    primers[i] = min(ts - s.turns[nxt[i] - 1].t, self.cfg.lead_cap)
        self.t_stars.append(ts)
        return play, ts, primers

    # -- start ------------------------------------------------------------------------------------
    def start(self, now: float) -> None:
        self.phase = "warmup_a"
        self._idle_since = now
        leads: list[tuple[Play, int, float]] = []
        for lane in range(self.cfg.concurrency):
            for _ in range(len(self.plans) + 1):
                plan = self.plans[next(self._sampler)]
                snap = self._snapshot(plan, lane)
                if snap is not None:
                    break
            else:
                raise ValueError("no trace has a usable start point")
            play, ts, primers = snap
            self._log(now, f"tstar lane{lane} {plan.trace.id}: t*={ts:.3f} primers={len(primers)}")
            self.lanes.append(play)
            leads += [(play, s, lead) for s, lead in primers.items()]
        lmax = max((lead for _, _, lead in leads), default=0.0)
        for play, s, lead in leads:
            play.timers[s] = now + lmax - lead
        self._quota = [self.cfg.warmup_per_lane] * self.cfg.concurrency
        if not leads:
            self._begin_stage_b(now)

    # -- the driver's interface -------------------------------------------------------------------
    def next_due(self) -> float | None:
        if self._ready:
            return -float("inf")
        dues = [d for p in self.lanes for d in p.timers.values()]
        if self.phase == "profiling":
            dues.append(self.profiling_end)
        return min(dues) if dues else None

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    @property
    def done(self) -> bool:
        return self.phase == "done"

    def poll(self, now: float) -> list[Send]:
        out: list[Send] = []
        while True:
            if self.phase == "profiling" and now >= self.profiling_end:
                self._stop(now)
            if self.phase == "done":
                return out
            fired = sorted(((d, p.lane, s, p) for p in self.lanes for s, d in p.timers.items() if d <= now),
                           key=lambda x: x[:3])
            for _, _, s, p in fired:
                del p.timers[s]
                self._fire(p, s, now, out)
            ready, self._ready = self._ready, []
            for p, s in ready:
                self._fire(p, s, now, out)
            if not fired and not ready:
                break
        if not self._pending and not out:
            self._system_cap(now)
        return out

    def complete(self, ticket: int, now: float, ok: bool = True, overflow: bool = False) -> Send:
        send = self._pending.pop(ticket)
        play, s = send.play, send.stream
        play.in_flight.discard(s)
        if not self._pending:
            self._idle_since = now
        if send.primer:
            if not ok and s == 0:
                raise RootPrimerFailed(f"warm-up primer of {play.name} failed")
            play.last_done[s] = now
            if self.phase == "warmup_a" and not self._pending and not any(p.timers for p in self.lanes):
                self._begin_stage_b(now)
            return send
        play.last_done[s] = now
        stage_b = self.phase == "warmup_b"
        if stage_b:
            play.advanced.add(s)
        if overflow or (stage_b and not ok):
            play.nxt[s] = len(play.plan.streams[s].turns)
        stream = play.plan.streams[s]
        if s == 0 and send.turn in play.plan.spawns and not overflow:
            for c in play.plan.spawns[send.turn]:
                play.spawned[c] = True
                play.timers[c] = now + (0.0 if stage_b else play.plan.streams[c].offset)
        if not play.finished(s):
            play.timers[s] = now + (0.0 if stage_b else (stream.turns[play.nxt[s]].delay or 0.0))
        else:
            self._stream_finished(play, s, now)
        self._check_drain(play, now)
        if self.phase == "profiling" and not play.drained:
            self._tree_cap(play, now)
        if stage_b and not self._pending and not self._ready and not self._any_sendable():
            self._begin_profiling(now)
        return send

    # -- internals --------------------------------------------------------------------------------
    def _fire(self, play: Play, s: int, now: float, out: list[Send]) -> None:
        if play.drained or play is not self.lanes[play.lane]:
            return
        if self.phase == "warmup_a":  # a primer
            turn = play.nxt[s] - 1
            out.append(self._send(play, s, turn, 1, "warmup", True))
            return
        k = play.nxt[s]
        if s == 0 and play.gates.get(k, 0) > 0:
            play.held.add(s)
            return
        if self.phase == "warmup_b":
            if self._quota[play.lane] <= 0:
                play.parked.add(s)
                return
            self._quota[play.lane] -= 1
        tokens = 1 if self.phase == "warmup_b" else play.plan.streams[s].turns[k].max_tokens
        out.append(self._send(play, s, k, tokens, "warmup" if self.phase == "warmup_b" else "profiling"))
        play.nxt[s] = k + 1

    def _send(self, play: Play, s: int, turn: int, tokens: int, phase: str, primer: bool = False) -> Send:
        send = Send(next(self._tickets), play, s, turn, tokens, phase, primer)
        self._pending[send.ticket] = send
        play.in_flight.add(s)
        return send

    def _stream_finished(self, play: Play, s: int, now: float) -> None:
        if s == 0:
            for c in range(1, len(play.plan.streams)):  # never spawned: never will be
                if not play.spawned[c]:
                    play.nxt[c] = len(play.plan.streams[c].turns)
            return
        j = play.plan.streams[s].join_turn
        if j >= 0 and play.gates.get(j, 0) > 0:
            play.gates[j] -= 1
            if play.gates[j] == 0 and 0 in play.held:
                play.held.discard(0)
                self._ready.append((play, 0))

    def _check_drain(self, play: Play, now: float) -> None:
        if play.drained or play.in_flight or play.timers or play.held or play.parked:
            return
        if not all(play.finished(s) for s in range(len(play.plan.streams))):
            return
        play.drained = True
        if self.phase == "profiling":
            self._log(now, f"lane{play.lane} tree {play.name} DRAINED -> recycle")
            self._recycle(play.lane, now, "recycle")
        elif self.phase == "warmup_b" and self._quota[play.lane] > 0:
            self._recycle(play.lane, now, "recycle")

    def _recycle(self, lane: int, now: float, why: str) -> Play:
        play = self._draw(lane, now, why)
        self.lanes[lane] = play
        play.timers[0] = now
        return play

    def _tree_cap(self, play: Play, now: float) -> None:
        if play.in_flight or not play.timers:
            return
        excess = min(play.timers.values()) - now - self.cfg.tree_idle_cap
        if excess > 0:
            for s in play.timers:
                play.timers[s] -= excess
            self._log(now, f"TREE-IDLE CAP: {play.name} timers advanced {excess:.2f}s")

    def _system_cap(self, now: float) -> None:
        if self.phase not in ("warmup_a", "profiling"):
            return
        dues = [d for p in self.lanes for d in p.timers.values()]
        if not dues:
            return
        excess = min(dues) - self._idle_since - self.cfg.system_idle_cap
        if excess > 0:
            for p in self.lanes:
                for s in p.timers:
                    p.timers[s] -= excess
            self._log(now, f"SYSTEM-IDLE CAP: all pending timers advanced {excess:.2f}s")

    def _any_sendable(self) -> bool:
        return any(p.timers and self._quota[p.lane] > 0 for p in self.lanes)

    def _begin_stage_b(self, now: float) -> None:
        self.phase = "warmup_b"
        self._log(now, "warmup stage B")
        for play in self.lanes:
            for s in range(len(play.plan.streams)):
                if play.spawned[s] and not play.finished(s):
                    play.timers[s] = now
        if not self._any_sendable():
            self._begin_profiling(now)

    def _begin_profiling(self, now: float) -> None:
        self.phase = "profiling"
        self.profiling_start, self.profiling_end = now, now + self.cfg.duration
        self._idle_since = now
        draws, resumes = [], []
        for lane, play in enumerate(self.lanes):
            pending = play.parked | set(play.timers) | play.held
            play.timers.clear()
            play.parked.clear()
            live = [s for s in range(len(play.plan.streams)) if play.spawned[s] and not play.finished(s)]
            if not live:
                play.drained = True
                new = self._mint(self.plans[next(self._sampler)], lane)
                self.lanes[lane] = new
                new.timers[0] = now
                draws.append(f"lane{lane} handoff draws {new.plan.trace.id} (pass {new.pass_}, marker {new.marker})")
                continue
            offsets: dict[int, float] = {}
            for s in live:
                k = play.nxt[s]
                if s in play.advanced and k > 0:
                    d = play.plan.streams[s].turns[k].delay or 0.0
                    off = max(0.0, d - (now - play.last_done[s]))
                elif s in play.first_offset:
                    off = play.first_offset[s]
                else:
                    off = play.plan.streams[s].offset if s in pending else 0.0
                offsets[s] = min(off, self.cfg.lead_cap)
            lead_excess = min(offsets.values()) - self.cfg.lead_cap
            for s, off in offsets.items():
                play.timers[s] = now + off - max(0.0, lead_excess)
            play.held.discard(0)
            s0 = min(offsets, key=lambda s: (offsets[s], s))
            resumes.append(f"lane{lane} resumes {play.name} at {play.label(s0, play.nxt[s0])} "
                           f"after residual {offsets[s0]:.2f}s")
        self._log(now, "; ".join(draws + resumes))

    def _stop(self, now: float) -> None:
        self.phase = "done"
        for p in self.lanes:
            p.timers.clear()
        self._ready.clear()
        self._log(now, "profiling ends")
