"""Disaggregated router for simulated workers: prefill on one worker, decode on another.

For each completion request: pick a prefill worker, ``POST /sim/prefill`` with the request (it
answers after the prefill time, less what its prefix cache held), pick a decode worker, forward
the original request with ``X-Sim-KV-Tokens``, ``X-Sim-Prefill-Worker`` and ``X-Sim-Request-Id``
headers, and stream its bytes back unchanged.

Policies: ``round-robin`` cycles through the workers; ``least-loaded`` picks the worker with
the fewest requests this router has in flight on it (ties go round-robin).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import aiohttp
from aiohttp import web

from ixhpc.sim.server import SIM_BANNER, count_prompt_tokens, error_response, json_body

POLICIES = ("round-robin", "least-loaded")


class Pool:
    """Workers of one role and the router's in-flight count on each."""

    def __init__(self, urls: list[str], policy: str) -> None:
        self.urls = [u.rstrip("/") for u in urls]
        self.policy = policy
        self.load = [0] * len(urls)
        self._next = 0

    def pick(self) -> int:
        n = len(self.urls)
        if self.policy == "least-loaded":
            i = min(range(n), key=lambda k: (self.load[k], (k - self._next) % n))
        else:
            i = self._next
        self._next = (i + 1) % n
        return i


class Router:
    def __init__(self, prefill: list[str], decode: list[str], policy: str) -> None:
        self.prefill = Pool(prefill, policy)
        self.decode = Pool(decode, policy)
        self.session: aiohttp.ClientSession | None = None
        self._ids = itertools.count()

    async def start(self, app: web.Application) -> None:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
        self.session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None))

    async def stop(self, app: web.Application) -> None:
        if self.session is not None:
            await self.session.close()

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({
            "status": "ok", "simulated": True, "role": "router", "policy": self.prefill.policy,
            "prefill": dict(zip(self.prefill.urls, self.prefill.load)),
            "decode": dict(zip(self.decode.urls, self.decode.load)),
        })

    async def models(self, request: web.Request) -> web.Response:
        assert self.session is not None
        try:
            async with self.session.get(self.decode.urls[0] + "/v1/models") as resp:
                return web.json_response(await resp.json(), status=resp.status)
        except (aiohttp.ClientError, json.JSONDecodeError) as exc:
            return error_response(502, f"{SIM_BANNER}: decode worker unreachable: {exc}")

    async def completions(self, request: web.Request) -> web.StreamResponse:
        assert self.session is not None
        try:
            body = await json_body(request)
            tokens = count_prompt_tokens(body)
        except (ValueError, TypeError, AttributeError) as exc:
            return error_response(400, str(exc))
        rid = f"cmpl-simrouter-{next(self._ids)}"
        p = self.prefill.pick()
        self.prefill.load[p] += 1
        try:
            async with self.session.post(
                self.prefill.urls[p] + "/sim/prefill", json={"id": rid, "prompt_tokens": tokens, "request": body}
            ) as resp:
                if resp.status != 200:
                    return error_response(502, f"prefill worker {self.prefill.urls[p]}: HTTP {resp.status}")
                kv_tokens = (await resp.json())["kv_tokens"]
        except (aiohttp.ClientError, KeyError, json.JSONDecodeError) as exc:
            return error_response(502, f"prefill worker {self.prefill.urls[p]}: {exc}")
        finally:
            self.prefill.load[p] -= 1
        d = self.decode.pick()
        self.decode.load[d] += 1
        try:
            return await self._relay(request, body, rid, kv_tokens, self.prefill.urls[p], self.decode.urls[d])
        finally:
            self.decode.load[d] -= 1

    async def _relay(
        self, request: web.Request, body: dict[str, Any], rid: str, kv_tokens: int, prefill_url: str, decode_url: str
    ) -> web.StreamResponse:
        assert self.session is not None
        headers = {"X-Sim-Request-Id": rid, "X-Sim-KV-Tokens": str(kv_tokens), "X-Sim-Prefill-Worker": prefill_url}
        out: web.StreamResponse | None = None
        try:
            async with self.session.post(decode_url + request.path, json=body, headers=headers) as upstream:
                out = web.StreamResponse(
                    status=upstream.status,
                    headers={"Content-Type": upstream.headers.get("Content-Type", "application/json")},
                )
                await out.prepare(request)
                async for data in upstream.content.iter_any():
                    await out.write(data)
                await out.write_eof()
                return out
        except aiohttp.ClientError as exc:
            if out is not None:  # headers already sent: all we can do is cut the stream
                raise
            return error_response(502, f"decode worker {decode_url}: {exc}")


def make_app(prefill: list[str], decode: list[str], policy: str) -> web.Application:
    router = Router(prefill, decode, policy)
    app = web.Application(client_max_size=64 * 1024**2)
    app.on_startup.append(router.start)
    app.on_cleanup.append(router.stop)
    app.router.add_get("/health", router.health)
    app.router.add_get("/v1/models", router.models)
    app.router.add_post("/v1/completions", router.completions)
    app.router.add_post("/v1/chat/completions", router.completions)
    return app
