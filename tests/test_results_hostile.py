"""Results that nothing can break (issue 13, items 1, 4, 7): hostile point files, outputs that
are symlinks or on a full or read-only disk, killed merges, racing writers, hostile exports."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pandas as pd
import pytest

from ixhpc.results import export, ingest, load, merge, report, requests, store, write_point

from results_helpers import bench_result, metadata, write_points

TESTS = Path(__file__).parent


def quiet_merge(inputs, output, **kw):
    skipped: list[tuple[str, str]] = []
    stats = merge.merge(inputs, output, on_skip=lambda p, r: skipped.append((p, r)), **kw)
    return stats, skipped


def cli(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ixhpc", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def one_line_error(done: subprocess.CompletedProcess, command: str = "merge") -> str:
    """The single error line of a failed command (no traceback)."""
    assert done.returncode not in (0, 1), (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ixhpc {command}: error: "), done.stderr
    return lines[0]


def forge_point(path: Path, seed: int, meta: dict | None = None, record: dict | None = None) -> None:
    """A point file whose record (what a merge reads) carries ``meta`` (merged into the
    metadata) and ``record`` (top-level) as a foreign writer could: consistent result id."""
    write_point(path, bench_result(seed=seed, n=4, osl=8), metadata(job_id=str(seed)))
    with h5py.File(path, "r+") as f:
        rec = json.loads(f.attrs["record"])
        rec["metadata"].update(meta or {})
        rec.update(record or {})
        text = json.dumps(rec, sort_keys=True)
        f.attrs["record"] = text
        f.attrs["result_id"] = hashlib.sha256(text.encode()).hexdigest()


# ----------------------------------------------------------------------------- foreign names


@pytest.mark.parametrize("key", ["x/y", ".", "..", "", "a\0b", "/", "\ud800"])
def test_point_whose_metadata_key_is_not_a_plain_name_is_refused_and_never_merged(tmp_path, key):
    good = write_points(tmp_path / "pts", 3)
    out = tmp_path / "m.h5"
    quiet_merge([good[0]], out)
    forge_point(tmp_path / "pts" / "foreign.h5", 99, {key: 1})
    stats, skipped = quiet_merge([tmp_path / "pts"], out)
    assert stats.merged == 2
    assert [Path(p).name for p, _ in skipped] == ["foreign.h5"] and "not a plain name" in skipped[0][1]
    df = load(out)  # still readable, for good
    assert len(df) == 3 and key not in df
    write_points(tmp_path / "more", 1, start=50)
    assert quiet_merge([tmp_path / "more"], out)[0].merged == 1 and len(load(out)) == 4


@pytest.mark.parametrize("value", [[1, 2], {"a": 1}, None, 2**70, "a\0b", "\udc80"])
def test_point_whose_metadata_value_fits_no_column_is_refused(tmp_path, value):
    forge_point(tmp_path / "pts" / "foreign.h5", 7, {"odd": value})
    write_points(tmp_path / "pts", 1)
    stats, skipped = quiet_merge([tmp_path / "pts"], tmp_path / "m.h5")
    assert stats.merged == 1 and len(skipped) == 1 and "foreign.h5" in skipped[0][0]
    assert len(load(tmp_path / "m.h5")) == 1


# ----------------------------------------------------------------------------- the output


def test_output_that_is_a_symlink_is_resolved_lock_and_segments_beside_the_real_file(tmp_path):
    pts = write_points(tmp_path / "pts", 3)
    (tmp_path / "real").mkdir()
    quiet_merge([pts[0]], tmp_path / "real" / "m.h5")
    link = tmp_path / "link.h5"
    link.symlink_to(tmp_path / "real" / "m.h5")
    stats, _ = quiet_merge([tmp_path / "pts"], link)
    assert stats.merged == 2
    assert link.is_symlink() and not (tmp_path / "link.h5.segments").exists()
    assert not (tmp_path / "link.h5.lock").exists()
    assert len(list((tmp_path / "real" / "m.h5.segments").iterdir())) == 2
    for path in pts:  # every point keeps its per-request data, through the link too
        point = store.read(path)
        assert len(requests(link, point.result_id)) == len(point.requests)


def test_segments_path_that_is_a_file_is_one_line_error_and_table_untouched(tmp_path):
    write_points(tmp_path / "pts", 2)
    out = tmp_path / "m.h5"
    (tmp_path / "m.h5.segments").write_text("not a directory")
    done = cli("merge", tmp_path / "pts", "-o", out)
    assert "is not a directory" in one_line_error(done)
    assert not out.exists()


@pytest.fixture
def small_fs(tmp_path):
    """A tiny tmpfs of our own (root only): ``mount(size)``; unmounted in teardown."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mounted = []

    def mount(size: str) -> Path:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                              capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(mnt)
        return mnt

    yield mount
    for m in mounted:
        subprocess.run(["umount", "-l", str(m)], check=False)


