"""`ixhpc sweep --format inferencex` equals InferenceX's own generator output, as a multiset.

One test per expected file of the March 2026 reference snapshot (the ``inferencex`` fixture
of conftest.py: skipped, named, when the reference data is absent); the flags are the ones
its README lists.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from ixhpc.cli import main


def base(ref: Path) -> list[str]:
    return ["sweep", "full-sweep", "--format", "inferencex",
            "--config-files", str(ref / "nvidia-master.yaml"), str(ref / "amd-master.yaml"),
            "--runner-config", str(ref / "runners.yaml")]


def canonical(rows: list[dict]) -> collections.Counter:
    return collections.Counter(json.dumps(r, sort_keys=True) for r in rows)


def sweep_rows(capsys: pytest.CaptureFixture[str], ref: Path, extra: list[str]) -> list[dict]:
    assert main(base(ref) + extra) == 0
    return json.loads(capsys.readouterr().out)


def check(capsys: pytest.CaptureFixture[str], ref: Path, name: str, extra: list[str]) -> None:
    expected = json.loads((ref / "expected" / name).read_text())
    got = sweep_rows(capsys, ref, extra)
    missing, surplus = canonical(expected) - canonical(got), canonical(got) - canonical(expected)
    assert not missing and not surplus, (
        f"{name}: {sum(missing.values())} rows missing, {sum(surplus.values())} extra; "
        f"first missing: {next(iter(missing), None)}; first extra: {next(iter(surplus), None)}")
    assert len(got) == len(expected)


def test_full_all(capsys: pytest.CaptureFixture[str], inferencex: Path) -> None:
    check(capsys, inferencex, "full-all.json", [])


def test_full_single(capsys: pytest.CaptureFixture[str], inferencex: Path) -> None:
    check(capsys, inferencex, "full-single.json", ["--single-node"])


def test_full_multi(capsys: pytest.CaptureFixture[str], inferencex: Path) -> None:
    check(capsys, inferencex, "full-multi.json", ["--multi-node"])


def test_full_evals(capsys: pytest.CaptureFixture[str], inferencex: Path) -> None:
    check(capsys, inferencex, "full-evals.json", ["--run-evals"])


def test_filtered_dsr1_b200(capsys: pytest.CaptureFixture[str], inferencex: Path) -> None:
    check(capsys, inferencex, "filtered-dsr1-b200.json",
          ["--single-node", "--model-prefix", "dsr1", "--runner-type", "b200", "--max-conc", "16"])


def test_filtered_1k8k_step4(capsys: pytest.CaptureFixture[str], inferencex: Path) -> None:
    check(capsys, inferencex, "filtered-1k8k-step4.json", ["--seq-lens", "1k8k", "--step-size", "4", "--max-tp", "4"])


def test_evals_only_is_the_marked_subset_of_full_evals(capsys: pytest.CaptureFixture[str], inferencex: Path) -> None:
    expected = [r for r in json.loads((inferencex / "expected" / "full-evals.json").read_text())
                if r["run-eval"]]
    assert expected and canonical(sweep_rows(capsys, inferencex, ["--evals-only"])) == canonical(expected)


def test_unknown_runner_type_is_rejected(capsys: pytest.CaptureFixture[str], inferencex: Path) -> None:
    assert main(base(inferencex) + ["--runner-type", "a100"]) == 2
    assert "invalid runner type(s) a100" in capsys.readouterr().err
