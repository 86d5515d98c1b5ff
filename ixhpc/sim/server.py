"""The simulated engine's HTTP server: OpenAI-compatible completions timed by ``model``.

Token counting: a string prompt has one token per whitespace-separated word; a prompt given as
a list of token ids has one token per id; chat messages count the words of their contents.
Generated tokens are the word `` tok``, one per SSE chunk. With ``ignore_eos`` a request gets
exactly ``max_tokens`` tokens; without it, a seeded pseudo-random length in
``[max_tokens/2, max_tokens]`` (a stand-in for an EOS).

Disaggregation: the router calls ``POST /sim/prefill`` on a prefill worker (``{"id",
"prompt_tokens", "request"}``: the client's request, so the worker keys its prefix cache by the
prompt as an aggregated engine does; a hit skips that part of the prefill), which answers after
the prefill time with the KV size; the router then sends the request to a decode worker with
headers ``X-Sim-KV-Tokens`` (KV tokens to receive) and ``X-Sim-Prefill-Worker``; the decode
worker charges the KV transfer time before the request joins its batch. ``X-Sim-Request-Id``
(or ``X-Request-Id``) names the request in the workers' records.

``GET /sim/timings`` returns every request's server-side times in ``time.perf_counter()``
seconds (CLOCK_MONOTONIC on Linux, so comparable with a client on the same machine):
arrival, handled, KV ready, each token's write time (taken just before the write), finish.
Arrival is when the request's first packet reached the host (``ixhpc.sim.listener``: the
kernel's receive stamp, else the first read; the handler's start when the app is served some
other way), handled when its handler started: the span between them is the server's queueing
of requests that arrive together.

Engine stand-ins (``ixhpc.standins``) set three more things: ``spec_tokens`` (speculative
decoding: each decode step verifies that many draft tokens, costs ``SPEC_STEP_COST`` more per
draft token, and yields ``1 + sum(SPEC_ACCEPTANCE ** i for i in 1..spec_tokens)`` tokens per
sequence on average, carried over between steps); ``stream_interval`` (a stream writes once
every that many tokens, and at the end); and ``metrics`` (``GET /metrics``: Prometheus text
under the engine's own metric names, ``METRIC_KEYS``, and the simulated per-GPU power gauge).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ixhpc.bench import servermetrics
from ixhpc.sim import answers, faults, kvcache, listener, model

SIM_BANNER = "ixhpc simulated engine (not a real GPU engine)"
TOKEN_TEXT = " tok"  # every generated token
MAX_RECORDS = 200_000  # records kept for /sim/timings; older ones are dropped
OUTPUT_CHUNK = 32  # streams written per event-loop turn: ~1 ms of writes at ~30 µs each
MAX_SEQUENCE_TOKENS = 1 << 24  # longest output or KV transfer accepted, as a real engine's context limit
SPEC_ACCEPTANCE = 0.7  # chance each further draft token is accepted (speculative decoding)
SPEC_STEP_COST = 0.1   # extra step time per draft token verified, as a fraction of a plain step

# Prometheus metric names per engine: the one table, ``ixhpc.bench.servermetrics.ENGINE_METRICS``
# (running / waiting sequences, KV-cache usage and prefix-cache hit rate as gauges; prefix-cache
# queries and hits, preemptions, prompt and generated tokens, finished requests as counters).
METRIC_KEYS = servermetrics.KEYS
# Simulated GPU power (``SIM_POWER``, label ``gpu``): per GPU of the engine (its tp), idle power
# plus a share of (peak - idle) from its load: IDLE_SHARE when any work is in, the rest in
# proportion to batch occupancy (running / max_batch; a queued prefill counts as full).
GPU_PEAK_W = {"H100": 700.0, "H200": 700.0, "B200": 1000.0, "GB200": 1200.0, "B300": 1100.0,
              "GB300": 1400.0, "MI300X": 750.0, "MI325X": 1000.0, "MI355X": 1400.0}
GPU_IDLE_FRACTION = 0.15  # of peak, with nothing running
IDLE_SHARE = 0.3          # of (peak - idle), as soon as any request is in


def prometheus(styles: list[str], model_name: str, values: Mapping[str, float],
               gpu_power: list[float] | None = None) -> str:
    """Prometheus exposition text of ``values`` (keys of ``METRIC_KEYS``) under each style's
    names, and the per-GPU power gauge when given."""
    lines = []
    for style in styles:
        names = servermetrics.ENGINE_METRICS[style]
        label = servermetrics.MODEL_LABEL.get(style, "model_name")
        for key in METRIC_KEYS:
            name = names.get(key)
            if name is None or key not in values:
                continue
            kind = "gauge" if key in servermetrics.GAUGES else "counter"
            lines += [f"# TYPE {name} {kind}", f"{name}{{{label}={json.dumps(model_name)}}} {values[key]:g}"]
    if gpu_power:
        lines.append(f"# TYPE {servermetrics.SIM_POWER} gauge")
        lines += [f'{servermetrics.SIM_POWER}{{gpu="{i}"}} {w:.3f}' for i, w in enumerate(gpu_power)]
    return "\n".join(lines) + "\n"


def prompt_tokens(body: dict[str, Any]) -> list[Any]:
    """The prompt of a completions or chat request as tokens of the simulated tokenizer: words
    (chat: the words of every message's content, in order), or the token ids given."""
    if "messages" in body:
        words: list[str] = []
        for message in body["messages"]:
            content = message.get("content", "")
            if isinstance(content, list):  # OpenAI content parts
                content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            words += str(content).split()
        return words
    prompt = body.get("prompt", "")
    if isinstance(prompt, list):
        if prompt and isinstance(prompt[0], list):
            raise ValueError("batched prompts are not supported")
        return list(prompt) if (not prompt or isinstance(prompt[0], int)) else " ".join(prompt).split()
    return str(prompt).split()


def count_prompt_tokens(body: dict[str, Any]) -> int:
    """Prompt tokens of a completions or chat request under the simulated tokenizer."""
    return len(prompt_tokens(body))


@dataclass(eq=False)
class PrefillJob:
    """A prompt waiting on a prefill worker, and the future its (start time, cache lookup) go to."""
    tokens: int
    blocks: list[int]
    done: asyncio.Future[tuple[float, kvcache.Lookup]]


@dataclass(eq=False)
class Request:
    id: str
    prompt_tokens: int
    max_tokens: int
    kv_tokens: int = 0  # > 0: the prompt was prefilled elsewhere, its KV arrives by transfer
    blocks: list[int] = field(default_factory=list)  # prefix-cache keys of the prompt's whole blocks
    generated: int = 0
    credit: float = 0.0  # tokens earned by decode steps and not yet emitted (speculative decoding)
    finished: bool = False
    cancelled: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    record: dict[str, Any] = field(default_factory=dict)
    answer: str | None = None  # a word problem's answer (ixhpc.sim.answers), sent instead of filler

    @property
    def context_tokens(self) -> int:
        return self.prompt_tokens + self.generated


class Engine:
    """Continuous batching: one scheduler task admits waiting requests and runs decode steps."""

    def __init__(self, cfg: model.SimConfig, role: str, name: str, time_scale: float,
                 spec_tokens: int = 0, stream_interval: int = 1,
                 cache: kvcache.CacheConfig = kvcache.DEFAULT) -> None:
        self.cfg, self.role, self.name, self.time_scale = cfg, role, name, time_scale
        self.spec_tokens, self.stream_interval = spec_tokens, max(1, stream_interval)
        self.tokens_per_step = 1 + sum(SPEC_ACCEPTANCE ** i for i in range(1, spec_tokens + 1))
        self.totals = {"prompt_tokens": 0, "generation_tokens": 0, "requests": 0}
        self.waiting: collections.deque[Request] = collections.deque()
        self.running: list[Request] = []
        self.prefill_queue: collections.deque[PrefillJob] = collections.deque()
        self.records: collections.deque[dict[str, Any]] = collections.deque(maxlen=MAX_RECORDS)
        self.kv_capacity = cache.gpu_tokens or model.kv_capacity_tokens(cfg)
        self.kv_reserved = 0
        self.cache = kvcache.PrefixCache(cache, self.kv_capacity, cfg.kv_bytes_per_token) if cache.enabled else None
        self._h2d = kvcache.h2d_bytes_per_s(cfg.gpu) * cfg.tp
        self._work = asyncio.Event()
        self._prefill_work = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._ids = itertools.count()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._decode_loop()), asyncio.create_task(self._prefill_loop())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for req in [*self.waiting, *self.running]:  # let open streams end instead of hanging
            req.finished = req.cancelled = True
            req.wake.set()

    def new_id(self) -> str:
        return f"cmpl-sim-{next(self._ids)}"

    # -- prefill role: a FIFO of prompt chunks, compute-bound, served back to back ----------
    async def prefill(self, tokens: int, blocks: list[int] | None = None) -> tuple[float, kvcache.Lookup]:
        """Wait for this prompt's prefill; return the perf_counter time it started and what the
        prefix cache held of it (``blocks``: its keys; none, no lookup)."""
        job = PrefillJob(tokens, blocks or [], asyncio.get_running_loop().create_future())
        self.prefill_queue.append(job)
        self._prefill_work.set()
        return await job.done

    async def _prefill_loop(self) -> None:
        """Batches of prompts up to ``max_prefill_tokens`` computed: a prompt's cached prefix is
        not computed (DRAM hits are copied in instead), its blocks are pinned while it runs and
        stay cached once its KV has left for the decode worker."""
        while True:
            if not self.prefill_queue:
                self._prefill_work.clear()
                await self._prefill_work.wait()
            batch: list[tuple[PrefillJob, kvcache.Lookup]] = []
            computed, loaded = 0, 0
            while self.prefill_queue:
                job = self.prefill_queue[0]
                found = self._lookup_blocks(job.blocks, job.tokens)
                if batch and computed + found.computed(job.tokens) > self.cfg.max_prefill_tokens:
                    break
                self.prefill_queue.popleft()
                self.kv_reserved += job.tokens
                if self.cache is not None and job.blocks:
                    self.cache.admit(job.blocks, found, job.tokens, self.kv_reserved)
                batch.append((job, found))
                computed += found.computed(job.tokens)
                loaded += found.dram_tokens
            start = time.perf_counter()
            step = loaded * self.cfg.kv_bytes_per_token / self._h2d + model.prefill_time(self.cfg, computed)
            await _sleep_until(start + step * self.time_scale)
            for job, found in batch:
                self.kv_reserved -= job.tokens
                if self.cache is not None:
                    self.cache.release(job.blocks)
                if not job.done.done():
                    job.done.set_result((start, found))

    # -- decode: continuous batching ------------------------------------------------------
    async def submit(self, req: Request) -> None:
        """Queue ``req`` (after its KV transfer, if it has one) for the decode loop."""
        if req.kv_tokens:
            await asyncio.sleep(model.kv_transfer_time(self.cfg, req.kv_tokens) * self.time_scale)
        req.record["kv_ready"] = time.perf_counter()
        self.waiting.append(req)
        self._work.set()

    def _admit(self) -> tuple[int, float]:
        """Move waiting requests into the batch; return (prompt tokens to prefill here, seconds
        of DRAM-to-GPU copies of prefix-cache hits)."""
        prefill_tokens, loaded = 0, 0
        while self.waiting and len(self.running) < self.cfg.max_batch:
            req = self.waiting[0]
            if req.cancelled:
                self.waiting.popleft()
                continue
            need = req.prompt_tokens + req.max_tokens
            if self.running and self.kv_reserved + need > self.kv_capacity:
                break  # KV cache full (evictable cached blocks aside): wait for sequences to finish
            found = self._lookup(req)
            cost = 0 if req.kv_tokens else found.computed(req.prompt_tokens)
            if prefill_tokens and prefill_tokens + cost > self.cfg.max_prefill_tokens:
                break
            self.waiting.popleft()
            self.kv_reserved += need
            if self.cache is not None and not req.kv_tokens:  # transferred KV: the prefill worker looked it up
                self.cache.admit(req.blocks, found, req.prompt_tokens, self.kv_reserved)
            req.record.update(cached_tokens=found.gpu_tokens, loaded_tokens=found.dram_tokens)
            prefill_tokens += cost
            loaded += found.dram_tokens
            self.running.append(req)
        return prefill_tokens, loaded * self.cfg.kv_bytes_per_token / self._h2d

    def _lookup(self, req: Request) -> kvcache.Lookup:
        return kvcache.Lookup(0, 0, 0) if req.kv_tokens else self._lookup_blocks(req.blocks, req.prompt_tokens)

    def _lookup_blocks(self, blocks: list[int], prompt_tokens: int) -> kvcache.Lookup:
        if self.cache is None or not blocks:
            return kvcache.Lookup(0, 0, 0)
        return self.cache.lookup(blocks, prompt_tokens)

    async def _decode_loop(self) -> None:
        start = time.perf_counter()
        while True:
            if not self.waiting and not self.running:
                self._work.clear()
                await self._work.wait()
                start = time.perf_counter()
            prefill_tokens, load_s = self._admit()
            context = sum(r.context_tokens for r in self.running)
            step = load_s + model.prefill_time(self.cfg, prefill_tokens) + model.decode_step_time(
                self.cfg, len(self.running), context
            ) * (1 + SPEC_STEP_COST * self.spec_tokens)
            await _sleep_until(start + step * self.time_scale)
            start = time.perf_counter()  # the next step runs while this one's tokens go out
            await self._emit()

    async def _emit(self) -> None:
        """Hand this step's token to every running request, OUTPUT_CHUNK streams per loop turn.

        Between chunks the event loop reads its sockets, so a request arriving during a burst
        of thousands of token writes is taken in within about a chunk's writes, not after the
        whole burst (vLLM's API server does the same, ``VLLM_V1_OUTPUT_PROC_CHUNK_SIZE``)."""
        still = []
        for i, req in enumerate(self.running, 1):
            if not req.cancelled:
                req.credit += self.tokens_per_step
                new = min(int(req.credit), req.max_tokens - req.generated)
                req.credit -= int(req.credit)
                req.generated += new
                req.finished = req.generated >= req.max_tokens
                req.wake.set()
            if req.finished or req.cancelled:
                self.kv_reserved -= req.prompt_tokens + req.max_tokens
                if self.cache is not None:
                    self.cache.release(req.blocks)
            else:
                still.append(req)
            if i % OUTPUT_CHUNK == 0:
                await asyncio.sleep(0)  # the woken streams write, then the loop polls its sockets
        self.running = still

    def metric_values(self) -> dict[str, float]:
        """The engine's figures under ``METRIC_KEYS`` (no preemption). KV usage is the running
        requests' share of the GPU pool (vLLM's: evictable cached blocks count as free)."""
        c = self.cache.counters if self.cache is not None else kvcache.Counters(queries=self.totals["prompt_tokens"])
        values: dict[str, float] = {
            **self.totals, "running": len(self.running), "waiting": len(self.waiting),
            "kv_cache_usage": min(1.0, self.kv_reserved / self.kv_capacity) if self.kv_capacity else 0.0,
            "prefix_cache_hit_rate": c.gpu_hits / c.queries if c.queries else 0.0,
            "prefix_cache_queries": c.queries, "prefix_cache_hits": c.gpu_hits, "preemptions": 0}
        if self.cache is not None and self.cache.cfg.dram_tokens:
            values.update(cpu_prefix_cache_queries=c.queries, cpu_prefix_cache_hits=c.dram_hits,
                          cpu_kv_cache_usage=self.cache.dram_usage(),
                          kv_offload_bytes_gpu_to_cpu=c.bytes_gpu_to_cpu,
                          kv_offload_bytes_cpu_to_gpu=c.bytes_cpu_to_gpu)
        return values

    def cache_lines(self, styles: list[str], model_name: str) -> list[str]:
        """The engines' own labelled cache figures the scraper's table does not hold (SPEC §5.5):
        vLLM's prompt tokens by source, SGLang's cached tokens by tier and its pool sizes."""
        if self.cache is None:
            return []
        c, name = self.cache.counters, json.dumps(model_name)
        computed = max(0, self.totals["prompt_tokens"] - c.gpu_hits - c.dram_hits)
        dram = self.cache.cfg.dram_tokens
        lines: list[str] = []
        if "vllm" in styles:
            lines.append("# TYPE vllm:prompt_tokens_by_source_total counter")
            lines += [f'vllm:prompt_tokens_by_source_total{{model_name={name},source="{src}"}} {v:g}'
                      for src, v in (("local_cache_hit", c.gpu_hits), ("external_kv_transfer", c.dram_hits),
                                     ("local_compute", computed))]
        if "sglang" in styles:
            lines.append("# TYPE sglang:cached_tokens_total counter")
            lines += [f'sglang:cached_tokens_total{{model_name={name},cache_source="{src}"}} {v:g}'
                      for src, v in (("device", c.gpu_hits), ("host", c.dram_hits))]
            lines += ["# TYPE sglang:max_total_num_tokens gauge",
                      f"sglang:max_total_num_tokens{{model_name={name}}} {self.kv_capacity}"]
            if dram:
                used = len(self.cache.dram) * self.cache.cfg.block_size
                lines += ["# TYPE sglang:hicache_host_used_tokens gauge",
                          f"sglang:hicache_host_used_tokens{{model_name={name}}} {used}",
                          "# TYPE sglang:hicache_host_total_tokens gauge",
                          f"sglang:hicache_host_total_tokens{{model_name={name}}} {dram}"]
        return lines

    def gpu_power(self) -> list[float]:
        """Simulated power draw of each of the engine's GPUs (W), from its load now."""
        peak = GPU_PEAK_W.get(self.cfg.gpu.upper(), 700.0)
        idle = peak * GPU_IDLE_FRACTION
        occupancy = 1.0 if self.prefill_queue else min(1.0, len(self.running) / max(1, self.cfg.max_batch))
        busy = bool(self.running or self.waiting or self.prefill_queue)
        watts = idle + (peak - idle) * ((IDLE_SHARE if busy else 0.0) + (1 - IDLE_SHARE) * occupancy)
        return [watts] * max(1, self.cfg.tp)

    def stats(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "running": len(self.running),
            "waiting": len(self.waiting),
            "prefill_queue": len(self.prefill_queue),
        }


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.perf_counter()
    await asyncio.sleep(delay if delay > 0 else 0)


