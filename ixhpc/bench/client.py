"""Streaming OpenAI-compatible client: sends the requests, timestamps every streamed chunk.

All times are ``time.perf_counter()`` seconds. A request's ``start``, which TTFT and E2EL count
from, is when its bytes are handed to the socket (aiohttp's ``on_request_chunk_sent`` trace
hook, just before the write). InferenceX's ``benchmark_serving`` starts its timer before
``session.post``, so its TTFT also holds the client's own work before the write: opening a
connection (none once warm-ups have filled the pool), building the request and, on Python
< 3.12 where aiohttp writes the body from a task of its own, waiting for every request
launched in the same event-loop turn. That is the client's time, not the server's; ``queued``
keeps the InferenceX-style start. A chunk's time is when its bytes were read from the socket;
SSE events that arrive in one read share that time. Any failure of one request (HTTP error,
reset connection, truncated or malformed stream, error event, timeout) becomes that
request's error text; it never stops the benchmark.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import time
from array import array
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ixhpc.bench.dataset import Prompt


@dataclass(eq=False)
class RequestResult:
    input_len: int
    queued: float = math.nan  # perf_counter when the client began the request
    start: float = math.nan  # when its bytes went to the socket (``queued`` if they never did)
    end: float = math.nan
    token_times: array = field(default_factory=lambda: array("d"))  # one per content chunk
    output_len: int = 0  # usage.completion_tokens when the server reports it, else chunks
    success: bool = False
    error: str = ""
    response_id: str = ""

    @property
    def ttft(self) -> float:
        return self.token_times[0] - self.start if self.success and self.token_times else math.nan

    @property
    def e2el(self) -> float:
        return self.end - self.start if self.success else math.nan

    @property
    def tpot(self) -> float:
        if not self.success or self.output_len < 2:
            return math.nan
        return (self.e2el - self.ttft) / (self.output_len - 1)


@dataclass(frozen=True)
class ClientConfig:
    base_url: str
    model: str
    endpoint: str = "/v1/completions"
    ignore_eos: bool = False
    max_concurrency: int = 1
    request_rate: float = math.inf
    request_timeout: float = 6 * 3600.0
    seed: int = 0


class StreamError(Exception):
    """The server's stream broke the protocol; the message says how."""


TIMER_START = "request_written"  # what TTFT/E2EL count from; stated in the result's config
_JSON = {"Content-Type": "application/json"}


def _payload(cfg: ClientConfig, prompt: Prompt) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": cfg.model,
        "max_tokens": prompt.output_len,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": cfg.ignore_eos,
    }
    if cfg.endpoint.endswith("/chat/completions"):
        text = prompt.prompt if isinstance(prompt.prompt, str) else " ".join(map(str, prompt.prompt))
        body["messages"] = [{"role": "user", "content": text}]
    else:
        body["prompt"] = prompt.prompt
    return body


def _chunk_text(event: dict[str, Any]) -> str:
    choices = event.get("choices")
    if not choices:
        return ""
    choice = choices[0]
    text = choice.get("text")
    if text is None:
        delta = choice.get("delta") or {}
        text = delta.get("content") or delta.get("reasoning_content") or ""
    return text


_DECODER = json.JSONDecoder()


def _parse_json(data: bytes) -> Any:
    """``json.loads`` at about half the cost (this runs once per streamed token): ``raw_decode``
    of a str skips the encoding sniffing; the end check keeps the full validation."""
    try:
        text = data.decode()
        event, end = _DECODER.raw_decode(text)
        if end == len(text) and isinstance(event, dict):
            return event
    except (json.JSONDecodeError, UnicodeDecodeError):
        pass
    raise StreamError(f"malformed SSE data: {data[:80]!r}")


def _handle_event(raw: bytes, now: float, result: RequestResult) -> bool:
    """Account one SSE event; return True at ``[DONE]``."""
    raw = raw.strip()
    if not raw or raw.startswith(b":"):  # keep-alive comment
        return False
    if not raw.startswith(b"data:"):
        raise StreamError(f"malformed SSE event: {raw[:80]!r}")
    data = raw[5:].lstrip()
    if data == b"[DONE]":
        return True
    event = _parse_json(data)
    if "error" in event:
        raise StreamError(f"server error event: {str(event['error'])[:200]}")
    if not result.response_id:
        result.response_id = str(event.get("id", ""))
    if _chunk_text(event):
        result.token_times.append(now)
    usage = event.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
        result.output_len = usage["completion_tokens"]
    return False


async def _on_chunk_sent(session: object, ctx: Any, params: object) -> None:
    result = (ctx.trace_request_ctx or {}).get("result")
    if isinstance(result, RequestResult) and math.isnan(result.start):  # the first write only
        result.start = time.perf_counter()


def timing_trace() -> aiohttp.TraceConfig:
    """The trace hook that stamps ``start`` when a request is written; every session needs it."""
    trace = aiohttp.TraceConfig()
    trace.on_request_chunk_sent.append(_on_chunk_sent)
    return trace


