"""Engine command builders: golden launch lines per framework x role, and the folded argv run
for real against stand-in engine binaries."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ixhpc import engines, frameworks, shell
from ixhpc.errors import UserError

GOLDEN = Path(__file__).parent / "golden" / "engines"
FRAMEWORKS = ["sglang", "sglang-disagg", "vllm", "trt", "dynamo-trt", "dynamo-sglang",
              "dynamo-vllm", "atom", "sim"]
ROLES = ["server", "prefill", "decode", "router"]


def _spec(framework: str, role: str, **over) -> engines.LaunchSpec:
    """Representative shapes: a TP8 server, a TP4/EP4 DP-attention prefill worker, a
    TP8/EP8 decode worker with MTP spread over 2 nodes, and a router over 2 + 1 workers."""
    base = dict(framework=framework, role=role, model="/models/DeepSeek-R1-0528-FP4",
                served_model_name="nvidia/DeepSeek-R1-0528-FP4", max_model_len=2248,
                precision="fp4", host="gb200-0001", port=8000)
    shapes = {
        "server": dict(tp=8, ep=1),
        "prefill": dict(tp=4, ep=4, dp_attn=True, bootstrap_port=8998,
                        additional_settings=["PREFILL_MAX_NUM_TOKENS=16384"]),
        "decode": dict(tp=8, ep=8, dp_attn=True, spec_decoding="mtp", nnodes=2,
                       head_host="gb200-0003", dist_port=29501,
                       additional_settings=["DECODE_MTP_SIZE=2", "DECODE_MAX_BATCH_SIZE=256",
                                            "DECODE_GPU_MEM_FRACTION=0.85"]),
        "router": dict(prefill_urls=["http://gb200-0001:8001", "http://gb200-0002:8001"],
                       decode_urls=["http://gb200-0003:8002"]),
    }
    if framework == "sim":
        shapes["server"].update(sim_gpu="GB200", sim_model_params_b=671.0,
                                sim_active_params_b=37.0, sim_max_batch=128)
    return engines.LaunchSpec(**{**base, **shapes[role], **over})


def _record(framework: str, role: str) -> dict:
    try:
        out = engines.launch(_spec(framework, role))
    except UserError as exc:
        return {"error": str(exc)}
    return {**out.model_dump(), "health_path": engines.health_path(framework, role)}


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("role", ROLES)
def test_launch_line_matches_its_golden_file(framework, role):
    got = _record(framework, role)
    golden = GOLDEN / f"{framework}-{role}.json"
    if os.environ.get("IXHPC_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(json.dumps(got, indent=2) + "\n")
    assert got == json.loads(golden.read_text()), \
        f"regenerate with IXHPC_UPDATE_GOLDEN=1 and review {golden}"


def test_every_inferencex_framework_has_a_builder(inferencex):
    found = set()
    for master in inferencex.glob("*-master.yaml"):
        found |= {e["framework"] for e in yaml.safe_load(master.read_text()).values()}
    assert found, "no reference master configs found"
    assert found <= set(frameworks.FRAMEWORKS), found - set(frameworks.FRAMEWORKS)
    for fw in found:
        role = "prefill" if fw.startswith("dynamo") or fw.endswith("disagg") else "server"
        assert engines.build(_spec(fw, role))


def test_unknown_framework_and_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="unknown framework 'tgi'"):
        _spec("tgi", "server")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        _spec("sglang", "server", additional_settings=["no equals sign"])
    with pytest.raises(ValueError, match="head_host"):
        engines.LaunchSpec(framework="sglang", role="decode", model="m", nnodes=2)
    with pytest.raises(UserError, match="precision"):
        engines.launch(_spec("sim", "server", precision="int4"))
    with pytest.raises(UserError, match="unknown framework"):
        engines.health_path("tgi")
    with pytest.raises(UserError, match="MTP_SIZE: expected an integer, found 'two'"):
        engines.launch(_spec("dynamo-trt", "decode", additional_settings=["DECODE_MTP_SIZE=two"]))


def test_health_paths():
    assert engines.health_path("sglang") == "/health"
    assert engines.health_path("dynamo-trt", "router") == "/health"
    # Dynamo workers: their system status server on the worker's own port, ready-gated.
    assert engines.health_path("dynamo-trt", "prefill") == "/health"
    env = engines.launch(engines.LaunchSpec(framework="dynamo-sglang", role="decode", model="m",
                                            port=21003)).env
    assert env["DYN_SYSTEM_PORT"] == "21003"
    assert env["DYN_SYSTEM_USE_ENDPOINT_HEALTH_STATUS"] == '["generate"]'


def test_sim_lines_parse_with_the_simulated_engines_own_parser():
    from ixhpc.sim.__main__ import build_parser

    for role in ("server", "prefill", "router"):
        argv = engines.build(_spec("sim", role))
        assert argv[:3] == ["python", "-m", "ixhpc.sim"]
        args = build_parser().parse_args(argv[3:])
        assert args.port == 8000 and args.host == "gb200-0001"
    server = build_parser().parse_args(engines.build(_spec("sim", "server"))[3:])
    assert (server.role, server.tp, server.gpu, server.max_batch) == ("both", 8, "GB200", 128)


def _fake_bin(tmp_path: Path, name: str) -> Path:
    """A stand-in engine binary printing one JSON line: its argv, cwd-independent env and
    the content of every file its argv names under tmp_path."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    exe = bindir / name
    exe.write_text(
        f"#!{sys.executable}\n"  # not `env python3`: the fake may itself be python3
        "import json, os, sys\n"
        "files = {a: open(a).read() for a in sys.argv[1:] if a.startswith(%r) and os.path.isfile(a)}\n"
        "print(json.dumps({'argv': sys.argv[1:], 'files': files,\n"
        "                  'env': {k: v for k, v in os.environ.items()\n"
        "                          if k.startswith(('DECODE_', 'PREFILL_', 'ETCD', 'NATS'))}}))\n"
        % str(tmp_path))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return bindir


