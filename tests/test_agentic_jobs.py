"""Agentic-coding points as jobs (issue 19, deliverables 3 and 5; issue 16's "agentic points
render"): they plan as run points of their shape with the trace replay as the benchmark step and
the KV-offload settings on each engine; the replay's result becomes a point file with its
per-request identity, merges into agentic columns, draws the agentic plots and exports as
InferenceX's aggregate row. The cluster-marked tests run them on the local cluster."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ixhpc import render, runs
from ixhpc.bench import validity
from ixhpc.bench.agentic import traces
from ixhpc.errors import PlanError
from ixhpc.profiles import get_profile
from ixhpc.rundir import Layout, ScriptPaths
from ixhpc.sweep import DisaggPoint, Filters, MultiAggPoint, SinglePoint

REPO = Path(__file__).resolve().parents[1]

PROFILES = """\
local-agentic:
  extends: local
  partitions:
  - {name: gb200, runners: [gb200, "cluster:gb200-local"], gpus-per-node: 4, nodes: "gb[1-4]"}
  - {name: mi355x, runners: [mi355x, "cluster:mi355x-local", "cluster:h200-dgxc"], gpus-per-node: 8,
     nodes: "mi[1-2]"}
  - {name: debug, gpus-per-node: 4, nodes: "gb[1-4],mi[1-2]"}
"""

RECIPE = """\
sim-agentic:
  image: none
  model: sim/dsr1-like
  model-prefix: simdsr1
  precision: fp8
  framework: sim
  runner: "cluster:mi355x-local"
  multinode: false
  scenarios:
    agentic-coding:
    - dram-utilization: 0.5
      search-space:
      - {tp: 8, kv-offloading: none, conc-list: [2, 4, 8]}
  ixhpc:
    time-limit: 15
    health-timeout: 90
    agentic:
      duration: 20
      synthetic-traces: 16
      synthetic-max-context: 8192
      warmup-requests-per-lane: 2
    sim:
      gpu: MI355X
"""

DISAGG = """\
sim-agentic-disagg:
  image: none
  model: sim/dsr1-like
  model-prefix: simdsr1
  precision: fp4
  framework: sim
  runner: "cluster:gb200-local"
  multinode: true
  disagg: true
  kv-p2p-transfer: nixl
  scenarios:
    agentic-coding:
    - dram-utilization: 0.5
      search-space:
      - conc-list: [4]
        kv-offloading: dram
        kv-offload-backend: {name: native}
        prefill: {num-worker: 1, tp: 4, ep: 1, dp-attn: false}
        decode: {num-worker: 1, tp: 4, ep: 1, dp-attn: false}
"""

RUNNERS = """\
labels:
  "cluster:mi355x-local": [mi1, mi2]
  "cluster:gb200-local": [gb1, gb2, gb3, gb4]
hardware:
  "cluster:mi355x-local": {available-cpu-dram-mib: 200000, gpus-per-node: 8}
  "cluster:gb200-local": {available-cpu-dram-mib: 100000, gpus-per-node: 4}
