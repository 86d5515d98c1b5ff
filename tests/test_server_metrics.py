"""Server metrics: each engine's Prometheus names (as the stand-ins expose them), the parser,
the bounded series and the derived figures."""

from __future__ import annotations

import pytest

from ixhpc.bench import servermetrics as sm
from ixhpc.sim import server

VALUES = {"running": 7, "waiting": 3, "kv_cache_usage": 0.25, "prefix_cache_hit_rate": 0.5,
          "prefix_cache_queries": 1000, "prefix_cache_hits": 400, "preemptions": 2,
          "prompt_tokens": 5000, "generation_tokens": 900, "requests": 11,
          "cpu_prefix_cache_queries": 1000, "cpu_prefix_cache_hits": 300, "cpu_kv_cache_usage": 0.75,
          "kv_offload_bytes_gpu_to_cpu": 4096, "kv_offload_bytes_cpu_to_gpu": 2048}


@pytest.mark.parametrize("style", sorted(sm.ENGINE_METRICS))
def test_each_engines_names_parse_back_from_the_standins_output(style):
    text = server.prometheus([style], "my model", VALUES)
    got = sm.parse(text.splitlines())
    assert got == {k: pytest.approx(VALUES[k]) for k in sm.ENGINE_METRICS[style]}
    assert 'model' in text and "# TYPE" in text


def test_engine_specific_names_are_the_engines_own():
    assert sm.ENGINE_METRICS["vllm"]["kv_cache_usage"] == "vllm:kv_cache_usage_perc"
    assert sm.ENGINE_METRICS["sglang"]["waiting"] == "sglang:num_queue_reqs"
    assert sm.ENGINE_METRICS["trtllm"]["requests"] == "trtllm_request_success_total"
    assert sm.ENGINE_METRICS["dynamo_frontend"]["running"] == "dynamo_frontend_inflight_requests"
    assert sm.ENGINE_METRICS["atom"]["running"] == "atom:num_requests_running"


def test_label_sets_are_summed_fractions_averaged_others_ignored():
    text = """# HELP vllm:num_requests_running running
vllm:num_requests_running{engine="0",model_name="a b"} 3
vllm:num_requests_running{engine="1",model_name="a b"} 4
vllm:kv_cache_usage_perc{engine="0"} 0.2
vllm:kv_cache_usage_perc{engine="1"} 0.4
vllm:time_to_first_token_seconds_bucket{le="0.1"} 12
vllm:generation_tokens_total 1.5e3 1700000000000
bogus line
vllm:num_requests_waiting{x="1"} NaNx
"""
    assert sm.parse(text.splitlines()) == {"running": 7, "kv_cache_usage": pytest.approx(0.3),
                                           "generation_tokens": 1500}


def test_a_dynamo_worker_passing_its_engines_metrics_counts_once():
    text = server.prometheus(["dynamo_component", "sglang"], "m", VALUES)
    assert sm.parse(text.splitlines())["running"] == 7  # sglang's, not also dynamo's


def test_series_stay_bounded():
    s = sm.Series()
    halved = [s.add(float(i), 1.0) for i in range(sm.MAX_SAMPLES * 3)]
    assert len(s.t) < sm.MAX_SAMPLES and sum(halved) >= 2


def _target(role, **series):
    return {"role": role, "url": "http://x", "scrapes": 10, "errors": 1,
            "series": {k: {"t": [float(t) for t, _ in pts], "v": [float(v) for _, v in pts]}
                       for k, pts in series.items()}}


def test_figures_over_the_window_engines_only():
    prefill = _target("prefill-0", running=[(0, 2), (5, 4), (10, 0)], prompt_tokens=[(-2, 0), (10, 12_000)],
                      kv_cache_usage=[(0, 0.2), (10, 0.4)])
    decode = _target("decode-0", running=[(0, 10), (10, 20)], waiting=[(0, 1), (10, 3)],
                     generation_tokens=[(0, 100), (10, 1100)], prompt_tokens=[(0, 0), (10, 99_999)],
                     prefix_cache_queries=[(0, 0), (10, 100)], prefix_cache_hits=[(0, 0), (10, 25)],
                     preemptions=[(0, 5), (10, 8)], kv_cache_usage=[(0, 0.6), (10, 0.8)])
    router = _target("router", running=[(0, 1000), (10, 1000)])
    f = sm.summarize([prefill, decode, router], 0.0, 10.0)
    assert f["srv_running_mean"] == pytest.approx(2 + 15) and f["srv_running_max"] == 20
    assert f["srv_waiting_mean"] == 2 and f["srv_waiting_max"] == 3
    assert f["srv_kv_cache_usage_mean"] == pytest.approx(0.5) and f["srv_kv_cache_usage_max"] == 0.8
    assert f["srv_prefix_cache_hit_rate"] == pytest.approx(0.25) and f["srv_preemptions"] == 3
    # prompt tokens of the prefill worker only (interpolated to t=0), generated of the decode one
    assert f["srv_prefill_tokens_per_s"] == pytest.approx(10_000 / 10)
    assert f["srv_decode_tokens_per_s"] == pytest.approx(100.0)
    assert f["srv_targets"] == 3 and f["srv_scrape_errors"] == 3


def test_target_flags_parse_and_the_client_scrapes_a_live_sim_engine():
    import asyncio

    from aiohttp import web

    from ixhpc.sim import model

    assert sm.parse_target("decode-0=http://h:1/metrics") == ("decode-0", "http://h:1/metrics")
    assert sm.parse_target("http://h:1/metrics") == ("server", "http://h:1/metrics")
    with pytest.raises(ValueError):
        sm.parse_target("decode=h:1")

    async def main() -> dict:
        engine = server.Engine(model.SimConfig(gpu="H200", tp=2), "server", "s", 1.0)
        app = server.make_app(engine, "m", ["trtllm"], "/prometheus/metrics")
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        scraper = sm.Scraper([("server", f"http://127.0.0.1:{port}/prometheus/metrics")], 0.1)
        for _ in range(3):
            await asyncio.to_thread(scraper.scrape_once)
        await runner.cleanup()
        return scraper.document(0.0, 1.0)

    doc = asyncio.run(main())
    tg = doc["targets"][0]
    assert tg["scrapes"] == 3 and set(tg["series"]) == {"kv_cache_usage", "prefix_cache_hit_rate", "requests"}
    assert doc["clock"]["unix_minus_perf_counter"] > 0 and doc["summary"]["srv_scrapes"] == 3