async def _stream(session: aiohttp.ClientSession, url: str, body: bytes, result: RequestResult) -> None:
    result.queued = time.perf_counter()
    try:
        await _read_stream(session, url, body, result)
    finally:
        if math.isnan(result.start):  # never written (e.g. no connection): keep a finite start
            result.start = result.queued


async def _read_stream(session: aiohttp.ClientSession, url: str, body: bytes, result: RequestResult) -> None:
    async with session.post(url, data=body, headers=_JSON, trace_request_ctx={"result": result}) as resp:
        if resp.status != 200:
            text = (await resp.text(errors="replace"))[:200]
            raise StreamError(f"HTTP {resp.status}: {text}")
        done = False
        pending = b""
        read = resp.content.readany
        while data := await read():
            now = time.perf_counter()
            if pending:
                data = pending + data
            if b"\r" in data:
                data = data.replace(b"\r\n", b"\n")
            *events, pending = data.split(b"\n\n")  # usually one whole event per read
            for raw in events:
                done = _handle_event(raw, now, result) or done
        result.end = time.perf_counter()
        if pending.strip():
            done = _handle_event(pending, result.end, result) or done
    if not done:
        raise StreamError("truncated stream: ended without data: [DONE]")
    if result.output_len == 0:
        result.output_len = len(result.token_times)
    if result.output_len == 0 or not result.token_times:
        raise StreamError("no output tokens")


async def send(session: aiohttp.ClientSession, cfg: ClientConfig, prompt: Prompt) -> RequestResult:
    """One request; every failure ends up in ``result.error``."""
    result = RequestResult(input_len=prompt.input_len)
    try:
        body = json.dumps(_payload(cfg, prompt)).encode()
        # one timeout per request here instead of aiohttp's, which wraps every read of every
        # streamed chunk in a timer context
        await asyncio.wait_for(_stream(session, cfg.base_url.rstrip("/") + cfg.endpoint, body, result),
                               cfg.request_timeout)
        result.success = True
    except asyncio.CancelledError:
        raise
    except asyncio.TimeoutError:
        result.error = f"timeout after {cfg.request_timeout:g} s"
    except Exception as exc:  # noqa: BLE001 - a request's failure is data, not a crash
        result.error = str(exc) if isinstance(exc, StreamError) else f"{type(exc).__name__}: {exc}"
    if not result.success:
        result.output_len = 0
    return result


def open_session(cfg: ClientConfig, trace_configs: list[aiohttp.TraceConfig] | None = None) -> aiohttp.ClientSession:
    """A session for ``send``: pooled keep-alive connections, the timing trace, no cookies."""
    connector = aiohttp.TCPConnector(limit=cfg.max_concurrency + 8, limit_per_host=0, ttl_dns_cache=None)
    headers = {}
    if os.environ.get("OPENAI_API_KEY"):
        headers["Authorization"] = f"Bearer {os.environ['OPENAI_API_KEY']}"
    return aiohttp.ClientSession(
        connector=connector,
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=None),  # ``send`` times each request as a whole
        read_bufsize=2**16,
        cookie_jar=aiohttp.DummyCookieJar(),
        trace_configs=[timing_trace(), *(trace_configs or [])],
    )


async def run_requests(session: aiohttp.ClientSession, cfg: ClientConfig, prompts: list[Prompt]) -> list[RequestResult]:
    """Send ``prompts`` at most ``max_concurrency`` at a time, at Poisson times if the rate is finite."""
    sem = asyncio.Semaphore(cfg.max_concurrency)

    async def one(prompt: Prompt) -> RequestResult:
        try:
            return await send(session, cfg, prompt)
        finally:
            sem.release()

    rng = random.Random(cfg.seed)
    tasks = []
    next_at = time.perf_counter()
    for prompt in prompts:
        if not math.isinf(cfg.request_rate):
            delay = next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            next_at += rng.expovariate(cfg.request_rate)
        await sem.acquire()
        tasks.append(asyncio.create_task(one(prompt)))
        # One launch per loop turn: launched together, a burst of thousands would run back to
        # back in one turn and no arriving token would be read (and timestamped) until the
        # last request was sent; interleaved, reads wait for at most one request's send.
        await asyncio.sleep(0)
    return list(await asyncio.gather(*tasks))


async def benchmark(
    cfg: ClientConfig, prompts: list[Prompt], warmups: list[Prompt]
) -> tuple[list[RequestResult], float, float]:
    """Run warm-ups (discarded), then ``prompts``; return (results, start, duration)."""
    async with open_session(cfg) as session:
        if warmups:
            await run_requests(session, cfg, warmups)
        start = time.perf_counter()
        results = await run_requests(session, cfg, prompts)
        return results, start, time.perf_counter() - start


async def first_model(base_url: str, timeout: float = 30.0) -> str:
    """The first model id the server lists at ``/v1/models``."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        async with session.get(base_url.rstrip("/") + "/v1/models") as resp:
            resp.raise_for_status()
            return str((await resp.json(content_type=None))["data"][0]["id"])
