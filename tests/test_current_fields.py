"""The current InferenceX format's fields reach the jobs: topology (tp x pp x pcp-size), engine
command lines (each engine's own spelling, or a located error), script headers, metadata and
HDF5 attributes (issue 16, deliverable 4)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from ixhpc import engine_flags, engines, point_metadata, runs
from ixhpc.errors import ConfigError
from ixhpc.profiles import get_profile
from ixhpc.recipe import load_recipe_files
from ixhpc.results import ingest
from ixhpc.sweep import DisaggPoint, Filters, SinglePoint, expand

from results_helpers import bench_result

REPO = Path(__file__).resolve().parents[1]

CURRENT = """\
cur-single:
  image: lmsysorg/sglang:v0.5.16
  model: org/m
  model-prefix: m
  precision: fp8
  framework: {framework}
  runner: mi355x
  router: {{name: sglang-router, version: "0.3.2"}}
  scenarios:
    fixed-seq-len:
    - isl: 1024
      osl: 1024
      search-space:
      - {{tp: 4, ep: 16, {parallel}conc-list: [4]}}
"""

MARCH = """\
march-single:
  image: lmsysorg/sglang:v0.5.16
  model: org/m
  model-prefix: m
  precision: fp8
  framework: sglang
  runner: mi355x
  seq-len-configs:
  - isl: 1024
    osl: 1024
    search-space:
    - {tp: 4, ep: 16, conc-list: [4]}
"""

CURRENT_DISAGG = """\
cur-disagg:
  image: vllm/vllm-openai:v0.12.0
  model: org/m
  model-prefix: m
  precision: fp8
  framework: dynamo-vllm
  runner: mi355x-disagg
  multinode: true
  disagg: true
  kv-p2p-transfer: nixl
  scenarios:
    fixed-seq-len:
    - isl: 8192
      osl: 1024
      search-space:
      - conc-list: [8]
        prefill: {num-worker: 1, tp: 4, pp: 2, pcp-size: 2, ep: 1, dp-attn: false}
        decode: {num-worker: 1, tp: 8, dcp-size: 4, ep: 1, dp-attn: false}
