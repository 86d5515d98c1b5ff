"""srt-slurm recipes (SPEC.md of ../shared/reference/srt-slurm): file forms, schema, validation."""

from __future__ import annotations

import re
import textwrap
import time
from pathlib import Path

import pytest

from ixhpc import cli
from ixhpc.errors import ConfigError
from ixhpc.srtslurm import Deployment, is_srt_recipe, load_recipe
from ixhpc.yamlmodel import load_yaml

PLAIN = """\
name: demo
model: {path: dsr1, container: dynamo-sglang, precision: fp8}
resources:
  gpu_type: gb200
  gpus_per_node: 4
  prefill_nodes: 1
  decode_nodes: 2
  prefill_workers: 2
  decode_workers: 1
backend:
  type: sglang
  prefill_environment: {A: "1"}
  decode_environment: {B: "2"}
  sglang_config:
    prefill: {tensor-parallel-size: 2, trust-remote-code: true}
    decode: {tensor-parallel-size: 8}
benchmark: {type: sa-bench, isl: 1024, osl: 1024, concurrencies: "4x8", req_rate: inf}
"""


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def load(tmp_path: Path, text: str) -> list[Deployment]:
    return load_recipe(write(tmp_path, text))


def errors(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, text)
    return exc.value.errors


def with_(extra: str, base: str = PLAIN) -> str:
    """PLAIN with top-level sections replaced/added (a YAML merge of two documents' text)."""
    import yaml
    data = yaml.safe_load(base)
    for key, value in yaml.safe_load(extra).items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    return yaml.safe_dump(data, sort_keys=False)


# --------------------------------------------------------------------------------------
# Plain recipes and the Deployment API


def test_plain_recipe_deployment(tmp_path):
    (d,) = load(tmp_path, PLAIN)
    assert d.name == "demo" and d.selector == "" and d.source.endswith("r.yaml")
    assert d.model_path == "dsr1" and d.container == "dynamo-sglang" and d.backend_type == "sglang"
    assert d.disaggregated and d.gpus_per_node == 4 and d.nodes == 3
    assert [(w.role, w.index, w.gpus, w.nodes) for w in d.workers] == [
        ("prefill", 0, 2, 1), ("prefill", 1, 2, 1), ("decode", 0, 8, 2)]
    assert dict(d.engine_config("prefill")) == {"tensor-parallel-size": 2, "trust-remote-code": True}
    assert dict(d.engine_config("aggregated")) == {}
    assert dict(d.environment("decode")) == {"B": "2"}
    assert d.benchmark.concurrency_list() == [4, 8]
    assert d.frontend.type == "dynamo" and d.frontend.enable_multiple_frontends  # SPEC defaults
    assert d.recipe.dynamo.version == "0.8.0" and d.recipe.health_check.max_attempts == 180


def test_gpus_per_worker_rules(tmp_path):
    # decode_nodes: 0 with decode workers inherits prefill's GPUs; agg defaults to agg_nodes x gpn
    (d,) = load(tmp_path, with_("resources: {prefill_nodes: 2, prefill_workers: 1, decode_nodes: 0, "
                                "decode_workers: 1}"))
    assert d.gpus_per_worker("prefill") == 8 and d.gpus_per_worker("decode") == 8
    agg = """\
    name: a
    model: {path: m, container: c, precision: fp8}
    resources: {gpu_type: gb200, agg_nodes: 2, agg_workers: 1}
    backend: {type: vllm, vllm_config: {aggregated: {tensor-parallel-size: 8}}}
    """
    (d,) = load(tmp_path, agg)
    assert not d.disaggregated and d.nodes == 2
    assert [(w.role, w.gpus, w.nodes) for w in d.workers] == [("aggregated", 8, 2)]
    assert d.recipe.backend.type == "vllm" and d.recipe.backend.connector == "nixl"


def test_reserved_nodes_add_to_the_allocation(tmp_path):
    (d,) = load(tmp_path, with_("infra: {etcd_nats_dedicated_node: true}\n"
                                "frontend: {dedicated_node: true}"))
    assert d.nodes == 4  # colocated reserved roles share one node
    (d,) = load(tmp_path, with_("infra: {etcd_nats_dedicated_node: true}\n"
                                "frontend: {dedicated_node: true}\n"
                                "benchmark: {colocate_with_frontend: false}"))
    assert d.nodes == 5


