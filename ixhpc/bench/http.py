"""A small HTTP/1.1 client for streamed responses, built on an asyncio BufferedProtocol.

Why not aiohttp's client: its bytes reach the caller through a parser, a stream buffer and a
task wake-up per read, and asyncio's plain Protocol path allocates 256 KiB per read. Measured
with ``benchmarks/bench_client.py`` at 512 streams, that was about 78 µs of client time per
streamed token against the simulated engine's 30 µs per written token, so tokens queued in the
client's sockets and its TTFT ran ~14 ms late. Here each read lands in one shared buffer and
goes to the caller's sink inside the event loop's own read callback, with two times: when the
read happened and when its first byte reached this host (the kernel's receive stamp,
``ixhpc.bench.rxstamp``), which a busy event loop cannot make late. On plain TCP with stamps
and asyncio's own loop (uvloop's native reads are faster still) a connection reads its socket
itself: one ``recvmsg_into`` gives the bytes and the stamp of the last packet read (asyncio's
transport still writes), one system call a read instead of a peek and a read. With the
per-token savings in ``client`` that took the client from about 44,000 to 52,000 output tokens
per CPU-second at 512 streams (``benchmarks/bench_client.py``). A read holding several HTTP
chunks gives its later chunks that last packet's stamp. Those connections sit on one epoll of
the client's (``_ReadHub``), which the loop watches as a single reader, and the usual read (one
whole chunk) goes to the sink in one step (``_Connection._received``); with the event templates
of ``client`` that took it to about 55,000 at 512 and 1024 streams. About half of what is
left per token is the kernel's: the read, and on loopback the ACK it sends and the server's
socket taking that ACK in.

It speaks what OpenAI-compatible engines answer with: ``Content-Length``, chunked or
read-until-close bodies, keep-alive connections pooled per client, ``http`` and ``https``.
A broken exchange raises ``HttpError`` (protocol) or the ``OSError`` the socket gave
(reset, refused); the connection is then dropped, never reused. A request is never retried.

Every buffer is bounded (the response head, a chunk-size line, a collected body), and an
exchange whose server sends nothing for ``stall_timeout`` seconds fails with ``HttpError``.
"""

from __future__ import annotations

import asyncio
import math
import select
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

from ixhpc.bench import rxstamp
from ixhpc.bench.rxstamp import ANCILLARY as _ANCILLARY
from ixhpc.bench.rxstamp import stamp as _stamp

BodySink = Callable[[bytes, float, float], None]  # (bytes, arrived, read): see Client.request and _deliver
MAX_HEAD = 64 * 1024  # a longer status line + headers is not an HTTP server talking
MAX_COLLECT = 1024 * 1024  # bodies kept in ``Response.body`` (errors, small JSON replies)


class HttpError(Exception):
    """The server's reply broke HTTP/1.1, or the connection ended before the reply did."""


@dataclass
class Response:
    status: int = 0
    reason: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    written: float = float("nan")  # perf_counter just before the request's bytes went to the socket
    body: bytes = b""  # collected when there is no sink or the status is not 2xx; capped


# body framing, and where a chunked body's parser stands
_LENGTH, _CHUNKED, _UNTIL_CLOSE = "length", "chunked", "until-close"
_SIZE, _DATA, _DATA_END, _TRAILER = range(4)


# All of a Client's connections read into one buffer: they live on one event loop, where
# get_buffer() and buffer_updated() run back to back. Reading into a buffer is the point:
# asyncio's plain Protocol path allocates a 256 KiB bytes object per read, which cost 35 µs per
# read here against 6 µs for recv_into (a streamed token is one small read).
READ_BUFFER_SIZE = 256 * 1024
# polls of a read hub per loop turn: tokens that came while it read are read in the same turn,
# not after a trip through the event loop; bounded, so timers and sends still run
DRAIN_ROUNDS = 4


def _not_reading(*args: object) -> tuple[int, list[tuple[int, int, bytes]], int, Any]:
    raise OSError("no own reads on this connection")


