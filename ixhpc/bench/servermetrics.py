"""Server metrics during a benchmark: scrape each engine's and router's Prometheus ``/metrics``.

``ENGINE_METRICS`` is the one table of metric names: per engine style, the Prometheus name of
each figure ixhpc keeps (``KEYS``). The engine stand-ins (``ixhpc.sim.server``) expose exactly
these names, and the scraper recognises any of them, whatever the engine: a target's style is
whichever names it exposes (a Dynamo worker passing its engine's metrics through exposes two
styles: the earlier one in the table wins per figure).

The scraper is one daemon thread of the client process: one ``GET`` per target per interval,
the text parsed line by line keeping only the table's names (sum over label sets; fractions are
averaged), each sample stamped with ``time.perf_counter()`` when its answer arrived: the
client's own clock, the one its per-request times use; a last scrape when the benchmark ends
gives every series a sample at its end. Memory is bounded: a series holds at
most ``MAX_SAMPLES`` samples; when full, every other one is dropped and the interval doubles.

``summarize`` derives the figures users look at from the series over the benchmark's window
(stdlib only: the client's bundle and ingest both use it).
"""

from __future__ import annotations

import math
import threading
import time
import urllib.request
from array import array
from collections.abc import Iterable
from typing import Any

KEYS = ("running", "waiting", "kv_cache_usage", "prefix_cache_hit_rate", "prefix_cache_queries",
        "prefix_cache_hits", "preemptions", "prompt_tokens", "generation_tokens", "requests",
        # the DRAM (offload) tier: its prefix-cache queries and hits in prompt tokens, its usage,
        # the bytes copied each way
        "cpu_prefix_cache_queries", "cpu_prefix_cache_hits", "cpu_kv_cache_usage",
        "kv_offload_bytes_gpu_to_cpu", "kv_offload_bytes_cpu_to_gpu")
GAUGES = frozenset({"running", "waiting", "kv_cache_usage", "prefix_cache_hit_rate", "cpu_kv_cache_usage"})
FRACTIONS = frozenset({"kv_cache_usage", "prefix_cache_hit_rate", "cpu_kv_cache_usage"})  # 0..1, averaged

