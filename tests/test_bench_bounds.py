"""Issue 13, item 3 (load generator and simulated engine): whatever a server sends, one request
costs bounded memory and time and fails as data, never as a crash; the simulated engine refuses
non-finite and absurd numbers with one line. Hostile servers are asyncio servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import math
import time
import tracemalloc
from collections.abc import Awaitable, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ixhpc.bench import __main__ as bench_main
from ixhpc.bench import client, http
from ixhpc.bench.dataset import Prompt
from ixhpc.sim import __main__ as sim_main
from ixhpc.sim import server

pytestmark = pytest.mark.timeout(120)

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
TOKEN = b'data: {"id":"r","choices":[{"text":" tok"}]}\n\n'
DONE = b"data: [DONE]\n\n"


async def _read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    await reader.readexactly(length)


class _Server:
    """Runs ``script`` per connection; records whether the client cut it off midway."""

    def __init__(self, script: Script) -> None:
        self.script, self.cut_off = script, False

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _read_request(reader)
            await self.script(reader, writer)
        except ConnectionError:
            self.cut_off = True
        except (asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


def _send(script: Script, output_len: int = 8, **cfg: float) -> tuple[client.RequestResult, _Server, float]:
    """One request through ``client.send`` to a server running ``script``; (result, server, seconds)."""
    srv = _Server(script)

    async def run() -> tuple[client.RequestResult, float]:
        listening = await asyncio.start_server(srv.handle, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{listening.sockets[0].getsockname()[1]}"
        config = client.ClientConfig(base_url=url, model="m", request_timeout=60.0, **cfg)  # type: ignore[arg-type]
        try:
            with client.open_session(config) as session:
                began = time.perf_counter()
                result = await client.send(session, config, Prompt("p", 1, output_len))
                return result, time.perf_counter() - began
        finally:
            listening.close()
            await asyncio.sleep(0.05)  # the script sees the hang-up

    result, took = asyncio.run(run())
    return result, srv, took


async def _write(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


# -- memory per request: token stamps --------------------------------------------------------

def test_more_tokens_than_max_tokens_fail_the_request() -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _write(writer, SSE_HEAD)
        for _ in range(100_000):  # ignores max_tokens; bounded so a broken client ends too
            await _write(writer, TOKEN * 50)

    result, srv, took = _send(endless, output_len=5)
    assert not result.success and result.output_len == 0
    assert result.error == f"the server sent more than {5 + client.STAMP_SLACK} tokens (max_tokens + 16)"
    assert len(result.token_times) == 5 + client.STAMP_SLACK
    assert srv.cut_off and took < 10


def test_a_usage_count_beyond_max_tokens_fails_the_request() -> None:
    async def lying(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        usage = json.dumps({"choices": [], "usage": {"completion_tokens": 10**400}}).encode()
        await _write(writer, SSE_HEAD + TOKEN + b"data: " + usage + b"\n\n" + DONE)

    result, _, _ = _send(lying)
    assert not result.success and result.error.startswith("usage.completion_tokens out of range: 1000")


def test_max_tokens_plus_slack_still_succeeds() -> None:
    async def generous(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _write(writer, SSE_HEAD + TOKEN * (3 + client.STAMP_SLACK) + DONE)

    result, _, _ = _send(generous, output_len=3)
    assert result.success and result.output_len == 3 + client.STAMP_SLACK


# -- long SSE lines: bounded, and read in linear time ----------------------------------------

def test_a_line_longer_than_the_limit_fails_and_drops_the_connection() -> None:
    async def long_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _write(writer, SSE_HEAD + b"data: ")
        piece = b"x" * 65536
        for _ in range(1024):  # 64 MiB unless the client hangs up first
            await _write(writer, piece)

    result, srv, took = _send(long_line, max_line_bytes=1 << 20)
    assert not result.success and result.error == "SSE line longer than 1048576 bytes"
    assert srv.cut_off and took < 10


def test_one_long_line_is_read_in_linear_time() -> None:
    """32 MiB in 4 KiB reads: joining the line at every read (the old way) copies ~128 GB."""
    size = 32 << 20
    event = b'data: {"choices":[{"text":"' + b"a" * size + b'"}]}\n\n'
    result = client.RequestResult(input_len=1)
    events = client._EventStream(result, max_stamps=1, max_line=64 << 20)
    began = time.perf_counter()
    for pos in range(0, len(event), 4096):
        events(event[pos:pos + 4096], 1.0, 1.0)
    events(DONE, 2.0, 2.0)
    assert time.perf_counter() - began < 10
    assert events.done and list(result.token_times) == [1.0] and not events.pending


def test_a_long_line_within_the_limit_succeeds_end_to_end() -> None:
    line = b'data: {"choices":[{"text":"' + b"b" * (8 << 20) + b'"}]}\r\n\r\n'

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _write(writer, SSE_HEAD + line + DONE)

    result, _, took = _send(big, max_line_bytes=16 << 20)
    assert result.success and len(result.token_times) == 1 and took < 10


@pytest.mark.parametrize("ending", [b"\n\n", b"\r\n\r\n", b"\n\r\n", b"\r\n\n"])
def test_an_event_end_split_across_reads_is_found(ending: bytes) -> None:
    event = TOKEN[:-2] + ending
    for cut in range(len(event) - len(ending) - 1, len(event)):
        result = client.RequestResult(input_len=1)
        events = client._EventStream(result)
        events(event[:cut], 1.0, 1.0)
        events(event[cut:], 2.0, 2.0)
        assert len(result.token_times) == 1 and not events.pending, (ending, cut)


# -- stalled streams ---------------------------------------------------------------------------

async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(30)


async def _one_token_then_silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _write(writer, SSE_HEAD + TOKEN)
    await asyncio.sleep(30)


@pytest.mark.parametrize("script", [_silent, _one_token_then_silent], ids=["before-head", "mid-stream"])
def test_a_stalled_stream_fails_after_the_stall_timeout(script: Script) -> None:
    result, _, took = _send(script, stall_timeout=0.3)
    assert not result.success
    assert result.error == "stalled: nothing received from the server for 0.3 s"
    assert 0.3 <= took < 3


def test_a_slow_but_steady_stream_is_not_a_stall() -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _write(writer, SSE_HEAD)
        for _ in range(8):
            await asyncio.sleep(0.1)
            await _write(writer, TOKEN)
        await _write(writer, DONE)

    result, _, took = _send(trickle, stall_timeout=0.35)
    assert result.success and len(result.token_times) == 8 and took > 0.8


def test_a_finished_exchange_leaves_no_stall_timer() -> None:
    async def run() -> None:
        async def ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await _read_request(reader)
            await _write(writer, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await asyncio.sleep(1)

        listening = await asyncio.start_server(ok, "127.0.0.1", 0)
        session = http.Client(f"http://127.0.0.1:{listening.sockets[0].getsockname()[1]}", stall_timeout=100)
        try:
            resp = await session.request("GET", "/")
            assert resp.body == b"ok" and session._idle and session._idle[0]._stall_timer is None
        finally:
            session.close()
            listening.close()

    asyncio.run(run())


def test_the_cli_takes_the_stall_timeout_and_line_limit() -> None:
    base = ["--base-url", "http://127.0.0.1:9", "--isl", "1", "--osl", "1", "--max-concurrency", "1"]
    parser = bench_main.build_parser()
    args = parser.parse_args(base)
    assert args.stall_timeout == 300.0 and args.max_line_bytes == 1 << 20
    args = parser.parse_args([*base, "--stall-timeout", "inf", "--max-line-bytes", "4096"])
    bench_main._check(parser, args)
    assert math.isinf(args.stall_timeout)
    for bad in (["--stall-timeout", "0"], ["--stall-timeout", "nan"], ["--max-line-bytes", "1"]):
        with pytest.raises(SystemExit) as exit_:
            bench_main._check(parser, parser.parse_args([*base, *bad]))
        assert exit_.value.code == 2


# -- the simulated engine's numbers ----------------------------------------------------------

@pytest.mark.parametrize("option,value", [
    ("--model-params-b", "inf"), ("--model-params-b", "nan"), ("--model-params-b", "1e308"),
    ("--active-params-b", "nan"), ("--kv-bytes-per-token", "inf"), ("--kv-bytes-per-token", "1e-300"),
    ("--tp", str(10**30)), ("--ep", "0"), ("--max-batch", str(10**400)), ("--max-prefill-tokens", "0"),
    ("--time-scale", "inf"), ("--time-scale", "0"),
])
def test_the_simulated_engine_refuses_absurd_numbers(
        option: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert sim_main.main(["serve", "--port", "0", option, value]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ixhpc.sim: error: {option} must be ") and err.count("\n") == 1, err


def test_the_simulated_engine_refuses_absurd_max_tokens() -> None:
    from aiohttp import web

    from ixhpc.sim import model

    async def run() -> list[int]:
        runner = web.AppRunner(server.make_app(server.Engine(model.SimConfig(), "both", "t", 0.01), "m"))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        session = http.Client(f"http://127.0.0.1:{port}")
        statuses = []
        try:
            for max_tokens in (10**30, server.MAX_SEQUENCE_TOKENS + 1, 0):
                body = json.dumps({"model": "m", "prompt": "a", "max_tokens": max_tokens}).encode()
                statuses.append((await session.request("POST", "/v1/completions", body)).status)
        finally:
            session.close()
            await runner.cleanup()
        return statuses

    assert asyncio.run(run()) == [400, 400, 400]


# -- fuzz: the stream parser under hostile bytes -----------------------------------------------

FUZZ_MAX_LINE = 4096
FUZZ_MAX_STAMPS = 40
HEADS = [
    b"", SSE_HEAD, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 300\r\n\r\n", b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 500 Oops\r\nContent-Length: 5000000\r\n\r\n",
]
FRAGMENTS = [
    b"HTTP/1.1 200 OK\r\n", b"HTTP/1.0 204 x\r\n", b"Transfer-Encoding: chunked\r\n", b"Content-Length: 7\r\n",
    b"Content-Length: -1\r\n", b"Content-Length: 99999999999999999999999\r\n", b"Connection: close\r\n",
    b"X\r\n", b"\r\n", b"\n", b"\r", b"\r\n\r\n", b"\n\n", b"data: ", b"data:", b": ping", b"[DONE]",
    b'{"choices":[{"text":"a"}]}', b'{"choices":[{"delta":{"content":"b"}}]}', b'{"choices":[]}',
    b'{"usage":{"completion_tokens":5}}', b'{"usage":{"completion_tokens":-1}}', b'{"error":"x"}',
    b'{"choices":[{"text":null}]}', b"[1,2]", b"1e999999", b"\xff\xfe\x00", b"10\r\n", b"0\r\n\r\n",
    b"ffffffffffffffffffffffff\r\n", b"5;ext=1\r\n", b"-5\r\n", TOKEN, DONE,
]
GOOD = [b'{"choices":[{"text":"a"}]}', b'{"choices":[{"delta":{"reasoning_content":"r"}}]}',
        b'{"choices":[],"usage":{"completion_tokens":3}}', b"[DONE]"]
PAYLOADS = GOOD * 4 + [b"{", b'"x"', b"", b'{"usage":{"completion_tokens":1000}}']
sse = st.builds(lambda prefix, payload, end, n: (prefix + payload + end) * n,
                st.sampled_from([b"data: "] * 4 + [b"data:", b": ", b"event: x\ndata: "]),
                st.sampled_from(PAYLOADS),
                st.sampled_from([b"\n\n"] * 4 + [b"\r\n\r\n", b"\n\r\n", b"\n", b""]), st.integers(1, 30))
chunk = sse.map(lambda body: b"%x\r\n%s\r\n" % (len(body), body))  # for chunked heads
piece = st.one_of(
    st.sampled_from(FRAGMENTS),
    st.binary(max_size=40),
    st.builds(lambda b, n: b * n, st.sampled_from([b"x", b"data: ", b"\r", b"a\n", b"f"]),
              st.integers(1, 80_000)),
    sse, sse, chunk,
)


def _cut(body: bytes, cuts: list[int]) -> list[bytes]:
    """``body`` split into reads at ``cuts`` (taken modulo its length)."""
    at = sorted({c % (len(body) + 1) for c in cuts} | {0, len(body)})
    return [body[a:b] for a, b in zip(at, at[1:])] or [body]


def _plausible(events: st.SearchStrategy[bytes]) -> st.SearchStrategy[list[bytes]]:
    """A stream of mostly well-formed events split at random points: reaches deep states."""
    body = st.lists(events, min_size=1, max_size=20).map(b"".join)
    return st.builds(_cut, body, st.lists(st.integers(0, 1 << 20), max_size=20))


CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
exchanges = st.one_of(
    st.tuples(st.sampled_from(HEADS),
              st.lists(st.lists(piece, min_size=1, max_size=6).map(b"".join), min_size=1, max_size=30)),
    st.tuples(st.just(SSE_HEAD), _plausible(sse)),
    st.tuples(st.just(CHUNKED_HEAD), _plausible(chunk).map(lambda reads: [*reads, b"0\r\n\r\n"])),
)


class _Transport:
    aborted = False

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.aborted = True

    def write(self, data: bytes) -> None:
        pass


async def _parse(head: bytes, chunks: list[bytes]) -> None:
    """Feed ``head + chunks`` to a connection as asyncio would (reads into the shared buffer),
    checking every bound after each read; then the server closes the connection."""
    conn = http._Connection(memoryview(bytearray(http.READ_BUFFER_SIZE)), receive_stamps=False)
    transport = _Transport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    result = client.RequestResult(input_len=1)
    events = client._EventStream(result, FUZZ_MAX_STAMPS, FUZZ_MAX_LINE)
    done = conn.send(b"POST / HTTP/1.1\r\n\r\n", events)
    for data in [head + chunks[0], *chunks[1:]]:
        for pos in range(0, len(data), http.READ_BUFFER_SIZE):
            if transport.aborted:
                break
            part = data[pos:pos + http.READ_BUFFER_SIZE]
            conn.get_buffer(-1)[:len(part)] = part
            conn.buffer_updated(len(part))
            assert len(conn._head) <= http.MAX_HEAD and len(conn._pending) <= http.MAX_HEAD
            assert len(conn.response.body) <= http.MAX_COLLECT
            assert len(events.pending) <= FUZZ_MAX_LINE and len(result.token_times) <= FUZZ_MAX_STAMPS
    if not transport.aborted:
        conn.connection_lost(None)
    if done.exception() is None and conn.response.status == 200:
        try:
            events.close(time.perf_counter())
        except client.StreamError:
            pass
    elif done.exception() is not None:
        assert isinstance(done.exception(), (http.HttpError, client.StreamError)), repr(done.exception())


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(exchange=exchanges)
def test_fuzz_the_stream_parser(exchange: tuple[bytes, list[bytes]]) -> None:
    """Hostile bytes end an exchange with the client's own errors only, every buffer stays under
    its limit, and parsing stays within a memory bound (a few reads' worth over the limits)."""
    loop = asyncio.new_event_loop()
    tracemalloc.start()
    try:
        loop.run_until_complete(_parse(*exchange))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        loop.close()
    assert peak < 6 * http.READ_BUFFER_SIZE + 2 * http.MAX_COLLECT + 4 * http.MAX_HEAD