class _ReadHub:
    """The own-read connections of one client (see ``_Connection.connection_made``) on one
    epoll of their own, which the event loop watches as a single reader.

    asyncio would run each readable socket as a callback of its own: a key look-up, a handle
    and a context switch into it per read, about as much as the read's own work here (a
    streamed token is one read). Here one loop callback reads every ready socket in a plain
    loop. Level-triggered, as asyncio's readers are: bytes left unread wake it again."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._epoll = select.epoll()
        self._readers: dict[int, Callable[[], None]] = {}
        loop.add_reader(self._epoll.fileno(), self._drain)

    def add(self, fd: int, reader: Callable[[], None]) -> None:
        self._epoll.register(fd, select.EPOLLIN)
        self._readers[fd] = reader

    def remove(self, fd: int) -> None:
        """Stop reading ``fd`` (before it is closed); the last one out closes the hub."""
        if self._readers.pop(fd, None) is not None and not self._epoll.closed:
            self._epoll.unregister(fd)
        if not self._readers:
            self.close()

    def _drain(self) -> None:
        readers = self._readers
        for _ in range(DRAIN_ROUNDS):
            ready = self._epoll.poll(0)
            if not ready:
                return
            for fd, _ in ready:
                reader = readers.get(fd)
                if reader is not None:
                    try:
                        reader()
                    except Exception as exc:  # noqa: BLE001 - as the event loop treats a reader's error
                        self.loop.call_exception_handler({"message": "read hub reader failed", "exception": exc})
            if self._epoll.closed:
                return

    @property
    def closed(self) -> bool:
        return self._epoll.closed

    def close(self) -> None:
        if not self._epoll.closed:
            if not self.loop.is_closed():
                self.loop.remove_reader(self._epoll.fileno())
            self._epoll.close()
        self._readers.clear()


class _Connection(asyncio.BufferedProtocol):
    """One keep-alive connection; carries one exchange at a time."""

    def __init__(self, buffer: memoryview, receive_stamps: bool = True,
                 hub: Callable[[], _ReadHub | None] | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = buffer
        self._buffers = [buffer]  # recvmsg_into's argument, built once
        self.closed = False
        self._want_stamps = receive_stamps
        self._hub = hub  # gives the client's read hub for own reads (None: the loop's own reader)
        self._reading: _ReadHub | asyncio.AbstractEventLoop | None = None  # who calls _readable
        self._stamps: socket.socket | None = None  # for the kernel's receive stamps
        self._read_error: OSError | None = None
        self._arrived: float | None = None  # the read's first packet's receive stamp (asyncio's reads)
        self._last_stamp: float | None = None  # the read's last packet's (own reads; see _deliver)
        self._recvmsg_into: Callable[..., tuple[int, list[tuple[int, int, bytes]], int, Any]] = _not_reading
        self._deliveries = 0  # deliveries of the current read
        self._careful = False  # own reads: peek for the first packet's stamp (see _readable)
        self._last_io = 0.0  # perf_counter of the last read: what the stall check looks at
        self._stall_timer: asyncio.TimerHandle | None = None
        self._reset_exchange(None, asyncio.get_running_loop().create_future())
        self._done.set_result(None)  # idle

    def _reset_exchange(self, sink: BodySink | None, done: asyncio.Future[None]) -> None:
        self.response = Response()
        self._sink = sink
        self._done = done
        self._head = b""  # status line + headers, until complete
        self._in_body = False
        self._framing = _UNTIL_CLOSE
        self._left = 0  # bytes left of a Content-Length body or of the current chunk
        self._chunk_state = _SIZE
        self._pending = b""  # an incomplete chunk-size line or trailer
        self._between_chunks = False  # a chunked 2xx body to the sink, between two chunks
        self.reusable = False

    # -- asyncio.BufferedProtocol -----------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self._stamps = rxstamp.enable(transport) if self._want_stamps else None
        loop = asyncio.get_running_loop()
        if (self._stamps is not None and transport.get_extra_info("sslcontext") is None
                and isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop)):
            # Plain TCP on asyncio's own loop: read here, bytes and their receive stamp in one
            # recvmsg_into, instead of asyncio's recv_into after a peek for the stamp (two
            # system calls a read). uvloop reads natively, faster than a Python reader there.
            self.transport.pause_reading()  # asyncio stops reading; it still writes
            self._recvmsg_into = self._stamps.recvmsg_into
            hub = self._hub() if self._hub is not None else None
            if hub is not None:
                hub.add(self._stamps.fileno(), self._readable)
                self._reading = hub
            else:
                loop.add_reader(self._stamps.fileno(), self._readable)
                self._reading = loop

    def _readable(self) -> None:
        """One read, in one system call: the bytes and the kernel's receive stamp of the last
        packet it took (on TCP)."""
        # The read's first packet's stamp needs a peek (one more system call): only while reads
        # hold several HTTP chunks (the client fell behind). Otherwise a read is one packet and
        # the stamp recvmsg_into hands over is its only one.
        first = rxstamp.arrival(self._stamps) if self._careful and self._stamps is not None else None
        try:
            nbytes, ancillary, _, _ = self._recvmsg_into(self._buffers, _ANCILLARY)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # reset, refused...: the exchange fails with it, as asyncio's read does
            self._read_error = exc
            nbytes = 0
        if nbytes == 0:  # EOF or an error: close; connection_lost ends the exchange
            self._stop_reading()
            if self.transport is not None and self._read_error:
                self.transport.abort()
            elif self.transport is not None:
                self.transport.close()
            return
        last = _stamp(ancillary)
        self._received(nbytes, last if first is None else first, last)
        self._careful = self._deliveries > 1

    def _stop_reading(self) -> None:
        reading, self._reading = self._reading, None
        if reading is not None and self._stamps is not None:
            if isinstance(reading, _ReadHub):
                reading.remove(self._stamps.fileno())
            else:
                reading.remove_reader(self._stamps.fileno())

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._stamps is not None:  # asyncio reads right after this call
            self._arrived = rxstamp.arrival(self._stamps)
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        arrived, self._arrived = self._arrived, None
        self._received(nbytes, arrived, None)

    def _received(self, nbytes: int, first: float | None, last: float | None) -> None:
        """``nbytes`` read into the buffer, whose first and last packets came at ``first`` and
        ``last`` (kernel stamps, None where unknown).

        The usual read of a stream is exactly one whole chunk: its data goes to the sink here,
        in one step (a streamed token is one read, so every call saved counts); any other read
        takes ``_feed``."""
        now = self._last_io = time.perf_counter()
        arrived = now if first is None or first > now else first
        self._last_stamp = last
        if self._done.done():
            self._abort(None)  # bytes nobody asked for: the connection's framing is lost
            return
        data = bytes(self._buffer[:nbytes])
        try:
            if self._between_chunks and self._sink is not None:
                eol = data.find(b"\r\n", 0, 10)  # a size line of at most 8 hex digits
                if eol > 0 and _HEX.issuperset(line := data[:eol]):
                    stop = eol + 2 + int(line, 16)
                    # not several chunks, a part of one, nor the last (empty) one
                    if stop + 2 == nbytes and stop > eol + 2 and data.endswith(b"\r\n"):
                        self._deliveries = 1
                        self._sink(data[eol + 2:stop], arrived, now)
                        return
            self._deliveries = 0
            self._feed(data, arrived, now)
        except Exception as exc:  # noqa: BLE001 - a parse or sink error ends this exchange only
            self._abort(exc)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        exc = exc or self._read_error
        self._stop_reading()
        if self._stamps is not None:
            self._stamps.close()
        if self._done.done():
            return
        if exc is None and self._in_body and self._framing == _UNTIL_CLOSE:
            self._finish()
        elif exc is not None:
            self._done.set_exception(exc)
        else:
            where = "in the body" if self._in_body else "before a complete response head"
            self._done.set_exception(HttpError(f"connection closed by the server {where}"))

    # -- the exchange -------------------------------------------------------------------
    def send(self, request: bytes, sink: BodySink | None, stall_timeout: float = math.inf) -> asyncio.Future[None]:
        assert self.transport is not None and self._done.done()
        self._reset_exchange(sink, asyncio.get_running_loop().create_future())
        self.response.written = self._last_io = time.perf_counter()
        if stall_timeout < math.inf:
            self._watch_stall(self._done, stall_timeout)
        self.transport.write(request)  # sent now when the socket has room, as it does here
        return self._done

    def _watch_stall(self, done: asyncio.Future[None], limit: float) -> None:
        """Fail the exchange once no byte came for ``limit`` seconds. One timer per exchange,
        moved on lazily when it fires: a read only stores its time (a timer per read would cost
        the hot path)."""
        def check() -> None:
            if done.done():
                return
            idle = time.perf_counter() - self._last_io
            if idle >= limit:
                self._abort(HttpError(f"stalled: nothing received from the server for {limit:g} s"))
            else:
                self._stall_timer = loop.call_later(limit - idle, check)

        loop = asyncio.get_running_loop()
        self._stall_timer = loop.call_later(limit, check)

    def unwatch(self) -> None:
        """Drop the exchange's stall timer (thousands of finished exchanges keep none)."""
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def _abort(self, exc: Exception | None) -> None:
        if not self._done.done():
            self._done.set_exception(exc or HttpError("unexpected bytes after the response"))
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _finish(self) -> None:
        if not self._done.done():
            self._done.set_result(None)

    def _deliver(self, data: bytes, arrived: float, now: float) -> None:
        """Body bytes to the sink: the first delivery of a read with the read's first packet's
        stamp, later ones (more HTTP chunks in the same read: the client fell behind) with its
        last packet's stamp where the kernel gave it (between the first's and the read's time),
        else the read's time."""
        if self._sink is not None and 200 <= self.response.status < 300:
            if self._deliveries:
                last = self._last_stamp
                arrived = now if last is None else min(max(last, arrived), now)
            self._sink(data, arrived, now)
            self._deliveries += 1
        elif len(self.response.body) < MAX_COLLECT:
            self.response.body += data[: MAX_COLLECT - len(self.response.body)]

    def _feed(self, data: bytes, arrived: float, now: float) -> None:
        if not self._in_body:
            data = self._feed_head(data)
            if not self._in_body:
                return
        if self._framing == _CHUNKED:
            self._feed_chunked(data, arrived, now)
        elif self._framing == _LENGTH:
            if len(data) > self._left:
                raise HttpError("the server sent more than its Content-Length")
            self._left -= len(data)
            if data:
                self._deliver(data, arrived, now)
            if self._left == 0:
                self._finish()
        elif data:
            self._deliver(data, arrived, now)

    def _feed_head(self, data: bytes) -> bytes:
        """Collect the response head; once whole, parse it and return the body bytes after it."""
        head = self._head + data
        end = head.find(b"\r\n\r\n", max(len(self._head) - 3, 0))  # scan the new bytes only
        if end < 0:
            if len(head) > MAX_HEAD:
                raise HttpError("response head longer than 64 KiB")
            self._head = head
            return b""
        lines = head[:end].decode("latin-1").split("\r\n")
        rest = head[end + 4:]
        status = _parse_status(lines[0])
        if 100 <= status[1] < 200:  # interim response (e.g. 100 Continue): the real one follows
            self._head = b""
            return self._feed_head(rest) if rest else b""
        self._start_body(status, lines[1:])
        return rest

    def _start_body(self, status: tuple[str, int, str], header_lines: list[str]) -> None:
        version, code, reason = status
        headers: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if not sep:
                raise HttpError(f"malformed response header: {line[:80]!r}")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        self.response.status, self.response.reason, self.response.headers = code, reason, headers
        self._in_body, self._head = True, b""
        connection = headers.get("connection", "").lower()
        keep_alive = "keep-alive" in connection if version == "HTTP/1.0" else "close" not in connection
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._framing = _CHUNKED
        elif "content-length" in headers:
            length = headers["content-length"]
            if not (length.isascii() and length.isdigit()):
                raise HttpError(f"bad Content-Length: {length[:40]!r}")
            self._framing, self._left = _LENGTH, int(length)
        else:
            self._framing, keep_alive = _UNTIL_CLOSE, False
        self.reusable = keep_alive
        if code in (204, 304) or (self._framing == _LENGTH and self._left == 0):
            self._finish()

    def _feed_chunked(self, data: bytes, arrived: float, now: float) -> None:
        buf = self._pending + data if self._pending else data
        pos, end = 0, len(buf)
        while pos < end and not self._done.done():
            if self._chunk_state == _DATA:  # chunk data goes out as soon as it is read
                take = min(self._left, end - pos)
                self._deliver(buf[pos:pos + take], arrived, now)
                pos += take
                self._left -= take
                if self._left == 0:
                    self._chunk_state = _DATA_END
                continue
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                if end - pos > MAX_HEAD:
                    raise HttpError("chunk-size line or trailer longer than 64 KiB")
                break
            line, pos = buf[pos:eol], eol + 2
            if self._chunk_state == _DATA_END:
                if line:
                    raise HttpError("chunk data longer than its size")
                self._chunk_state = _SIZE
            elif self._chunk_state == _SIZE:
                size = self._left = _chunk_size(line)
                stop = pos + size
                if size and buf[stop:stop + 2] == b"\r\n":  # the usual read: whole chunks, in one step
                    self._deliver(buf[pos:stop], arrived, now)
                    pos, self._left = stop + 2, 0
                    continue
                self._chunk_state = _DATA if size else _TRAILER
            elif not line:  # the empty line that ends the trailer: the body is complete
                self._finish()
        self._pending = buf[pos:]
        if self._done.done():
            if self._pending:
                self.reusable = False  # bytes after the end: never reuse this connection
        elif self._chunk_state == _SIZE and not self._pending:
            self._between_chunks = self._sink is not None and 200 <= self.response.status < 300
        else:
            self._between_chunks = False


