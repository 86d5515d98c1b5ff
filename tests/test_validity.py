"""The validity gate (issue 18, deliverable 1): every reason code from crafted evidence and from
a loopback server that misbehaves; verdicts stored in HDF5, shown and applied by merge, report
and exports; old point files read as unknown; `resume --invalid` on the local cluster."""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from test_bench import scripted_server

from ixhpc.bench import __main__ as bench_main
from ixhpc.bench import client, dataset, metrics, validity
from ixhpc.results import export, load, merge, report, store, write_point

from results_helpers import bench_result, metadata, write_points


def healthy(**changes: Any) -> dict[str, Any]:
    """Evidence of a sound point (100 requests of 100 tokens, usage reported), with changes."""
    e: dict[str, Any] = {
        "requests": 100, "failed": 0, "timed_out": 0, "stalled": 0, "refused": 0,
        "output_tokens": 10_000, "requested_output_tokens": 10_000, "short_requests": 0,
        "nousage_requests": 0, "nousage_chunks": 0, "nousage_max_tokens": 0,
        "nousage_multi_word_chunks": 0, "nousage_text_chars": 0,
        "requested_input_tokens": 100_000, "reported_input_tokens": 100_000, "reported_input_requests": 100,
        "median_read_lag_ms": 0.2, "mean_itl_ms": 20.0, "ignore_eos": True, "stall_timeout": 300.0,
    }
    e.update(changes)
    return e


def test_a_sound_point_is_valid_and_every_code_is_documented() -> None:
    assert validity.judge(healthy()) == {"verdict": "valid", "reasons": [], "details": {}}
    docs = (Path(__file__).parents[1] / "docs/contracts.md").read_text()
    assert all(f"`{code}`" in docs for code in validity.CODES)


@pytest.mark.parametrize("changes, codes", [
    ({"failed": 2, "refused": 1, "timed_out": 1}, ["failed_requests"]),
    ({"failed": 1}, []),  # 1%: tolerated
    ({"failed": 1, "stalled": 1}, ["stalled_stream"]),  # a stall is never tolerated
    ({"output_tokens": 0, "failed": 100}, ["failed_requests", "no_output_tokens"]),
    ({"short_requests": 5, "output_tokens": 9_505}, ["too_few_output_tokens"]),
    ({"output_tokens": 9_000}, ["osl_off"]),  # ignore_eos: must be max_tokens
    ({"output_tokens": 9_000, "ignore_eos": False}, []),  # may stop early ...
    ({"output_tokens": 4_000, "ignore_eos": False}, ["osl_off"]),  # ... but not below half
    ({"reported_input_tokens": 130_000}, ["isl_off"]),
    ({"reported_input_tokens": 105_000}, []),
    ({"reported_input_requests": 0}, []),  # no usage: nothing to compare
    ({"nousage_requests": 100, "nousage_chunks": 2_500, "nousage_max_tokens": 10_000,
      "output_tokens": 2_500, "reported_input_requests": 0}, ["output_tokens_unconfirmed"]),
    ({"nousage_requests": 100, "nousage_chunks": 10_000, "nousage_max_tokens": 10_000,
      "nousage_multi_word_chunks": 4_000, "ignore_eos": False}, ["output_tokens_unconfirmed"]),
    ({"nousage_requests": 100, "nousage_chunks": 10_000, "nousage_max_tokens": 10_000,
      "nousage_text_chars": 160_000, "ignore_eos": False}, ["output_tokens_unconfirmed"]),
    ({"nousage_requests": 100, "nousage_chunks": 10_000, "nousage_max_tokens": 10_000,
      "nousage_text_chars": 40_000}, []),  # one token per chunk: counts hold without usage
    ({"median_read_lag_ms": 25.0}, ["client_behind"]),
    ({"median_read_lag_ms": 0.5, "mean_itl_ms": 0.1}, []),  # bursts: below 1 ms is noise
])
def test_each_reason_code_from_crafted_evidence(changes: dict[str, Any], codes: list[str]) -> None:
    judged = validity.judge(healthy(**changes))
    assert judged["reasons"] == codes
    assert judged["verdict"] == ("invalid" if codes else "valid")
    assert set(judged["details"]) == set(codes)
    if codes:
        assert validity.line(judged).startswith(f"invalid: {codes[0]} (")


