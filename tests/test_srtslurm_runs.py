"""srt-slurm reference recipes run end to end on the local cluster through the engine stand-ins,
from `submit` to HDF5 (issue 15 item 6): a TensorRT-LLM disaggregated one behind nginx and three
Dynamo frontends, and a vLLM aggregated one over two nodes behind nginx.

Each is the reference file itself as the `base` of an override file whose one variant shrinks it
to the local cluster (GB200-like nodes of 4 GPUs, the simulated engine's speed): the override
mechanism a user would use, so the recipe's engine configs and environments run as written."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import reference_path
from test_agentic_jobs import PROFILES

from test_jobs_e2e import submit, wait_status

# Recipes that fit the 4 (TensorRT-LLM) and 2 (vLLM) GB200-like nodes once shrunk.
TRTLLM = "recipes-srt-slurm/trtllm/gb200-fp8/8k1k/stp/ctx3_gen1_dep16_batch32_eplb0_mtp0_615.yaml"
VLLM = "recipes-inferencex/vllm/deepseek-v4/8k1k/agg-gb200-low-latency-mtp2.yaml"
LOCAL = {"slurm": {"time_limit": "00:20:00"}, "health_check": {"max_attempts": 90, "interval_seconds": 2}}


def _override_file(tmp_path: Path, base: dict[str, Any], local: dict[str, Any]) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"base": base, "override_local": {**LOCAL, **local}}, sort_keys=False))
    return path


def _records(logs: Path) -> dict[str, dict[str, Any]]:
    return {p.name.removeprefix("standin-").removesuffix(".json"): json.loads(p.read_text())
            for p in logs.glob("standin-*.json")}


def _finished(out: dict[str, Any], points: int) -> tuple[Path, Path]:
    (job,) = wait_status(out["run_dir"], timeout=420)["jobs"]
    assert job["state"] == "COMPLETED", job
    assert job["points_done"] == job["points_total"] == points
    run = Path(out["run_dir"])
    return run, run / "logs" / job["key"]


def _upstreams(conf: str) -> list[str]:
    return [line.split()[1].rstrip(";") for line in conf.splitlines()
            if line.strip().startswith("server ") and line.strip().endswith(";")]


Submitted = tuple[Path, dict[str, Any]]   # a test's own directory and its submit's --json


@pytest.fixture(scope="module")
def submitted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
              _local_cluster: dict[str, str]) -> dict[str, Submitted | BaseException]:
    """Every selected cluster test's run, submitted together up front: the GB200 ones run while
    the MI355X ones do instead of each test queueing after the last; each test waits for its own."""
    runs: dict[str, Submitted | BaseException] = {}
    for item in request.session.items:
        start = _SUBMITS.get(getattr(item, "originalname", item.name))
        if item.module is request.module and start is not None:
            tmp = tmp_path_factory.mktemp("srt-run")
            params = item.callspec.params.values() if hasattr(item, "callspec") else ()
            try:
                runs[item.name] = (tmp, start(tmp, *params))
            except pytest.skip.Exception as skipped:   # e.g. reference data absent: that test skips
                runs[item.name] = skipped
    return runs


def _own(submitted: dict[str, Submitted | BaseException], request: pytest.FixtureRequest) -> Submitted:
    run = submitted[request.node.name]
    if isinstance(run, BaseException):
        raise run
    return run


def _submit_trtllm(tmp_path: Path) -> dict[str, Any]:
    base = yaml.safe_load((reference_path("srt-slurm") / TRTLLM).read_text())
    # 1 prefill worker of 8 GPUs as the recipe's (2 nodes; the simulated 671B fp8 model needs them),
    # 1 decode worker of 8 GPUs (2 nodes): the whole local GB200 partition
    local = {"model": {"path": "hf:deepseek-ai/DeepSeek-R1-0528"},
             "resources": {"prefill_nodes": 2, "prefill_workers": 1, "decode_nodes": 2, "gpus_per_decode": 8},
             "backend": {"trtllm_config": {"decode": {"tensor_parallel_size": 8, "moe_expert_parallel_size": 8}}},
             "infra": {"etcd_nats_dedicated_node": False},
             "benchmark": {"isl": 128, "osl": 16, "concurrencies": ["4"], "num_prompts_mult": 4}}
    return submit(_override_file(tmp_path, base, local), tmp_path / "results")


@pytest.mark.cluster
def test_trtllm_disagg_recipe_runs_behind_nginx_and_three_frontends(slurm: dict[str, str], srt_slurm: Path,
                                                                 submitted: dict[str, Any],
                                                                 request: pytest.FixtureRequest) -> None:
    from ixhpc.results import load

    base = yaml.safe_load((srt_slurm / TRTLLM).read_text())
    run, logs = _finished(_own(submitted, request)[1], 1)
    (h5,) = (run / "results").glob("*.h5")
    assert load(str(h5))["conc"].tolist() == [4]

    rec = _records(logs)
    assert {"etcd", "nats", "prefill-0", "decode-0", "frontend-0", "frontend-1", "frontend-2"} <= set(rec)
    decode = rec["decode-0"]
    # numactl (gb200) and trtllm-llmapi-launch around dynamo.trtllm, one MPI rank per GPU (8)
    assert decode["argv"][:4] == ["trtllm-llmapi-launch", "python3", "-m", "dynamo.trtllm"]
    assert decode["argv"][decode["argv"].index("--disaggregation-mode") + 1] == "decode"
    # one step of 8 MPI ranks (one per GPU): rank 0 serves, ranks 1-7 are its workers
    assert {n for n in rec if n.startswith("decode-0")} == {"decode-0", *(f"decode-0.{r}" for r in range(1, 8))}
    assert all(rec[f"decode-0.{r}"]["command"] == "trtllm-llmapi-launch" for r in range(1, 8))
    options = decode["argv"][decode["argv"].index("--extra-engine-args") + 1]
    wanted = {**base["backend"]["trtllm_config"]["decode"], "tensor_parallel_size": 8, "moe_expert_parallel_size": 8}
    prefill = rec["prefill-0"]
    assert prefill["argv"][prefill["argv"].index("--disaggregation-mode") + 1] == "prefill"
    assert yaml.safe_load(Path(options).read_text()) == wanted      # the recipe's map, as the YAML file
    env = decode["env"]
    assert env["TRTLLM_FORCE_COMM_METHOD"] == "NVLINK_TWO_SIDED"   # the decode role's environment
    assert env["DYN_REQUEST_PLANE"] == "nats" and "--request-plane" in decode["argv"]
    assert env["TRTLLM_EPLB_SHM_NAME"].startswith("moe_shared_")
    # nginx on the head, round robin over a Dynamo frontend on each of the other three nodes
    ports = [next(a.split("=", 1)[1] for a in rec[f"frontend-{i}"]["argv"] if a.startswith("--http-port="))
             for i in (0, 1, 2)]
    assert [u.rsplit(":", 1)[1] for u in _upstreams((logs / "nginx.conf").read_text())] == ports


def _submit_vllm(tmp_path: Path) -> dict[str, Any]:
    base = yaml.safe_load((reference_path("srt-slurm") / VLLM).read_text())
    # The shape is the recipe's (TP 8 over 2 nodes). What the local flag data cannot take: vLLM's
    # `deepseek_v4` tokenizer mode and srtctl's `--device-ids` are newer than the newest Dynamo
    # release ixhpc has flag lists for (validate warns about both); GPUs go by CUDA_VISIBLE_DEVICES.
    local = {"model": {"path": "hf:deepseek-ai/DeepSeek-V4-Pro"},
             "frontend": {"enable_multiple_frontends": True},
             "backend": {"set_cuda_visible_devices": True, "vllm_config": {"aggregated": {"tokenizer-mode": None}}},
             "benchmark": {"isl": 128, "osl": 16, "concurrencies": "1x2"}}
    return submit(_override_file(tmp_path, base, local), tmp_path / "results")


@pytest.mark.cluster
def test_vllm_agg_recipe_runs_over_two_nodes_behind_nginx(slurm: dict[str, str], srt_slurm: Path,
                                                          submitted: dict[str, Any],
                                                          request: pytest.FixtureRequest) -> None:
    from ixhpc.results import load

    run, logs = _finished(_own(submitted, request)[1], 2)
    assert sorted(load(str(h))["conc"].tolist()[0] for h in (run / "results").glob("*.h5")) == [1, 2]

    rec = _records(logs)
    leader, follower = rec["aggregated-0"], rec["aggregated-0-rank1"]
    assert leader["argv"][:3] == ["python3", "-m", "dynamo.vllm"]
    assert "--headless" in follower["argv"] and "--headless" not in leader["argv"]
    for r, rank in ((leader, "0"), (follower, "1")):
        argv = r["argv"]
        assert argv[argv.index("--node-rank") + 1] == rank and argv[argv.index("--nnodes") + 1] == "2"
        assert argv[argv.index("--tensor-parallel-size") + 1] == "8"
        assert argv[argv.index("--speculative-config") + 1] == '{"method":"mtp","num_speculative_tokens":2}'
        assert "--kv-transfer-config" not in argv                     # connector: null
        assert r["env"]["VLLM_USE_NCCL_SYMM_MEM"] == "1"               # the aggregated role's environment
        assert r["env"]["DYNAMO_WHEEL_NAME"] == "ai_dynamo-1.2.0.dev20260426-py3-none-any.whl"
        assert "VLLM_PORT" not in r["env"]                              # multi-node endpoint (SPEC 9.1)
    assert "frontend-0" in rec and "frontend-1" not in rec            # the one non-head worker node
    assert len(_upstreams((logs / "nginx.conf").read_text())) == 1


HET = """\
name: tiny-sglang-het
model: {path: "hf:org/tiny-model", container: "lmsysorg/sglang:v0.5.4", precision: fp8}
slurm: {time_limit: "00:20:00"}
resources: {gpu_type: mi355x, gpus_per_node: 8, prefill_nodes: 1, prefill_workers: 1,
            decode_nodes: 1, decode_workers: 1, het_jobs: true}