"""

QWEN = "qwen3.5-fp8-h200-sglang-agentic-hicache-mtp"  # an August reference entry: SGLang, HiCache


def _files(tmp_path: Path, recipe: str = RECIPE, **edits: str) -> tuple[Path, Path, Path]:
    for old, new in edits.items():
        recipe = recipe.replace(old.replace("_", "-"), new)
    (tmp_path / "profiles.yaml").write_text(PROFILES)
    (tmp_path / "runners.yaml").write_text(RUNNERS)
    path = tmp_path / "agentic.yaml"
    path.write_text(recipe)
    return path, tmp_path / "profiles.yaml", tmp_path / "runners.yaml"


def _target(tmp_path: Path, recipe: str = RECIPE, **more: object) -> runs.RunTarget:
    tmp_path.mkdir(exist_ok=True)
    path, profiles, _ = _files(tmp_path, recipe)
    return runs.RunTarget(path, get_profile("local-agentic", profiles), Filters(), **more)  # type: ignore[arg-type]


def test_agentic_points_plan_as_their_shape_with_the_replay_step(tmp_path: Path) -> None:
    plans = runs.plan(_target(tmp_path), tmp_path / "run", "run")
    assert [p.concs for p in plans] == [[2], [4], [8]]    # one allocation each: a cold prefix cache
    plan = plans[0]
    point = plan.points[0]
    assert isinstance(point, SinglePoint) and point.agentic is not None
    argv = plan.bench_argv
    assert argv[:5] == ["python", "-m", "ixhpc.bench", "--scenario", "agentic-coding"]
    assert argv[argv.index("--traces") + 1] == ScriptPaths.traces_text()
    assert argv[argv.index("--duration") + 1] == "20" and argv[argv.index("--num-gpus") + 1] == "8"
    assert "--isl" not in argv and any(a.startswith("--metrics-url=server=") for a in argv)
    (server,) = plan.roles
    assert "--context-length" not in server.argv and "--kv-offloading" not in server.argv  # no cap, no tier
    meta = plan.metadata(2)
    assert meta["scenario_type"] == "agentic-coding" and meta["duration"] == 20 and "isl" not in meta
    assert meta["agentic_traces"] == "synthetic:seed=42,traces=16,max-context=8192"
    assert meta["kv_offloading"] == "none" and meta["total_cpu_dram_gb"] == 0
    header = "\n".join(plan.header)
    assert "agentic-coding replay of a synthetic corpus" in header and "20 s" in header


def test_render_writes_the_synthetic_corpus_and_the_plan_says_which(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ixhpc.cli import main

    recipe, profiles, _ = _files(tmp_path)
    (plan, *_) = runs.plan(_target(tmp_path), tmp_path / "run", "run")
    render.write_job(tmp_path / "run", plan)
    corpus = traces.read_traces(Layout.of(tmp_path / "run").traces(plan.key))
    assert len(corpus) == 16 and corpus[0].id == "synth-42-0000"     # from the recorded seed
    assert main(["render", str(recipe), "--cluster", "local-agentic", "--profiles", str(profiles),
                 "--plan-json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    ag = doc["jobs"][0]["agentic"]
    assert ag["traces"] == {"source": "synthetic", "path": "${POINT_DIR}/traces.jsonl", "seed": 42,
                            "traces": 16, "max_context": 8192}
    assert ag["duration"] == 20 and ag["canonical"] is False and ag["kv_offloading"] == "none"
    given = tmp_path / "given.jsonl"
    traces.write_traces(given, traces.generate(3, seed=5))
    assert main(["render", str(recipe), "--cluster", "local-agentic", "--profiles", str(profiles),
                 "--traces", str(given), "--agentic-duration", "45", "--plan-json"]) == 0
    job = json.loads(capsys.readouterr().out)["jobs"][0]
    assert job["agentic"]["traces"] == {"source": "file", "path": str(given)} and job["agentic"]["duration"] == 45
    argv = job["benchmark"][0]["argv"]
    assert argv[argv.index("--traces") + 1] == str(given) and argv[argv.index("--duration") + 1] == "45"
    assert main(["render", str(recipe), "--cluster", "local-agentic", "--profiles", str(profiles),
                 "--traces", str(tmp_path / "missing.jsonl"), "--plan-json"]) == 2
    assert "missing.jsonl: no such file" in capsys.readouterr().err


def test_kv_offload_settings_reach_each_engine(tmp_path: Path) -> None:
    dram = RECIPE.replace("kv-offloading: none", "kv-offloading: dram, kv-offload-backend: {name: native}")
    with pytest.raises(PlanError, match="--runner-config"):
        runs.plan(_target(tmp_path, dram), tmp_path / "run", "run")
    (plan, *_) = runs.plan(_target(tmp_path, dram, runner_config=tmp_path / "runners.yaml"), tmp_path / "run", "run")
    gb = int(200000 * 1048576 * 0.5 * 8 / 8 / 1e9)   # agentx SPEC §4.2: one replica's share, decimal GB
    (server,) = plan.roles
    assert server.argv[-4:] == ["--kv-offloading", "dram", "--total-cpu-dram-gb", str(gb)]
    assert plan.metadata(2)["total_cpu_dram_gb"] == gb and plan.metadata(2)["kv_offload_backend_name"] == "native"
    # disaggregated: the prefill worker offloads, the decode worker does not (§4.2)
    (plan,) = runs.plan(_target(tmp_path / "d", DISAGG, runner_config=tmp_path / "runners.yaml"),
                        tmp_path / "run", "run")
    assert isinstance(plan.points[0], DisaggPoint)
    roles = {r.name: r.argv for r in plan.roles}
    assert "--kv-offloading" in roles["prefill-0"] and "--kv-offloading" not in roles["decode-0"]
    argv = plan.bench_argv
    assert argv[argv.index("--session-header") + 1] == "x-session-id" and argv[argv.index("--num-gpus") + 1] == "8"


def test_a_multi_node_aggregated_agentic_point_is_one_engine(tmp_path: Path) -> None:
    agg = (DISAGG.replace("disagg: true", "disagg: false").replace("  kv-p2p-transfer: nixl\n", "")
           .replace("kv-offloading: dram", "kv-offloading: none")
           .replace("        kv-offload-backend: {name: native}\n", "")
           .replace("prefill: {num-worker: 1, tp: 4", "prefill: {num-worker: 1, tp: 8")
           .replace("decode: {num-worker: 1", "decode: {num-worker: 0"))
    (plan,) = runs.plan(_target(tmp_path, agg), tmp_path / "run", "run")
    assert isinstance(plan.points[0], MultiAggPoint) and plan.points[0].agentic is not None
    (server,) = plan.roles
    assert server.nnodes == 2 and plan.metadata(4)["decode_num_worker"] == 0   # 8 GPUs over 4-GPU nodes
    with pytest.raises(PlanError, match="one aggregated engine per multi-node point"):
        runs.plan(_target(tmp_path / "two", agg.replace("prefill: {num-worker: 1", "prefill: {num-worker: 2")),
                  tmp_path / "run", "run")


def test_an_august_agentic_point_gets_hicache_and_the_launcher_environment(
        tmp_path: Path, inferencex_current: Path) -> None:
    (tmp_path / "profiles.yaml").write_text(PROFILES)
    target = runs.RunTarget(inferencex_current / "nvidia-master.yaml",
                            get_profile("local-agentic", tmp_path / "profiles.yaml"),
                            Filters(config_keys=(QWEN,), conc=(4,)),
                            runner_config=inferencex_current / "runners.yaml", agentic_duration=30)
    (plan,) = runs.plan(target, tmp_path / "run", "run")
    (server,) = plan.roles
    total = plan.metadata(4)["total_cpu_dram_gb"]
    assert total == 1234 and plan.metadata(4)["duration"] == 30    # as InferenceX's matrix row says
    argv = server.argv
    assert argv[:5] == ["env", "KV_OFFLOADING=dram", "KV_OFFLOAD_BACKEND=hicache",
                        'KV_OFFLOAD_BACKEND_METADATA={"name": "hicache"}', f"TOTAL_CPU_DRAM_GB={total}"]
    i = argv.index("--enable-hierarchical-cache")
    assert argv[i + 1:i + 3] == ["--hicache-size", str(total // 8)]   # per rank: tp 8
    assert "--context-length" not in argv


def test_each_backend_gets_its_offload_setting() -> None:
    from ixhpc import engines

    def launch(framework: str, role: str, backend: str, tp: int = 4) -> engines.Launch:
        return engines.launch(engines.LaunchSpec(framework=framework, role=role, model="m", tp=tp,  # type: ignore[arg-type]
                                                 kv_offloading="dram", kv_offload_backend=backend,
                                                 total_cpu_dram_gb=100))

    (option_file,) = launch("trt", "server", "native").files.values()
    assert "enable_block_reuse: true" in option_file and "host_cache_size: 25000000000" in option_file  # per rank
    atom = launch("atom", "server", "lmcache", tp=8)
    assert atom.env["LMCACHE_MAX_LOCAL_CPU_SIZE"] == "100" and atom.env["KV_OFFLOADING"] == "dram"
    simple = launch("vllm", "server", "vllm-simple").argv
    config = json.loads(simple[simple.index("--kv-transfer-config") + 1])
    assert config["kv_connector"] == "SimpleCPUOffloadConnector"
    assert config["kv_connector_extra_config"] == {"cpu_bytes_to_use": 25 * 10**9, "lazy_offload": True}
    decode = launch("sglang", "decode", "hicache")    # decode workers do not offload, but are told
    assert "--enable-hierarchical-cache" not in decode.argv and decode.env["TOTAL_CPU_DRAM_GB"] == "100"
    assert "--hicache-size" in launch("sglang", "prefill", "hicache").argv


def test_the_agentic_gate_matches_the_replay_and_names_the_floor() -> None:
    judge = validity.judge_agentic
    assert judge({"profiling_requests": 10, "failed": 1, "duration": 900})["verdict"] == "valid"  # 10 % passes
    assert judge({"profiling_requests": 10, "failed": 2, "duration": 900})["reasons"] == ["agentic_failed_requests"]
    short = judge({"profiling_requests": 10, "failed": 0, "duration": 30})
    assert short["reasons"] == ["below_duration_floor"] and "900 s" in short["details"]["below_duration_floor"]


def _replay(tmp_path: Path, conc: int, scale: float, duration: int) -> dict:
    """A real replay against the simulated engine (both on a scaled clock)."""
    from test_sim_server import sim_process

    corpus = tmp_path / "corpus.jsonl"
    if not corpus.exists():
        traces.write_traces(corpus, traces.generate(6, seed=1, turns=(3, 5), first_isl=(128, 512),
                                                    growth=(64, 256), osl=(4, 16), think_time=(0.5, 5.0),
                                                    subagent_rate=0.4, max_context=4096))
    out = tmp_path / f"replay-c{conc}.json"
    with sim_process("serve", "--time-scale", str(scale)) as url:
        proc = subprocess.run(
            [sys.executable, "-m", "ixhpc.bench", "--scenario", "agentic-coding", "--traces", str(corpus),
             "--base-url", url, "--concurrency", str(conc), "--duration", str(duration),
             "--warmup-requests-per-lane", "2", "--num-gpus", "8", "--time-scale", str(scale),
             "--metrics-url", f"server={url}/metrics", "--output", str(out)],
            capture_output=True, text=True, timeout=180, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dict(json.loads(out.read_text()))


def test_a_replay_is_stored_merged_reported_and_exported(tmp_path: Path) -> None:
    from ixhpc.results import export, load, report, store
    from ixhpc.results.ingest import write_point
    from ixhpc.results.merge import merge

    plan = runs.plan(_target(tmp_path), tmp_path / "run", "run")[1]
    doc = _replay(tmp_path, 4, 0.005, 900)   # 900 s of profile in 4.5 s: canonical
    path = tmp_path / "p.h5"
    write_point(path, doc, plan.metadata(4))
    point = store.read(path)
    assert point.verdict == "valid" and point.agentic is not None
    n = len(doc["requests"]["phase"])
    assert point.n_requests == n
    ids = store.read_agentic_requests(path)
    assert set(ids) == {"phase", "lane", "trace_id", "play", "session_id", "subagent", "turn", "correlation_id",
                        "root_correlation_id", "max_tokens", "expected_output_len", "hit_blocks", "total_blocks"}
    assert list(ids["session_id"]) == doc["requests"]["session_id"] and list(ids["turn"]) == doc["requests"]["turn"]
    assert any(ids["subagent"]) and set(ids["phase"]) == {"warmup", "profiling"}
    rm = doc["agentic"]["request_metrics"]
    assert point.metrics["agentic_e2e_norm_intvty_p90"] == rm["latency"]["e2e_norm_intvty"]["p90"]
    assert point.metrics["tput_per_gpu"] == rm["throughput"]["per_gpu"]["total_tokens_per_second"]
    assert point.summary["completed"] == doc["agentic"]["num_requests_successful"]
    assert point.server_metrics["srv_prefix_cache_hit_rate"] > 0        # the engine's own figure
    assert set(store.read_series(path, "server_metrics"))                # ... and its series
    merged = tmp_path / "m.h5"
    merge([str(path)], str(merged))
    df = load(merged)
    row = export.records(df)[0]
    assert row["scenario_type"] == "agentic-coding" and row["agentic_traces"].startswith("synthetic:")
    assert row["agentic_e2e_norm_intvty_p90"] == point.metrics["agentic_e2e_norm_intvty_p90"]
    files = {p.name for p in report.write_report(df, tmp_path / "report")}
    stem = "simdsr1_agentic_synthetic-seed-42-traces-16-max-context-8192_agentic"
    assert {f"{stem}_intvty_vs_tput.png", f"{stem}_cache_hit_vs_conc.png", f"{stem}_ttft_vs_conc.png"} <= files
    assert "## Agentic coding" in (tmp_path / "report" / "summary.md").read_text()
    (agg,) = export.agg_rows(df)
    assert agg["scenario_type"] == "agentic-coding" and "isl" not in agg and agg["tp"] == 8
    assert agg["kv_offloading"] == "none" and agg["kv_offload_backend"] is None and agg["allocated_cpu_dram_gb"] == 0
    assert agg["request_metrics"]["latency"]["e2e_norm_intvty"] == rm["latency"]["e2e_norm_intvty"]
    assert agg["request_metrics"]["throughput"]["per_gpu"] == rm["throughput"]["per_gpu"]
    assert agg["num_requests_successful"] == doc["agentic"]["num_requests_successful"]
    assert agg["recipe_fingerprint"] == plan.metadata(4)["inferencex_fingerprint"] and agg["conc"] == 4
    assert agg["server_metrics"]["present"] is True


# ------------------------------------------------------------------------------ local cluster


def _ixhpc(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ixhpc", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def _wait(run_dir: str, timeout: float = 900) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        res = _ixhpc("status", run_dir, "--json")
        status = json.loads(res.stdout)
        if all(j["state"] in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL") for j in status["jobs"]):
            return dict(status)
        time.sleep(2)
    raise AssertionError(f"run {run_dir} not finished")


def _submit(recipe: Path, profiles: Path, results: Path, *more: str) -> str:
    res = _ixhpc("submit", str(recipe), "--cluster", "local-agentic", "--profiles", str(profiles), *more,
                 "--results", str(results), "--json")
    assert res.returncode == 0, res.stderr
    return str(json.loads(res.stdout)["run_dir"])


def _submit_three_concurrencies(tmp_path: Path) -> str:
    # a GPU KV pool of 24k tokens: at C=8 the sessions' prefixes outgrow it (agentx SPEC §5)
    # ... and at C=8 with a DRAM tier behind it (the point's total-cpu-dram-gb)
    small_pool = RECIPE.replace("    sim:\n", "    engine-args: {server: [--kv-capacity-tokens, '24576']}\n    sim:\n")
    small_pool = small_pool.replace("conc-list: [2, 4, 8]}\n", "conc-list: [2, 4, 8]}\n      - {tp: 8, "
                                    "kv-offloading: dram, kv-offload-backend: {name: native}, conc-list: [8]}\n")
    recipe, profiles, runners = _files(tmp_path, small_pool)
    return _submit(recipe, profiles, tmp_path / "results", "--runner-config", str(runners))


def _submit_august(tmp_path: Path, inferencex_current: Path) -> str:
    (tmp_path / "profiles.yaml").write_text(PROFILES)
    corpus = tmp_path / "corpus.jsonl"
    traces.write_traces(corpus, traces.generate(12, seed=7, first_isl=(512, 2048), osl=(16, 64),
                                                think_time=(0.5, 4.0), max_context=8192))
    return _submit(inferencex_current / "nvidia-master.yaml", tmp_path / "profiles.yaml", tmp_path / "results",
                   "--config-keys", QWEN, "--conc", "4", "--runner-config", str(inferencex_current / "runners.yaml"),
                   "--agentic-duration", str(AUGUST_DURATION), "--traces", str(corpus))


def _submit_disagg(tmp_path: Path) -> str:
    recipe, profiles, runners = _files(tmp_path, DISAGG.replace(
        "        decode: {num-worker: 1, tp: 4, ep: 1, dp-attn: false}\n",
        "        decode: {num-worker: 1, tp: 4, ep: 1, dp-attn: false}\n"
        "  ixhpc: {time-limit: 15, health-timeout: 90, agentic: {duration: 10, synthetic-traces: 8,"
        " synthetic-max-context: 4096, warmup-requests-per-lane: 1}}\n"))
    return _submit(recipe, profiles, tmp_path / "results", "--runner-config", str(runners))


AUGUST_DURATION = 15  # s of replay: below the 900 s floor, as the test expects


@pytest.fixture(scope="module")
def agentic_runs(_local_cluster: dict[str, str],
                 tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """The module's cluster runs, submitted together so they queue side by side (the disaggregated
    one on the GB200-like nodes while the others share the MI355X-like ones); each test waits
    for its own. Without the reference data the August run is not submitted and its test skips
    (or fails) through its own ``inferencex_current``."""
    from conftest import INFERENCEX_CURRENT, reference_path

    three, disagg = tmp_path_factory.mktemp("three"), tmp_path_factory.mktemp("disagg")
    out: dict[str, tuple[Path, str]] = {"three": (three, _submit_three_concurrencies(three)),
                                        "disagg": (disagg, _submit_disagg(disagg))}
    try:
        ref = reference_path(INFERENCEX_CURRENT)
    except (pytest.skip.Exception, pytest.fail.Exception):
        return out
    august = tmp_path_factory.mktemp("august")
    out["august"] = (august, _submit_august(august, ref))
    return out


@pytest.mark.cluster
def test_synthetic_traces_at_three_concurrencies_run_merge_report_and_resume(slurm: dict, agentic_runs: dict) -> None:
    tmp_path, run = agentic_runs["three"]
    status = _wait(run)
    assert [j["state"] for j in status["jobs"]] == ["COMPLETED"] * 4, status
    results = sorted(Path(run, "results").glob("*agentic0-0*.h5"))
    assert len(results) == 3
    res = _ixhpc("merge", run, "-o", str(tmp_path / "m.h5"), "--json", str(tmp_path / "agg.json"), "--include-invalid")
    assert res.returncode == 0, res.stderr
    from ixhpc.results import load

    df = load(tmp_path / "m.h5")
    assert sorted(df["conc"].tolist()) == [2, 4, 8, 8]
    dram = df[df["kv_offloading"] == "dram"].iloc[0]
    assert dram["srv_cpu_prefix_cache_hit_rate"] > 0.1          # evicted prefixes come back from DRAM
    df = df[df["kv_offloading"] == "none"]
    assert set(df["validity_reasons"]) == {"below_duration_floor"}        # 20 s < the 900 s floor
    assert (df["agentic_requests_successful"] > 0).all() and (df["srv_prefix_cache_hit_rate"] > 0).all()
    by_conc = df.set_index("conc")
    hit, theory = by_conc["srv_prefix_cache_hit_rate"], by_conc["agentic_theoretical_cache_hit_rate"]
    assert hit[2] > theory[2] - 0.1 and hit[8] < theory[8] - 0.2   # C=8 outgrows the 24k-token pool
    rows = json.loads((tmp_path / "agg.json").read_text())
    assert {r["scenario_type"] for r in rows} == {"agentic-coding"} and {r["conc"] for r in rows} == {2, 4, 8}
    assert {r["kv_offloading"] for r in rows} == {"none", "dram"}
    res = _ixhpc("report", str(tmp_path / "m.h5"), "-o", str(tmp_path / "report"), "--include-invalid")
    assert res.returncode == 0, res.stderr
    pngs = {p.name for p in (tmp_path / "report").glob("*agentic*.png")}
    assert {n.rsplit("_agentic_", 1)[1] for n in pngs} == {"intvty_vs_tput.png", "cache_hit_vs_conc.png",
                                                           "ttft_vs_conc.png"}
    # resume: like any point, only the one without a result runs again
    results[0].rename(tmp_path / results[0].name)
    res = _ixhpc("resume", run, "--json")
    assert res.returncode == 0, res.stderr
    assert [e["key"] for e in json.loads(res.stdout)["resubmitted"]] == [results[0].stem]
    status = _wait(run)
    assert all(j["points_done"] == 1 for j in status["jobs"]), status
    assert results[0].exists()


@pytest.mark.cluster
def test_an_august_reference_agentic_point_runs_end_to_end(slurm: dict, agentic_runs: dict,
                                                           inferencex_current: Path) -> None:
    tmp_path, run = agentic_runs["august"]
    corpus = tmp_path / "corpus.jsonl"
    (job,) = _wait(run)["jobs"]
    assert job["state"] == "COMPLETED" and job["points_done"] == 1, job
    from ixhpc.results import store

    (path,) = Path(run, "results").glob("*.h5")
    point = store.read(path)
    assert point.metadata["config_key"] == QWEN and point.metadata["kv_offloading"] == "dram"
    assert point.metadata["agentic_traces"] == str(corpus) and point.metadata["duration"] == AUGUST_DURATION
    assert point.verdict == "invalid" and point.validity is not None
    assert point.validity["reasons"] == ["below_duration_floor"]           # the 900 s floor, said
    assert "900 s floor" in point.validity["details"]["below_duration_floor"]
    assert point.agentic is not None and point.agentic["num_requests_successful"] > 0
    script = Path(run, "scripts", f"{job['key']}.sbatch").read_text()
    assert "--enable-hierarchical-cache --hicache-size 154" in script and "KV_OFFLOADING=dram" in script
    assert "--scenario agentic-coding" in script
    # the engine's stand-in turned those flags into its DRAM tier: 154 GB on each of its 8 ranks
    from ixhpc.sim import model

    log = Layout.of(Path(run)).role_log(job["key"], "server").read_text()
    assert f"dram tier {int(154e9 * 8 // model.SimConfig().kv_bytes_per_token)} tokens" in log, log[-3000:]


@pytest.mark.cluster
def test_a_disaggregated_agentic_point_with_a_dram_tier_runs(slurm: dict, agentic_runs: dict) -> None:
    _, run = agentic_runs["disagg"]
    (job,) = _wait(run)["jobs"]
    assert job["state"] == "COMPLETED" and job["points_done"] == 1, job
    from ixhpc.results import store

    (path,) = Path(run, "results").glob("*.h5")
    point = store.read(path)
    assert point.metadata["disagg"] is True and point.metadata["kv_offloading"] == "dram"
    assert point.agentic is not None and point.agentic["num_requests_successful"] > 0
    assert point.validity is not None and point.validity["reasons"] == ["below_duration_floor"]
    assert {k.split("/")[0] for k in store.read_series(path, "server_metrics")} >= {"prefill-0", "decode-0"}
    assert point.server_metrics["srv_prefix_cache_hit_rate"] > 0    # the prefill worker's prefix cache
    ids = store.read_agentic_requests(path)
    assert len(ids["correlation_id"]) == point.n_requests
