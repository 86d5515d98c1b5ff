"""Point shapes that cannot disagree: single-node, multi-node aggregated and disaggregated
points are distinct types (``kind``), from the recipe through placement to the metadata
record that results ingest checks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import TypeAdapter, ValidationError

from ixhpc import engines, runs
from ixhpc.cli import main
from ixhpc.errors import ResultFileError
from ixhpc.frameworks import FRAMEWORKS
from ixhpc.point_metadata import ADAPTER, DisaggRecord, MultiAggRecord, SingleRecord
from ixhpc.profiles import get_profile
from ixhpc.recipe import load_recipe_files, validate_file
from ixhpc.results import ingest
from ixhpc.sweep import DisaggPoint, Filters, MultiAggPoint, RunPoint, SinglePoint, expand

from results_helpers import bench_result, metadata

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "recipes" / "examples"


def _variant(tmp_path: Path, name: str, edit) -> Path:
    """An example recipe with one entry edited by ``edit(entry)``."""
    doc = yaml.safe_load((EXAMPLES / name).read_text())
    edit(next(iter(doc.values())))
    path = tmp_path / f"variant-{name}"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _plans(recipe: Path, cluster: str = "local"):
    run_dir = Path("/scratch/ixhpc-runs/shape-test")
    return runs.plan(runs.RunTarget(recipe, get_profile(cluster), Filters()), run_dir, run_dir.name)


# ---------------------------------------------------------------- the row


def test_disagg_false_with_decode_workers_is_a_located_recipe_error(tmp_path, capsys):
    """sim-disagg.yaml with `disagg: false` (still `multinode: true`): not a 3-node "single"
    job with `tpNone`, but one located line from `validate`, and `render` writes nothing."""
    recipe = _variant(tmp_path, "sim-disagg.yaml", lambda e: e.update(disagg=False))
    assert main(["validate", str(recipe)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert re.match(rf"{re.escape(str(recipe))}:\d+: sim-gb200-disagg\.seq-len-configs\[0\]"
                    rf"\.search-space\[0\]\.decode\.num-worker: expected 0 .*found 2$", err[0]), err[0]
    out = tmp_path / "out"
    assert main(["render", str(recipe), "--cluster", "local", "-o", str(out)]) == 2
    assert "decode.num-worker" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("edit, where, message", [
    (lambda e: e["seq-len-configs"][0]["search-space"][0]["prefill"].update({"num-worker": 2}),
     "search-space[0].prefill.num-worker", "expected 1 (a multi-node aggregated point"),
    (lambda e: e.pop("multinode") and None, "disagg", "expected false (a single-node entry"),
])
def test_other_shape_mismatches_are_located(tmp_path, edit, where, message):
    def change(entry):
        entry.update(disagg=False, multinode=True)
        entry["seq-len-configs"][0]["search-space"][0]["decode"]["num-worker"] = 0
        edit(entry)
        if "multinode" not in entry:
            entry["disagg"] = True  # a single-node entry that claims disaggregation
    errors = validate_file(_variant(tmp_path, "sim-disagg.yaml", change))
    assert len(errors) >= 1 and any(where in e and message in e for e in errors), errors
    assert all(re.match(r".+\.yaml:\d+: ", e) for e in errors)


def test_multi_node_aggregated_point_renders_one_engine_across_its_nodes():
    recipe = EXAMPLES / "sim-multinode-agg.yaml"
    assert validate_file(recipe) == []
    (plan,) = _plans(recipe)
    assert plan.kind == "multi-agg" and plan.sbatch["nodes"] == "2"
    (server,) = plan.roles
    assert (server.name, server.node_index, server.nnodes, server.gpus) == ("server", 0, 2, 4)
    assert server.argv[:2] == ["python", "-c"] and "SLURM_NODEID" in server.argv[2]  # rank 0 serves
    from ixhpc import render
    script = render.render(plan)
    assert "None" not in "\n".join(plan.header) and "one aggregated engine tp8 ep1" in script
    assert script.count("start_role server ") == 1 and "--nodes=2 --ntasks=2" in script
    assert "#   node 0-1: server (sim engine, tp 8 ep 1, 8 GPU(s) on 2 node(s))" in script
    assert plan.metadata(4)["decode_num_worker"] == 0 and plan.metadata(16)["nodes"] == 2


def test_multi_node_aggregated_sglang_engine_spans_nodes(tmp_path):
    def to_sglang(entry):
        entry.update(framework="sglang", image="lmsysorg/sglang:v0.5")
        entry.pop("ixhpc")
    (plan,) = _plans(_variant(tmp_path, "sim-multinode-agg.yaml", to_sglang), "gb200-nvl72")
    (server,) = plan.roles
    argv = server.argv
    assert argv[argv.index("--nnodes") + 1] == "2" and "--dist-init-addr" in argv
    assert "--node-rank" in argv[2] and "--disaggregation-mode" not in argv


# ---------------------------------------------------------------- types


def _points():
    pts = {}
    for name in ("sim-single-node.yaml", "sim-multinode-agg.yaml", "sim-disagg.yaml"):
        pts.update({p.kind: p for p in expand(load_recipe_files([EXAMPLES / name]),
                                              cluster=get_profile("local"))})
    return pts


def test_each_shape_is_its_own_type_with_a_resolved_topology():
    pts = _points()
    assert isinstance(pts["single"], SinglePoint) and isinstance(pts["multi-agg"], MultiAggPoint)
    assert isinstance(pts["disagg"], DisaggPoint)
    assert [(p.multinode, p.disagg) for p in pts.values()] == [(False, False), (True, False), (True, True)]
    assert {k: (p.nodes, p.gpus) for k, p in pts.items()} == {
        "single": (1, 8), "multi-agg": (2, 8), "disagg": (3, 12)}
    assert not hasattr(pts["single"], "prefill") and not hasattr(pts["disagg"], "tp")
    row = pts["multi-agg"].to_inferencex_row()
    assert row["disagg"] is False and row["decode"]["num-worker"] == 0 and row["conc"] == [4, 16]


def test_run_point_union_dispatches_on_kind_and_refuses_mixtures():
    adapter: TypeAdapter = TypeAdapter(RunPoint)
    pts = _points()
    for kind, p in pts.items():
        data = p.model_dump(exclude={"topology", "nodes", "gpus"})
        again = adapter.validate_python(data)
        assert type(again) is type(p) and again == p, kind
    single = pts["single"].model_dump(exclude={"topology", "nodes", "gpus"})
    with pytest.raises(ValidationError, match="prefill"):
        adapter.validate_python({**single, "prefill": {"num-worker": 1, "tp": 1, "ep": 1, "dp-attn": False}})
    agg = pts["multi-agg"].model_dump(exclude={"topology", "nodes", "gpus"})
    with pytest.raises(ValidationError, match="expected 0"):
        adapter.validate_python({**agg, "decode": {**agg["decode"], "num_worker": 2}})
    with pytest.raises(ValidationError):
        adapter.validate_python({**agg, "kind": "multi"})


def test_sweep_builds_the_metadata_ingest_accepts():
    for kind, p in _points().items():
        record = p.metadata(p.conc[0])
        assert type(record) is {"single": SingleRecord, "multi-agg": MultiAggRecord,
                                "disagg": DisaggRecord}[kind]
        flat = record.record()
        assert ADAPTER.validate_python(flat) == record
        point = ingest.build_point(bench_result(), {**flat, "job_id": "1"})
        assert point.metadata["job_id"] == "1" and point.metadata["gpus"] == p.gpus


@pytest.mark.parametrize("change, message", [
    ({"surprise": 1}, "surprise: Extra inputs are not permitted"),
    ({"tp": "8"}, "tp: Input should be a valid integer"),
    ({"run_eval": 1}, "run_eval: Input should be a valid boolean"),
    ({"prefill_tp": 4}, "prefill_tp: Extra inputs are not permitted"),  # a single point's shape
    ({"multinode": True}, "prefill_num_worker: Field required"),        # multi-agg without workers
    ({"multinode": "yes"}, "expected boolean multinode and disagg"),
    ({"gpus": 0}, "gpus: Input should be greater than 0"),
    ({"job_id": None}, "job_id is null"),
])
def test_ingest_rejects_metadata_that_does_not_match_the_model(change, message):
    with pytest.raises(ResultFileError, match=re.escape(message)):
        ingest.build_point(bench_result(), {**metadata(), **change})


def test_ingest_rejects_disagg_totals_that_disagree():
    with pytest.raises(ResultFileError, match="gpus 17 is not prefill_gpus"):
        ingest.build_point(bench_result(), {**metadata(disagg=True), "gpus": 17})


# ---------------------------------------------------------------- engines


def test_engines_say_what_placement_needs():
    assert engines.engine("sglang-disagg").kv_port("prefill") == "bootstrap_port"
    assert engines.engine("sglang").kv_port("decode") is None
    assert engines.engine("dynamo-vllm").kv_port("decode") == "nixl_port"
    assert engines.engine("sglang").router_bootstrap_ports
    assert not engines.engine("dynamo-sglang").router_bootstrap_ports
    assert engines.engine("dynamo-trt").control_plane and not engines.engine("trt").control_plane
    assert engines.engine("dynamo-trt").health_path() is None
    assert engines.engine("sim").health_path("router") == "/health"
    assert not engines.engine("atom").multinode
    assert set(engines.ENGINES) == set(FRAMEWORKS.values())


# ---------------------------------------------------------------- for real


@pytest.mark.cluster
def test_multi_node_aggregated_point_runs_on_the_local_cluster(slurm, tmp_path):
    """One simulated engine over two gb nodes: rank 0 serves, the other rank idles; both
    concurrencies give a result file with the multi-agg metadata."""
    from ixhpc.results import load

    from slurm_helpers import run as slurm_run
    from test_jobs_e2e import submit, wait_status

    out = submit(EXAMPLES / "sim-multinode-agg.yaml", tmp_path)
    (job,) = wait_status(out["run_dir"])["jobs"]
    assert job["state"] == "COMPLETED" and job["points_done"] == job["points_total"] == 2, job
    files = sorted(str(p) for p in Path(out["run_dir"], "results").glob("*.h5"))
    table = load(files[0])
    assert table["multinode"].tolist() == [True] and table["disagg"].tolist() == [False]
    assert table["nodes"].tolist() == [2] and table["prefill_tp"].tolist() == [8]
    steps = slurm_run(["sacct", "-n", "-P", "-j", job["job_id"], "-o", "JobName,NNodes"], slurm)
    assert "server|2" in steps.split()
