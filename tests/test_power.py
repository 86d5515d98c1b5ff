"""GPU power: the sampler's command lines and parsers, energy integration, the job end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ixhpc.job import power as sampler
from ixhpc.results import power

REPO = Path(__file__).resolve().parents[1]
T0, T1 = 1000.0, 1060.0
WINDOW = {"start_unix": T0, "end_unix": T1, "completed": 100, "total_input_tokens": 60_000,
          "total_output_tokens": 12_000}


def test_vendor_tools_run_with_these_exact_command_lines():
    assert sampler.command("nvidia-smi", 1.0) == [
        "nvidia-smi", "--query-gpu=index,power.draw", "--format=csv,noheader,nounits", "-lms=1000"]
    assert sampler.command("dcgm", 0.5) == ["dcgmi", "dmon", "-e", "155", "-d", "500"]
    assert sampler.command("amd-smi", 1.0) == ["amd-smi", "metric", "--power", "--csv", "--watch", "1"]
    with pytest.raises(ValueError):
        sampler.command("sim", 1.0)


def test_each_tools_output_lines_become_gpu_readings():
    nv = sampler.LineParser("nvidia-smi")
    assert nv("3, 251.34\n") == [("3", 251.34)] and nv("0, [N/A]") == []
    dc = sampler.LineParser("dcgm")
    assert dc("#Entity   POWER") == [] and dc("ID        W") == [] and dc("GPU 7     612.250") == [("7", 612.25)]
    amd = sampler.LineParser("amd-smi")
    assert amd("1,2") == []  # before its header
    assert amd("timestamp,gpu,socket_power,gfx_voltage") == []
    assert amd("1722000000,2,745,1.1") == [("2", 745.0)]


def _dev(t: np.ndarray, w: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    return t, np.broadcast_to(np.asarray(w, float), t.shape).copy()


def test_constant_power_integrates_to_power_times_window_with_edges_interpolated():
    t = np.arange(T0 - 0.5, T1 + 1.0, 1.0)
    res = power.integrate(*_dev(t, 500.0), T0, T1)
    assert res["energy_j"] == pytest.approx(500.0 * 60) and res["issues"] == []
    # a ramp: the edges are interpolated between the samples that bracket them
    ramp = power.integrate(t, 100.0 + (t - T0), T0, T1)
    assert ramp["energy_j"] == pytest.approx(100.0 * 60 + 60 * 60 / 2)


def test_a_gap_over_three_seconds_or_a_short_coverage_invalidates_the_device():
    t = np.concatenate([np.arange(T0, T0 + 20, 1.0), np.arange(T0 + 23.5, T1 + 1, 1.0)])
    assert power.integrate(*_dev(t, 300.0), T0, T1)["issues"] == ["sample_gap_exceeds_limit"]
    t_ok = np.concatenate([np.arange(T0, T0 + 20, 1.0), np.arange(T0 + 21.9, T1 + 1, 1.0)])
    assert power.integrate(*_dev(t_ok, 300.0), T0, T1)["issues"] == []
    late = np.arange(T0 + 2.5, T1 - 2.0, 1.0)  # edges within 3 s, coverage 92%
    assert power.integrate(*_dev(late, 300.0), T0, T1)["issues"] == ["insufficient_coverage"]
    assert power.integrate(*_dev(np.array([T0 + 5.0]), 300.0), T0, T1)["issues"] == ["too_few_samples"]


def test_device_counts_per_role_and_in_all_are_checked():
    t = np.arange(T0 - 1, T1 + 2, 1.0)
    samples = {f"node0/gpu{i}": _dev(t, 400.0) for i in range(4)}
    roles = {d: "prefill-0" if i < 2 else "decode-0" for i, d in enumerate(samples)}
    ok = power.aggregate(samples, roles, WINDOW, {"prefill": 2, "decode": 2})
    assert ok["power_valid"] and ok["reasons"] == []
    m = ok["metrics"]
    assert m["total_gpu_energy_j"] == pytest.approx(4 * 400 * 60)
    assert m["avg_power_w"] == pytest.approx(1600.0)
    assert m["joules_per_output_token"] == pytest.approx(4 * 400 * 60 / 12_000)
    assert m["output_tokens_per_joule"] == pytest.approx(12_000 / (4 * 400 * 60))
    assert m["prefill_avg_power_w"] == pytest.approx(800.0) and m["decode_gpu_energy_j"] == pytest.approx(48_000)
    fewer = power.aggregate(samples, roles, WINDOW, {"prefill": 2, "decode": 4})
    assert not fewer["power_valid"] and fewer["reasons"] == ["gpu_count_mismatch"] and fewer["metrics"] == {}
    swapped = power.aggregate(samples, roles, WINDOW, {"prefill": 1, "decode": 3})
    assert swapped["reasons"] == ["gpu_role_count_mismatch"]


def test_no_telemetry_or_no_window_is_invalid_with_its_reason():
    assert power.aggregate({}, {}, WINDOW, {"server": 8})["reasons"] == ["telemetry_file_missing"]
    t = np.arange(T0, T1, 1.0)
    doc = power.aggregate({"node0/gpu0": _dev(t, 1.0)}, {}, None, {"unassigned": 1})
    assert doc["reasons"] == ["invalid_benchmark_window"] and not doc["power_valid"]


def test_sampler_files_are_read_and_cut_to_the_benchmarks_window(tmp_path):
    csv = tmp_path / "power-n0.csv"
    rows = [f"{T0 - 5 + k * 0.5:.3f},node0/gpu{g},server,{200 + g}" for k in range(150) for g in range(2)]
    csv.write_text(sampler.HEADER + "\n".join(rows) + "\nbroken,row\n")
    bench = {"clock": {"start_unix": T0, "end_unix": T0 + 60}, "summary": {"total_output_tokens": 100}}
    doc, kept = power.for_point([csv, tmp_path / "power-n1.csv"], bench, {"server": 2})
    assert doc["power_valid"], doc["reasons"]
    assert doc["metrics"]["avg_power_w"] == pytest.approx(401.0)
    assert set(kept) == {"node0/gpu0", "node0/gpu1"} and kept["node0/gpu0"][0][0] == pytest.approx(-3.0)


def test_simulated_engines_power_follows_its_load():
    from ixhpc.bench import servermetrics
    from ixhpc.sim import model, server

    eng = server.Engine(model.SimConfig(gpu="GB200", tp=4, max_batch=8), "server", "s", 1.0)
    idle = eng.gpu_power()
    assert len(idle) == 4 and idle[0] == pytest.approx(1200 * server.GPU_IDLE_FRACTION)
    eng.running = [server.Request(str(i), 10, 10) for i in range(8)]
    assert eng.gpu_power()[0] == pytest.approx(1200.0)
    text = server.prometheus(["sglang"], "m", eng.metric_values(), eng.gpu_power())
    assert servermetrics.parse_labelled(text.splitlines(), servermetrics.SIM_POWER, "gpu") == {
        str(i): pytest.approx(1200.0) for i in range(4)}


def test_required_power_makes_a_point_without_it_invalid():
    from ixhpc.results import ingest

    from results_helpers import bench_result, metadata

    bad = power.aggregate({}, {}, WINDOW, {"server": 8})
    point = ingest.build_point(bench_result(failed=0), metadata(), (bad, {}), require_power=True)
    assert point.verdict == "invalid" and "power_invalid" in point.validity["reasons"]
    lenient = ingest.build_point(bench_result(failed=0), metadata(), (bad, {}), require_power=False)
    assert "power_invalid" not in (lenient.validity or {}).get("reasons", [])
    assert lenient.power is not None and lenient.power["reasons"] == ["telemetry_file_missing"]


@pytest.mark.cluster
def test_sim_job_stores_server_metrics_and_power_and_the_report_shows_them(slurm, tmp_path):
    import h5py

    res = subprocess.run([sys.executable, "-m", "ixhpc", "submit", str(REPO / "recipes/examples/sim-disagg.yaml"),
                          "--cluster", "local", "--results", str(tmp_path), "--json"],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert res.returncode == 0, res.stderr
    run = Path(json.loads(res.stdout)["run_dir"])
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        st = json.loads(subprocess.run([sys.executable, "-m", "ixhpc", "status", str(run), "--json"],
                                       capture_output=True, text=True, cwd=REPO).stdout)
        if all(j["state"] in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") for j in st["jobs"]):
            break
        time.sleep(2)
    assert st["jobs"][0]["state"] == "COMPLETED", st
    files = sorted((run / "results").glob("*.h5"))
    assert files
    for path in files:
        with h5py.File(path, "r") as f:
            srv = f["server_metrics"]
            assert {"prefill-0", "decode-0", "decode-1"} <= set(srv)
            assert srv["decode-0/running"].shape[1] == 2 and srv["decode-0/running"].shape[0] >= 2
            assert srv.attrs["srv_prefill_tokens_per_s"] > 0
            assert srv.attrs["srv_decode_tokens_per_s"] > 0 and srv.attrs["srv_running_max"] >= 1
            pw = f["power"]
            assert pw.attrs["power_valid"], pw.attrs["power_reasons"]
            assert pw.attrs["avg_power_w"] > 0 and pw.attrs["output_tokens_per_joule"] > 0
            assert len([n for n in pw["node0"]]) + len(list(pw["node1"])) + len(list(pw["node2"])) == 12
    merged = tmp_path / "merged.h5"
    out = subprocess.run([sys.executable, "-m", "ixhpc", "merge", str(run / "results"), "-o", str(merged)],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    rep = subprocess.run([sys.executable, "-m", "ixhpc", "report", str(merged), "-o", str(tmp_path / "rep")],
                         capture_output=True, text=True, cwd=REPO)
    assert rep.returncode == 0, rep.stderr
    text = (tmp_path / "rep" / "summary.md").read_text()
    assert "## Server metrics" in text and "## GPU power and energy" in text and "output tok/J" in text
    assert "| yes |" in text
