"""What one trace replays as (SPEC §1.6-§1.8): streams, spawn/join anchors, end-to-start
delays, per-turn message segment plans and the theoretical (infinite-cache) prefix hits.

v1 of the SPEC's stream model: one stream per subagent entry (no LCP chain detection), so the
cross-stream barriers of §1.6 step 6 never trigger. Plans are derived once per trace and shared
by all of its plays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ixhpc.bench.agentic.traces import Request, Trace


@dataclass(frozen=True)
class Segment:
    role: str  # "system" | "user" | "assistant"
    blocks: tuple[int, ...]
    tail: int  # synthetic tokens after the blocks


@dataclass(frozen=True)
class Turn:
    index: int
    t: float
    max_tokens: int  # recorded out
    delay: float | None  # end-to-start delay before this turn; None for turn 0
    segments: tuple[Segment, ...]
    reset_context: bool
    prompt_tokens: int
    hit_blocks: int = 0  # theoretical prefix hit (SPEC §1.8)
    total_blocks: int = 0


@dataclass
class Stream:
    session_id: str
    label: str  # "root" or the subagent's agent_id
    turns: list[Turn]
    spawn_turn: int = -1  # root turn whose completion starts this child (children only)
    join_turn: int = -1  # root turn gated on this child; -1: background
    offset: float = 0.0  # dispatch offset after the spawning turn completes


@dataclass
class TracePlan:
    trace: Trace
    streams: list[Stream]  # [root, children...]
    spawns: dict[int, list[int]] = field(default_factory=dict)  # root turn -> child stream indices
    joins: dict[int, list[int]] = field(default_factory=dict)  # root turn -> gating child indices
    dropped: list[str] = field(default_factory=list)  # subagents with no spawning turn

    @property
    def span(self) -> tuple[float, float]:
        ts = [t.t for s in self.streams for t in s.turns]
        return min(ts), max(ts)


def lcp(a: tuple[int, ...] | list[int], b: tuple[int, ...] | list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def delays(reqs: list[Request]) -> list[float | None]:
    out: list[float | None] = [None]
    for prev, cur in zip(reqs, reqs[1:]):
        api = prev.api_time if math.isfinite(prev.api_time) and prev.api_time > 0 else 0.0
        out.append(max(0.0, cur.t - prev.t - api))
    return out


def segments(reqs: list[Request], bs: int, system_tokens: int = 0) -> list[tuple[tuple[Segment, ...], bool]]:
    """The message segments of every turn of one stream (SPEC §1.7), with its reset flag."""
    out: list[tuple[tuple[Segment, ...], bool]] = []
    segs: list[Segment] = []
    sent = 0  # blocks of the previous turn's segments that were sent
    for k, req in enumerate(reqs):
        ids = tuple(req.hash_ids)
        covered = min(len(ids), req.isl // bs)
        tail = req.isl - covered * bs
        reset = False
        if k == 0:
            segs = []
            sys_blocks = min(math.ceil(system_tokens / bs), covered) if system_tokens > 0 else 0
            if sys_blocks:
                segs.append(Segment("system", ids[:sys_blocks], 0))
            segs.append(Segment("user", ids[sys_blocks:covered], tail))
        else:
            prev = tuple(reqs[k - 1].hash_ids)
            prev_covered = min(len(prev), reqs[k - 1].isl // bs)
            keep = min(lcp(prev[:prev_covered], ids[:covered]), prev_covered)
            kept: list[Segment] = []
            n = 0
            for s in segs:
                if n + len(s.blocks) <= keep:
                    kept.append(s if n + len(s.blocks) < keep or s.tail == 0 else Segment(s.role, s.blocks, 0))
                    if n + len(s.blocks) == keep and s.tail:
                        reset = True
                    n += len(s.blocks)
                    if n == keep:
                        break
                else:
                    if keep - n > 0:
                        kept.append(Segment(s.role, s.blocks[: keep - n], 0))
                    reset = True
                    n = keep
                    break
            if keep < sent:
                reset = True
            # drop whole empty trailing segments (all blocks cut)
            segs = [s for s in kept if s.blocks or s.tail]
            new = ids[keep:covered]
            n_new = len(new)
            has_user = any(s.role == "user" for s in segs)
            prev_out = reqs[k - 1].osl
            a = math.ceil(prev_out / bs) if prev_out > 0 and has_user else 0
            a = min(a, n_new)
            if tail == 0 and a == n_new and a > 0:
                a -= 1
            if a:
                segs.append(Segment("assistant", new[:a], 0))
            if n_new - a or tail:
                segs.append(Segment("user", new[a:], tail))
        sent = sum(len(s.blocks) for s in segs)
        out.append((tuple(segs), reset))
    return out


def build(trace: Trace) -> TracePlan:
    bs = trace.block_size
    root_reqs = trace.root
    streams: list[Stream] = []

    def make(session_id: str, label: str, reqs: list[Request], system_tokens: int) -> Stream:
        segs = segments(reqs, bs, system_tokens)
        ds = delays(reqs)
        turns = [Turn(k, r.t, r.osl, ds[k], segs[k][0], segs[k][1], r.isl) for k, r in enumerate(reqs)]
        return Stream(session_id, label, turns)

    streams.append(make(trace.id, "root", root_reqs, trace.system_tokens))
    plan = TracePlan(trace, streams)
    branches: dict[tuple[int, int], list[int]] = {}
    for sub in trace.subagents:
        if not sub.requests:
            continue
        spawn = -1
        for j, pos in enumerate(trace.root_positions):
            if pos < sub.position:
                spawn = j
        if spawn < 0:
            plan.dropped.append(sub.agent_id)
            continue
        join = -1
        for j in range(spawn + 1, len(root_reqs)):
            if root_reqs[j].t + 1e-6 >= sub.end:
                join = j
                break
        child = make(f"{trace.id}::sa:{sub.agent_id}", sub.agent_id, sub.requests, 0)
        child.spawn_turn, child.join_turn = spawn, join
        streams.append(child)
        branches.setdefault((spawn, join), []).append(len(streams) - 1)
    for (spawn, join), members in branches.items():
        start = min(streams[i].turns[0].t for i in members)
        for i in members:  # one stream per entry: each starts at its own first request
            streams[i].offset = max(0.0, streams[i].turns[0].t - start)
        plan.spawns.setdefault(spawn, []).extend(members)
        if join >= 0:
            plan.joins.setdefault(join, []).extend(members)
    _theoretical_hits(plan)
    return plan


def _theoretical_hits(plan: TracePlan) -> None:
    order = []
    positions = plan.trace.root_positions
    for si, s in enumerate(plan.streams):
        reqs = plan.trace.root if si == 0 else next(x.requests for x in plan.trace.subagents
                                                    if x.agent_id == s.label)
        if si == 0:
            pos_of = positions
        else:
            pos_of = [next(x.position for x in plan.trace.subagents if x.agent_id == s.label)] * len(reqs)
        for k, r in enumerate(reqs):
            order.append((r.t, pos_of[k], si, k, r))
    order.sort(key=lambda x: x[:4])
    seen: set[int] = set()
    for _, _, si, k, r in order:
        ids = list(r.hash_ids)
        hit = 0
        while hit < len(ids) and ids[hit] in seen:
            hit += 1
        seen.update(ids)
        turn = plan.streams[si].turns[k]
        plan.streams[si].turns[k] = Turn(turn.index, turn.t, turn.max_tokens, turn.delay, turn.segments,
                                         turn.reset_context, turn.prompt_tokens, hit, len(ids))
