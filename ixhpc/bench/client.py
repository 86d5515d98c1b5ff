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
import gc
import json
import json.decoder
import math
import os
import random
import re
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
# raw_decode's C scanner without its whitespace-skipping wrapper: (object, end) or StopIteration
_SCAN: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]


def _handle_event(raw: bytes, now: float, result: RequestResult, max_stamps: int = _UNBOUNDED) -> bool:
    """Account one SSE event; return True at ``[DONE]``. More than ``max_stamps`` token events
    (or a usage count above it) fail the request: the server ignored ``max_tokens``.

    The JSON is scanned as a str (about half ``json.loads``'s cost: no encoding sniffing); the
    end check keeps the full validation (``benchmarks/bench_client.py``)."""
    raw = raw.strip()
    if raw[:5] != b"data:":
        if not raw or raw[:1] == b":":  # keep-alive comment
            return False
        raise StreamError(f"malformed SSE event: {raw[:80]!r}")
    data = raw[5:].lstrip()
    if data == b"[DONE]":
        return True
    _account_event(_parse(data), now, result, max_stamps)
    return False


def _parse(data: bytes) -> dict[str, Any]:
    """An SSE event's JSON object; ``data`` starts with no whitespace and ends with none."""
    try:
        text = data.decode()
        event, end = _SCAN(text, 0)
    except (StopIteration, json.JSONDecodeError, UnicodeDecodeError):
        text, end, event = "", -1, None
    if end != len(text) or type(event) is not dict:
        raise StreamError(f"malformed SSE data: {data[:80]!r}")
    return event


def _account_event(event: dict[str, Any], now: float, result: RequestResult, max_stamps: int) -> None:
    """One parsed event: an error event fails the request; a content chunk records a token
    time at ``now``; usage sets the output length. It runs once per streamed token, so it is
    one function, and an absent key costs one dict look-up."""
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
            if type(chunk) is not str:
                chunk = str(chunk)
            result.text_chars += len(chunk)
            if " " in chunk and " " in chunk.strip():  # a token holds one word at most: several tokens
                result.multi_word_chunks += 1
    if "usage" in event:
        _account_usage(event["usage"], result, max_stamps)


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


_STRING: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]
_TEMPLATE_TRIES = 3  # token events per request a template is learnt from, at most


class _Template:
    """A stream's token event minus its text, which the next events of the stream are matched
    against: an engine sends every token of a request as the same bytes but for the token's
    text (id, model, created, index, finish_reason: null...).

    An event that is ``head`` + one JSON string + ``tail`` parses, token for token, as the
    learnt one with that string as its text: the same accounting, without scanning the JSON
    again. ``learn`` proves where the text sits with a second parse; an event that does not
    match is parsed in full, as before. Only the single-event read takes this path."""

    __slots__ = ("head", "tail", "event", "holder", "key")

    def __init__(self, head: bytes, tail: bytes, event: dict[str, Any], holder: dict[str, Any], key: str) -> None:
        self.head, self.tail, self.event, self.holder, self.key = head, tail, event, holder, key

    def text(self, data: bytes) -> str | None:
        """The text of ``data`` when it is this template's event with another text, else None."""
        head, tail = len(self.head), len(self.tail)
        if len(data) <= head + tail or not (data.startswith(self.head) and data.endswith(self.tail)):
            return None
        try:  # the head ends before the text's opening quote: one whole string, then the tail
            middle = data[head:len(data) - tail].decode()
            text, end = _STRING(middle, 1)
        except ValueError:  # JSONDecodeError, UnicodeDecodeError
            return None
        return text if end == len(middle) and middle[0] == '"' else None

    @staticmethod
    def learn(data: bytes, event: dict[str, Any]) -> _Template | None:
        """The template of ``data`` (one whole ``data: {...}\\n\\n`` event, parsed as ``event``),
        or None: no text, or its place not proven."""
        path = _text_path(event)
        if path is None:
            return None
        *parents, key = path
        holder = _walk(event, parents)
        value = holder[key]
        json_text = data[6:-2].decode()
        for match in re.finditer(rf'"{key}"[ \t\n\r]*:[ \t\n\r]*"', json_text):
            start = match.end() - 1  # the text's opening quote, if this is the text
            try:
                found, end = _STRING(json_text, start + 1)
                if found != value:
                    continue
                # the proof: another string in the same place changes the text and nothing else
                probe_text = json_text[:start] + json.dumps(value + "\x01") + json_text[end:]
                probe, stop = _SCAN(probe_text, 0)
                probe_holder = _walk(probe, parents)
                if stop != len(probe_text) or probe_holder.get(key) != value + "\x01":
                    continue
                probe_holder[key] = value
            except (StopIteration, ValueError, LookupError, TypeError):
                continue
            if probe == event:
                head = b"data: " + json_text[:start].encode()
                tail = json_text[end:].encode() + b"\n\n"
                return _Template(head, tail, event, holder, key)
        return None


