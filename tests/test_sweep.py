"""Sweep expansion: InferenceX's rules on small recipes, topology, keys, metadata, CLI flags."""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import pytest

from ixhpc.cli import main
from ixhpc.errors import UserError
from ixhpc.profiles import ENV_VAR, get_profile
from ixhpc.recipe import load_recipe_files
from ixhpc.sweep import Filters, add_filter_args, conc_range, expand, filters_from_args
from ixhpc.topology import pack, worker_gpus
from ixhpc.yamlmodel import ConfigError

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "recipes" / "examples"

RECIPE = """\
dsr1-fp8-x-sglang:
  image: img
  model: org/model
  model-prefix: other
  precision: fp8
  framework: sglang
  runner: mi355x
  seq-len-configs:
  - isl: 1024
    osl: 8192
    search-space:
    - {tp: 4, conc-start: 4, conc-end: 48}
    - {tp: 8, ep: 8, dp-attn: true, conc-start: 2, conc-end: 16}
    - {tp: 8, conc-list: [3, 64]}
  - isl: 100
    osl: 50
    search-space:
    - {tp: 2, spec-decoding: mtp, conc-start: 1, conc-end: 1}
  ixhpc:
    max-model-len-margin: 10
mn-disagg:
  {multinode: true, disagg: true, runner: gb200, framework: sim, precision: fp4,
   model-prefix: mn, model: org/model, image: img, seq-len-configs: [{isl: 1024, osl: 1024, search-space: [
    {conc-start: 8, conc-end: 100,
     prefill: {num-worker: 2, tp: 4, ep: 4, dp-attn: true},
     decode: {num-worker: 1, tp: 16, ep: 16, dp-attn: true}},
    {conc-list: [5],
     prefill: {num-worker: 1, tp: 4, ep: 4, dp-attn: true, additional-settings: [A=1]},
     decode: {num-worker: 1, tp: 16, ep: 16, dp-attn: true}},
    {conc-list: [5],
     prefill: {num-worker: 1, tp: 4, ep: 4, dp-attn: true, additional-settings: [A=2]},
     decode: {num-worker: 1, tp: 16, ep: 16, dp-attn: true}}]}]}
"""


