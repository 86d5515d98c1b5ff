"""The AgentX trace corpus (SPEC §1.2-§1.4): one JSON session per line, read and validated.

Every problem is a located line ``FILE:LINE: what`` and all of a file's problems are raised at
once as one ``ConfigError``. Memory is bounded: a line is read at most ``MAX_LINE_BYTES`` long,
and a session keeps its hash ids as compact integer arrays (no text is stored in a corpus).
``generate`` writes synthetic corpora with the statistics knobs of the real one.
"""

from __future__ import annotations

import json
import math
import random
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ixhpc.errors import ConfigError

MAX_LINE_BYTES = 256 << 20  # one session; the largest published ones are a few MB
MAX_ERRORS = 50
TRACE_KEYS = {"id", "models", "block_size", "hash_id_scope", "tool_tokens", "system_tokens", "requests", "totals"}
REQUEST_KEYS = {"t", "type", "model", "in", "out", "hash_ids", "api_time", "think_time", "ttft",
                "input_types", "output_types", "stop"}
SUBAGENT_KEYS = {"t", "type", "agent_id", "subagent_type", "duration_ms", "total_tokens", "tool_use_count",
                 "status", "requests", "models", "tool_tokens", "system_tokens"}


@dataclass(frozen=True, eq=False)
class Request:
    t: float
    model: str
    isl: int  # "in"
    osl: int  # "out"
    hash_ids: array[int]
    api_time: float  # 0 when missing or not finite


@dataclass(frozen=True, eq=False)
class Subagent:
    t: float
    agent_id: str
    requests: list[Request]
    end: float  # recorded end (SPEC §1.4)
    position: int  # index in the trace's requests list


@dataclass(frozen=True, eq=False)
class Trace:
    id: str
    block_size: int
    root: list[Request]
    root_positions: list[int]  # index of each root request in the trace's requests list
    subagents: list[Subagent] = field(default_factory=list)
    system_tokens: int = 0  # tool_tokens + system_tokens


class _Problems:
    def __init__(self, where: str) -> None:
        self.where = where
        self.items: list[str] = []

    def add(self, msg: str) -> None:
        self.items.append(f"{self.where}: {msg}")


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _request(obj: Any, path: str, p: _Problems) -> Request | None:
    if not isinstance(obj, dict):
        p.add(f"{path}: not an object")
        return None
    extra = sorted(set(obj) - REQUEST_KEYS)
    if extra:
        p.add(f"{path}: unknown keys {extra}")
    ok = True
    for key in ("t", "in", "out", "hash_ids", "model"):
        if key not in obj:
            p.add(f"{path}: missing {key!r}")
            ok = False
    if not ok:
        return None
    if not _num(obj["t"]) or obj["t"] < 0:
        p.add(f"{path}.t: not a finite number >= 0: {obj['t']!r:.40}")
        ok = False
    for key in ("in", "out"):
        if not _int(obj[key]):
            p.add(f"{path}.{key}: not an integer >= 0: {obj[key]!r:.40}")
            ok = False
    ids = obj["hash_ids"]
    if not isinstance(ids, list) or not all(_int(i) for i in ids):
        p.add(f"{path}.hash_ids: not a list of integers >= 0")
        ok = False
    if not isinstance(obj["model"], str):
        p.add(f"{path}.model: not a string")
        ok = False
    if obj.get("type", "n") not in ("n", "s"):
        p.add(f"{path}.type: {obj.get('type')!r:.40} is not 'n' or 's'")
        ok = False
    api = obj.get("api_time")
    if api is not None and not _num(api):
        p.add(f"{path}.api_time: not a number")
        ok = False
    if not ok:
        return None
    return Request(float(obj["t"]), obj["model"], obj["in"], obj["out"], array("q", ids),
                   max(0.0, float(api)) if api is not None else 0.0)