def test_marshmallow_conversions(tmp_path):
    (d,) = load(tmp_path, with_('resources: {gpus_per_node: "4", prefill_workers: 2.9}\n'
                                'frontend: {enable_multiple_frontends: "false"}\n'
                                'benchmark: {concurrencies: "512", req_rate: 5.7}'))
    r = d.recipe
    assert r.resources.gpus_per_node == 4 and r.resources.prefill_workers == 2  # truncated
    assert r.frontend.enable_multiple_frontends is False
    assert r.benchmark.concurrency_list() == [512] and r.benchmark.req_rate == 5


# --------------------------------------------------------------------------------------
# SPEC 5.1: unknown keys and types, located, all at once


def test_unknown_keys_everywhere_all_at_once(tmp_path):
    text = with_("telemetry: {enabled: false, provider: dcgm-power}\n"
                 "benchmark: {tokenizer_mode: auto}\nbogus: 1\n"
                 "backend: {sglang_config: {prefill: {x: 1}, extra_role: {}}}")
    errs = errors(tmp_path, text)
    assert len(errs) == 4, errs
    joined = "\n".join(errs)
    for key in ("telemetry.provider", "benchmark.tokenizer_mode", "bogus",
                "backend.sglang_config.extra_role"):
        assert re.search(rf"r\.yaml:\d+: {re.escape(key)}: expected a known key", joined), key
    line = next(e for e in errs if "bogus" in e).split(":")[1]
    assert text.splitlines()[int(line) - 1].startswith("bogus:")


def test_free_form_maps_accept_any_key(tmp_path):
    load(tmp_path, with_("frontend: {args: {anything: [1, 2]}, env: {X: y}}\n"
                         "environment: {Z: z}\nsrun_options: {mpi: pmix}\n"
                         "sbatch_directives: {segment: '1'}\ncontainer_mounts: {/a: /b}\n"
                         "identity: {frameworks: {sglang: '0.5'}}"))


@pytest.mark.parametrize("extra, where", [
    ("environment: {A: 1}", "environment.A: expected a string"),
    ("backend: {decode_environment: {B: true}}", "backend.decode_environment.B: expected a string"),
    ("srun_options: {x: 1}", "srun_options.x: expected a string"),
    ("frontend: {env: {Y: 2}}", "frontend.env.Y: expected a string"),
    ("slurm: {time_limit: 4:00:00}", "slurm.time_limit: expected a string, found 14400"),
    ("benchmark: {concurrencies: 512}", "benchmark.concurrencies: expected a list of integers"),
    ("resources: {gpus_per_node: true}", "resources.gpus_per_node: expected an integer"),
    ("resources: {gpus_per_node: '4.5'}", "resources.gpus_per_node: expected an integer"),
    ("frontend: {enable_multiple_frontends: null}", "frontend.enable_multiple_frontends: expected"),
    ("backend: {type: tensorrt}", "backend.type: expected one of sglang, trtllm, vllm, mocker"),
    ("backend: {sglang_config: {decode: {off: 1}}}", "sglang_config.decode: expected string keys (quote them)"),
    ("backend: {connector: nixl}", "backend.connector: expected a known key"),  # vllm-only key
])
def test_type_errors_are_located(tmp_path, extra, where):
    errs = errors(tmp_path, with_(extra))
    assert any(where in e for e in errs), errs
    assert all(re.match(r".*r\.yaml:\d+: ", e) for e in errs)


def test_slurm_time_limit_with_leading_zero_stays_a_string(tmp_path):
    (d,) = load(tmp_path, PLAIN + "slurm: {time_limit: 04:00:00}\n")
    assert d.recipe.slurm.time_limit == "04:00:00"


def test_duplicate_keys_last_wins_with_a_warning(tmp_path):
    text = PLAIN.replace("decode_environment: {B: \"2\"}", "decode_environment:\n    B: '1'\n    B: '2'")
    (d,) = load(tmp_path, text)
    assert dict(d.environment("decode")) == {"B": "2"}
    assert len(d.warnings) == 1 and "duplicate key" in d.warnings[0]


# --------------------------------------------------------------------------------------
# SPEC 5.1: cross-key rules


