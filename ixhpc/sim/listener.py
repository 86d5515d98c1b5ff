"""The simulated servers' listener: aiohttp's protocol behind a wrapper that notes when each
request's first bytes arrived.

That time is a request's ``arrival`` in the engine's records: the kernel's receive stamp of
the request's first packet (``ixhpc.bench.rxstamp``), else the time it was read. aiohttp's
public API first shows a request when its handler starts, which is many event-loop turns later
when hundreds of requests arrive together: the loop reads, parses and dispatches them one by
one, and each waits for the ones before it. That wait is the server's own queueing, part of its
TTFT as a client sees it, so the records start the clock on arrival. ``handled`` keeps the
handler's start.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import socket
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from ixhpc.bench import http, rxstamp

_ARRIVAL: contextvars.ContextVar[float] = contextvars.ContextVar("ixhpc_sim_arrival")


def arrival() -> float:
    """The perf_counter arrival of the request being handled (``stamp_arrival`` sets it)."""
    return _ARRIVAL.get()


class _Stamping(asyncio.BufferedProtocol):
    """Forwards everything to aiohttp's protocol; keeps the arrival of the first unclaimed read:
    the kernel's receive stamp where the socket gives one, else the time of the read."""

    def __init__(self, inner: asyncio.Protocol, buffer: memoryview) -> None:
        self.inner = inner
        self._buffer = buffer
        self.first_read: float | None = None
        self.sock: socket.socket | None = None  # a duplicate of the connection's socket, to peek

    def take(self) -> float | None:
        first, self.first_read = self.first_read, None
        return first

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.sock = rxstamp.enable(transport)
        self.inner.connection_made(transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.first_read is None:  # called just before the read
            stamp = rxstamp.arrival(self.sock) if self.sock is not None else None
            self.first_read = stamp if stamp is not None else time.perf_counter()
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.inner.data_received(bytes(self._buffer[:nbytes]))

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.sock is not None:
            self.sock.close()
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def stamp_arrival(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Sets ``arrival()`` for the handler: this request's first packet (the handler's start when
    the app is served without ``listen``, as in-process tests do)."""
    proto = request.transport.get_protocol() if request.transport is not None else None
    stamping = proto if isinstance(proto, _Stamping) else None
    first = stamping.take() if stamping is not None else None
    token = _ARRIVAL.set(first if first is not None else time.perf_counter())
    try:
        return await handler(request)
    finally:
        _ARRIVAL.reset(token)
        if stamping is not None:
            stamping.take()  # reads of this request's body are not the next request's arrival


async def listen(runner: web.BaseRunner, host: str, port: int) -> asyncio.Server:
    """Serve ``runner``'s app on host:port (0: any free port) through the stamping wrapper."""
    assert runner.server is not None, "runner.setup() first"
    factory = runner.server
    # one read buffer for all connections (one loop); a plain Protocol would get a fresh
    # 256 KiB bytes object per read from asyncio (``ixhpc.bench.http`` has the figures)
    buffer = memoryview(bytearray(http.READ_BUFFER_SIZE))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Stamping(factory(), buffer), host, port, backlog=4096,
                                      reuse_address=True)
    # accepted sockets inherit the option, so a request that arrives before accept() is stamped
    for sock in server.sockets if rxstamp.SUPPORTED else ():
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, rxstamp.SO_TIMESTAMPNS, 1)
    return server
