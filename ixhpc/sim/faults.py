"""Broken engines on purpose: ``ixhpc.sim serve --fault KIND``, to show that a broken run ends
as an invalid point with the right reason (docs/slo.md, "Broken runs"; tests/test_broken_runs.py).

A recipe gives a worker the flag through ``ixhpc.engine-args`` (e.g. only the decode workers of
a disaggregated point). Kinds, each what a broken deployment is seen to do:

* ``stop-after=N``: the worker stops producing tokens after N per request and ends the stream
  normally (finish reason ``stop``, usage counting N): a decode stage that gave up;
* ``zero-tokens``: every stream ends with no token and usage counting 0 (``stop-after=0``), as a
  deployment whose KV transfers all failed while prefill answered;
* ``stall-after=N``: after N tokens the stream stays open and sends nothing, ever.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from ixhpc.sim.server import Api, Request

KINDS = ("stop-after=N", "zero-tokens", "stall-after=N")


@dataclass(frozen=True)
class Fault:
    kind: str  # "stop" or "stall"
    after: int  # tokens sent first


def parse(text: str) -> Fault:
    if text == "zero-tokens":
        return Fault("stop", 0)
    match = re.fullmatch(r"(stop|stall)-after=([0-9]{1,9})", text)
    if match is None:
        raise ValueError(f"--fault: expected one of {', '.join(KINDS)}, found {text!r}")
    return Fault(match[1], int(match[2]))


async def stream(api: Api, request: web.Request, req: Request, chat: bool, include_usage: bool,
                 fault: Fault) -> web.StreamResponse:
    """The request's stream as the broken worker sends it."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    cap = min(fault.after, req.max_tokens)
    sent = 0
    while sent < cap and not req.finished:
        await req.wake.wait()
        req.wake.clear()
        new = min(req.generated, cap) - sent
        if new > 0:
            await resp.write(api.token_chunk(req, chat) * new)
            sent += new
    if fault.kind == "stall":
        await asyncio.Event().wait()  # open and silent until the client gives up
    await resp.write(api.ending(req, chat, "stop", include_usage, completion_tokens=sent))
    await resp.write_eof()
    req.cancelled = True  # the engine stops decoding it
    return resp