def test_disk_full_is_one_line_error_and_previous_table_untouched(tmp_path, small_fs):
    mnt = small_fs("8m")
    first = write_points(tmp_path / "a", 3)
    out = mnt / "m.h5"
    quiet_merge([tmp_path / "a"], out)
    before = out.read_bytes()
    write_points(tmp_path / "b", 40, start=10)
    st = os.statvfs(mnt)
    (mnt / "filler").write_bytes(b"\1" * (st.f_bavail * st.f_frsize - (64 << 10)))  # 64 KiB left
    done = cli("merge", tmp_path / "b", "-o", out)
    assert "No space left on device" in one_line_error(done)
    assert out.read_bytes() == before
    assert sorted(load(out)["result_id"]) == sorted(store.read(p, with_requests=False).result_id for p in first)
    assert not list(mnt.glob(".m.h5.*.tmp"))


def test_read_only_output_is_one_line_error_and_table_untouched(tmp_path, small_fs):
    mnt = small_fs("8m")
    write_points(tmp_path / "a", 2)
    out = mnt / "m.h5"
    quiet_merge([tmp_path / "a"], out)
    before = out.read_bytes()
    write_points(tmp_path / "a", 2, start=5)
    subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
    done = cli("merge", tmp_path / "a", "-o", out)
    assert "Read-only file system" in one_line_error(done)
    assert out.read_bytes() == before and len(load(out)) == 2


def test_input_tree_1200_levels_deep_is_walked_without_a_traceback(tmp_path):
    top = tmp_path / "deep"
    top.mkdir()
    fd = os.open(".", os.O_RDONLY)
    try:
        os.chdir(top)
        for _ in range(1200):
            os.mkdir("d")
            os.chdir("d")
        [bottom] = write_points(Path(os.getcwd()), 1)
    finally:
        os.fchdir(fd)
        os.close(fd)
    try:
        done = cli("merge", top, "-o", tmp_path / "m.h5")
        assert done.returncode in (0, 1) and "Traceback" not in done.stderr, done.stderr
        if done.returncode == 0:  # paths fit PATH_MAX here: the deepest point is merged
            assert load(tmp_path / "m.h5")["source_path"].tolist() == [os.path.realpath(bottom)]
    finally:
        _flatten(top)


def _flatten(top: Path) -> None:
    """Lift each level up beside ``top``: pytest's recursive clean-up of its old temporary
    directories would otherwise hit Python's recursion limit on this tree later."""
    cur, i = top, 0
    while (cur / "d").is_dir():
        nxt = top.parent / f"level{i}"
        os.rename(cur / "d", nxt)
        cur, i = nxt, i + 1


