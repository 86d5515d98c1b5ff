"""``python -m ixhpc.bench --scenario agentic-coding --traces PATH ...``: replay an AgentX trace
corpus against a live OpenAI-compatible server (SPEC §2) and write the result (SPEC §3).

``--time-scale`` (real seconds per trace second, default 1) exists for tests: at 0.01 a 900 s
profile runs in 9 s and every recorded gap and idle cap shrinks alike; server latencies are not
scaled, so only tests against a simulated engine with the same ``--time-scale`` make sense.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextvars
import dataclasses
import json
import math
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ixhpc import atomic
from ixhpc.bench import client, eventloop, http, servermetrics
from ixhpc.bench.agentic import plan as planmod
from ixhpc.bench.agentic import prompts, report, schedule, traces
from ixhpc.errors import ConfigError, IxhpcError

SCENARIO = "agentic-coding"
SESSION_HEADERS = {"none": "", "x-session-id": "X-Session-ID", "x-smg-routing-key": "X-SMG-Routing-Key",
                   "x-dynamo-session-id": "X-Dynamo-Session-ID"}
PROFILE_GRACE = 30.0  # s (trace clock) in-flight requests may finish after the profile ends
_HEADERS: contextvars.ContextVar[str] = contextvars.ContextVar("agentic_headers", default="")


class _Client(http.Client):
    """The HTTP client with per-request headers, set in the sending task's context."""

    def head(self, method: str, path: str, body: bytes, content_type: str) -> bytes:
        base = super().head(method, path, body, content_type)
        extra = _HEADERS.get()
        return base[:-2] + extra.encode("latin-1") + b"\r\n" if extra else base


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ixhpc.bench --scenario agentic-coding",
                                description="Replay AgentX agentic-coding traces (docs/agentic.md).")
    p.add_argument("--scenario", choices=(SCENARIO,), required=True)
    p.add_argument("--traces", required=True, help="JSONL trace corpus (SPEC §1 format)")
    p.add_argument("--base-url", required=True)
    p.add_argument("--model", help="served model (default: the first the server lists)")
    p.add_argument("--concurrency", "--max-concurrency", dest="concurrency", type=int, required=True,
                   help="lanes: live session trees")
    p.add_argument("--duration", type=float, default=3600.0, help="profiling seconds (< 900: non-canonical)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--start-window", type=float, nargs=2, default=(0.25, 0.75), metavar=("LO", "HI"))
    p.add_argument("--warmup-requests-per-lane", type=int, default=10)
    p.add_argument("--tree-idle-cap", type=float, default=300.0)
    p.add_argument("--system-idle-cap", type=float, default=10.0)
    p.add_argument("--max-context-length", type=int, default=0, help="drop traces above it (default: none)")
    p.add_argument("--session-header", choices=sorted(SESSION_HEADERS), default="none",
                   help="router affinity header carrying the stream's correlation id")
    p.add_argument("--num-gpus", type=int, default=1, help="for throughput per GPU")
    p.add_argument("--request-timeout", type=float, default=6 * 3600.0)
    p.add_argument("--stall-timeout", type=float, default=300.0)
    p.add_argument("--token-clock", choices=client.TOKEN_CLOCKS, default="kernel_receive")
    p.add_argument("--metrics-url", action="append", default=[], metavar="ROLE=URL")
    p.add_argument("--metrics-interval", type=float, default=servermetrics.DEFAULT_INTERVAL)
    p.add_argument("--benchmark-id", help="cache-bust marker seed (default: a fresh UUID)")
    p.add_argument("--workers", type=int, default=1,
                   help="client processes sharing the lanes (each lane, so each session, stays in one)")
    p.add_argument("--time-scale", type=float, default=1.0, help=argparse.SUPPRESS)
    p.add_argument("--output", help="result JSON file (written atomically, never overwritten)")
    return p


