"""Merge run-point files into one merged file: incremental, idempotent, and safe.

Safety comes from two rules. (1) A sidecar lock (``<output>.lock``, fcntl) serialises merges
into the same output, so two never interleave. (2) The output is never modified in place: a
merge copies it to a temp file beside it (a kernel-side copy), appends there and renames the
copy over the output. HDF5 is not crash-safe in place (a kill mid-write can leave its
metadata half updated), so a killed merge must only ever leave a stray temp file, which the
next merge removes while holding the lock. Nothing new to add = nothing written at all.

Incremental: new points are appended to resizable, chunked datasets; the old rows are copied
as bytes, never re-encoded. Idempotent: points are keyed by ``result_id`` (a content hash
written into every point file), and a file whose path, size and mtime match a merged row is
not even opened again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import h5py

from ixhpc.atomic import atomic_path
from ixhpc.errors import UserError
from ixhpc.results import store, table

SUFFIXES = (".h5", ".hdf5")
BATCH_POINTS = 2000
PARALLEL_FROM = 200  # below this, starting worker processes costs more than it saves
READ_CHUNK = 16  # files per worker task
READ_AHEAD = 3  # tasks in flight per worker
BATCH_BYTES = 128 << 20  # bounds memory whatever the ITL arrays weigh
REQUEST_BOOKKEEPING = ("req_start", "req_count", "itl_start", "itl_count")


@dataclass
class MergeStats:
    merged: int = 0
    present: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def line(self) -> str:
        return f"{self.merged} merged, {len(self.skipped)} skipped, {self.present} already present"


class _NothingNew(Exception):
    """Raised inside the atomic write to throw the copy away: the output stays untouched."""


def _print_skip(path: str, reason: str) -> None:
    print(f"skipped {path}: {reason}", file=sys.stderr)


def merge(inputs: Iterable[str | os.PathLike[str]], output: str | os.PathLike[str],
          summary_only: bool = False, progress: bool | None = None,
          on_skip: Callable[[str, str], None] = _print_skip) -> MergeStats:
    """Merge the run-point files in ``inputs`` (files or directories, recursively) into ``output``."""
    out = Path(output).absolute()
    stats = MergeStats()

    def skip(path: str, reason: str) -> None:
        stats.skipped.append((path, reason))
        on_skip(path, reason)

    with _locked(out):
        _remove_stale_temps(out)
        ids, sources, kinds, summary_only = _existing(out, summary_only)
        todo: list[tuple[Path, table.Source]] = []
        for path in _candidates(inputs, out, skip):
            st = path.stat()
            source = table.Source(str(path), st.st_size, st.st_mtime_ns)
            if sources.get(source.path) == (source.size, source.mtime_ns):
                stats.present += 1
            else:
                todo.append((path, source))
        if not todo:
            return stats
        try:
            with atomic_path(out) as tmp:
                with _open_copy(out, tmp, summary_only) as f:
                    _merge_into(f, todo, ids, kinds, summary_only, stats, skip, progress)
                if not stats.merged:
                    raise _NothingNew
        except _NothingNew:
            pass
    return stats


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


def _remove_stale_temps(out: Path) -> None:
    """Temp copies of killed merges (named by ixhpc.atomic); only we write them, under the lock."""
    for stale in out.parent.glob(f".{out.name}.*.tmp"):
        stale.unlink(missing_ok=True)


def _existing(out: Path, summary_only: bool):
    """(result ids, path -> (size, mtime_ns), column kinds, summary_only) of the current output."""
    if not out.exists():
        return set(), {}, {}, summary_only
    try:
        with h5py.File(out, "r") as f:
            table.check(f, out)
            has_requests = not bool(f.attrs["summary_only"])
            if summary_only and has_requests:
                raise UserError(f"{out} holds per-request data; merge into it without --summary-only")
            cols = table.read_columns(f, ["result_id", "source_path", "source_size", "source_mtime_ns"])
            kinds = table.column_kinds(f)
    except OSError as exc:
        raise UserError(f"{out} exists but is not a readable HDF5 file ({store.short_error(exc)}); "
                        "refusing to replace it") from None
    except table.MergedFileError as exc:
        raise UserError(f"{exc}; refusing to replace it") from None
    ids = set(cols["result_id"][1].tolist()) if "result_id" in cols else set()
    sources = {}
    if "source_path" in cols:
        sources = dict(zip(cols["source_path"][1].tolist(),
                           zip(cols["source_size"][1].tolist(), cols["source_mtime_ns"][1].tolist())))
    return ids, sources, kinds, not has_requests


def _candidates(inputs: Iterable[str | os.PathLike[str]], out: Path,
                skip: Callable[[str, str], None]) -> Iterator[Path]:
    """Every input file once; directories walked recursively for *.h5 / *.hdf5, hidden ones not."""
    seen = {out, Path(f"{out}.lock")}
    for given in inputs:
        top = Path(given).absolute()
        if top.is_dir():
            found = sorted(_walk(top))
        elif top.exists():
            found = [top]
        else:
            skip(str(given), "no such file or directory")
            continue
        for path in found:
            if path not in seen:
                seen.add(path)
                yield path


def _walk(top: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.endswith(SUFFIXES) and not name.startswith("."):
                yield Path(root, name)


@contextlib.contextmanager
def _open_copy(out: Path, tmp: Path, summary_only: bool) -> Iterator[h5py.File]:
    if out.exists():
        shutil.copyfile(out, tmp)  # copy_file_range/sendfile: kernel-side, reflink where supported
        with h5py.File(tmp, "r+") as f:
            yield f
    else:
        with h5py.File(tmp, "w", libver="latest") as f:
            table.create(f, summary_only)
            yield f


def _merge_into(f: h5py.File, todo, ids: set[str], kinds: dict[str, str], summary_only: bool,
                stats: MergeStats, skip, progress: bool | None) -> None:
    from tqdm import tqdm

    show = progress if progress is not None else sys.stderr.isatty()
    batch: list[store.Point] = []
    rows: list[dict] = []
    weight = 0
    bar = tqdm(total=len(todo), unit="file", desc="merge", file=sys.stderr, disable=not show, delay=0.5)
    for (path, source), (point, reason) in zip(todo, _read_all([p for p, _ in todo], not summary_only)):
        bar.update()
        if point is None:
            skip(str(path), reason)
            continue
        if point.result_id in ids:
            stats.present += 1
            continue
        row = table.point_row(point, source)
        clash = _reconcile(kinds, row)
        if clash:
            skip(str(path), clash)
            continue
        ids.add(point.result_id)
        batch.append(point)
        rows.append(row)
        weight += point.itl_values.nbytes + 64 * point.n_requests
        if len(batch) >= BATCH_POINTS or weight >= BATCH_BYTES:
            _flush(f, batch, rows, kinds, summary_only, stats)
            batch, rows, weight = [], [], 0
    _flush(f, batch, rows, kinds, summary_only, stats)
    bar.close()


def _read_chunk(paths: list[Path], with_requests: bool) -> list[tuple[store.Point | None, str]]:
    out: list[tuple[store.Point | None, str]] = []
    for path in paths:
        try:
            out.append((store.read(path, with_requests=with_requests), ""))
        except store.PointFileError as exc:
            out.append((None, exc.reason))
    return out


def _read_all(paths: list[Path], with_requests: bool) -> Iterator[tuple[store.Point | None, str]]:
    """Read points in order; on several cores, in worker processes (HDF5 holds the GIL).

    Workers read at most READ_AHEAD chunks ahead of the writer, so memory stays bounded
    however big the per-request arrays are.
    """
    chunks = [paths[i:i + READ_CHUNK] for i in range(0, len(paths), READ_CHUNK)]
    workers = min(os.cpu_count() or 1, 8)
    if len(paths) < PARALLEL_FROM or workers < 2:
        for chunk in chunks:
            yield from _read_chunk(chunk, with_requests)
        return
    import multiprocessing
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    # forkserver: never fork a process that holds HDF5 state
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver")) as pool:
        todo = iter(chunks)
        pending = deque(pool.submit(_read_chunk, c, with_requests) for c in _take(todo, READ_AHEAD * workers))
        while pending:
            done = pending.popleft().result()
            pending.extend(pool.submit(_read_chunk, c, with_requests) for c in _take(todo, 1))
            yield from done


def _take(iterator: Iterator[list[Path]], n: int) -> list[list[Path]]:
    return [chunk for _, chunk in zip(range(n), iterator)]


def _reconcile(kinds: dict[str, str], row: dict) -> str | None:
    """Widen ``kinds`` to take ``row``, or say why the row cannot join the table."""
    wanted = {}
    for name, value in row.items():
        kind = table.combined_kind(kinds.get(name), table.kind_of(value))
        if kind is None:
            return f"{name} is {table.kind_of(value)} here but {kinds[name]} in the merged table"
        wanted[name] = kind
    kinds.update(wanted)
    return None


def _flush(f: h5py.File, batch: list[store.Point], rows: list[dict], kinds: dict[str, str],
           summary_only: bool, stats: MergeStats) -> None:
    if not batch:
        return
    if not summary_only:
        table.append_requests(f, batch, rows)
        kinds.update({name: "int" for name in REQUEST_BOOKKEEPING})
    table.append_rows(f, rows, kinds)
    stats.merged += len(batch)
