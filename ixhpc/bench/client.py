"""Streaming OpenAI-compatible client: sends the requests, timestamps every streamed token.

All times are ``time.perf_counter()`` seconds. A request's ``start``, which TTFT and E2EL count
from, is taken just before its bytes are written to the socket. InferenceX's
``benchmark_serving`` starts its timer before ``session.post``, so its TTFT also holds the
client's own work before the write: opening a connection (none once warm-ups have filled the
pool), building the request and waiting for other requests launched in the same event-loop
turn. That is the client's time, not the server's; ``queued`` keeps the InferenceX-style
start (when the client created the request: the result's ``created_time``), so an
InferenceX-style TTFT can be shown beside the true one.

A token's time is when its bytes reached this host: the kernel's receive stamp of the packet
that completed its SSE event (``ixhpc.bench.rxstamp``), so a client whose event loop is busy
still times the server, not itself. A read holding several events happens only when the
client fell behind: its first event takes the stamp of the read's first packet, and the
events of its later HTTP chunks (engines send an event per chunk) the stamp of its last packet,
which the kernel hands over with the bytes on plain TCP (``http``). Both are the kernel's, far
closer than the read's time, and bounds rather than exact: Linux merges packets queued unread
and the merged one keeps the newest stamp. The time the bytes were read stands in where there
is no stamp (``token_clock="read"``, TLS, an OS without them) and for further events inside
one chunk. Any failure of one request (HTTP error, reset connection, truncated or malformed
stream, error event, timeout) becomes that request's error text; it never stops the benchmark.

A request's memory is bounded whatever the server sends: at most ``max_tokens`` +
``STAMP_SLACK`` token times, SSE events (lines) of at most ``max_line_bytes``, each read in
linear time; a stream that sends nothing for ``stall_timeout`` seconds fails."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ixhpc.bench import http
from ixhpc.bench.dataset import Prompt


@dataclass(eq=False)
class RequestResult:
    input_len: int
    queued: float = math.nan  # perf_counter when the client created the request (created_time)
    start: float = math.nan  # when its bytes went to the socket (``queued`` if they never did)
    end: float = math.nan  # its last token's time
    token_times: array[float] = field(default_factory=lambda: array("d"))  # one per content chunk
    output_len: int = 0  # usage.completion_tokens when the server reports it, else chunks
    success: bool = False
    error: str = ""
    response_id: str = ""
    read_lag: float = 0.0  # longest wait of a read after its first byte arrived: a busy client
    # validity evidence (ixhpc.bench.validity), O(1) per event
    max_tokens: int = 0  # what the request asked for
    usage_reported: bool = False  # the server sent usage.completion_tokens
    prompt_tokens: int = -1  # usage.prompt_tokens, -1 = not reported
    multi_word_chunks: int = 0  # content chunks holding several words: several tokens
    text_chars: int = 0  # characters over all content chunks

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
    burstiness: float = 1.0  # gamma shape of the gaps between arrivals: 1 = Poisson, < 1 burstier
    request_timeout: float = 6 * 3600.0
    seed: int = 0
    stall_timeout: float = 300.0  # seconds a request may receive nothing (inf: no limit)
    max_line_bytes: int = 1 << 20  # longest SSE event (line) accepted
    token_clock: str = "kernel_receive"  # one of TOKEN_CLOCKS; stated in the result's config
    temperature: float = 0.0  # greedy, as InferenceX's and srt-slurm's clients send it


class StreamError(Exception):
    """The server's stream broke the protocol; the message says how."""


TIMER_START = "request_written"  # what TTFT/E2EL count from; stated in the result's config
TOKEN_CLOCKS = ("kernel_receive", "read")  # token times: kernel receive stamps, or read times
STAMP_SLACK = 16  # token events accepted beyond max_tokens before a request fails
_UNBOUNDED = 1 << 62


def _payload(cfg: ClientConfig, prompt: Prompt) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": cfg.model,
        "max_tokens": prompt.output_len,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": cfg.ignore_eos,
        "temperature": cfg.temperature,
    }
    if cfg.endpoint.endswith("/chat/completions"):
        text = prompt.prompt if isinstance(prompt.prompt, str) else " ".join(map(str, prompt.prompt))
        body["messages"] = [{"role": "user", "content": text}]
    else:
        body["prompt"] = prompt.prompt
    return body


_DECODER = json.JSONDecoder()


