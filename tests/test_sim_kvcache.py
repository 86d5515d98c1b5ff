"""The simulated engine's prefix cache: chained block keys, LRU eviction from a finite GPU pool
into an optional DRAM tier, and what the server reports for it."""

from __future__ import annotations

import json
import urllib.request

from test_sim_server import FAST, post, run, sim_process

from ixhpc.bench import servermetrics
from ixhpc.sim import kvcache


def _words(n: int, tag: str) -> list[str]:
    return [f"{tag}{i}" for i in range(n)]


def test_block_keys_are_chained_prefix_keys() -> None:
    a = kvcache.block_keys(_words(200, "a"), 64)
    assert len(a) == 3  # whole blocks only: 8 tokens of the last block are not cached
    b = kvcache.block_keys(_words(128, "a") + _words(72, "b"), 64)
    assert a[:2] == b[:2] and a[2] != b[2]
    c = kvcache.block_keys(["x"] + _words(199, "a"), 64)  # one token in front changes every key
    assert not set(a) & set(c)


def test_lru_eviction_into_dram_and_hits_by_tier() -> None:
    cfg = kvcache.CacheConfig(gpu_tokens=256, dram_tokens=256)
    cache = kvcache.PrefixCache(cfg, 256, kv_bytes_per_token=10.0)

    def serve(keys: list[int], prompt: int) -> kvcache.Lookup:
        found = cache.lookup(keys, prompt)
        cache.admit(keys, found, prompt, reserved=prompt)
        cache.release(keys)
        return found

    first = serve([1, 2], 128)
    assert (first.gpu_tokens, first.dram_tokens) == (0, 0)
    again = serve([1, 2, 3], 192)
    assert (again.gpu_tokens, again.dram_tokens) == (128, 0)
    exact = serve([1, 2, 3], 192)
    assert exact.gpu_tokens == 191  # an engine recomputes at least one token
    serve([7, 8, 9], 192)  # 6 blocks > 4 fit: the oldest of 1, 2, 3 go to DRAM
    assert list(cache.lru) == [3, 7, 8, 9] and list(cache.dram) == [1, 2]
    back = serve([1, 2, 3, 4], 256)
    assert (back.gpu_tokens, back.dram_tokens, back.dram_blocks) == (0, 128, 2)
    c = cache.counters
    assert c.gpu_hits == 128 + 191 and c.dram_hits == 128 and c.queries == 128 + 192 * 3 + 256
    assert c.bytes_cpu_to_gpu == 128 * 10.0 and c.bytes_gpu_to_cpu > 0
    no_dram = kvcache.PrefixCache(kvcache.CacheConfig(gpu_tokens=128), 128, 10.0)
    no_dram.admit([1, 2, 3], no_dram.lookup([1, 2, 3], 192), 192, reserved=192)
    no_dram.release([1, 2, 3])
    no_dram.evict(0)
    assert len(no_dram.lru) == 2 and not no_dram.dram  # evicted blocks are gone


def _metrics(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url + "/metrics") as r:
        return servermetrics.parse(r.read().decode().splitlines())


def test_server_hashes_the_prompt_text_and_reports_hits() -> None:
    history = " ".join(_words(640, "w"))
    with sim_process("serve", *FAST, "--kv-capacity-tokens", "100000") as url:
        for text in (history, history + " " + " ".join(_words(100, "new"))):
            body = {"messages": [{"role": "user", "content": text}], "max_tokens": 2, "ignore_eos": True}
            status, raw = run(post(url + "/v1/chat/completions", body))
            assert status == 200, raw
        m = _metrics(url)
        assert m["prefix_cache_queries"] == 640 + 740 and m["prefix_cache_hits"] == 640
        assert abs(m["prefix_cache_hit_rate"] - 640 / 1380) < 1e-5
    with sim_process("serve", *FAST, "--no-prefix-caching") as url:
        for _ in range(2):
            run(post(url + "/v1/completions", {"prompt": history, "max_tokens": 2, "ignore_eos": True}))
        m = _metrics(url)
        assert m["prefix_cache_hits"] == 0 and m["prefix_cache_queries"] == 2 * 640


def test_a_disaggregated_prefill_worker_keeps_the_prefix_cache() -> None:
    """The router hands the prefill worker the request: it keys its cache by the prompt, a hit
    skips that prefill there, and the decode worker (whole KV transferred) looks nothing up."""
    import contextlib

    from test_sim_server import records

    history = " ".join(_words(640, "w"))
    with contextlib.ExitStack() as stack:
        prefill = stack.enter_context(sim_process("serve", "--role", "prefill", *FAST))
        decode = stack.enter_context(sim_process("serve", "--role", "decode", *FAST))
        router = stack.enter_context(sim_process("router", "--prefill", prefill, "--decode", decode))
        for text in (history, history + " " + " ".join(_words(100, "new"))):
            body = {"messages": [{"role": "user", "content": text}], "max_tokens": 2, "ignore_eos": True}
            status, raw = run(post(router + "/v1/chat/completions", body))
            assert status == 200, raw
        m = _metrics(prefill)
        assert m["prefix_cache_queries"] == 640 + 740 and m["prefix_cache_hits"] == 640
        assert _metrics(decode)["prefix_cache_queries"] == 0
        first, second = records(prefill)
        assert (first["cached_tokens"], second["cached_tokens"]) == (0, 640)
        assert [r["kv_tokens"] for r in records(decode)] == [640, 740]  # the whole KV still moves
        status, raw = run(post(prefill + "/sim/prefill", {"prompt_tokens": 3, "request": {"prompt": "a b"}}))
        assert status == 400 and b"2 prompt tokens" in raw


def test_dram_tier_metrics_per_engine_style() -> None:
    from ixhpc.sim import model, server

    engine = server.Engine(model.SimConfig(), "both", "t", 0.01,
                           cache=kvcache.CacheConfig(gpu_tokens=1000, dram_tokens=5000))
    text = server.prometheus(["vllm", "sglang"], "m", engine.metric_values()) + "\n".join(
        engine.cache_lines(["vllm", "sglang"], "m"))
    for name in ("vllm:prefix_cache_hits_total", "vllm:external_prefix_cache_hits_total",
                 "vllm:cpu_kv_cache_usage_perc", "vllm:kv_offload_bytes_gpu_to_cpu_total",
                 'vllm:prompt_tokens_by_source_total{model_name="m",source="external_kv_transfer"}',
                 'sglang:cached_tokens_total{model_name="m",cache_source="host"}',
                 "sglang:hicache_host_total_tokens", "sglang:max_total_num_tokens"):
        assert name in text, name
    assert json.dumps(servermetrics.parse(text.splitlines()))  # the scraper reads it


def test_bad_cache_options_are_one_line_errors() -> None:
    import subprocess
    import sys

    for args in (["--kv-offloading", "dram"], ["--total-cpu-dram-gb", "8"], ["--kv-capacity-tokens", "-5"],
                 ["--kv-offloading", "dram", "--total-cpu-dram-gb", "8", "--no-prefix-caching"]):
        p = subprocess.run([sys.executable, "-m", "ixhpc.sim", "serve", "--port", "0", *args],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode != 0 and "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