def _text_path(event: dict[str, Any]) -> tuple[Any, ...] | None:
    """Where ``_account_event`` reads a token event's text, when it is a non-empty str."""
    choices = event.get("choices")
    if not choices or type(choices) is not list or type(choices[0]) is not dict:
        return None
    choice = choices[0]
    if choice.get("text") is not None:
        path: tuple[Any, ...] = ("choices", 0, "text")
        value = choice["text"]
    else:
        delta = choice.get("delta")
        if type(delta) is not dict:
            return None
        key = "content" if delta.get("content") else "reasoning_content"
        path, value = ("choices", 0, "delta", key), delta.get(key)
    return path if type(value) is str and value else None


def _walk(obj: Any, keys: list[Any]) -> Any:
    for k in keys:
        obj = obj[k]
    return obj


class _EventStream:
    """The body sink of one request: splits the SSE stream into events as bytes are read.

    An unfinished event waits in ``pending``, a bytearray that each read extends and whose new
    bytes alone are searched for the event's end: one long event costs linear time (joining
    and re-splitting it at every read cost quadratic time). Events longer than ``max_line``
    bytes and more than ``max_stamps`` token events fail the request."""

    __slots__ = ("result", "pending", "done", "max_stamps", "max_line", "template", "tries")

    def __init__(self, result: RequestResult, max_stamps: int = _UNBOUNDED, max_line: int = 1 << 20) -> None:
        self.result, self.pending, self.done = result, bytearray(), False
        self.max_stamps, self.max_line = max_stamps, max_line
        self.template: _Template | None = None  # the last token event's, see _Template
        self.tries = _TEMPLATE_TRIES

    def __call__(self, data: bytes, arrived: float, read: float) -> None:
        result = self.result
        if read - arrived > result.read_lag:
            result.read_lag = read - arrived
        if self.pending:
            whole = self._extend(data)
            if whole is None:
                return
            data = whole
        elif len(data) <= self.max_line:
            # the usual read: one whole event holding a JSON object
            template = self.template
            if template is not None:
                text = template.text(data)
                if text is not None:  # the last token event's bytes with another text
                    template.holder[template.key] = text
                    _account_event(template.event, arrived, result, self.max_stamps)
                    return
            if (data.startswith(b"data: {") and data.endswith(b"}\n\n") and data.find(b"\n\n") == len(data) - 2
                    and b"\r" not in data):  # _handle_event's stripping would leave data[6:-2]
                event = _parse(data[6:-2])
                _account_event(event, arrived, result, self.max_stamps)
                if self.tries and _text_path(event) is not None:
                    self.tries -= 1
                    self.template = _Template.learn(data, event)
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
    except (TypeError, ValueError) as exc:
        result.error = _describe(exc)
        return result
    await post_stream(session, cfg.endpoint, body, result, cfg.request_timeout, cfg.max_line_bytes)
    if not result.success:
        result.output_len = 0
    return result


async def post_stream(session: http.Client, path: str, body: bytes, result: RequestResult,
                      timeout: float, max_line: int = 1 << 20) -> None:
    """POST ``body`` (a streaming request for ``result.max_tokens`` tokens) and account its SSE
    answer in ``result``, within ``timeout`` seconds; every failure ends up in ``result.error``."""
    try:
        events = _EventStream(result, result.max_tokens + STAMP_SLACK, max_line)
        # a timeout on this task, not wait_for's task per request (per-request cost is per-token
        # cost at short outputs)
        async with asyncio.timeout(timeout if math.isfinite(timeout) else None):
            await _stream(session, path, body, result, events)
        result.success = True
    except asyncio.CancelledError:
        raise
    except TimeoutError:
        result.error = f"timeout after {timeout:g} s"
    except Exception as exc:  # noqa: BLE001 - a request's failure is data, not a crash
        result.error = _describe(exc)


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


def freeze_heap() -> None:
    """Before the measured requests: collect, then move every object alive now (modules, the
    prompts, the warm connections) out of the garbage collector's sight, as InferenceX's
    ``benchmark_serving`` does before its run. The collector's full passes during the run then
    walk only the objects the run made, not the whole heap. Frozen objects are still freed as
    usual once unreferenced."""
    gc.collect()
    gc.freeze()


async def benchmark(
    cfg: ClientConfig, prompts: list[Prompt], warmups: list[Prompt]
) -> tuple[list[RequestResult], float, float]:
    """Run warm-ups (discarded), then ``prompts``; return (results, start, duration)."""
    with open_session(cfg) as session:
        if warmups:
            await run_requests(session, cfg, warmups)
        freeze_heap()
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
