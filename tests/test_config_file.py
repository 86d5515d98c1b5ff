"""InferenceX ``CONFIG_FILE=`` settings resolve to srt-slurm recipes (ixhpc.srtslurm.config_file).

The reference counts: of the ``CONFIG_FILE`` items of InferenceX's August 2026 masters (440
distinct ``recipes/...`` values in YAML; the README's 448 also counts 3 commented-out lines and
5 ``EVAL_CONFIG_FILE`` items), 233 are in recipes-inferencex/, 179 in recipes-srt-slurm/ and
28 in neither (other srt-slurm branches); the 13 ``benchmarks/multi_node/srt-slurm-recipes/...``
ones are all vendored; the 2 bare names (llm-d configs) are found nowhere.
"""

from __future__ import annotations

import argparse
import collections
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from ixhpc import plan_data, runs
from ixhpc.commands import validate
from ixhpc.errors import ConfigError, PlanError
from ixhpc.profiles import get_profile
from ixhpc.srtslurm import config_file as cf
from ixhpc.sweep import Filters

SGLANG = "sglang/deepseek-v4/8k1k/disagg-mid-curve-1p1d-dep4-dep8-mtp.yaml"
MASTERS = ("nvidia-master.yaml", "amd-master.yaml")


def _refs(inferencex_current: Path) -> list[cf.Reference]:
    return [r for m in MASTERS for r in cf.file_references(inferencex_current / m)]


def test_every_reference_config_file_resolves_or_is_not_found(inferencex_current: Path,
                                                               srt_slurm: Path) -> None:
    vendored, own = srt_slurm / "recipes-inferencex", srt_slurm / "recipes-srt-slurm"
    refs = _refs(inferencex_current)
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    for value in {r.value for r in refs}:
        where = ("recipes-inferencex" if cf.resolve(value, [vendored]) else
                 "recipes-srt-slurm" if cf.resolve(value, [own]) else "not found")
        counts[cf.spelling(value), where] += 1
    assert counts == {("recipes", "recipes-inferencex"): 233, ("recipes", "recipes-srt-slurm"): 179,
                      ("recipes", "not found"): 28, ("benchmarks", "recipes-inferencex"): 13,
                      ("bare", "not found"): 2}
    # every item: found (then loaded and checked), or a located "not found" at its item
    not_found = 0
    for r in refs:
        try:
            cf.deployment(r.value, [vendored, own], r.topology)
        except ConfigError as exc:
            if "not found" in exc.errors[0]:
                not_found += 1
                located = r.error(exc.errors[0])
                assert located.startswith(f"{r.file}:{r.line}: ") and ".additional-settings[" in located
                text = (Path(r.file).read_text().splitlines()[r.line - 1])
                assert f"CONFIG_FILE={r.value}" in text
    assert not_found == 29 + 3  # 28 distinct recipes/ values (one named twice) and 2 bare names (3 items)


def test_spellings_and_bare_name(tmp_path: Path, srt_slurm: Path) -> None:
    d = tmp_path / "recipes"
    (d / "sub").mkdir(parents=True)
    shutil.copyfile(srt_slurm / "recipes-inferencex" / SGLANG, d / "sub" / "x.yaml")
    shutil.copyfile(srt_slurm / "recipes-inferencex" / SGLANG, d / "bare.yaml")
    assert cf.resolve("recipes/sub/x.yaml", [tmp_path / "none", d]) == str(d / "sub/x.yaml")
    assert cf.resolve("benchmarks/multi_node/srt-slurm-recipes/sub/x.yaml", [d]) == str(d / "sub/x.yaml")
    assert cf.resolve("bare.yaml", [d]) == str(d / "bare.yaml")
    assert cf.resolve("recipes/sub/x.yaml:override_a", [d]) == f"{d / 'sub/x.yaml'}:override_a"
    assert cf.resolve("recipes/../x.yaml", [d]) is None
    assert cf.resolve("recipes/sub/missing.yaml", [d]) is None
    assert [cf.spelling(v) for v in ("recipes/a.yaml", "benchmarks/multi_node/srt-slurm-recipes/a.yaml",
                                     "a.yaml", "/abs/a.yaml")] == ["recipes", "benchmarks", "bare", "absolute"]


def _master(tmp_path: Path, value: str, prefill: dict[str, Any] | None = None) -> Path:
    entry = {
        "image": "lmsysorg/sglang:v0.5.5", "model": "deepseek-ai/DeepSeek-V4", "model-prefix": "dsv4",
        "runner": "gb200", "precision": "fp4", "framework": "dynamo-sglang", "multinode": True,
        "disagg": True, "kv-p2p-transfer": "nixl",
        "scenarios": {"fixed-seq-len": [{"isl": 1024, "osl": 512, "search-space": [{
            "spec-decoding": "mtp", "conc-list": [16, 64],
            "prefill": {"num-worker": 1, "tp": 4, "ep": 4, "dp-attn": True, **(prefill or {}),
                        "additional-settings": [f"CONFIG_FILE={value}"]},
            "decode": {"num-worker": 1, "tp": 8, "ep": 8, "dp-attn": True}}]}]}}
    path = tmp_path / "master.yaml"
    path.write_text(yaml.safe_dump({"dsv4-fp4-gb200-dynamo-sglang": entry}, sort_keys=False))
    return path


