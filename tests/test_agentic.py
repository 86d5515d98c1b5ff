"""Agentic trace replay (ixhpc.bench.agentic): the SPEC's toy derivations and worked schedule,
the trace reader's located errors, synthetic corpora, metrics, and a loopback replay against
the simulated engine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_sim_server import sim_process

from ixhpc.bench.agentic import plan, prompts, report, schedule, simulate, traces
from ixhpc.errors import ConfigError
from ixhpc.sim.server import count_prompt_tokens

ZERO = "00000000-0000-0000-0000-000000000000"


def toy_plans(agentx: Path) -> list[plan.TracePlan]:
    return [plan.build(t) for t in traces.read_traces(agentx / "toy_traces.jsonl")]


def _turns(stream: plan.Stream) -> list[dict[str, Any]]:
    return [{"turn": t.index, "t": t.t, "max_tokens": t.max_tokens, "end_to_start_delay_s": t.delay,
             "reset_context": t.reset_context, "prompt_tokens": t.prompt_tokens,
             "messages": [{"role": g.role, "blocks": list(g.blocks), "synth_tail_tokens": g.tail,
                           "tokens": len(g.blocks) * 64 + g.tail} for g in t.segments]}
            for t in stream.turns]


def test_toy_derivations_match_the_spec(agentx: Path) -> None:
    expected = json.loads((agentx / "toy_expected_derivations.json").read_text())["traces"]
    plans = toy_plans(agentx)
    assert [p.trace.id for p in plans] == list(expected)
    for p in plans:
        exp = expected[p.trace.id]
        assert p.streams[0].session_id == exp["root"]["session_id"]
        assert _turns(p.streams[0]) == exp["root"]["turns"]
        assert len(p.streams) - 1 == len(exp["subagents"])
        for child, sa in zip(p.streams[1:], exp["subagents"]):
            assert child.session_id == sa["session_id"]
            assert (child.spawn_turn, child.join_turn, child.offset) == (
                sa["spawn_after_root_turn"], sa["join_root_turn"], sa["first_request_offset_s"])
            assert _turns(child) == sa["turns"]
        hits = sorted((s.session_id, t.t, t.hit_blocks, t.total_blocks) for s in p.streams for t in s.turns)
        assert hits == sorted((h["session_id"], h["t"], h["hit_blocks"], h["total_blocks"])
                              for h in exp["theoretical_prefix_hits"])


def test_toy_schedule_at_concurrency_2_matches_the_spec(agentx: Path) -> None:
    expected = json.loads((agentx / "toy_schedule_c2.json").read_text())
    cfg = schedule.Config(2, duration=1200, seed=42, warmup_per_lane=1, benchmark_id=ZERO)
    log = simulate.run(toy_plans(agentx), cfg, until=130)
    got = [(p, e) for p, e in log.profiling if p <= 130]
    assert got == [(e["p"], e["event"]) for e in expected["profiling_first_130s"]]
    # warm-up (SPEC §6.3): t*, spread primers, the system-idle cap, stage B, the handoff
    w = log.warmup
    assert (0.0, "tstar lane0 toy-a: t*=18.340 primers=1") in w
    assert (0.0, "tstar lane1 toy-b: t*=246.055 primers=1") in w
    assert (0.0, "lane1 toy-b#0 root2 PRIMER SEND max_tokens=1") in w
    assert (0.5, "SYSTEM-IDLE CAP: all pending timers advanced 175.21s") in w
    assert (10.5, "lane0 toy-a#0 root1 PRIMER SEND max_tokens=1") in w
    assert (11.0, "lane0 toy-a#0 root2 WARMUP SEND max_tokens=1") in w
    assert (11.0, "lane1 toy-b#0 root3 WARMUP SEND max_tokens=1") in w
    assert [e for _, e in w].count("warmup stage B") == 1
    primers = [s for _, s in log.sends if s.primer]
    assert sorted(s.play.marker for s in primers) == ["[rid:43a77211aeda]", "[rid:d3078d55f3ba]"]
    assert max(t for t, _ in w) == 11.5  # profiling starts when both stage-B requests returned


def test_full_toy_run_keeps_c_trees_and_sends_exact_prompts(agentx: Path) -> None:
    plans = toy_plans(agentx)
    log = simulate.run(plans, schedule.Config(2, duration=1200, warmup_per_lane=1, benchmark_id=ZERO))
    prof = [s for _, s in log.sends if s.phase == "profiling"]
    assert 200 < len(prof) < 280  # SPEC §6.4: ~237 requests
    assert sum(1 for _, e in log.profiling if e.startswith("SYSTEM-IDLE")) > 30
    text = prompts.BlockText(42, 64)
    for send in prof[:40]:
        stream = send.play.plan.streams[send.stream]
        turn = stream.turns[send.turn]
        msgs = prompts.messages(text, send.play.plan.trace.id, stream.session_id, turn, send.play.marker)
        assert msgs[0]["content"].startswith(send.play.marker + "\n\n")
        assert all(set(m) == {"role", "content"} and isinstance(m["content"], str) for m in msgs)
        assert count_prompt_tokens({"messages": msgs}) == turn.prompt_tokens + 1  # + the marker
    # same hash id -> same block text within a trace, unrelated across traces
    assert text.block("toy-a", 3) == text.block("toy-a", 3) != text.block("toy-b", 3)


def test_reader_reports_located_errors(tmp_path: Path) -> None:
    good = {"id": "x", "models": [], "block_size": 64, "hash_id_scope": "local",
            "requests": [{"t": 0, "type": "n", "model": "m", "in": 64, "out": 1, "hash_ids": [0]}]}
    bad_key = {**good, "id": "y", "surprise": 1}
    bad_req = {**good, "id": "z", "requests": [{"t": -1, "model": "m", "in": "64", "out": 1, "hash_ids": [0]}]}
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join([json.dumps(good), json.dumps(bad_key), "{not json", json.dumps(bad_req),
                               json.dumps(good)]) + "\n")
    with pytest.raises(ConfigError) as err:
        traces.read_traces(path)
    lines = err.value.errors
    assert any(e.startswith(f"{path}:2: unknown keys ['surprise']") for e in lines)
    assert any(e.startswith(f"{path}:3: not JSON") for e in lines)
    assert any(e.startswith(f"{path}:4: requests[0].t") for e in lines)
    assert any(e.startswith(f"{path}:4: requests[0].in") for e in lines)
    assert any(e.startswith(f"{path}:5: trace id 'x' repeats line 1") for e in lines)


def test_generated_traces_read_back_and_follow_the_knobs(tmp_path: Path) -> None:
    data = traces.generate(20, seed=3, turns=(3, 6), subagent_rate=0.5, max_context=8192, prefix_reuse=1.0)
    path = tmp_path / "synth.jsonl"
    traces.write_traces(path, data)
    corpus = traces.read_traces(path)
    assert len(corpus) == 20
    assert any(t.subagents for t in corpus)
    for t in corpus:
        assert 3 <= len(t.root) <= 6
        assert all(r.isl + r.osl <= 8192 for r in t.root)
        p = plan.build(t)
        for s in p.streams:
            for a, b in zip(s.turns, s.turns[1:]):  # full reuse: every turn extends the previous
                assert not b.reset_context or a.segments[-1].tail
    log = simulate.run([plan.build(t) for t in corpus], schedule.Config(4, duration=900, warmup_per_lane=2))
    assert sum(1 for _, s in log.sends if s.phase == "profiling") > 50


def test_metrics_and_gate() -> None:
    def rec(i: int, phase: str = "profiling", error: str = "") -> report.Record:
        return report.Record(phase, 0, "t", 0, "t", "", i, "c", "c", float(i), float(i) + 2.0, 0.5, 100, 11, 11,
                             11, 3, 4, error)
    recs = [rec(i) for i in range(10)] + [rec(10, "warmup")]
    m = report.request_metrics(recs, num_gpus=2)
    assert m["latency"]["itl"]["p50"] == 0.15 and m["latency"]["intvty"]["p90"] == round(1 / 0.15, 5)
    assert m["latency"]["e2e_norm_intvty"]["p90"] == 5.5
    assert m["throughput"]["duration"] == 11
    assert m["throughput"]["per_gpu"]["output_tokens_per_second"] == 5
    assert m["cache"]["theoretical_cache_hit_rate"] == 0.75
    assert report.gate(recs + [rec(11, error="HTTP 500")], 1200) == (None, True)  # 1/11 fails, under 10 %
    failure, canonical = report.gate(recs[:5] + [rec(i, error="HTTP 500") for i in range(2)], 600)
    assert failure and "failed" in failure and canonical is False
    assert report.is_overflow("This model's maximum context length is 8192 tokens")


def test_loopback_replay_against_the_simulated_engine(tmp_path: Path) -> None:
    path = tmp_path / "synth.jsonl"
    traces.write_traces(path, traces.generate(6, seed=1, turns=(3, 5), first_isl=(128, 512), growth=(64, 256),
                                              osl=(4, 16), think_time=(0.5, 5.0), subagent_rate=0.4,
                                              max_context=4096))
    out = tmp_path / "result.json"
    scale = 0.005  # 900 s of profile in 4.5 s
    with sim_process("serve", "--time-scale", str(scale)) as url:
        proc = subprocess.run(
            [sys.executable, "-m", "ixhpc.bench", "--scenario", "agentic-coding", "--traces", str(path),
             "--base-url", url, "--concurrency", "3", "--duration", "900", "--warmup-requests-per-lane", "2",
             "--session-header", "x-session-id", "--time-scale", str(scale), "--output", str(out)],
            capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    ag = doc["agentic"]
    assert ag["canonical"] is True and doc["failure"] is None
    assert ag["num_requests_successful"] > 20
    req = doc["requests"]
    n = len(req["turn"])
    assert {len(v) for v in req.values()} == {n}
    assert set(req["phase"]) == {"warmup", "profiling"}
    prof = [i for i in range(n) if req["phase"][i] == "profiling" and not req["error"][i]]
    assert all(req["output_len"][i] == req["max_tokens"][i] for i in prof)  # ignore_eos honoured
    assert all(req["max_tokens"][i] == 1 for i in range(n) if req["phase"][i] == "warmup")
    assert all(req["session_id"][i].startswith(req["trace_id"][i]) for i in range(n))
    lat = ag["request_metrics"]["latency"]
    assert lat["ttft"]["p50"] > 0 and lat["e2e_norm_intvty"]["p90"] > 0
    assert ag["request_metrics"]["cache"]["theoretical_cache_hit_rate"] > 0.3


def test_agentic_imports_only_stdlib_and_numpy() -> None:
    probe = ("import sys; before = set(sys.modules); import ixhpc.bench.agentic.cli, ixhpc.bench.agentic.simulate; "
             "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
             "print(sorted(new - set(sys.stdlib_module_names) - {'ixhpc', 'numpy'}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _replay_on_sim(traces_path: Path, out: Path, conc: int, dram_gb: int) -> dict[str, Any]:
    """One agentic point against a simulated 30B dense model on one H100 with a 16k-token GPU
    KV pool (and a DRAM tier of ``dram_gb``); server and trace clocks both at 1/50."""
    scale = "0.02"
    engine = ["--gpu", "H100", "--tp", "1", "--model-params-b", "30", "--active-params-b", "30",
              "--precision", "bf16", "--kv-bytes-per-token", "131072", "--kv-capacity-tokens", "16000",
              "--time-scale", scale]
    if dram_gb:
        engine += ["--kv-offloading", "dram", "--total-cpu-dram-gb", str(dram_gb)]
    with sim_process("serve", *engine) as url:
        proc = subprocess.run(
            [sys.executable, "-m", "ixhpc.bench", "--scenario", "agentic-coding", "--traces", str(traces_path),
             "--base-url", url, "--concurrency", str(conc), "--duration", "200", "--warmup-requests-per-lane", "3",
             "--time-scale", scale, "--metrics-url", f"server={url}/metrics", "--metrics-interval", "0.2",
             "--output", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    summary = doc["server_metrics"]["summary"]
    return {"theory": doc["agentic"]["request_metrics"]["cache"]["theoretical_cache_hit_rate"],
            "gpu": summary["srv_prefix_cache_hit_rate"], "cpu": summary.get("srv_cpu_prefix_cache_hit_rate", 0.0),
            "ttft": doc["agentic"]["request_metrics"]["latency"]["ttft"]["p50"]}


def test_prefix_cache_behaviour_of_spec_section_5(tmp_path: Path) -> None:
    """SPEC §5.7 on the real server and replay client: at C=1 the working set (a few thousand
    tokens per stream) fits the 16k GPU pool and the server's hit rate is the theoretical one; at
    C=8 it does not, hits collapse and TTFT jumps (recomputed prefixes); a 8 GB DRAM tier (61k
    tokens) brings the hits back as DRAM hits and TTFT down."""
    path = tmp_path / "synth.jsonl"
    traces.write_traces(path, traces.generate(24, seed=5, turns=(6, 10), first_isl=(1024, 2048), growth=(256, 768),
                                              osl=(8, 32), think_time=(1.0, 4.0), subagent_rate=0.2,
                                              max_context=8192))
    low = _replay_on_sim(path, tmp_path / "c1.json", 1, 0)
    high = _replay_on_sim(path, tmp_path / "c8.json", 8, 0)
    dram = _replay_on_sim(path, tmp_path / "c8-dram.json", 8, 8)
    assert abs(low["gpu"] - low["theory"]) < 0.05, low
    assert high["gpu"] < 0.3 * low["gpu"] and high["ttft"] > 2 * low["ttft"], (low, high)
    assert dram["gpu"] < 0.3 * low["gpu"] and dram["cpu"] > 0.5 * dram["theory"], dram
    assert dram["gpu"] + dram["cpu"] > dram["theory"] - 0.1, dram
    assert dram["ttft"] < 0.6 * high["ttft"], (high, dram)


def test_workers_split_the_lanes_and_keep_sessions_whole(tmp_path: Path) -> None:
    """--workers 2: worker k replays lanes k, k+2, ... and draws traces k, k+2, ..., so each lane
    starts on the trace (and t*) one process would give it; every stream and every tree stays on
    its lane; the profile starts once for all."""
    path = tmp_path / "synth.jsonl"
    traces.write_traces(path, traces.generate(8, seed=2, turns=(3, 5), first_isl=(128, 512), growth=(64, 256),
                                              osl=(4, 16), think_time=(0.5, 5.0), subagent_rate=0.4,
                                              max_context=4096))
    scale = "0.005"
    docs = []
    with sim_process("serve", "--time-scale", scale) as url:
        for workers in (1, 2):
            out = tmp_path / f"w{workers}.json"
            proc = subprocess.run(
                [sys.executable, "-m", "ixhpc.bench", "--scenario", "agentic-coding", "--traces", str(path),
                 "--base-url", url, "--concurrency", "4", "--duration", "300", "--warmup-requests-per-lane", "2",
                 "--benchmark-id", ZERO, "--time-scale", scale, "--workers", str(workers), "--output", str(out)],
                capture_output=True, text=True, timeout=120)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            docs.append(json.loads(out.read_text()))
    one, two = docs
    assert two["config"]["workers"] == 2 and two["failure"] is None
    assert two["agentic"]["t_stars"] == one["agentic"]["t_stars"] and len(one["agentic"]["t_stars"]) == 4
    req = two["requests"]
    n = len(req["lane"])
    assert set(req["lane"]) == {0, 1, 2, 3}
    lane_of: dict[str, int] = {}
    for key in ("correlation_id", "root_correlation_id"):
        for i in range(n):
            assert lane_of.setdefault(req[key][i], req["lane"][i]) == req["lane"][i]
    first = {lane: req["trace_id"][min(i for i in range(n) if req["lane"][i] == lane)] for lane in range(4)}
    assert first == {lane: f"synth-2-{lane:04d}" for lane in range(4)}, first
    starts = [req["start"][i] for i in range(n) if req["phase"][i] == "profiling"]
    warm_ends = [req["end"][i] for i in range(n) if req["phase"][i] == "warmup"]
    assert min(starts) >= max(warm_ends) - 1e-3  # no worker profiles while another still warms up