def test_stall_timeout_is_well_under_the_time_limit() -> None:
    assert validity.stall_timeout(240) == "300"
    assert validity.stall_timeout(30) == "90"
    assert validity.stall_timeout(5) == "60"
    for minutes in (5, 10, 30, 60, 240, 1440):
        assert float(validity.stall_timeout(minutes)) <= minutes * 60 / 5


def test_the_job_passes_the_stall_timeout_of_its_time_limit(tmp_path) -> None:
    """The recipe's time limit, else the profile's, sets the client's stall timeout."""
    from pathlib import Path

    from ixhpc import runs
    from ixhpc.profiles import get_profile
    from ixhpc.sweep import Filters

    recipe = Path(__file__).resolve().parents[1] / "recipes/examples/sim-single-node.yaml"
    profile = get_profile("local")
    [plan] = runs.plan(runs.RunTarget(recipe, profile, Filters()), tmp_path / "run", "run")
    argv = plan.bench_argv
    minutes = plan.points[0].ixhpc.time_limit or profile.time_limit
    assert argv[argv.index("--stall-timeout") + 1] == validity.stall_timeout(minutes)


# ----------------------------------------------------------------------------- loopback server


def _event(text: str | None = None, usage: dict[str, int] | None = None, **extra: Any) -> bytes:
    body: dict[str, Any] = {"id": "x", "choices": [] if text is None else [{"index": 0, "text": text}], **extra}
    if usage is not None:
        body["usage"] = usage
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def _server(chunks: int, text: str = " t", usage: bool = True, prompt_factor: float = 1.0,
            stall_after: int | None = None, gap: float = 0.005, **extra: Any) -> Any:
    """A handler streaming ``chunks`` content events of ``text`` (extra keys in each event), a
    decode step (``gap``) apart: with tokens microseconds apart any client's read lag exceeds
    the inter-token latency, and the client_behind check fires on a busy machine."""
    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for k in range(chunks):
            if stall_after is not None and k == stall_after:
                await asyncio.sleep(30)  # the server's cleanup cancels it
            if gap:
                await asyncio.sleep(gap)
            await resp.write(_event(text, **extra))
        if usage:
            words = len(body["prompt"].split())
            await resp.write(_event(usage={"prompt_tokens": int(words * prompt_factor),
                                           "completion_tokens": chunks * len(text.split())}, **extra))
        await resp.write(b"data: [DONE]\n\n")
        return resp
    return handle


def _judge(handler: Any, n: int = 8, output_len: int = 8, ignore_eos: bool = True,
           stall_timeout: float = 300.0, busy_client: bool = False) -> dict[str, Any]:
    ps = [dataset.Prompt(" ".join(["w"] * 16), 16, output_len) for _ in range(n)]
    with scripted_server(handler) as url:
        cfg = client.ClientConfig(base_url=url, model="m", max_concurrency=4, ignore_eos=ignore_eos,
                                  stall_timeout=stall_timeout)

        async def run() -> tuple[list[client.RequestResult], float, float]:
            if not busy_client:
                return await client.benchmark(cfg, ps, [])
            done = False

            async def hog() -> None:  # a client whose event loop is busy 40 ms at a time
                while not done:
                    time.sleep(0.04)
                    await asyncio.sleep(0.001)
            task = asyncio.create_task(hog())
            try:
                return await client.benchmark(cfg, ps, [])
            finally:
                done = True
                await task

        results, _, duration = asyncio.run(run())
    summary = metrics.summarize(results, duration, 4, math.inf)
    return validity.judge(metrics.validity_evidence(results, summary, ignore_eos, stall_timeout))


def test_loopback_a_sound_server_is_valid() -> None:
    assert _judge(_server(8))["reasons"] == []


def test_loopback_error_null_is_not_an_error() -> None:
    with scripted_server(_server(8, error=None)) as url:
        cfg = client.ClientConfig(base_url=url, model="m")
        (r,), _, _ = asyncio.run(client.benchmark(cfg, [dataset.Prompt("a b", 2, 8)], []))
    assert r.success and r.error == "" and r.output_len == 8
    assert _judge(_server(8, error=None))["reasons"] == []