@pytest.fixture(autouse=True)
def no_user_profiles(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def recipes(tmp_path: Path):
    p = tmp_path / "r.yaml"
    p.write_text(RECIPE)
    return load_recipe_files([p])


def by_config(points, key):
    return [p for p in points if p.config_key == key]


def test_conc_range_is_geometric_with_clamped_end() -> None:
    assert conc_range(4, 48, 2) == [4, 8, 16, 32, 48]
    assert conc_range(4, 64, 2) == [4, 8, 16, 32, 64]
    assert conc_range(1, 100, 4) == [1, 4, 16, 64, 100]
    assert conc_range(7, 7, 2) == [7]


def test_single_node_points(recipes) -> None:
    pts = by_config(expand(recipes, cluster=get_profile("local")), "dsr1-fp8-x-sglang")
    first = [p for p in pts if p.isl == 1024 and p.tp == 4]
    assert [p.conc for p in first] == [[4], [8], [16], [32], [48]]
    assert all((p.ep, p.dp_attn, p.spec_decoding) == (1, False, "none") for p in first)
    assert first[0].max_model_len == 1024 + 8192 + 10 and first[0].exp_name == "other_1k8k"
    odd = [p for p in pts if p.isl == 100]
    assert len(odd) == 1 and odd[0].exp_name == "other_100_50" and odd[0].spec_decoding == "mtp"
    assert [p.conc[0] for p in pts if p.tp == 8 and not p.dp_attn] == [3, 64]  # conc-list single-node


def test_multi_node_point_carries_its_concurrency_list(recipes) -> None:
    pts = by_config(expand(recipes, cluster=get_profile("local")), "mn-disagg")
    assert len(pts) == 3 and pts[0].conc == [8, 16, 32, 64, 100]
    row = pts[0].to_inferencex_row()
    assert row["conc"] == [8, 16, 32, 64, 100] and "additional-settings" not in row["prefill"]
    assert pts[1].to_inferencex_row()["prefill"]["additional-settings"] == ["A=1"]
    assert row["max-model-len"] == 2248 and row["exp-name"] == "mn_1k1k" and row["disagg"] is True


def test_topology_on_gb200(recipes) -> None:
    p = expand(recipes, Filters(runner_type=("gb200",)), cluster=get_profile("gb200-nvl72"))[0]
    # 2 prefill workers of 4 GPUs (1 node each), 1 decode worker of 16 GPUs (4 nodes)
    assert (p.prefill_nodes, p.prefill_gpus, p.decode_nodes, p.decode_gpus) == (2, 8, 4, 16)
    assert (p.nodes, p.gpus, p.gpus_per_node, p.arch, p.cluster) == (6, 24, 4, "aarch64", "gb200-nvl72")


def role_nodes(workers: int, gpus: int, gpn: int) -> int:
    return max(s.node + s.nnodes for s in pack(workers, gpus, gpn))


def test_worker_size_and_packing() -> None:
    assert worker_gpus(1, 16) == 16 and worker_gpus(8, 1) == 8 and worker_gpus(4, 4, pp=2) == 8
    assert role_nodes(1, 16, 8) == 2 and role_nodes(3, 8, 4) == 6
    assert role_nodes(4, 2, 4) == 2 and role_nodes(3, 1, 4) == 1  # small workers share nodes
    for workers, gpus, gpn in [(1, 16, 8), (3, 8, 4), (4, 2, 4), (3, 1, 4), (5, 3, 8), (2, 6, 4)]:
        slots = pack(workers, gpus, gpn)
        assert len(slots) == workers
        used = [(s.node + k, s.first_gpu + g) for s in slots for k in range(s.nnodes) for g in range(s.gpus)]
        assert len(used) == len(set(used)) and all(gpu < gpn for _, gpu in used)  # no GPU twice
    assert [(s.node, s.nnodes, s.gpus, s.first_gpu) for s in pack(4, 2, 4)] == \
        [(0, 1, 2, 0), (0, 1, 2, 2), (1, 1, 2, 0), (1, 1, 2, 2)]


def test_model_prefix_filter_matches_config_key(recipes) -> None:
    keys = {p.config_key for p in expand(recipes, Filters(model_prefix=("dsr1",)))}
    assert keys == {"dsr1-fp8-x-sglang"}  # its model-prefix field is "other"
    assert not expand(recipes, Filters(model_prefix=("other",)))


def test_other_filters(recipes) -> None:
    assert {p.config_key for p in expand(recipes, Filters(single_node=False))} == {"mn-disagg"}
    assert {p.config_key for p in expand(recipes, Filters(framework=("sim",)))} == {"mn-disagg"}
    assert {p.config_key for p in expand(recipes, Filters(precision=("fp8",)))} == {"dsr1-fp8-x-sglang"}
    assert {p.config_key for p in expand(recipes, Filters(runner_type=("gb200",)))} == {"mn-disagg"}
    assert {(p.isl, p.osl) for p in expand(recipes, Filters(seq_lens=((100, 50),)))} == {(100, 50)}
    step4 = expand(recipes, Filters(step_size=4, model_prefix=("dsr1",), seq_lens=((1024, 8192),)))
    assert [p.conc[0] for p in step4 if p.tp == 4] == [4, 16, 48]


def test_conc_and_parallelism_limits(recipes) -> None:
    pts = expand(recipes, Filters(max_conc=10, min_conc=3, max_tp=4, max_ep=2))
    single = [p for p in pts if not p.multinode]
    assert {p.tp for p in single} == {4}  # tp 8 dropped, tp 2 item ends below min-conc
    assert [p.conc[0] for p in single] == [4, 8, 10]
    multi = [p for p in pts if p.multinode]
    # a multi-node range is expanded (8..100) and then filtered; max-tp/ep are single-node only
    assert [p.conc for p in multi] == [[8], [5], [5]]
    assert [p.conc for p in by_config(expand(recipes, Filters(max_conc=4)), "mn-disagg")][0] == [4]
    clamp = expand(recipes, Filters(max_ep=2, model_prefix=("dsr1",)))
    assert {p.ep for p in clamp if p.dp_attn} == {2}
    high = expand(recipes, Filters(max_conc=1, model_prefix=("dsr1",)))
    assert {p.conc[0] for p in high} == {1}  # start above max-conc: just max-conc


def test_eval_marking(recipes) -> None:
    pts = expand(recipes, Filters(run_evals=True))
    marked = sorted((p.tp, p.dp_attn, p.conc[0]) for p in pts if p.run_eval)
    # group dp-attn false: tp 4 (max conc 48) and tp 8 (max conc 64); group dp-attn true: tp 8 at 16
    assert marked == [(4, False, 48), (8, False, 64), (8, True, 16)]
    only = expand(recipes, Filters(evals_only=True))
    assert sorted(p.key for p in only) == sorted(p.key for p in pts if p.run_eval)
    assert not any(p.run_eval for p in expand(recipes))


def test_keys_unique_stable_and_filename_safe(recipes, tmp_path: Path) -> None:
    pts = expand(recipes)
    keys = [p.key for p in pts]
    assert len(set(keys)) == len(keys)
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", k) for k in keys)
    assert keys == [p.key for p in expand(recipes)]
    assert "dsr1-fp8-x-sglang_1024x8192_tp8-ep8-dpa_c16" in keys
    twins = [k for k in keys if k.startswith("mn-disagg_1024x1024_p1x")]
    assert len(twins) == 2 and twins[0] != twins[1]  # same shape, different settings


def test_key_concurrencies_are_rewritten_by_names_alone() -> None:
    from ixhpc import names

    k = names.point_key("dsr1_1024x1024_tp8", [4, 8])
    assert k == "dsr1_1024x1024_tp8_c4-8"
    assert names.with_concs(k, [8]) == "dsr1_1024x1024_tp8_c8"
    twin = names.unique(k, "definition")
    assert re.fullmatch(r"dsr1_1024x1024_tp8_c4-8_[0-9a-f]{8}", twin)
    assert names.with_concs(twin, [16]) == "dsr1_1024x1024_tp8_c16" + twin[-9:]
    again = names.unique(k, "definition", 2)
    assert again == twin + "_2" and names.with_concs(again, [1, 2]) == "dsr1_1024x1024_tp8_c1-2" + again[-11:]
    many = names.point_key("x", list(range(1, 10)))
    assert many == "x_c1-9n9" and names.with_concs(many, [3]) == "x_c3"
    hashed = names.point_key("y" * 200, [4])  # too long: hashed, the concurrency part cut off
    assert len({hashed, names.with_concs(hashed, [8]), names.with_concs(hashed, [16])}) == 3


def test_reference_keys_unique(inferencex: Path) -> None:
    rec = load_recipe_files([inferencex / "nvidia-master.yaml", inferencex / "amd-master.yaml"])
    keys = [p.key for p in expand(rec)]
    assert len(keys) == 1499 and len(set(keys)) == len(keys)


def test_metadata_single_multi(recipes) -> None:
    pts = expand(recipes, cluster=get_profile("local"))
    single = next(p for p in pts if p.config_key == "dsr1-fp8-x-sglang")
    m = single.metadata(single.conc[0]).record()
    assert (m["tp"], m["ep"], m["dp_attn"], m["nodes"], m["gpus"], m["conc"]) == (4, 1, False, 1, 4, 4)
    assert "prefill_tp" not in m and "prefill_gpus" not in m and m["cluster"] == "local"
    multi = next(p for p in pts if p.config_key == "mn-disagg")
    mm = multi.metadata(16).record()
    assert (mm["prefill_num_worker"], mm["decode_tp"], mm["prefill_dp_attn"]) == (2, 16, True)
    assert mm["gpus"] == mm["prefill_gpus"] + mm["decode_gpus"] == 24 and "tp" not in mm
    for meta in (m, mm):
        assert all(isinstance(v, (str, int, float, bool)) for v in meta.values())
        assert meta["point_key"] and len(str(meta["recipe_fingerprint"])) == 64
    with pytest.raises(ValueError):
        multi.metadata(17)


def test_unresolved_point_has_no_metadata(recipes) -> None:
    pts = expand(recipes, profiles={})
    assert not pts[0].resolved and pts[0].to_inferencex_row()["tp"] == 4
    with pytest.raises(UserError, match="no cluster profile serves runner 'mi355x'"):
        pts[0].metadata(4)


def test_cluster_must_serve_every_runner(recipes) -> None:
    with pytest.raises(ConfigError) as exc:
        expand(recipes, cluster=get_profile("mi355x"))
    assert len(exc.value.errors) == 1 and "mn-disagg: cluster 'mi355x' serves no runner 'gb200'" in exc.value.errors[0]
    assert re.match(r".+r\.yaml:\d+: ", exc.value.errors[0])


def amd_node_settings(point) -> dict[str, int]:
    settings = (point.prefill.additional_settings or []) + (point.decode.additional_settings or [])
    return {k: int(v) for k, v in (s.split("=", 1) for s in settings) if k.endswith("_NODES")}


def test_reference_mi355x_multinode_node_counts(inferencex: Path) -> None:
    """InferenceX's MI355X disagg entries state PREFILL_NODES/DECODE_NODES; ours must agree."""
    rec = load_recipe_files([inferencex / "amd-master.yaml"])
    pts = [p for p in expand(rec, Filters(single_node=False), cluster=get_profile("mi355x"))
           if amd_node_settings(p)]
    assert len(pts) >= 20
    for p in pts:
        stated = amd_node_settings(p)
        assert (p.prefill_nodes, p.decode_nodes) == (stated["PREFILL_NODES"], stated["DECODE_NODES"]), p.key
        assert p.nodes == p.prefill_nodes + p.decode_nodes and p.gpus <= 8 * p.nodes


def test_reference_gb200_multinode_node_counts(inferencex: Path) -> None:
    """GB200 entries: srt-slurm config names ctx<P>_gen<D>_(dep|tep)<K> give the worker counts
    and decode GPUs; gpt-oss entries state PREFILL_NODES/DECODE_NODES."""
    rec = load_recipe_files([inferencex / "nvidia-master.yaml"])
    gb = get_profile("gb200-nvl72")
    pts = expand(rec, Filters(runner_type=("gb200",)), cluster=gb)
    named = 0
    stated_checked = 0
    for p in pts:
        for s in p.prefill.additional_settings or []:
            m = re.search(r"ctx(\d+)_gen(\d+)_(?:dep|tep)(\d+)_", s)
            if m:
                ctx, gen, k = map(int, m.groups())
                assert p.prefill.num_worker == ctx and p.decode.num_worker == gen, p.key
                assert p.decode_gpus == gen * k and p.decode_nodes == gen * math.ceil(k / 4), p.key
                named += 1
        stated = amd_node_settings(p)
        # One gpt-oss entry states DECODE_NODES=1 for three TP4 workers (12 GPUs), which
        # no 4-GPU node can hold: not usable as an oracle.
        if stated and stated["DECODE_NODES"] * 4 >= p.decode_gpus:
            assert (p.prefill_nodes, p.decode_nodes) == (stated["PREFILL_NODES"], stated["DECODE_NODES"]), p.key
            stated_checked += 1
    assert named >= 50 and stated_checked >= 9
    assert all(p.gpus_per_node == 4 and p.gpus <= 4 * p.nodes for p in pts)


def test_examples() -> None:
    local = get_profile("local")
    single = expand(load_recipe_files([EXAMPLES / "sim-single-node.yaml"]), cluster=local)
    assert len(single) == 3 and {p.framework for p in single} == {"sim"}
    assert all(p.partition == "mi355x" and p.nodes == 1 for p in single)
    (disagg,) = expand(load_recipe_files([EXAMPLES / "sim-disagg.yaml"]), cluster=local)
    assert (disagg.nodes, disagg.gpus, disagg.prefill_nodes, disagg.decode_nodes) == (3, 12, 1, 2)
    assert disagg.prefill.num_worker == 1 and disagg.decode.num_worker == 2
    for name in ("gb200-dsr1-dynamo-sglang.yaml", "mi355x-dsr1-sglang.yaml"):
        pts = expand(load_recipe_files([EXAMPLES / name]))
        assert pts and all(p.resolved and p.ixhpc.model_path for p in pts)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_filter_args(parser)
    return parser.parse_args(argv)


def test_filter_flags_roundtrip() -> None:
    f = filters_from_args(parse(["--model-prefix", "a", "b", "--seq-lens", "1k8k", "300x20",
                                 "--step-size", "4", "--max-conc", "8", "--multi-node", "--evals-only"]))
    assert f.model_prefix == ("a", "b") and f.seq_lens == ((1024, 8192), (300, 20))
    assert (f.step_size, f.max_conc, f.single_node, f.multi_node, f.evals_only) == (4, 8, False, True, True)
    both = filters_from_args(parse([]))
    assert both.single_node and both.multi_node and both.step_size == 2


@pytest.mark.parametrize("argv", [["--step-size", "1"], ["--max-conc", "0"], ["--seq-lens", "2k2k"],
                                  ["--single-node", "--multi-node"], ["--run-evals", "--evals-only"]])
def test_bad_flags_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["sweep", str(EXAMPLES / "sim-disagg.yaml"), *argv])
    assert exc.value.code == 2


