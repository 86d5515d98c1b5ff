"""The load generator's HTTP/1.1 client and kernel receive stamps, against raw TCP servers
that send scripted bytes, split at every possible point."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable

import pytest

from ixhpc.bench import http, rxstamp

needs_stamps = pytest.mark.skipif(not rxstamp.SUPPORTED, reason="kernel receive stamps: Linux x86_64/aarch64")
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    return head + await reader.readexactly(length)


def _closing(script: Script) -> Script:
    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await script(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return run


async def _with_server(script: Script, body: Callable[[http.Client], Awaitable[None]]) -> None:
    server = await asyncio.start_server(_closing(script), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = http.Client(f"http://127.0.0.1:{port}/prefix", {"X-Test": "1"})
    try:
        await body(client)
    finally:
        client.close()
        server.close()
        await asyncio.sleep(0.01)  # the scripts see the hang-up and close their side


def _replying(*parts: bytes, then_close: bool = False, requests: int = 1) -> Script:
    """A server that answers each request with ``parts``, written (and flushed) one by one."""
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(requests):
            await _read_request(reader)
            for part in parts:
                writer.write(part)
                await writer.drain()
                await asyncio.sleep(0.002)  # separate packets, separate reads
        if not then_close:
            await reader.read()  # until the client hangs up

    return script


def _collect() -> tuple[list[bytes], http.BodySink]:
    got: list[bytes] = []

    def sink(data: bytes, arrived: float, read: float) -> None:
        assert arrived <= read
        got.append(data)

    return got, sink


CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n"
BODY = b"data: one\n\ndata: two\n\n"
CHUNKED_BODY = b"a;ext=1\r\ndata: one\n\r\n" + b"b\r\n\ndata: two\n\r\n" + b"1\r\n\n\r\n" + b"0\r\nX-Trailer: t\r\n\r\n"


@pytest.mark.parametrize("split", range(1, len(CHUNKED + CHUNKED_BODY)))
def test_chunked_body_survives_every_split(split: int) -> None:
    raw = CHUNKED + CHUNKED_BODY

    async def body(client: http.Client) -> None:
        got, sink = _collect()
        resp = await client.request("POST", "/v1/x", b"{}", sink)
        assert resp.status == 200 and b"".join(got) == BODY
        assert resp.headers["content-type"] == "text/event-stream"

    asyncio.run(_with_server(_replying(raw[:split], raw[split:]), body))


def test_request_line_headers_and_keep_alive_reuse() -> None:
    seen: list[bytes] = []
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while not reader.at_eof():
            seen.append(await _read_request(reader))
            writer.write(reply)
            await writer.drain()

    async def body(client: http.Client) -> None:
        for _ in range(3):
            resp = await client.request("POST", "/v1/completions", b'{"a":1}')
            assert (resp.status, resp.body) == (200, b"ok")

    asyncio.run(_with_server(script, body))
    assert len(seen) == 3  # one connection carried all three: the server loop saw them in turn
    head = seen[0].decode()
    assert head.startswith("POST /prefix/v1/completions HTTP/1.1\r\n")
    assert "\r\nX-Test: 1\r\n" in head and "\r\nContent-Length: 7\r\n" in head and head.endswith('{"a":1}')


def test_content_length_until_close_interim_and_error_bodies() -> None:
    async def body(client: http.Client) -> None:
        got, sink = _collect()
        resp = await client.request("GET", "/", sink=sink)
        assert resp.status == 200 and b"".join(got) == b"streamed until the end"

    asyncio.run(_with_server(_replying(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nstreamed ",
                                       b"until the end", then_close=True), body))

    async def error(client: http.Client) -> None:
        got, sink = _collect()
        resp = await client.request("POST", "/", b"{}", sink)
        assert resp.status == 500 and resp.reason == "Internal Server Error"
        assert resp.body == b"engine exploded" and got == []  # error bodies are kept, not streamed

    asyncio.run(_with_server(_replying(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 15\r\n\r\n",
                                       b"engine exploded"), error))


@pytest.mark.parametrize("reply, message", [
    (b"SSH-2.0-OpenSSH\r\n\r\n", "malformed status line"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed response header"),
    (CHUNKED + b"zz\r\n", "malformed chunk size"),
    (CHUNKED + b"-5\r\n", "malformed chunk size"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
    (CHUNKED + b"2\r\nabc\r\n", "chunk data longer than its size"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "bad Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab", "more than its Content-Length"),
    (CHUNKED + b"5\r\nab", "connection closed by the server in the body"),
    (b"HTTP/1.1 200 OK\r\nContent-Le", "before a complete response head"),
])
def test_broken_replies_raise_one_clear_error(reply: bytes, message: str) -> None:
    async def body(client: http.Client) -> None:
        with pytest.raises(http.HttpError, match=message):
            await client.request("POST", "/", b"{}", _collect()[1])
        assert client._idle == []  # a broken connection is never reused

    asyncio.run(_with_server(_replying(reply, then_close=True), body))


def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    accepted = 0

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        await _read_request(reader)
        writer.write(reply)
        await writer.drain()  # then close (``_closing``): keep-alive promised, then broken

    async def body(client: http.Client) -> None:
        assert (await client.request("GET", "/")).body == b"ok"
        await asyncio.sleep(0.05)  # the close reaches the idle connection
        assert (await client.request("GET", "/")).body == b"ok"

    asyncio.run(_with_server(script, body))
    assert accepted == 2


def test_a_sink_error_fails_the_request_and_drops_the_connection() -> None:
    def sink(data: bytes, arrived: float, read: float) -> None:
        raise ValueError("bad event")

    async def body(client: http.Client) -> None:
        with pytest.raises(ValueError, match="bad event"):
            await client.request("POST", "/", b"{}", sink)
        assert client._idle == []

    asyncio.run(_with_server(_replying(CHUNKED, CHUNKED_BODY), body))


@needs_stamps
def test_kernel_stamp_is_when_the_bytes_came_not_when_they_were_read() -> None:
    """Causality with a wide margin, not speed: bytes sent, then read 0.2 s later."""
    listener = socket.create_server(("127.0.0.1", 0))
    with listener, socket.create_connection(listener.getsockname()) as sender:
        receiver, _ = listener.accept()
        with receiver:
            receiver.setsockopt(socket.SOL_SOCKET, rxstamp.SO_TIMESTAMPNS, 1)
            stamp = None
            for _ in range(20):  # the kernel turns stamping on a moment after the first ask
                before = time.perf_counter()
                sender.sendall(b"token")
                after = time.perf_counter()
                time.sleep(0.2)
                stamp = rxstamp.arrival(receiver)
                assert receiver.recv(100) == b"token"  # the peek left the bytes in place
                if stamp is not None:
                    break
            assert stamp is not None, "no receive stamp on loopback"
            assert before - 0.01 <= stamp <= after + 0.01
            assert rxstamp.arrival(receiver) is None  # nothing unread


@needs_stamps
def test_late_reads_keep_the_arrival_time() -> None:
    """The client's loop is blocked while a body part arrives; the sink still gets its arrival."""
    stamps: list[tuple[float, float]] = []
    sent: list[float] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(CHUNKED)
        await writer.drain()
        await asyncio.sleep(0.1)
        sent.append(time.perf_counter())
        writer.write(b"5\r\nhello\r\n0\r\n\r\n")
        await writer.drain()
        await reader.read()

    def sink(data: bytes, arrived: float, read: float) -> None:
        stamps.append((arrived, read))

    def run_server() -> None:
        loop = asyncio.new_event_loop()
        server = loop.run_until_complete(asyncio.start_server(_closing(script), "127.0.0.1", 0))
        ports.append(server.sockets[0].getsockname()[1])
        loop.run_until_complete(asyncio.sleep(1.5))
        server.close()
        loop.close()

    ports: list[int] = []
    thread = threading.Thread(target=run_server, daemon=True)
    thread.start()
    while not ports:
        time.sleep(0.01)

    async def body() -> None:
        client = http.Client(f"http://127.0.0.1:{ports[0]}")
        request = asyncio.ensure_future(client.request("POST", "/", b"{}", sink))
        await asyncio.sleep(0.05)  # the head has been read; the body comes at ~0.1 s
        time.sleep(0.5)  # the loop is stuck: the body waits unread in the socket
        await request
        client.close()

    asyncio.run(body())
    thread.join(5)
    (arrived, read), = stamps
    assert read - arrived > 0.2 and abs(arrived - sent[0]) < 0.1


