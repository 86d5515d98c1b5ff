"""Reading run-point files for a merge: table rows back, per-request data into new segments.

A task reads a run of files, writes their per-request data into a segment of its own and
returns only the table rows. On several cores tasks run in worker processes (HDF5 holds the
GIL, so threads would not help), and the request arrays never cross a process boundary:
pickling them to a writer process cost about as much as reading them. The price: a worker
writes a point's data before the merge decides on its row, so the rare row refused afterwards
(a copy of a file another worker read, a column-kind clash) leaves unreferenced bytes in a
segment; a segment no kept row refers to is removed.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator, Set
from dataclasses import dataclass
from typing import Any

from ixhpc.errors import UserError
from ixhpc.results import segments, store, table

TASK_FILES = 512  # files per task at most: bounds the rows a task returns at once
TASK_BYTES = 32 << 20  # file bytes per task at most: bounds a worker's memory and a segment's size
MIN_TASK_BYTES = 4 << 20

# files that gave no row: ("present", path, None) | ("merged", path, None) | ("skip", path, reason)
Outcome = tuple[str, str, Any]


@dataclass
class Result:
    outcomes: list[Outcome]
    batch: table.Batch  # the rows read
    odd: list[tuple[str, dict[str, Any]]]  # (path, row): rows whose kinds clash with the batch's


@dataclass
class Task:
    files: list[table.Source]
    segment: str | None  # the segment file to write the files' per-request data to; None: none


def plan(files: list[table.Source], segment_path: Callable[[], str | None], workers: int) -> list[Task]:
    """Cut ``files`` into tasks: a few per worker so the last ones finish together."""
    total = sum(f.size for f in files)
    limit = min(TASK_BYTES, max(MIN_TASK_BYTES, total // (workers * 8))) if workers > 1 else TASK_BYTES
    chunks: list[list[table.Source]] = [[]]
    size = 0
    for f in files:
        if chunks[-1] and (size + f.size > limit or len(chunks[-1]) >= TASK_FILES):
            chunks.append([])
            size = 0
        chunks[-1].append(f)
        size += f.size
    return [Task(chunk, segment_path()) for chunk in chunks if chunk]


_known: Set[str] = frozenset()  # in a worker: result ids the output already holds


def _init_worker(known: Set[str], merge_pid: int) -> None:
    global _known
    _known = known
    _die_with_parent(merge_pid)


_PR_SET_PDEATHSIG = 1


def _die_with_parent(merge_pid: int) -> None:
    """Be killed when our parent (the forkserver, which exits when the merge does) dies: a
    killed merge must not leave workers writing segments under the next merge's feet."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the pool's own checks remain
        pass
    try:
        os.kill(merge_pid, 0)  # died before prctl took effect?
    except ProcessLookupError:
        os._exit(1)
    except PermissionError:
        pass


def run(task: Task, known: Set[str] | None = None, tick: Callable[[int], Any] | None = None) -> Result:
    """Read the task's files; write their per-request data (if wanted) to the task's segment."""
    known = _known if known is None else known
    writer = segments.Writer(task.segment) if task.segment else None
    seen: set[str] = set()
    outcomes: list[Outcome] = []
    rows: list[dict[str, Any]] = []
    where: list[str] = []
    for source in task.files:
        got = _read(source, writer, known, seen)
        if isinstance(got, dict):
            rows.append(got)
            where.append(source.path)
        else:
            outcomes.append(got)
        if tick:
            tick(1)
    if writer is not None:
        writer.write()
    batch, odd = table.Batch.from_rows(rows, where)
    return Result(outcomes, batch, [(where[i], rows[i]) for i in odd])


def _read(source: table.Source, writer: segments.Writer | None, known: Set[str],
          seen: set[str]) -> dict[str, Any] | Outcome:
    """The file's table row, or why it gives none."""
    try:
        with store.PointReader(source.path) as reader:
            point = reader.point()
            if point.result_id in known or point.result_id in seen:
                return ("present", source.path, None)
            if writer is not None:
                reader.add_requests(point)
    except store.PointFileError as exc:
        if exc.kind == table.FORMAT:
            return ("merged", source.path, None)
        if exc.kind == segments.FORMAT:
            return ("skip", source.path, "per-request data of a merged file; give the merged file instead")
        return ("skip", source.path, exc.reason)
    row = table.point_row(point, source)
    problem = table.unfit(row)
    if problem:
        return ("skip", source.path, f"not a run-point file ixhpc wrote ({problem})")
    seen.add(point.result_id)
    if writer is not None and point.requests is not None:
        row.update(writer.add(point.requests))
    return row


def run_all(tasks: list[Task], known: Set[str], workers: int,
            tick: Callable[[int], Any]) -> Iterator[Result]:
    """Each task's outcomes, in task order; on several cores, tasks run in worker processes."""
    if workers < 2 or len(tasks) < 2:
        for task in tasks:
            yield run(task, known, tick)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    # forkserver: never fork a process that holds HDF5 state
    pool = ProcessPoolExecutor(min(workers, len(tasks)), mp_context=multiprocessing.get_context("forkserver"),
                               initializer=_init_worker, initargs=(frozenset(known), os.getpid()))
    try:
        futures = [pool.submit(run, task) for task in tasks]  # results are rows only: small
        for task, future in zip(tasks, futures):
            yield future.result()
            tick(len(task.files))
    except BrokenProcessPool:
        raise UserError("a merge worker process died (out of memory?); the output is unchanged") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def default_workers() -> int:
    return min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 8)