# style -> figure -> Prometheus name (absent: the engine does not expose it). Names from each
# engine's metrics documentation; vLLM's ``kv_cache_usage_perc`` is a fraction despite its name.
ENGINE_METRICS: dict[str, dict[str, str]] = {
    "sim": {k: f"ixhpc_sim_{k}" + ("" if k in GAUGES else "_total") for k in KEYS},
    "vllm": {"running": "vllm:num_requests_running", "waiting": "vllm:num_requests_waiting",
             "kv_cache_usage": "vllm:kv_cache_usage_perc",
             "prefix_cache_queries": "vllm:prefix_cache_queries_total",
             "prefix_cache_hits": "vllm:prefix_cache_hits_total",
             "preemptions": "vllm:num_preemptions_total", "prompt_tokens": "vllm:prompt_tokens_total",
             "generation_tokens": "vllm:generation_tokens_total", "requests": "vllm:request_success_total",
             "cpu_prefix_cache_queries": "vllm:external_prefix_cache_queries_total",
             "cpu_prefix_cache_hits": "vllm:external_prefix_cache_hits_total",
             "cpu_kv_cache_usage": "vllm:cpu_kv_cache_usage_perc",
             "kv_offload_bytes_gpu_to_cpu": "vllm:kv_offload_bytes_gpu_to_cpu_total",
             "kv_offload_bytes_cpu_to_gpu": "vllm:kv_offload_bytes_cpu_to_gpu_total"},
    "sglang": {"running": "sglang:num_running_reqs", "waiting": "sglang:num_queue_reqs",
               "kv_cache_usage": "sglang:token_usage", "prefix_cache_hit_rate": "sglang:cache_hit_rate",
               "prompt_tokens": "sglang:prompt_tokens_total",
               "generation_tokens": "sglang:generation_tokens_total", "requests": "sglang:num_requests_total"},
    # trtllm-serve 1.x (/prometheus/metrics): request counters; KV-cache gauges from 1.1 on
    "trtllm": {"kv_cache_usage": "trtllm_kv_cache_utilization",
               "prefix_cache_hit_rate": "trtllm_kv_cache_hit_rate",
               "requests": "trtllm_request_success_total"},
    # ATOM's OpenAI server reports vLLM-style names (from its documentation, not verified)
    "atom": {"running": "atom:num_requests_running", "waiting": "atom:num_requests_waiting",
             "kv_cache_usage": "atom:kv_cache_usage_perc", "preemptions": "atom:num_preemptions_total",
             "prompt_tokens": "atom:prompt_tokens_total", "generation_tokens": "atom:generation_tokens_total",
             "requests": "atom:request_success_total"},
    # Dynamo: the workers' runtime metrics (their engine's pass through beside them), the frontend's
    "dynamo_component": {"running": "dynamo_component_inflight_requests",
                         "kv_cache_usage": "dynamo_component_kvstats_gpu_cache_usage_percent",
                         "prefix_cache_hit_rate": "dynamo_component_kvstats_gpu_prefix_cache_hit_rate",
                         "requests": "dynamo_component_requests_total"},
    "dynamo_frontend": {"running": "dynamo_frontend_inflight_requests",
                        "waiting": "dynamo_frontend_queued_requests",
                        "requests": "dynamo_frontend_requests_total"},
}
MODEL_LABEL = {"sim": "model", "dynamo_component": "model", "dynamo_frontend": "model"}  # else model_name
STYLE_ORDER = tuple(ENGINE_METRICS)
_BY_NAME: dict[str, tuple[int, str]] = {
    name: (rank, key) for rank, style in enumerate(STYLE_ORDER) for key, name in ENGINE_METRICS[style].items()
}
SIM_POWER = "ixhpc_sim_gpu_power_watts"  # the simulated engine's per-GPU power gauge (label gpu)

DEFAULT_INTERVAL = 1.0  # seconds between scrapes of one target
MAX_SAMPLES = 4096      # per series; then halved and the interval doubled
MAX_BODY = 8 << 20      # bytes read of one /metrics answer


def parse(text: Iterable[str]) -> dict[str, float]:
    """figure -> value of one ``/metrics`` answer: the table's names only, summed over label sets
    (fractions averaged); per figure, the earliest style in the table that exposes it."""
    sums: dict[tuple[int, str], list[float]] = {}
    for line in text:
        if not line or line[0] == "#":
            continue
        brace = line.find("{")
        space = line.find(" ")
        end = brace if 0 <= brace < space or (brace >= 0 > space) else space
        hit = _BY_NAME.get(line[:end] if end >= 0 else line)
        if hit is None:
            continue
        close = line.rfind("}")
        fields = (line[close + 1:] if close >= 0 else line[end:]).split()
        try:
            value = float(fields[0])
        except (IndexError, ValueError):
            continue
        acc = sums.setdefault(hit, [0.0, 0.0])
        acc[0] += value
        acc[1] += 1
    out: dict[str, float] = {}
    for (_, key), (total, n) in sorted(sums.items()):
        if key not in out and math.isfinite(total):
            out[key] = total / n if key in FRACTIONS else total
    return out


def parse_labelled(text: Iterable[str], name: str, label: str) -> dict[str, float]:
    """label value -> value of every sample of metric ``name`` (e.g. the sim's per-GPU power)."""
    out: dict[str, float] = {}
    key = f'{label}="'
    for line in text:
        if not line.startswith(name + "{"):
            continue
        at = line.find(key)
        close = line.rfind("}")
        if at < 0 or close < 0:
            continue
        start = at + len(key)
        try:
            out[line[start:line.index('"', start)]] = float(line[close + 1:].split()[0])
        except (IndexError, ValueError):
            continue
    return out


def fetch(url: str, timeout: float) -> list[str]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - the plan's own URLs
        body: bytes = resp.read(MAX_BODY)
    return body.decode("utf-8", "replace").splitlines()