@needs_stamps
def test_later_chunks_of_one_late_read_keep_kernel_stamps() -> None:
    """Two bursts of three chunks, 50 ms apart, arrive while the client's loop is blocked, so
    each burst is one read. Every chunk of a read, the later ones too, takes a kernel receive
    stamp (the read's last packet's, handed over with the bytes; the first packet's, peeked
    once reads hold several chunks), not the read's time. Loopback coalesces queued packets and
    the merged packet keeps the newest stamp, so a stamp is bounded by the burst, not exact."""
    sent: list[float] = []
    stamps: list[tuple[float, float]] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(CHUNKED)
        await writer.drain()
        for burst in range(2):
            await asyncio.sleep(0.1 if burst == 0 else 0.6)
            for k in range(3):
                sent.append(time.perf_counter())
                writer.write(f"5\r\nchk{burst}{k}\r\n".encode())
                await writer.drain()
                await asyncio.sleep(0.05)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await reader.read()

    def sink(data: bytes, arrived: float, read: float) -> None:
        stamps.append((arrived, read))

    ports: list[int] = []

    def run_server() -> None:
        loop = asyncio.new_event_loop()
        server = loop.run_until_complete(asyncio.start_server(_closing(script), "127.0.0.1", 0))
        ports.append(server.sockets[0].getsockname()[1])
        loop.run_until_complete(asyncio.sleep(2.5))
        server.close()
        loop.close()

    thread = threading.Thread(target=run_server, daemon=True)
    thread.start()
    while not ports:
        time.sleep(0.01)

    async def body() -> None:
        client = http.Client(f"http://127.0.0.1:{ports[0]}")
        request = asyncio.ensure_future(client.request("POST", "/", b"{}", sink))
        await asyncio.sleep(0.05)  # the head has been read; the first burst comes at ~0.1 s
        time.sleep(0.4)  # stuck through the first burst
        await asyncio.sleep(0.1)  # the first burst is read
        time.sleep(0.6)  # stuck through the second
        await request
        client.close()

    asyncio.run(body())
    thread.join(5)
    assert len(stamps) == 6 and len(sent) == 6, (stamps, sent)
    for (arrived, read), at in zip(stamps, sent):
        assert arrived <= read - 0.1, (stamps, sent)  # a kernel stamp, not the late read's time
        assert at - 0.01 <= arrived <= at + 0.2, (stamps, sent)  # within its burst (+ the last chunk)
    assert [a for a, _ in stamps] == sorted(a for a, _ in stamps)
