"""Merging run-point files: incremental, idempotent, safe with bad inputs, kills and rivals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from ixhpc.errors import UserError
from ixhpc.results import export, gather, load, merge, requests, store, table, write_point

from results_helpers import bench_result, metadata, write_points, write_v1_point


def quiet_merge(inputs, output, **kw):
    skipped = []
    stats = merge.merge(inputs, output, on_skip=lambda p, r: skipped.append((p, r)), **kw)
    return stats, skipped


def ids(paths):
    return sorted(store.read(p, with_requests=False).result_id for p in paths)


def test_merge_then_incremental_then_idempotent(tmp_path):
    first = write_points(tmp_path / "pts", 6)
    out = tmp_path / "m.h5"
    stats, _ = quiet_merge([tmp_path / "pts"], out)
    assert (stats.merged, stats.present) == (6, 0)
    second = write_points(tmp_path / "pts", 4, start=6)
    stats, _ = quiet_merge([tmp_path / "pts"], out)
    assert (stats.merged, stats.present) == (4, 6)
    before = out.stat().st_mtime_ns
    stats, _ = quiet_merge([tmp_path / "pts", first[0]], out)
    assert (stats.merged, stats.present) == (0, 10)
    assert out.stat().st_mtime_ns == before  # nothing new: file untouched
    df = load(out)
    assert sorted(df["result_id"]) == ids(first + second)
    assert df["point_key"].notna().all() and len(df) == 10


def test_a_copy_elsewhere_counts_once(tmp_path):
    [path] = write_points(tmp_path / "a", 1)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "same.h5").write_bytes(path.read_bytes())
    stats, _ = quiet_merge([tmp_path / "a", tmp_path / "b"], tmp_path / "m.h5")
    assert (stats.merged, stats.present) == (1, 1)


def test_rewritten_file_at_same_path_is_looked_at_again(tmp_path):
    [path] = write_points(tmp_path / "pts", 1)
    out = tmp_path / "m.h5"
    quiet_merge([path], out)
    path.unlink()
    write_point(path, bench_result(seed=99), metadata(job_id="777"))
    stats, _ = quiet_merge([path], out)
    assert stats.merged == 1
    assert sorted(load(out)["job_id"]) == ["1000", "777"]


def test_bad_files_are_reported_and_skipped_others_merged(tmp_path):
    good = write_points(tmp_path / "pts", 3)
    d = tmp_path / "pts"
    (d / "empty.h5").write_bytes(b"")
    (d / "garbage.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"x" * 500)
    (d / "truncated.h5").write_bytes(good[0].read_bytes()[:3000])
    with h5py.File(d / "foreign.h5", "w") as f:
        f["x"] = [1, 2, 3]
    (d / ".hidden.h5.abc.tmp").write_bytes(b"half")  # a writer's temp file: never an input
    (d / "notes.txt").write_text("ignored")
    stats, skipped = quiet_merge([d, tmp_path / "missing"], tmp_path / "m.h5")
    assert stats.merged == 3
    reasons = {os.path.basename(p): r for p, r in skipped}
    assert set(reasons) == {"empty.h5", "garbage.h5", "truncated.h5", "foreign.h5", "missing"}
    assert reasons["empty.h5"] == "empty file"
    assert "not written by ixhpc" in reasons["foreign.h5"]
    assert all("\n" not in r for r in reasons.values())
    assert sorted(load(tmp_path / "m.h5")["result_id"]) == ids(good)


def test_column_type_clash_skips_that_file(tmp_path):
    write_points(tmp_path / "a", 2)
    [odd] = write_points(tmp_path / "b", 1, start=5, unchecked={"node_list": 7})  # a number where text is
    stats, skipped = quiet_merge([tmp_path / "a", tmp_path / "b"], tmp_path / "m.h5")
    assert stats.merged == 2 and skipped == [(str(odd), "node_list is int here but str in the merged table")]


def test_int_column_widens_to_float(tmp_path):
    write_points(tmp_path / "a", 1, unchecked={"extra_setting": 3})
    write_points(tmp_path / "b", 1, start=1, unchecked={"extra_setting": 3.5})
    out = tmp_path / "m.h5"
    quiet_merge([tmp_path / "a"], out)
    quiet_merge([tmp_path / "b"], out)
    assert sorted(load(out)["extra_setting"]) == [3.0, 3.5]


def stored_requests(out):
    """Requests in all the segment files beside ``out`` (leftovers included)."""
    total = 0
    for seg in (out.parent / f"{out.name}.segments").iterdir():
        with h5py.File(seg) as f:
            total += len(f["requests"])
    return total


def assert_same_requests(got, want):
    assert got.rows.tobytes() == want.rows.tobytes()
    np.testing.assert_array_equal(got.itl, want.itl)
    assert got.errors() == want.errors()


def test_per_request_data_is_merged_and_addressable(tmp_path):
    paths = write_points(tmp_path / "pts", 3)
    out = tmp_path / "m.h5"
    quiet_merge([tmp_path / "pts"], out)
    for path in paths:
        point = store.read(path)
        assert_same_requests(requests(out, point.result_id), point.requests)
        assert_same_requests(requests(out, point.result_id[:10]), point.requests)  # a unique prefix will do
    with pytest.raises(UserError, match="no point with result id"):
        requests(out, "f" * 64)
    with pytest.raises(UserError, match="say which point"):
        requests(out)


def test_incremental_merge_writes_a_new_segment_and_never_touches_old_ones(tmp_path):
    write_points(tmp_path / "pts", 4)
    out = tmp_path / "m.h5"
    quiet_merge([tmp_path / "pts"], out)
    seg_dir = tmp_path / "m.h5.segments"
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in seg_dir.iterdir()}
    [new] = write_points(tmp_path / "pts", 1, start=4)
    quiet_merge([tmp_path / "pts"], out)
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in seg_dir.iterdir()}
    assert {k: after[k] for k in before} == before and len(after) == len(before) + 1
    point = store.read(new)
    assert_same_requests(requests(out, point.result_id), point.requests)


def test_merged_files_of_two_clusters_merge_idempotently(tmp_path):
    a = write_points(tmp_path / "a", 5, runner="b200")
    b = write_points(tmp_path / "b", 5, start=5, runner="mi355x", framework="vllm")
    quiet_merge([tmp_path / "a"], tmp_path / "a.h5")
    quiet_merge([tmp_path / "b"], tmp_path / "b.h5")
    out = tmp_path / "all.h5"
    stats, _ = quiet_merge([tmp_path / "a.h5", tmp_path / "b.h5"], out)
    assert (stats.merged, stats.present) == (10, 0)
    stats, _ = quiet_merge([tmp_path / "b.h5", tmp_path / "a.h5", tmp_path / "a"], out)
    assert (stats.merged, stats.present) == (0, 15)
    df = load(out)
    assert sorted(df["result_id"]) == ids(a + b)
    assert set(df["runner"]) == {"b200", "mi355x"} and df["tput_per_gpu"].notna().all()
    for path in (a[0], b[4]):
        point = store.read(path)
        assert_same_requests(requests(out, point.result_id), point.requests)
    # a merged file of merged files is an input like any other
    stats, _ = quiet_merge([out], tmp_path / "again.h5", summary_only=True)
    assert stats.merged == 10 and not (tmp_path / "again.h5.segments").exists()


def test_directory_with_a_merged_file_and_its_segments_is_walked_cleanly(tmp_path):
    pts = write_points(tmp_path / "res", 3)
    quiet_merge([tmp_path / "res"], tmp_path / "res" / "merged.h5")  # output inside its input
    stats, skipped = quiet_merge([tmp_path / "res"], tmp_path / "other.h5")
    assert skipped == [] and (stats.merged, stats.present) == (3, 3)
    [seg] = (tmp_path / "res" / "merged.h5.segments").iterdir()
    stats, skipped = quiet_merge([seg], tmp_path / "third.h5")
    assert stats.merged == 0 and "give the merged file instead" in skipped[0][1]
    assert sorted(load(tmp_path / "other.h5")["result_id"]) == ids(pts)


def test_missing_or_corrupt_segment_is_one_clear_error_and_skipped_as_input(tmp_path):
    [path] = write_points(tmp_path / "pts", 1)
    out = tmp_path / "m.h5"
    quiet_merge([path], out)
    rid = store.read(path, with_requests=False).result_id
    [seg] = (tmp_path / "m.h5.segments").iterdir()
    data = bytearray(seg.read_bytes())
    with h5py.File(seg) as f:
        offset = f["itl"].id.get_offset()
    data[offset:offset + 8] = b"\xff" * 8
    seg.write_bytes(bytes(data))
    with pytest.raises(UserError, match="checksum"):
        requests(out, rid)
    stats, skipped = quiet_merge([out], tmp_path / "copy.h5")
    assert stats.merged == 0 and "checksum" in skipped[0][1]
    seg.unlink()
    with pytest.raises(UserError, match="segments directory must stay beside it"):
        requests(out, rid)


def test_merge_in_worker_processes_matches_one_in_a_single_process(tmp_path, monkeypatch):
    paths = write_points(tmp_path / "pts", 12)
    (tmp_path / "pts" / "copy.h5").write_bytes(paths[3].read_bytes())  # in another task: counts once
    (tmp_path / "pts" / "bad.h5").write_bytes(b"junk")
    one, many = tmp_path / "one.h5", tmp_path / "many.h5"
    stats_one, _ = quiet_merge([tmp_path / "pts"], one, workers=1)
    monkeypatch.setattr(merge, "PARALLEL_FROM", 1)
    monkeypatch.setattr(gather, "MIN_TASK_BYTES", 1)  # a task, and a segment, per file or two
    stats, skipped = quiet_merge([tmp_path / "pts"], many, workers=2)
    assert (stats.merged, stats.present, len(skipped)) == (stats_one.merged, stats_one.present, 1) == (12, 1, 1)
    assert len(list((tmp_path / "many.h5.segments").iterdir())) > 2
    assert sorted(load(many)["result_id"]) == sorted(load(one)["result_id"]) == ids(paths)
    for path in paths:
        point = store.read(path)
        assert_same_requests(requests(many, point.result_id), point.requests)


def test_summary_only_keeps_the_table_only(tmp_path):
    write_points(tmp_path / "pts", 2)
    out = tmp_path / "m.h5"
    quiet_merge([tmp_path / "pts"], out, summary_only=True)
    assert not (tmp_path / "m.h5.segments").exists()
    assert len(load(out)) == 2 and "segment" not in load(out)
    with pytest.raises(UserError, match="holds no per-request data"):
        requests(out, load(out)["result_id"][0])
    full = tmp_path / "full.h5"
    quiet_merge([tmp_path / "pts"], full)
    with pytest.raises(UserError, match="without --summary-only"):
        quiet_merge([tmp_path / "pts"], full, summary_only=True)
    stats, skipped = quiet_merge([out], tmp_path / "other.h5")  # no per-request data to carry over
    assert stats.merged == 0 and "--summary-only" in skipped[0][1]


def test_bench_config_is_a_table_column(tmp_path):
    write_points(tmp_path / "pts", 2)
    quiet_merge([tmp_path / "pts"], tmp_path / "m.h5")
    df = load(tmp_path / "m.h5")
    assert sorted(df["bench_seed"]) == [0, 1] and (df["bench_random_range_ratio"] == 0.8).all()


def test_version_1_point_files_merge_with_their_data(tmp_path):
    (tmp_path / "pts").mkdir()
    bench, meta = bench_result(seed=3), metadata(job_id="42")
    rid = write_v1_point(tmp_path / "pts" / "old.h5", bench, meta)
    write_points(tmp_path / "pts", 1)
    stats, _ = quiet_merge([tmp_path / "pts"], tmp_path / "m.h5")
    assert stats.merged == 2
    assert_same_requests(requests(tmp_path / "m.h5", rid), store.read(tmp_path / "pts" / "old.h5").requests)


def test_output_merged_by_an_older_ixhpc_is_not_extended(tmp_path):
    out = tmp_path / "old.h5"
    with h5py.File(out, "w") as f:
        table.create(f, summary_only=False)
        f.attrs["ixhpc_format_version"] = 1
    before = out.read_bytes()
    with pytest.raises(UserError, match="older ixhpc; merge into a new file"):
        quiet_merge(write_points(tmp_path / "pts", 1), out)
    assert out.read_bytes() == before


def test_output_that_is_not_a_merged_file_is_never_replaced(tmp_path):
    [point] = write_points(tmp_path / "pts", 1)
    out = tmp_path / "precious.h5"
    out.write_bytes(b"someone's data")
    with pytest.raises(UserError, match="refusing"):
        quiet_merge([point], out)
    assert out.read_bytes() == b"someone's data"


def test_exports_exclude_failed_points(tmp_path):
    write_points(tmp_path / "pts", 3)
    bad = bench_result(seed=50)
    bad["failure"] = "12% of requests failed"
    write_point(tmp_path / "pts" / "failed.h5", bad, metadata(job_id="9"))
    out = tmp_path / "m.h5"
    quiet_merge([tmp_path / "pts"], out)
    df = load(out)
    assert export.write_agg_json(df, tmp_path / "agg.json") == 3
    rows = json.loads((tmp_path / "agg.json").read_text())
    assert {r["hw"] for r in rows} == {"b200"} and all("tput_per_gpu" in r for r in rows)
    assert export.write_csv(df, tmp_path / "t.csv") == 4
    assert (tmp_path / "t.csv").read_text().count("\n") == 5


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "ixhpc", "merge", *map(str, args)],
                          capture_output=True, text=True, **kw)


def test_cli_counts_and_exit_codes(tmp_path):
    write_points(tmp_path / "pts", 2)
    (tmp_path / "pts" / "bad.h5").write_bytes(b"junk")
    out = tmp_path / "m.h5"
    done = _cli(tmp_path / "pts", "-o", out, "--json", tmp_path / "agg.json")
    assert done.returncode == 1  # something was skipped
    assert "2 merged, 1 skipped, 0 already present" in done.stdout
    assert done.stderr.strip().startswith(f"skipped {tmp_path / 'pts' / 'bad.h5'}: ")
    assert len(json.loads((tmp_path / "agg.json").read_text())) == 2
    (tmp_path / "pts" / "bad.h5").unlink()
    done = _cli(tmp_path / "pts", "-o", out)
    assert done.returncode == 0 and "0 merged, 0 skipped, 2 already present" in done.stdout


def test_two_concurrent_merges_leave_every_point_once(tmp_path):
    a = write_points(tmp_path / "a", 40)
    b = write_points(tmp_path / "b", 40, start=40)
    out = tmp_path / "m.h5"
    procs = [subprocess.Popen([sys.executable, "-m", "ixhpc", "merge", *dirs, "-o", str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for dirs in ([str(tmp_path / "a"), str(tmp_path / "b")], [str(tmp_path / "b")])]
    results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    assert all(rc == 0 for _, _, rc in results), results
    df = load(out)
    assert sorted(df["result_id"]) == ids(a + b)  # each exactly once
    for path in a[::7] + b[::7]:
        point = store.read(path)
        assert_same_requests(requests(out, point.result_id), point.requests)
    assert stored_requests(out) == df["req_count"].sum()  # no segment of a rival merge left over


def test_merge_killed_midway_leaves_previous_output(tmp_path):
    first = write_points(tmp_path / "a", 3)
    out = tmp_path / "m.h5"
    quiet_merge([tmp_path / "a"], out)
    before = out.read_bytes()
    write_points(tmp_path / "b", 150, start=10)
    proc = subprocess.Popen([sys.executable, "-m", "ixhpc", "merge", str(tmp_path / "b"), "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    killed = False
    seg_dir = tmp_path / "m.h5.segments"
    while time.monotonic() < deadline and proc.poll() is None:
        if any("-000002-" in p.name for p in seg_dir.iterdir()):
            proc.send_signal(signal.SIGKILL)  # its first segment is there: the merge is under way
            killed = True
            break
        time.sleep(0.001)
    proc.wait()
    if not killed:
        pytest.skip("the merge finished before it could be killed (machine too fast for this input)")
    assert out.read_bytes() == before
    assert sorted(load(out)["result_id"]) == ids(first)
    assert any("-000002-" in p.name for p in seg_dir.iterdir())  # the killed merge's leftover...
    stats, _ = quiet_merge([tmp_path / "b"], out)
    assert stats.merged == 150 and len(load(out)) == 153
    assert not list(tmp_path.glob(".m.h5.*.tmp"))  # ...removed by the next merge
    assert stored_requests(out) == load(out)["req_count"].sum()


def test_segments_of_a_merge_killed_before_its_table_was_replaced_are_removed(tmp_path):
    first = write_points(tmp_path / "a", 2)
    out = tmp_path / "m.h5"
    quiet_merge([tmp_path / "a"], out)
    seg_dir = tmp_path / "m.h5.segments"
    [committed] = seg_dir.iterdir()
    # what a merge killed after writing its segments, before renaming its table, leaves
    (seg_dir / "seg-000002-0000.h5").write_bytes(committed.read_bytes())
    (seg_dir / ".seg-000002-0001.h5.x1y2.tmp").write_bytes(b"half")
    (tmp_path / ".m.h5.a1b2.tmp").write_bytes(b"half")
    assert len(load(out)) == 2  # readers see the committed table only
    second = write_points(tmp_path / "b", 2, start=5)
    stats, _ = quiet_merge([tmp_path / "b"], out)
    assert stats.merged == 2
    assert sorted(p.name for p in seg_dir.iterdir()) == [committed.name, "seg-000002-0000.h5"]
    assert not list(tmp_path.glob(".m.h5.*.tmp"))
    assert stored_requests(out) == load(out)["req_count"].sum()
    for path in first + second:
        point = store.read(path)
        assert_same_requests(requests(out, point.result_id), point.requests)