def _parse_status(line: str) -> tuple[str, int, str]:
    version, _, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or not (code.isdigit() and len(code) == 3):
        raise HttpError(f"malformed status line: {line[:80]!r}")
    return version, int(code), reason


_HEX = frozenset(b"0123456789abcdefABCDEF")


def _chunk_size(line: bytes) -> int:
    if line and len(line) <= 8 and _HEX.issuperset(line):  # the usual size line: hex digits only
        return int(line, 16)
    size = line.split(b";", 1)[0].strip()
    if not size or not _HEX.issuperset(size):  # int() would also take "-5", "+5" and "5_0"
        raise HttpError(f"malformed chunk size: {line[:40]!r}")
    return int(size, 16)


class Client:
    """Keep-alive connections to one server; ``request`` runs one exchange on one of them.

    No limit on connections: callers bound their own concurrency. Proxies from the environment
    are not used (the engines sit on the cluster's own network), as with aiohttp's default.
    """

    def __init__(self, base_url: str, headers: dict[str, str] | None = None, receive_stamps: bool = True,
                 stall_timeout: float = math.inf) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if url.scheme == "https" else None
        self.prefix = url.path.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        default_port = self.port == (443 if self.ssl else 80)
        fixed = {"Host": host if default_port else f"{host}:{self.port}", **(headers or {})}
        if any(c in text for item in fixed.items() for text in item for c in "\r\n"):
            raise ValueError("a header name or value holds a line break")
        self._fixed = "".join(f"{k}: {v}\r\n" for k, v in fixed.items())
        self._idle: list[_Connection] = []
        self.receive_stamps = receive_stamps
        self.stall_timeout = stall_timeout  # seconds an exchange may receive nothing; inf: no limit
        self._buffer = memoryview(bytearray(READ_BUFFER_SIZE))
        self._hub: _ReadHub | None = None  # made for own-read connections; closes with the last one

    def _read_hub(self) -> _ReadHub:
        """The read hub on the running loop, made when there is none."""
        loop = asyncio.get_running_loop()
        if self._hub is None or self._hub.loop is not loop or self._hub.closed:
            self._hub = _ReadHub(loop)
        return self._hub

    async def _connection(self) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(
            lambda: _Connection(self._buffer, self.receive_stamps, self._read_hub), self.host, self.port,
            ssl=self.ssl)
        return conn

    def head(self, method: str, path: str, body: bytes, content_type: str) -> bytes:
        return (f"{method} {self.prefix}{path} HTTP/1.1\r\n{self._fixed}"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n").encode("latin-1")

    async def request(
        self, method: str, path: str, body: bytes = b"", sink: BodySink | None = None,
        content_type: str = "application/json", on_written: Callable[[float], None] | None = None,
    ) -> Response:
        """Send one request; a 2xx body goes to ``sink`` as it is read (else to ``Response.body``),
        with two times for each read: when its first byte reached this host (the kernel's
        receive stamp, ``ixhpc.bench.rxstamp``; the read's time where there is none) and when
        it was read. An exchange that receives nothing for ``stall_timeout`` seconds (from the
        write, then from each read) fails with ``HttpError``.

        ``on_written`` gets the time the request went to the socket, before any reply byte is
        read, so a caller keeps it even when the exchange then fails or is cancelled."""
        conn = await self._connection()
        done = conn.send(self.head(method, path, body, content_type) + body, sink, self.stall_timeout)
        if on_written is not None:
            on_written(conn.response.written)
        try:
            await done
        except BaseException:  # failed or cancelled midway: the connection's state is unknown
            conn.closed = True
            if conn.transport is not None:
                conn.transport.abort()
            raise
        finally:
            conn.unwatch()
        if conn.reusable and not conn.closed:
            self._idle.append(conn)
        elif conn.transport is not None:
            conn.transport.close()
        return conn.response

    def close(self) -> None:
        for conn in self._idle:
            if conn.transport is not None:
                conn.transport.close()
        self._idle.clear()