@pytest.mark.parametrize("extra, where", [
    ("dynamo: {hash: abc, wheel: 1.2.0}", "expected at most one of hash, top_of_tree, wheel"),
    ("dynamo: {wheel: ai_dynamo-1.2.0-py3-none-any.whl}", "dynamo.wheel: expected a bare package"),
    ("dynamo: {cargo_patches: ['a = 1']}", "dynamo.cargo_patches: expected dynamo.hash"),
    ("dynamo: {request_plane: grpc}", "dynamo.request_plane: expected one of nats, tcp, http"),
    ("dynamo: {event_plane: tcp}", "dynamo.event_plane: expected one of nats, zmq"),
    ("frontend: {type: trtllm_serve}", "frontend.type: expected backend.type trtllm"),
    ("frontend: {type: vllm}", "frontend.type: expected backend.type vllm"),
    ("resources: {het_jobs: true}\nfrontend: {dedicated_node: true}",
     "resources.het_jobs: expected no dedicated frontend"),
    ("frontend: {dedicated_node: true, orchestrator_placement: first_decode}",
     "frontend.orchestrator_placement: expected head"),
    ("benchmark: {client_dedicated_node: true, client_placement: last_decode}",
     "benchmark.client_placement: expected head"),
    ("backend: {mooncake_kv_store: {container: m}}",
     "backend.mooncake_kv_store: expected disaggregation-transfer-backend: mooncake"),
    ("profiling: {type: nsys, prefill: {start_step: 1}}", "profiling: expected profiling.prefill and"),
    ("profiling: {type: nsys-time}", "profiling: expected delay_secs and duration_secs"),
    ("profiling: {type: perf}", "profiling.type: expected one of none, nsys"),
    ("observability: {tachometer: {enabled: true}}", "expected observability.enabled: true"),
    ("telemetry: {enabled: true, dcgm_exporter: {container_image: d, port: 9401}}\n"
     "benchmark: {concurrencies: [4, 4]}", "expected unique positive concurrencies"),
    ("resources: {decode_workers: 0}", "resources.decode_workers: expected at least one decode"),
    ("resources: {agg_workers: 1}", "resources: expected either prefill_*/decode_* or agg_*"),
    ("benchmark: {isl: null}", "benchmark: expected benchmark.isl for sa-bench"),
    ("frontend: {type: triton}", "frontend.type: expected one of dynamo, sglang"),
])
def test_cross_key_rules(tmp_path, extra, where):
    errs = errors(tmp_path, with_(extra))
    assert any(where in e for e in errs), errs


def test_trtllm_serve_and_vllm_frontend_layouts(tmp_path):
    trt = """\
    name: t
    model: {path: m, container: c, precision: fp4}
    resources: {gpu_type: gb200, agg_nodes: 1, agg_workers: 2}
    backend: {type: trtllm, trtllm_config: {aggregated: {tensor_parallel_size: 2}}}
    frontend: {type: trtllm_serve, enable_multiple_frontends: false}
    """
    assert any("resources.agg_workers: expected exactly 1" in e for e in errors(tmp_path, trt))
    load(tmp_path, trt.replace("agg_workers: 2", "agg_workers: 1"))
    vllm = trt.replace("trtllm, trtllm_config", "vllm, vllm_config").replace("trtllm_serve", "vllm")
    assert any("agg_workers: 1 with frontend.type vllm" in e for e in errors(tmp_path, vllm))
    load(tmp_path, vllm.replace("agg_workers: 2", "agg_workers: 1"))


def test_vllm_mooncake_and_headless_rules(tmp_path):
    base = """\
    name: v
    model: {path: m, container: c, precision: fp8}
    resources: {gpu_type: gb200, prefill_nodes: 1, decode_nodes: 1, prefill_workers: 1,
                decode_workers: 1}
    backend:
      type: vllm
      mooncake_kv_store: {store_config: {a: 1}}
      vllm_config:
        prefill: {kv-transfer-config: '{"kv_connector":"MooncakeConnector"}'}
        decode: {data-parallel-size: 4, headless: true}
    """
    errs = errors(tmp_path, base)
    assert len(errs) == 1 and "backend.vllm_config.decode.headless: expected no headless" in errs[0]
    load(tmp_path, base.replace(", headless: true", ""))
    errs = errors(tmp_path, base.replace("Mooncake", "Nixl").replace(", headless: true", ""))
    assert "kv-transfer-config mentioning mooncake" in errs[0]


# --------------------------------------------------------------------------------------
# SPEC 3: override files and sweeps


OVERRIDE = """\
base:
  name: b
  model: {path: m, container: c, precision: fp8}
  resources: {gpu_type: gb200, prefill_nodes: 1, decode_nodes: 1, prefill_workers: 1,
              decode_workers: 1}
  backend:
    decode_environment: {KEEP: "1", DROP: "2"}
  benchmark: {type: sa-bench, isl: 1024, osl: 1024, concurrencies: [1]}
override_tp4:
  resources: {decode_nodes: 2}
  backend: {decode_environment: {DROP: null}}
override_named:
  name: explicit
zip_override_lat:
  benchmark: {concurrencies: [[4, 8]], isl: [1024, 8192]}
zip_override_named:
  name: [n0, n1, n2]
  resources: {decode_workers: [1, 2, 4]}
"""