frontend: {type: dynamo}
dynamo: {install: false}
backend:
  type: sglang
  sglang_config:
    prefill: {tensor-parallel-size: 8, mem-fraction-static: 0.8}
    decode: {tensor-parallel-size: 8, mem-fraction-static: 0.8}
health_check: {max_attempts: 60, interval_seconds: 2}
benchmark: {type: sa-bench, isl: 128, osl: 16, concurrencies: "2"}
"""


def _submit_recipe(text: str) -> Any:
    def start(tmp_path: Path) -> dict[str, Any]:
        path = tmp_path / "recipe.yaml"
        path.write_text(text)
        return submit(path, tmp_path / "results")
    return start


@pytest.mark.cluster
def test_sglang_het_job_recipe_runs_as_a_heterogeneous_job(slurm: dict[str, str], submitted: dict[str, Any],
                                                           request: pytest.FixtureRequest) -> None:
    from ixhpc.results import load

    run, logs = _finished(_own(submitted, request)[1], 1)
    (h5,) = (run / "results").glob("*.h5")
    assert load(str(h5))["conc"].tolist() == [2]
    script = next((run / "scripts").glob("*.sbatch")).read_text()
    # SPEC 6.5: component 0 the prefill node, component 1 the decode node; each srun in its own
    assert script.count("#SBATCH hetjob") == 1
    lines = script.replace("\\\n", " ").splitlines()
    steps = {line.split("--job-name=")[1].split()[0]: line
             for line in lines if "srun --overlap" in line and "--job-name=" in line}
    assert "--het-group=0" in steps["prefill-0"] and "--het-group=1" in steps["decode-0"]
    # nginx on the head (component 0) in front of the Dynamo frontend on the decode node
    assert "--het-group=1" in steps["frontend-0"] and "--het-group=0" in steps["nginx"]
    assert {"prefill-0", "decode-0", "frontend-0"} <= set(_records(logs))


MOONCAKE = HET.replace("tiny-sglang-het", "tiny-sglang-mooncake").replace(", het_jobs: true", "").replace(
    "frontend: {type: dynamo}", "frontend: {type: dynamo, enable_multiple_frontends: false}").replace(
    "  sglang_config:\n", "  mooncake_kv_store:\n    env: {MC_TE_METRIC: \"0\"}\n"
    "    master_extra_args: [\"--eviction_ratio=0.10\"]\n  sglang_config:\n").replace(
    "mem-fraction-static: 0.8}", "mem-fraction-static: 0.8, disaggregation-transfer-backend: mooncake}")


@pytest.mark.cluster
def test_sglang_mooncake_recipe_runs_with_its_master(slurm: dict[str, str], submitted: dict[str, Any],
                                                    request: pytest.FixtureRequest) -> None:
    run, logs = _finished(_own(submitted, request)[1], 1)
    rec = _records(logs)
    master = rec["mooncake"]
    assert master["argv"][0] == "mooncake_master" and master["argv"][-1] == "--eviction_ratio=0.10"
    port = next(a.split("=", 1)[1] for a in master["argv"] if a.startswith("--port="))
    meta = next(a.split("=", 1)[1] for a in master["argv"] if a.startswith("--http_metadata_server_port="))
    for worker in ("prefill-0", "decode-0"):
        env = rec[worker]["env"]
        assert env["MOONCAKE_MASTER"].endswith(f":{port}") and env["MC_TE_METRIC"] == "0"
        assert env["MOONCAKE_TE_META_DATA_SERVER"].endswith(f":{meta}/metadata")
        argv = rec[worker]["argv"]
        assert argv[argv.index("--disaggregation-transfer-backend") + 1] == "mooncake"


PER_GPU = """\
name: tiny-vllm-per-gpu
model: {path: "hf:org/tiny-model", container: "vllm/vllm-openai:v0.20.1-ubuntu2404", precision: fp8}
slurm: {time_limit: "00:20:00"}
resources: {gpu_type: mi355x, gpus_per_node: 8, prefill_nodes: 1, prefill_workers: 1, gpus_per_prefill: 4,
            decode_nodes: 1, decode_workers: 1, gpus_per_decode: 8}
