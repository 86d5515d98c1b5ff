"""srt-slurm recipes planned as ixhpc jobs: the three worked examples of the srt-slurm SPEC.md
(section 15) as golden process lists, and the planner's rules (docs/srt-slurm.md).

The expected argv are SPEC.md's tables as printed (srtctl's own output), compared modulo
ixhpc's documented deliberate differences, which ``_normalized`` applies to both sides:
ports the job addresses come from its port block (``--port``, ``--http-port``, bootstrap),
``--dump-config-to`` lives under the container's /logs, and a flag srtctl passes twice (its own
and the recipe's, SPEC 17.2) is passed once, with the value the engine reads (the last).
Hosts are shown as ``IP(node-NN)``.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from ixhpc import engines, plan_data, runs
from ixhpc.errors import ConfigError, PlanError
from ixhpc.profiles import get_profile
from ixhpc.srtslurm import load_recipe
from ixhpc.srtslurm.plan import _SETUP as SETUP
from ixhpc.srtslurm.plan import allocate, config_flags, plan_deployment
from ixhpc.sweep import Filters

SGLANG = "recipes-inferencex/sglang/deepseek-v4/8k1k/disagg-mid-curve-1p1d-dep4-dep8-mtp.yaml"
TRTLLM = ("recipes-inferencex/trtllm/glm5/disagg/trtllm_dynamo/gb200_nvfp4/ISL1K_OSL1K/STP/"
          "ctx1dep4_gen1dep8_batch512_eplb0_mtp0.yaml")
VLLM = "recipes-inferencex/vllm/deepseek-v4/8k1k/agg-gb200-low-latency-mtp2.yaml"
PORT_FLAGS = ("--port", "--disaggregation-bootstrap-port", "--dump-config-to")
STANDARD_ENV = ["HEAD_NODE_IP", "ETCD_ENDPOINTS", "NATS_SERVER", "DYN_SYSTEM_PORT", "DYN_REQUEST_PLANE",
                "DYN_SKIP_SGLANG_LOG_FORMATTING", "DYN_LOG"]
IXHPC_ENV = {"DYN_SYSTEM_USE_ENDPOINT_HEALTH_STATUS"}   # ixhpc's health check of Dynamo workers


def _profile() -> Any:
    return get_profile("gb200-nvl72", None).model_copy(update={"model_dir": "/models"})


def _document(path: Path, tmp_path: Path) -> dict[str, Any]:
    target = runs.RunTarget(path, _profile(), Filters(), engine_check=False)
    plans = runs.plan(target, tmp_path / "run", "run")
    doc: dict[str, Any] = plan_data.document("run", "gb200-nvl72", plans)
    return doc


def _hosts(job: dict[str, Any]) -> dict[str, str]:
    """${VAR_HOST} -> IP(node-NN), from each process's node."""
    out = {}
    for p in job["processes"]:
        var = p["role"].upper().replace("-RANK", "_R").replace("-", "_").replace("AGGREGATED", "AGG")
        out[f"${{{var}_HOST}}"] = f"IP(node-{p['node_index']:02d})"
    for name in ("ETCD", "NATS", "NGINX"):
        for p in job["processes"]:
            if p["role"] == name.lower():
                out[f"${{{name}_HOST}}"] = f"IP(node-{p['node_index']:02d})"
    return out


def _normalized(argv: list[str], hosts: dict[str, str] | None = None) -> list[str]:
    words = []
    for w in argv:
        for k, v in (hosts or {}).items():
            w = w.replace(k, v)
        words.append(w)
    items: list[list[str]] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w.startswith("--http-port="):
            items.append(["--http-port=<port>"])
        elif w in PORT_FLAGS and i + 1 < len(words):
            items.append([w, "<value>"])
            i += 1
        elif w.startswith("--") and i + 1 < len(words) and not words[i + 1].startswith("--"):
            items.append([w, words[i + 1]])
            i += 1
        else:
            items.append([w])
        i += 1
    # SPEC 17.2: srtctl passes its own flag and the recipe's; the engine reads the last one
    last = {item[0]: n for n, item in enumerate(items) if item[0].startswith("--")}
    return [w for n, item in enumerate(items) if not item[0].startswith("--") or last[item[0]] == n
            for w in item]


def _spec(text: str) -> list[str]:
    return shlex.split(text)


def _process(job: dict[str, Any], role: str) -> dict[str, Any]:
    return next(p for p in job["processes"] if p["role"] == role)


def _env(process: dict[str, Any], hosts: dict[str, str]) -> list[tuple[str, str]]:
    out = []
    for e in process["env"]:
        value = e["value"]
        for k, v in hosts.items():
            value = value.replace(k, v)
        out.append((e["name"], value))
    return out


