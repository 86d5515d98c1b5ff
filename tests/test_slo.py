"""SLO objectives, goodput and the concurrency search (ixhpc.slo); the search on the local cluster."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ixhpc import slo
from ixhpc.errors import ConfigError


def test_objectives_read_in_both_spellings_and_print_canonically() -> None:
    a = slo.parse("ttft=2s,tpot=50ms")
    assert (a.ttft_ms, a.tpot_ms, a.e2el_ms, a.attainment) == (2000.0, 50.0, None, slo.DEFAULT_ATTAINMENT)
    assert slo.parse("ttft:2000 tpot:50") == a  # vLLM's --goodput spelling, ms
    assert slo.parse(a.text()) == a
    assert slo.parse("e2el=1.5s, attainment=95%").attainment == pytest.approx(0.95)
    assert slo.parse("tpot=500us").tpot_ms == pytest.approx(0.5)


def test_every_bad_objective_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        slo.parse("ttft=fast,itl=3ms,attainment=2,tpot=-1ms")
    assert len(err.value.errors) == 4, err.value.errors
    with pytest.raises(ConfigError, match="no latency limit"):
        slo.parse("attainment=0.5")


def test_goodput_counts_completed_requests_meeting_every_limit() -> None:
    objectives = slo.parse("ttft=100ms,tpot=10ms")
    requests = {"ttft_ms": [50.0, 150.0, 50.0, math.nan, 20.0],
                "tpot_ms": [5.0, 5.0, 20.0, math.nan, math.nan],  # the last: one token, no TPOT
                "e2el_ms": [100.0, 200.0, 300.0, math.nan, 20.0],
                "success": [True, True, True, False, True]}
    figures = slo.goodput(objectives, requests, duration=2.0)
    assert figures == {"good_requests": 2, "request_goodput": 1.0, "goodput_fraction": 0.4}


def _bench(fraction_good: float, verdict: str = "valid", n: int = 10) -> dict[str, Any]:
    good = round(fraction_good * n)
    return {"summary": {"duration": 1.0, "output_throughput": 100.0, "median_tpot_ms": 5.0},
            "validity": {"verdict": verdict},
            "requests": {"ttft_ms": [1.0] * good + [1e6] * (n - good), "tpot_ms": [1.0] * n,
                         "e2el_ms": [1.0] * n, "success": [True] * n}}


def _search(concs: list[int], highest_met: int, invalid: frozenset[int] = frozenset()) -> dict[str, Any]:
    objectives = slo.parse("ttft=1s")
    state = slo.step(slo.new_search(objectives, concs), objectives, None)
    while not state["done"]:
        c = state["pending"]
        state = slo.step(state, objectives, _bench(1.0 if c <= highest_met else 0.5,
                                                   "invalid" if c in invalid else "valid"))
    return state


@pytest.mark.parametrize("highest_met", [0, 1, 4, 16, 64, 1024])
def test_bisection_finds_the_highest_concurrency_within_its_bound(highest_met: int) -> None:
    concs = [1, 2, 4, 8, 16, 32, 64]
    state = _search(concs, highest_met)
    expected = max((c for c in concs if c <= highest_met), default=None)
    assert state["answer"] == expected
    assert len(state["probes"]) <= slo.max_probes(len(concs)) == 3
    assert all(p["met"] == (p["conc"] <= highest_met) for p in state["probes"])


def test_an_invalid_point_never_meets_the_slo_and_a_missing_result_misses_it() -> None:
    state = _search([1, 2, 4], highest_met=4, invalid=frozenset({2}))
    assert state["answer"] == 1
    objectives = slo.parse("ttft=1s")
    assert slo.probe(objectives, 8, None)["met"] is False


def _files(tmp_path: Path) -> slo.ProbeFiles:
    return slo.ProbeFiles(lambda c: tmp_path / f"b{c}.json", lambda c, r: tmp_path / f"b{c}-r{r:g}.json")


def test_a_job_step_resumes_from_the_saved_state(tmp_path: Path) -> None:
    objectives = slo.parse("ttft=1s")
    state_path = tmp_path / "search.json"
    benches = {c: tmp_path / f"b{c}.json" for c in (1, 2, 4)}
    files = _files(tmp_path)
    first = slo.next_probe(state_path, files, objectives, [4, 2, 1])
    assert first == slo.Probe(2)
    benches[2].write_text(json.dumps(_bench(1.0)))
    assert slo.next_probe(state_path, files, objectives, [1, 2, 4]) == slo.Probe(4)
    # the client wrote nothing for 4: a missed probe, and the search ends
    assert slo.next_probe(state_path, files, objectives, [1, 2, 4]) is None
    saved = json.loads(state_path.read_text())
    assert saved["answer"] == 2 and [p["conc"] for p in saved["probes"]] == [2, 4]


def test_a_search_needs_its_probes_and_open_concurrencies_only() -> None:
    objectives = slo.parse("ttft=1s")
    state = slo.step(slo.new_search(objectives, [1, 2, 4, 8, 16, 32, 64]), objectives, None)
    assert slo.needed(state) == ([], [1, 2, 4, 8, 16, 32, 64])  # nothing judged yet: all open
    state = slo.step(state, objectives, _bench(0.5))  # 8 missed: nothing above it can meet
    assert slo.needed(state) == ([8], [1, 2, 4])
    state = slo.step(state, objectives, None)  # 2: the client wrote nothing, so no result file ever
    assert slo.needed(state) == ([8], [1])
    state = slo.step(state, objectives, _bench(1.0))
    assert state["done"] and state["answer"] == 1 and slo.needed(state) == ([8, 1], [])


def test_a_jobs_first_step_runs_a_cut_short_probe_again_instead_of_judging_it(tmp_path: Path) -> None:
    objectives = slo.parse("ttft=1s")
    state_path = tmp_path / "search.json"
    benches = {c: tmp_path / f"b{c}.json" for c in (1, 2, 4)}
    files = _files(tmp_path)
    assert slo.next_probe(state_path, files, objectives, [1, 2, 4]) == slo.Probe(2)
    # the job ended while 2 ran (no result): the next job's first step runs 2 again, unjudged
    assert slo.next_probe(state_path, files, objectives, [1, 2, 4], start=True) == slo.Probe(2)
    assert json.loads(state_path.read_text())["probes"] == []
    # its client finished before the job ended: the first step judges it and goes on
    benches[2].write_text(json.dumps(_bench(1.0)))
    assert slo.next_probe(state_path, files, objectives, [1, 2, 4], start=True) == slo.Probe(4)
    assert [p["conc"] for p in json.loads(state_path.read_text())["probes"]] == [2]


def test_a_rate_search_bisects_request_rates_at_the_cap_and_keeps_each_probe(tmp_path: Path) -> None:
    objectives = slo.parse("ttft=1s,rate=1..16,burstiness=0.5")
    assert objectives.rates == (1, 2, 4, 8, 16) and objectives.burstiness == 0.5
    state_path, files = tmp_path / "search.json", _files(tmp_path)
    nxt = slo.next_probe(state_path, files, objectives, [8, 2])
    assert nxt == slo.Probe(8, 4.0)  # the middle rate, at the job's highest concurrency
    assert nxt.words(0.5) == "8 --request-rate 4.0 --burstiness 0.5"
    for rate, fraction in ((4.0, 1.0), (8.0, 0.5)):  # 4/s meets it, 8/s misses it
        assert nxt == slo.Probe(8, rate)
        files.bench(8).write_text(json.dumps(_bench(fraction)))
        nxt = slo.next_probe(state_path, files, objectives, [8, 2])
    assert nxt is None
    state = json.loads(state_path.read_text())
    assert (state["answer"], state["answer_rate"]) == (8, 4.0)
    assert [(p["conc"], p["rate"], p["met"]) for p in state["probes"]] == [(8, 4.0, True), (8, 8.0, False)]
    assert slo.needed(state) == ([8], [])
    # every probe's result kept; the cap's is the highest rate met, which the job ingests
    assert files.kept(8, 8.0).exists() and files.bench(8).read_bytes() == files.kept(8, 4.0).read_bytes()
    files.bench(8).unlink()  # the job ended before its copy: the next job's first step makes it
    assert slo.next_probe(state_path, files, objectives, [8, 2], start=True) is None
    assert files.bench(8).read_bytes() == files.kept(8, 4.0).read_bytes()
    with pytest.raises(ConfigError, match="burstiness"):
        slo.parse("ttft=1s,burstiness=2")


def test_a_searching_job_script_bisects_then_ingests_and_is_shellcheck_clean(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    from test_jobs_e2e import REPO

    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "ixhpc", "render", str(REPO / "recipes/examples/sim-single-node.yaml"),
                          "--cluster", "local", "-o", str(out), "--slo", "ttft=2s,tpot=50ms"],
                         capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr
    (script,) = (out / "scripts").glob("*.sbatch")
    text = script.read_text()
    assert 'SLO_STEP=start' in text and 'PROBE_LINE=$(slo_step "${SLO_STEP}")' in text and "ingest_probes" in text
    assert '"${PROBE[@]:1}"' in text  # a rate search's client arguments, last on its command line
    assert "--slo ttft=2000ms,tpot=50ms,attainment=0.9" in text  # the client's goodput and the search's
    assert "has-result" not in text.split("# ---- SLO search")[1]  # no per-concurrency loop
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    if shutil.which("shellcheck"):
        check = subprocess.run(["shellcheck", "-s", "bash", str(script)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout
    bad = subprocess.run([sys.executable, "-m", "ixhpc", "render", str(REPO / "recipes/examples/sim-single-node.yaml"),
                          "--cluster", "local", "-o", str(tmp_path / "bad"), "--slo", "ttft=soon"],
                         capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "ttft" in bad.stderr, bad.stderr


def _entry(tmp_path: Path, concs: list[int]) -> Any:
    from ixhpc import rundir

    return rundir.JobEntry(key="job", kind="single", script="scripts/job.sbatch", partition="p", nodes=1, gpus=8,
                           points=[rundir.PointRef(key=f"pt_c{c}", conc=c) for c in concs])


def test_a_seeded_search_counts_no_point_until_it_chooses_one(tmp_path: Path) -> None:
    from ixhpc import rundir, runstate

    layout, entry = rundir.Layout.of(tmp_path), _entry(tmp_path, [1, 2, 4, 8, 16, 32, 64])
    objectives = slo.parse("ttft=1s")
    slo.seed(layout.slo_search("job"), objectives, [64, 1, 2, 4, 8, 16, 32])  # what submit records
    points, search = runstate._searched(layout, entry)
    assert points == [] and search is not None and not search.started and not search.done
    assert search.bisects == [1, 2, 4, 8, 16, 32, 64] and search.max_probes == 3
    # the job's first step takes the seeded search up: its first probe is the one point counted
    files = slo.ProbeFiles(lambda c: layout.bench_json("job", c), lambda c, r: layout.slo_rate_probe("job", c, r))
    entry_concs = [p.conc for p in entry.points]
    assert slo.next_probe(layout.slo_search("job"), files, objectives, entry_concs, start=True) == slo.Probe(8)
    points, search = runstate._searched(layout, entry)
    assert [p.conc for p in points] == [8] and search is not None and search.started and search.pending == 8
    layout.bench_json("job", 8).write_text(json.dumps(_bench(0.5)))  # 8 misses: 2 next, 16..64 settled
    assert slo.next_probe(layout.slo_search("job"), files, objectives, entry_concs) == slo.Probe(2)
    points, search = runstate._searched(layout, entry)
    assert [p.conc for p in points] == [2, 8] and search is not None and search.settled == [16, 32, 64]
    # a search already under way is never reset by a second seed
    slo.seed(layout.slo_search("job"), objectives, entry_concs)
    assert [q["conc"] for q in json.loads(layout.slo_search("job").read_text())["probes"]] == [8]


def test_a_rate_search_counts_its_cap_once_started() -> None:
    objectives = slo.parse("ttft=1s,rate=1..16")
    state = slo.new_search(objectives, [2, 8])
    assert not slo.started(state) and slo.chosen(state) == []
    state = slo.step(state, objectives, None)
    assert slo.started(state) and slo.chosen(state) == [8]


def test_status_says_a_search_is_not_started_running_cut_short_or_answered() -> None:
    from dataclasses import replace

    from ixhpc.commands.status import _search_line
    from ixhpc.runstate import ProbeStatus, SearchStatus

    queued = SearchStatus(spec="ttft=1000ms", started=False, done=False, answer=None, rate_answer=None, probes=(),
                          pending=None, open=[1, 2, 4], settled=[], mode="concurrency", cap=None, bisects=[1, 2, 4],
                          max_probes=2)
    assert "not started: bisects concurrencies 1, 2, 4, at most 2 probe(s)" in _search_line(queued, live=True)
    assert "`ixhpc resume` runs it" in _search_line(queued, live=False)
    rate = replace(queued, mode="rate", bisects=[4.0, 8.0], cap=8)
    assert "bisects request rates 4, 8/s at concurrency 8" in _search_line(rate, live=True)
    running = replace(queued, started=True, probes=(ProbeStatus(2, True, False),), pending=4, open=[4])
    assert _search_line(running, live=True).endswith("running (probes: c2 met; probing c4)")
    assert "unfinished (probes: c2 met): `ixhpc resume` continues it" in _search_line(running, live=False)
    answered = replace(running, done=True, answer=4, pending=None, open=[], settled=[1])
    assert "answer 4 (probes: c2 met; not run, settled by the search: 1)" in _search_line(answered, live=False)
    broken = replace(answered, answer=2, probes=(ProbeStatus(2, True, False), ProbeStatus(4, False, True)))
    line = _search_line(broken, live=False)
    assert "c4 failed (no result)" in line and "submit the job again" in line
    rated = replace(answered, mode="rate", cap=8, rate_answer=4.0, answer=8,
                    probes=(ProbeStatus(8, True, False, 4.0), ProbeStatus(8, False, False, 8.0)))
    assert "answer 4 req/s at concurrency 8 (probes: 4/s met, 8/s missed" in _search_line(rated, live=False)


def test_a_search_that_judged_a_failed_probe_ends_status_non_zero() -> None:
    from dataclasses import replace

    from ixhpc.runstate import JobStatus, ProbeStatus, SearchStatus

    search = SearchStatus(spec="ttft=1s", started=True, done=True, answer=None, rate_answer=None,
                          probes=(ProbeStatus(4, False, True),), pending=None, open=[], settled=[8], mode="concurrency",
                          cap=None, bisects=[4, 8], max_probes=2)
    job = JobStatus("k", "single", "1", "COMPLETED", "", "", 0, 0, [], [], search)
    assert job.failed_probes and not job.incomplete  # resume cannot redo it; status says so (exit 1)
    ok = JobStatus("k", "single", "1", "COMPLETED", "", "", 0, 0, [], [],
                   replace(search, probes=(ProbeStatus(4, False, False),)))
    assert not ok.failed_probes


def test_submit_slo_refuses_agentic_points_with_one_located_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    from test_agentic_jobs import _files

    from test_jobs_e2e import REPO

    recipe, profiles, runners = _files(tmp_path)

    def submit(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ixhpc", "submit", str(recipe), "--cluster", "local-agentic",
                               "--profiles", str(profiles), "--runner-config", str(runners), "--results",
                               str(tmp_path / "results"), "--dry-run", *extra],
                              capture_output=True, text=True, cwd=REPO, timeout=120)

    assert submit().returncode == 0  # without --slo the same points submit
    for spec in ("ttft=2s,tpot=50ms", "ttft=2s,rate=1..8"):
        res = submit("--slo", spec)
        assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr  # 3 jobs, one entry: one line
        assert re.match(rf"ixhpc submit: error: {re.escape(str(recipe))}:\d+: sim-agentic: --slo: agentic-coding "
                        "points cannot search", res.stderr), res.stderr
        assert "Traceback" not in res.stderr
    rendered = subprocess.run([sys.executable, "-m", "ixhpc", "render", str(recipe), "--cluster", "local-agentic",
                               "--profiles", str(profiles), "--runner-config", str(runners), "--slo",
                               "ttft=2s,tpot=50ms", "--output", str(tmp_path / "rendered")],
                              capture_output=True, text=True, cwd=REPO, timeout=120)
    assert rendered.returncode == 2 and "agentic-coding points cannot search" in rendered.stderr, rendered.stderr


# ----------------------------------------------------------------------------- local cluster


SEARCH_SLO = "ttft=100ms,tpot=100ms,attainment=0.9"


def _search_recipe(tmp_path: Path) -> Path:
    from test_jobs_e2e import REPO

    doc = yaml.safe_load((REPO / "recipes/examples/sim-single-node.yaml").read_text())
    entry = doc["sim-mi355x-single"]
    entry["seq-len-configs"][0]["search-space"] = [{"tp": 8, "ep": 1, "conc-list": [1, 2, 4, 8, 16, 32, 64]}]
    # 4 sequences at a time: from concurrency 8 on requests queue for a whole request (~300 ms
    # of TTFT and more), below it TTFT is ~10 ms
    entry["ixhpc"]["sim"]["max-batch"] = 4
    recipe = tmp_path / "slo.yaml"
    recipe.write_text(yaml.safe_dump(doc))
    return recipe


@pytest.mark.cluster
def test_a_search_cut_short_resumes_from_its_probes(slurm: Any, tmp_path: Path) -> None:
    import time

    from ixhpc import rundir

    from test_jobs_e2e import ixhpc, submit, wait_status

    out = submit(_search_recipe(tmp_path), tmp_path / "results", "--slo", SEARCH_SLO)
    run = Path(out["run_dir"])
    (job_key,) = [j["key"] for j in out["jobs"]]
    layout = rundir.Layout.of(run)
    deadline = time.monotonic() + 240
    while not json.loads(layout.slo_search(job_key).read_text() if layout.slo_search(job_key).exists()
                         else '{"probes": []}')["probes"]:
        assert time.monotonic() < deadline, "the search judged no probe in time"
        time.sleep(0.2)
    assert ixhpc("cancel", str(run)).returncode == 0  # cut short after its first probe
    cut = wait_status(str(run))["jobs"][0]
    assert cut["state"] == "CANCELLED", cut
    before = json.loads(layout.slo_search(job_key).read_text())
    assert not before["done"] and cut["missing"] and not cut["search"]["done"], (before, cut)
    first = before["probes"][0]["conc"]
    stamp = layout.bench_json(job_key, first).stat().st_mtime_ns
    resumed = json.loads(ixhpc("resume", str(run), "--json").stdout)
    assert [r["key"] for r in resumed["resubmitted"]] == [job_key], resumed
    job = wait_status(str(run), timeout=300)["jobs"][0]
    assert job["state"] == "COMPLETED" and job["missing"] == [], job
    after = json.loads(layout.slo_search(job_key).read_text())
    assert after["done"] and after["answer"] == 4, after
    # the probes recorded before the cut stand (not run again); the search went on from them
    assert after["probes"][:len(before["probes"])] == before["probes"]
    assert [p["conc"] for p in after["probes"]] == [8, 2, 4]
    assert layout.bench_json(job_key, first).stat().st_mtime_ns == stamp
    assert (job["points_done"], job["points_total"]) == (3, 3), job


@pytest.mark.cluster
def test_an_slo_search_on_the_local_cluster_records_its_probes_and_answer(slurm: Any, tmp_path: Path) -> None:
    import h5py

    from ixhpc import rundir
    from ixhpc.results import load, store

    from test_jobs_e2e import ixhpc, submit, wait_status

    out = submit(_search_recipe(tmp_path), tmp_path / "results", "--slo", SEARCH_SLO)
    run = Path(out["run_dir"])
    job = wait_status(str(run), timeout=300)["jobs"][0]
    assert job["state"] == "COMPLETED", job
    # counted by its search: 3 probes, all with results; the 4 others settled without a run
    assert (job["points_done"], job["points_total"], job["missing"]) == (3, 3, []), job
    assert job["search"]["done"] and job["search"]["settled"] == [1, 16, 32, 64], job["search"]
    assert ixhpc("status", str(run)).returncode == 0
    again = json.loads(ixhpc("resume", str(run), "--json").stdout)
    assert again["resubmitted"] == [], again  # a finished search is not run again
    layout = rundir.Layout.of(run)
    results = sorted(layout.results_dir.glob("*.h5"))
    assert len(results) == 3  # bisection over 7 concurrencies: 3 probes, not 7 runs
    for path in results:
        point = store.read(path, with_requests=False)
        search = point.slo_search
        assert search is not None and search["answer"] == 4, search
        assert [p["conc"] for p in search["probes"]] == [8, 2, 4]
        assert "goodput_fraction" in point.summary and "request_goodput" in point.summary
        with h5py.File(path) as f:
            assert f["slo_search"].attrs["answer"] == 4
            assert f["slo_search/probes"].shape == (3, len(store.SLO_PROBE_FIELDS))
    # status shows each point's GPU power verdict (the local profile samples simulated power)
    power = json.loads(ixhpc("status", str(run), "--json").stdout)["jobs"][0]["power"]
    assert sorted(power) == sorted(p.name[:-3] for p in results)
    assert all(v == "valid" or v.startswith("invalid: ") for v in power.values()), power
    assert "GPU power: " in ixhpc("status", str(run)).stdout
    merged = tmp_path / "all.h5"
    assert ixhpc("merge", str(layout.results_dir), "-o", str(merged)).returncode == 0
    table = load(str(merged)).sort_values("conc")
    assert table["slo_met"].tolist() == [True, True, False]
    assert set(table["slo_answer"]) == {4}
    report = ixhpc("report", str(merged), "-o", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "report" / "summary.md").read_text()
    assert "SLO search" in text and "| 4 |" in text
    assert len(list((tmp_path / "report").glob("*_tput_vs_intvty.png"))) == 1  # the Pareto plot, probes on it


@pytest.mark.cluster
def test_a_rate_search_on_the_local_cluster_bisects_rates_at_the_cap(slurm: Any, tmp_path: Path) -> None:
    import h5py

    from ixhpc import rundir
    from ixhpc.results import store

    from test_jobs_e2e import ixhpc, submit, wait_status

    recipe = _search_recipe(tmp_path)
    doc = yaml.safe_load(recipe.read_text())
    doc["sim-mi355x-single"]["seq-len-configs"][0]["search-space"] = [{"tp": 8, "ep": 1, "conc-list": [2, 8]}]
    recipe.write_text(yaml.safe_dump(doc))
    out = submit(recipe, tmp_path / "results", "--slo", "ttft=100ms,rate=4..64,burstiness=0.5")
    run = Path(out["run_dir"])
    job = wait_status(str(run), timeout=300)["jobs"][0]
    assert job["state"] == "COMPLETED", job
    assert (job["points_done"], job["points_total"], job["missing"]) == (1, 1, []), job  # the cap's point
    assert job["search"]["settled"] == [2]
    assert json.loads(ixhpc("resume", str(run), "--json").stdout)["resubmitted"] == []
    layout = rundir.Layout.of(run)
    (key,) = [j["key"] for j in out["jobs"]]
    state = json.loads(layout.slo_search(key).read_text())
    rates = [p["rate"] for p in state["probes"]]
    assert state["mode"] == "rate" and state["cap"] == 8 and rates[0] == 16.0 and len(rates) <= 3, state
    met = [p["rate"] for p in state["probes"] if p["met"]]
    assert all(m < p["rate"] for m in met for p in state["probes"] if not p["met"])  # bisection holds
    assert state["answer_rate"] == (max(met) if met else None)
    for p in state["probes"]:  # each probe's client ran at its rate, gamma arrivals of shape 0.5, cap 8
        config = json.loads(layout.slo_rate_probe(key, 8, p["rate"]).read_text())["config"]
        assert (config["request_rate"], config["burstiness"], config["max_concurrency"]) == (p["rate"], 0.5, 8)
    (result,) = layout.results_dir.glob("*.h5")
    point = store.read(result, with_requests=False)
    assert point.metadata["conc"] == 8 and point.slo_search is not None
    assert point.config["request_rate"] == (state["answer_rate"] or min(rates))
    with h5py.File(result) as f:
        columns = f["slo_search/probes"].attrs["columns"].split(",")
        assert f["slo_search/probes"][:, columns.index("rate")].tolist() == rates


@pytest.mark.cluster
def test_status_and_resume_follow_a_search_from_the_queue_to_its_answer(slurm: Any, tmp_path: Path) -> None:
    import time

    from slurm_helpers import run, sbatch
    from test_jobs_e2e import ixhpc, submit, wait_status

    def status() -> dict[str, Any]:
        return dict(json.loads(ixhpc("status", str(run_dir), "--json").stdout)["jobs"][0])

    # queued behind a held job, so the search surely has not started when status looks
    held = sbatch(slurm, "-p", "mi355x", "-N1", "--hold", "-o", str(tmp_path / "held.out"), "--wrap", "true")
    queued_ids: list[str] = []
    try:
        out = submit(_search_recipe(tmp_path), tmp_path / "results", "--slo", SEARCH_SLO, "--after", held)
        queued_ids += [j["job_id"] for j in out["jobs"]]
        run_dir = Path(out["run_dir"])
        (key,) = [j["key"] for j in out["jobs"]]
        queued = status()
        assert queued["state"] == "PENDING", queued
        assert (queued["points_done"], queued["points_total"], queued["missing"]) == (0, 0, []), queued
        assert not queued["search"]["started"] and queued["search"]["bisects"] == [1, 2, 4, 8, 16, 32, 64]
        text = ixhpc("status", str(run_dir))
        assert text.returncode == 0 and "not started: bisects concurrencies 1, 2, 4" in text.stdout, text.stdout
        assert json.loads(ixhpc("resume", str(run_dir), "--json").stdout)["resubmitted"] == []  # still queued
        # cancelled before its first probe: nothing missing, yet unfinished, so resume runs it
        assert ixhpc("cancel", str(run_dir)).returncode == 0
        cut = wait_status(str(run_dir))["jobs"][0]
        assert cut["state"] == "CANCELLED" and cut["missing"] == [] and not cut["search"]["started"], cut
        text = ixhpc("status", str(run_dir))
        assert text.returncode == 1 and "`ixhpc resume` runs it" in text.stdout, text.stdout
    finally:  # the run's job too: with the held one gone its dependency can never be met
        run(["scancel", *queued_ids, held], slurm, check=False)
    resumed = json.loads(ixhpc("resume", str(run_dir), "--json").stdout)
    assert [r["key"] for r in resumed["resubmitted"]] == [key], resumed
    # while it runs, only what the search chose counts: its probes and the one it is probing
    seen_running, deadline = False, time.monotonic() + 300
    while True:
        assert time.monotonic() < deadline, "the resumed search has not ended"
        job = status()
        search = job["search"]
        chosen = {q["conc"] for q in search["probes"]} | ({search["pending"]} if search["pending"] else set())
        assert {m.rsplit("_c", 1)[1] for m in job["missing"]} <= {str(c) for c in chosen}, job
        if job["state"] not in ("PENDING", "RUNNING", "COMPLETING"):
            break
        if job["state"] == "RUNNING" and search["started"] and not search["done"] and not seen_running:
            seen_running = True
            assert json.loads(ixhpc("resume", str(run_dir), "--json").stdout)["resubmitted"] == [], job
            assert ixhpc("status", str(run_dir)).returncode == 0
    assert seen_running, "status never showed the search under way"
    assert job["state"] == "COMPLETED" and (job["points_done"], job["points_total"], job["missing"]) == (3, 3, []), job
    assert job["search"]["done"] and job["search"]["answer"] == 4 and job["search"]["settled"] == [1, 16, 32, 64]
    assert ixhpc("status", str(run_dir)).returncode == 0
    assert json.loads(ixhpc("resume", str(run_dir), "--json").stdout)["resubmitted"] == []