def test_override_variants_names_and_merging(tmp_path):
    ds = load(tmp_path, OVERRIDE)
    assert [(d.name, d.selector) for d in ds] == [
        ("explicit", "override_named"), ("b_tp4", "override_tp4"),
        ("b_lat_0", "zip_override_lat[0]"), ("b_lat_1", "zip_override_lat[1]"),
        ("n0", "zip_override_named[0]"), ("n1", "zip_override_named[1]"),
        ("n2", "zip_override_named[2]")]
    tp4 = ds[1]
    assert tp4.nodes == 3 and dict(tp4.environment("decode")) == {"KEEP": "1"}  # null deletes
    assert [d.benchmark.concurrency_list() for d in ds[2:4]] == [[4, 8], [4, 8]]  # broadcast
    assert [d.benchmark.isl for d in ds[2:4]] == [1024, 8192]
    assert [d.worker_count("decode") for d in ds[4:]] == [1, 2, 4]


def test_selectors(tmp_path):
    path = write(tmp_path, OVERRIDE)
    assert [d.name for d in load_recipe(f"{path}:base")] == ["b"]
    assert [d.name for d in load_recipe(f"{path}:override_tp4")] == ["b_tp4"]
    assert [d.name for d in load_recipe(f"{path}:zip_override_named[2]")] == ["n2"]
    assert [d.name for d in load_recipe(f"{path}:zip_override_lat")] == ["b_lat_0", "b_lat_1"]
    assert [d.name for d in load_recipe(f"{path}:*named*")] == ["explicit", "n0", "n1", "n2"]
    with pytest.raises(ConfigError, match="expected a selector naming one of base"):
        load_recipe(f"{path}:override_nope")


def test_override_errors_point_at_the_override(tmp_path):
    text = OVERRIDE + "override_bad:\n  resources: {decode_nodes: lots}\n"
    errs = errors(tmp_path, text)
    assert len(errs) == 1, errs
    line = len(OVERRIDE.splitlines()) + 2
    assert errs[0].startswith(f"{tmp_path}/r.yaml:{line}: resources.decode_nodes: expected an integer")
    assert errs[0].endswith("(in override_bad)")


def test_zip_axes_of_different_lengths(tmp_path):
    text = OVERRIDE + "zip_override_x:\n  benchmark: {isl: [1, 2], osl: [1, 2, 3]}\n"
    assert any("expected zip axes of one length" in e for e in errors(tmp_path, text))
    text = OVERRIDE + "zip_override_y:\n  benchmark: {isl: []}\n"
    assert any("zip_override_y.benchmark.isl: expected a non-empty list" in e
               for e in errors(tmp_path, text))


def test_only_base_and_overrides_next_to_base(tmp_path):
    errs = errors(tmp_path, OVERRIDE + "name: stray\n")
    assert any("found unknown key 'name'" in e for e in errs)


def test_sweep(tmp_path):
    text = PLAIN.replace('concurrencies: "4x8"', 'concurrencies: ["{conc}"]') + \
        "sweep: {conc: [4, 16], isl: [1024]}\n"
    text = text.replace("isl: 1024,", 'isl: "{isl}",')
    ds = load(tmp_path, text)
    assert [d.name for d in ds] == ["demo_conc4_isl1024", "demo_conc16_isl1024"]
    assert [d.benchmark.concurrency_list() for d in ds] == [[4], [16]]
    assert ds[0].selector == "sweep(conc=4,isl=1024)"


def test_sweep_placeholder_unquoted_is_a_map_and_rejected(tmp_path):
    text = PLAIN.replace('concurrencies: "4x8"', "concurrencies: [{ conc }]") + "sweep: {conc: [4]}\n"
    assert any("benchmark.concurrencies" in e for e in errors(tmp_path, text))


# --------------------------------------------------------------------------------------
# Kind detection and `ixhpc validate`


def test_is_srt_recipe(tmp_path):
    assert is_srt_recipe(load_yaml(write(tmp_path, PLAIN)))
    assert is_srt_recipe(load_yaml(write(tmp_path, OVERRIDE)))
    inferencex = "dsr1-fp8-b200-sglang:\n  image: x\n  model: y\n  runner: b200\n"
    assert not is_srt_recipe(load_yaml(write(tmp_path, inferencex)))


def test_validate_command_accepts_srt_recipes(tmp_path, capsys):
    good = write(tmp_path, PLAIN, "good.yaml")
    bad = write(tmp_path, with_("bogus: 1"), "bad.yaml")
    assert cli.main(["validate", str(good)]) == 0
    assert "good.yaml: OK" in capsys.readouterr().out
    assert cli.main(["validate", str(good), str(bad)]) == 2
    assert "bad.yaml:" in capsys.readouterr().err


