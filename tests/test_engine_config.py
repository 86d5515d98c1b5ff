"""Engine configuration as data in ixhpc's own recipes (docs/engine-config.md): per-role maps
as flags (srt-slurm's rule) or merged into TensorRT-LLM's option file, per-role environment,
transfer backend, overrides per point and role, placeholders, an engine per concurrency where
the settings depend on it, and the engine-flag check locating the recipe key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ixhpc import engines, plan_data, runs
from ixhpc.commands import validate
from ixhpc.errors import ConfigError
from ixhpc.placement import JobPlan
from ixhpc.profiles import get_profile
from ixhpc.recipe import validate_file
from ixhpc.sweep import Filters

ENTRY: dict[str, Any] = {
    "image": "lmsysorg/sglang:v0.5.8-cu129", "model": "deepseek-ai/DeepSeek-R1-0528", "model-prefix": "dsr1",
    "precision": "fp8", "framework": "dynamo-sglang", "runner": "gb200", "multinode": True, "disagg": True,
    "seq-len-configs": [{"isl": 1024, "osl": 1024, "search-space": [{
        "conc-list": [4, 8],
        "prefill": {"num-worker": 1, "tp": 4, "ep": 1, "dp-attn": False},
        "decode": {"num-worker": 1, "tp": 8, "ep": 1, "dp-attn": False}}]}],
}


def _write(tmp_path: Path, block: dict[str, Any], **entry: Any) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"dsr1-test": {**ENTRY, **entry, "ixhpc": block}}, sort_keys=False))
    return path


def _plans(path: Path, cluster: str = "gb200-nvl72") -> list[JobPlan]:
    return runs.plan(runs.RunTarget(path, get_profile(cluster), Filters()), path.parent / "run", "run")


def _program(plan: JobPlan, role: str) -> list[str]:
    r = next(r for r in plan.roles if r.name == role)
    return list(engines.unbuild(r.argv).program)


def _flag(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv else None


def test_maps_become_flags_with_overrides_placeholders_and_an_engine_per_concurrency(tmp_path: Path) -> None:
    block = {
        "transfer-backend": "nixl",
        "engine-config": {
            "prefill": {"mem-fraction-static": 0.84, "chunked_prefill_size": 16384, "disable-radix-cache": True,
                        "enable-metrics": False, "json-model-override-args": {"a": 1}},
            "decode": {"mem-fraction-static": 0.83, "cuda-graph-max-bs": "{conc}", "max-running-requests": "{conc}"},
            "router": {"router-mode": "round-robin"}},
        "role-env": {"decode": {"SGLANG_BS": "bs{conc}-tp{tp}"}},
        "overrides": [{"when": {"tp": 8}, "engine-config": {"decode": {"mem-fraction-static": 0.8}}},
                      {"when": {"tp": [2, 4]}, "engine-config": {"prefill": {"disable-radix-cache": None}}}],
    }
    plans = _plans(_write(tmp_path, block))
    assert [p.concs for p in plans] == [[4], [8]]            # {conc}: an engine start per concurrency
    assert [p.key[-3:] for p in plans] == ["_c4", "_c8"]
    for plan, conc in zip(plans, (4, 8)):
        prefill, decode = _program(plan, "prefill-0"), _program(plan, "decode-0")
        # sorted keys, _ -> -, true bare, false left out, a map as JSON; the tp-4 override deleted a key
        i = prefill.index("--chunked-prefill-size")
        assert prefill[i:] == ["--chunked-prefill-size", "16384", "--json-model-override-args", '{"a":1}',
                               "--mem-fraction-static", "0.84"]
        assert _flag(prefill, "--disaggregation-transfer-backend") == "nixl"
        assert _flag(decode, "--cuda-graph-max-bs") == _flag(decode, "--max-running-requests") == str(conc)
        assert _flag(decode, "--mem-fraction-static") == "0.8"  # the decode worker's tp is 8
        env = dict(engines.unbuild(next(r for r in plan.roles if r.name == "decode-0").argv).env)
        assert env["SGLANG_BS"] == f"bs{conc}-tp8"
        assert _flag(_program(plan, "router"), "--router-mode") == "round-robin"
    doc = plan_data.document("run", "gb200-nvl72", plans, ["SGLANG_BS"])
    assert [j["engine_per_concurrency"] for j in doc["jobs"]] == [True, True]
    decode = next(p for p in doc["jobs"][0]["processes"] if p["role"] == "decode-0")
    assert {e["name"]: e["origin"] for e in decode["env"]}["SGLANG_BS"] == "recipe"


def test_without_concurrency_dependence_one_engine_serves_the_list(tmp_path: Path) -> None:
    plans = _plans(_write(tmp_path, {"engine-config": {"decode": {"cuda-graph-max-bs": "{tp}"}}}))
    (plan,) = plans
    assert plan.concs == [4, 8] and _flag(_program(plan, "decode-0"), "--cuda-graph-max-bs") == "8"
    doc = plan_data.document("run", "gb200-nvl72", plans)
    assert doc["jobs"][0]["engine_per_concurrency"] is False


def test_an_override_on_concurrency_splits_single_node_points(tmp_path: Path) -> None:
    single = {"multinode": False, "disagg": False, "framework": "sglang", "runner": "mi355x",
              "seq-len-configs": [{"isl": 1024, "osl": 1024,
                                   "search-space": [{"tp": 8, "conc-list": [4, 8, 64]}]}]}
    block = {"overrides": [{"when": {"conc": 64}, "engine-config": {"server": {"cuda-graph-max-bs": 64}}}]}
    plans = _plans(_write(tmp_path, block, **single), cluster="local")
    assert [p.concs for p in plans] == [[4], [8], [64]]
    assert [_flag(_program(p, "server"), "--cuda-graph-max-bs") for p in plans] == [None, None, "64"]
    (together,) = _plans(_write(tmp_path, {"engine-config": {"server": {"cuda-graph-max-bs": 64}}}, **single),
                         cluster="local")
    assert together.concs == [4, 8, 64]


def test_trtllm_maps_merge_into_the_option_file(tmp_path: Path) -> None:
    block = {"transfer-backend": "ucx",
             "engine-config": {"decode": {"kv_cache_config": {"free_gpu_memory_fraction": 0.8, "dtype": "fp8"},
                                          "cuda_graph_config": {"enable_padding": True, "max_batch_size": "{conc}"},
                                          "enable_attention_dp": None},
                               "router": {"router-mode": "round-robin"}}}
    entry = {"framework": "dynamo-trt", "image": "nvcr.io/nvidia/ai-dynamo/tensorrtllm-runtime:0.8.1",
             "seq-len-configs": [{"isl": 1024, "osl": 1024, "search-space": [{
                 "conc-list": [16], "prefill": {"num-worker": 1, "tp": 4, "ep": 1, "dp-attn": False},
                 "decode": {"num-worker": 1, "tp": 4, "ep": 1, "dp-attn": False}}]}]}
    (plan,) = _plans(_write(tmp_path, block, **entry))
    decode = engines.unbuild(next(r for r in plan.roles if r.name == "decode-0").argv)
    (path, content), = decode.files
    options = yaml.safe_load(content)
    assert options["kv_cache_config"] == {"free_gpu_memory_fraction": 0.8, "dtype": "fp8"}
    assert options["cuda_graph_config"] == {"enable_padding": True, "max_batch_size": 16}
    assert "enable_attention_dp" not in options                       # null deletes a generated key
    assert options["cache_transceiver_config"] == {"backend": "UCX"}
    assert "--kv_cache_config" not in decode.program and "--kv-cache-config" not in decode.program
    assert _flag(_program(plan, "router"), "--router-mode") == "round-robin"   # Dynamo's frontend: flags


def test_frontend_count_puts_routers_behind_nginx(tmp_path: Path) -> None:
    (plan,) = _plans(_write(tmp_path, {"frontend": {"count": 3}, "engine-config": {"router": {"router-mode": "kv"}}}))
    roles = {r.name: r for r in plan.roles}
    fronts = [roles[f"frontend-{i}"] for i in range(3)]
    # one per node from node 1 on, wrapping (prefill on node 0, decode on nodes 1-2)
    assert [f.node_index for f in fronts] == [1, 2, 0]
    assert all(_program(plan, f.name)[:3] == ["python3", "-m", "dynamo.frontend"] for f in fronts)
    assert all(_flag(_program(plan, f.name), "--router-mode") == "kv" for f in fronts)
    nginx = engines.unbuild(roles["router"].argv)
    assert nginx.program[:2] == ("bash", "-c") and nginx.program[2].startswith("nginx -c ")
    ((_, conf),) = nginx.files
    servers = [line.split()[1] for line in conf.splitlines() if line.strip().startswith("server \x00")]
    assert servers == [f"\x00FRONTEND_{i}_HOST\x00:\x00FRONTEND_{i}_PORT\x00;" for i in range(3)]
    assert roles["router"].node_index == 0 and roles["router"].health_path == "/health"
    assert len({r.port_index for r in plan.roles}) == len(plan.roles)   # every role its own port
    bench = plan.bench_argv
    assert bench[bench.index("--base-url") + 1] == "http://\x00ROUTER_HOST\x00:\x00ROUTER_PORT\x00"


def test_trtllm_option_keys_are_checked_at_the_engine_config_key(tmp_path: Path) -> None:
    entry = {"framework": "trt", "image": "nvcr.io/nvidia/tensorrt-llm/release:1.1.0", "multinode": False,
             "disagg": False, "runner": "b200",
             "seq-len-configs": [{"isl": 1024, "osl": 1024, "search-space": [{"tp": 8, "conc-list": [4]}]}]}
    path = _write(tmp_path, {"engine-config": {"server": {"kv_cache_confg": {"dtype": "fp8"},
                                                          "cuda_graph_config": {"max_batch_size": "{conc}"}}}},
                  **entry)
    errors = validate._expansion_errors(str(path), engine_check=True)
    (line,) = [e for e in errors if "kv_cache_confg" in e]
    assert "dsr1-test.ixhpc.engine-config.server.kv_cache_confg: server: --extra_llm_api_options file" in line
    assert "did you mean 'kv_cache_config'?" in line
    number = int(line.split(":")[1])
    assert "kv_cache_confg" in path.read_text().splitlines()[number - 1]


def test_a_backend_the_engine_lacks_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="transfer-backend ucx: SGLang's are mooncake and nixl"):
        _plans(_write(tmp_path, {"transfer-backend": "ucx"}))


def test_unknown_placeholder_and_keys_are_located(tmp_path: Path) -> None:
    path = _write(tmp_path, {"engine-config": {"decode": {"cuda-graph-max-bs": "{concurrency}"}},
                             "overrides": [{"when": {"tpp": 8}}]})
    errors = validate_file(path)
    assert any("ixhpc.engine-config.decode.cuda-graph-max-bs: expected a placeholder among" in e
               and "found {concurrency}" in e for e in errors), errors
    assert any("ixhpc.overrides[0].when.tpp" in e for e in errors), errors


def test_engine_flag_check_locates_the_recipe_key(tmp_path: Path) -> None:
    path = _write(tmp_path, {"engine-config": {"decode": {"cuda-graph-max-bs": "{conc}", "bogus-flag": 1}},
                             "overrides": [{"when": {"tp": 8},
                                            "engine-config": {"decode": {"cuda-graph-max-bss": 2}}}]})
    errors = validate._expansion_errors(str(path), engine_check=True)
    text = path.read_text().splitlines()
    wanted = {"ixhpc.engine-config.decode.bogus-flag": "bogus-flag",
              "ixhpc.overrides[0].engine-config.decode.cuda-graph-max-bss": "cuda-graph-max-bss"}
    for where, key in wanted.items():
        (line,) = [e for e in errors if f"dsr1-test.{where}:" in e]
        number = int(line.split(":")[1])
        assert key in text[number - 1], (line, text[number - 1])
    assert any("did you mean '--cuda-graph-max-bs'?" in e for e in errors)
    with pytest.raises(ConfigError):
        _plans(path)


@pytest.mark.cluster
def test_engine_config_runs_an_engine_per_concurrency_behind_nginx(slurm: dict[str, str], tmp_path: Path) -> None:
    import json

    from ixhpc.results import load

    from test_jobs_e2e import submit, wait_status

    block = {"time-limit": 15, "health-timeout": 120, "benchmark": {"num-prompts-factor": 4},
             "sim": {"model-params-b": 8, "active-params-b": 8},   # fits the simulated 4-GPU workers
             "transfer-backend": "nixl", "frontend": {"count": 2},
             "engine-config": {"prefill": {"chunked-prefill-size": 4096},
                               "decode": {"cuda-graph-max-bs": "{conc}", "max-running-requests": "{conc}"},
                               "router": {"router-mode": "round-robin"}},
             "role-env": {"decode": {"SGLANG_DECODE_BS": "bs{conc}"}}}
    entry = {"model": "org/tiny-model", "runner": "gb200-multinode",
             "seq-len-configs": [{"isl": 128, "osl": 16, "search-space": [{
                 "conc-list": [2, 4], "prefill": {"num-worker": 1, "tp": 4, "ep": 1, "dp-attn": False},
                 "decode": {"num-worker": 1, "tp": 4, "ep": 1, "dp-attn": False}}]}]}
    out = submit(_write(tmp_path, block, **entry), tmp_path / "results")
    jobs = wait_status(out["run_dir"], timeout=420)["jobs"]
    assert [j["state"] for j in jobs] == ["COMPLETED", "COMPLETED"], jobs
    run = Path(out["run_dir"])
    for job, conc in zip(sorted(jobs, key=lambda j: j["key"]), (2, 4)):
        assert job["key"].endswith(f"_c{conc}")
        (h5,) = (run / "results").glob(f"{job['key']}*.h5")
        assert load(str(h5))["conc"].tolist() == [conc]
        logs = run / "logs" / job["key"]
        decode = json.loads((logs / "standin-decode-0.json").read_text())
        argv = decode["argv"]
        assert _flag(argv, "--cuda-graph-max-bs") == _flag(argv, "--max-running-requests") == str(conc)
        assert _flag(decode["argv"], "--disaggregation-transfer-backend") == "nixl"
        assert decode["env"]["SGLANG_DECODE_BS"] == f"bs{conc}"
        fronts = [json.loads((logs / f"standin-frontend-{i}.json").read_text()) for i in (0, 1)]
        assert all(_flag(f["argv"], "--router-mode") == "round-robin" for f in fronts)
        assert (logs / "router.log").exists() and not (logs / "standin-router.json").exists()  # nginx, not a stand-in
