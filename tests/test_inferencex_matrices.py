"""`ixhpc sweep --format inferencex` equals InferenceX's own generator output, as a multiset.

One test per expected file of the March 2026 reference snapshot; the flags are the ones its
README lists. Set IXHPC_REFERENCE to use another snapshot with the same layout.
"""

from __future__ import annotations

import collections
import json
import os
from pathlib import Path

import pytest

from ixhpc.cli import main

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("IXHPC_REFERENCE")
                 or REPO.parent / "shared" / "reference" / "inferencex-2026-03")

BASE = ["sweep", "full-sweep", "--format", "inferencex",
        "--config-files", str(REFERENCE / "nvidia-master.yaml"), str(REFERENCE / "amd-master.yaml"),
        "--runner-config", str(REFERENCE / "runners.yaml")]


def canonical(rows: list[dict]) -> collections.Counter:
    return collections.Counter(json.dumps(r, sort_keys=True) for r in rows)


def sweep_rows(capsys: pytest.CaptureFixture[str], extra: list[str]) -> list[dict]:
    assert main(BASE + extra) == 0
    return json.loads(capsys.readouterr().out)


def check(capsys: pytest.CaptureFixture[str], name: str, extra: list[str]) -> None:
    expected = json.loads((REFERENCE / "expected" / name).read_text())
    got = sweep_rows(capsys, extra)
    missing, surplus = canonical(expected) - canonical(got), canonical(got) - canonical(expected)
    assert not missing and not surplus, (
        f"{name}: {sum(missing.values())} rows missing, {sum(surplus.values())} extra; "
        f"first missing: {next(iter(missing), None)}; first extra: {next(iter(surplus), None)}")
    assert len(got) == len(expected)


def test_full_all(capsys: pytest.CaptureFixture[str]) -> None:
    check(capsys, "full-all.json", [])


def test_full_single(capsys: pytest.CaptureFixture[str]) -> None:
    check(capsys, "full-single.json", ["--single-node"])


def test_full_multi(capsys: pytest.CaptureFixture[str]) -> None:
    check(capsys, "full-multi.json", ["--multi-node"])


def test_full_evals(capsys: pytest.CaptureFixture[str]) -> None:
    check(capsys, "full-evals.json", ["--run-evals"])


def test_filtered_dsr1_b200(capsys: pytest.CaptureFixture[str]) -> None:
    check(capsys, "filtered-dsr1-b200.json",
          ["--single-node", "--model-prefix", "dsr1", "--runner-type", "b200", "--max-conc", "16"])


def test_filtered_1k8k_step4(capsys: pytest.CaptureFixture[str]) -> None:
    check(capsys, "filtered-1k8k-step4.json", ["--seq-lens", "1k8k", "--step-size", "4", "--max-tp", "4"])


def test_evals_only_is_the_marked_subset_of_full_evals(capsys: pytest.CaptureFixture[str]) -> None:
    expected = [r for r in json.loads((REFERENCE / "expected" / "full-evals.json").read_text())
                if r["run-eval"]]
    assert expected and canonical(sweep_rows(capsys, ["--evals-only"])) == canonical(expected)


def test_unknown_runner_type_is_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(BASE + ["--runner-type", "a100"]) == 2
    assert "invalid runner type(s) a100" in capsys.readouterr().err