class Series:
    """(time, value) samples of one figure, at most ``MAX_SAMPLES``."""

    def __init__(self) -> None:
        self.t, self.v = array("d"), array("d")

    def add(self, t: float, v: float) -> bool:
        """Append; True when the series was full and got halved."""
        self.t.append(t)
        self.v.append(v)
        if len(self.t) < MAX_SAMPLES:
            return False
        self.t, self.v = self.t[::2], self.v[::2]
        return True


class Target:
    def __init__(self, role: str, url: str) -> None:
        self.role, self.url = role, url
        self.series: dict[str, Series] = {}
        self.scrapes = 0
        self.errors = 0
        self.last_error = ""

    def record(self, t: float, values: dict[str, float]) -> bool:
        halved = False
        for key, v in values.items():
            halved |= self.series.setdefault(key, Series()).add(t, v)
        return halved


def parse_target(spec: str) -> tuple[str, str]:
    """``ROLE=URL`` (or a bare URL: role ``server``)."""
    role, sep, url = spec.partition("=")
    if not sep or role.startswith(("http://", "https://")):
        role, url = "server", spec
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"--metrics-url {spec}: expected ROLE=http://HOST:PORT/PATH")
    return role, url


class Scraper:
    """Scrapes every target each ``interval`` seconds in a daemon thread until ``stop``."""

    def __init__(self, targets: list[tuple[str, str]], interval: float = DEFAULT_INTERVAL) -> None:
        self.targets = [Target(role, url) for role, url in targets]
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ixhpc-metrics", daemon=True)

    def start(self) -> Scraper:
        if self.targets:
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread, then scrape once more: every series has a sample at the end."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval + 10.0)
            self.scrape_once()

    def scrape_once(self) -> None:
        halved = False
        for tg in self.targets:
            try:
                lines = fetch(tg.url, timeout=max(1.0, self.interval))
            except Exception as exc:  # noqa: BLE001 - a failed scrape is counted, never fatal
                tg.errors += 1
                tg.last_error = f"{type(exc).__name__}: {exc}"[:200]
                continue
            tg.scrapes += 1
            halved |= tg.record(time.perf_counter(), parse(lines))
        if halved:
            self.interval *= 2

    def _run(self) -> None:
        next_at = time.perf_counter()
        while not self._stop.is_set():
            self.scrape_once()
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.perf_counter()))

    def document(self, origin: float, duration: float) -> dict[str, Any]:
        """The bench JSON's ``server_metrics``: times relative to ``origin`` (the benchmark's
        start, ``time.perf_counter()``), the clock's wall offset, the series and the figures."""
        offset = time.time() - time.perf_counter()
        targets = [{"role": tg.role, "url": tg.url, "scrapes": tg.scrapes, "errors": tg.errors,
                    "last_error": tg.last_error,
                    "series": {k: {"t": [x - origin for x in s.t], "v": list(s.v)}
                               for k, s in sorted(tg.series.items())}}
                   for tg in self.targets]
        return {"interval_s": self.interval,
                "clock": {"origin_perf_counter": origin, "origin_unix": origin + offset,
                          "unix_minus_perf_counter": offset},
                "targets": targets, "summary": summarize(targets, 0.0, duration)}


# ------------------------------------------------------------------------- derived figures


def role_kind(role: str) -> str:
    """prefill-0 -> prefill; server, router, decode-1 -> their kind."""
    return role.split("-", 1)[0]


def _window(t: list[float], v: list[float], t0: float, t1: float) -> list[float]:
    return [x for s, x in zip(t, v, strict=True) if t0 <= s <= t1]


def _at(t: list[float], v: list[float], x: float) -> float:
    """A counter's value at ``x``: linear between samples, clamped to the first/last."""
    if not t:
        return math.nan
    if x <= t[0]:
        return v[0]
    for i in range(1, len(t)):
        if x <= t[i]:
            span = t[i] - t[i - 1]
            return v[i] if span <= 0 else v[i - 1] + (v[i] - v[i - 1]) * (x - t[i - 1]) / span
    return v[-1]


