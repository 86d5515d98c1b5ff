"""The benchmark spread over several client processes, for token rates one process cannot read.

One process reads about 55,000 streamed tokens per CPU-second (``benchmarks/bench_client.py``);
a rack-scale deployment can stream several times that. With ``workers`` > 1, worker k gets
prompts k, k+N, k+2N, ..., its share of the concurrency (the shares add up to it) and of a
finite request rate (Poisson streams add up to one), and its own event loop and connections.
All workers finish their warm-ups, wait for each other, then start together. Their times are
all ``time.perf_counter()`` (CLOCK_MONOTONIC, one clock for every process on a host), so the
results join into one list, in prompt order, as if one process had sent them.

A worker's share of the concurrency is not lent to another: when one worker's requests run
longer, fewer than ``max_concurrency`` may be in flight near the end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from typing import TYPE_CHECKING, Any, cast

from ixhpc.bench import client, eventloop
from ixhpc.bench.dataset import Prompt

if TYPE_CHECKING:
    from multiprocessing.connection import Connection


def shares(total: int, workers: int) -> list[int]:
    """``total`` split into ``workers`` near-equal parts, larger ones first."""
    return [total // workers + (1 if k < total % workers else 0) for k in range(workers)]


def worker_configs(cfg: client.ClientConfig, workers: int) -> list[client.ClientConfig]:
    rate = cfg.request_rate / workers if not math.isinf(cfg.request_rate) else cfg.request_rate
    return [dataclasses.replace(cfg, max_concurrency=conc, request_rate=rate, seed=cfg.seed + k)
            for k, conc in enumerate(shares(cfg.max_concurrency, workers))]


def _worker(cfg: client.ClientConfig, prompts: list[Prompt], warmups: list[Prompt],
            barrier: Any, conn: Connection) -> None:
    async def main() -> tuple[list[client.RequestResult], float, float]:
        with client.open_session(cfg) as session:
            if warmups:
                await client.run_requests(session, cfg, warmups)
            client.freeze_heap()
            await asyncio.get_running_loop().run_in_executor(None, barrier.wait)
            start = time.perf_counter()
            results = await client.run_requests(session, cfg, prompts)
            return results, start, time.perf_counter()

    try:
        conn.send(("ok", eventloop.run(main())))
    except BaseException as exc:  # noqa: BLE001 - the parent reports it; the barrier must not hang
        barrier.abort()
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def collect(procs: list[Any], pipes: list[Connection], barrier: Any) -> list[tuple[str, Any]]:
    """Every worker's (status, detail). A failed or dead worker breaks the barrier, so the
    others stop waiting for it."""
    from multiprocessing.connection import wait

    outcomes: list[tuple[str, Any]] = [("error", "")] * len(procs)
    waiting = {pipe: k for k, pipe in enumerate(pipes)}
    while waiting:
        for pipe in wait(list(waiting)):  # ready: a result, or EOF when a worker died
            k = waiting.pop(cast("Connection", pipe))
            try:
                outcomes[k] = cast("Connection", pipe).recv()
            except EOFError:
                procs[k].join()
                outcomes[k] = ("error", f"client worker {k} died (exit code {procs[k].exitcode})")
            if outcomes[k][0] != "ok":
                barrier.abort()
    for proc in procs:
        proc.join()
    return outcomes


def benchmark(cfg: client.ClientConfig, prompts: list[Prompt], warmups: list[Prompt],
              workers: int) -> tuple[list[client.RequestResult], float, float]:
    """``client.benchmark`` in ``workers`` processes: (results in prompt order, start, duration)."""
    if workers == 1:
        return eventloop.run(client.benchmark(cfg, prompts, warmups))
    import multiprocessing  # only here: importing it registers __mp_main__ for every caller

    ctx = multiprocessing.get_context("spawn")  # no event loop or socket crosses into a child
    barrier = ctx.Barrier(workers)
    procs, pipes = [], []
    for k, sub in enumerate(worker_configs(cfg, workers)):
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_worker, args=(sub, prompts[k::workers], warmups[k::workers], barrier, child),
                           name=f"ixhpc-bench-{k}", daemon=True)
        proc.start()
        child.close()
        procs.append(proc)
        pipes.append(parent)
    outcomes = collect(procs, pipes, barrier)
    errors = sorted((detail for status, detail in outcomes if status != "ok"),
                    key=lambda e: e.startswith("BrokenBarrierError"))  # the cause before its echoes
    if errors:
        raise RuntimeError(errors[0])
    parts = [detail for _, detail in outcomes]
    results: list[client.RequestResult] = [None] * len(prompts)  # type: ignore[list-item]
    for k, (part, _, _) in enumerate(parts):
        results[k::workers] = part
    start = min(s for _, s, _ in parts)
    return results, start, max(end for _, _, end in parts) - start
