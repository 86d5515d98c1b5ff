"""The stand-ins' servers: a simulated engine with an engine's HTTP surface, the routers,
Dynamo's frontend (routing to the workers registered in etcd), and tiny etcd and NATS.

The etcd stand-in keeps keys in memory and answers a subset of etcd's v3 JSON gateway
(``POST /v3/kv/put``, ``POST /v3/kv/range`` with base64 keys and values, ``GET /health``).
A Dynamo worker stand-in puts ``v1/instances/<namespace>/<component>/generate/<id>`` (a JSON
value: its URL, role and model) once it listens; the frontend stand-in reads that prefix
every ``REFRESH_S`` seconds and answers ``/health`` with 200 once it knows a worker to decode on.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlparse

import aiohttp
from aiohttp import web

from ixhpc.sim import kvcache, listener, model, router, server
from ixhpc.standins.commands import Serve

REFRESH_S = 0.5
INSTANCES = "v1/instances/"
NAMESPACE = "dynamo"


def sim_config(s: Serve, settings: dict[str, Any]) -> model.SimConfig:
    """The simulated engine for a stand-in: the job's sim settings, the engine's own flags on top."""
    base = model.SimConfig()
    precision = settings.get("precision")
    cfg = model.SimConfig(
        gpu=str(settings.get("gpu") or base.gpu), tp=max(s.tp, s.gpus), ep=s.ep,   # every GPU of a replica
        model_params_b=float(settings.get("model_params_b") or base.model_params_b),
        active_params_b=float(settings.get("active_params_b") or settings.get("model_params_b")
                              or base.active_params_b),
        precision=precision if precision in model.BYTES_PER_PARAM else base.precision,
        max_batch=s.max_batch or int(settings.get("max_batch") or base.max_batch),
        max_prefill_tokens=s.max_prefill_tokens or base.max_prefill_tokens)
    model.validate(cfg)
    return cfg


def cache_config(s: Serve, cfg: model.SimConfig) -> kvcache.CacheConfig:
    """The prefix cache, with a DRAM tier when the engine's flags give it one (``Serve.dram_*``):
    its bytes at the simulated model's KV bytes per token, or sglang's ratio to the GPU pool."""
    gpu = s.kv_tokens or model.kv_capacity_tokens(cfg)
    dram = kvcache.dram_tokens(s.dram_bytes / 1e9, cfg.kv_bytes_per_token) if s.dram_bytes > 0 \
        else int(s.dram_ratio * gpu)
    return kvcache.CacheConfig(gpu_tokens=s.kv_tokens, dram_tokens=dram)


def engine_app(s: Serve, settings: dict[str, Any]) -> tuple[web.Application, server.Engine]:
    cfg = sim_config(s, settings)
    engine = server.Engine(cfg, s.role, "", float(settings.get("time_scale") or 1.0),
                           spec_tokens=s.spec_tokens, stream_interval=s.stream_interval,
                           cache=cache_config(s, cfg))
    app = server.make_app(engine, s.model, s.metrics, s.metrics_path)
    if s.metrics_path != "/metrics":  # trtllm-serve: /metrics is its JSON iteration log
        app.router.add_get("/metrics", _json_handler([]))
    if s.max_model_len:
        app.middlewares.append(_context_limit(s.max_model_len))
    return app, engine


def _json_handler(value: Any) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        return web.json_response(value)
    return handle


def _context_limit(limit: int) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Refuse a request whose prompt plus max_tokens exceeds the engine's max model length."""
    @web.middleware
    async def check(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        if request.method == "POST" and request.path.startswith("/v1/") and not request.headers.get("X-Sim-KV-Tokens"):
            try:
                body = await request.json()
                need = server.count_prompt_tokens(body) + int(body.get("max_tokens") or 0)
            except (ValueError, TypeError, AttributeError):
                need = 0
            if need > limit:
                return server.error_response(400, f"This model's maximum context length is {limit} tokens. "
                                                  f"However, you requested {need} tokens.")
        return await handler(request)
    return check


# ------------------------------------------------------------------------------- routers


class Workers:
    """Prefill and decode pools a router sends to; Dynamo's frontend refreshes them from etcd."""

    def __init__(self, prefill: list[str], decode: list[str]) -> None:
        self.inner: router.Router | None = None
        self.models: list[str] = []
        self.set(prefill, decode)

    def set(self, prefill: list[str], decode: list[str]) -> None:
        current = self.inner
        if current is not None and current.prefill.urls == prefill and current.decode.urls == decode:
            return
        fresh = router.Router(prefill, decode, "round-robin")
        if current is not None:
            fresh.session = current.session
        self.inner = fresh


def router_app(s: Serve, workers: Workers, dynamo: bool = False) -> web.Application:
    """sglang_router / trtllm-serve disaggregated / dynamo.frontend over the simulated workers."""
    counts = {"requests": 0, "running": 0}

    async def start(app: web.Application) -> None:
        assert workers.inner is not None
        await workers.inner.start(app)

    async def stop(app: web.Application) -> None:
        if workers.inner is not None:
            await workers.inner.stop(app)

    def current() -> router.Router:
        assert workers.inner is not None
        return workers.inner

    async def completions(request: web.Request) -> web.StreamResponse:
        r = current()
        if not r.decode.urls:
            return server.error_response(503, "no worker is registered yet")
        counts["requests"] += 1
        counts["running"] += 1
        try:
            if r.prefill.urls:
                return await r.completions(request)
            body = await server.json_body(request)
            d = r.decode.pick()
            return await r._relay(request, body, f"cmpl-standin-{counts['requests']}", 0, "", r.decode.urls[d])
        finally:
            counts["running"] -= 1

    async def health(request: web.Request) -> web.Response:
        r = current()
        if dynamo and not r.decode.urls:
            return web.json_response({"status": "unhealthy", "instances": []}, status=503)
        return web.json_response({"status": "healthy", "simulated": True,
                                  "prefill": r.prefill.urls, "decode": r.decode.urls})

    async def models(request: web.Request) -> web.Response:
        if dynamo:
            data = [{"id": m, "object": "model", "owned_by": "nvidia", "created": 0} for m in workers.models]
            return web.json_response({"object": "list", "data": data})
        return await current().models(request)

    async def list_workers(request: web.Request) -> web.Response:
        r = current()
        ports = s.bootstrap_ports + [None] * len(r.prefill.urls)
        rows = [{"url": u, "worker_type": "prefill", "bootstrap_port": ports[i], "is_healthy": True}
                for i, u in enumerate(r.prefill.urls)]
        rows += [{"url": u, "worker_type": "decode", "is_healthy": True} for u in r.decode.urls]
        return web.json_response({"workers": rows, "total": len(rows)})

    async def metrics(request: web.Request) -> web.Response:
        name = workers.models[0] if workers.models else "model"
        text = server.prometheus(s.metrics, name, {"requests": counts["requests"], "running": counts["running"],
                                                   "waiting": 0})
        return web.Response(text=text, content_type="text/plain")

    app = web.Application(client_max_size=64 * 1024**2)
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/chat/completions", completions)
    app.router.add_get("/workers", list_workers)
    app.router.add_get("/metrics", metrics)
    return app


async def follow_etcd(endpoint: str, workers: Workers) -> None:
    """The frontend's view of the workers: the registered instances, refreshed."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while True:
            try:
                kvs = await etcd_range(session, endpoint, INSTANCES)
                entries = [json.loads(v) for v in kvs.values()]
                prefill = sorted(e["url"] for e in entries if e.get("role") == "prefill")
                decode = sorted(e["url"] for e in entries if e.get("role") != "prefill")
                workers.models = sorted({str(e.get("model")) for e in entries})
                workers.set(prefill, decode)
            except (aiohttp.ClientError, ValueError, KeyError, TimeoutError) as exc:
                print(f"ixhpc stand-in: etcd at {endpoint}: {exc}", file=sys.stderr, flush=True)
            await asyncio.sleep(REFRESH_S)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _prefix_end(prefix: str) -> str:
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


async def etcd_range(session: aiohttp.ClientSession, endpoint: str, prefix: str) -> dict[str, str]:
    body = {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix))}
    async with session.post(f"{endpoint}/v3/kv/range", json=body) as resp:
        data = await resp.json()
    return {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv["value"]).decode()
            for kv in data.get("kvs", [])}


def etcd_put(endpoint: str, key: str, value: str, timeout: float = 10.0) -> None:
    """Register (blocking, before the worker's health can answer): retried until etcd answers."""
    body = json.dumps({"key": _b64(key), "value": _b64(value)}).encode()
    deadline = time.monotonic() + timeout
    while True:
        try:
            req = urllib.request.Request(f"{endpoint}/v3/kv/put", data=body,
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def advertised_host(endpoint: str, bound: str) -> str:
    """The address others reach this host at: the one it reaches etcd from."""
    if bound not in ("0.0.0.0", "::", ""):
        return bound
    host = urlparse(endpoint).hostname or "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((host, 9))
            return str(sock.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def etcd_app() -> web.Application:
    store: dict[str, str] = {}
    revision = [1]

    async def put(request: web.Request) -> web.Response:
        body = await request.json()
        store[base64.b64decode(body["key"]).decode()] = body.get("value", "")
        revision[0] += 1
        return web.json_response({"header": {"revision": str(revision[0])}})

    async def range_(request: web.Request) -> web.Response:
        body = await request.json()
        key = base64.b64decode(body["key"]).decode()
        end = base64.b64decode(body["range_end"]).decode() if body.get("range_end") else None
        keys = sorted(k for k in store if (k == key if end is None else key <= k < end))
        kvs = [{"key": _b64(k), "value": store[k]} for k in keys]
        return web.json_response({"header": {"revision": str(revision[0])}, "kvs": kvs, "count": str(len(kvs))})

    app = web.Application()
    app.router.add_get("/health", _json_handler({"health": "true", "reason": ""}))
    app.router.add_get("/version", _json_handler({"etcdserver": "3.5.x (ixhpc stand-in)"}))
    app.router.add_post("/v3/kv/put", put)
    app.router.add_post("/v3/kv/range", range_)
    return app


async def _hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A connection nobody speaks to (Mooncake's RPC port): held until the client leaves."""
    try:
        while await reader.read(65536):
            pass
    except ConnectionError:
        pass
    finally:
        writer.close()


def metadata_app() -> web.Application:
    """Mooncake's HTTP metadata server: a key-value store at ``/metadata?key=K``."""
    store: dict[str, bytes] = {}

    async def get(request: web.Request) -> web.Response:
        key = request.query.get("key", "")
        if key not in store:
            return web.Response(status=404, text="metadata not found")
        return web.Response(body=store[key])

    async def put(request: web.Request) -> web.Response:
        store[request.query.get("key", "")] = await request.read()
        return web.Response(text="metadata updated")

    async def delete(request: web.Request) -> web.Response:
        store.pop(request.query.get("key", ""), None)
        return web.Response(text="metadata deleted")

    app = web.Application()
    app.router.add_get("/metadata", get)
    app.router.add_put("/metadata", put)
    app.router.add_delete("/metadata", delete)
    app.router.add_get("/health", _json_handler("OK"))
    return app


async def nats_serve(host: str, port: int) -> asyncio.Server:
    """Enough of NATS's protocol for a client to connect: INFO, then PONG for each PING."""
    info = {"server_id": "ixhpc-standin", "server_name": "ixhpc-standin", "version": "2.10.0",
            "proto": 1, "host": host, "port": port, "jetstream": True, "max_payload": 1048576}

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(f"INFO {json.dumps(info)}\r\n".encode())
        try:
            while line := await reader.readline():
                if line.strip().upper() == b"PING":
                    writer.write(b"PONG\r\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    return await asyncio.start_server(client, host, port)


# ------------------------------------------------------------------------------- running


async def run(s: Serve, settings: dict[str, Any], describe: str) -> None:
    """Serve until SIGTERM/SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runners: list[web.AppRunner] = []
    closers: list[asyncio.Server] = []
    tasks: list[asyncio.Task[None]] = []

    async def serve_app(app: web.Application, host: str, port: int) -> str:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        runners.append(runner)
        srv = await listener.listen(runner, host, port)
        closers.append(srv)
        return f"{host}:{srv.sockets[0].getsockname()[1]}"

    try:
        if s.kind == "idle":
            print(f"ixhpc stand-in: {s.why_idle}; waiting to be stopped", flush=True)
        elif s.kind == "etcd":
            where = await serve_app(etcd_app(), s.host, s.port)
            print(f"ixhpc stand-in: {describe} (etcd) serving client requests on {where}", flush=True)
        elif s.kind == "nats":
            closers.append(await nats_serve(s.host, s.port))
            print(f"ixhpc stand-in: {describe} (nats-server) listening for clients on {s.host}:{s.port}", flush=True)
        elif s.kind == "mooncake":
            closers.append(await asyncio.start_server(_hold, s.host, s.port))
            if s.bootstrap_port is not None:   # its HTTP metadata server (bootstrap_port: that port)
                await serve_app(metadata_app(), s.host, s.bootstrap_port)
            print(f"ixhpc stand-in: {describe} RPC on {s.host}:{s.port}, HTTP metadata on port "
                  f"{s.bootstrap_port}", flush=True)
        elif s.kind in ("router", "frontend"):
            workers = Workers(s.prefill, s.decode)
            if s.kind == "frontend":
                assert s.etcd is not None
                tasks.append(asyncio.create_task(follow_etcd(s.etcd, workers)))
            where = await serve_app(router_app(s, workers, dynamo=s.kind == "frontend"), s.host, s.port)
            print(f"ixhpc stand-in: {describe} routing on {where} (prefill {s.prefill}, decode {s.decode})",
                  flush=True)
        else:
            app, engine = engine_app(s, settings)
            if s.bootstrap_port is not None:  # sglang's prefill bootstrap server
                boot = web.Application()
                boot.router.add_get("/health", _json_handler("OK"))
                await serve_app(boot, s.host, s.bootstrap_port)
            where = await serve_app(app, s.host, s.port)
            engine.name = f"http://{where}"
            if s.register_as and s.etcd:
                url = f"http://{advertised_host(s.etcd, s.host)}:{where.rsplit(':', 1)[1]}"
                key = f"{INSTANCES}{NAMESPACE}/{s.register_as}/generate/{os.getpid():x}"
                etcd_put(s.etcd, key, json.dumps({"url": url, "role": s.role, "model": s.model}))
            print(f"ixhpc stand-in: {describe} serving {s.model!r} on {where} (simulated: role {s.role}, "
                  f"tp {s.tp} ep {s.ep} dp {s.dp}, {engine.cfg.gpu}, spec tokens {s.spec_tokens}, "
                  f"stream interval {s.stream_interval}, kv {engine.kv_capacity} tokens, "
                  f"dram tier {engine.cache.cfg.dram_tokens if engine.cache else 0} tokens)", flush=True)
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        for srv in closers:
            srv.close()
        for runner in runners:
            await runner.cleanup()
