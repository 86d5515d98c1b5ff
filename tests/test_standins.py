"""Engine stand-ins (ixhpc.standins): the real engines' command lines run ixhpc's simulated engine.

Unit tests parse and map the argv ixhpc's builders make (no Slurm); the cluster-marked tests run
small recipes of every engine family through their real launch lines on the local cluster.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ixhpc import engines, render, runs
from ixhpc.profiles import load_profiles
from ixhpc.rundir import Layout
from ixhpc.standins import commands, files, flagtable, main, parsing
from ixhpc.standins.commands import DEFAULT_MTP
from ixhpc.sweep import Filters

REPO = Path(__file__).resolve().parents[1]
SMALL = flagtable.from_json([flagtable._spec(s).to_json() for s in (
    "--model-path", "--served-model-name", "--tp-size/--tp:int", "--host", "--port:int",
    "--disaggregation-mode:null|prefill|decode", "--enable-dp-attention:bool")])


# ----------------------------------------------------------------------------- parsing


def test_argparse_style_takes_the_tables_flags_and_refuses_others_like_argparse():
    p = parsing.argparse_style("launch_server.py", SMALL, ["--tp", "4", "--port=9", "--enable-dp-attention"])
    assert p.get("--tp-size") == 4 and p.get("--tp") == 4 and p.get("--port") == 9
    assert p.get("--enable-dp-attention") is True
    with pytest.raises(parsing.UsageError) as err:
        parsing.argparse_style("launch_server.py", SMALL, ["--tp-size", "4", "--tp-sizee", "4"])
    assert err.value.message.endswith("launch_server.py: error: unrecognized arguments: --tp-sizee 4")
    with pytest.raises(parsing.UsageError, match="invalid choice: 'prefil'"):
        parsing.argparse_style("x", SMALL, ["--disaggregation-mode", "prefil"])
    with pytest.raises(parsing.UsageError, match="unrecognized arguments: --tp-"):
        parsing.argparse_style("x", SMALL, ["--tp-", "4"])  # no abbreviations


def test_click_style_refuses_unknown_options_like_click():
    table = flagtable.FALLBACK["trt"]["trtllm-serve serve"]
    p = parsing.click_style("trtllm-serve serve", table, ["m", "--tp_size", "4", "--trust_remote_code"], ("model",))
    assert p.positionals == ["m"] and p.get("--tp_size") == 4 and p.get("--trust_remote_code") is True
    with pytest.raises(parsing.UsageError) as err:
        parsing.click_style("trtllm-serve serve", table, ["m", "--tp_sizee", "4"], ("model",))
    assert err.value.message == ("Usage: trtllm-serve serve [OPTIONS] MODEL\nTry 'trtllm-serve serve --help' "
                                 "for help.\n\nError: No such option: --tp_sizee Did you mean --tp_size?")
    with pytest.raises(parsing.UsageError, match="Missing argument 'MODEL'"):
        parsing.click_style("trtllm-serve serve", table, ["--tp_size", "4"], ("model",))
    with pytest.raises(parsing.UsageError, match="'x' is not one of"):
        parsing.click_style("trtllm-serve serve", table, ["m", "--backend", "x"], ("model",))


def _config(tmp_path: Path, family: str, command: str, table: flagtable.Table) -> dict[str, str]:
    path = tmp_path / "standin.json"
    path.write_text(json.dumps({"families": {family: {"version": "9.9", "source": "test table",
                                                      "commands": {command: flagtable.to_json(table)}}}}))
    return {main.CONFIG_ENV: str(path), main.RECORD_ENV: str(tmp_path / "standin-{role}.json"),
            "SLURM_JOB_NAME": "server", "HF_TOKEN": "hf_secret", "MY_SETTING": "1"}


def test_an_unknown_flag_ends_the_stand_in_with_status_2_and_the_engines_message(tmp_path, capsys):
    env = _config(tmp_path, "sglang", "sglang.launch_server", SMALL)
    argv = ["sglang.launch_server", "--model-path", "m", "--bogus-flag"]
    assert main.main(argv, env) == 2
    assert "launch_server.py: error: unrecognized arguments: --bogus-flag" in capsys.readouterr().err
    record = json.loads((tmp_path / "standin-server.json").read_text())  # recorded before parsing
    assert record["argv"] == ["python3", "-m", *argv]
    assert record["version"] == "9.9" and record["source"] == "test table"
    assert record["env"]["HF_TOKEN"] == main.SECRET_VALUE and record["env"]["MY_SETTING"] == "1"
    assert "hf_secret" not in (tmp_path / "standin-server.json").read_text()


def test_trtllm_serve_and_vllm_refuse_unknown_flags_in_their_own_words(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(flagtable, "load_engine_flags", lambda: None)  # the built-in table
    assert main.main(["trtllm-serve", "serve", "m", "--bogus"], {}) == 2
    assert "Error: No such option: --bogus" in capsys.readouterr().err
    assert main.main(["vllm", "serve", "m", "--bogus"], {}) == 2
    assert "vllm serve: error: unrecognized arguments: --bogus" in capsys.readouterr().err
    # its command group defaults to `serve` (TensorRT-LLM's docs: `trtllm-serve <model> ...`)
    assert main.main(["trtllm-serve", "some/model", "--bogus"], {}) == 2
    assert "Error: No such option: --bogus" in capsys.readouterr().err


def test_the_secret_rule_is_the_recipes():
    from ixhpc.recipe import SECRET_NAME

    assert main.SECRET_NAME.pattern == SECRET_NAME.pattern and main.SECRET_NAME.flags == SECRET_NAME.flags


def test_with_engine_flags_the_tables_are_the_releases(monkeypatch):
    ef = flagtable.load_engine_flags()
    if ef is None:
        pytest.skip("ixhpc.engine_flags is not installed")
    version = ef.versions("sglang")[0]
    table, _, source = main.tables("sglang", "sglang.launch_server", {}, {main.VERSION_ENV: version})
    assert source["version"] == version and "--tp-size" in table and "--disaggregation-mode" in table
    with pytest.raises(parsing.UsageError, match="unrecognized arguments: --tp-sizee"):
        commands.parse("sglang.launch_server", table, ["--tp-sizee", "4"])


# ----------------------------------------------------------------------------- mapping


def _spec(framework: str, role: str, **more: Any) -> engines.LaunchSpec:
    base: dict[str, Any] = {"framework": framework, "role": role, "model": "/models/dsr1",
                            "served_model_name": "dsr1", "tp": 4, "ep": 4, "max_model_len": 2248,
                            "host": "node1", "port": 8001, "config_dir": "/tmp"}
    return engines.LaunchSpec(**{**base, **more})


def _plan_of(launch: engines.Launch, tmp_path: Path, table_of: Any = None) -> commands.Serve:
    """Run the launch's argv through its stand-in's parser and mapping (its files written here)."""
    argv = list(launch.argv)
    for path, content in launch.files.items():
        local = tmp_path / Path(path).name
        local.write_text(content + "\n")
        argv = [str(local) if a == path else a for a in argv]
    if argv[0] == "trtllm-llmapi-launch":
        argv = argv[1:]
    program, args = (argv[2], argv[3:]) if argv[0] == "python3" else (argv[0], argv[1:])
    command, args, _ = main.command_of(program, args)
    spec = commands.COMMANDS[command]
    fallback = flagtable.FALLBACK.get(spec.family, {})
    table = fallback.get(command, {})
    return commands.plan(command, table, args, launch.env, flagtable.FALLBACK["trt"]["llm_api_options"])


def test_sglang_workers_and_router_map_onto_the_simulated_engine(tmp_path):
    s = _plan_of(engines.launch(_spec("sglang", "prefill", dp_attn=True, bootstrap_port=9001,
                                      additional_settings=["MAX_NUM_TOKENS=8192"])), tmp_path)
    assert (s.kind, s.role, s.host, s.port, s.model) == ("engine", "prefill", "node1", 8001, "dsr1")
    assert (s.tp, s.ep, s.dp, s.max_model_len, s.bootstrap_port, s.max_prefill_tokens) == (4, 4, 4, 2248, 9001, 8192)
    d = _plan_of(engines.launch(_spec("sglang", "decode", spec_decoding="mtp")), tmp_path)
    assert (d.role, d.spec_tokens, d.metrics) == ("decode", DEFAULT_MTP["sglang"], ["sglang"])
    r = _plan_of(engines.launch(_spec("sglang", "router", prefill_urls=["http://a:1", "http://b:1"],
                                      decode_urls=["http://c:2", "http://d:2"],
                                      prefill_bootstrap_ports=[8998, 8999])), tmp_path)
    assert (r.kind, r.prefill, r.decode, r.bootstrap_ports) == (
        "router", ["http://a:1", "http://b:1"], ["http://c:2", "http://d:2"], ["8998", "8999"])


def test_vllm_trt_atom_servers_map_onto_the_simulated_engine(tmp_path):
    v = _plan_of(engines.launch(_spec("vllm", "server", dp_attn=True, spec_decoding="mtp")), tmp_path)
    assert (v.model, v.tp, v.dp, v.ep, v.max_model_len, v.spec_tokens, v.metrics) == (
        "dsr1", 1, 4, 4, 2248, DEFAULT_MTP["vllm"], ["vllm"])
    t = _plan_of(engines.launch(_spec("trt", "server", dp_attn=True, spec_decoding="mtp")), tmp_path)
    assert (t.model, t.tp, t.ep, t.dp, t.port, t.spec_tokens, t.metrics_path) == (
        "/models/dsr1", 4, 4, 4, 8001, DEFAULT_MTP["trt"], "/prometheus/metrics")
    r = _plan_of(engines.launch(_spec("trt", "router", prefill_urls=["http://a:1"], decode_urls=["http://c:2"])),
                 tmp_path)
    assert (r.kind, r.host, r.port, r.prefill, r.decode) == ("router", "node1", 8001, ["http://a:1"], ["http://c:2"])
    a = _plan_of(engines.launch(_spec("atom", "server", ep=1)), tmp_path)
    assert (a.port, a.model, a.tp, a.max_model_len, a.metrics) == (8001, "/models/dsr1", 4, 2248, ["atom"])


def _release_plan(family: str, version: str, launch: engines.Launch, env: dict[str, str]) -> commands.Serve:
    argv = list(launch.argv)
    program, args = (argv[2], argv[3:]) if argv[0] == "python3" else (argv[0], argv[1:])
    command, args, _ = main.command_of(program, args)
    table, options, _ = main.tables(family, command, {}, {main.VERSION_ENV: version})
    return commands.plan(command, table, args, {**launch.env, **env}, options)


def _gpus(n: int) -> dict[str, str]:
    return {"CUDA_VISIBLE_DEVICES": ",".join(map(str, range(n)))}


def test_context_parallel_flags_follow_each_release_and_its_gpu_arithmetic():
    """sglang: --attn-cp-size (0.5.9 on) and --dcp-size (0.5.16 on) split --tp-size, which
    counts the attention CP ranks; vLLM: -pcp multiplies tp x pp, -dcp splits tp. A release
    without the flag refuses it; too few GPUs visible on the node, or sizes that do not
    divide, and the stand-in fails at start as the engine does."""
    ef = flagtable.load_engine_flags()
    if ef is None:
        pytest.skip("ixhpc.engine_flags is not installed")
    cp = engines.launch(_spec("sglang", "server", ep=1, gpu_rule="current", pp=2, dcp_size=2, pcp_size=2))
    for version in ef.versions("sglang"):
        table = main.tables("sglang", "sglang.launch_server", {}, {main.VERSION_ENV: version})[0]
        if "--dcp-size" not in table:
            with pytest.raises(parsing.UsageError, match="unrecognized arguments: --dcp-size"):
                _release_plan("sglang", version, cp, _gpus(16))
            continue
        assert "--attn-cp-size" in table
        s = _release_plan("sglang", version, cp, _gpus(16))      # tp 4 x pcp 2 x pp 2
        assert (s.tp, s.pp, s.cp, s.dcp, s.gpus) == (8, 2, 2, 2, 16)
        assert serve_sim_tp(s) == 16
        with pytest.raises(commands.StartupError, match="16 rank.* need 16 GPU.*8 visible"):
            _release_plan("sglang", version, cp, _gpus(8))
        odd = engines.launch(_spec("sglang", "server", ep=1, tp=6, gpu_rule="current", dcp_size=4))
        with pytest.raises(commands.StartupError, match="--tp-size 6 is not a multiple of --dcp-size 4"):
            _release_plan("sglang", version, odd, _gpus(8))
    attn_only = engines.launch(_spec("sglang", "server", ep=1, gpu_rule="current", pcp_size=2))
    releases = [v for v in ef.versions("sglang") if {"--attn-cp-size", "--enable-prefill-context-parallel"}
                <= set(main.tables("sglang", "sglang.launch_server", {}, {main.VERSION_ENV: v})[0])]
    assert releases and all(_release_plan("sglang", v, attn_only, _gpus(8)).gpus == 8 for v in releases)
    v = engines.launch(_spec("vllm", "server", ep=1, gpu_rule="current", pp=2, dcp_size=2, pcp_size=2))
    for version in ef.versions("vllm"):
        s = _release_plan("vllm", version, v, _gpus(16))
        assert (s.tp, s.pp, s.cp, s.dcp, s.gpus) == (4, 2, 2, 2, 16)
        with pytest.raises(commands.StartupError, match="need 16 GPU"):
            _release_plan("vllm", version, v, _gpus(12))
    bad = engines.launch(_spec("vllm", "server", ep=1, tp=4, gpu_rule="current", dcp_size=3))
    with pytest.raises(commands.StartupError, match="--tensor-parallel-size 4 is not a multiple of "
                                                    "--decode-context-parallel-size 3"):
        _release_plan("vllm", ef.versions("vllm")[0], bad, _gpus(8))


def test_kv_offload_flags_become_the_simulated_dram_tier(tmp_path):
    """Each engine's own knob, sized as the engine reads it (per rank x ranks, or vLLM's total
    in GiB), becomes the simulated engine's DRAM tier; decode workers get none."""
    from ixhpc.standins import serve

    ef = flagtable.load_engine_flags()
    if ef is None:
        pytest.skip("ixhpc.engine_flags is not installed")
    dram = {"kv_offloading": "dram", "total_cpu_dram_gb": 800, "ep": 1, "gpu_rule": "current"}

    def newest(framework: str, role: str, backend: str, **more: Any) -> commands.Serve:
        launch = engines.launch(_spec(framework, role, kv_offload_backend=backend, **dram, **more))
        family = "sglang" if framework == "sglang" else "vllm"
        return _release_plan(family, ef.versions(family)[-1], launch, _gpus(8))

    hicache = newest("sglang", "prefill", "hicache")
    assert hicache.dram_bytes == 200e9 * 4                       # --hicache-size 200 GB on each of 4 ranks
    assert newest("sglang", "decode", "hicache").dram_bytes == 0
    assert newest("vllm", "server", "vllm-simple").dram_bytes == 800e9   # cpu_bytes_to_use per rank
    assert newest("vllm", "server", "native").dram_bytes == 800 * 2**30  # --kv-offloading-size: GiB, total
    trt = _plan_of(engines.launch(_spec("trt", "server", kv_offload_backend="native", **dram)), tmp_path)
    assert trt.dram_bytes == 800e9                               # host_cache_size per rank
    cfg = serve.sim_config(hicache, {})
    assert serve.cache_config(hicache, cfg).dram_tokens == int(800e9 // cfg.kv_bytes_per_token)
    version = ef.versions("sglang")[-1]
    table = main.tables("sglang", "sglang.launch_server", {}, {main.VERSION_ENV: version})[0]
    ratio = commands.plan("sglang.launch_server", table, ["--model-path", "m", "--max-total-tokens", "5000",
                                                          "--enable-hierarchical-cache", "--hicache-ratio", "3"], {})
    assert serve.cache_config(ratio, cfg) == serve.kvcache.CacheConfig(gpu_tokens=5000, dram_tokens=15000)


def test_a_hicache_stand_in_serves_prefixes_back_from_its_dram_tier():
    """sglang started on 8 GPUs with --enable-hierarchical-cache --hicache-size 1 (GB per rank)
    and a 1024-token GPU pool: a prefix pushed out of the GPU by another prompt comes back from the host tier, and
    sglang's HiCache metrics say so."""
    port = _free_port()
    words = [" ".join(f"{tag}{i}" for i in range(640)) for tag in ("a", "b")]
    with _started(["sglang.launch_server", "--model-path", "m", "--port", str(port), "--host", "127.0.0.1",
                   "--tp-size", "8", "--max-total-tokens", "1024", "--enable-hierarchical-cache", "--hicache-size", "1",
                   "--hicache-write-policy", "write_through"],
                  {"IXHPC_STANDIN_CONFIG": ""}, f"http://127.0.0.1:{port}/health"):
        base = f"http://127.0.0.1:{port}"
        for text in (words[0], words[1], words[0]):
            body = json.dumps({"model": "m", "prompt": text, "max_tokens": 2, "ignore_eos": True}).encode()
            req = urllib.request.Request(base + "/v1/completions", data=body,
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=20) as r:
                assert r.status == 200
        metrics = _get(base + "/metrics")
    from ixhpc.sim import model

    tokens = int(8e9 // model.SimConfig().kv_bytes_per_token)   # 1 GB on each of 8 ranks
    assert f'sglang:hicache_host_total_tokens{{model_name="m"}} {tokens}' in metrics
    host = re.search(r'sglang:cached_tokens_total\{model_name="m",cache_source="host"\} (\d+)', metrics)
    assert host and int(host.group(1)) == 5 * 64, metrics  # the 5 blocks evicted to make room for "b"


def serve_sim_tp(s: commands.Serve) -> int:
    from ixhpc.standins import serve

    return serve.sim_config(s, {"gpu": "GB200", "model_params_b": 8}).tp


def test_a_stand_in_with_too_few_gpus_exits_1_with_the_reason(tmp_path):
    argv = ["sglang.launch_server", "--model-path", "m", "--tp-size", "4", "--pp-size", "2", "--port", "1"]
    res = subprocess.run([sys.executable, "-m", "ixhpc.standins", *argv], capture_output=True, text=True,
                         env={**os.environ, **_gpus(4), main.VERSION_ENV: "0.5.16"}, timeout=60)
    assert res.returncode == 1 and "need 8 GPU(s) on this node, 4 visible" in res.stderr, res.stderr


def test_a_trt_option_file_with_an_unknown_key_is_refused(tmp_path):
    bad = tmp_path / "opts.yaml"
    bad.write_text("enable_attention_dp: true\nenable_atention_dp: true\n")
    with pytest.raises(commands.ConfigFileError, match="enable_atention_dp\n  Extra inputs are not permitted"):
        commands.plan("trtllm-serve serve", flagtable.FALLBACK["trt"]["trtllm-serve serve"],
                      ["m", "--extra_llm_api_options", str(bad)], {}, flagtable.FALLBACK["trt"]["llm_api_options"])


@pytest.mark.parametrize("framework", ["dynamo-sglang", "dynamo-vllm", "dynamo-trt"])
def test_dynamo_workers_serve_their_system_port_and_register(tmp_path, framework):
    for role in ("prefill", "decode"):
        s = _plan_of(engines.launch(_spec(framework, role, control_host="ctl")), tmp_path)
        assert (s.kind, s.port, s.etcd) == ("engine", 8001, "http://ctl:2379")
        assert s.role == role if framework != "dynamo-vllm" else s.role == ("prefill" if role == "prefill" else "both")
        assert s.register_as and s.metrics[0] == "dynamo_component"
    f = _plan_of(engines.launch(_spec(framework, "router", prefill_urls=["x"], decode_urls=["y"],
                                      control_host="ctl")), tmp_path)
    assert (f.kind, f.host, f.port, f.etcd, f.metrics) == ("frontend", "node1", 8001, "http://ctl:2379",
                                                           ["dynamo_frontend"])


def test_the_control_plane_services_parse_their_go_flags():
    etcd, nats = engines.dynamo_services("ctl")
    s = commands.plan("etcd", {}, etcd.argv[1:], {})
    assert (s.kind, s.host, s.port) == ("etcd", "0.0.0.0", 2379)
    n = commands.plan("nats-server", {}, nats.argv[1:], {})
    assert (n.kind, n.port) == ("nats", 4222)
    with pytest.raises(parsing.UsageError, match="flag provided but not defined: -bogus"):
        commands.plan("etcd", {}, ["--bogus"], {})


def test_worker_ranks_of_a_multi_node_engine_idle():
    table = flagtable.FALLBACK["sglang"]["sglang.launch_server"]
    assert commands.plan("sglang.launch_server", table, ["--node-rank", "1"], {}).kind == "idle"
    assert commands.plan("sglang.launch_server", table, ["--node-rank", "0"], {}).kind == "engine"
    assert commands.plan("vllm serve", flagtable.FALLBACK["vllm"]["vllm serve"], ["m", "--headless"], {}).kind == "idle"


# ----------------------------------------------------------------------------- serving (no Slurm)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _started(argv: list[str], env: dict[str, str], health: str | None) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "ixhpc.standins", *argv], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        while health:
            try:
                with urllib.request.urlopen(health, timeout=1):
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, f"{argv[0]} not healthy at {health}"
                time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return str(r.read().decode())


def _complete(base: str, n: int = 6, path: str = "/v1/completions") -> list[str]:
    body = json.dumps({"model": "m", "prompt": "a b c d", "max_tokens": n, "stream": True,
                       "ignore_eos": True}).encode()
    req = urllib.request.Request(base + path, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=20) as r:
        return [ln for ln in r.read().decode().split("\n\n") if ln.startswith("data: {")]


def test_a_vllm_stand_in_serves_vllms_surface(tmp_path, monkeypatch):
    port = _free_port()
    env = {"IXHPC_STANDIN_CONFIG": ""}
    with _started(["vllm", "serve", "/models/x", "--served-model-name", "served", "--port", str(port), "-tp", "4",
                   "--host", "127.0.0.1", "--speculative-config", '{"method": "mtp", "num_speculative_tokens": 3}'],
                  env, f"http://127.0.0.1:{port}/health"):
        base = f"http://127.0.0.1:{port}"
        assert json.loads(_get(base + "/v1/models"))["data"][0]["id"] == "served"
        chunks = _complete(base, 8)
        assert sum(c.count('"text":" tok"') for c in chunks) == 8
        metrics = _get(base + "/metrics")
        assert 'vllm:generation_tokens_total{model_name="served"} 8' in metrics
        assert "vllm:num_requests_running" in metrics


def test_dynamo_frontend_routes_to_the_workers_registered_in_etcd(tmp_path):
    etcd_port, p_port, d_port, f_port = (_free_port() for _ in range(4))
    ctl = {"ETCD_ENDPOINTS": f"http://127.0.0.1:{etcd_port}"}
    worker = ["--model-path", "/m", "--served-model-name", "dsr1", "--tp-size", "4"]
    with contextlib.ExitStack() as stack:
        stack.enter_context(_started(["etcd", "--listen-client-urls", f"http://127.0.0.1:{etcd_port}"], {},
                                     f"http://127.0.0.1:{etcd_port}/health"))
        for port, mode in ((p_port, "prefill"), (d_port, "decode")):
            stack.enter_context(_started(["dynamo.sglang", *worker, "--disaggregation-mode", mode],
                                         {**ctl, "DYN_SYSTEM_PORT": str(port), "DYN_SYSTEM_HOST": "127.0.0.1"},
                                         f"http://127.0.0.1:{port}/health"))
        stack.enter_context(_started(["dynamo.frontend", "--http-host", "127.0.0.1", "--http-port", str(f_port)],
                                     ctl, f"http://127.0.0.1:{f_port}/health"))
        base = f"http://127.0.0.1:{f_port}"
        assert json.loads(_get(base + "/v1/models"))["data"][0]["id"] == "dsr1"
        assert sum(c.count("tok") for c in _complete(base, 5)) == 5
        assert "dynamo_frontend_requests_total" in _get(base + "/metrics")
        timings = json.loads(_get(f"http://127.0.0.1:{p_port}/sim/timings"))["records"]
        assert any(r["role"] == "prefill" for r in timings)  # the prompt was prefilled on the prefill worker
        assert "sglang:num_running_reqs" in _get(f"http://127.0.0.1:{d_port}/metrics")


# ----------------------------------------------------------------------------- profiles, render


def _recipe(tmp_path: Path, name: str, entry: dict[str, Any]) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({name: entry}, sort_keys=False))
    return path


def _entry(framework: str, runner: str, image: str, disagg: bool = False, tp: int = 4,
           engine_args: dict[str, list[str]] | None = None) -> dict[str, Any]:
    space: dict[str, Any] = ({"conc-list": [4], "prefill": {"num-worker": 1, "tp": tp, "ep": 1, "dp-attn": False},
                              "decode": {"num-worker": 1, "tp": tp, "ep": 1, "dp-attn": False}}
                             if disagg else {"tp": tp, "ep": 1, "conc-list": [4]})
    return {"image": image, "model": "deepseek-ai/DeepSeek-R1-0528", "model-prefix": "dsr1", "precision": "fp8",
            "framework": framework, "runner": runner, "multinode": disagg, **({"disagg": True} if disagg else {}),
            "seq-len-configs": [{"isl": 64, "osl": 32, "search-space": [space]}],
            "ixhpc": {"time-limit": 5, "health-timeout": 60, "benchmark": {"num-prompts-factor": 2},
                      "sim": {"model-params-b": 8, "active-params-b": 8},
                      **({"engine-args": engine_args} if engine_args else {})}}


CASES: dict[str, tuple[str, str, str, bool]] = {   # name: framework, runner, image, disaggregated
    "sglang": ("sglang", "gb200", "lmsysorg/sglang:v0.5.6.post2-cu129-amd64", False),
    "sglang-disagg": ("sglang-disagg", "gb200-multinode", "lmsysorg/sglang:v0.5.6.post2-cu129-amd64", True),
    "vllm": ("vllm", "gb200", "vllm/vllm-openai:v0.12.0", False),
    "trt": ("trt", "gb200", "nvcr.io/nvidia/tensorrt-llm/release:1.1.0", False),
    "trt-disagg": ("trt", "gb200-multinode", "nvcr.io/nvidia/tensorrt-llm/release:1.1.0", True),
    "atom": ("atom", "mi355x", "rocm/atom:rocm7.0.0-ubuntu24.04-pytorch2.8-atom0.1.1", False),
    "dynamo-sglang": ("dynamo-sglang", "gb200-multinode", "nvcr.io/nvidia/ai-dynamo/sglang-runtime:0.8.1", True),
    "dynamo-vllm": ("dynamo-vllm", "gb200-multinode", "nvcr.io/nvidia/ai-dynamo/vllm-runtime:0.8.1", True),
    "dynamo-trt": ("dynamo-trt", "gb200-multinode", "nvcr.io/nvidia/ai-dynamo/tensorrtllm-runtime:0.8.1", True),
}


def _plans(recipe: Path, profile: str, run_dir: Path) -> list[Any]:
    # The engine check (ixhpc.engine_check) is another test's business: off here.
    kwargs = {"engine_check": False} if "engine_check" in runs.RunTarget.__dataclass_fields__ else {}
    target = runs.RunTarget(recipe, load_profiles()[profile], Filters(), **kwargs)
    return runs.plan(target, run_dir, run_dir.name)


def test_only_the_local_profile_puts_the_stand_ins_in_a_script(tmp_path):
    profiles = load_profiles()
    assert [n for n, p in profiles.items() if p.engine_standins] == ["local"]
    recipe = _recipe(tmp_path, "sg", _entry("sglang", "gb200", CASES["sglang"][2]))
    for name, profile in profiles.items():
        if not profile.partition_for("gb200"):
            continue
        text = render.render(_plans(recipe, name, tmp_path / name)[0])
        lines = [ln for ln in text.splitlines() if Layout.STANDINS in ln]
        if name == "local":
            assert len(lines) == 1 and lines[0].startswith("export PATH=") and "local profile only" in lines[0]
        else:
            assert lines == [] and "IXHPC_STANDIN" not in text


def test_render_writes_the_stand_ins_and_the_jobs_flag_tables(tmp_path):
    recipe = _recipe(tmp_path, "sg", _entry("sglang-disagg", "gb200-multinode", CASES["sglang-disagg"][2], True))
    run = tmp_path / "run"
    for d in Layout.of(run).directories():
        d.mkdir(parents=True, exist_ok=True)
    (plan,) = _plans(recipe, "local", run)
    render.write_job(run, plan)
    lay = Layout.of(run)
    assert {p.name for p in lay.standins_bin.iterdir()} == {*files.EXECUTABLES, "python3"}
    assert (lay.standins_lib / "sglang" / "launch_server.py").is_file()
    assert (lay.standins_lib / "atom" / "entrypoints" / "openai_server.py").is_file()
    config = json.loads(lay.standin_config(plan.key).read_text())
    assert set(config["families"]) == {"sglang", "sglang_router"}
    sg = config["families"]["sglang"]
    assert "--disaggregation-mode" in {f["name"] for f in sg["commands"]["sglang.launch_server"]}
    assert config["sim"]["gpu"] == "GB200" and config["sim"]["model_params_b"] == 8


# ----------------------------------------------------------------------------- on the local cluster


def _submit(recipe: Path, results: Path) -> dict[str, Any]:
    from test_jobs_e2e import ixhpc

    check = ["--no-engine-check"] if "--no-engine-check" in ixhpc("submit", "--help").stdout else []
    res = ixhpc("submit", str(recipe), "--cluster", "local", "--results", str(results), "--json", *check)
    assert res.returncode == 0, res.stderr
    out: dict[str, Any] = json.loads(res.stdout)
    return out


def _program(argv: list[str]) -> list[str]:
    """The engine's own argv of a planned role: without its env prefix and config-file writers."""
    if argv[:1] == ["env"]:
        i = 1
        while "=" in argv[i] and not argv[i].startswith("-"):
            i += 1
        argv = argv[i:]
    while argv[:2] == ["sh", "-c"] and argv[3] == "ixhpc-write-config":
        argv = argv[6:]
    return argv


def _env_prefix(argv: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for word in argv[1:] if argv[:1] == ["env"] else []:
        if "=" not in word or word.startswith("-"):
            break
        k, _, v = word.partition("=")
        out[k] = v
    return out


def _matches(planned: list[str], recorded: list[str]) -> bool:
    """Planned words hold script variables (ixhpc.shell.var: \\0NAME\\0): any value stands there."""
    if len(planned) != len(recorded):
        return False
    for p, r in zip(planned, recorded, strict=True):
        pattern = "".join(".+" if i % 2 else re.escape(part) for i, part in enumerate(p.split("\x00")))
        if not re.fullmatch(pattern, r, re.S):
            return False
    return True


def _check_records(run_dir: Path, recipe: Path) -> None:
    lay = Layout.of(run_dir)
    for plan in _plans(recipe, "local", run_dir):
        for role in plan.roles:
            path = lay.standin_record(plan.key, role.name)
            assert path.is_file(), f"{role.name}: no record {path}"
            record = json.loads(path.read_text())
            want = _program(role.argv)
            assert _matches(want, record["argv"]), (role.name, want, record["argv"])
            for k, v in _env_prefix(role.argv).items():
                assert "\x00" in v or record["env"].get(k) == v, (role.name, k)


def _wait(run_dir: str, timeout: float = 300) -> dict[str, Any]:
    from test_jobs_e2e import wait_status

    return wait_status(run_dir, timeout)


def _job_log(run_dir: Path, key: str) -> str:
    return "\n".join(p.read_text() for p in Layout.of(run_dir).job_logs(key))


@pytest.mark.cluster
def test_every_engine_family_runs_on_the_local_cluster_through_its_real_command_line(slurm, tmp_path):
    from ixhpc.results import load

    # Dynamo's etcd and NATS listen on fixed ports: its jobs go one at a time, after the others.
    batches = [[n for n in CASES if not n.startswith("dynamo")], *([n] for n in CASES if n.startswith("dynamo"))]
    failures = []
    for names in batches:
        doc = {n: _entry(*CASES[n][:3], disagg=CASES[n][3], tp=8 if CASES[n][1] == "mi355x" else 4) for n in names}
        recipe = tmp_path / f"{names[0]}.yaml"
        recipe.write_text(yaml.safe_dump(doc, sort_keys=False))
        out = _submit(recipe, tmp_path / "results")
        status = _wait(out["run_dir"])
        run = Path(out["run_dir"])
        for job in status["jobs"]:
            if job["state"] != "COMPLETED" or job["points_done"] != 1:
                failures.append(f"{job['key']}: {job['state']}\n{_job_log(run, job['key'])[-3000:]}")
        if not failures:
            for h5 in (run / "results").glob("*.h5"):
                assert len(load(str(h5))) == 1
            assert len(list((run / "results").glob("*.h5"))) == len(names)
            _check_records(run, recipe)
    assert not failures, "\n\n".join(failures)


@pytest.mark.cluster
def test_an_unknown_engine_flag_fails_the_job_at_once_with_the_engines_message(slurm, tmp_path):
    doc = {"sg-typo": _entry(*CASES["sglang"][:3], engine_args={"server": ["--tp-sizee", "4"]}),
           "trt-typo": _entry(*CASES["trt"][:3], engine_args={"server": ["--tp_sizee", "4"]})}
    recipe = tmp_path / "typo.yaml"
    recipe.write_text(yaml.safe_dump(doc, sort_keys=False))
    started = time.monotonic()
    out = _submit(recipe, tmp_path / "results")
    status = _wait(out["run_dir"], timeout=120)
    assert time.monotonic() - started < 90  # at once, not after the health timeout
    run = Path(out["run_dir"])
    logs = {j["key"]: (j["state"], _job_log(run, j["key"])) for j in status["jobs"]}
    (sg_state, sg_log), = [v for k, v in logs.items() if k.startswith("sg-typo")]
    (trt_state, trt_log), = [v for k, v in logs.items() if k.startswith("trt-typo")]
    assert sg_state == "FAILED" and "error: unrecognized arguments: --tp-sizee 4" in sg_log, sg_log
    assert "role server exited with status 2" in sg_log
    assert trt_state == "FAILED" and "Error: No such option: --tp_sizee" in trt_log, trt_log


def test_the_run_directorys_executables_and_modules_run_the_stand_ins(tmp_path):
    """bin/ and lib/ as a job sees them: first on PATH and PYTHONPATH, the code from the bundle."""
    from ixhpc import bundle

    lay = Layout.of(tmp_path / "run")
    bundle.write(lay.bundle)
    files.write_programs(lay)
    env = {**os.environ, "PATH": f"{lay.standins_bin}:{os.environ['PATH']}", "PYTHONPATH": str(lay.standins_lib),
           "IXHPC_STANDIN_PYTHON": sys.executable, main.RECORD_ENV: str(tmp_path / "standin-{role}.json"),
           "SLURM_JOB_NAME": "server"}
    env.pop(main.CONFIG_ENV, None)

    def run(*argv: str, **more: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), env={**env, **more}, capture_output=True, text=True, timeout=60,
                              cwd=tmp_path)

    res = run("python3", "-m", "sglang.launch_server", "--model-path", "m", "--bogus")
    assert res.returncode == 2 and "launch_server.py: error: unrecognized arguments: --bogus" in res.stderr
    res = run("trtllm-llmapi-launch", "trtllm-serve", "serve", "m", "--bogus")
    assert res.returncode == 2 and "Error: No such option: --bogus" in res.stderr
    record = json.loads((tmp_path / "standin-server.json").read_text())
    assert record["argv"] == ["trtllm-llmapi-launch", "trtllm-serve", "serve", "m", "--bogus"]
    assert record["python"] == sys.executable
    res = run("etcd", "--bogus")
    assert res.returncode == 2 and "flag provided but not defined: -bogus" in res.stderr
    # A non-zero MPI rank is a worker of rank 0's server: it waits to be stopped.
    proc = subprocess.Popen(["trtllm-llmapi-launch", "trtllm-serve", "serve", "m"], env={**env, "SLURM_PROCID": "1"},
                            stdout=subprocess.PIPE, text=True)
    try:
        assert "waiting to be stopped" in (proc.stdout.readline() if proc.stdout else "")
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
    assert (tmp_path / "standin-server.1.json").is_file()