def _subagent(obj: dict[str, Any], path: str, pos: int, p: _Problems) -> Subagent | None:
    extra = sorted(set(obj) - SUBAGENT_KEYS)
    if extra:
        p.add(f"{path}: unknown keys {extra}")
    if not _num(obj.get("t")) or not isinstance(obj.get("agent_id"), str) or not isinstance(obj.get("requests"), list):
        p.add(f"{path}: a subagent needs a number 't', a string 'agent_id' and a list 'requests'")
        return None
    t0 = float(obj["t"])
    reqs = []
    for j, r in enumerate(obj["requests"]):
        if isinstance(r, dict) and r.get("type") == "subagent":
            p.add(f"{path}.requests[{j}]: nested subagents are not supported")
            continue
        req = _request(r, f"{path}.requests[{j}]", p)
        if req is not None:
            if req.t < t0:  # older fixtures: times relative to the subagent (SPEC §1.4)
                req = Request(req.t + t0, req.model, req.isl, req.osl, req.hash_ids, req.api_time)
            reqs.append(req)
    reqs.sort(key=lambda r: r.t)
    dur = obj.get("duration_ms")
    if dur is not None and not _num(dur):
        p.add(f"{path}.duration_ms: not a number or null")
        dur = None
    if dur is not None:
        end = t0 + float(dur) / 1000.0
    elif reqs:
        end = max(r.t + r.api_time for r in reqs)
    else:
        end = t0
    return Subagent(t0, obj["agent_id"], reqs, end, pos)


def parse_trace(obj: Any, where: str) -> tuple[Trace | None, list[str]]:
    """One decoded line: the trace, or None and its located problems."""
    p = _Problems(where)
    if not isinstance(obj, dict):
        p.add("a trace line must be a JSON object")
        return None, p.items
    extra = sorted(set(obj) - TRACE_KEYS)
    if extra:
        p.add(f"unknown keys {extra}")
    tid = obj.get("id")
    if not isinstance(tid, str) or not tid:
        p.add("'id' must be a non-empty string")
    bs = obj.get("block_size")
    if not isinstance(bs, int) or isinstance(bs, bool) or bs <= 0:
        p.add(f"'block_size' must be an integer > 0, not {bs!r:.40}")
    if obj.get("hash_id_scope") not in ("local", "global"):
        p.add(f"'hash_id_scope' must be 'local' or 'global', not {obj.get('hash_id_scope')!r:.40}")
    if not isinstance(obj.get("models"), list):
        p.add("'models' must be a list")
    extra_tokens = 0
    for key in ("tool_tokens", "system_tokens"):
        if key in obj and not _int(obj[key]):
            p.add(f"{key!r} must be an integer >= 0")
        elif key in obj:
            extra_tokens += obj[key]
    items = obj.get("requests")
    if not isinstance(items, list) or not items:
        p.add("'requests' must be a non-empty list")
        return None, p.items
    root: list[Request] = []
    positions: list[int] = []
    subs: list[Subagent] = []
    seen_agents: set[str] = set()
    for i, item in enumerate(items):
        path = f"requests[{i}]"
        if isinstance(item, dict) and item.get("type") == "subagent":
            sub = _subagent(item, path, i, p)
            if sub is not None:
                if sub.agent_id in seen_agents:
                    p.add(f"{path}.agent_id: {sub.agent_id!r} repeats in this trace")
                seen_agents.add(sub.agent_id)
                subs.append(sub)
        else:
            req = _request(item, path, p)
            if req is not None:
                root.append(req)
                positions.append(i)
    if p.items:
        return None, p.items
    assert isinstance(tid, str) and isinstance(bs, int)
    return Trace(tid, bs, root, positions, subs, extra_tokens), []


def iter_traces(path: str | Path) -> Iterator[Trace]:
    """The traces of a JSONL corpus in file order; raises one ConfigError with every problem
    (at most MAX_ERRORS) after the whole file was read, so nothing is replayed from a bad file."""
    problems: list[str] = []
    ids: dict[str, int] = {}
    good: list[Trace] = []
    name = str(path)
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read the traces ({exc.strerror})") from None
    with fh:
        lineno = 0
        while True:
            raw = fh.readline(MAX_LINE_BYTES + 1)
            if not raw:
                break
            lineno += 1
            where = f"{name}:{lineno}"
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                problems.append(f"{where}: line longer than {MAX_LINE_BYTES} bytes")
                while raw and not raw.endswith(b"\n"):
                    raw = fh.readline(1 << 20)
                continue
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                problems.append(f"{where}: not JSON ({exc})")
                continue
            trace, errs = parse_trace(obj, where)
            problems += errs
            if trace is not None:
                if trace.id in ids:
                    problems.append(f"{where}: trace id {trace.id!r} repeats line {ids[trace.id]}")
                ids[trace.id] = lineno
                good.append(trace)
            if len(problems) >= MAX_ERRORS:
                break
    if not problems and not good:
        problems.append(f"{name}: no traces")
    if problems:
        raise ConfigError(problems[:MAX_ERRORS])
    yield from good