def _run_in_bash(argv: list[str], bindir: Path, **env: str) -> dict:
    """Run the argv the way a rendered script does: shell-quoted by ixhpc.shell, then bash."""
    script = shell.command(argv)
    res = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", **env})
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_folded_argv_writes_config_files_and_env_before_the_engine_starts(tmp_path):
    spec = _spec("trt", "decode", config_dir=str(tmp_path), nnodes=1, head_host=None)
    got = _run_in_bash(engines.build(spec), _fake_bin(tmp_path, "trtllm-serve"))
    path = got["argv"][got["argv"].index("--extra_llm_api_options") + 1]
    config = yaml.safe_load(got["files"][path])
    assert config["enable_attention_dp"] is True
    assert config["speculative_config"] == {"decoding_type": "MTP", "num_nextn_predict_layers": 2}
    assert got["env"]["DECODE_MTP_SIZE"] == "2"
    assert got["argv"][got["argv"].index("--max_batch_size") + 1] == "256"


def test_script_variables_survive_into_generated_config_files(tmp_path):
    spec = _spec("trt", "router", config_dir=str(tmp_path), host=shell.var("ROUTER_HOST"),
                 port=shell.var("ROUTER_PORT"))
    got = _run_in_bash(engines.build(spec), _fake_bin(tmp_path, "trtllm-serve"),
                       ROUTER_HOST="gb200-0009", ROUTER_PORT="8123")
    path = got["argv"][got["argv"].index("-c") + 1]
    assert path.endswith("-8123-disagg.yaml")
    config = yaml.safe_load(got["files"][path])
    assert (config["hostname"], config["port"]) == ("gb200-0009", 8123)
    assert config["context_servers"]["urls"] == ["gb200-0001:8001", "gb200-0002:8001"]


@pytest.mark.parametrize("framework,binary,over,head,other", [
    ("sglang", "python3", {}, ["--node-rank", "0"], ["--node-rank", "1"]),
    ("vllm", "vllm", {"dp_attn": False}, ["--node-rank", "0"], ["--headless", "--node-rank", "1"]),
    ("vllm", "vllm", {}, ["--port", "8000"], ["--headless", "--data-parallel-start-rank", "4"]),
])
def test_multi_node_workers_take_their_rank_from_slurm_on_each_node(tmp_path, framework, binary,
                                                                    over, head, other):
    bindir = _fake_bin(tmp_path, binary)
    argv = engines.build(_spec(framework, "decode", **over))
    assert _run_in_bash(argv, bindir, SLURM_NODEID="0")["argv"][-len(head):] == head
    assert _run_in_bash(argv, bindir, SLURM_NODEID="1")["argv"][-len(other):] == other


def test_hostile_recipe_values_stay_single_arguments(tmp_path):
    evil = "$(touch PWNED); `touch PWNED` 'x\"\ny"
    spec = _spec("vllm", "server", model=evil, extra_args=["--chat-template", evil])
    got = _run_in_bash(engines.build(spec), _fake_bin(tmp_path, "vllm"))
    assert got["argv"][1] == evil and got["argv"][-1] == evil
    assert not list(Path.cwd().glob("PWNED")) and not list(tmp_path.glob("PWNED"))


def test_recipe_engine_args_come_last_so_they_override():
    argv = engines.build(_spec("sglang", "server", extra_args=["--tp-size", "4"]))
    assert argv[-2:] == ["--tp-size", "4"]
    assert re.search(r"--tp-size', '8'.*--tp-size', '4'", repr(argv))