frontend: {type: dynamo, enable_multiple_frontends: false}
dynamo: {install: false}
backend:
  type: vllm
  connector: null
  dp_launch_mode: per_gpu
  set_cuda_visible_devices: true
  vllm_config:
    prefill: {tensor-parallel-size: 1, data-parallel-size: 4, enable-expert-parallel: true}
    decode: {tensor-parallel-size: 8}
health_check: {max_attempts: 90, interval_seconds: 2}
benchmark: {type: sa-bench, isl: 128, osl: 16, concurrencies: "1x2", num_warmup_mult: 1}
"""


@pytest.mark.cluster
def test_vllm_per_gpu_dp_recipe_runs_one_process_per_gpu(slurm: dict[str, str], submitted: dict[str, Any],
                                                         request: pytest.FixtureRequest) -> None:
    from ixhpc.results import load

    run, logs = _finished(_own(submitted, request)[1], 2)
    assert sorted(load(str(h))["conc"].tolist()[0] for h in (run / "results").glob("*.h5")) == [1, 2]
    rec = _records(logs)
    # SPEC 10.3 per_gpu: one dynamo.vllm process per GPU of the prefill endpoint, DP rank = index
    assert {n for n in rec if n.startswith("prefill")} == {"prefill-0", "prefill-0-rank1", "prefill-0-rank2",
                                                           "prefill-0-rank3"}
    for rank, name in enumerate(("prefill-0", "prefill-0-rank1", "prefill-0-rank2", "prefill-0-rank3")):
        argv, env = rec[name]["argv"], rec[name]["env"]
        assert argv[argv.index("--data-parallel-rank") + 1] == str(rank)
        assert argv[argv.index("--data-parallel-size") + 1] == "4"
        assert env["CUDA_VISIBLE_DEVICES"] == str(rank)
        # SPEC 17.14 fixed: each process its own config dump (and log, health check)
        assert argv[argv.index("--dump-config-to") + 1].endswith(f"/{name}_config.json")
    assert "--data-parallel-rank" not in rec["decode-0"]["argv"]   # no DP: one process
    # num_warmup_mult 1: each concurrency warms up with C prompts
    configs = [json.loads(p.read_text())["config"] for p in sorted((run / "points").rglob("bench-c*.json"))]
    assert [(c["max_concurrency"], c["num_warmups"]) for c in configs] == [(1, 1), (2, 2)]


CUSTOM = HET.replace("tiny-sglang-het", "tiny-sglang-custom").replace(", het_jobs: true", "").replace(
    "frontend: {type: dynamo}", "frontend: {type: dynamo, enable_multiple_frontends: false}").replace(
    'benchmark: {type: sa-bench, isl: 128, osl: 16, concurrencies: "2"}\n', """\
