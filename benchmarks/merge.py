"""Merge benchmark: files merged per second and peak memory, full and incremental.

    python benchmarks/merge.py [--files 10000] [--requests 640] [--itl-per-request 16]
                               [--incremental 100] [--mode both|full|summary-only] [--keep DIR]

Generates run-point files (640 requests each, realistic per-request arrays: lognormal TTFT,
gamma inter-token gaps, a few failed requests) in a temp dir, then times, each merge in a fresh
process: a full merge of ``--files`` files, then an incremental merge of ``--incremental`` more
(the whole directory is given again, as a user would), then a repeat with nothing new; with
per-request data kept, then ``--summary-only``. Generation time is not part of the figures.

Figures: the merge call's seconds, the whole command's seconds (interpreter start and imports
included), and peak memory of the process tree (the merging process plus its worker
processes: the sum of each one's peak RSS, sampled from /proc, an upper bound).

ITL: a real 1k-output point has ~640k gaps (2.5 MB as float32); 10,000 of them are 25 GB, so
the default is 16 gaps per request. Use ``--itl-per-request 1000`` with fewer ``--files`` to
measure the realistic byte rate. ``--keep DIR`` generates into DIR and reuses the files
already there (made with the same parameters).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

CHILD = r"""
import json, os, resource, sys, threading, time

def descendants():
    parent = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                parent[int(pid)] = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            pass
    tree, found = {os.getpid()}, True
    while found:
        new = {p for p, pp in parent.items() if pp in tree and p not in tree}
        tree |= new
        found = bool(new)
    return tree - {os.getpid()}

peaks = {}
def sample(stop):
    while not stop.wait(0.1):
        for pid in descendants():
            try:
                with open(f"/proc/{pid}/status") as fh:
                    hwm = next(int(l.split()[1]) for l in fh if l.startswith("VmHWM:"))
                peaks[pid] = max(peaks.get(pid, 0), hwm)
            except (OSError, StopIteration):
                pass

stop = threading.Event()
threading.Thread(target=sample, args=(stop,), daemon=True).start()
from ixhpc.results import merge
t = time.perf_counter()
stats = merge.merge(sys.argv[1].split(os.pathsep), sys.argv[2], summary_only=sys.argv[3] == "1",
                    on_skip=lambda p, r: None)
seconds = time.perf_counter() - t
stop.set()
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "merged": stats.merged, "present": stats.present,
                  "skipped": len(stats.skipped), "own_rss_mib": own / 1024,
                  "peak_mib": (own + sum(peaks.values())) / 1024, "processes": 1 + len(peaks)}))