# --------------------------------------------------------------------------------------
# The reference recipes (SPEC.md 5.1): every file is accepted except the 18 InferenceX files
# that use keys srtctl v1.0.68 does not know.

# SPEC.md 5.1: "`telemetry.provider` (8 files ...), `benchmark.tokenizer_mode` (6 ...) and
# `benchmark.aiperf_server_metrics` (4 ...)"
UNKNOWN_TO_V1_0_68 = {("telemetry", "provider"): 8, ("benchmark", "tokenizer_mode"): 6,
                      ("benchmark", "aiperf_server_metrics"): 4}


def _uses(path: Path, key: tuple[str, str]) -> bool:
    data = load_yaml(path, duplicates="last").data
    docs = [data["base"], *(v for k, v in data.items() if k != "base")] if "base" in data else [data]
    return any(isinstance(d.get(key[0]), dict) and key[1] in d[key[0]] for d in docs)


def test_reference_recipes_validate_as_srtctl_does(srt_slurm):
    folders = {"recipes-inferencex": 469, "recipes-srt-slurm": 178}
    files = {name: sorted((srt_slurm / name).rglob("*.yaml")) for name in folders}
    assert {name: len(f) for name, f in files.items()} == folders
    start = time.monotonic()
    rejected: dict[Path, list[str]] = {}
    variants = {}
    for name, paths in files.items():
        variants[name] = 0
        for path in paths:
            try:
                variants[name] += len(load_recipe(path))
            except ConfigError as exc:
                rejected[path] = exc.errors
    elapsed = time.monotonic() - start

    expected: dict[Path, set[tuple[str, str]]] = {}
    for path in files["recipes-inferencex"]:
        keys = {k for k in UNKNOWN_TO_V1_0_68 if _uses(path, k)}
        if keys:
            expected[path] = keys
    counts = {k: sum(k in keys for keys in expected.values()) for k in UNKNOWN_TO_V1_0_68}
    assert counts == UNKNOWN_TO_V1_0_68 and len(expected) == 18
    assert set(rejected) == set(expected), sorted(set(rejected) ^ set(expected))
    for path, errs in rejected.items():  # rejected for those keys, and only for them
        named = {tuple(re.match(r".*?:\d+: ([\w.]+):", e).group(1).split(".")) for e in errs}
        assert named == expected[path] and all("expected a known key" in e for e in errs), errs
    # SPEC.md 16: the 451 accepted InferenceX files are 478 variants
    assert variants["recipes-inferencex"] == 478
    assert elapsed < 10, f"loading {sum(folders.values())} recipes took {elapsed:.1f}s"


def test_every_accepted_reference_deployment_plans(srt_slurm):
    """Every deployment the folders' recipes expand to plans as an ixhpc job (custom benchmarks,
    vLLM per_gpu DP, num_warmup_mult 1, and a JSON --comment in sbatch_directives included)."""
    from ixhpc.errors import PlanError
    from ixhpc.profiles import get_profile
    from ixhpc.srtslurm.plan import plan_deployment

    profile = get_profile("mi355x", None).model_copy(update={"model_dir": "/models"})
    refused: dict[str, str] = {}
    planned = 0
    for path in sorted(srt_slurm.rglob("*.yaml")):
        try:
            deps = load_recipe(path)
        except ConfigError:
            continue   # rejected at load as srtctl does (test_reference_recipes_validate_as_srtctl_does)
        for dep in deps:
            try:
                plan_deployment(dep, profile, Path("/nonexistent/run"), "run")
                planned += 1
            except (ConfigError, PlanError) as exc:
                refused[dep.source] = str(exc)
    assert not refused, refused
    assert planned == 668


def test_a_quoted_json_comment_directive_reaches_sbatch_as_slurm_reads_it(srt_slurm):
    """srtctl writes sbatch_directives verbatim on #SBATCH lines, where Slurm drops one pair of
    enclosing quotes: ixhpc reads the value so and quotes it again on its own line."""
    from ixhpc.profiles import get_profile
    from ixhpc.srtslurm.plan import plan_deployment

    recipe = next(srt_slurm.rglob("kimi-k3/agentic/agg-gb300-dcp8-nospec-mooncake-agentic.yaml"))
    profile = get_profile("mi355x", None).model_copy(update={"model_dir": "/models"})
    dep = load_recipe(recipe)[0]
    plan = plan_deployment(dep, profile, Path("/nonexistent/run"), "run")
    comment = plan.sbatch["comment"]
    assert comment.startswith('{"OccupiedIdleGPUsJobReaper":') and comment.endswith("}}")
    assert f"--comment='{comment}'" in plan.directives