# ----------------------------------------------------------------------------- killed merges


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_merge_leaves_no_worker_processes_and_next_merge_works(tmp_path, sig):
    if merge.gather.default_workers() < 2:
        pytest.skip("one core: merges run without worker processes")
    write_points(tmp_path / "a", 2)
    out = tmp_path / "m.h5"
    quiet_merge([tmp_path / "a"], out)
    before = out.read_bytes()
    write_points(tmp_path / "b", merge.PARALLEL_FROM + 40, start=10)
    proc = subprocess.Popen([sys.executable, "-m", "ixhpc", "merge", str(tmp_path / "b"), "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    workers: set[int] = set()
    while time.monotonic() < deadline and proc.poll() is None and len(workers) < 3:  # forkserver + 2
        workers = _descendants(proc.pid)
        time.sleep(0.005)
    if proc.poll() is not None:
        pytest.skip("the merge finished before its workers could be seen")
    proc.send_signal(sig)
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.05)
    assert not [p for p in workers if _alive(p)], "worker processes outlived the killed merge"
    assert out.read_bytes() == before
    stats, skipped = quiet_merge([tmp_path / "b"], out)
    assert not skipped and stats.merged == merge.PARALLEL_FROM + 40
    df = load(out)
    assert len(df) == merge.PARALLEL_FROM + 42
    seg_dir = tmp_path / "m.h5.segments"
    assert not [p for p in seg_dir.iterdir() if p.name.endswith(".tmp")]


# ----------------------------------------------------------------------------- point files


def test_point_is_published_with_an_atomic_no_replace(tmp_path, monkeypatch):
    path = tmp_path / "p.h5"
    write_point(path, bench_result(seed=1), metadata())
    before = path.read_bytes()
    # a second writer that passed the early check just before the first one published
    monkeypatch.setattr(ingest.os.path, "exists", lambda p: False)
    with pytest.raises(ingest.ResultExists, match="never overwritten"):
        write_point(path, bench_result(seed=2), metadata())
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.h5"]  # no temp file left


def test_second_ingest_of_a_point_says_already_done_and_exits_0(tmp_path, capsys):
    from ixhpc.job import steps
    from ixhpc.rundir import Layout

    layout = Layout.of(tmp_path / "run")
    meta = metadata()
    layout.meta("j1", 8).parent.mkdir(parents=True)
    layout.meta("j1", 8).write_text(json.dumps({"result_key": meta["point_key"], "metadata": meta}))
    layout.bench_json("j1", 8).write_text(json.dumps(bench_result()))
    argv = ["ingest", "--run-dir", str(layout.root), "--job", "j1", "--conc", "8"]
    assert steps.main(argv) == 0
    first = layout.result(meta["point_key"]).read_bytes()
    assert steps.main(argv) == 0
    out = capsys.readouterr()
    assert "already done" in out.out and "Traceback" not in out.err
    assert layout.result(meta["point_key"]).read_bytes() == first


def test_race_of_writers_publishes_exactly_one(tmp_path):
    from ixhpc import atomic

    target = tmp_path / "p.h5"
    winners = []
    for i in range(2):
        src = tmp_path / f"t{i}"
        src.write_text(str(i))
        try:
            atomic.link_new(src, target)
            winners.append(i)
        except FileExistsError:
            pass
    assert winners == [0] and target.read_text() == "0"
    atomic._rename_noreplace(tmp_path / "t1", tmp_path / "q")  # the fallback, where no hard links
    with pytest.raises(FileExistsError):
        atomic._rename_noreplace(tmp_path / "t0", tmp_path / "q")


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.999, 100, 4096])
def test_truncated_point_file_is_a_point_file_error(tmp_path, keep):
    [path] = write_points(tmp_path, 1)
    data = path.read_bytes()
    n = int(len(data) * keep) if keep < 1 else int(keep)
    path.write_bytes(data[:n])
    for with_requests in (False, True):
        with pytest.raises(store.PointFileError):
            store.read(path, with_requests=with_requests)


# ----------------------------------------------------------------------------- report, CSV


@pytest.fixture
def merged(tmp_path):
    write_points(tmp_path / "pts", 4)
    quiet_merge([tmp_path / "pts"], tmp_path / "m.h5")
    return tmp_path / "m.h5"


def test_report_onto_a_file_is_one_line_error(merged, tmp_path):
    target = tmp_path / "report.md"
    target.write_text("keep me")
    done = cli("report", merged, "-o", target)
    done = subprocess.CompletedProcess(done.args, done.returncode, done.stdout, done.stderr)
    assert "not a directory" in one_line_error(done, "report")
    assert target.read_text() == "keep me"