benchmark:
  type: custom
  command: >-
    python3 -c "import os, urllib.request as u; open(os.environ['OUT'], 'w').write(
    u.urlopen('http://%s:%s/v1/models' % (os.environ['SRT_FRONTEND_HOST'], os.environ['SRT_FRONTEND_PORT']))
    .read().decode() + chr(10) + os.environ['SRT_PREFILL_ENDPOINTS'])" && echo to-stdout && exit $EXIT
  env: {OUT: OUT_FILE, CONC: "4", EXIT: "EXIT_STATUS"}
""")


def _submit_custom(tmp_path: Path, status: int) -> dict[str, Any]:
    path = tmp_path / "recipe.yaml"
    path.write_text(CUSTOM.replace("OUT_FILE", str(tmp_path / "custom-out.txt")).replace("EXIT_STATUS", str(status)))
    return submit(path, tmp_path / "results")


@pytest.mark.cluster
@pytest.mark.parametrize("status", [0, 3])
def test_custom_benchmark_runs_once_and_records_its_step(slurm: dict[str, str], submitted: dict[str, Any],
                                                        request: pytest.FixtureRequest, status: int) -> None:
    from ixhpc.results import store, table

    tmp_path, out = _own(submitted, request)
    out_file = tmp_path / "custom-out.txt"
    (job,) = wait_status(out["run_dir"], timeout=420)["jobs"]
    assert job["state"] == ("COMPLETED" if status == 0 else "FAILED"), job
    run = Path(out["run_dir"])
    # SPEC 13.4: bash -lc COMMAND once the deployment is healthy, with SRT_* variables (13.1)
    models, endpoints = out_file.read_text().split("\n")
    assert '"id": "tiny-model"' in models and endpoints.count(":") == 1   # the served name (SPEC 10.2)
    (h5,) = (run / "results").glob("*.h5")
    point = store.read(h5)
    custom = point.custom
    assert custom is not None and custom["exit_status"] == status and custom["wall_s"] >= 0
    assert custom["command"].startswith("python3 -c") and "to-stdout" in Path(custom["log"]).read_text()
    assert point.metadata["conc"] == 4 and point.n_requests == 0   # benchmark.env CONC; no requests
    assert point.verdict == ("valid" if status == 0 else "invalid")
    row = table.point_row(point)   # merge's row: the step's record, throughput absent (NaN), never 0
    assert row["custom_exit_status"] == status and math.isnan(row["output_throughput"])


AGENTIC_MASTER = """\
tiny-sglang-agentic:
  image: lmsysorg/sglang:v0.5.4
  model: org/tiny-model
  model-prefix: tiny
  precision: fp8
  framework: dynamo-sglang
  runner: "cluster:mi355x-local"
  multinode: true
  disagg: true
  kv-p2p-transfer: nixl
  scenarios:
    agentic-coding:
    - dram-utilization: 0.5
      search-space:
      - conc-list: [2]
        kv-offloading: none
        prefill: {num-worker: 1, tp: 8, ep: 1, dp-attn: false, additional-settings: ["CONFIG_FILE=recipes/tiny.yaml"]}
        decode: {num-worker: 1, tp: 8, ep: 1, dp-attn: false}
  ixhpc:
    agentic: {duration: 15, synthetic-traces: 8, synthetic-max-context: 4096, warmup-requests-per-lane: 1}
