"""Merge run-point files and merged files into one merged file: incremental, idempotent, safe.

Safety: (1) a sidecar lock (``<output>.lock``, fcntl) serialises merges into the same output.
(2) Nothing a reader can see is modified in place. Per-request data go into new, write-once
segment files (ixhpc.results.segments), each written to a temp name and renamed; the table
(small: one row per point) is copied to a temp file, extended there and renamed over the
output last. A merge killed at any moment leaves the previous table, which refers only to
whole segments; the next merge removes the killed one's temp files and segments.
Nothing new to add = nothing written at all.

Incremental: only the new points' data are written (a new segment) and the table's new rows
appended. Idempotent: points are keyed by ``result_id`` (a content hash every point file
carries, and every merged row keeps), and a file whose path, size and mtime match a merged
row is not even opened again. A merged file given as an input contributes its rows and
per-request data the same way, so merging the merged files of two clusters works, repeatedly.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Set
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ixhpc import atomic
from ixhpc.errors import ResultFileError
from ixhpc.results import gather, segments, store, table

SUFFIXES = (".h5", ".hdf5")
PARALLEL_FROM = 200  # files; below this, starting worker processes costs more than it saves
BATCH_ROWS = 2000  # rows appended to the table at once


@dataclass
class MergeStats:
    merged: int = 0
    present: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def line(self) -> str:
        return f"{self.merged} merged, {len(self.skipped)} skipped, {self.present} already present"


@dataclass
class _Output:
    """What the output already holds."""
    ids: set[str]
    sources: dict[str, tuple[int, int]]  # path -> (size, mtime_ns)
    kinds: dict[str, str]
    summary_only: bool
    merges: int


class _NothingNew(Exception):
    """Raised inside the atomic write to throw the table copy away: the output stays untouched."""


def _print_skip(path: str, reason: str) -> None:
    print(f"skipped {path}: {reason}", file=sys.stderr)


def merge(inputs: Iterable[str | os.PathLike[str]], output: str | os.PathLike[str],
          summary_only: bool = False, progress: bool | None = None,
          on_skip: Callable[[str, str], None] = _print_skip, workers: int | None = None) -> MergeStats:
    """Merge run-point files and merged files (``inputs``: files or directories, searched
    recursively) into the merged file ``output``.

    From PARALLEL_FROM files on, ``workers`` (default: the usable cores, up to 8) worker
    processes read them; as with any multiprocessing, a script calling this must do so under
    ``if __name__ == "__main__":``.

    A symlink ``output`` is resolved: the table is replaced, and its lock and segments kept,
    beside the file it names. A failure to write (disk full, read-only) is a ResultFileError
    and leaves the previous table as it was.
    """
    out = Path(os.path.realpath(output))
    try:
        return _merge(inputs, out, summary_only, progress, on_skip, workers)
    except OSError as exc:
        where = exc.filename or out
        raise ResultFileError(f"merge into {out} failed, {out.name} is as it was: "
                              f"{where}: {exc.strerror or store.short_error(exc)}") from None
    except RecursionError:  # h5py / our own recursion on pathological input
        raise ResultFileError(f"merge into {out} failed, {out.name} is as it was: input nested too deeply") from None


def _merge(inputs: Iterable[str | os.PathLike[str]], out: Path, summary_only: bool, progress: bool | None,
           on_skip: Callable[[str, str], None], workers: int | None) -> MergeStats:
    stats = MergeStats()

    def skip(path: str, reason: str) -> None:
        stats.skipped.append((path, reason))
        on_skip(path, reason)

    with _locked(out):
        state = _existing(out, summary_only)
        seg_dir = segments.directory(out)
        if os.path.lexists(seg_dir) and not seg_dir.is_dir():
            raise ResultFileError(f"{seg_dir} exists and is not a directory: it must hold {out.name}'s "
                                  "per-request data; move it away")
        _remove_leftovers(out, seg_dir, state.merges)
        todo = []
        for source in _candidates(inputs, out, skip):
            if state.sources.get(source.path) == (source.size, source.mtime_ns):
                stats.present += 1
            else:
                todo.append(source)
        if not todo:
            return stats
        job = _Merge(state, stats, skip, seg_dir)
        try:
            with _open_table(out, state.summary_only) as f:
                job.run(f, todo, progress, workers or gather.default_workers())
                if not stats.merged:
                    raise _NothingNew
                f.flush()
                image = f.id.get_file_image()
            _remove_segments(seg_dir, lambda n: n == job.merge_no, keep=job.used)
            atomic.write_bytes(out, image)
        except BaseException as exc:
            if not _committed(out, job.merge_no):  # (a signal can land just after the rename)
                _remove_segments(seg_dir, lambda n: n == job.merge_no)
            if not isinstance(exc, _NothingNew):
                raise
    return stats


def _committed(out: Path, merge_no: int) -> bool:
    try:
        with h5py.File(out, "r") as f:
            return int(f.attrs.get("merges", 0)) >= merge_no
    except OSError:
        return False


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(f"{out}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another merge into {out} to finish", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _remove_leftovers(out: Path, seg_dir: Path, merges: int) -> None:
    """Temp files of killed merges, and segments of merges the table never reached."""
    for stale in out.parent.glob(f".{out.name}.*.tmp"):
        if stale.is_file():
            stale.unlink(missing_ok=True)
    _remove_segments(seg_dir, lambda n: n > merges)


def _remove_segments(seg_dir: Path, merge_no: Callable[[int], bool], keep: Set[str] = frozenset()) -> None:
    """Remove segment temp files and the segments of the merges ``merge_no`` selects but ``keep``.

    Only merges write these, and only under the lock we hold.
    """
    if not seg_dir.is_dir():
        return
    for entry in os.scandir(seg_dir):
        n = segments.merge_number(entry.name)
        stale_temp = entry.name.startswith(".seg-") and entry.name.endswith(".tmp")
        if stale_temp or (n is not None and merge_no(n) and entry.name not in keep):
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                os.unlink(entry.path)


def _existing(out: Path, summary_only: bool) -> _Output:
    if not out.exists():
        return _Output(set(), {}, {}, summary_only, 0)
    try:
        with h5py.File(out, "r") as f:
            table.check(f, out)
            if int(f.attrs["ixhpc_format_version"]) < table.VERSION:
                raise ResultFileError(f"{out} was merged by an older ixhpc; merge into a new file (its run-point "
                                f"files, or {out.name} itself with --summary-only)")
            has_requests = not bool(f.attrs["summary_only"])
            if summary_only and has_requests:
                raise ResultFileError(f"{out} holds per-request data; merge into it without --summary-only")
            cols = table.read_columns(f, ["result_id", "source_path", "source_size", "source_mtime_ns"])
            kinds = table.column_kinds(f)
            merges = int(f.attrs["merges"])
    except OSError as exc:
        raise ResultFileError(f"{out} exists but is not a readable HDF5 file ({store.short_error(exc)}); "
                        "refusing to replace it") from None
    except (table.MergedFileError, KeyError) as exc:
        raise ResultFileError(f"{exc}; refusing to replace it") from None
    ids = set(cols["result_id"][1].tolist()) if "result_id" in cols else set()
    sources = {}
    if "source_path" in cols:
        sources = dict(zip(cols["source_path"][1].tolist(),
                           zip(cols["source_size"][1].tolist(), cols["source_mtime_ns"][1].tolist())))
    return _Output(ids, sources, kinds, not has_requests, merges)


def _candidates(inputs: Iterable[str | os.PathLike[str]], out: Path,
                skip: Callable[[str, str], None]) -> Iterator[table.Source]:
    """Every input file once; directories walked recursively for *.h5 / *.hdf5, hidden ones
    and merged files' segment directories not."""
    seen = {str(out), f"{out}.lock"}
    for given in inputs:
        top = os.path.abspath(given)
        if os.path.isdir(top):
            found = sorted(_walk(top, skip), key=itemgetter(0))
        elif os.path.exists(top):
            found = [(top, os.stat(top))]
        else:
            skip(str(given), "no such file or directory")
            continue
        for path, st in found:
            if path not in seen:
                seen.add(path)
                yield table.Source(path, st.st_size, st.st_mtime_ns)