def _check(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    if a.concurrency < 1:
        p.error("--concurrency must be >= 1")
    if not a.duration > 0 or not a.time_scale > 0:
        p.error("--duration and --time-scale must be > 0")
    lo, hi = a.start_window
    if not 0 <= lo <= hi <= 1:
        p.error("--start-window needs 0 <= LO <= HI <= 1")
    if a.warmup_requests_per_lane < 0 or a.num_gpus < 1 or a.workers < 1:
        p.error("--warmup-requests-per-lane must be >= 0, --num-gpus and --workers >= 1")
    if a.output and os.path.exists(a.output):
        p.error(f"--output {a.output} exists; results are never overwritten")
    if not a.base_url.startswith(("http://", "https://")):
        p.error("--base-url must start with http:// or https://")
    try:
        a.metrics_targets = [servermetrics.parse_target(s) for s in a.metrics_url]
    except ValueError as exc:
        p.error(str(exc))


async def replay(a: argparse.Namespace, model: str, plans: list[planmod.TracePlan], cfg: schedule.Config,
                 t0: float, before_profiling: Callable[[], Awaitable[None]] | None = None,
                 ) -> tuple[list[report.Record], schedule.Scheduler]:
    """Run the scheduler on the live client, its clock starting at ``t0`` (``perf_counter``);
    ``before_profiling`` is awaited between the warm-up and the profile (``cfg.hold_profiling``)."""
    scale = a.time_scale
    header_name = SESSION_HEADERS[a.session_header]
    session = _Client(a.base_url, {"Accept": "text/event-stream"}, receive_stamps=a.token_clock == "kernel_receive",
                      stall_timeout=a.stall_timeout)
    blocks = {p.trace.block_size: prompts.BlockText(a.seed, p.trace.block_size) for p in plans}
    sched = schedule.Scheduler(plans, cfg)

    def clock() -> float:
        return float((time.perf_counter() - t0) / scale)

    model_json = b'{"model": %s, "messages": ' % json.dumps(model).encode()
    done: collections.deque[tuple[schedule.Send, client.RequestResult]] = collections.deque()
    wake = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()
    records: list[report.Record] = []

    async def one(send: schedule.Send) -> None:
        play, stream = send.play, play_stream(send)
        turn = stream.turns[send.turn]
        corr = play.correlation[send.stream]
        hdr = f"X-Correlation-ID: {corr}\r\n"
        if header_name:
            hdr += f"{header_name}: {corr}\r\n"
            if header_name == "X-Dynamo-Session-ID" and send.stream:
                hdr += f"X-Dynamo-Parent-Session-ID: {play.correlation[0]}\r\n"
        _HEADERS.set(hdr)
        body = b"".join((model_json, prompts.messages_json(blocks[play.plan.trace.block_size], play.plan.trace.id,
                                                          stream.session_id, turn, play.marker),
                         b', "stream": true, "max_completion_tokens": %d, "ignore_eos": true, '
                         b'"stream_options": {"include_usage": true}}' % send.max_tokens))
        result = client.RequestResult(input_len=turn.prompt_tokens, max_tokens=send.max_tokens)
        await client.post_stream(session, "/v1/chat/completions", body, result, a.request_timeout)
        done.append((send, result))
        wake.set()

    def play_stream(send: schedule.Send) -> planmod.Stream:
        return send.play.plan.streams[send.stream]

    sched.start(clock())
    grace_end = math.inf
    try:
        while True:
            if sched.phase == "warmup_done":
                if before_profiling is not None:
                    await before_profiling()
                sched.begin_profiling(clock())
            for send in sched.poll(clock()):
                task = asyncio.create_task(one(send))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            while done:
                send, res = done.popleft()
                end = (res.end - t0) / scale if res.success else clock()
                ok = res.success
                sched.complete(send.ticket, end, ok, (not ok) and report.is_overflow(res.error))
                records.append(_record(send, res, t0))
                for s in sched.poll(clock()):
                    task = asyncio.create_task(one(s))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            if sched.done:
                if grace_end == math.inf:
                    grace_end = clock() + PROFILE_GRACE
                if not tasks or clock() >= grace_end:
                    break
            if sched.phase == "warmup_done":
                continue  # the top of the loop starts the profile
            due = sched.next_due()
            wait = None if due is None else max(0.0, (due - clock()) * scale)
            if sched.done:
                wait = max(0.0, (grace_end - clock()) * scale)
            wake.clear()
            if done:
                continue
            try:
                async with asyncio.timeout(wait):  # None: until woken
                    await wake.wait()
            except TimeoutError:
                pass
    finally:
        for task in list(tasks):  # cut off after the grace period: not recorded
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        session.close()
    return records, sched


@dataclass(frozen=True)
class Outcome:
    """What the replay's processes produced, on one clock (``t0``, ``perf_counter``)."""

    records: list[report.Record]
    t_stars: list[float]  # per lane, in lane order
    profiling_start: float  # trace clock
    cpu_seconds: float
    t0: float


def run_one(a: argparse.Namespace, model: str, plans: list[planmod.TracePlan], cfg: schedule.Config) -> Outcome:
    cpu0, t0 = time.process_time(), time.perf_counter()
    records, sched = eventloop.run(replay(a, model, plans, cfg, t0))
    return Outcome(records, sched.t_stars, sched.profiling_start, time.process_time() - cpu0, t0)


def _worker(a: argparse.Namespace, model: str, cfg: schedule.Config, t0: float, barrier: Any, conn: Any) -> None:
    """One client process: its lanes of the replay, profiling once every process is warm."""
    async def wait_for_all() -> None:
        await asyncio.get_running_loop().run_in_executor(None, barrier.wait)

    try:
        cpu0 = time.process_time()
        plans = [planmod.build(t) for t in traces.read_traces(a.traces, a.max_context_length)]
        records, sched = eventloop.run(replay(a, model, plans, cfg, t0, wait_for_all))
        conn.send(("ok", Outcome(records, sched.t_stars, sched.profiling_start, time.process_time() - cpu0, t0)))
    except BaseException as exc:  # noqa: BLE001 - the parent reports it; the barrier must not hang
        barrier.abort()
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def run_workers(a: argparse.Namespace, model: str, cfg: schedule.Config, n: int) -> Outcome:
    """The replay in ``n`` spawned processes: worker k replays lanes k, k+n, ... (a lane's trees,
    hence every session's turns, stay in one process), draws traces k, k+n, ... of the corpus,
    and starts profiling when every worker's warm-up is done."""
    import multiprocessing  # only here: importing it registers __mp_main__ for every caller

    from ixhpc.bench.workers import collect

    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(n)
    t0 = time.perf_counter()
    procs, pipes = [], []
    for k in range(n):
        sub = dataclasses.replace(cfg, lanes=tuple(range(k, cfg.concurrency, n)), sampler=(k, n),
                                  hold_profiling=True)
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_worker, args=(a, model, sub, t0, barrier, child), name=f"ixhpc-agentic-{k}",
                           daemon=True)
        proc.start()
        child.close()
        procs.append(proc)
        pipes.append(parent)
    outcomes = collect(procs, pipes, barrier)
    errors = sorted((d for status, d in outcomes if status != "ok"), key=lambda e: e.startswith("BrokenBarrierError"))
    if errors:
        raise IxhpcError(f"agentic replay worker failed: {errors[0]}")
    parts: list[Outcome] = [d for _, d in outcomes]
    stars = sorted((lane, ts) for k, part in enumerate(parts)
                   for lane, ts in zip(range(k, cfg.concurrency, n), part.t_stars, strict=False))
    return Outcome(sorted((r for p in parts for r in p.records), key=lambda r: r.start), [ts for _, ts in stars],
                   min(p.profiling_start for p in parts), sum(p.cpu_seconds for p in parts), t0)


