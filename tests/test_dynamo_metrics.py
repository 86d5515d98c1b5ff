"""Dynamo workers' metrics are scraped too: each worker's system server (DYN_SYSTEM_PORT) is
health-checked and scraped like any engine, on the plan and on the local cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from test_standins import CASES, _entry, _plans, _submit, _wait

from ixhpc.results import store


def test_every_dynamo_worker_is_a_metrics_target_and_waited_for(tmp_path: Path) -> None:
    recipe = tmp_path / "dynamo.yaml"
    recipe.write_text(yaml.safe_dump({"dyn": _entry(*CASES["dynamo-sglang"][:3], disagg=True)}))
    (plan,) = _plans(recipe, "local", tmp_path / "run")
    workers = [r for r in plan.roles if r.name.startswith(("prefill-", "decode-"))]
    assert workers and all(r.health_path == "/health" for r in workers)
    targets = {a.split("=", 2)[1] for a in plan.bench_argv if a.startswith("--metrics-url=")}
    assert {r.name for r in workers} | {"router"} == targets


@pytest.mark.cluster
def test_a_dynamo_points_file_holds_its_workers_metric_series(slurm: Any, tmp_path: Path) -> None:
    recipe = tmp_path / "dynamo.yaml"
    recipe.write_text(yaml.safe_dump({"dyn": _entry(*CASES["dynamo-sglang"][:3], disagg=True)}))
    out = _submit(recipe, tmp_path / "results")
    job = _wait(out["run_dir"])["jobs"][0]
    assert job["state"] == "COMPLETED", job
    (result,) = (Path(out["run_dir"]) / "results").glob("*.h5")
    series = store.read_series(result, "server_metrics")
    roles = {name.split("/")[0] for name in series}
    assert {"prefill-0", "decode-0"} <= roles, sorted(series)
    assert any(len(v) >= 2 for k, v in series.items() if k.startswith("decode-0/"))
    assert store.read(result, with_requests=False).server_metrics.get("srv_targets", 0) >= 3