def _walk(top: str, skip: Callable[[str, str], None]) -> Iterator[tuple[str, os.stat_result]]:
    """Iterative (a stack, not recursion): a tree of any depth is walked, or its too-long
    paths skipped one by one."""
    stack = [top]
    while stack:
        where = stack.pop()
        try:
            with os.scandir(where) as it:
                entries = [e for e in it if not e.name.startswith(".")]
        except OSError as exc:
            skip(where, f"cannot list directory: {exc.strerror}")
            continue
        names = {e.name for e in entries}
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if not (entry.name.endswith(".segments") and entry.name[: -len(".segments")] in names):
                        stack.append(entry.path)
                elif entry.name.endswith(SUFFIXES) and entry.is_file():
                    yield entry.path, entry.stat()
            except OSError as exc:
                skip(entry.path, exc.strerror or "cannot stat")


@contextlib.contextmanager
def _open_table(out: Path, summary_only: bool) -> Iterator[h5py.File]:
    """The table, copied into memory (it is small: one row per point) and extended there.
    HDF5 never writes to the disk: a full disk fails the plain write of the image instead
    of leaving HDF5 half-closed (which crashed the process)."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_fapl_core(backing_store=False)
    if out.exists():
        fapl.set_file_image(out.read_bytes())
        f = h5py.File(h5py.h5f.open(os.fsencode(f"{out}.in-memory"), h5py.h5f.ACC_RDWR, fapl=fapl))
    else:
        fapl.set_libver_bounds(h5py.h5f.LIBVER_LATEST, h5py.h5f.LIBVER_LATEST)
        f = h5py.File(h5py.h5f.create(os.fsencode(f"{out}.in-memory"), h5py.h5f.ACC_TRUNC, fapl=fapl))
        table.create(f, summary_only)
    with f:
        yield f


class _Merge:
    """One merge's work on the temp table: admit batches of rows, copy request data, append."""

    def __init__(self, state: _Output, stats: MergeStats, skip: Callable[[str, str], None], seg_dir: Path) -> None:
        self.ids, self.kinds, self.stats, self.skip = state.ids, state.kinds, stats, skip
        self.stored = dict(state.kinds)  # kinds of the columns in the table file
        self.full = not state.summary_only
        self.merge_no = state.merges + 1
        self.seg_dir = seg_dir
        self.used: set[str] = set()  # segments the new rows refer to
        self._segments = 0
        self._pending: list[table.Batch] = []
        self._f: h5py.File | None = None

    def run(self, f: h5py.File, files: list[table.Source], progress: bool | None, workers: int) -> None:
        self._f = f
        parallel = workers if len(files) >= PARALLEL_FROM else 1
        tasks = gather.plan(files, self._segment_path, parallel)
        merged_files = []
        with _progress(len(files), progress) as tick:
            for result in gather.run_all(tasks, self.ids, parallel, tick):
                for kind, path, reason in result.outcomes:
                    if kind == "present":
                        self.stats.present += 1
                    elif kind == "merged":
                        merged_files.append(path)
                    else:
                        self.skip(path, reason)
                self._push(self._admit(result.batch))
                for path, row in result.odd:
                    self._push(self._admit(table.Batch.from_rows([row], [path])[0]))
            for path in merged_files:
                self._absorb(path)
        self._flush()
        f.attrs["merges"] = self.merge_no

    def _segment_path(self) -> str | None:
        if not self.full:
            return None
        self.seg_dir.mkdir(exist_ok=True)
        self._segments += 1
        return str(self.seg_dir / segments.name(self.merge_no, self._segments - 1))

    def _admit(self, batch: table.Batch) -> table.Batch:
        """The rows of ``batch`` that join: not here yet, and no kind clash with the table."""
        ids = batch.columns["result_id"][1].tolist() if len(batch) else []
        ok = np.fromiter((rid not in self.ids for rid in ids), bool, len(ids))
        self.stats.present += len(ok) - int(ok.sum())
        for name, (kind, _) in batch.columns.items():
            have = self.kinds.get(name)
            if have is not None and table.combined_kind(have, kind) is None:
                clash = ok & batch.present(name)
                for i in np.flatnonzero(clash):
                    self.skip(batch.where[i], f"{name} is {kind} here but {have} in the merged table")
                ok &= ~clash
        return batch if ok.all() else batch.select(ok)

    def _push(self, batch: table.Batch) -> None:
        """Add admitted rows to the table (in batches of BATCH_ROWS)."""
        if not len(batch):
            return
        for name, (kind, _) in batch.columns.items():
            self.kinds[name] = table.combined_kind(self.kinds.get(name), kind) or kind
        self.ids.update(batch.columns["result_id"][1].tolist())
        if "segment" in batch.columns:
            self.used.update(batch.columns["segment"][1].tolist())
        self._pending.append(batch)
        self.stats.merged += len(batch)
        if sum(len(b) for b in self._pending) >= BATCH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            assert self._f is not None
            table.append(self._f, self._pending, self.kinds, self.stored)
            self._pending = []

    def _absorb(self, path: str) -> None:
        """Take the points of another merged file that are new here, with their request data."""
        try:
            with h5py.File(path, "r") as f:
                table.check(f, path)
                columns = table.read_columns(f)
                has_requests = not f.attrs["summary_only"] and all(k in columns for k in segments.REFS)
        except (OSError, KeyError, table.MergedFileError) as exc:
            self.skip(path, f"damaged merged file: {store.short_error(exc)}")
            return
        if self.full and not has_requests:
            self.skip(path, "a merged file without per-request data (summary-only or from an older ixhpc): "
                            "merge it into a --summary-only output, or merge its run-point files")
            return
        keys = table.python_columns({k: columns[k] for k in ("result_id", "point_key") if k in columns})
        where = [f"{path} (point {key or rid[:12]})"
                 for rid, key in zip(keys["result_id"], keys.get("point_key") or [None] * len(keys["result_id"]))]
        if not self.full:
            self._push(self._admit(table.Batch(where, {k: v for k, v in columns.items() if k not in segments.REFS})))
            return
        by_segment = np.argsort(columns["segment"][1], kind="stable")  # one source segment at a time
        batch = self._admit(table.Batch(where, columns).select(by_segment))
        self._push(self._copy_requests(batch, segments.directory(path)))

    def _copy_requests(self, batch: table.Batch, source_dir: Path) -> table.Batch:
        """``batch`` (rows of a merged file) with its per-request data copied into new segments
        of ours; rows whose data cannot be read are skipped."""
        source = table.python_columns({k: batch.columns.pop(k) for k in segments.REFS})
        source.update(table.python_columns({k: batch.columns[k] for k in ("requests_sha256",) if k in batch.columns}))
        refs: dict[str, list[Any]] = {k: [] for k in segments.REFS}
        ok = np.ones(len(batch), bool)
        loaded: segments.Loaded | None = None
        writer: segments.Writer | None = None
        for i in range(len(batch)):
            ref = {k: values[i] for k, values in source.items()}
            try:
                if loaded is None or loaded.path.name != ref["segment"]:
                    loaded = segments.Loaded(source_dir / str(ref["segment"]))
                req = loaded.requests(ref)
            except (segments.SegmentError, TypeError) as exc:
                self.skip(batch.where[i], str(exc))
                ok[i] = False
                continue
            if writer is None or writer.nbytes >= gather.TASK_BYTES:
                if writer is not None:
                    writer.write()
                writer = segments.Writer(self._segment_path() or "")
            for k, v in writer.add(req).items():
                refs[k].append(v)
        if writer is not None:
            writer.write()
        batch = batch.select(ok)
        batch.columns.update({k: ("str", np.array(v, dtype=object)) if k == "segment" else ("int", np.array(v, "i8"))
                              for k, v in refs.items()})
        return batch


@contextlib.contextmanager
def _progress(total: int, show: bool | None) -> Iterator[Callable[[int], Any]]:
    """A tqdm bar's update (on a terminal, or when asked), else a no-op."""
    if not (show if show is not None else sys.stderr.isatty()):
        yield lambda n: None
        return
    from tqdm import tqdm

    with tqdm(total=total, unit="file", desc="merge", file=sys.stderr, delay=0.5) as bar:
        yield bar.update