def _record(send: schedule.Send, res: client.RequestResult, t0: float) -> report.Record:
    play = send.play
    stream = play.plan.streams[send.stream]
    turn = stream.turns[send.turn]
    return report.Record(
        phase=send.phase, lane=play.lane, trace_id=play.plan.trace.id, play=play.pass_,
        session_id=stream.session_id, subagent="" if send.stream == 0 else stream.label, turn=send.turn,
        correlation_id=play.correlation[send.stream], root_correlation_id=play.correlation[0],
        start=res.start - t0, end=(res.end - t0) if res.success else math.nan, ttft=res.ttft,
        isl=res.prompt_tokens, osl=res.output_len, max_tokens=send.max_tokens, expected_osl=turn.max_tokens,
        hit_blocks=turn.hit_blocks, total_blocks=turn.total_blocks, error=res.error)


def main(argv: list[str]) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    _check(parser, a)
    corpus = traces.read_traces(a.traces, a.max_context_length)
    plans = [planmod.build(t) for t in corpus]
    model = a.model
    if model is None:
        try:
            model = eventloop.run(client.first_model(a.base_url))
        except Exception as exc:  # noqa: BLE001
            raise IxhpcError(f"cannot list models at {a.base_url}/v1/models ({exc}); pass --model") from None
    cfg = schedule.Config(a.concurrency, a.duration, a.seed, tuple(a.start_window), a.warmup_requests_per_lane,
                          a.tree_idle_cap, a.system_idle_cap, 300.0, a.benchmark_id or str(uuid.uuid4()))
    scraper = servermetrics.Scraper(a.metrics_targets, a.metrics_interval).start()
    exit_reason = ""
    n_workers = min(a.workers, a.concurrency)
    try:
        out = run_one(a, model, plans, cfg) if n_workers == 1 else run_workers(a, model, cfg, n_workers)
    except schedule.RootPrimerFailed as exc:
        raise IxhpcError(str(exc)) from None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    finally:
        scraper.stop()
    records, t0, cpu = out.records, out.t0, out.cpu_seconds
    prof_start = out.profiling_start * a.time_scale
    prof_len = a.duration * a.time_scale
    server_metrics = scraper.document(t0 + prof_start, prof_len) if scraper.targets else None
    metrics = report.request_metrics(records, a.num_gpus)
    failure, canonical = report.gate(records, a.duration, exit_reason)
    acct = report.accounting(records)
    ok = sum(1 for r in records if r.phase == "profiling" and r.ok)
    n_req = max(1, len(records))
    print("=========== ixhpc.bench agentic-coding ===========")
    print(f"requests: {len(records)} ({acct['records_warmup_dropped']} warm-up, {acct['records_error_dropped']} failed,"
          f" {ok} measured)  client CPU: {cpu / n_req * 1e3:.3f} ms/request")
    lat = metrics["latency"]
    for key in ("ttft", "e2el", "itl"):
        if lat[key]:
            print(f"-- {key} (s): " + "  ".join(f"{k}={v}" for k, v in lat[key].items()))
    if lat["e2e_norm_intvty"]:
        print(f"headline: E2E-normalised interactivity p90 = {lat['e2e_norm_intvty']['p90']} tok/s/user")
    print(f"point: {'FAILED: ' + failure if failure else 'ok'}{'' if canonical else ' (non-canonical: < 900 s)'}")
    if a.output:
        unix = time.time() - time.perf_counter()
        doc: dict[str, Any] = {
            "scenario": SCENARIO,
            "config": {"base_url": a.base_url, "model": model, "traces": os.path.abspath(a.traces),
                       "concurrency": a.concurrency, "duration": a.duration, "seed": a.seed,
                       "start_window": list(a.start_window), "warmup_requests_per_lane": a.warmup_requests_per_lane,
                       "tree_idle_cap": a.tree_idle_cap, "system_idle_cap": a.system_idle_cap,
                       "session_header": a.session_header, "num_gpus": a.num_gpus, "time_scale": a.time_scale,
                       "benchmark_id": cfg.benchmark_id, "num_traces": len(plans), "token_clock": a.token_clock,
                       "workers": n_workers},
            "agentic": {"scenario_type": SCENARIO, "conc": a.concurrency, "canonical": canonical,
                        "num_requests_total": acct["records_total"] - acct["records_warmup_dropped"],
                        "num_requests_successful": ok, "request_accounting": acct,
                        "request_metrics": metrics, "t_stars": [round(x, 6) for x in out.t_stars],
                        "profiling_window": [prof_start, prof_start + prof_len],
                        "client_cpu_seconds": round(cpu, 6)},
            "requests": report.request_arrays(records),
            "failure": failure,
            "validity": {"valid": failure is None, "canonical": canonical},
            "clock": {"start_perf_counter": t0, "start_unix": t0 + unix,
                      "profiling_start_unix": t0 + prof_start + unix},
            **({"server_metrics": server_metrics} if server_metrics else {}),
        }
        atomic.write_text(a.output, json.dumps(doc))
        print(f"wrote {a.output}")
    return 1 if failure else 0