"""


def make_point(i: int, n: int, itl_per_request: int):
    from ixhpc.results import metrics, store

    rng = np.random.default_rng(i)
    conc = int(2 ** (i % 9))
    ok = rng.random(n) > 0.005
    out_len = np.where(ok, itl_per_request + 1, 0).astype("i4")
    itl_counts = np.where(ok, itl_per_request, 0)
    offsets = np.zeros(n + 1, "i8")
    np.cumsum(itl_counts, out=offsets[1:])
    itl = rng.gamma(8.0, (6 + conc ** 0.8) / 8.0, int(offsets[-1])).astype("f4")
    ttft = rng.lognormal(math.log(150 + conc), 0.4, n)
    e2el = ttft + np.add.reduceat(np.append(itl, 0).astype("f8"), offsets[:-1]) * (itl_counts > 0)
    tpot = (e2el - ttft) / np.maximum(itl_counts, 1)
    for a in (ttft, tpot, e2el):
        a[~ok] = np.nan
    duration = float(np.nanmax(e2el)) / 1e3 * n / conc
    summary = {"completed": int(ok.sum()), "failed": int((~ok).sum()), "duration": duration,
               "total_token_throughput": float((1024 * ok.sum() + out_len.sum()) / duration),
               "output_throughput": float(out_len.sum() / duration), "max_concurrency": conc}
    for name, v in (("ttft", ttft[ok]), ("tpot", tpot[ok]), ("itl", itl), ("e2el", e2el[ok])):
        summary.update({f"mean_{name}_ms": float(v.mean()), f"median_{name}_ms": float(np.median(v)),
                        f"std_{name}_ms": float(v.std()), f"p90_{name}_ms": float(np.percentile(v, 90)),
                        f"p99_{name}_ms": float(np.percentile(v, 99)),
                        f"p99.9_{name}_ms": float(np.percentile(v, 99.9))})
    runner, framework = [("b200", "sglang"), ("mi355x", "vllm"), ("h200", "trt")][i % 3]
    meta = {"point_key": f"pt-{i}", "config_key": f"dsr1-fp4-{runner}-{framework}", "image": "img:1",
            "model": "deepseek-ai/DeepSeek-R1", "model_prefix": "dsr1", "precision": "fp4",
            "framework": framework, "runner": runner, "cluster": "bench", "isl": 1024, "osl": 1024,
            "max_model_len": 2304, "exp_name": "dsr1_1k1k", "spec_decoding": "none", "disagg": False,
            "multinode": False, "run_eval": False, "tp": 8, "ep": 1, "dp_attn": False, "nodes": 1,
            "gpus": 8, "conc": conc, "recipe_fingerprint": "ab" * 32, "job_id": str(100000 + i),
            "node_list": "node1", "start_time": "2025-01-01T00:00:00Z",
            "end_time": "2025-01-01T00:10:00Z", "ixhpc_version": "0.1.0"}
    columns = {"ttft": ttft, "tpot": tpot, "e2el": e2el, "start_time": np.sort(rng.uniform(0, duration, n)),
               "input_len": rng.integers(820, 1025, n), "output_len": out_len, "success": ok}
    return store.Point(
        metadata=meta, summary=summary, metrics=metrics.point_metrics(meta, summary), failure="",
        config={"seed": i, "random_range_ratio": 0.8, "num_warmups": 2, "request_rate": math.inf},
        requests=store.Requests.from_columns(columns, itl, offsets, np.where(ok, "", "HTTP 503: overloaded").tolist()),
    )


def _write(args: tuple[int, int, int, str]) -> int:
    from ixhpc.results import store

    i, n, itl, path = args
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        store.write(path, make_point(i, n, itl))
    return os.path.getsize(path)


def generate(directory: Path, start: int, count: int, n: int, itl: int) -> int:
    jobs = [(i, n, itl, str(directory / f"{i // 1000:03d}" / f"point-{i:06d}.h5")) for i in range(start, start + count)]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return sum(pool.map(_write, jobs, chunksize=64))


def timed_merge(inputs: list[Path], output: Path, summary_only: bool) -> dict:
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, os.pathsep.join(map(str, inputs)), str(output),
                           "1" if summary_only else "0"], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"merge failed:\n{done.stderr}")
    return {**json.loads(done.stdout), "command_seconds": time.perf_counter() - t}


def report(label: str, r: dict, files: int) -> None:
    print(f"{label}: {r['merged']} merged, {r['present']} already present in {r['seconds']:.2f} s "
          f"({files / r['seconds']:,.0f} files/s over {files} files; whole command {r['command_seconds']:.2f} s), "
          f"peak memory {r['peak_mib']:.0f} MiB over {r['processes']} process(es) "
          f"(merging process {r['own_rss_mib']:.0f} MiB)")


def run_mode(root: Path, base: Path, summary_only: bool, args: argparse.Namespace) -> tuple[dict, dict]:
    label = "summary only" if summary_only else "per-request data kept"
    out = root / ("summary.h5" if summary_only else "merged.h5")
    for stale in (out, Path(f"{out}.lock")):
        stale.unlink(missing_ok=True)
    seg_dir = Path(f"{out}.segments")
    if seg_dir.is_dir():
        for f in seg_dir.iterdir():
            f.unlink()
        seg_dir.rmdir()
    full = timed_merge([base], out, summary_only)
    report(f"full merge ({label})", full, args.files)
    size = (out.stat().st_size + sum(f.stat().st_size for f in seg_dir.glob("*")) if seg_dir.is_dir()
            else out.stat().st_size)
    print(f"  merged output: {size / 2**20:,.0f} MiB (table {out.stat().st_size / 2**20:,.1f} MiB)")
    inc = timed_merge([root / "points"], out, summary_only)
    report(f"incremental merge of {args.incremental} more ({label})", inc, args.incremental)
    again = timed_merge([root / "points"], out, summary_only)
    report(f"repeat merge, nothing new ({label})", again, args.files + args.incremental)
    print(f"  targets: full < 20 s, peak < 1024 MiB, incremental < 1 s -> "
          f"{'ok' if full['seconds'] < 20 else 'MISSED'} / "
          f"{'ok' if max(full['peak_mib'], inc['peak_mib']) < 1024 else 'MISSED'} / "
          f"{'ok' if inc['seconds'] < 1 else 'MISSED'}")
    return full, inc


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=10_000)
    p.add_argument("--requests", type=int, default=640)
    p.add_argument("--itl-per-request", type=int, default=16)
    p.add_argument("--incremental", type=int, default=100)
    p.add_argument("--mode", choices=("both", "full", "summary-only"), default="both")
    p.add_argument("--keep", type=Path, help="generate into (or reuse) this directory")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="ixhpc-merge-bench-") as tmp:
        root = args.keep or Path(tmp)
        base, more = root / "points" / "base", root / "points" / "more"
        t = time.perf_counter()
        size = generate(base, 0, args.files, args.requests, args.itl_per_request)
        generate(more, args.files, args.incremental, args.requests, args.itl_per_request)
        print(f"generated {args.files} + {args.incremental} files x {args.requests} requests x "
              f"{args.itl_per_request} ITL ({size / 2**20:,.0f} MiB) in {time.perf_counter() - t:.0f} s (not timed)")
        for summary_only in {"both": (False, True), "full": (False,), "summary-only": (True,)}[args.mode]:
            run_mode(root, base, summary_only, args)


if __name__ == "__main__":
    main()