"""


def _write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _points(path: Path) -> list:
    return expand(load_recipe_files([path]), Filters(), cluster=get_profile("local"))


def _current(tmp_path: Path, framework: str = "sglang", parallel: str = "pp: 2, dcp-size: 2, ") -> Path:
    return _write(tmp_path, CURRENT.format(framework=framework, parallel=parallel))


def test_gpus_per_worker_follow_the_format_of_the_recipe(tmp_path: Path) -> None:
    (march,) = _points(_write(tmp_path, MARCH, "march.yaml"))
    (cur,) = _points(_current(tmp_path, parallel=""))
    assert isinstance(march, SinglePoint) and isinstance(cur, SinglePoint)
    assert march.gpus == 16 and march.nodes == 2        # March: max(tp, ep)
    assert cur.gpus == 4 and cur.nodes == 1             # current: tp x pp x pcp-size, ep not counted
    (piped,) = _points(_current(tmp_path, parallel="pp: 2, pcp-size: 2, "))
    assert piped.gpus == 16 and piped.nodes == 2        # 4 x 2 x 2 on 8-GPU nodes
    (dcp,) = _points(_current(tmp_path, parallel="dcp-size: 4, "))
    assert dcp.gpus == 4                                # dcp-size splits tp's GPUs


def test_disaggregated_workers_count_their_own_parallelism(tmp_path: Path) -> None:
    (p,) = _points(_write(tmp_path, CURRENT_DISAGG))
    assert isinstance(p, DisaggPoint)
    assert p.prefill_gpus == 16 and p.decode_gpus == 8 and p.nodes == 3


def test_engines_spell_the_new_parallelism_as_their_flag_data_does() -> None:
    def argv(framework: str, **over: object) -> list[str]:
        spec = engines.LaunchSpec(framework=framework, role="server", model="m", tp=4,
                                  gpu_rule="current", **over)  # type: ignore[arg-type]
        return engines.launch(spec).argv

    sg = argv("sglang", pp=2, dcp_size=2, pcp_size=2)
    assert sg[sg.index("--tp-size") + 1] == "8"          # tp x pcp: SGLang's attention CP ranks
    assert sg[sg.index("--pp-size") + 1] == "2" and sg[sg.index("--dcp-size") + 1] == "2"
    assert "--enable-prefill-context-parallel" in sg and sg[sg.index("--attn-cp-size") + 1] == "2"
    sglang = engine_flags.flags("sglang", "0.5.16", "sglang.launch_server")
    spellings = {n for f in sglang.values() for n in (f.name, *f.aliases)}
    assert {"--pp-size", "--dcp-size", "--attn-cp-size", "--enable-prefill-context-parallel"} <= spellings
    vl = argv("vllm", pp=2, dcp_size=2, pcp_size=2)
    assert vl[vl.index("--tensor-parallel-size") + 1] == "4"
    for flag in ("--pipeline-parallel-size", "--decode-context-parallel-size", "--prefill-context-parallel-size"):
        assert vl[vl.index(flag) + 1] == "2"
        assert flag in engine_flags.flags("vllm", "0.12.0", "vllm serve")
    trt = argv("trt", pp=2)
    assert trt[trt.index("--pp_size") + 1] == "2"
    assert "--pp_size" in engine_flags.flags("trt", "1.1.0", "trtllm-serve serve")


@pytest.mark.parametrize(("framework", "setting"), [
    ("trt", {"dcp_size": 2}), ("trt", {"pcp_size": 2}), ("dynamo-trt", {"pcp_size": 2}),
    ("atom", {"pp": 2}), ("sim", {"pp": 2}), ("sim", {"dcp_size": 2}),
])
def test_a_setting_an_engine_cannot_express_is_an_error_not_dropped(framework: str, setting: dict) -> None:
    spec = engines.LaunchSpec(framework=framework, role="server", model="m", tp=4, gpu_rule="current",
                              **setting)
    with pytest.raises(ConfigError, match="cannot be expressed"):
        engines.launch(spec)


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ixhpc", "validate", str(path)], capture_output=True,
                          text=True, cwd=REPO, timeout=120)


def test_validate_locates_what_an_engine_cannot_run(tmp_path: Path) -> None:
    res = _validate(_current(tmp_path, framework="atom", parallel="pp: 2, "))
    assert res.returncode == 2
    assert f"{tmp_path / 'r.yaml'}:1: cur-single: framework atom, role server: pp 2 cannot be expressed" in res.stderr
    # a flag the image's engine version lacks: SGLang 0.5.9 has no --dcp-size
    old = _write(tmp_path, CURRENT.format(framework="sglang", parallel="dcp-size: 2, ")
                 .replace("v0.5.16", "v0.5.9"), "old.yaml")
    res = _validate(old)
    assert res.returncode == 2 and "old.yaml:1: cur-single" in res.stderr and "--dcp-size" in res.stderr
    assert _validate(_current(tmp_path)).returncode == 0


def test_render_refuses_an_engine_setting_at_the_recipe_entry(tmp_path: Path) -> None:
    path = _current(tmp_path, framework="atom", parallel="pp: 2, ")
    target = runs.RunTarget(path, get_profile("local"), Filters(), engine_check=False)
    with pytest.raises(ConfigError, match=r"r\.yaml: cur-single: framework atom, role server: pp 2"):
        runs.plan(target, tmp_path / "run", "run")


def test_script_header_metadata_and_hdf5_carry_the_new_fields(tmp_path: Path) -> None:
    target = runs.RunTarget(_current(tmp_path), get_profile("local"), Filters())
    (plan,) = runs.plan(target, tmp_path / "run", "run")
    text = "\n".join(plan.header)
    assert "tp4 ep16 pp2 dcp2 pcp1 dp-attn False" in text
    assert "current InferenceX format; router sglang-router 0.3.2; kv-p2p-transfer not set" in text
    meta = plan.metadata(4)
    assert {k: meta[k] for k in ("recipe_format", "pp", "dcp_size", "pcp_size", "router_name",
                                 "router_version", "gpus")} == {
        "recipe_format": "current", "pp": 2, "dcp_size": 2, "pcp_size": 1,
        "router_name": "sglang-router", "router_version": "0.3.2", "gpus": 8}
    point_metadata.ADAPTER.validate_python(meta)
    out = tmp_path / "p.h5"
    ingest.write_point(out, bench_result(), meta)
    with h5py.File(out) as f:
        assert f.attrs["pp"] == 2 and f.attrs["dcp_size"] == 2 and f.attrs["router_name"] == "sglang-router"
        assert f.attrs["recipe_format"] == "current"


def test_march_points_keep_their_metadata_keys(tmp_path: Path) -> None:
    target = runs.RunTarget(_write(tmp_path, MARCH), get_profile("local"), Filters())
    (plan,) = runs.plan(target, tmp_path / "run", "run")
    meta = plan.metadata(4)
    assert not {"recipe_format", "pp", "dcp_size", "pcp_size", "router_name"} & set(meta)
    assert "pp" not in "\n".join(plan.header).replace("pp)", "")


def test_disaggregated_metadata_carries_worker_parallelism_and_transfer(tmp_path: Path) -> None:
    target = runs.RunTarget(_write(tmp_path, CURRENT_DISAGG), get_profile("local"), Filters(),
                            engine_check=False)
    (plan,) = runs.plan(target, tmp_path / "run", "run")
    meta = plan.metadata(8)
    assert (meta["prefill_pp"], meta["prefill_pcp_size"], meta["decode_dcp_size"]) == (2, 2, 4)
    assert meta["kv_p2p_transfer"] == "nixl" and "prefill_hardware" not in meta
    prefill = next(r for r in plan.roles if r.name == "prefill-0")
    assert "--prefill-context-parallel-size" in prefill.argv and "--pipeline-parallel-size" in prefill.argv
    decode = next(r for r in plan.roles if r.name == "decode-0")
    assert decode.argv[decode.argv.index("--decode-context-parallel-size") + 1] == "4"
    point_metadata.ADAPTER.validate_python(meta)