def test_very_long_model_prefix_gives_short_distinct_plot_names(merged, tmp_path):
    df = load(merged)
    df["model_prefix"] = ["é" * 200 + "a"] * 2 + ["é" * 200 + "b"] * (len(df) - 2)
    written = report.write_report(df, tmp_path / "rep")
    names = [p.name for p in written]
    assert len(set(names)) == len(names) == 5
    assert all(len(n.encode()) < 255 for n in names)


def test_csv_export_defuses_formula_cells_but_keeps_numbers(tmp_path):
    df = pd.DataFrame({"text": pd.array(["=1+1", "+cmd", "-x", "@SUM(A1)", "plain", None], dtype="string"),
                       "obj": ["=HYPERLINK()", "ok", "-2", "\tx", "", "a"],
                       "num": [-5, 3, -1, 0, 2, 1], "flt": [-1.5, 2.0, float("nan"), -0.0, 1e9, -3e-3]})
    export.write_csv(df, tmp_path / "t.csv")
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert [r["text"] for r in rows] == ["'=1+1", "'+cmd", "'-x", "'@SUM(A1)", "plain", ""]
    assert [r["obj"] for r in rows] == ["'=HYPERLINK()", "ok", "'-2", "'\tx", "", "a"]
    assert [r["num"] for r in rows] == ["-5", "3", "-1", "0", "2", "1"]  # numbers stay numbers
    assert rows[0]["flt"] == "-1.5"


# ----------------------------------------------------------------------------- fuzz


_FUZZ = r'''
import json, os, sys, hashlib, traceback
from pathlib import Path
sys.path.insert(0, {tests!r})
import h5py
from hypothesis import HealthCheck, given, settings, strategies as st
from ixhpc.errors import IxhpcError
from ixhpc.results import load, merge
from test_results_hostile import forge_point
from results_helpers import write_points

root = Path({root!r})
out = root / "m.h5"
write_points(root / "base", 3)
merge.merge([root / "base"], out, on_skip=lambda p, r: None)
base = sorted(load(out)["result_id"])
counter = [0]

names = st.one_of(st.text(min_size=0, max_size=12),
                  st.sampled_from(["x/y", ".", "..", "", "\0", "points", "result_id"]))
values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
                   st.lists(st.text(max_size=4), max_size=3),
                   st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
raw = st.one_of(st.binary(max_size=300), st.just(b"\x89HDF\r\n\x1a\n" + b"\0" * 64))

@settings(max_examples={examples}, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(meta=st.dictionaries(names, values, max_size=4), blobs=st.lists(raw, max_size=2),
       cut=st.one_of(st.none(), st.integers(0, 30000)), top=st.dictionaries(
           st.sampled_from(["summary", "metrics", "config", "failure", "n_requests", "n_itl",
                            "format_version", "error_texts", "arrays_sha256"]),
           values, max_size=2))
def fuzz(meta, blobs, cut, top):
    counter[0] += 1
    d = root / f"in{{counter[0]}}"
    d.mkdir()
    try:
        forge_point(d / "forged.h5", 1000 + counter[0], meta, top)
    except Exception:  # h5py refuses to even write it: nothing to merge
        pass
    for i, blob in enumerate(blobs):
        (d / f"raw{{i}}.h5").write_bytes(blob)
    if cut is not None and (d / "forged.h5").exists():
        data = (d / "forged.h5").read_bytes()
        (d / "cut.h5").write_bytes(data[:cut])
    try:
        merge.merge([d], out, on_skip=lambda p, r: None)
    except IxhpcError:
        pass
    df = load(out)  # the table stays readable, the previous points in it
    assert set(base) <= set(df["result_id"]), "lost points"

fuzz()
print("FUZZ-OK")
'''


def test_fuzz_merge_with_hostile_point_files_no_traceback_table_intact(tmp_path):
    import resource

    def bounded() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 20, 256 << 20))

    script = _FUZZ.format(tests=str(TESTS), root=str(tmp_path), examples=40)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240,
                          preexec_fn=bounded, cwd=tmp_path)
    assert done.returncode == 0 and "FUZZ-OK" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