def _delta(s: dict[str, list[float]], t0: float, t1: float) -> float:
    return _at(s["t"], s["v"], t1) - _at(s["t"], s["v"], t0)


def summarize(targets: list[dict[str, Any]], t0: float, t1: float) -> dict[str, float]:
    """Figures over [t0, t1] (seconds on the series' clock), prefixed ``srv_``: engine targets
    only (a router repeats its engines' requests) unless no engine exposed anything.

    running/waiting: ``_mean`` the sum over engines of each one's mean, ``_max`` the largest
    one engine showed; kv_cache_usage: mean and max over engines (fraction); prefix_cache_hit_rate:
    hits / queries over the window where counted, else the engines' mean gauge (``srv_cpu_...``:
    the DRAM tier's hits over the same queries, and its usage); preemptions: the
    counters' increase; prefill / decode tokens per second: the increase of prompt tokens on
    prefill (or aggregated) engines and of generated tokens on decode (or aggregated) engines."""
    engines = [tg for tg in targets if role_kind(str(tg["role"])) != "router" and tg["series"]]
    chosen = engines or [tg for tg in targets if tg["series"]]
    span = t1 - t0
    out: dict[str, float] = {"srv_targets": float(len(targets)),
                             "srv_scrapes": float(sum(int(tg["scrapes"]) for tg in targets)),
                             "srv_scrape_errors": float(sum(int(tg["errors"]) for tg in targets))}

    def gauge(key: str) -> tuple[list[float], list[float]]:
        means, maxes = [], []
        for tg in chosen:
            s = tg["series"].get(key)
            vals = _window(s["t"], s["v"], t0, t1) if s else []
            if vals:
                means.append(sum(vals) / len(vals))
                maxes.append(max(vals))
        return means, maxes

    for key in ("running", "waiting"):
        means, maxes = gauge(key)
        if means:
            out[f"srv_{key}_mean"], out[f"srv_{key}_max"] = sum(means), max(maxes)
    for key in ("kv_cache_usage", "cpu_kv_cache_usage"):
        means, maxes = gauge(key)
        if means:
            out[f"srv_{key}_mean"], out[f"srv_{key}_max"] = sum(means) / len(means), max(maxes)
    counted = [tg for tg in chosen if "prefix_cache_queries" in tg["series"] and "prefix_cache_hits" in tg["series"]]
    if counted:
        queries = sum(_delta(tg["series"]["prefix_cache_queries"], t0, t1) for tg in counted)
        hits = sum(_delta(tg["series"]["prefix_cache_hits"], t0, t1) for tg in counted)
        out["srv_prefix_cache_hit_rate"] = hits / queries if queries > 0 else math.nan
        cpu = [tg for tg in counted if "cpu_prefix_cache_hits" in tg["series"]]  # a DRAM tier's share
        if cpu and queries > 0:
            out["srv_cpu_prefix_cache_hit_rate"] = sum(
                _delta(tg["series"]["cpu_prefix_cache_hits"], t0, t1) for tg in cpu) / queries
    else:
        means, _ = gauge("prefix_cache_hit_rate")
        if means:
            out["srv_prefix_cache_hit_rate"] = sum(means) / len(means)
    pre = [tg["series"]["preemptions"] for tg in chosen if "preemptions" in tg["series"]]
    if pre:
        out["srv_preemptions"] = sum(_delta(s, t0, t1) for s in pre)
    for figure, key, kinds in (("srv_prefill_tokens_per_s", "prompt_tokens", ("prefill", "server")),
                               ("srv_decode_tokens_per_s", "generation_tokens", ("decode", "server"))):
        ss = [tg["series"][key] for tg in chosen if key in tg["series"] and role_kind(str(tg["role"])) in kinds]
        if ss and span > 0:
            out[figure] = sum(_delta(s, t0, t1) for s in ss) / span
    return out
