"""The replay state machine of SPEC §2, free of any clock or network.

A driver calls ``start(now)``, then repeatedly ``poll(now)`` (the requests to send now) and
``complete(ticket, now, ok, overflow)``, sleeping until ``next_due()`` or the next completion;
``simulate.run`` drives it under a toy latency model, ``replay`` on the live client. Times are
seconds on the driver's clock. ``log`` gets ``(now, text)`` for drains, recycles, idle caps and
phase changes (the event wording of SPEC §6).
"""

from __future__ import annotations

import hashlib
import heapq
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
    # One of several client processes (--workers): the lanes it replays (default: all), its
    # sampler (start, stride) over the corpus, and whether profiling waits for the driver's
    # ``begin_profiling`` (all processes' warm-ups done) instead of starting on its own.
    lanes: tuple[int, ...] = ()
    sampler: tuple[int, int] = (0, 1)
    hold_profiling: bool = False

    @property
    def lane_ids(self) -> tuple[int, ...]:
        return self.lanes or tuple(range(self.concurrency))


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
    slot: int = 0  # index of the lane in this scheduler's lanes

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
        start, stride = cfg.sampler
        self._sampler = itertools.islice(itertools.cycle(range(len(plans))), start % len(plans), None, stride)
        self._slots = {lane: i for i, lane in enumerate(cfg.lane_ids)}
        self._passes: dict[str, int] = {}
        self.lanes: list[Play] = []
        self.phase = "init"  # warmup_a, warmup_b, [warmup_done,] profiling, done
        self.profiling_start = float("nan")
        self.profiling_end = float("nan")
        self._tickets = itertools.count()
        self._pending: dict[int, Send] = {}
        self._ready: list[tuple[Play, int]] = []
        # every armed timer as (due, lane, stream, seq, play): the earliest is found without a
        # scan of all lanes; an entry whose play no longer holds that due is stale and skipped
        self._heap: list[tuple[float, int, int, int, Play]] = []
        self._seq = itertools.count()
        self._quota: list[int] = []
        self._quota_left: set[int] = set()  # slots whose stage-B quota is not used up
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
                    {j: len(m) for j, m in plan.joins.items()}, corr, slot=self._slots[lane])
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
        for lane in self.cfg.lane_ids:
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
            self._arm(play, s, now + lmax - lead)
        self._quota = [self.cfg.warmup_per_lane] * len(self.lanes)
        self._quota_left = {i for i, q in enumerate(self._quota) if q > 0}
        if not leads:
            self._begin_stage_b(now)

    # -- the driver's interface -------------------------------------------------------------------
    def next_due(self) -> float | None:
        if self._ready:
            return -float("inf")
        first = self._earliest()
        dues = [] if first is None else [first]
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
            if self.phase in ("done", "warmup_done"):
                return out
            fired = []
            while self._heap and self._heap[0][0] <= now:
                d, _, s, _, p = heapq.heappop(self._heap)
                fired.append((d, s, p))
            for d, s, p in fired:
                if p.timers.get(s) != d:
                    continue  # stale: re-armed, shifted or cleared since
                del p.timers[s]
                self._fire(p, s, now, out)
            ready, self._ready = self._ready, []
            for p, s in ready:
                self._fire(p, s, now, out)
            if not fired and not ready:
                if self.phase == "warmup_b" and not self._pending and not self._any_sendable():
                    self._begin_profiling(now)  # the last stage-B timers fired into gates: nothing left to send
                    continue
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
        if self.phase == "done":  # the profile is over: nothing more is scheduled
            return send
        if send.primer:
            if not ok and s == 0:
                raise RootPrimerFailed(f"warm-up primer of {play.name} failed")
            play.last_done[s] = now
            if self.phase == "warmup_a" and not self._pending and self._earliest() is None:
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
                self._arm(play, c, now + (0.0 if stage_b else play.plan.streams[c].offset))
        if not play.finished(s):
            self._arm(play, s, now + (0.0 if stage_b else (stream.turns[play.nxt[s]].delay or 0.0)))
        else:
            self._stream_finished(play, s, now)
        self._check_drain(play, now)
        if self.phase == "profiling" and not play.drained:
            self._tree_cap(play, now)
        if stage_b and not self._pending and not self._ready and not self._any_sendable():
            self._begin_profiling(now)
        return send

    # -- internals --------------------------------------------------------------------------------
    def _arm(self, play: Play, s: int, due: float) -> None:
        play.timers[s] = due
        heapq.heappush(self._heap, (due, play.lane, s, next(self._seq), play))

    def _earliest(self) -> float | None:
        """The earliest armed timer (stale heap entries dropped on the way)."""
        heap = self._heap
        while heap:
            d, _, s, _, p = heap[0]
            if p.timers.get(s) == d:
                return d
            heapq.heappop(heap)
        return None

    def _fire(self, play: Play, s: int, now: float, out: list[Send]) -> None:
        if play.drained or play is not self.lanes[play.slot]:
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
            if self._quota[play.slot] <= 0:
                play.parked.add(s)
                return
            self._quota[play.slot] -= 1
            if self._quota[play.slot] <= 0:
                self._quota_left.discard(play.slot)
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
        elif self.phase == "warmup_b" and self._quota[play.slot] > 0:
            self._recycle(play.lane, now, "recycle")

    def _recycle(self, lane: int, now: float, why: str) -> Play:
        play = self._draw(lane, now, why)
        self.lanes[play.slot] = play
        self._arm(play, 0, now)
        return play

    def _tree_cap(self, play: Play, now: float) -> None:
        if play.in_flight or not play.timers:
            return
        excess = min(play.timers.values()) - now - self.cfg.tree_idle_cap
        if excess > 0:
            for s, d in list(play.timers.items()):
                self._arm(play, s, d - excess)
            self._log(now, f"TREE-IDLE CAP: {play.name} timers advanced {excess:.2f}s")

    def _system_cap(self, now: float) -> None:
        if self.phase not in ("warmup_a", "profiling"):
            return
        first = self._earliest()
        if first is None:
            return
        excess = first - self._idle_since - self.cfg.system_idle_cap
        if excess > 0:
            armed = [(p, s, d) for p in self.lanes for s, d in p.timers.items()]
            self._heap.clear()
            for p, s, d in armed:
                self._arm(p, s, d - excess)
            self._log(now, f"SYSTEM-IDLE CAP: all pending timers advanced {excess:.2f}s")

    def _any_sendable(self) -> bool:
        return any(self.lanes[i].timers for i in self._quota_left)

    def _begin_stage_b(self, now: float) -> None:
        self.phase = "warmup_b"
        self._log(now, "warmup stage B")
        for play in self.lanes:
            for s in range(len(play.plan.streams)):
                if play.spawned[s] and not play.finished(s):
                    self._arm(play, s, now)
        if not self._any_sendable():
            self._begin_profiling(now)

    def _begin_profiling(self, now: float) -> None:
        if self.cfg.hold_profiling:
            self.phase = "warmup_done"
            self._log(now, "warmup done, waiting for the other client processes")
            return
        self.begin_profiling(now)

    def begin_profiling(self, now: float) -> None:
        """Start the profile (the driver calls it itself only with ``hold_profiling``)."""
        self.phase = "profiling"
        self.profiling_start, self.profiling_end = now, now + self.cfg.duration
        self._idle_since = now
        draws, resumes = [], []
        for slot, play in enumerate(self.lanes):
            lane = play.lane
            pending = play.parked | set(play.timers) | play.held
            play.timers.clear()
            play.parked.clear()
            live = [s for s in range(len(play.plan.streams)) if play.spawned[s] and not play.finished(s)]
            if not live:
                play.drained = True
                new = self._mint(self.plans[next(self._sampler)], lane)
                self.lanes[slot] = new
                self._arm(new, 0, now)
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
                self._arm(play, s, now + off - max(0.0, lead_excess))
            play.held.discard(0)
            s0 = min(offsets, key=lambda s: (offsets[s], s))
            resumes.append(f"lane{lane} resumes {play.name} at {play.label(s0, play.nxt[s0])} "
                           f"after residual {offsets[s0]:.2f}s")
        self._log(now, "; ".join(draws + resumes))

    def _stop(self, now: float) -> None:
        self.phase = "done"
        for p in self.lanes:
            p.timers.clear()
        self._heap.clear()
        self._ready.clear()
        self._log(now, "profiling ends")