def _handle_event(raw: bytes, now: float, result: RequestResult, max_stamps: int = _UNBOUNDED) -> bool:
    """Account one SSE event; return True at ``[DONE]``. More than ``max_stamps`` token events
    (or a usage count above it) fail the request: the server ignored ``max_tokens``.

    It runs once per streamed token, so it is one function: absent keys cost one dict lookup,
    and ``raw_decode`` of a str (about half ``json.loads``'s cost: no encoding sniffing; the end
    check keeps the full validation) parses the event (``benchmarks/bench_client.py``)."""
    raw = raw.strip()
    if raw[:5] != b"data:":
        if not raw or raw[:1] == b":":  # keep-alive comment
            return False
        raise StreamError(f"malformed SSE event: {raw[:80]!r}")
    data = raw[5:].lstrip()
    if data == b"[DONE]":
        return True
    try:
        text = data.decode()
        event, end = _DECODER.raw_decode(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        text, end, event = "", -1, None
    if end != len(text) or type(event) is not dict:
        raise StreamError(f"malformed SSE data: {data[:80]!r}")
    if "error" in event:
        error = event["error"]
        if error is not None and error is not False and error != "":  # "error": null is no error
            raise StreamError(f"server error event: {str(error)[:200]}")
    if not result.response_id:
        result.response_id = str(event.get("id", ""))
    choices = event.get("choices")
    if choices:
        choice = choices[0]
        chunk = choice.get("text")
        if chunk is None:
            delta = choice.get("delta") or {}
            chunk = delta.get("content") or delta.get("reasoning_content") or ""
        if chunk:
            times = result.token_times
            if len(times) >= max_stamps:
                raise StreamError(f"the server sent more than {max_stamps} tokens (max_tokens + {STAMP_SLACK})")
            times.append(now)
            chunk = str(chunk)
            result.text_chars += len(chunk)
            if " " in chunk.strip():  # a token holds one word at most: this chunk holds several tokens
                result.multi_word_chunks += 1
    if "usage" in event:
        _account_usage(event["usage"], result, max_stamps)
    return False


def _account_usage(usage: Any, result: RequestResult, max_stamps: int) -> None:
    if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
        count = usage["completion_tokens"]
        if not 0 <= count <= max_stamps:
            raise StreamError(f"usage.completion_tokens out of range: {str(count)[:40]}")
        result.output_len = count
        result.usage_reported = True
        prompt_tokens = usage.get("prompt_tokens")
        if type(prompt_tokens) is int and prompt_tokens >= 0:
            result.prompt_tokens = prompt_tokens


class _EventStream:
    """The body sink of one request: splits the SSE stream into events as bytes are read.

    An unfinished event waits in ``pending``, a bytearray that each read extends and whose new
    bytes alone are searched for the event's end: one long event costs linear time (joining
    and re-splitting it at every read cost quadratic time). Events longer than ``max_line``
    bytes and more than ``max_stamps`` token events fail the request."""

    __slots__ = ("result", "pending", "done", "max_stamps", "max_line")

    def __init__(self, result: RequestResult, max_stamps: int = _UNBOUNDED, max_line: int = 1 << 20) -> None:
        self.result, self.pending, self.done = result, bytearray(), False
        self.max_stamps, self.max_line = max_stamps, max_line

    def __call__(self, data: bytes, arrived: float, read: float) -> None:
        if read - arrived > self.result.read_lag:
            self.result.read_lag = read - arrived
        if self.pending:
            whole = self._extend(data)
            if whole is None:
                return
            data = whole
        elif (data.endswith(b"\n\n") and data.find(b"\n\n") == len(data) - 2 and b"\r" not in data
              and len(data) <= self.max_line):  # the usual read: one whole event
            self.done = _handle_event(data, arrived, self.result, self.max_stamps) or self.done
            return
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        *events, rest = data.split(b"\n\n")  # usually one whole event per read
        if rest:
            self._check_length(len(rest))
            self.pending = bytearray(rest)
        when = arrived
        for raw in events:
            if len(raw) > self.max_line:
                self._check_length(len(raw))
            # The first event completed by these bytes ends in their first packet, whose
            # arrival the kernel stamped (``arrived``: for a read's later HTTP chunks, the read's
            # last packet's stamp, ``http._Connection._deliver``). Events after it in the same
            # bytes arrived later, at times nobody recorded: they get the read's time.
            self.done = _handle_event(raw, when, self.result, self.max_stamps) or self.done
            when = read

    def _extend(self, data: bytes) -> bytes | None:
        """Add ``data`` to the unfinished event; all of it once an event ends in it, else None."""
        pending = self.pending
        start = max(len(pending) - 2, 0)  # an end may straddle the reads: \n|\r\n, \n\r|\n
        pending += data
        if pending.find(b"\n\n", start) < 0 and pending.find(b"\n\r\n", start) < 0:
            if len(pending) > self.max_line:
                self.pending = bytearray()  # the request fails: keep nothing of it
                self._check_length(len(pending))
            return None
        self.pending = bytearray()
        return bytes(pending)

    def _check_length(self, size: int) -> None:
        if size > self.max_line:
            raise StreamError(f"SSE line longer than {self.max_line} bytes")

    def close(self, now: float) -> None:
        if self.pending.strip():
            raw = bytes(self.pending).replace(b"\r\n", b"\n")
            self.done = _handle_event(raw, now, self.result, self.max_stamps) or self.done


def _stamp_start(result: RequestResult) -> Callable[[float], None]:
    def stamp(written: float) -> None:
        result.start = written
    return stamp


async def _stream(session: http.Client, path: str, body: bytes, result: RequestResult,
                  events: _EventStream) -> None:
    result.queued = time.perf_counter()
    try:
        resp = await session.request("POST", path, body, events, on_written=_stamp_start(result))
    finally:
        if math.isnan(result.start):  # never written (e.g. no connection): keep a finite start
            result.start = result.queued
    if resp.status != 200:
        raise StreamError(f"HTTP {resp.status}: {resp.body.decode(errors='replace')[:200]}")
    events.close(time.perf_counter())
    if not events.done:
        raise StreamError("truncated stream: ended without data: [DONE]")
    if result.output_len == 0:
        result.output_len = len(result.token_times)
    if result.output_len == 0 or not result.token_times:
        raise StreamError("no output tokens")
    result.end = result.token_times[-1]  # E2EL ends at the last token, as in benchmark_serving


def _describe(exc: Exception) -> str:
    if isinstance(exc, (StreamError, http.HttpError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def send(session: http.Client, cfg: ClientConfig, prompt: Prompt) -> RequestResult:
    """One request; every failure ends up in ``result.error``."""
    result = RequestResult(input_len=prompt.input_len, max_tokens=prompt.output_len)
    try:
        body = json.dumps(_payload(cfg, prompt)).encode()
        events = _EventStream(result, prompt.output_len + STAMP_SLACK, cfg.max_line_bytes)
        await asyncio.wait_for(_stream(session, cfg.endpoint, body, result, events), cfg.request_timeout)
        result.success = True
    except asyncio.CancelledError:
        raise
    except TimeoutError:
        result.error = f"timeout after {cfg.request_timeout:g} s"
    except Exception as exc:  # noqa: BLE001 - a request's failure is data, not a crash
        result.error = _describe(exc)
    if not result.success:
        result.output_len = 0
    return result


@contextlib.contextmanager
def open_session(cfg: ClientConfig) -> Iterator[http.Client]:
    """Pooled keep-alive connections to ``cfg.base_url`` for ``send``, closed on exit."""
    headers = {"Accept": "text/event-stream"}
    if os.environ.get("OPENAI_API_KEY"):
        headers["Authorization"] = f"Bearer {os.environ['OPENAI_API_KEY'].strip()}"
    session = http.Client(cfg.base_url, headers, receive_stamps=cfg.token_clock == "kernel_receive",
                          stall_timeout=cfg.stall_timeout)
    try:
        yield session
    finally:
        session.close()


async def run_requests(session: http.Client, cfg: ClientConfig, prompts: list[Prompt]) -> list[RequestResult]:
    """Send ``prompts`` at most ``max_concurrency`` at a time; with a finite rate, at arrival
    times whose gaps are gamma-distributed with shape ``burstiness`` and mean 1/rate, as vLLM's
    ``benchmark_serving --burstiness`` (1: a Poisson process)."""
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
            next_at += _gap(rng, cfg.request_rate, cfg.burstiness)
        await sem.acquire()
        tasks.append(asyncio.create_task(one(prompt)))
        # One launch per loop turn: launched together, a burst of thousands would run back to
        # back in one turn and no arriving token would be read (and timestamped) until the
        # last request was sent; interleaved, reads wait for at most one request's send.
        await asyncio.sleep(0)
    return list(await asyncio.gather(*tasks))


def _gap(rng: random.Random, rate: float, burstiness: float) -> float:
    """Seconds to the next arrival: mean 1/rate; exponential (Poisson arrivals) at burstiness 1."""
    if burstiness == 1.0:
        return rng.expovariate(rate)
    return rng.gammavariate(burstiness, 1.0 / (rate * burstiness))


async def benchmark(
    cfg: ClientConfig, prompts: list[Prompt], warmups: list[Prompt]
) -> tuple[list[RequestResult], float, float]:
    """Run warm-ups (discarded), then ``prompts``; return (results, start, duration)."""
    with open_session(cfg) as session:
        if warmups:
            await run_requests(session, cfg, warmups)
        start = time.perf_counter()
        results = await run_requests(session, cfg, prompts)
        return results, start, time.perf_counter() - start


async def first_model(base_url: str, timeout: float = 30.0) -> str:
    """The first model id the server lists at ``/v1/models``."""
    session = http.Client(base_url)
    try:
        resp = await asyncio.wait_for(session.request("GET", "/v1/models"), timeout)
    finally:
        session.close()
    if resp.status != 200:
        raise http.HttpError(f"GET /v1/models: HTTP {resp.status} {resp.reason}")
    return str(json.loads(resp.body)["data"][0]["id"])
