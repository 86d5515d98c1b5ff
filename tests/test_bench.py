"""The load generator: exact metrics against a scripted server, failures, a full disaggregated run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from test_sim_server import records, sim_process

from ixhpc.bench import __main__ as bench_main
from ixhpc.bench import client, dataset, metrics, workers

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TOKEN = b'data: {"id":"x","choices":[{"index":0,"text":" t","finish_reason":null}]}\n\n'
DONE = b"data: [DONE]\n\n"
# Delays in the scripted server are tens of ms so the timer jitter of a busy machine stays small.
JITTER_MS = 15.0


@contextlib.contextmanager
def scripted_server(handler: Handler) -> Iterator[str]:
    """An aiohttp server running ``handler`` in its own thread and event loop; yields its URL."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def start() -> None:
        app = web.Application()
        app.router.add_post("/v1/completions", handler)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        state["runner"] = runner
        state["url"] = f"http://127.0.0.1:{runner.addresses[0][1]}"
        ready.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield state["url"]
    finally:
        asyncio.run_coroutine_threadsafe(state["runner"].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def script_for(i: int) -> tuple[float, list[float]]:
    """Request i (prompt of i+1 words): TTFT and the gaps between its 4 tokens, in ms."""
    return 40.0 + 30.0 * i, [20.0 + 20.0 * ((i + k) % 3) for k in range(3)]


async def scripted(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    ttft, gaps = script_for(len(body["prompt"].split()) - 1)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    loop = asyncio.get_running_loop()
    due = loop.time()
    for delay in (ttft, *gaps):  # absolute deadlines: sleep overshoot does not accumulate
        due += delay / 1e3
        await asyncio.sleep(due - loop.time())
        await resp.write(TOKEN)
    await resp.write(DONE)
    return resp


def prompts(n: int, words_from: int = 1, output_len: int = 4) -> list[dataset.Prompt]:
    return [dataset.Prompt(" ".join(["w"] * (i + words_from)), i + words_from, output_len) for i in range(n)]


def bench(
    url: str, ps: list[dataset.Prompt], concurrency: int = 8, warmups: int = 0
) -> tuple[list[client.RequestResult], float, float]:
    cfg = client.ClientConfig(base_url=url, model="m", max_concurrency=concurrency)
    return asyncio.run(client.benchmark(cfg, ps, ps[:warmups]))


def test_metrics_match_the_scripted_delays() -> None:
    n = 8
    with scripted_server(scripted) as url:
        # warm-ups open the connections and warm both sides' code paths
        results, _, duration = bench(url, prompts(n), warmups=n)
    assert all(r.success for r in results), [r.error for r in results]
    ttft = np.array([script_for(i)[0] for i in range(n)])
    gaps = [script_for(i)[1] for i in range(n)]
    e2el = ttft + np.array([sum(g) for g in gaps])
    expected = {
        "ttft": ttft,
        "itl": np.concatenate(gaps),
        "tpot": np.array([sum(g) / len(g) for g in gaps]),
        "e2el": e2el,
    }
    summary = metrics.summarize(results, duration, 8, math.inf)
    for name, values in expected.items():
        for stat, value in metrics.distribution(name, values).items():
            assert summary[stat] == pytest.approx(value, abs=JITTER_MS), stat
    assert summary["completed"] == n and summary["failed"] == 0
    assert summary["total_output_tokens"] == 4 * n
    assert summary["total_input_tokens"] == sum(range(1, n + 1))
    assert summary["output_throughput"] == pytest.approx(4 * n / duration)
    arrays = metrics.request_arrays(results, results[0].start)
    offsets = arrays["itl_ms_offsets"]
    assert len(offsets) == n + 1 and offsets[-1] == len(arrays["itl_ms_values"]) == 3 * n
    for i in range(n):  # request i's own gaps, in its own order
        got = arrays["itl_ms_values"][offsets[i]:offsets[i + 1]]
        assert got == pytest.approx(script_for(i)[1], abs=JITTER_MS)


async def malformed(request: web.Request) -> web.StreamResponse:
    """Prompt word count picks a misbehaviour; 1 word is a good response."""
    kind = len((await request.json())["prompt"].split())
    if kind == 2:
        return web.Response(status=500, text="engine exploded")
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(TOKEN)
    if kind == 3:  # truncated: the stream just ends
        return resp
    if kind == 4:  # connection reset mid-stream
        assert request.transport is not None
        request.transport.abort()
        return resp
    if kind == 5:
        await resp.write(b"data: {this is not json\n\n")
    elif kind == 6:
        await resp.write(b'data: {"error": {"message": "out of memory"}}\n\n')
    elif kind == 7:
        await resp.write(b"garbage line without a prefix\n\n")
    elif kind == 8:  # valid JSON followed by garbage is still malformed
        await resp.write(b'data: {"choices": [{"text": " t"}]} trailing\n\n')
    await resp.write(DONE)
    return resp


def test_malformed_responses_are_failed_requests_not_crashes() -> None:
    with scripted_server(malformed) as url:
        results, _, duration = bench(url, prompts(8, output_len=2))
    assert results[0].success and results[0].output_len == 1
    errors = [r.error for r in results[1:]]
    assert not any(r.success for r in results[1:])
    assert "HTTP 500" in errors[0] and "engine exploded" in errors[0]
    assert "truncated" in errors[1]
    assert "connection" in errors[2]  # closed or reset mid-stream, as the socket told it
    assert "malformed" in errors[3] and "out of memory" in errors[4] and "malformed" in errors[5]
    assert "malformed" in errors[6] and "trailing" in errors[6]
    summary = metrics.summarize(results, duration, 8, math.inf)
    assert summary["completed"] == 1 and summary["failed"] == 7
    arrays = metrics.request_arrays(results, results[0].start)
    assert arrays["success"] == [True] + [False] * 7
    assert all(math.isnan(v) for v in arrays["ttft_ms"][1:]) and not math.isnan(arrays["ttft_ms"][0])
    assert arrays["itl_ms_offsets"] == [0] * 9  # one token each: no gaps
    assert metrics.point_failure(summary)


def test_start_is_when_the_request_is_written() -> None:
    """Causality, not timing: the client's start is stamped before the bytes leave, the server's
    handler starts after they arrived; ``queued`` (InferenceX's timer start) comes first."""
    arrived: dict[int, float] = {}

    async def stamping(request: web.Request) -> web.StreamResponse:
        arrived[len((await request.json())["prompt"].split())] = time.perf_counter()
        return await _short(request)

    with scripted_server(stamping) as url:
        results, _, _ = bench(url, prompts(12), concurrency=12, warmups=2)
    assert all(r.success for r in results)
    for i, r in enumerate(results):
        assert r.queued < r.start <= arrived[i + 1] <= r.token_times[0] <= r.end
    with scripted_server(_short) as url:
        pass  # closed: nothing is ever written
    (failed,) = bench(url, prompts(1))[0]
    assert not failed.success and failed.start == failed.queued and math.isfinite(failed.start)


def test_a_stalled_stream_times_out_as_a_failed_request() -> None:
    async def stalling(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(TOKEN)
        await asyncio.sleep(30)  # never finishes; the server's cleanup cancels it
        return resp

    with scripted_server(stalling) as url:
        cfg = client.ClientConfig(base_url=url, model="m", max_concurrency=2, request_timeout=0.3)
        results, _, _ = asyncio.run(client.benchmark(cfg, prompts(2), []))
    assert [r.error for r in results] == ["timeout after 0.3 s"] * 2
    assert not any(r.success for r in results) and all(math.isfinite(r.start) for r in results)


class _Tally:
    def __init__(self) -> None:
        self.seen: list[int] = []  # each request's prompt length
        self.in_flight = self.peak = 0


def _counting(tally: _Tally) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        tally.in_flight += 1
        tally.peak = max(tally.peak, tally.in_flight)
        try:
            tally.seen.append(len((await request.json())["prompt"].split()))
            await asyncio.sleep(0.02)  # lets the other requests pile up (no time is asserted)
            return await _short(request)
        finally:
            tally.in_flight -= 1

    return handler


def test_concurrency_limit_holds_and_each_prompt_is_sent_once() -> None:
    counting = _Tally()
    with scripted_server(_counting(counting)) as url:
        results, _, _ = bench(url, prompts(10), concurrency=3)
    assert all(r.success for r in results) and sorted(counting.seen) == list(range(1, 11))
    assert 1 <= counting.peak <= 3


def test_workers_share_the_concurrency_and_keep_prompt_order() -> None:
    counting, ps = _Tally(), prompts(31)
    with scripted_server(_counting(counting)) as url:
        cfg = client.ClientConfig(base_url=url, model="m", max_concurrency=5)
        results, start, duration = workers.benchmark(cfg, ps, ps[:4], workers=3)
    assert [r.input_len for r in results] == [p.input_len for p in ps] and all(r.success for r in results)
    assert sorted(counting.seen) == sorted([1, 2, 3, 4] + [p.input_len for p in ps])  # warm-ups, then each once
    assert 1 <= counting.peak <= 5 and all(start <= r.start and r.end <= start + duration for r in results)
    assert workers.shares(5, 3) == [2, 2, 1] and sum(workers.shares(4096, 7)) == 4096


def test_a_failing_worker_is_one_error_and_nobody_waits_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "a\nb")  # every worker refuses it when it opens its session
    cfg = client.ClientConfig(base_url="http://127.0.0.1:9", model="m", max_concurrency=2)
    with pytest.raises(RuntimeError, match="line break"):
        workers.benchmark(cfg, prompts(4), prompts(2), workers=2)


def _failing_every(n: int) -> Handler:
    """Fail every n-th request (by arrival) with HTTP 500."""
    count = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal count
        count += 1
        if count % n == 0:
            return web.Response(status=500, text="scripted failure")
        return await _short(request)

    return handler


async def _short(request: web.Request) -> web.StreamResponse:
    await request.read()
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(TOKEN + TOKEN + DONE)
    return resp


@pytest.mark.parametrize("every, failed, point_fails", [(20, 2, False), (10, 4, True)])
def test_the_five_percent_rule(every: int, failed: int, point_fails: bool) -> None:
    with scripted_server(_failing_every(every)) as url:
        results, _, duration = bench(url, prompts(40), concurrency=1)
    summary = metrics.summarize(results, duration, 1, math.inf)
    assert summary["failed"] == failed
    assert bool(metrics.point_failure(summary)) is point_fails


def test_no_output_tokens_fails_the_point() -> None:
    summary = metrics.summarize([], 1.0, 1, math.inf)
    assert metrics.point_failure(summary) == "no output tokens came back"


def _run_cli(args: list[str]) -> int:
    return bench_main.main(args)


def test_cli_excludes_warmups_and_writes_the_contract(tmp_path: Path) -> None:
    seen: list[int] = []

    async def counting(request: web.Request) -> web.StreamResponse:
        seen.append(1)
        return await _short(request)

    out = tmp_path / "r.json"
    with scripted_server(counting) as url:
        rc = _run_cli(["--base-url", url, "--model", "m", "--isl", "16", "--osl", "2", "--max-concurrency", "2",
                       "--num-prompts", "5", "--num-warmups", "3", "--output", str(out)])
    assert rc == 0 and len(seen) == 8
    doc = json.loads(out.read_text())
    assert doc["summary"]["completed"] == doc["summary"]["num_prompts"] == 5 and doc["failure"] is None
    assert all(len(v) == 5 for k, v in doc["requests"].items() if not k.startswith("itl_ms"))
    assert doc["config"]["num_warmups"] == 3 and doc["config"]["num_prompts"] == 5
    assert doc["config"]["timer_start"] == client.TIMER_START == "request_written"
    assert doc["config"]["token_clock"] == "kernel_receive"
    assert set(doc) == {"summary", "requests", "config", "failure", "validity", "clock"}
    assert doc["clock"]["end_unix"] > doc["clock"]["start_unix"]
    assert doc["validity"]["verdict"] == "valid", doc["validity"]
    # never overwrite a result
    with pytest.raises(SystemExit) as exc:
        _run_cli(["--base-url", url, "--isl", "1", "--osl", "1", "--max-concurrency", "1", "--output", str(out)])
    assert exc.value.code == 2


def test_cli_read_clock_and_workers_are_stated_in_the_result(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    with scripted_server(_short) as url:
        rc = _run_cli(["--base-url", url, "--model", "m", "--isl", "4", "--osl", "2", "--max-concurrency", "2",
                       "--num-prompts", "5", "--token-clock", "read", "--workers", "3", "--output", str(out)])
    doc = json.loads(out.read_text())
    assert rc == 0 and doc["config"]["token_clock"] == "read" and doc["summary"]["completed"] == 5
    assert doc["config"]["workers"] == 2  # never more workers than streams


def test_cli_failed_point_still_writes_the_file(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    with scripted_server(_failing_every(1)) as url:
        rc = _run_cli(["--base-url", url, "--model", "m", "--isl", "4", "--osl", "2", "--max-concurrency", "3",
                       "--output", str(out)])
    assert rc == 1
    doc = json.loads(out.read_text())
    assert doc["summary"]["failed"] == 30 and "30 of 30" in doc["failure"]
    assert doc["requests"]["error"][0].startswith("HTTP 500")


def test_unreachable_server_is_a_failed_point(tmp_path: Path) -> None:
    with scripted_server(_short) as url:
        pass  # closed: nothing listens there any more
    out = tmp_path / "r.json"
    rc = _run_cli(["--base-url", url, "--model", "m", "--isl", "4", "--osl", "2", "--max-concurrency", "2",
                   "--num-prompts", "4", "--output", str(out)])
    assert rc == 1 and json.loads(out.read_text())["summary"]["failed"] == 4


def test_dataset_lengths_follow_the_range_ratio() -> None:
    ps = dataset.random_prompts(400, isl=100, osl=50, ratio=0.8, seed=3)
    assert {len(p.prompt.split()) for p in ps} == {p.input_len for p in ps}  # type: ignore[union-attr]
    assert all(len(p.prompt.split()) == p.input_len for p in ps)  # type: ignore[union-attr]
    assert min(p.input_len for p in ps) == 80 and max(p.input_len for p in ps) == 100
    assert min(p.output_len for p in ps) == 40 and max(p.output_len for p in ps) == 50
    assert ps == dataset.random_prompts(400, isl=100, osl=50, ratio=0.8, seed=3)
    ids = dataset.random_prompts(3, isl=7, osl=1, ratio=1.0, seed=0, token_ids=True)
    assert all(isinstance(p.prompt, list) and len(p.prompt) == 7 for p in ids)


def test_bench_imports_only_stdlib_and_numpy() -> None:
    probe = """
import sys
before = set(sys.modules)
import ixhpc.bench.__main__
new = {m.split('.')[0] for m in set(sys.modules) - before}
allowed = set(sys.stdlib_module_names) | {'ixhpc', 'numpy'}
print(sorted(new - allowed))
print(sorted(m for m in sys.modules if m.startswith('ixhpc')))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    outside, ixhpc_modules = (eval(line) for line in out.stdout.splitlines())  # noqa: S307 - our own output
    assert outside == []
    assert all(m in {"ixhpc", "ixhpc.atomic", "ixhpc.errors"} or m.startswith("ixhpc.bench")
               for m in ixhpc_modules)


def test_a_token_takes_the_arrival_of_the_read_that_completed_it() -> None:
    """The first event a read completes ends in the read's first packet (its kernel stamp);
    later events of the same read get the read's time."""
    r = client.RequestResult(input_len=1)
    events = client._EventStream(r)
    events(TOKEN + TOKEN[:20], 1.0, 1.5)  # one whole event and the start of the next
    events(TOKEN[20:] + TOKEN, 2.0, 3.0)  # completes the second; a third came with it
    events(TOKEN[:-1], 4.0, 4.5)  # ends inside the event's final newline
    events(b"\n" + DONE, 5.0, 5.5)
    assert list(r.token_times) == [1.0, 2.0, 3.0, 5.0] and events.done


def test_full_disaggregated_run(tmp_path: Path) -> None:
    out = tmp_path / "disagg.json"
    fast = ["--time-scale", "0.02"]
    with contextlib.ExitStack() as stack:
        prefill = stack.enter_context(sim_process("serve", "--role", "prefill", *fast))
        decode = [stack.enter_context(sim_process("serve", "--role", "decode", *fast)) for _ in range(2)]
        router = stack.enter_context(sim_process("router", "--prefill", prefill, "--decode", *decode))
        proc = subprocess.run(
            [sys.executable, "-m", "ixhpc.bench", "--base-url", router, "--isl", "64", "--osl", "16",
             "--random-range-ratio", "0.5", "--max-concurrency", "8", "--num-prompts", "40", "--num-warmups", "2",
             "--ignore-eos", "--seed", "7", "--output", str(out)],
            capture_output=True, text=True,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        decoded = [records(u) for u in decode]
        prefilled = records(prefill)
    assert "p99.9" in proc.stdout or "p99" in proc.stdout
    doc = json.loads(out.read_text())
    s, req = doc["summary"], doc["requests"]
    assert s["completed"] == 40 and s["failed"] == 0 and doc["config"]["model"] == "sim-model"
    assert all(math.isfinite(s[f"{stat}_{m}_ms"])
               for stat in ("mean", "p99.9") for m in ("ttft", "itl", "tpot", "e2el"))
    assert s["total_output_tokens"] == sum(req["output_len"])
    assert all(8 <= n <= 16 for n in req["output_len"]) and all(32 <= n <= 64 for n in req["input_len"])
    assert len(req["itl_ms_offsets"]) == 41
    assert all(t >= 0 for t in req["start_time"])
    # 40 measured + 2 warm-ups, each prefilled once and decoded once, split over both decoders
    assert len(prefilled) == 42 and sorted(len(d) for d in decoded) == [21, 21]
    server_out = Counter(len(r["token_times"]) for d in decoded for r in d)
    assert not Counter(req["output_len"]) - server_out  # every client count matches a server record