def _recipe(srt_slurm: Path, rel: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((srt_slurm / rel).read_text())
    return data


# ---------------------------------------------------------------- 15.1 sglang disaggregated

SGLANG_PREFILL = (
    "python3 -m dynamo.sglang --model-path /model --served-model-name deepseek-ai/DeepSeek-V4-Pro --host 0.0.0.0 "
    "--port 6100 --nccl-port 17500 --disaggregation-mode prefill --disaggregation-bootstrap-port 7200 "
    "--dump-config-to {LOG_DIR}/node-00_config.json --request-plane tcp --chunked-prefill-size 32768 "
    "--cuda-graph-max-bs 256 --data-parallel-size 4 --disaggregation-mode prefill "
    "--disaggregation-transfer-backend mooncake --enable-dp-attention --enable-dp-lm-head "
    "--expert-parallel-size 4 --max-running-requests 256 --mem-fraction-static 0.9 --moe-a2a-backend megamoe "
    "--stream-interval 60 --tensor-parallel-size 4 --tool-call-parser deepseekv4 --trust-remote-code")
SGLANG_DECODE = (
    "python3 -m dynamo.sglang --model-path /model --served-model-name deepseek-ai/DeepSeek-V4-Pro --host 0.0.0.0 "
    "--port 6100 --nccl-port 17501 --disaggregation-mode decode --dist-init-addr IP(node-01):8300 --nnodes 2 "
    "--node-rank 0 --dump-config-to {LOG_DIR}/node-01_config.json --request-plane tcp --context-length 16384 "
    "--cuda-graph-max-bs 256 --data-parallel-size 8 --disaggregation-mode decode "
    "--disaggregation-transfer-backend mooncake --enable-dp-attention --enable-dp-lm-head "
    "--expert-parallel-size 8 --max-running-requests 3072 --mem-fraction-static 0.94 --moe-a2a-backend megamoe "
    "--speculative-algo EAGLE --speculative-eagle-topk 1 --speculative-num-draft-tokens 4 "
    "--speculative-num-steps 3 --stream-interval 60 --swa-full-tokens-ratio 0.15 --tensor-parallel-size 8 "
    "--tool-call-parser deepseekv4 --trust-remote-code")
SGLANG_DECODE_R1 = (SGLANG_DECODE.replace("--port 6100", "--port 0").replace("17501", "17502")
                    .replace("--node-rank 0", "--node-rank 1").replace("node-01_config", "node-02_config"))


def test_sglang_disagg_matches_spec_15_1(srt_slurm: Path, tmp_path: Path) -> None:
    doc = _document(srt_slurm / SGLANG, tmp_path)
    (job,) = doc["jobs"]
    hosts = _hosts(job)
    assert job["kind"] == "disagg"
    s = job["sbatch"]
    assert (s["nodes"], s["ntasks-per-node"], s["gpus-per-node"], s["segment"], s["time"]) == \
        ("3", "1", "4", "3", "01:00:00")
    assert (s["cpus-per-task"], s["mem"]) == ("144", "0")
    got = [(p["role"], p["node_index"], p["nodes"]) for p in job["processes"]]
    assert got == [("etcd", 0, 1), ("nats", 0, 1), ("prefill-0", 0, 1), ("decode-0", 1, 1),
                   ("decode-0-rank1", 2, 1), ("nginx", 0, 1), ("frontend-0", 1, 1), ("frontend-1", 2, 1)]
    for role, expected in (("prefill-0", SGLANG_PREFILL), ("decode-0", SGLANG_DECODE),
                           ("decode-0-rank1", SGLANG_DECODE_R1)):
        assert _normalized(_process(job, role)["argv"], hosts) == _normalized(_spec(expected)), role
    # ixhpc's fixes of SPEC 17.3 / 17.4: a real --port on the follower, the dump under /logs
    follower = _process(job, "decode-0-rank1")["argv"]
    assert follower[follower.index("--port") + 1] == "6100"
    assert follower[follower.index("--dump-config-to") + 1] == "/logs/decode-0-rank1_config.json"
    assert _process(job, "prefill-0")["argv"].count("--disaggregation-mode") == 1

    recipe = _recipe(srt_slurm, SGLANG)
    for role, mode in (("prefill-0", "prefill"), ("decode-0", "decode"), ("decode-0-rank1", "decode")):
        env = [(k, v) for k, v in _env(_process(job, role), hosts) if k not in IXHPC_ENV]
        names = [k for k, _ in env]
        role_map = recipe["backend"][f"{mode}_environment"]
        assert names == STANDARD_ENV + list(role_map), role
        values = dict(env)
        assert values["HEAD_NODE_IP"] == "IP(node-00)"
        assert values["ETCD_ENDPOINTS"].startswith("http://IP(node-00):")
        assert values["NATS_SERVER"].startswith("nats://IP(node-00):")
        assert values["DYN_REQUEST_PLANE"] == "tcp"
        assert values["DYN_LOG"] == "info,dynamo_runtime::pipeline::network::ingress::push_handler=warn"
        assert {k: values[k] for k in role_map} == role_map
        assert "CUDA_VISIBLE_DEVICES" not in values  # whole nodes

    nginx = _process(job, "nginx")
    assert nginx["argv"] == ["bash", "-c", "nginx -c /logs/nginx.conf -g 'daemon off;'"]
    (conf,) = nginx["files"]
    assert conf["path"] == "/logs/nginx.conf"
    text = conf["content"]
    for k, v in hosts.items():
        text = text.replace(k, v)
    assert re.findall(r"server (IP\(node-\d+\)):", text) == ["IP(node-01)", "IP(node-02)"]
    assert "keepalive_timeout 600s;" in text and "client_max_body_size 45m;" in text
    for i in (0, 1):
        fe = _process(job, f"frontend-{i}")
        assert _normalized(fe["argv"]) == ["python3", "-m", "dynamo.frontend", "--http-port=<port>"]
        assert [e["name"] for e in fe["env"]] == ["ETCD_ENDPOINTS", "NATS_SERVER", "DYN_REQUEST_PLANE",
                                                  "DYN_SKIP_SGLANG_LOG_FORMATTING"]
    _check_bench(job, hosts, conc=256, warmups=512, prompts=2560, model="deepseek-ai/DeepSeek-V4-Pro",
                 isl=8192, osl=1024)
    assert job["result_keys"] == {"256": job["key"]}


def _check_bench(job: dict[str, Any], hosts: dict[str, str], conc: int, warmups: int, prompts: int,
                 model: str, isl: int, osl: int) -> None:
    (step,) = job["benchmark"]
    argv = _normalized(step["argv"], hosts)
    opts = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--")}
    assert step["conc"] == conc
    assert opts["--max-concurrency"] == str(conc)
    assert opts["--num-warmups"] == str(warmups)
    assert opts["--num-prompts"] == str(prompts)
    assert opts["--request-rate"] == "inf"
    assert (opts["--model"], opts["--isl"], opts["--osl"]) == (model, str(isl), str(osl))
    assert opts["--random-range-ratio"] == "0.8"
    assert opts["--base-url"].startswith("http://IP(node-00):")   # the public endpoint on the head
    assert "--use-chat-template" in argv and "--ignore-eos" in argv
    assert "--temperature" not in argv   # 0, the client's default (sa-bench's too)


# ---------------------------------------------------------------- 15.2 TensorRT-LLM disaggregated

TRT = ("numactl -m 0,1 trtllm-llmapi-launch python3 -m dynamo.trtllm --model-path /model --served-model-name "
       "GLM-5-NVFP4 --disaggregation-mode {mode} --extra-engine-args /logs/trtllm_config_{mode}.yaml "
       "--request-plane tcp")


def test_trtllm_disagg_matches_spec_15_2(srt_slurm: Path, tmp_path: Path) -> None:
    doc = _document(srt_slurm / TRTLLM, tmp_path)
    (job,) = doc["jobs"]
    hosts = _hosts(job)
    s = job["sbatch"]
    assert (s["nodes"], s["ntasks-per-node"], s["gpus-per-node"], s["segment"]) == ("3", "4", "4", "3")
    got = [(p["role"], p["node_index"], p["nodes"], p["tasks_per_node"]) for p in job["processes"]]
    assert got == [("etcd", 0, 1, 1), ("nats", 0, 1, 1), ("prefill-0", 0, 1, 4), ("decode-0", 1, 2, 4),
                   ("nginx", 0, 1, 1), ("frontend-0", 1, 1, 1), ("frontend-1", 2, 1, 1)]
    recipe = _recipe(srt_slurm, TRTLLM)
    for role, mode in (("prefill-0", "prefill"), ("decode-0", "decode")):
        p = _process(job, role)
        assert p["argv"] == _spec(TRT.format(mode=mode))
        (f,) = p["files"]
        assert f["path"] == f"/logs/trtllm_config_{mode}.yaml"
        assert yaml.safe_load(f["content"]) == recipe["backend"]["trtllm_config"][mode]
        assert f["content"] == yaml.safe_dump(recipe["backend"]["trtllm_config"][mode], sort_keys=True,
                                              width=1000).rstrip("\n")
        env = _env(p, hosts)
        names = [k for k, _ in env if k not in IXHPC_ENV]
        role_map = recipe["backend"][f"{mode}_environment"]
        # SPEC 17.6 fixed: DYN_REQUEST_PLANE for TensorRT-LLM workers too
        assert names == [*STANDARD_ENV, *role_map, "TRTLLM_EPLB_SHM_NAME"]
        assert re.fullmatch(r"moe_shared_[0-9a-f]{32}", dict(env)["TRTLLM_EPLB_SHM_NAME"])
    assert job["processes"][2]["env"] != job["processes"][3]["env"]
    assert _process(job, "prefill-0")["files"][0]["content"].startswith(
        "cache_transceiver_config:\n  backend: UCX\n  max_tokens_in_buffer: 16384\ncuda_graph_config: null\n"
        "disable_overlap_scheduler: true\n")
    _check_bench(job, hosts, conc=4301, warmups=8602, prompts=68816, model="GLM-5-NVFP4", isl=1024, osl=1024)


# ---------------------------------------------------------------- 15.3 vLLM aggregated

VLLM_R0 = (
    'python3 -m dynamo.vllm --model /model --served-model-name deepseek-ai/DeepSeek-V4-Pro --device-ids 0,1,2,3 '
    '--master-addr IP(node-00) --nnodes 2 --node-rank 0 --request-plane tcp --dump-config-to '
    '{LOG_DIR}/node-00_config.json --attention-config \'{"use_fp4_indexer_cache":true}\' --block-size 256 '
    '--compilation-config \'{"cudagraph_mode":"FULL_AND_PIECEWISE","custom_ops":["all"]}\' '
    '--gpu-memory-utilization 0.9 --kv-cache-dtype fp8 --max-cudagraph-capture-size 4 --max-model-len 9280 '
    '--max-num-batched-tokens 8192 --max-num-seqs 4 --no-enable-flashinfer-autotune --no-enable-prefix-caching '
    '--pipeline-parallel-size 1 --served-model-name deepseek-ai/DeepSeek-V4-Pro --speculative-config '
    '\'{"method":"mtp","num_speculative_tokens":2}\' --tensor-parallel-size 8 --tokenizer-mode deepseek_v4 '
    '--trust-remote-code')
VLLM_R1 = VLLM_R0.replace("--node-rank 0", "--node-rank 1 --headless").replace("node-00_config", "node-01_config")


def test_vllm_agg_matches_spec_15_3(srt_slurm: Path, tmp_path: Path) -> None:
    doc = _document(srt_slurm / VLLM, tmp_path)
    (job,) = doc["jobs"]
    hosts = _hosts(job)
    assert job["kind"] == "multi-agg"
    s = job["sbatch"]
    assert (s["nodes"], s["ntasks-per-node"], s["gpus-per-node"], s["segment"], s["time"]) == \
        ("2", "1", "4", "2", "8:00:00")
    got = [(p["role"], p["node_index"]) for p in job["processes"]]
    assert got == [("etcd", 0), ("nats", 0), ("aggregated-0", 0), ("aggregated-0-rank1", 1), ("frontend-0", 0)]
    recipe = _recipe(srt_slurm, VLLM)
    agg_env = recipe["backend"]["aggregated_environment"]
    setup = ["bash", "-c", SETUP, "ixhpc-setup-script", "vllm-container-deps.sh"]   # SPEC 9.3 step 1
    for role, expected, i in (("aggregated-0", VLLM_R0, 0), ("aggregated-0-rank1", VLLM_R1, 1)):
        p = _process(job, role)
        assert p["argv"][:5] == setup
        p["argv"] = p["argv"][5:]
        assert _normalized(p["argv"], hosts) == _normalized(_spec(expected)), role
        assert p["argv"].count("--served-model-name") == 1   # SPEC 17.2: once
        assert "--kv-transfer-config" not in p["argv"]        # connector: null
        env = dict(_env(p, hosts))
        names = [k for k in env if k not in IXHPC_ENV]
        assert names == [*STANDARD_ENV, *agg_env, "DYNAMO_WHEEL_NAME", "DYNAMO_VERSION",
                         "DYN_VLLM_KV_EVENT_PORT", "VLLM_NIXL_SIDE_CHANNEL_PORT", "VLLM_NIXL_SIDE_CHANNEL_HOST"]
        assert env["DYNAMO_WHEEL_NAME"] == "ai_dynamo-1.2.0.dev20260426-py3-none-any.whl"
        assert env["DYNAMO_VERSION"] == "1.2.0.dev20260426"
        assert (env["DYN_VLLM_KV_EVENT_PORT"], env["VLLM_NIXL_SIDE_CHANNEL_PORT"]) == (str(5200 + i), str(5400 + i))
        assert env["VLLM_NIXL_SIDE_CHANNEL_HOST"] == f"IP(node-{i:02d})"
        assert "VLLM_PORT" not in env   # multi-node endpoint: srtctl unsets it
    fe = _process(job, "frontend-0")
    assert fe["argv"][:5] == setup
    assert _normalized(fe["argv"][5:]) == ["python3", "-m", "dynamo.frontend", "--http-port=<port>"]
    assert [e["name"] for e in fe["env"]][-2:] == ["DYNAMO_WHEEL_NAME", "DYNAMO_VERSION"]
    _check_bench(job, hosts, conc=1, warmups=2, prompts=10, model="deepseek-ai/DeepSeek-V4-Pro",
                 isl=8192, osl=1024)


# ---------------------------------------------------------------- rules


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


BASE = """\
name: tiny
model: {path: /models/tiny, container: "img:1", precision: fp8}
resources: {gpu_type: gb200, gpus_per_node: 4, prefill_nodes: 1, prefill_workers: 2, decode_nodes: 1,
            decode_workers: 1, gpus_per_prefill: 2}
frontend: {type: sglang, enable_multiple_frontends: false}
backend:
  type: sglang
  sglang_config:
    prefill: {tensor-parallel-size: 2, json-model-override-args: {a: 1}}
    decode: {tensor-parallel-size: 4}
benchmark: {type: sa-bench, isl: 128, osl: 16, concurrencies: "1x4"}
"""


def test_partial_nodes_router_and_json_maps(tmp_path: Path) -> None:
    (dep,) = load_recipe(_write(tmp_path, BASE))
    alloc = allocate(dep)
    assert [(e.role, e.nodes, e.gpu_ids) for e in alloc.endpoints] == [
        ("prefill", (0,), ((0, 1),)), ("prefill", (0,), ((2, 3),)), ("decode", (1,), ((0, 1, 2, 3),))]
    plan = plan_deployment(dep, _profile(), tmp_path / "run", "run")
    roles = {r.name: r for r in plan.roles}
    assert "etcd" in roles   # SPEC 11.4: infra is still started with the sglang router
    p1 = plan_data.document("run", "x", [plan])["jobs"][0]
    proc = {p["role"]: p for p in p1["processes"]}
    env = {e["name"]: e["value"] for e in proc["prefill-1"]["env"]}
    assert env["CUDA_VISIBLE_DEVICES"] == "2,3"
    argv = proc["prefill-1"]["argv"]
    assert argv[:3] == ["python3", "-m", "sglang.launch_server"]
    assert argv[argv.index("--json-model-override-args") + 1] == '{"a":1}'   # SPEC 17.1: JSON
    router = proc["router-0"]["argv"]
    assert router[:4] == ["python3", "-m", "sglang_router.launch_router", "--pd-disaggregation"]
    assert router.count("--prefill") == 2 and router.count("--decode") == 1
    assert plan.concs == [1, 4] and plan.kind == "disagg"
    meta = plan.metadata(4)
    assert (meta["prefill_num_worker"], meta["prefill_tp"], meta["decode_tp"], meta["gpus"], meta["nodes"]) == \
        (2, 2, 4, 8, 2)


def test_config_flags_rules() -> None:
    assert config_flags({"b_c": True, "a": False, "z": None, "l": [1, 2], "m": 0.5}) == \
        ["--b-c", "--l", "1", "2", "--m", "0.5"]


def test_duplicate_flag_passed_once_with_the_value_the_engine_would_read(tmp_path: Path) -> None:
    # SPEC 17.2: srtctl passes its flag and the recipe's; the engine keeps the last (the
    # recipe's). ixhpc passes that one, except for ports it allocates (the job addresses them).
    text = BASE.replace("decode: {tensor-parallel-size: 4}", "decode: {tensor-parallel-size: 4, "
                        "nccl-port: 1234, disaggregation-mode: decode, port: 9999}")
    (dep,) = load_recipe(_write(tmp_path, text))
    plan = plan_deployment(dep, _profile(), tmp_path / "run", "run")
    argv = next(r.argv for r in plan.roles if r.name == "decode-0")
    assert argv.count("--disaggregation-mode") == 1 and argv.count("--port") == 1
    assert argv[argv.index("--port") + 1] == "\x00DECODE_0_PORT\x00"   # the router addresses it
    assert argv.count("--nccl-port") == 1 and argv[argv.index("--nccl-port") + 1] == "17502"  # srtctl drops it


def test_unsupported_benchmark_refused(tmp_path: Path) -> None:
    text = BASE.replace("benchmark: {type: sa-bench, isl: 128, osl: 16, concurrencies: \"1x4\"}",
                        "benchmark: {type: manual}")
    (dep,) = load_recipe(_write(tmp_path, text))
    with pytest.raises(ConfigError, match="sa-bench"):
        plan_deployment(dep, _profile(), tmp_path / "run", "run")


@pytest.mark.parametrize(("mult", "warmups"), [(None, [2, 8]), (0, [0, 0]), (1, [1, 4]), (2, [2, 8])])
def test_warmup_mult_per_concurrency(tmp_path: Path, mult: int | None, warmups: list[int]) -> None:
    # SPEC 13.2: each concurrency C warms up with C x num_warmup_mult prompts (0: none)
    line = "" if mult is None else f", num_warmup_mult: {mult}"
    text = BASE.replace('concurrencies: "1x4"}', f'concurrencies: "1x4"{line}}}')
    (dep,) = load_recipe(_write(tmp_path, text))
    job = plan_data.document("run", "x", [plan_deployment(dep, _profile(), tmp_path / "run", "run")])["jobs"][0]
    got = [s["argv"][s["argv"].index("--num-warmups") + 1] for s in job["benchmark"]]
    assert got == [str(w) for w in warmups]


def test_warmup_mult_3_with_several_concurrencies_refused(tmp_path: Path) -> None:
    text = BASE.replace('concurrencies: "1x4"}', 'concurrencies: "1x4", num_warmup_mult: 3}')
    (dep,) = load_recipe(_write(tmp_path, text))
    with pytest.raises(PlanError, match="num_warmup_mult 3 with several concurrencies"):
        plan_deployment(dep, _profile(), tmp_path / "run", "run")


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_engine_flags_are_checked_at_the_recipe_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ixhpc.srtslurm import file_errors

    # sglang 0.5.8 has a flag list of its own: a problem is an error, at the key that gave it
    text = (BASE.replace('container: "img:1"', 'container: "lmsysorg/sglang:v0.5.8"')
            .replace("decode: {tensor-parallel-size: 4}", "decode: {tensor-parallel-size: 4,\n"
                     "             cuda-graph-max-bss: 8}")
            .replace("frontend: {type: sglang, enable_multiple_frontends: false}",
                     "frontend: {type: sglang, enable_multiple_frontends: false, args: {policy: nearest}}"))
    path = _write(tmp_path, text)
    errors = file_errors(str(path))
    assert errors is not None
    key = [e for e in errors if "backend.sglang_config.decode.cuda-graph-max-bss: decode-0:" in e]
    assert len(key) == 1 and f"{path}:{_line_of(path, 'cuda-graph-max-bss')}:" in key[0]
    assert "did you mean '--cuda-graph-max-bs'?" in key[0]
    # the router's flag data stops at an older release than the image's: a warning, located too
    assert not [e for e in errors if "policy" in e]
    warned = [w for w in capsys.readouterr().err.splitlines() if "frontend.args.policy: warning: router-0:" in w]
    assert len(warned) == 1 and "'--policy' expects one of" in warned[0] and "older release" in warned[0]
    assert file_errors(str(path), engine_check=False) == []
    # render/submit refuse the same, unless --no-engine-check
    target = runs.RunTarget(path, _profile(), Filters())
    with pytest.raises(ConfigError) as exc:
        runs.plan(target, tmp_path / "run", "run")
    assert any("cuda-graph-max-bss" in e for e in exc.value.errors)
    runs.plan(runs.RunTarget(path, _profile(), Filters(), engine_check=False), tmp_path / "run2", "run")


def test_trtllm_option_keys_are_checked_at_the_recipe_key(tmp_path: Path) -> None:
    from ixhpc.srtslurm import file_errors

    text = """\
name: tiny-trt
model: {path: /models/tiny, container: "nvcr.io/nvidia/tensorrt-llm/release:1.1.0", precision: fp8}
resources: {gpu_type: h100, gpus_per_node: 4, agg_nodes: 1, agg_workers: 1}
frontend: {type: trtllm_serve, enable_multiple_frontends: false}
backend:
  type: trtllm
  trtllm_config:
    aggregated:
      kv_cache_confg: {free_gpu_memory_fraction: 0.8}
benchmark: {type: sa-bench, isl: 128, osl: 16, concurrencies: "4"}
"""
    path = _write(tmp_path, text)
    errors = file_errors(str(path))
    assert errors is not None and len(errors) == 1, errors
    assert errors[0].startswith(f"{path}:{_line_of(path, 'kv_cache_confg')}: "
                                "backend.trtllm_config.aggregated.kv_cache_confg: aggregated-0: --config file")
    assert "unknown LLM-API option 'kv_cache_confg'" in errors[0] and "kv_cache_config" in errors[0]


def test_setup_script_runs_from_configs_or_warns(tmp_path: Path) -> None:
    import subprocess

    def run(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-c", SETUP, "ixhpc-setup-script", name, "sh", "-c", "echo program"],
                              capture_output=True, text=True, timeout=30)
    missing = run("no-such-setup-script-ixhpc.sh")   # srtctl: a warning, and the program runs
    assert missing.stdout == "program\n" and "setup_script no-such-setup-script-ixhpc.sh: not in /configs" \
        in missing.stderr


def test_dynamo_version_is_installed_in_worker_and_frontend_containers(tmp_path: Path) -> None:
    from ixhpc.srtslurm.plan import _DYNAMO_INSTALL

    text = BASE.replace("frontend: {type: sglang, enable_multiple_frontends: false}",
                        "frontend: {type: dynamo, enable_multiple_frontends: false}\ndynamo: {version: 0.9.1}")
    (dep,) = load_recipe(_write(tmp_path, text))
    plan = plan_deployment(dep, _profile(), tmp_path / "run", "run")
    install = ["bash", "-c", _DYNAMO_INSTALL, "ixhpc-dynamo-install", "0.9.1"]
    for role in plan.roles:
        program = list(engines.unbuild(role.argv).program)
        wanted = role.name.startswith(("prefill", "decode", "frontend"))   # SPEC 9.3: not etcd/NATS
        assert (program[:5] == install) == wanted, role.name
        assert ("--container-remap-root" in role.command) == wanted, role.name
    assert any("0.9.1 installed from PyPI" in line for line in plan.header)
    # hash / wheel / top_of_tree builds are not performed; nor on the local profile (stand-ins)
    (dep,) = load_recipe(_write(tmp_path, text.replace("version: 0.9.1", "hash: 81d0555e")))
    plan = plan_deployment(dep, _profile(), tmp_path / "run", "run")
    assert not any("ixhpc-dynamo-install" in r.argv for r in plan.roles)
    assert any("not installed by the job" in line and "hash 81d0555e" in line for line in plan.header)
    (dep,) = load_recipe(_write(tmp_path, text))
    local = get_profile("local", None)
    plan = plan_deployment(dep, local, tmp_path / "run", "run")
    assert not any("ixhpc-dynamo-install" in r.argv for r in plan.roles)


MOONCAKE_VLLM = """\
name: tiny-vllm-mooncake
model: {path: /models/tiny, container: "vllm/vllm-openai:v0.19.0", precision: fp8}
resources: {gpu_type: gb200, gpus_per_node: 4, prefill_nodes: 1, prefill_workers: 1, decode_nodes: 1,
            decode_workers: 1}
frontend: {type: dynamo, enable_multiple_frontends: false}
dynamo: {install: false}
backend:
  type: vllm
  connector: null
  mooncake_kv_store:
    container: "mooncake/master:1"
    env: {MC_TE_METRIC: "0"}
    master_extra_args: ["--eviction_ratio=0.10"]
    store_config: {metadata_server: P2PHANDSHAKE, protocol: rdma, global_segment_size: 140GB}
  vllm_config:
    prefill: {tensor-parallel-size: 4, kv-transfer-config: '{"kv_connector":"MooncakeStoreConnector"}'}
    decode: {tensor-parallel-size: 4, kv-transfer-config: '{"kv_connector":"MooncakeStoreConnector"}'}
benchmark: {type: sa-bench, isl: 128, osl: 16, concurrencies: "4"}
"""


def test_mooncake_master_and_its_worker_environment(tmp_path: Path) -> None:
    (dep,) = load_recipe(_write(tmp_path, MOONCAKE_VLLM))
    plan = plan_deployment(dep, _profile(), tmp_path / "run", "run")
    roles = {r.name: r for r in plan.roles}
    master = roles["mooncake"]
    assert master.node_index == 0 and master.kv_port          # the infra node; RPC + metadata ports
    image = re.compile(r"--container-image=(\S+)")
    assert "mooncake" in image.search(master.command)[1] and "vllm" in image.search(roles["decode-0"].command)[1]
    built = engines.unbuild(master.argv)
    assert built.program[0] == "mooncake_master" and built.program[-1] == "--eviction_ratio=0.10"
    assert "--port=\x00MOONCAKE_PORT\x00" in built.program
    assert "--http_metadata_server_port=\x00MOONCAKE_KV_PORT\x00" in built.program
    ((path, content),) = built.files                         # SPEC 12.2: vLLM's store config, first
    assert path == "/logs/mooncake_store_config.json"
    assert json.loads(content) == {"metadata_server": "P2PHANDSHAKE", "protocol": "rdma",
                                   "global_segment_size": "140GB",
                                   "master_server_address": "\x00MOONCAKE_HOST\x00:\x00MOONCAKE_PORT\x00"}
    env = dict(engines.unbuild(roles["decode-0"].argv).env)
    names = list(env)
    # SPEC 9.1 row 15, after the vLLM per-process variables (row 14)
    assert names.index("MOONCAKE_LOCAL_HOSTNAME") > names.index("VLLM_NIXL_SIDE_CHANNEL_HOST")
    assert names[names.index("MOONCAKE_LOCAL_HOSTNAME"):] == [
        "MOONCAKE_LOCAL_HOSTNAME", "MC_TE_METRIC", "MOONCAKE_MASTER", "MOONCAKE_TE_META_DATA_SERVER",
        "MOONCAKE_CONFIG_PATH"]
    assert env["MOONCAKE_LOCAL_HOSTNAME"] == "\x00DECODE_0_HOST\x00"
    assert env["MOONCAKE_TE_META_DATA_SERVER"] == "http://\x00MOONCAKE_HOST\x00:\x00MOONCAKE_KV_PORT\x00/metadata"
    assert env["MOONCAKE_CONFIG_PATH"] == "/logs/mooncake_store_config.json"


def test_mooncake_master_stand_in_serves_metadata(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    def free() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    rpc, meta = free(), free()
    proc = subprocess.Popen([sys.executable, "-m", "ixhpc.standins", "mooncake_master", f"--port={rpc}",
                             "--rpc_address=127.0.0.1", "--enable_http_metadata_server=true",
                             f"--http_metadata_server_port={meta}", "--eviction_ratio=0.1"],
                            cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{meta}/metadata?key=seg0"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(urllib.request.Request(url, data=b"hello", method="PUT"), timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.2)
        assert urllib.request.urlopen(url, timeout=5).read() == b"hello"
        socket.create_connection(("127.0.0.1", rpc), timeout=5).close()   # the RPC port accepts
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    bad = subprocess.run([sys.executable, "-m", "ixhpc.standins", "mooncake_master", "--bogus=1"],
                         cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "flag provided but not defined: -bogus" in bad.stderr


def test_numactl_stand_in_runs_the_command_and_refuses_bad_options(tmp_path: Path) -> None:
    import subprocess
    import sys

    def numactl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ixhpc.standins", "numactl", *args],
                              capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[1])

    ok = numactl("-m", "0,1", "--cpunodebind=0", "sh", "-c", "echo ran $0", "it")
    assert ok.returncode == 0 and ok.stdout == "ran it\n", ok.stderr
    bad = numactl("--bogus", "true")
    assert bad.returncode == 1 and "unrecognized option '--bogus'" in bad.stderr
    assert numactl("-m").returncode == 1


# ---------------------------------------------------------------- end to end (local cluster)

LOCAL = """\
name: tiny-sglang-disagg
model: {path: "hf:org/tiny-model", container: "lmsysorg/sglang:v0.5.4", precision: fp8}
slurm: {time_limit: "00:20:00"}
resources: {gpu_type: mi355x, gpus_per_node: 8, prefill_nodes: 1, prefill_workers: 1,
            decode_nodes: 1, decode_workers: 1}
frontend: {type: dynamo, enable_multiple_frontends: false}
dynamo: {install: false}
backend:
  type: sglang
  prefill_environment: {PYTHONUNBUFFERED: "1"}
  decode_environment: {PYTHONUNBUFFERED: "1", SRT_ROLE: "decode"}
  sglang_config:
    prefill: {tensor-parallel-size: 8, disaggregation-mode: prefill, mem-fraction-static: 0.8}
    decode: {tensor-parallel-size: 8, disaggregation-mode: decode, mem-fraction-static: 0.8}
environment: {SRT_ROLE: "global"}
health_check: {max_attempts: 60, interval_seconds: 2}
benchmark: {type: sa-bench, isl: 128, osl: 16, concurrencies: "2x4"}
"""


def test_plan_json_marks_the_recipes_variables(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "ixhpc", "render", str(_write(tmp_path, LOCAL)), "--cluster", "local",
                          "--plan-json"], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    (job,) = json.loads(out.stdout)["jobs"]
    decode = next(p for p in job["processes"] if p["role"] == "decode-0")
    origin = {e["name"]: e["origin"] for e in decode["env"]}
    assert origin["SRT_ROLE"] == origin["PYTHONUNBUFFERED"] == "recipe"    # role map, global environment:
    assert origin["DYN_SYSTEM_PORT"] == origin["ETCD_ENDPOINTS"] == "engine"   # ixhpc's (srtctl's) own


@pytest.mark.cluster
def test_sglang_disagg_recipe_runs_on_the_local_cluster(slurm: dict[str, str], tmp_path: Path) -> None:
    import json

    from ixhpc.results import load

    from test_jobs_e2e import submit, wait_status

    out = submit(_write(tmp_path, LOCAL), tmp_path / "results")
    (job,) = wait_status(out["run_dir"])["jobs"]
    assert job["state"] == "COMPLETED", job
    assert job["points_done"] == job["points_total"] == 2
    run = Path(out["run_dir"])
    table = load(str(next((run / "results").glob("*c4*.h5"))))
    assert table["conc"].tolist() == [4]
    logs = run / "logs" / "tiny-sglang-disagg"
    decode = json.loads((logs / "standin-decode-0.json").read_text())
    argv = decode["argv"]
    assert argv[:3] == ["python3", "-m", "dynamo.sglang"]
    assert argv.count("--disaggregation-mode") == 1 and "--nccl-port" in argv
    assert decode["env"]["SRT_ROLE"] == "global"   # SPEC 9.1: the global map overrides the role map
    assert {"standin-etcd.json", "standin-nats.json", "standin-frontend-0.json"} <= {p.name for p in logs.iterdir()}
