"""Report: the Markdown table says what was measured; the plots are real PNG images."""

from __future__ import annotations

import subprocess
import sys

import matplotlib.image
import pytest

from ixhpc.errors import PlanError, ResultFileError
from ixhpc.results import load, merge, report

from results_helpers import write_points


@pytest.fixture(scope="module")
def merged(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    write_points(d / "b200", 8)
    write_points(d / "mi355x", 8, runner="mi355x", framework="vllm", speed=0.8)
    write_points(d / "gb200", 4, start=20, runner="gb200", framework="dynamo-trt", disagg=True, speed=1.5)
    write_points(d / "8k1k", 3, start=40, isl=8192, osl=1024)
    merge.merge([d], d / "m.h5", on_skip=lambda p, r: None)
    return d / "m.h5"


def test_markdown_rows_carry_the_setup_and_numbers(merged):
    df = load(merged)
    text = report.markdown(df)
    lines = [ln for ln in text.splitlines() if ln.startswith("| ")]
    assert lines[0].startswith("| hw | framework | client | precision | isl/osl | parallelism | conc | tput/GPU")
    body = lines[1:]
    assert len(body) == len(df) == 23
    row = df[(df["runner"] == "mi355x") & (df["conc"] == 4)].iloc[0]
    expected = (f"| mi355x | vllm | ixhpc | fp4 | 1024/1024 | tp8 | 4 | {row['tput_per_gpu']:,.1f} | - | - "
                f"| {row['median_ttft'] * 1000:,.1f} | {row['p99_ttft'] * 1000:,.1f} | {row['median_intvty']:,.1f} |")
    assert expected in body
    assert any("| P 2x tp4 ep4 / D 1x tp8 ep8 dpa |" in ln for ln in body)
    assert sum("| 8192/1024 |" in ln for ln in body) == 3


def test_pareto_frontier_keeps_only_undominated_points():
    pts = [(10, 100), (20, 90), (15, 80), (30, 50), (5, 60), (30, 40)]
    assert report.pareto(pts) == [(10, 100), (20, 90), (30, 50)]


def test_filters_select_rows(merged):
    df = load(merged)
    assert set(report.filtered(df, hw=["gb200"])["framework"]) == {"dynamo-trt"}
    assert len(report.filtered(df, isl=[8192], osl=[1024])) == 3
    assert len(report.filtered(df, hw=["b200", "mi355x"], framework=["vllm"])) == 8
    assert report.filtered(df, model_prefix=["llama"]).empty


def test_report_command_writes_summary_and_valid_pngs(merged, tmp_path):
    out = tmp_path / "rep"
    done = subprocess.run([sys.executable, "-m", "ixhpc", "report", str(merged), "-o", str(out),
                           "--isl", "1024"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["dsr1_1024_1024_tput_vs_conc.png", "dsr1_1024_1024_tput_vs_intvty.png"]
    for name in pngs:
        image = matplotlib.image.imread(out / name)
        assert image.shape[0] > 400 and image.shape[1] > 600
        assert image[..., :3].std() > 0.05  # not a blank canvas
    summary = (out / "summary.md").read_text()
    assert "8192/1024" not in summary and "| gb200 | dynamo-trt | ixhpc |" in summary


def test_report_with_no_matching_points_is_one_line_error(merged, tmp_path):
    done = subprocess.run([sys.executable, "-m", "ixhpc", "report", str(merged), "-o", str(tmp_path / "r"),
                           "--hw", "h100"], capture_output=True, text=True)
    assert done.returncode == PlanError.exit_code
    assert done.stderr == f"ixhpc report: error: no points in {merged} match the filters\n"


def test_report_on_missing_file_is_one_line_error(tmp_path):
    done = subprocess.run([sys.executable, "-m", "ixhpc", "report", str(tmp_path / "nope.h5"), "-o",
                           str(tmp_path / "r")], capture_output=True, text=True)
    assert done.returncode == ResultFileError.exit_code
    assert done.stderr.count("\n") == 1 and "no such file" in done.stderr
