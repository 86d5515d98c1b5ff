"""The simulated engine and router as real processes on 127.0.0.1 (random ports)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from ixhpc.bench import rxstamp

FAST = ["--time-scale", "0.01"]


@contextlib.contextmanager
def sim_process(*args: str) -> Iterator[str]:
    """Run ``python -m ixhpc.sim <args> --port 0``; yield its URL; SIGTERM must exit 0."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ixhpc.sim", *args, "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        match = re.search(r"ready on (http://\S+)", line)
        assert match, f"no ready line: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}"  # type: ignore[union-attr]
        assert "simulated" in line
        yield match.group(1)
    finally:
        proc.terminate()
        rc = proc.wait(timeout=20)
        err = proc.stderr.read()  # type: ignore[union-attr]
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    assert rc == 0, err


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def fetch_json(url: str) -> Any:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        assert r.status == 200
        return await r.json()


async def post(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as s, s.post(url, json=body, headers=headers) as r:
        return r.status, await r.read()


def sse_events(raw: bytes) -> list[str]:
    return [e[len("data: "):] for e in raw.decode().split("\n\n") if e.strip()]


def records(url: str) -> list[dict[str, Any]]:
    return run(fetch_json(url + "/sim/timings"))["records"]


def test_streaming_completion_and_its_server_record() -> None:
    with sim_process("serve", *FAST) as url:
        body = {"model": "sim-model", "prompt": "one two three four five", "max_tokens": 6,
                "stream": True, "ignore_eos": True, "stream_options": {"include_usage": True}}
        status, raw = run(post(url + "/v1/completions", body, {"X-Request-Id": "req-a"}))
        assert status == 200
        events = sse_events(raw)
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        texts = [c["choices"][0]["text"] for c in chunks if c["choices"] and c["choices"][0]["text"]]
        assert len(texts) == 6
        assert chunks[-1]["usage"] == {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}
        assert all(c["id"] == "req-a" for c in chunks)
        (rec,) = records(url)
        assert rec["id"] == "req-a" and rec["prompt_tokens"] == 5 and rec["status"] == "ok"
        times = rec["token_times"]
        assert len(times) == 6 and times == sorted(times) and rec["arrival"] <= times[0] <= rec["finished"]


def test_chat_non_streaming_health_models_and_token_ids() -> None:
    with sim_process("serve", "--model", "my-sim", *FAST) as url:
        chat = {"messages": [{"role": "user", "content": "hello there you"}], "max_tokens": 3, "ignore_eos": True}
        status, raw = run(post(url + "/v1/chat/completions", chat))
        reply = json.loads(raw)
        assert status == 200 and reply["usage"]["prompt_tokens"] == 3
        assert reply["choices"][0]["message"]["content"].split() == ["tok"] * 3
        body = {"prompt": [11, 12, 13, 14], "max_tokens": 2, "ignore_eos": True}
        status, raw = run(post(url + "/v1/completions", body))
        assert json.loads(raw)["usage"]["prompt_tokens"] == 4
        stream_chat = {**chat, "stream": True}
        status, raw = run(post(url + "/v1/chat/completions", stream_chat))
        deltas = [json.loads(e)["choices"][0]["delta"] for e in sse_events(raw)[:-1]]
        assert [d.get("content") for d in deltas if d.get("content")] == [" tok"] * 3
        assert run(fetch_json(url + "/health"))["status"] == "ok"
        models = run(fetch_json(url + "/v1/models"))
        assert models["data"][0]["id"] == "my-sim" and "simulated" in json.dumps(models)


def test_without_ignore_eos_lengths_stay_within_max_tokens() -> None:
    with sim_process("serve", *FAST) as url:
        for i in range(6):
            _, raw = run(post(url + "/v1/completions", {"prompt": "a b", "max_tokens": 10}, {"X-Request-Id": f"r{i}"}))
            assert 5 <= json.loads(raw)["usage"]["completion_tokens"] <= 10


def test_bad_requests_get_400() -> None:
    with sim_process("serve", *FAST) as url:
        for body in ({"prompt": "x", "max_tokens": 0}, {"prompt": "x", "max_tokens": "many"}, ["not", "an", "object"]):
            assert run(post(url + "/v1/completions", body))[0] == 400  # type: ignore[arg-type]
        assert run(post(url + "/v1/chat/completions", {"messages": "hi"}))[0] == 400


def _overlap(recs: list[dict[str, Any]]) -> bool:
    """Did every request get a token before every other request's last token (shared steps)?"""
    return all(a["token_times"][0] < b["token_times"][-1] for a in recs for b in recs if a is not b)


async def _concurrent(url: str, n: int, tokens: int = 8) -> None:
    body = {"prompt": "a b c", "max_tokens": tokens, "ignore_eos": True, "stream": True}
    results = await asyncio.gather(*(post(url + "/v1/completions", body) for _ in range(n)))
    assert all(status == 200 for status, _ in results)


def test_continuous_batching_shares_decode_steps_up_to_max_batch() -> None:
    # Long enough generations (~0.3 s at this scale) that a busy machine's spread of request
    # arrivals (a few ms) cannot let one finish before another starts.
    with sim_process("serve", "--max-batch", "16", "--time-scale", "0.1") as url:
        run(_concurrent(url, 6, tokens=64))
        assert _overlap(records(url))
    with sim_process("serve", "--max-batch", "1", *FAST) as url:
        run(_concurrent(url, 3))
        recs = sorted(records(url), key=lambda r: r["token_times"][0])
        assert all(a["token_times"][-1] <= b["token_times"][0] for a, b in zip(recs, recs[1:]))


def test_help_and_bad_config_say_simulated_and_fail_cleanly() -> None:
    out = subprocess.run([sys.executable, "-m", "ixhpc.sim", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "SIMULATED" in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "ixhpc.sim", "serve", "--port", "0", "--gpu", "H100", "--tp", "1"],
        capture_output=True, text=True,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr and "do not fit" in out.stderr


def _assert_pairing(prefill_urls: list[str], decode_urls: list[str]) -> dict[str, list[str]]:
    """Every request was prefilled once and decoded once, with the KV of the prompt it sent."""
    prefilled = {r["id"]: (u, r) for u in prefill_urls for r in records(u)}
    decoded: dict[str, list[str]] = {u: [] for u in decode_urls}
    for u in decode_urls:
        for r in sorted(records(u), key=lambda r: r["arrival"]):
            source, pre = prefilled.pop(r["id"])
            assert r["prefill_worker"] == source
            assert r["kv_tokens"] == pre["prompt_tokens"] == r["prompt_tokens"] > 0
            assert pre["end"] <= r["arrival"] <= r["kv_ready"] <= r["token_times"][0]
            decoded[u].append(r["id"])
    assert not prefilled, "prefilled but never decoded"
    return decoded


def test_router_round_robin_pairs_prefill_then_decode() -> None:
    with contextlib.ExitStack() as stack:
        prefill = [stack.enter_context(sim_process("serve", "--role", "prefill", *FAST)) for _ in range(2)]
        decode = [stack.enter_context(sim_process("serve", "--role", "decode", *FAST)) for _ in range(2)]
        router = stack.enter_context(sim_process("router", "--prefill", *prefill, "--decode", *decode))
        assert "simulated" in json.dumps(run(fetch_json(router + "/v1/models")))
        assert run(post(prefill[0] + "/v1/completions", {"prompt": "x"}))[0] == 400  # prefill-only worker
        for i in range(4):
            body = {"prompt": " ".join(["w"] * (i + 2)), "max_tokens": 3, "ignore_eos": True, "stream": True}
            status, raw = run(post(router + "/v1/completions", body))
            assert status == 200 and sse_events(raw)[-1] == "[DONE]"
        decoded = _assert_pairing(prefill, decode)
        order = sorted((r["arrival"], u) for u in prefill for r in records(u))
        assert [u for _, u in order] == prefill * 2
        assert [len(ids) for ids in decoded.values()] == [2, 2]
        for ids in decoded.values():  # alternating: requests 0,2 on one worker and 1,3 on the other
            numbers = sorted(int(i.rsplit("-", 1)[1]) for i in ids)
            assert numbers[1] - numbers[0] == 2


async def _least_loaded(router: str) -> None:
    """One long stream stays open on a decode worker while short requests go through."""
    long_body = {"prompt": "long one", "max_tokens": 100_000, "ignore_eos": True, "stream": True}
    async with aiohttp.ClientSession() as s:
        async with s.post(router + "/v1/completions", json=long_body) as long_resp:
            await long_resp.content.readuntil(b"\n\n")  # it is decoding now
            for _ in range(3):
                body = {"prompt": "short", "max_tokens": 2, "ignore_eos": True}
                async with s.post(router + "/v1/completions", json=body) as r:
                    assert r.status == 200
                    await r.read()


def test_router_least_loaded_avoids_the_busy_decode_worker() -> None:
    with contextlib.ExitStack() as stack:
        prefill = [stack.enter_context(sim_process("serve", "--role", "prefill", *FAST))]
        decode = [stack.enter_context(sim_process("serve", "--role", "decode", "--time-scale", "1")) for _ in range(2)]
        router = stack.enter_context(
            sim_process("router", "--policy", "least-loaded", "--prefill", *prefill, "--decode", *decode)
        )
        run(_least_loaded(router))
        recs = {u: records(u) for u in decode}
        busy = next(u for u, rs in recs.items() if any(r["max_tokens"] == 100_000 for r in rs))
        idle = next(u for u in decode if u != busy)
        assert len(recs[busy]) == 1 and len(recs[idle]) == 3
        assert all(r["prefill_worker"] == prefill[0] for rs in recs.values() for r in rs)


@contextlib.contextmanager
def _in_process_engine() -> Iterator[tuple[str, asyncio.AbstractEventLoop]]:
    """The simulated engine behind ``listener.listen`` in a thread; yields its URL and loop."""
    from ixhpc.sim import listener, model, server

    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def start() -> None:
        runner = web.AppRunner(server.make_app(server.Engine(model.SimConfig(), "both", "t", 0.01), "m"))
        await runner.setup()
        state["runner"], state["listening"] = runner, await listener.listen(runner, "127.0.0.1", 0)
        ready.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield f"http://127.0.0.1:{state['listening'].sockets[0].getsockname()[1]}", loop
    finally:
        async def stop() -> None:  # on the server's own loop: asyncio objects are not thread-safe
            state["listening"].close()
            await state["runner"].cleanup()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def _complete(url: str, rid: str) -> None:
    body = json.dumps({"prompt": "a b", "max_tokens": 1}).encode()
    headers = {"X-Request-Id": rid, "Content-Type": "application/json"}
    req = urllib.request.Request(url + "/v1/completions", body, headers)
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


@pytest.mark.skipif(not rxstamp.SUPPORTED, reason="kernel receive stamps: Linux x86_64/aarch64")
def test_arrival_is_when_the_request_came_not_when_a_busy_server_got_to_it() -> None:
    """Causality with wide margins: the server's loop is stuck for 0.5 s when the request comes."""
    with _in_process_engine() as (url, loop):
        _complete(url, "warm")  # the kernel switches receive stamps on a moment after the first ask
        loop.call_soon_threadsafe(time.sleep, 0.5)
        time.sleep(0.1)
        sent = time.perf_counter()
        _complete(url, "late")
        rec = next(r for r in records(url) if r["id"] == "late")
    assert abs(rec["arrival"] - sent) < 0.1 and rec["handled"] - rec["arrival"] > 0.2
    assert rec["arrival"] <= rec["handled"] <= rec["token_times"][0]