def read_traces(path: str | Path, max_context_length: int = 0) -> list[Trace]:
    """All traces; with ``max_context_length`` drop whole traces whose peak in+out exceeds it."""
    out = []
    for tr in iter_traces(path):
        if max_context_length:
            reqs = tr.root + [r for s in tr.subagents for r in s.requests]
            if max(r.isl + r.osl for r in reqs) > max_context_length:
                continue
        out.append(tr)
    if not out:
        raise ConfigError(f"{path}: no trace fits --max-context-length {max_context_length}")
    return out


def generate(n_traces: int, *, seed: int = 0, turns: tuple[int, int] = (4, 12),
             first_isl: tuple[int, int] = (512, 4096), growth: tuple[int, int] = (64, 1024),
             osl: tuple[int, int] = (16, 256), think_time: tuple[float, float] = (0.5, 20.0),
             prefix_reuse: float = 0.95, subagent_rate: float = 0.2, subagent_turns: tuple[int, int] = (2, 4),
             max_context: int = 32768, block_size: int = 64,
             api_time_per_token: float = 0.01) -> list[dict[str, Any]]:
    """Synthetic traces in the published line format (SPEC §1.2): ``turns`` root requests each,
    prompts growing by ``growth`` tokens per turn, a turn keeping all of the previous prompt
    with probability ``prefix_reuse`` (else a compaction cutting it back to a random prefix),
    recorded gaps drawn from ``think_time``, a subagent after a root turn with probability
    ``subagent_rate``, and no request above ``max_context`` (in+out)."""
    rng = random.Random(seed)
    traces = []
    for n in range(n_traces):
        next_id = 0

        def fresh(k: int) -> list[int]:
            nonlocal next_id
            ids = list(range(next_id, next_id + k))
            next_id += k
            return ids

        def chain(t: float, count: int, isl: int, model: str) -> tuple[list[dict[str, Any]], float]:
            reqs: list[dict[str, Any]] = []
            ids: list[int] = []
            for k in range(count):
                if k:
                    keep = len(ids) if rng.random() < prefix_reuse else rng.randint(0, len(ids))
                    ids = ids[:keep]
                    isl = min(isl + rng.randint(*growth), max_context - osl[1])
                isl = max(isl, len(ids) * block_size)
                full = isl // block_size
                ids = ids[:full] + fresh(max(0, math.ceil(isl / block_size) - len(ids[:full])))
                out = rng.randint(*osl)
                api = round(0.2 + api_time_per_token * out, 3)
                reqs.append({"t": round(t, 3), "type": "s", "model": model, "in": isl, "out": out,
                             "hash_ids": list(ids), "api_time": api})
                t += api + rng.uniform(*think_time)
            return reqs, t

        isl0 = min(rng.randint(*first_isl), max_context - osl[1])
        root, _ = chain(0.0, rng.randint(*turns), isl0, "main-model")
        items: list[dict[str, Any]] = []
        for i, req in enumerate(root):
            items.append(req)
            if i + 1 < len(root) and rng.random() < subagent_rate:
                t0 = req["t"] + req["api_time"] + 0.1
                isl = min(rng.randint(*first_isl), max_context // 2)
                inner, end = chain(t0, rng.randint(*subagent_turns), isl, "helper-model")
                last = inner[-1]
                items.append({"t": inner[0]["t"], "type": "subagent", "agent_id": f"subagent_{i:03d}",
                              "subagent_type": "Subagent", "status": "completed", "tool_use_count": None,
                              "duration_ms": int((last["t"] + last["api_time"] - inner[0]["t"]) * 1000),
                              "total_tokens": sum(r["in"] + r["out"] for r in inner),
                              "models": ["helper-model"], "requests": inner})
                shift = max(0.0, end - root[i + 1]["t"])  # keep root times after the subagent's items
                for later in root[i + 1:]:
                    later["t"] = round(later["t"] + shift, 3)
        models = sorted({r.get("model", "helper-model") for r in items if r["type"] != "subagent"} |
                        ({"helper-model"} if any(r["type"] == "subagent" for r in items) else set()))
        traces.append({"id": f"synth-{seed}-{n:04d}", "models": models, "block_size": block_size,
                       "hash_id_scope": "local", "requests": items})
    return traces


def write_traces(path: str | Path, traces: list[dict[str, Any]]) -> None:
    Path(path).write_text("".join(json.dumps(t, separators=(",", ":")) + "\n" for t in traces))
