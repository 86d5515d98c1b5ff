"""Kernel receive stamps: when a socket's unread bytes reached this host.

Once a socket asks for it (``SO_TIMESTAMPNS``), Linux stamps each packet it receives, and
``recvmsg`` hands the stamp over as ancillary data. ``arrival`` peeks one byte, so it gives the
stamp of the packet holding the first unread byte and leaves every byte for the event loop's
own read. A busy event loop reads late; the stamp says when the bytes actually came. The load
generator stamps its reads with it and the simulated engine its requests' arrivals.

asyncio owns each connection's socket and reads it with ``recv``, which drops ancillary data,
so the stamps come from a duplicate of the socket (``enable``). Where the option or the
duplicate is not available, ``enable`` returns None and callers use the time of their read.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import sys
import time

SO_TIMESTAMPNS = 35  # Linux asm-generic value; Python's socket module does not name it
# where that value is known to be right (the clusters' x86_64 and aarch64 nodes); elsewhere the
# same number may be another option, so no stamps there
SUPPORTED = sys.platform == "linux" and os.uname().machine in ("x86_64", "aarch64")
_TIMESPEC = struct.Struct("@ll")
_TIMESPEC_SIZE = _TIMESPEC.size
ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0  # room for a stamp
_PEEK = int(socket.MSG_PEEK | socket.MSG_DONTWAIT)  # an int: OR-ing the enum flags per call costs µs


def enable(transport: asyncio.BaseTransport) -> socket.socket | None:
    """A duplicate of the transport's socket with receive stamps on (close it with the
    connection), or None."""
    raw = transport.get_extra_info("socket")
    if raw is None or not SUPPORTED:
        return None
    try:
        dup = socket.socket(fileno=os.dup(raw.fileno()))
    except OSError:  # out of descriptors, or not a socket: no stamps, never a failure
        return None
    try:
        dup.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        dup.close()
        return None
    return dup


def arrival(sock: socket.socket) -> float | None:
    """``time.perf_counter()`` seconds at which the first unread byte of ``sock`` was received,
    or None (nothing unread, no stamp on the packet)."""
    try:
        _, ancillary, _, _ = sock.recvmsg(1, ANCILLARY, _PEEK)
    except OSError:
        return None
    return stamp(ancillary)


_SOL_SOCKET = int(socket.SOL_SOCKET)
_perf_counter_ns, _time_ns = time.perf_counter_ns, time.time_ns


def stamp(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    """The receive stamp in a ``recvmsg`` call's ancillary data (room: ``ANCILLARY``) as a
    ``perf_counter`` time, or None. On TCP a read's stamp is the LAST packet's it took
    (``arrival`` peeks for the first's)."""
    for level, kind, data in ancillary:
        if kind == SO_TIMESTAMPNS and level == _SOL_SOCKET and len(data) == _TIMESPEC_SIZE:
            sec: int
            nsec: int
            sec, nsec = _TIMESPEC.unpack(data)
            # the stamp is CLOCK_REALTIME; perf_counter is CLOCK_MONOTONIC: same rate, so the
            # offset between them, read now, converts it
            return (sec * 1_000_000_000 + nsec - _time_ns() + _perf_counter_ns()) / 1e9
    return None