def test_loopback_an_error_event_still_fails_the_request() -> None:
    assert _judge(_server(8, error={"message": "boom"}))["reasons"] == ["failed_requests", "no_output_tokens"]


def test_loopback_multi_token_chunks_without_usage_are_unconfirmed() -> None:
    # 4 tokens per chunk, no usage: the client counts 2 chunks as 2 tokens of the 8 asked for
    judged = _judge(_server(2, text=" a b c d", usage=False))
    assert judged["reasons"] == ["output_tokens_unconfirmed"], judged
    # without ignore_eos the chunk count proves nothing, the words in the chunks do
    assert _judge(_server(2, text=" a b c d", usage=False), ignore_eos=False)["reasons"] == [
        "output_tokens_unconfirmed"]
    # one token per chunk without usage: the counts hold
    assert _judge(_server(8, usage=False))["reasons"] == []


def test_loopback_a_stalled_stream() -> None:
    judged = _judge(_server(8, stall_after=2), n=4, stall_timeout=0.3)
    assert judged["reasons"] == ["failed_requests", "stalled_stream", "no_output_tokens"], judged
    assert "4 stalled" in judged["details"]["failed_requests"]


def test_loopback_zero_and_too_few_tokens() -> None:
    assert _judge(_server(0))["reasons"] == ["failed_requests", "no_output_tokens"]
    assert _judge(_server(1))["reasons"] == ["too_few_output_tokens", "osl_off"]
    assert _judge(_server(4))["reasons"] == ["osl_off"]


def test_loopback_input_length_far_from_the_request() -> None:
    assert _judge(_server(8, prompt_factor=10.0))["reasons"] == ["isl_off"]


def test_loopback_a_client_falling_behind() -> None:
    judged = _judge(_server(20, gap=0.002), n=4, output_len=20, busy_client=True)
    assert "client_behind" in judged["reasons"], judged


# ----------------------------------------------------------------------------- results


def _cli_point(tmp_path: Path, handler: Any, name: str, conc: int, **server: Any) -> Path:
    out = tmp_path / f"{name}.json"
    with scripted_server(handler) as url:
        bench_main.main(["--base-url", url, "--model", "m", "--isl", "4", "--osl", "8",
                         "--max-concurrency", "2", "--num-prompts", "4", "--ignore-eos",
                         "--output", str(out)])
    doc = json.loads(out.read_text())
    point = tmp_path / "points" / f"{name}.h5"
    point.parent.mkdir(exist_ok=True)
    write_point(point, doc, metadata(conc=conc, isl=4, osl=8))
    return point


