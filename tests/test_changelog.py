"""`ixhpc sweep changelog`: InferenceX's process_changelog.py (SPEC.md section 9 of the 2026-08
reference). The example outputs are reproduced in a throwaway git repository holding the
reference masters (through the ``inferencex_current`` fixture); the rules are unit-tested on
small masters written here.
"""

from __future__ import annotations

import collections
import json
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from ixhpc import changelog
from ixhpc.cli import main
from ixhpc.errors import ConfigError

LOCATED = re.compile(r"^perf-changelog\.yaml:\d+: ")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def init_repo(repo: Path, files: dict[str, str]) -> Path:
    repo.mkdir(parents=True, exist_ok=True)
    git(repo, "init", "-q")
    git(repo, "config", "user.name", "ixhpc tests")
    git(repo, "config", "user.email", "tests@ixhpc.invalid")
    git(repo, "config", "commit.gpgsign", "false")
    commit(repo, files, "base")
    return repo


def commit(repo: Path, files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def append(repo: Path, text: str, message: str = "entries") -> None:
    path = repo / "perf-changelog.yaml"
    commit(repo, {"perf-changelog.yaml": path.read_text() + textwrap.dedent(text)}, message)


def run(capsys: pytest.CaptureFixture[str], repo: Path, *extra: str, base: str = "HEAD~1") -> dict:
    code = main(["sweep", "changelog", "--base-ref", base, "--head-ref", "HEAD", "--checkout", str(repo), *extra])
    out, err = capsys.readouterr()
    assert code == 0, err
    result: dict = json.loads(out)
    return result


def fails(capsys: pytest.CaptureFixture[str], repo: Path, *extra: str) -> list[str]:
    code = main(["sweep", "changelog", "--base-ref", "HEAD~1", "--head-ref", "HEAD", "--checkout", str(repo),
                 *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    return [ln.removeprefix("ixhpc sweep: error: ") for ln in err.splitlines() if not ln.endswith("errors:")]


def canonical(rows: list[dict]) -> collections.Counter:
    return collections.Counter(json.dumps(r, sort_keys=True) for r in rows)


def same_matrix(expected: dict, got: dict) -> None:
    """Buckets as multisets of rows (SPEC.md: row and key order do not matter), metadata equal."""
    assert list(got) == list(expected)
    for name, value in expected.items():
        if name == "changelog_metadata":
            assert got[name] == value
        elif isinstance(value, dict):
            assert set(got[name]) == set(value), name
            for seq, rows in value.items():
                assert canonical(got[name][seq]) == canonical(rows), f"{name}[{seq}]"
        else:
            assert canonical(got[name]) == canonical(value), name


# ------------------------------------------------------------------ the reference examples


@pytest.fixture
def reference_repo(tmp_path: Path, inferencex_current: Path) -> Path:
    """A git copy of the reference snapshot (configs/ as InferenceX lays it out) with
    examples/changelog-entries-1-2.diff committed on top."""
    repo = tmp_path / "InferenceX"
    (repo / "configs").mkdir(parents=True)
    for name in ("amd-master.yaml", "nvidia-master.yaml", "runners.yaml"):
        shutil.copyfile(inferencex_current / name, repo / "configs" / name)
    shutil.copyfile(inferencex_current / "perf-changelog.yaml", repo / "perf-changelog.yaml")
    init_repo(repo, {})
    git(repo, "apply", str(inferencex_current / "examples" / "changelog-entries-1-2.diff"))
    git(repo, "commit", "-q", "-am", "entries 1-2")
    return repo


@pytest.mark.parametrize(("expected", "flags"), [("process-changelog-out.json", []),
                                                 ("process-changelog-trim.json", ["--trim-conc"])])
def test_reference_entries_1_2(capsys: pytest.CaptureFixture[str], inferencex_current: Path,
                               reference_repo: Path, expected: str, flags: list[str]) -> None:
    want = json.loads((inferencex_current / "examples" / expected).read_text())
    same_matrix(want, run(capsys, reference_repo, *flags))


def test_reference_entries_3_4(capsys: pytest.CaptureFixture[str], inferencex_current: Path,
                               reference_repo: Path) -> None:
    git(reference_repo, "apply", str(inferencex_current / "examples" / "changelog-entries-3-4.diff"))
    git(reference_repo, "commit", "-q", "-am", "entries 3-4")
    want = json.loads((inferencex_current / "examples" / "process-changelog-evals.json").read_text())
    same_matrix(want, run(capsys, reference_repo))


# ------------------------------------------------------------------ small masters for the rules

B200 = """\
a-fp8-b200-sglang:
  image: img/a:1
  model: org/a
  model-prefix: a
  runner: b200
  precision: fp8
  framework: sglang
  multinode: false
  scenarios:
    fixed-seq-len:
    - isl: 8192
      osl: 1024
      search-space:
      - { tp: 8, conc-list: [4, 16, 32, 64] }
    - isl: 1024
      osl: 1024
      search-space:
      - { tp: 4, conc-list: [8, 2] }
    - isl: 1024
      osl: 8192
      search-space:
      - { tp: 8, conc-list: [4] }
a-fp8-b200-sglang-agentic:
  image: img/a:1
  model: org/a
  model-prefix: a
  runner: cluster:b200
  precision: fp8
  framework: sglang
  multinode: false
  scenarios:
    agentic-coding:
    - search-space:
      - { tp: 8, kv-offloading: none, conc-list: [4, 32] }
"""

H100 = """\
a-fp8-h100-sglang:
  image: img/a:1
  model: org/a
  model-prefix: a
  runner: h100
  precision: fp8
  framework: sglang
  multinode: false
  scenarios:
    fixed-seq-len:
    - isl: 8192
      osl: 1024
      search-space:
      - { tp: 8, conc-list: [16, 32] }
"""
NVIDIA = B200 + H100

AMD = """\
b-fp4-mi355x-sglang-disagg:
  image: img/b:1
  model: org/b
  model-prefix: b
  runner: mi355x-disagg
  precision: fp4
  framework: sglang-disagg
  multinode: true
  disagg: true
  kv-p2p-transfer: mori
  scenarios:
    fixed-seq-len:
    - isl: 8192
      osl: 1024
      search-space:
      - conc-list: [4, 32, 64]
        prefill: { num-worker: 1, tp: 8, ep: 8, dp-attn: true }
        decode: { num-worker: 1, tp: 8, ep: 8, dp-attn: true }
      - conc-list: [8, 16]
        prefill: { num-worker: 1, tp: 4, ep: 1, dp-attn: false }
        decode: { num-worker: 1, tp: 8, ep: 1, dp-attn: false }
"""

RUNNERS = """\
labels:
  b200: [b200_0]
  cluster:b200: [b200_0]
  h100: [h100_0]
  mi355x-disagg: [mi355x_0]
hardware:
  cluster:b200: { gpus-per-node: 8, available-cpu-dram-mib: 2000000 }
"""

CHANGELOG = """\
- config-keys:
    - a-fp8-h100-sglang
  description:
    - "an old entry"
  pr-link: https://example.invalid/pull/0
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return init_repo(tmp_path / "ix", {"configs/nvidia-master.yaml": NVIDIA, "configs/amd-master.yaml": AMD,
                                       "configs/runners.yaml": RUNNERS, "perf-changelog.yaml": CHANGELOG})


def entry(keys: list[str], **extra: object) -> str:
    lines = ["", "- config-keys:", *[f"    - {json.dumps(k)}" for k in keys], "  description:", '    - "x"',
             "  pr-link: https://example.invalid/pull/9"]
    lines += [f"  {k}: {json.dumps(v)}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def sizes(m: dict) -> dict:
    return {k: ({s: len(r) for s, r in v.items()} if isinstance(v, dict) else len(v))
            for k, v in m.items() if k != "changelog_metadata"}


def test_buckets_and_output_model(capsys: pytest.CaptureFixture[str], repo: Path) -> None:
    append(repo, entry(["a-fp8-b200-sglang", "a-fp8-b200-sglang-agentic", "b-fp4-mi355x-sglang-disagg"]))
    m = run(capsys, repo)
    assert sizes(m) == {"single_node": {"8k1k": 4, "1k1k": 2, "1024_8192": 1, "agentic": 2},
                        "multi_node": {"8k1k": 2}, "evals": 2, "agentic_evals": 1, "multinode_evals": 2,
                        "multinode_agentic_evals": 0}
    fixed, agentic = m["single_node"]["8k1k"][0], m["single_node"]["agentic"][0]
    multi = m["multi_node"]["8k1k"][0]
    assert fixed["run-eval"] is False and fixed["eval-only"] is False
    assert "eval-only" not in agentic and "run-eval" not in agentic      # --no-evals agentic rows
    assert multi["eval-all-concs"] is False and multi["eval-only"] is False
    assert multi["prefill"]["additional-settings"] == [] and "hardware" not in multi["prefill"]
    raw = {k: v for k, v in fixed.items() if k not in ("conc", "exp-name", "recipe-fingerprint", "eval-only")}
    assert fixed["recipe-fingerprint"] == changelog.fingerprint(raw)     # over the raw generator row
    assert {r["recipe-fingerprint"] for r in m["single_node"]["8k1k"]} == {fixed["recipe-fingerprint"]}
    assert [r["conc"] for r in m["evals"]] == [32, 64]                  # upper median and max >= 16
    assert m["agentic_evals"][0]["conc"] == 32 and m["agentic_evals"][0]["eval-only"] is True
    assert m["changelog_metadata"] == {"base_ref": "HEAD~1", "head_ref": "HEAD", "entries": [{
        "config-keys": ["a-fp8-b200-sglang", "a-fp8-b200-sglang-agentic", "b-fp4-mi355x-sglang-disagg"],
        "description": ["x"],
        "pr-link": "https://example.invalid/pull/9", "evals-only": False, "all-evals": False,
        "append-only": False}]}


def test_trim_conc(capsys: pytest.CaptureFixture[str], repo: Path) -> None:
    append(repo, entry(["a-*", "b-*"]))
    m = run(capsys, repo, "--trim-conc")
    assert [r["conc"] for r in m["single_node"]["8k1k"]] == [4, 16]      # one per curve: b200, h100
    assert [r["conc"] for r in m["single_node"]["1k1k"]] == [2]          # the minimum, not the first
    assert [r["conc"] for r in m["multi_node"]["8k1k"]] == [[4], [8]]
    assert [r["conc"] for r in m["single_node"]["agentic"]] == [4]
    assert len(m["evals"]) == 3                                          # evals are never trimmed


def test_wildcards_and_first_entry_wins(capsys: pytest.CaptureFixture[str], repo: Path) -> None:
    append(repo, entry(["a-fp8-*-sglang", "a-fp8-b200-sglang"], **{"scenario-type": ["fixed-seq-len"]})
           + entry(["*"]))
    m = run(capsys, repo)
    # entry 1: both a-* configs, fixed only; entry 2 adds what is left: a's agentic scenario and b
    assert sizes(m)["single_node"] == {"8k1k": 6, "1k1k": 2, "1024_8192": 1, "agentic": 2}
    assert sizes(m)["multi_node"] == {"8k1k": 2}
    assert len(m["evals"]) == 3 and len(m["agentic_evals"]) == 1
    assert m["changelog_metadata"]["entries"][0]["config-keys"] == ["a-fp8-*-sglang", "a-fp8-b200-sglang"]
    assert m["changelog_metadata"]["entries"][0]["scenario-type"] == ["fixed-seq-len"]


def test_scenario_type_agentic_only(capsys: pytest.CaptureFixture[str], repo: Path) -> None:
    append(repo, entry(["a-fp8-b200-sglang-*"], **{"scenario-type": ["agentic-coding"]}))
    assert sizes(run(capsys, repo)) == {"single_node": {"agentic": 2}, "multi_node": {}, "evals": 0,
                                        "agentic_evals": 1, "multinode_evals": 0, "multinode_agentic_evals": 0}


def test_evals_only_all_evals_and_min_prefill_ep(capsys: pytest.CaptureFixture[str], repo: Path) -> None:
    append(repo, entry(["a-fp8-b200-sglang*", "b-fp4-mi355x-sglang-disagg"],
                       **{"evals-only": True, "eval-min-prefill-ep": 8})
           + entry(["a-fp8-b200-sglang"], **{"all-evals": True, "scenario-type": ["fixed-seq-len"]}))
    m = run(capsys, repo)
    assert m["single_node"] == {} and m["multi_node"] == {}             # no throughput for either
    # the all-evals entry goes first: every 8k1k concurrency of a-b200, then the evals-only entry
    # covers what is left (a's agentic scenario, b with prefill ep >= 8)
    assert sorted(r["conc"] for r in m["evals"]) == [4, 16, 32, 64]
    assert len(m["agentic_evals"]) == 1
    assert [r["prefill"]["ep"] for r in m["multinode_evals"]] == [8]
    assert [e["pr-link"] for e in m["changelog_metadata"]["entries"]] == ["https://example.invalid/pull/9"] * 2
    assert m["changelog_metadata"]["entries"][0]["eval-min-prefill-ep"] == 8


def test_cli_evals_flags(capsys: pytest.CaptureFixture[str], repo: Path) -> None:
    append(repo, entry(["b-fp4-mi355x-sglang-disagg"]))
    assert sizes(run(capsys, repo, "--evals-only"))["multi_node"] == {}
    m = run(capsys, repo, "--all-evals")
    assert sizes(m)["multi_node"] == {"8k1k": 2}                           # --all-evals keeps throughput
    assert all(r["eval-all-concs"] for r in m["multinode_evals"]) and len(m["multinode_evals"]) == 2


def test_no_entries(capsys: pytest.CaptureFixture[str], repo: Path) -> None:
    commit(repo, {"configs/runners.yaml": RUNNERS + "# touched\n"}, "not the changelog")
    assert main(["sweep", "changelog", "--base-ref", "HEAD~1", "--head-ref", "HEAD", "--checkout", str(repo)]) == 0
    assert capsys.readouterr().out.strip() == changelog.NO_ENTRIES


# ------------------------------------------------------------------ append-only


def test_append_only_delta(capsys: pytest.CaptureFixture[str], repo: Path) -> None:
    commit(repo, {"configs/nvidia-master.yaml": NVIDIA.replace("conc-list: [16, 32]", "conc-list: [16, 32, 48]"),
                  "perf-changelog.yaml": CHANGELOG + entry(["a-fp8-h100-sglang"], **{"append-only": True})}, "more")
    m = run(capsys, repo)
    assert [(r["runner"], r["conc"]) for r in m["single_node"]["8k1k"]] == [("h100", 48)]
    assert m["evals"] == [] and m["multinode_evals"] == []                 # no evals for append-only


def test_append_only_delta_lists() -> None:
    row = {"image": "i", "model": "m", "prefill": {"ep": 1}, "decode": {}, "exp-name": "x"}
    base = [{**row, "conc": [4, 8]}]
    head = [{**row, "conc": [16, 4, 8, 32]}, {**row, "conc": [32, 64]}]
    assert [r["conc"] for r in changelog.append_only_delta(base, head)] == [[16, 32], [64]]
    with pytest.raises(ConfigError, match="concurrencies \\[8\\] of a base curve are gone"):
        changelog.append_only_delta(base, [{**row, "conc": [4, 16]}])
    with pytest.raises(ConfigError, match="no concurrency added"):
        changelog.append_only_delta(base, base)
    with pytest.raises(ConfigError, match="base image"):
        changelog.append_only_delta(base, [{**row, "conc": [4, 8]}, {**row, "image": "j", "conc": [16]}])


@pytest.mark.parametrize(("change", "message"), [
    ({"configs/amd-master.yaml": AMD.replace("img/b:1", "img/b:2")}, "changed (or added or removed) but no entry"),
    ({"configs/nvidia-master.yaml": B200 + H100.replace("img/a:1", "img/a:2").replace("[16, 32]", "[16, 32, 48]")},
     "a base curve is gone in head"),
    ({"configs/nvidia-master.yaml": B200 + H100.replace("[16, 32]", "[32, 48]")},
     "concurrencies [16] of a base curve are gone"),
    ({"configs/nvidia-master.yaml": B200 + H100.replace("a-fp8-h100-sglang", "a-fp8-h100-sglang-new")},
     "not in the base revision"),
    ({"configs/nvidia-master.yaml": B200 + H100}, "no concurrency added"),
])
def test_append_only_scope(capsys: pytest.CaptureFixture[str], repo: Path, change: dict, message: str) -> None:
    files = {"configs/nvidia-master.yaml": NVIDIA.replace("[16, 32]", "[16, 32, 48]"), **change}
    key = "a-fp8-h100-sglang*"
    commit(repo, {**files, "perf-changelog.yaml": CHANGELOG + entry([key], **{"append-only": True})}, "more")
    assert any(message in ln for ln in fails(capsys, repo))


# ------------------------------------------------------------------ located errors


def test_deleted_line_is_located(capsys: pytest.CaptureFixture[str], repo: Path) -> None:
    commit(repo, {"perf-changelog.yaml": CHANGELOG.replace('    - "an old entry"\n', "") + entry(["a-*"])}, "edit")
    assert fails(capsys, repo) == ["perf-changelog.yaml:4: line deleted ('- \"an old entry\"'): the changelog is "
                                   "append-only; only added lines are allowed"]


def test_parse_diff() -> None:
    diff = "diff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -3,3 +3,4 @@\n a\n-\n+++x\n b\n+- y: 1\n@@ -10 +11,2 @@\n c\n+d\n"
    added = changelog.parse_diff(diff, "f")
    assert added.text == "++x\n- y: 1\nd" and added.lines == (4, 6, 12)   # a blank deletion is allowed
    with pytest.raises(ConfigError) as err:
        changelog.parse_diff(diff.replace("-\n", "-gone\n"), "f")
    assert err.value.errors == ["f:4: line deleted ('gone'): the changelog is append-only; only added lines "
                                "are allowed"]


@pytest.mark.parametrize(("text", "expected"), [
    (entry(["a-fp8-b200-sglang"], notes="x"), ":12: [0].notes: expected a known key (valid keys: all-evals,"),
    (entry(["a-fp8-b200-sglang"]).replace("  pr-link: https://example.invalid/pull/9\n", ""),
     ":7: [0].pr-link: expected this required key"),
    (entry(["nope-*"]), ":8: [0].config-keys[0]: no config key matches the wildcard pattern 'nope-*'"),
    (entry(["a-fp8-b200-sglangg"]), ":8: [0].config-keys[0]: config key 'a-fp8-b200-sglangg' not found in the "
     "master configs; did you mean 'a-fp8-b200-sglang'?"),
    (entry(["a?fp8-b200-sglang"]), ":8: [0].config-keys[0]: config key 'a?fp8-b200-sglang' not found"),
    (entry(["a-fp8-b200-sglang"], **{"append-only": True, "evals-only": True}),
     ":7: [0]: append-only cannot be combined with evals-only, all-evals or eval-min-prefill-ep"),
    (entry(["a-fp8-b200-sglang"], **{"scenario-type": ["agentic"]}), ":12: [0].scenario-type[0]: expected one of"),
    (entry(["a-fp8-b200-sglang"], **{"eval-min-prefill-ep": 0}), ":12: [0].eval-min-prefill-ep: expected a value >= 1"),
    (entry(["a-fp8-b200-sglang"]) + entry(["a-*"], **{"append-only": True}),
     ":7: [0]: not append-only, but the entry at line 13 is"),
    ("\n- config-keys: [a-fp8-b200-sglang\n", ":7: invalid YAML in the added lines"),
    ("\nnot: a list\n", ":7: expected the added lines to be a list of changelog entries"),
])
def test_bad_entry_is_located(capsys: pytest.CaptureFixture[str], repo: Path, text: str, expected: str) -> None:
    append(repo, text)
    lines = fails(capsys, repo)
    assert all(LOCATED.match(ln) for ln in lines), lines
    assert any(expected in ln for ln in lines), lines


def test_hint_for_misspelt_key(capsys: pytest.CaptureFixture[str], repo: Path) -> None:
    append(repo, entry(["a-fp8-b200-sglang"], **{"all-eval": True}))
    assert any("did you mean 'all-evals'" in ln for ln in fails(capsys, repo))


def test_flags(capsys: pytest.CaptureFixture[str], repo: Path) -> None:
    append(repo, entry(["a-*"], **{"append-only": True}))
    assert any("append-only entries cannot be processed with --evals-only" in ln
               for ln in fails(capsys, repo, "--evals-only"))
    assert any("--max-tp: not a changelog flag" in ln for ln in fails(capsys, repo, "--max-tp", "4"))
    assert main(["sweep", "full-sweep", "--trim-conc", "--config-files", str(repo / "configs/amd-master.yaml")]) == 2
    assert "--trim-conc: only for `ixhpc sweep changelog`" in capsys.readouterr().err
    assert main(["sweep", "changelog", "--base-ref=-x", "--head-ref", "HEAD", "--checkout", str(repo)]) == 2
    assert main(["sweep", "changelog", "--base-ref", "nope", "--head-ref", "HEAD", "--checkout", str(repo)]) == 2
    assert "bad revision 'nope'" in capsys.readouterr().err