def test_sweep_table_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", str(EXAMPLES / "sim-single-node.yaml"), "--cluster", "local"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0].split()[:3] == ["KEY", "RUNNER", "CLUSTER/PARTITION"]
    assert "sim-mi355x-single_128x64_tp8-ep1_c8" in out and "3 run points" in err
    assert main(["sweep", str(EXAMPLES / "sim-disagg.yaml"), "--json"]) == 0
    (point,) = json.loads(capsys.readouterr().out)
    assert point["nodes"] == 3 and point["conc"] == [4, 16] and point["site"]["cluster"] == "gb200-nvl72"
    assert point["kind"] == "disagg" and point["topology"]["roles"][1]["num_worker"] == 2
    assert main(["sweep", str(EXAMPLES / "sim-disagg.yaml"), "--cluster", "mi355x"]) == 2
    assert "serves no runner 'gb200-multinode'" in capsys.readouterr().err


def test_sweep_invalid_recipe_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("k: [1\n")
    assert main(["sweep", str(bad)]) == 2
    assert f"{bad}:2: invalid YAML" in capsys.readouterr().err


def test_matrix_rows_print_as_json_dumps_and_read_no_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The matrix is `json.dumps` of the rows, byte for byte; InferenceX's rows do not say
    where a point runs, so no cluster profile is read for them (a broken one is reported by
    the table, which shows sites, and by --cluster)."""
    from ixhpc.commands.sweep import _json_array

    rows = [{"a": [1, {"b": "c\u00e9"}], "d": None}, {"e": 1.5, "f": True}]
    assert _json_array(iter(rows)) == json.dumps(rows) and _json_array(iter([])) == json.dumps([])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    broken = tmp_path / "clusters.yaml"
    broken.write_text("mine: {extends: nosuch}\n")
    monkeypatch.setenv(ENV_VAR, str(broken))
    assert main(["sweep", "--format", "inferencex", str(recipe)]) == 0
    assert json.loads(capsys.readouterr().out)
    assert main(["sweep", str(recipe)]) == ConfigError.exit_code
    assert main(["sweep", "--format", "inferencex", "--cluster", "gb200", str(recipe)]) == ConfigError.exit_code
    assert "nosuch" in capsys.readouterr().err


def test_a_point_holds_its_entry_ixhpc_block_as_built_and_dumps_it_whole(recipes) -> None:
    """Points take the entry's validated block as it is and dump it as the block dumps
    itself; a mapping is validated as a block, its errors located under `ixhpc`."""
    import pydantic

    p = expand(recipes, Filters())[0]
    block = recipes.entries[p.config_key].spec.extras
    assert p.ixhpc is block
    assert p.model_dump()["ixhpc"] == block.model_dump()
    assert json.loads(p.model_dump_json())["ixhpc"] == json.loads(block.model_dump_json())
    with pytest.raises(pydantic.ValidationError, match=r"ixhpc\.health_timeout"):
        type(p).model_validate({**dict(p), "ixhpc": {"health_timeout": -1}})