"""


def _submit_agentic(tmp_path: Path) -> dict[str, Any]:
    # InferenceX's agentic CONFIG_FILE recipes run agentic_srt.sh as a custom benchmark; ixhpc
    # runs its own trace replay against the recipe's deployment instead (docs/srt-slurm.md)
    out_file = tmp_path / "custom-out.txt"
    (tmp_path / "srt").mkdir()   # the directory InferenceX's recipes/ stands for
    (tmp_path / "srt" / "tiny.yaml").write_text(
        CUSTOM.replace("OUT_FILE", str(out_file)).replace("EXIT_STATUS", "0"))
    master = tmp_path / "master.yaml"
    master.write_text(AGENTIC_MASTER)
    (tmp_path / "profiles.yaml").write_text(PROFILES)   # "cluster:" runners, as agentic entries name
    return submit(master, tmp_path / "results", "--srt-recipes", str(tmp_path / "srt"),
                  "--cluster", "local-agentic", "--profiles", str(tmp_path / "profiles.yaml"))


@pytest.mark.cluster
def test_agentic_entry_runs_ixhpc_replay_against_its_custom_config_file_recipe(slurm: dict[str, str],
                                                                              submitted: dict[str, Any],
                                                                              request: pytest.FixtureRequest) -> None:
    from ixhpc.results import store

    tmp_path, out = _own(submitted, request)
    out_file = tmp_path / "custom-out.txt"
    run, logs = _finished(out, 1)
    script = next((run / "scripts").glob("*.sbatch")).read_text()
    assert "ixhpc's agentic-coding trace replay at concurrencies 2 replaces the recipe's custom benchmark" in script
    assert not out_file.exists()                                  # the recipe's command did not run
    (h5,) = (run / "results").glob("*.h5")
    point = store.read(h5)
    assert point.metadata["scenario_type"] == "agentic-coding" and point.agentic is not None
    assert point.custom is None and point.n_requests > 0
    assert {"prefill-0", "decode-0", "frontend-0"} <= set(_records(logs))   # the recipe's deployment


def _submit_agentic_eval(tmp_path: Path) -> dict[str, Any]:
    # InferenceX's agentic entries name their eval's deployment in EVAL_CONFIG_FILE: an eval-only
    # point runs ixhpc's lm-eval step against that one (docs/srt-slurm.md)
    (tmp_path / "srt").mkdir()
    (tmp_path / "srt" / "tiny.yaml").write_text(CUSTOM.replace("OUT_FILE", str(tmp_path / "x")).replace(
        "EXIT_STATUS", "0"))
    (tmp_path / "srt" / "tiny-eval.yaml").write_text(MOONCAKE.replace("tiny-sglang-mooncake", "tiny-sglang-eval"))
    master = tmp_path / "master.yaml"
    master.write_text(AGENTIC_MASTER.replace(
        '"CONFIG_FILE=recipes/tiny.yaml"', '"CONFIG_FILE=recipes/tiny.yaml", "EVAL_CONFIG_FILE=recipes/tiny-eval.yaml"')
        + "    eval: {only: true, tasks: [ixhpc_arith], limit: 8, max-tokens: 32, context-length: 4096}\n")
    (tmp_path / "profiles.yaml").write_text(PROFILES)
    return submit(master, tmp_path / "results", "--srt-recipes", str(tmp_path / "srt"),
                  "--cluster", "local-agentic", "--profiles", str(tmp_path / "profiles.yaml"))


@pytest.mark.cluster
def test_eval_only_agentic_entry_runs_lm_eval_on_its_eval_config_file_deployment(
        slurm: dict[str, str], submitted: dict[str, Any], request: pytest.FixtureRequest) -> None:
    import h5py

    run, logs = _finished(_own(submitted, request)[1], 1)
    script = next((run / "scripts").glob("*.sbatch")).read_text()
    assert "eval-only: EVAL_CONFIG_FILE=recipes/tiny-eval.yaml is the deployment" in script
    assert "mooncake" in _records(logs)                              # the eval recipe's deployment
    (h5,) = (run / "results").glob("*.h5")
    with h5py.File(h5) as f:
        assert f.attrs["n_requests"] == 0 and bool(f["eval"].attrs["eval_only"])
        assert f["eval"].attrs["eval_verdict"] == "pass"


def test_eval_config_file_with_a_throughput_point_is_refused_at_the_point(tmp_path: Path) -> None:
    from ixhpc import runs
    from ixhpc.errors import PlanError
    from ixhpc.profiles import get_profile
    from ixhpc.sweep import Filters

    (tmp_path / "srt").mkdir()
    (tmp_path / "srt" / "tiny.yaml").write_text(CUSTOM)
    master = tmp_path / "master.yaml"
    master.write_text(AGENTIC_MASTER.replace(
        '"CONFIG_FILE=recipes/tiny.yaml"', '"CONFIG_FILE=recipes/tiny.yaml", "EVAL_CONFIG_FILE=recipes/tiny.yaml"')
        + "    eval: {run: true, tasks: [ixhpc_arith]}\n")
    (tmp_path / "profiles.yaml").write_text(PROFILES)
    target = runs.RunTarget(master, get_profile("local-agentic", tmp_path / "profiles.yaml"), Filters(),
                            engine_check=False, srt_recipes=[tmp_path / "srt"])
    with pytest.raises(PlanError, match=r"point tiny-sglang-agentic\S*: EVAL_CONFIG_FILE=recipes/tiny.yaml: "
                                        r"its eval runs on that deployment.*expected an eval-only point"):
        runs.plan(target, tmp_path / "run", "run")


# how each cluster test submits its run (the `submitted` fixture starts them all at once)
_SUBMITS: dict[str, Any] = {
    "test_trtllm_disagg_recipe_runs_behind_nginx_and_three_frontends": _submit_trtllm,
    "test_vllm_agg_recipe_runs_over_two_nodes_behind_nginx": _submit_vllm,
    "test_sglang_het_job_recipe_runs_as_a_heterogeneous_job": _submit_recipe(HET),
    "test_sglang_mooncake_recipe_runs_with_its_master": _submit_recipe(MOONCAKE),
    "test_vllm_per_gpu_dp_recipe_runs_one_process_per_gpu": _submit_recipe(PER_GPU),
    "test_custom_benchmark_runs_once_and_records_its_step": _submit_custom,
    "test_agentic_entry_runs_ixhpc_replay_against_its_custom_config_file_recipe": _submit_agentic,
    "test_eval_only_agentic_entry_runs_lm_eval_on_its_eval_config_file_deployment": _submit_agentic_eval,
}