def test_the_verdict_is_stored_merged_shown_and_applied(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _cli_point(tmp_path, _server(8), "good", 2)
    bad = _cli_point(tmp_path, _server(2, text=" a b c d", usage=False), "bad", 4)
    assert "validity: invalid: output_tokens_unconfirmed" in capsys.readouterr().out
    p = store.read(bad)
    assert p.verdict == "invalid" and p.validity and p.validity["reasons"] == ["output_tokens_unconfirmed"]
    assert p.validity["evidence"]["nousage_chunks"] == 8
    assert store.read(good).verdict == "valid"
    import h5py
    with h5py.File(bad) as f:
        assert f.attrs["validity"] == "invalid" and f.attrs["validity_reasons"] == "output_tokens_unconfirmed"
    # an old point file (no verdict) is unknown, never invalid
    old = tmp_path / "points" / "old.h5"
    write_point(old, bench_result(failed=0), metadata(conc=8, isl=4, osl=8))
    assert store.read(old).verdict == "unknown"

    from ixhpc.commands import merge as merge_cmd
    merged = tmp_path / "m.h5"
    parser = merge_cmd.argparse.ArgumentParser()
    merge_cmd.configure(parser)
    args = parser.parse_args([str(tmp_path / "points"), "-o", str(merged), "--json", str(tmp_path / "agg.json")])
    assert merge_cmd.run(args) == 0
    out = capsys.readouterr().out
    assert "validity: 1 valid, 1 invalid, 1 unknown" in out and "output_tokens_unconfirmed" in out
    assert len(json.loads((tmp_path / "agg.json").read_text())) == 2

    df = load(merged)
    assert sorted(df["validity"].tolist()) == ["invalid", "unknown", "valid"]
    assert len(export.agg_rows(df)) == 2 and len(export.agg_rows(df, include_invalid=True)) == 3
    text = report.markdown(df)
    assert "1 invalid, left out" in text and "## Invalid points" in text
    assert text.count("\n| local") == 0 and text.count("| b200 |") == 2  # the invalid row left out
    shown = report.markdown(df, include_invalid=True)
    assert shown.count("| b200 |") == 3 and "| invalid |" in shown and "| valid |" in shown
    written = report.write_report(df, tmp_path / "rep")
    assert (tmp_path / "rep/summary.md") in written


def test_an_older_merged_table_without_verdicts_is_not_filtered(tmp_path: Path) -> None:
    write_points(tmp_path / "pts", 3)
    merge.merge([tmp_path / "pts"], tmp_path / "m.h5", on_skip=lambda *a: None)
    df = load(tmp_path / "m.h5").drop(columns=["validity"], errors="ignore")
    assert len(export.ok_rows(df)) == len(df[df["failure"].isna()])


def test_a_bench_result_with_a_malformed_verdict_is_refused(tmp_path: Path) -> None:
    from ixhpc.errors import ResultFileError

    doc = bench_result(failed=0)
    doc["validity"] = {"verdict": "valid", "reasons": [], "details": {}, "evidence": {"x": [1]}}
    with pytest.raises(ResultFileError):
        write_point(tmp_path / "p.h5", doc, metadata())


def test_ingest_judges_the_evidence_again(tmp_path: Path) -> None:
    doc = bench_result(failed=0)
    doc["validity"] = {"verdict": "valid", "reasons": [], "details": {}, "evidence": healthy(failed=50)}
    write_point(tmp_path / "p.h5", doc, metadata())
    assert store.read(tmp_path / "p.h5").validity["reasons"] == ["failed_requests"]  # type: ignore[index]


def test_set_aside_invalid_moves_only_invalid_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ixhpc import rundir, runstate

    layout = rundir.Layout.of(tmp_path)
    layout.results_dir.mkdir(parents=True)
    bad = dict(bench_result(failed=0), validity={"verdict": "invalid", "reasons": [], "details": {},
                                                   "evidence": healthy(stalled=1)})
    write_point(layout.result("bad"), bad, metadata())
    write_point(layout.result("old"), bench_result(failed=0), metadata())
    moved = runstate.set_aside_invalid(tmp_path, ["bad", "old", "none"])
    assert len(moved) == 1 and moved[0].name.startswith("bad.h5.invalid-")
    assert store.read(moved[0]).verdict == "invalid"  # kept whole
    assert not layout.result("bad").exists() and layout.result("old").exists()


# ----------------------------------------------------------------------------- local cluster


@pytest.mark.cluster
def test_resume_invalid_reruns_an_invalid_point(slurm: Any, tmp_path: Path) -> None:
    from test_operations import _recipe

    from ixhpc import rundir

    from test_jobs_e2e import ixhpc, submit, wait_status

    out = submit(_recipe(tmp_path, [2], osl=64), tmp_path / "results")
    run = Path(out["run_dir"])
    assert wait_status(str(run))["jobs"][0]["state"] == "COMPLETED"
    (result,) = rundir.Layout.of(run).results_dir.glob("*.h5")
    point = store.read(result)
    assert point.verdict == "valid", point.validity
    # the same result, judged invalid (as a stalled engine's would be)
    point.validity = {**validity.judge(healthy(stalled=1)), "evidence": healthy(stalled=1)}
    result.unlink()
    store.write(result, point)
    status = json.loads(ixhpc("status", str(run), "--json").stdout)
    assert status["jobs"][0]["invalid"] == [result.name[:-3]]
    assert "invalid" in ixhpc("status", str(run)).stdout

    res = ixhpc("resume", str(run), "--invalid", "--json")
    assert res.returncode == 0, res.stderr
    answer = json.loads(res.stdout)
    assert [Path(p).name.split(".invalid-")[0] for p in answer["set_aside"]] == [result.name]
    status = wait_status(str(run))
    assert status["jobs"][0]["state"] == "COMPLETED" and status["jobs"][0]["invalid"] == []
    assert store.read(result).verdict == "valid"
    assert store.read(Path(answer["set_aside"][0])).verdict == "invalid"  # kept