def _validate(files: list[Path], dirs: list[Path], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    args = argparse.Namespace(files=[str(f) for f in files], engine_check=False, inferencex=None,
                              srt_recipes=dirs, cluster=None, profiles=None)
    code = validate.run(args)
    return code, capsys.readouterr().err


def test_validate_located_errors(tmp_path: Path, srt_slurm: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "dir"
    (d / "sglang").mkdir(parents=True)
    shutil.copyfile(srt_slurm / "recipes-inferencex" / SGLANG, d / "sglang" / "r.yaml")
    good = _master(tmp_path, "recipes/sglang/r.yaml")
    assert _validate([good], [d], capsys) == (0, "")
    # not configured: one warning, exit code unchanged
    code, err = _validate([good], [], capsys)
    assert code == 0 and err.count("CONFIG_FILE values were not checked") == 1
    # not found: located at the additional-settings item
    code, err = _validate([_master(tmp_path, "recipes/sglang/gone.yaml")], [d], capsys)
    line = next(i for i, t in enumerate((tmp_path / "master.yaml").read_text().splitlines(), 1)
                if "CONFIG_FILE=" in t)
    assert code == ConfigError.exit_code
    assert err.startswith(f"{tmp_path / 'master.yaml'}:{line}: dsv4-fp4-gb200-dynamo-sglang.scenarios."
                          f"fixed-seq-len[0].search-space[0].prefill.additional-settings[0]: "
                          f"CONFIG_FILE=recipes/sglang/gone.yaml: not found")
    # topology disagreement: the entry says 2 prefill workers of 8 GPUs
    code, err = _validate([_master(tmp_path, "recipes/sglang/r.yaml", {"num-worker": 2, "tp": 8, "ep": 8})],
                          [d], capsys)
    assert code == ConfigError.exit_code
    assert f"master.yaml:{line}: " in err and "disagrees with the entry's topology: prefill: num-worker 2" in err
    assert "ep 8 vs 4" in err


def test_topology_disagreement_in_crafted_recipe(tmp_path: Path, srt_slurm: Path) -> None:
    raw = yaml.safe_load((srt_slurm / "recipes-inferencex" / SGLANG).read_text())
    raw["resources"]["decode_workers"] = 2
    raw["resources"]["decode_nodes"] = 4
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    topo = cf.EntryTopology(True, cf.RoleShape(1, 4, 4, True), cf.RoleShape(1, 8, 8, True))
    with pytest.raises(ConfigError) as exc:
        cf.deployment("r.yaml", [tmp_path], topo)
    assert "decode: num-worker 1 vs 2 worker(s)" in exc.value.errors[0]


def test_render_resolved_entry_through_the_planner(tmp_path: Path, srt_slurm: Path) -> None:
    master = _master(tmp_path, "benchmarks/multi_node/srt-slurm-recipes/" + SGLANG)
    profile = get_profile("gb200-nvl72", None).model_copy(update={"model_dir": "/models"})
    target = runs.RunTarget(master, profile, Filters(), engine_check=False)
    with pytest.raises(PlanError, match="--srt-recipes DIR or `srt-recipes:`"):
        runs.plan(target, tmp_path / "run", "run")
    target = runs.RunTarget(master, profile.model_copy(update={"srt_recipes": [str(srt_slurm / "recipes-inferencex")]}),
                            Filters(), engine_check=False)
    plans = runs.plan(target, tmp_path / "run", "run")
    assert len(plans) == 1 and plans[0].concs == [16, 64]       # the entry's, not the recipe's
    assert any("override the recipe's benchmark section" in h for h in plans[0].header)
    job = plan_data.document("run", "gb200-nvl72", plans)["jobs"][0]
    roles = [p["role"] for p in job["processes"]]
    assert any(r.startswith("prefill") for r in roles) and any(r.startswith("decode") for r in roles)
    assert "nginx" in roles or "frontend" in " ".join(roles)    # the recipe's frontend topology
    bench = " ".join(str(x) for x in plans[0].bench_argv)
    assert "--isl 1024 --osl 512" in bench


def test_eval_config_files_resolve_and_agree_and_a_missing_one_is_located(inferencex_current: Path,
                                                                          srt_slurm: Path, tmp_path: Path) -> None:
    dirs = [srt_slurm / "recipes-inferencex", srt_slurm / "recipes-srt-slurm"]
    refs = [r for m in MASTERS for r in cf.file_references(inferencex_current / m, cf.EVAL_KEY)]
    assert len(refs) == 5   # the README's 5 EVAL_CONFIG_FILE items (agentic entries)
    for r in refs:
        assert cf.deployment(r.value, dirs, r.topology).name.endswith("-eval-agentic")
    # validate checks them as CONFIG_FILE items: a missing one is a located error at its item
    text = (inferencex_current / "nvidia-master.yaml").read_text()
    bad = refs[0].value.replace("-eval-agentic", "-eval-gone")
    master = tmp_path / "nvidia-master.yaml"
    master.write_text(text.replace(f"EVAL_CONFIG_FILE={refs[0].value}", f"EVAL_CONFIG_FILE={bad}", 1))
    errors = cf.check_file(master, dirs)
    assert len([e for e in errors if bad in e]) == 1
    (e,) = [e for e in errors if bad in e]
    assert e.startswith(f"{master}:{refs[0].line}: ") and "not found" in e
