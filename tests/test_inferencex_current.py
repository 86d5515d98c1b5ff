"""The current InferenceX format (`scenarios:`): recipes, generator rules, matrices.

`ixhpc sweep --format inferencex` equals InferenceX's own generator output (commit 843c6254f),
as a multiset, for every expected file of the 2026-08 snapshot and every worked example of its
SPEC.md (the ``inferencex_current`` fixture of conftest.py: skipped, named, when the reference
data is absent). Broken current-format entries (SPEC.md section 10) are located errors;
agentic points are listed but cannot run yet.
"""

from __future__ import annotations

import collections
import json
import re
import textwrap
from pathlib import Path

import pytest
import yaml

from ixhpc import runs
from ixhpc.cli import main
from ixhpc.errors import ConfigError
from ixhpc.profiles import ENV_VAR, get_profile
from ixhpc.recipe import CurrentDisaggEntry, load_recipe_files, load_runners, validate_file
from ixhpc.render import render
from ixhpc.sweep import AgenticMultiPoint, AgenticSinglePoint, Filters, expand, expand_all

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "recipes" / "examples"
LOCATED = re.compile(r"^[^:]+:\d+: \S")


@pytest.fixture(autouse=True)
def no_user_profiles(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def canonical(rows: list[dict]) -> collections.Counter:
    return collections.Counter(json.dumps(r, sort_keys=True) for r in rows)


def rows(capsys: pytest.CaptureFixture[str], argv: list[str]) -> list[dict]:
    assert main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def same(expected: list[dict], got: list[dict], name: str) -> None:
    missing, surplus = canonical(expected) - canonical(got), canonical(got) - canonical(expected)
    assert not missing and not surplus, (
        f"{name}: {sum(missing.values())} rows missing, {sum(surplus.values())} extra; "
        f"first missing: {next(iter(missing), None)}; first extra: {next(iter(surplus), None)}")
    assert len(got) == len(expected)


# ------------------------------------------------------------------ the expected matrices

EXPECTED = {
    "full-all.json": ["full-sweep"],
    "full-no-evals.json": ["full-sweep", "--no-evals"],
    "full-single.json": ["full-sweep", "--single-node"],
    "full-multi.json": ["full-sweep", "--multi-node"],
    "filtered-dsr1-b200.json": ["full-sweep", "--single-node", "--model-prefix", "dsr1",
                                "--runner-type", "b200", "--max-conc", "16"],
    "scenario-fixed.json": ["full-sweep", "--scenario-type", "fixed-seq-len"],
    "scenario-agentic.json": ["full-sweep", "--scenario-type", "agentic-coding"],
    "full-evals-only.json": ["full-sweep", "--evals-only"],
    "full-all-evals.json": ["full-sweep", "--all-evals"],
    "test-config-dsr1-fp8.json": ["test-config", "--config-keys", "dsr1-fp8-*"],
    "test-config-all-no-evals.json": ["test-config", "--config-keys", "*", "--no-evals"],
}


def masters(ref: Path) -> list[str]:
    return ["--format", "inferencex", "--config-files", str(ref / "nvidia-master.yaml"),
            str(ref / "amd-master.yaml"), "--runner-config", str(ref / "runners.yaml")]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_expected_matrix(capsys: pytest.CaptureFixture[str], inferencex_current: Path, name: str) -> None:
    sub, *extra = EXPECTED[name]
    expected = json.loads((inferencex_current / "expected" / name).read_text())
    same(expected, rows(capsys, ["sweep", sub, *masters(inferencex_current), *extra]), name)


@pytest.mark.parametrize("example", ["ex1-single-fixed", "ex2-multi-fixed", "ex3-agentic-single",
                                     "ex4-agentic-multi"])
@pytest.mark.parametrize("mode", ["default", "no-evals", "evals-only", "all-evals"])
def test_spec_examples(capsys: pytest.CaptureFixture[str], inferencex_current: Path,
                       example: str, mode: str) -> None:
    ex = inferencex_current / "examples"
    flag = [] if mode == "default" else [f"--{mode}"]
    got = rows(capsys, ["sweep", "full-sweep", "--format", "inferencex", "--config-files",
                        str(ex / f"{example}.yaml"), "--runner-config", str(ex / "runners.yaml"), *flag])
    same(json.loads((ex / f"out-{example}-{mode}.json").read_text()), got, f"{example} {mode}")


def test_current_masters_validate(capsys: pytest.CaptureFixture[str], inferencex_current: Path) -> None:
    files = [inferencex_current / "nvidia-master.yaml", inferencex_current / "amd-master.yaml"]
    for f in files:
        assert validate_file(f) == []
    assert len(load_recipe_files(files)) == 208
    assert main(["validate", *map(str, files)]) == 0
    assert "OK" in capsys.readouterr().out


def test_runner_config_both_forms(inferencex: Path, inferencex_current: Path, tmp_path: Path) -> None:
    current = load_runners(inferencex_current / "runners.yaml")
    assert current.hardware["cluster:gb200-nv"].gpus_per_node == 4
    assert current.hardware["cluster:b300-nv"].available_cpu_dram_mib == 2_964_436
    assert load_runners(inferencex / "runners.yaml").hardware == {}
    bad = tmp_path / "runners.yaml"
    bad.write_text("labels:\n  b200: []\nhardware:\n  b200: {gpus-per-node: 8, cpu-dram: 1}\n")
    with pytest.raises(Exception) as err:
        load_runners(bad)
    lines = err.value.errors  # type: ignore[attr-defined]
    assert all(LOCATED.match(x) for x in lines), lines
    assert any(":2: labels.b200: expected a non-empty list of runner names" in x for x in lines)
    assert any("did you mean 'available-cpu-dram-mib'" in x or "unknown key 'cpu-dram'" in x for x in lines)


# ------------------------------------------------------------------ recipes: the format's rules

ENTRY = """\
q:
  image: img
  model: org/m
  model-prefix: q
  precision: fp8
  framework: sglang
  runner: b200
  multinode: false
  scenarios:
    fixed-seq-len:
    - isl: 8192
      osl: 1024
      search-space:
      - {tp: 8, conc-start: 4, conc-end: 64}
"""

DISAGG = """\
d:
  image: img
  model: org/m
  model-prefix: d
  precision: fp4
  framework: dynamo-sglang
  runner: gb200
  multinode: true
  disagg: true
  kv-p2p-transfer: nixl
  scenarios:
    fixed-seq-len:
    - isl: 1024
      osl: 1024
      search-space:
      - conc-list: [4]
        prefill: {num-worker: 1, tp: 4, ep: 4, dp-attn: false}
        decode: {num-worker: 1, tp: 8, ep: 8, dp-attn: true}
"""

AGENTIC = """\
a:
  image: img
  model: org/m
  model-prefix: a
  precision: fp4
  framework: sglang
  runner: cluster:b300-nv
  scenarios:
    agentic-coding:
    - dram-utilization: 0.8
      search-space:
      - {tp: 4, kv-offloading: dram, kv-offload-backend: {name: hicache}, conc-list: [1, 16]}
"""


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


BROKEN = [  # (edit of a recipe, line, what the one error says)
    (ENTRY.replace("tp: 8,", "tp: 8, dcp-size: 3,"), 14, "divisible by 'dcp-size' (3)"),
    (ENTRY.replace("tp: 8,", "tp: 8, pp: true,"), 14, "pp: expected an integer"),
    (ENTRY.replace("tp: 8,", 'tp: "8",'), 14, "tp: expected an integer"),
    (ENTRY.replace("isl: 8192", "isl: 8192.0"), 11, "isl: expected an integer"),
    (ENTRY.replace("conc-start: 4", "conc-start: 0"), 14, "conc-start: expected a value > 0"),
    (ENTRY.replace("multinode: false", "multinode: false\n  disagg: true"), 9, "disagg: expected false"),
    (ENTRY.replace("multinode: false", "multinode: false\n  kv-p2p-transfer: nixl"), 9,
     "unknown key 'kv-p2p-transfer'"),
    (ENTRY.replace("    fixed-seq-len:\n", "    fixed-seq-len: []\n    fixed-seq-lens:\n"), 11,
     "scenarios.fixed-seq-lens: expected a known key (did you mean 'fixed-seq-len'?)"),
    (ENTRY.replace("    fixed-seq-len:\n    - isl: 8192\n      osl: 1024\n      search-space:\n      - "
                   "{tp: 8, conc-start: 4, conc-end: 64}\n", "    fixed-seq-len: []\n"), 9,
     "at least one non-empty scenario list"),
    (ENTRY.replace("multinode: false", "multinode: false\n  router: {name: r, version: 'image:x'}"), 9,
     "router.version: expected a version (not an image reference)"),
    (ENTRY.replace("multinode: false", "multinode: false\n  router: {name: r, version: '1'}")
     .replace("tp: 8,", "tp: 8, router: {name: r, version: '2'},"), 1,
     "router: expected it either at the top level or in search-space entries, found both"),
    (DISAGG.replace("  kv-p2p-transfer: nixl\n", ""), 1, "kv-p2p-transfer: expected a KV transfer engine"),
    (DISAGG.replace("{num-worker: 1, tp: 4,", "{hardware: b200, num-worker: 1, tp: 4,"), 16,
     "'hardware' on both workers or on neither"),
    (AGENTIC.replace("cluster:b300-nv", "b300"), 1, "expected a 'cluster:' runner"),
    (AGENTIC.replace("    - dram-utilization: 0.8\n      search-space:", "    - search-space:"), 10,
     "dram-utilization: expected a fraction"),
    (AGENTIC.replace("dram-utilization: 0.8", "dram-utilization: 0.8\n      duration: 1800"), 11,
     "unknown key 'duration'"),
    (AGENTIC.replace("dram-utilization: 0.8", "dram-utilization: 0.8\n      trace-source: x"), 11,
     "unknown key 'trace-source'"),
    (AGENTIC.replace("kv-offloading: dram, kv-offload-backend: {name: hicache}", "kv-offloading: dram"), 12,
     "kv-offload-backend: expected a backend"),
    (AGENTIC.replace("kv-offloading: dram,", "kv-offloading: none,"), 12,
     "kv-offload-backend: expected it only with kv-offloading: dram"),
    (AGENTIC.replace("{tp: 4,", "{prefill: {num-worker: 1, tp: 4, ep: 1, dp-attn: false}, "
                     "decode: {num-worker: 1, tp: 4, ep: 1, dp-attn: false},"), 1,
     "expected tp in the search-space entries of a single-node entry"),
    (AGENTIC.replace("{tp: 4,", "{tp: 4, decode: {num-worker: 1, tp: 4, ep: 1, dp-attn: false},"), 12,
     "expected either tp (single-node entries) or both prefill and decode"),
    (AGENTIC.replace("runner: cluster:b300-nv", "runner: cluster:b300-nv\n  multinode: true"), 1,
     "expected prefill and decode in the search-space entries of a multinode entry"),
]


@pytest.mark.parametrize("text,line,message", BROKEN)
def test_broken_current_entries_are_located_errors(tmp_path: Path, text: str, line: int, message: str) -> None:
    errors = validate_file(write(tmp_path, text))
    assert errors and all(LOCATED.match(e) and "\n" not in e for e in errors), errors
    assert any(f":{line}: " in e and message in e for e in errors), errors


def test_all_errors_at_once_with_hints(tmp_path: Path) -> None:
    text = ENTRY.replace("tp: 8,", "tp: 8, dcp-siz: 2,").replace("model-prefix: q", "model-prefx: q")
    errors = validate_file(write(tmp_path, text))
    assert len(errors) == 3, errors   # the unknown key, its hint, and the missing model-prefix
    assert any("did you mean 'model-prefix'?" in e for e in errors)
    assert any("did you mean 'dcp-size'?" in e for e in errors)


def test_march_entries_refuse_current_keys(tmp_path: Path) -> None:
    march = DISAGG.replace("  kv-p2p-transfer: nixl\n  scenarios:\n    fixed-seq-len:\n",
                           "  seq-len-configs:\n").replace("tp: 4, ep: 4,", "tp: 4, pp: 2, ep: 4,")
    errors = validate_file(write(tmp_path, march))
    assert len(errors) == 1 and "prefill.pp: expected a March-format worker key" in errors[0]


def test_ixhpc_block_in_the_current_format(tmp_path: Path) -> None:
    text = ENTRY + "  ixhpc:\n    max-model-len-margin: 10\n    env: {A: b}\n"
    (p, *_) = expand(load_recipe_files([write(tmp_path, text)]), profiles={})
    assert p.max_model_len == 8192 + 1024 + 10 and p.ixhpc.env == {"A": "b"}
    (default, *_) = expand(load_recipe_files([write(tmp_path, ENTRY, "d.yaml")]), profiles={})
    assert default.max_model_len == 8192 + 1024 + 256


# ------------------------------------------------------------------ the generator's rules

def test_points_carry_the_new_fields(tmp_path: Path, inferencex_current: Path) -> None:
    runners = load_runners(inferencex_current / "examples" / "runners.yaml")
    ex = inferencex_current / "examples"
    (first, *_) = expand_all(load_recipe_files([ex / "ex1-single-fixed.yaml"]), profiles={}, runners=runners)
    tp4 = [p for p in expand_all(load_recipe_files([ex / "ex1-single-fixed.yaml"]), profiles={})
           if getattr(p, "tp", 0) == 4]
    assert first.router is not None and first.router.name == "sgl-router"
    assert tp4[0].pp == 2 and tp4[0].dcp_size == 2 and tp4[0].pcp_size == 1  # type: ignore[union-attr]
    (row1, _) = expand_all(load_recipe_files([ex / "ex2-multi-fixed.yaml"]), profiles={})
    assert row1.kv_p2p_transfer == "nixl" and row1.prefill.hardware == "b200"  # type: ignore[union-attr]
    assert row1.prefill.pcp_size == 2 and row1.decode.dcp_size == 2  # type: ignore[union-attr]
    agentic = expand_all(load_recipe_files([ex / "ex4-agentic-multi.yaml"]), profiles={}, runners=runners)
    assert all(isinstance(p, AgenticMultiPoint) for p in agentic)
    a = agentic[0]
    assert isinstance(a, AgenticMultiPoint)
    assert (a.kv_offloading, a.kv_offload_backend and a.kv_offload_backend.name, a.total_cpu_dram_gb,
            a.duration) == ("dram", "mooncake", 225, 3600)


def test_total_cpu_dram_gb_is_exact(tmp_path: Path, inferencex_current: Path) -> None:
    runners = load_runners(inferencex_current / "examples" / "runners.yaml")
    pts = expand_all(load_recipe_files([write(tmp_path, AGENTIC)]), profiles={}, runners=runners)
    assert [p.total_cpu_dram_gb for p in pts] == [1199, 1199]  # type: ignore[union-attr]
    assert isinstance(pts[0], AgenticSinglePoint) and pts[0].exp_name == "a_tp4_conc1_kvdram-hicache"
    tiled = AGENTIC.replace("tp: 4,", "tp: 16,")
    with pytest.raises(Exception, match="exceeds gpus-per-node 8"):
        expand_all(load_recipe_files([write(tmp_path, tiled, "t.yaml")]), profiles={}, runners=runners)


def test_filters_per_format(tmp_path: Path, inferencex: Path) -> None:
    current = load_recipe_files([write(tmp_path, ENTRY)])
    march = load_recipe_files([inferencex / "amd-master.yaml"])
    for flags, recipes, message in [
        (Filters(run_evals=True), current, "--run-evals: only for March-format files"),
        (Filters(no_evals=True), march, "--no-evals: only for current-format files"),
        (Filters(all_evals=True), march, "--all-evals: only for current-format files"),
        (Filters(scenario_type=("fixed-seq-len",)), march, "--scenario-type: only for current"),
        (Filters(seq_lens=((1024, 8192),)), current, "--seq-lens 1k8k: not a choice"),
        (Filters(config_keys=("q",), max_conc=4), current, "--max-conc: full-sweep flags"),
        (Filters(conc=(4,)), current, "--conc: only with test-config"),
        (Filters(all_evals=True, no_evals=True), current, "exclude each other"),
    ]:
        with pytest.raises(Exception, match=re.escape(message)):
            expand_all(recipes, flags, profiles={})


def test_mixing_formats_is_an_error(tmp_path: Path, inferencex: Path) -> None:
    both = load_recipe_files([write(tmp_path, ENTRY), inferencex / "amd-master.yaml"])
    with pytest.raises(Exception, match="one call takes one recipe format"):
        expand_all(both, profiles={})


def test_test_config_and_runner_node_filter(capsys: pytest.CaptureFixture[str], inferencex_current: Path) -> None:
    ex = inferencex_current / "examples"
    base = ["sweep", "--format", "inferencex", "--config-files", str(ex / "ex1-single-fixed.yaml"),
            "--runner-config", str(ex / "runners.yaml"), "--no-evals"]
    full = rows(capsys, [base[0], "full-sweep", *base[1:], "--runner-node-filter", "b200"])
    assert collections.Counter(r["runner"] for r in full) == {"b200-nb_0": 8, "b200-cw_0": 8}
    test = rows(capsys, [base[0], "test-config", *base[1:], "--config-keys", "ex1-*",
                         "--runner-node-filter", "b200", "--conc", "8", "64"])
    assert collections.Counter((r["runner"], r["conc"]) for r in test) == {
        (runner, c): 2 if c == 8 else 1 for runner in ("b200", "b200-nb_0", "b200-cw_0") for c in (8, 64)}
    assert main([base[0], "test-config", *base[1:], "--config-keys", "nope-*"]) == 2
    assert "no config key matches 'nope-*'" in capsys.readouterr().err
    assert main([base[0], "full-sweep", *base[1:-1], "--run-evals"]) == 2
    assert main([base[0], "full-sweep", *base[1:], "--seq-lens", "1k8k"]) == 2


# ------------------------------------------------------------------ what can run

def _current(name: str, tmp_path: Path, **top: object) -> Path:
    """An example recipe in the current format, with the March margin kept (same scripts)."""
    doc = yaml.safe_load((EXAMPLES / name).read_text())
    for entry in doc.values():
        entry["scenarios"] = {"fixed-seq-len": entry.pop("seq-len-configs")}
        entry.update(top)
        entry.setdefault("ixhpc", {})["max-model-len-margin"] = 200
    path = tmp_path / f"current-{name}"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.mark.parametrize("name,top", [("sim-single-node.yaml", {}),
                                      ("sim-disagg.yaml", {"kv-p2p-transfer": "nixl"})])
def test_current_points_render_as_march_ones(tmp_path: Path, name: str, top: dict) -> None:
    march = EXAMPLES / name
    current = _current(name, tmp_path, **top)
    if top:
        assert isinstance(next(iter(load_recipe_files([current]).entries.values())).spec, CurrentDisaggEntry)
    run_dir = Path("/scratch/ixhpc-runs/current-test")
    plans = [runs.plan(runs.RunTarget(r, get_profile("local"), Filters()), run_dir, "current-test")
             for r in (march, current)]
    assert [p.kind for p in plans[0]] == [p.kind for p in plans[1]]
    strip = re.compile(r".*(fingerprint|variant|current-sim|\.yaml|current InferenceX format).*\n")
    for a, b in zip(*plans):
        # the current format's header also says its pp/dcp/pcp, router and kv-p2p-transfer
        assert "current InferenceX format" in render(b) and " pp1 dcp1 pcp1" in render(b)
        assert strip.sub("", render(a)) == strip.sub("", render(b)).replace(" pp1 dcp1 pcp1", "")


def test_agentic_points_run_where_a_partition_serves_their_cluster_label(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Agentic points render and submit (issue 19; tests/test_agentic_jobs.py runs them): on a
    profile that does not serve their `cluster:` runner they are refused like any point."""
    path = write(tmp_path, textwrap.dedent(AGENTIC).replace("kv-offloading: dram, kv-offload-backend: "
                                                            "{name: hicache}", "kv-offloading: none"))
    assert main(["render", str(path), "--cluster", "local", "-o", str(tmp_path / "out")]) == ConfigError.exit_code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "serves no runner 'cluster:b300-nv'" in err[0]
    assert main(["sweep", str(path)]) == 0   # listed
    assert "a_agentic0-0_c16" in capsys.readouterr().out
