"""Broken runs on the real local cluster end as invalid points with the right reasons, never
valid ones: a disaggregated point whose decode worker is broken on purpose
(``ixhpc.sim serve --fault``, given through the recipe's ``ixhpc.engine-args``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from ixhpc import rundir
from ixhpc.results import store

from test_jobs_e2e import REPO, ixhpc, submit, wait_status

# fault -> reason codes its point must carry
CASES = {
    "stop-after=1": {"too_few_output_tokens", "osl_off"},  # the decode worker stops producing tokens
    "zero-tokens": {"no_output_tokens", "failed_requests"},  # it returns 0 tokens
    "stall-after=2": {"stalled_stream", "failed_requests"},  # its streams stall
}


def _broken_recipe(tmp_path: Path) -> Path:
    """One entry per fault: 1 prefill + 1 decode worker (2 GB200-like nodes), the decode worker
    broken; every other setting as recipes/examples/sim-disagg.yaml."""
    base = yaml.safe_load((REPO / "recipes/examples/sim-disagg.yaml").read_text())["sim-gb200-disagg"]
    doc = {}
    for fault in CASES:
        entry = json.loads(json.dumps(base))
        cfg = entry["seq-len-configs"][0]
        cfg["osl"] = 16
        cfg["search-space"][0]["conc-list"] = [2]
        cfg["search-space"][0]["decode"]["num-worker"] = 1
        entry["ixhpc"]["engine-args"] = {"decode": ["--fault", fault]}
        # 2 requests and no warm-up: a stalled one holds its point for the whole stall timeout,
        # so that is short here (a healthy stream never goes 5 s without a token on this engine)
        entry["ixhpc"]["benchmark"] = {"num-prompts-factor": 1, "num-warmups": 0, "stall-timeout": 5}
        doc[f"sim-broken-{fault.split('=')[0]}"] = entry
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.cluster
def test_a_broken_decode_worker_makes_an_invalid_point_with_its_reason(slurm: Any, tmp_path: Path) -> None:
    out = submit(_broken_recipe(tmp_path), tmp_path / "results")
    run = Path(out["run_dir"])
    status = wait_status(str(run), timeout=300)
    layout = rundir.Layout.of(run)
    seen = {}
    for job in status["jobs"]:
        fault = next(f for f in CASES if f"sim-broken-{f.split('=')[0]}" in job["key"])
        (result,) = layout.results_dir.glob(f"sim-broken-{fault.split('=')[0]}*.h5")
        point = store.read(result)
        seen[fault] = (point.verdict, set(point.validity["reasons"]) if point.validity else set())
        assert job["invalid"] == [result.name[:-3]], job  # status names it
    (stalled,) = (j["key"] for j in status["jobs"] if "sim-broken-stall" in j["key"])
    assert "--stall-timeout 5 " in layout.script(stalled).read_text()  # the recipe's timeout reached the client
    for fault, codes in CASES.items():
        verdict, reasons = seen[fault]
        assert verdict == "invalid" and codes <= reasons, (fault, verdict, reasons)
    merged = tmp_path / "all.h5"
    res = ixhpc("merge", str(layout.results_dir), "-o", str(merged))
    assert res.returncode == 0, res.stderr
    assert "3 invalid" in res.stdout, res.stdout