# -- HTTP --------------------------------------------------------------------------------
class Api:
    def __init__(self, engine: Engine, model_name: str, metrics: list[str] | None = None,
                 fault: faults.Fault | None = None) -> None:
        self.engine, self.model_name = engine, model_name
        self.fault = fault  # a broken worker on purpose (ixhpc.sim.faults)
        self.metric_styles = metrics or ["sim"]
        self._model_json = json.dumps(model_name)

    async def metrics(self, request: web.Request) -> web.Response:
        text = prometheus(self.metric_styles, self.model_name, self.engine.metric_values(), self.engine.gpu_power())
        extra = self.engine.cache_lines(self.metric_styles, self.model_name)
        return web.Response(text=text + "".join(line + "\n" for line in extra),
                            content_type="text/plain", charset="utf-8")

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "simulated": True, **self.engine.stats()})

    async def models(self, request: web.Request) -> web.Response:
        entry = {
            "id": self.model_name,
            "object": "model",
            "owned_by": "ixhpc-simulated",
            "simulated": True,
            "description": f"{SIM_BANNER}: role={self.engine.role} gpu={self.engine.cfg.gpu} tp={self.engine.cfg.tp}",
        }
        return web.json_response({"object": "list", "data": [entry]})

    async def timings(self, request: web.Request) -> web.Response:
        records = list(self.engine.records)
        if request.query.get("clear"):
            self.engine.records.clear()
        return web.json_response({"clock": "time.perf_counter", "worker": self.engine.name, "records": records})

    async def prefill(self, request: web.Request) -> web.Response:
        arrival = listener.arrival()
        try:
            body = await json_body(request)
        except ValueError as exc:
            return error_response(400, str(exc))
        tokens = body.get("prompt_tokens")
        if not isinstance(tokens, int) or tokens < 0:
            return error_response(400, "prompt_tokens must be a non-negative integer")
        try:
            blocks = self._prefill_blocks(body.get("request"), tokens)
        except (ValueError, TypeError, AttributeError) as exc:
            return error_response(400, f"request: {exc}")
        rid = str(body.get("id") or self.engine.new_id())
        record = {"id": rid, "role": "prefill", "arrival": arrival, "prompt_tokens": tokens}
        self.engine.records.append(record)
        self.engine.totals["prompt_tokens"] += tokens  # what a prefill worker's engine counts
        self.engine.totals["requests"] += 1
        record["start"], found = await self.engine.prefill(tokens, blocks)
        record.update(end=time.perf_counter(), cached_tokens=found.gpu_tokens, loaded_tokens=found.dram_tokens)
        return web.json_response({"id": rid, "kv_tokens": tokens, "prefill_worker": self.engine.name,
                                  "cached_tokens": found.gpu_tokens + found.dram_tokens})

    def _prefill_blocks(self, request: Any, tokens: int) -> list[int]:
        """The prefix-cache keys of the client's request a prefill worker is given (none without it)."""
        cache = self.engine.cache
        if request is None or cache is None:
            return []
        if not isinstance(request, dict):
            raise ValueError("must be the client's request object")
        words = prompt_tokens(request)
        if len(words) != tokens:
            raise ValueError(f"has {len(words)} prompt tokens, prompt_tokens says {tokens}")
        return kvcache.block_keys(words, cache.cfg.block_size)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    async def _generate(self, request: web.Request, chat: bool) -> web.StreamResponse:
        arrival, handled = listener.arrival(), time.perf_counter()
        if self.engine.role == "prefill":
            return error_response(400, "this is a prefill worker: send completions through the router")
        try:
            body = await json_body(request)
            req = self._parse(body, request, chat)
            req.answer = answers.reply(body)
        except (ValueError, TypeError, AttributeError) as exc:
            return error_response(400, str(exc))
        req.record.update(
            id=req.id, role=self.engine.role, arrival=arrival, handled=handled, prompt_tokens=req.prompt_tokens,
            max_tokens=req.max_tokens, kv_tokens=req.kv_tokens,
            prefill_worker=request.headers.get("X-Sim-Prefill-Worker", ""), token_times=[],
        )
        self.engine.records.append(req.record)
        self.engine.totals["requests"] += 1
        self.engine.totals["prompt_tokens"] += req.prompt_tokens
        try:
            await self.engine.submit(req)
            if body.get("stream"):
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                return await self._stream(request, req, chat, include_usage)
            return await self._whole(req, chat)
        finally:
            self.engine.totals["generation_tokens"] += req.generated
            req.cancelled = req.cancelled or not req.finished
            req.record["finished"] = time.perf_counter()
            req.record["status"] = "cancelled" if req.cancelled else "ok"

    def _parse(self, body: dict[str, Any], request: web.Request, chat: bool) -> Request:
        if chat and not isinstance(body.get("messages"), list):
            raise ValueError("messages must be a list")
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens", 16))
        if not isinstance(max_tokens, int) or not 1 <= max_tokens <= MAX_SEQUENCE_TOKENS:
            raise ValueError(f"max_tokens must be an integer in [1, {MAX_SEQUENCE_TOKENS}]")
        tokens = prompt_tokens(body)
        rid = request.headers.get("X-Sim-Request-Id") or request.headers.get("X-Request-Id") or self.engine.new_id()
        if not body.get("ignore_eos"):  # stand-in for an EOS: a stable length per request id
            max_tokens = random.Random(rid).randint((max_tokens + 1) // 2, max_tokens)
        kv = request.headers.get("X-Sim-KV-Tokens")
        kv_tokens = int(kv[:12]) if kv and kv.isascii() and kv.isdigit() else 0
        if kv_tokens > MAX_SEQUENCE_TOKENS or (kv is not None and len(kv) > 12):
            raise ValueError(f"X-Sim-KV-Tokens must be at most {MAX_SEQUENCE_TOKENS}")
        cache = self.engine.cache
        blocks = kvcache.block_keys(tokens, cache.cfg.block_size) if cache is not None and not kv_tokens else []
        return Request(id=rid, prompt_tokens=len(tokens), max_tokens=max_tokens, kv_tokens=kv_tokens, blocks=blocks)

    def chunk(self, req: Request, chat: bool, text: str | None, finish: str | None) -> bytes:
        """One SSE chunk of ``req``'s stream: a token's ``text``, or (None) the end's ``finish``."""
        reason = "null" if finish is None else f'"{finish}"'
        head = f'data: {{"id":{json.dumps(req.id)},"created":{int(time.time())},"model":{self._model_json},'
        if chat:
            delta = "{}" if text is None else f'{{"content":"{text}"}}'
            tail = (f'"object":"chat.completion.chunk","choices":[{{"index":0,"delta":{delta},'
                    f'"finish_reason":{reason}}}]}}\n\n')
        else:
            tail = (f'"object":"text_completion","choices":[{{"index":0,"text":"{text or ""}",'
                    f'"logprobs":null,"finish_reason":{reason}}}]}}\n\n')
        return (head + tail).encode()

    def token_chunk(self, req: Request, chat: bool) -> bytes:
        """The chunk of one generated token (every token is the same word)."""
        return self.chunk(req, chat, TOKEN_TEXT, None)

    def _usage(self, req: Request, completion_tokens: int | None = None) -> dict[str, int]:
        done = req.generated if completion_tokens is None else completion_tokens
        return {"prompt_tokens": req.prompt_tokens, "completion_tokens": done,
                "total_tokens": req.prompt_tokens + done}

    def ending(self, req: Request, chat: bool, finish: str, include_usage: bool,
               completion_tokens: int | None = None) -> bytes:
        """A stream's last chunk, its usage event (when asked for: ``completion_tokens``, else
        every token generated) and ``[DONE]``."""
        out = self.chunk(req, chat, None, finish)
        if include_usage:
            usage = {"id": req.id, "object": "text_completion", "choices": [],
                     "usage": self._usage(req, completion_tokens)}
            out += b"data: " + json.dumps(usage).encode() + b"\n\n"
        return out + b"data: [DONE]\n\n"

    async def _stream(self, request: web.Request, req: Request, chat: bool, include_usage: bool) -> web.StreamResponse:
        if self.fault is not None:
            return await faults.stream(self, request, req, chat, include_usage, self.fault)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        token_chunk = self.token_chunk(req, chat)
        times = req.record["token_times"]
        sent = 0
        while not req.finished:
            await req.wake.wait()
            req.wake.clear()
            new = req.generated - sent
            if new <= 0 or (new < self.engine.stream_interval and not req.finished):
                continue
            out = token_chunk * new
            if req.finished:
                out += self.ending(req, chat, "length" if req.max_tokens == req.generated else "stop", include_usage)
            now = time.perf_counter()
            times.extend([now] * new)
            sent = req.generated
            await resp.write(out)
        await resp.write_eof()
        return resp

    async def _whole(self, req: Request, chat: bool) -> web.Response:
        while not req.finished:
            await req.wake.wait()
            req.wake.clear()
        text = TOKEN_TEXT * req.generated if req.answer is None else req.answer
        choice: dict[str, Any] = {"index": 0, "finish_reason": "length"}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        req.record["token_times"].append(time.perf_counter())
        return web.json_response({
            "id": req.id, "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()), "model": self.model_name, "choices": [choice], "usage": self._usage(req),
        })


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError("request body must be a JSON object")
    return body


def error_response(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": "invalid_request_error", "code": status}},
                             status=status)


def make_app(engine: Engine, model_name: str, metrics: list[str] | None = None,
             metrics_path: str = "/metrics", fault: faults.Fault | None = None) -> web.Application:
    api = Api(engine, model_name, metrics, fault)
    app = web.Application(client_max_size=64 * 1024**2, middlewares=[listener.stamp_arrival])
    app.router.add_get("/health", api.health)
    app.router.add_get(metrics_path, api.metrics)
    app.router.add_get("/v1/models", api.models)
    app.router.add_get("/sim/timings", api.timings)
    app.router.add_post("/sim/prefill", api.prefill)
    app.router.add_post("/v1/completions", api.completions)
    app.router.add_post("/v1/chat/completions", api.chat)

    async def lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
        engine.start()
        yield
        await engine.stop()

    app.cleanup_ctx.append(lifecycle)
    return app
