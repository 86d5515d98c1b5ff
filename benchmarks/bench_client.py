"""Is the load generator ever the bottleneck, and how far off are its timings?

Runs the simulated engine in its own process on 127.0.0.1 and the ixhpc.bench client in this
one, at 64, 512 and 4096 concurrent streams (``--waves`` x concurrency requests, at least
``--min-requests``, after one warm-up request per stream, which opens every keep-alive
connection), and prints two tables.

Keeping up: streamed tokens per client CPU-second, the client's share of one core, how long
the OS kept the runnable client off a CPU (``runq``, from /proc/self/schedstat: noise from
the other processes on this machine), the client's received token rate against the server's
emitted rate over the span of their token times, the decode step, ``rd lag p99`` (p99 over
requests of the longest wait between a read's bytes arriving and the client reading them; 0
with ``--token-clock read``, which cannot see it), and the token delivery lag (client time
minus server write time of the same token). Keeping up = the same rate, and reads no later
than one decode step at p99: the client never lets a step's tokens pile up.

Timing, client minus server, median and p99 in ms. Both sides use ``time.perf_counter()``
(CLOCK_MONOTONIC), so their times compare directly:

* ``ttft`` = client TTFT - server TTFT, which splits exactly into
  ``transit`` (server arrival - client start: the request's trip through loopback) +
  ``tok0`` (the first token's client time - its server write time);
* ``itl``: each client inter-token gap minus the server's gap between the same two writes;
* ``queue``: client request start - the moment the client began building it. It is *not* in
  the client's TTFT: the client's timer starts when the request is written to the socket
  (see ``ixhpc.bench.client``); an InferenceX-style timer, started before ``session.post``,
  would add it;
* ``intake``: the server's handler start - the request's arrival: how long the server's own
  event loop took to get to a request. It is in both sides' TTFT, so not in ``ttft``;
* ``srv/cli us/tok``: inside the bursts in which a decode step emits one token on every
  stream, the server's time per written token and the client's time per token. When the
  client's is larger, tokens queue in its sockets during a burst.

What the two sides record: the server's arrival is the kernel's receive stamp of the
request's first packet (``ixhpc.sim.listener``), each token's time when it is written. The
client's start is when the request's bytes go to the socket; each token's time is the kernel's
receive stamp of its bytes on the client's socket (``--token-clock read``: when the client read
them, which shows what a busy client's own event loop adds).

The engine's ``--time-scale`` is chosen so the *server* emits about ``--server-tokens-per-s``
(a one-core Python server cannot emit the 100k+ tokens/s a real GB200 does at 4096 streams).
This machine's cores are shared: run it two or three times and read the spread.

Side by side with InferenceX's client: with ``$IXHPC_INFERENCEX`` pointing at an InferenceX
checkout (its ``utils/bench_serving`` needs aiohttp, tqdm, transformers and huggingface_hub),
each concurrency also runs InferenceX's own ``benchmark_serving.benchmark`` (backend
``openai``, no warm-ups: its requests each open a connection anyway) against a fresh engine of
the same speed, with the same prompts, and a third table prints both clients' output tokens per
CPU-second of this process and their ratio (issue 18 asks for >= 2x at 64, 512 and 1024). Each
client runs as its own entry point does: InferenceX's ``main()`` collects and freezes the heap
(``gc.freeze``) before its run, ixhpc's ``client.benchmark`` after its warm-ups; unfrozen, the
~200k objects InferenceX imports (transformers) made both clients' full collections slow.

    python benchmarks/bench_client.py [--concurrency 64 512 4096] [--token-clock read] [--asyncio]
    IXHPC_INFERENCEX=~/InferenceX python benchmarks/bench_client.py --concurrency 64 512 1024
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import resource
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import numpy as np

from ixhpc.bench import client, dataset, eventloop
from ixhpc.sim import model


def start_server(conc: int, time_scale: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ixhpc.sim", "serve", "--host", "127.0.0.1", "--port", "0",
         "--max-batch", str(conc), "--time-scale", f"{time_scale}"],
        stdout=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline()  # type: ignore[union-attr]
    match = re.search(r"ready on (http://\S+)", line)
    if not match:
        proc.kill()
        raise SystemExit(f"simulated engine did not start: {line!r}")
    return proc, match.group(1)


def server_records(url: str) -> dict[str, dict[str, Any]]:
    with urllib.request.urlopen(url + "/sim/timings?clear=1", timeout=120) as resp:
        return {r["id"]: r for r in json.load(resp)["records"]}


def step_seconds(conc: int, tokens_per_s: float) -> float:
    """Wall time of one decode step when the server emits ``tokens_per_s`` over ``conc`` streams."""
    return conc / tokens_per_s


def pick_time_scale(conc: int, isl: int, osl: int, tokens_per_s: float) -> float:
    cfg = model.SimConfig(max_batch=conc)
    step = model.decode_step_time(cfg, conc, conc * (isl + osl // 2))
    return max(1.0, step_seconds(conc, tokens_per_s) / step)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _runqueue_wait() -> float:
    """Seconds this process has waited for a CPU while runnable (Linux schedstat; NaN elsewhere)."""
    try:
        with open("/proc/self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return float("nan")


async def measure(
    url: str, conc: int, isl: int, osl: int, waves: int, token_clock: str = "kernel_receive"
) -> tuple[list[client.RequestResult], float, float, float]:
    """Results, wall, client CPU and client run-queue seconds of ``waves`` x ``conc`` requests
    on warm connections."""
    cfg = client.ClientConfig(base_url=url, model="sim-model", ignore_eos=True, max_concurrency=conc,
                              token_clock=token_clock)
    with client.open_session(cfg) as session:
        await client.run_requests(session, cfg, dataset.random_prompts(conc, isl, 1, 1.0, seed=1))
        server_records(url)  # drop the warm-ups' records
        prompts = dataset.random_prompts(conc * waves, isl, osl, 1.0, seed=0)
        client.freeze_heap()  # as client.benchmark does after its warm-ups
        cpu0, wait0, t0 = _cpu(), _runqueue_wait(), time.perf_counter()
        results = await client.run_requests(session, cfg, prompts)
        return results, time.perf_counter() - t0, _cpu() - cpu0, _runqueue_wait() - wait0


def pair(results: list[client.RequestResult], records: dict[str, dict[str, Any]]) -> dict[str, np.ndarray]:
    """Per request and per token, the client's and the server's times of the same events."""
    rows: dict[str, list[Any]] = {k: [] for k in ("start", "queued", "arrival", "handled", "c0", "s0", "c", "s")}
    for r in results:
        rec = records.get(r.response_id)
        if not r.success or rec is None:
            continue
        c = np.frombuffer(r.token_times, dtype=np.float64)
        s = np.asarray(rec["token_times"])
        n = min(len(c), len(s))  # equal for the simulated engine: one chunk per token
        for key, value in (("start", r.start), ("queued", r.queued), ("arrival", rec["arrival"]),
                           ("handled", rec["handled"]),
                           ("c0", c[0]), ("s0", s[0]), ("c", c[:n]), ("s", s[:n])):
            rows[key].append(value)
    out = {k: np.asarray(v) for k, v in rows.items() if k not in ("c", "s")}
    out["itl"] = np.concatenate([np.diff(c) - np.diff(s) for c, s in zip(rows["c"], rows["s"])])
    out["c"], out["s"] = np.concatenate(rows["c"]), np.concatenate(rows["s"])
    return out


def burst_costs(server: np.ndarray, client_: np.ndarray, conc: int, step: float) -> tuple[float, float]:
    """Median server and client microseconds per token inside the decode steps' token bursts."""
    order = np.argsort(server)
    s, c = server[order], client_[order]
    cuts = np.flatnonzero(np.diff(s) > step / 4) + 1  # bursts are far shorter than a step
    srv, cli = [], []
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(s)]):
        if hi - lo >= max(2, conc // 2):
            srv.append((s[hi - 1] - s[lo]) / (hi - lo - 1))
            cli.append((c[lo:hi].max() - c[lo:hi].min()) / (hi - lo - 1))
    return (float(np.median(srv)) * 1e6, float(np.median(cli)) * 1e6) if srv else (np.nan, np.nan)


def run_point(
    conc: int, isl: int, osl: int, tokens_per_s: float, waves: int, token_clock: str, run: Callable[..., Any]
) -> dict[str, float]:
    scale = pick_time_scale(conc, isl, osl, tokens_per_s)
    proc, url = start_server(conc, scale)
    try:
        results, wall, cpu, runq = run(measure(url, conc, isl, osl, waves, token_clock))
        records = server_records(url)
    finally:
        proc.terminate()
        proc.wait(30)
    p = pair(results, records)
    out: dict[str, float] = {
        "conc": conc, "scale": scale, "failed": sum(not r.success for r in results), "tokens": len(p["c"]),
        "tok_per_cpu_s": len(p["c"]) / cpu, "cpu_share": cpu / wall, "runq_ms": runq * 1e3,
        "client_tok_s": len(p["c"]) / (p["c"].max() - p["c"].min()),
        "server_tok_s": len(p["s"]) / (p["s"].max() - p["s"].min()),
        "step_ms": step_seconds(conc, tokens_per_s) * 1e3,
    }
    out["rdlag_med"], out["rdlag_p99"] = np.percentile([r.read_lag * 1e3 for r in results], [50, 99])
    ms = {
        "ttft": (p["c0"] - p["start"]) - (p["s0"] - p["arrival"]),
        "transit": p["arrival"] - p["start"],
        "tok0": p["c0"] - p["s0"],
        "itl": p["itl"],
        "lag": p["c"] - p["s"],
        "queue": p["start"] - p["queued"],
        "intake": p["handled"] - p["arrival"],
    }
    for name, values in ms.items():
        out[f"{name}_med"], out[f"{name}_p99"] = np.percentile(values * 1e3, [50, 99])
    out["srv_us"], out["cli_us"] = burst_costs(p["s"], p["c"], conc, step_seconds(conc, tokens_per_s))
    return out


def inferencex_cost(checkout: str, conc: int, isl: int, osl: int, waves: int, tokens_per_s: float) -> float:
    """Output tokens per CPU-second of InferenceX's ``benchmark_serving.benchmark`` on a fresh
    engine at the same speed and prompts as ``measure`` (its loop: plain asyncio)."""
    sys.path.insert(0, os.path.join(checkout, "utils", "bench_serving"))
    import benchmark_serving  # InferenceX's module: not part of ixhpc

    proc, url = start_server(conc, pick_time_scale(conc, isl, osl, tokens_per_s))
    try:
        prompts = [(p.prompt, p.input_len, p.output_len, None)
                   for p in dataset.random_prompts(conc * waves, isl, osl, 1.0, seed=0)]
        gc.collect()  # as benchmark_serving's main() does before its run: the heap it imported
        gc.freeze()  # (transformers, ~200k objects) is then out of its collector's sight
        cpu0 = _cpu()
        result = asyncio.run(benchmark_serving.benchmark(
            backend="openai", api_url=url + "/v1/completions", base_url=url, model_id="sim-model",
            model_name="sim-model", tokenizer=None, input_requests=prompts, logprobs=None, best_of=1,
            request_rate=float("inf"), burstiness=1.0, disable_tqdm=True, num_warmups=0, profile=False,
            selected_percentile_metrics=["ttft", "tpot", "itl", "e2el"], selected_percentiles=[99.0],
            ignore_eos=True, goodput_config_dict={}, max_concurrency=conc, lora_modules=None))
        cpu = _cpu() - cpu0
    finally:
        proc.terminate()
        proc.wait(30)
    return float(result["total_output_tokens"]) / cpu


def print_ratio(rows: list[dict[str, float]]) -> None:
    print("\noutput tokens per client CPU-second: ixhpc vs InferenceX's benchmark_serving client")
    print(f"{'conc':>5} {'ixhpc':>9} {'InferenceX':>10} {'ratio':>6}")
    for r in rows:
        print(f"{r['conc']:>5} {r['tok_per_cpu_s']:>9.0f} {r['ix_tok_per_cpu_s']:>10.0f} "
              f"{r['tok_per_cpu_s'] / r['ix_tok_per_cpu_s']:>5.2f}x", flush=True)


def print_tables(rows: list[dict[str, float]]) -> None:
    print("\nkeeping up")
    print(f"{'conc':>5} {'scale':>6} {'fail':>4} {'tokens':>7} {'tok/cpu-s':>9} {'cli cpu':>7} "
          f"{'runq ms':>7} {'srv tok/s':>9} {'cli tok/s':>9} {'step ms':>7} {'rd lag p99':>10} {'keeps up':>8} "
          f"{'lag med':>8} {'lag p99':>8}")
    for r in rows:
        keeps = r["client_tok_s"] >= 0.98 * r["server_tok_s"] and r["rdlag_p99"] < r["step_ms"]
        print(f"{r['conc']:>5} {r['scale']:>6.2f} {r['failed']:>4} {r['tokens']:>7} {r['tok_per_cpu_s']:>9.0f} "
              f"{r['cpu_share']:>7.0%} {r['runq_ms']:>7.0f} {r['server_tok_s']:>9.0f} {r['client_tok_s']:>9.0f} "
              f"{r['step_ms']:>7.1f} {r['rdlag_p99']:>10.2f} {'yes' if keeps else 'NO':>8} "
              f"{r['lag_med']:>8.2f} {r['lag_p99']:>8.2f}")
    print("\ntiming, client minus server, ms (median / p99); per request ttft = transit + tok0")
    names = ("ttft", "transit", "tok0", "itl", "queue", "intake")
    print(f"{'conc':>5} " + " ".join(f"{n:>17}" for n in names) + f" {'srv/cli us/tok':>15}")
    for r in rows:
        cells = " ".join(f"{r[f'{n}_med']:>8.3f}/{r[f'{n}_p99']:<8.2f}" for n in names)
        print(f"{r['conc']:>5} {cells} {r['srv_us']:>7.1f}/{r['cli_us']:<7.1f}", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concurrency", type=int, nargs="+", default=[64, 512, 4096])
    p.add_argument("--isl", type=int, default=128)
    p.add_argument("--osl", type=int, default=64)
    p.add_argument("--server-tokens-per-s", type=float, default=8000.0)
    p.add_argument("--waves", type=int, default=2, help="requests = waves x concurrency")
    p.add_argument("--min-requests", type=int, default=1024,
                   help="more waves where waves x concurrency is fewer: a CPU figure of a second or "
                        "less is mostly noise (same requests for both clients)")
    p.add_argument("--token-clock", choices=client.TOKEN_CLOCKS, default="kernel_receive")
    p.add_argument("--asyncio", action="store_true",
                   help="run the client on asyncio's loop even if uvloop is installed")
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"ixhpc.bench client vs simulated engine on 127.0.0.1, isl={args.isl} osl={args.osl}, "
          f"{args.waves} x concurrency requests (at least {args.min_requests}) on warm connections; client on "
          f"{'asyncio' if args.asyncio else eventloop.name()}, "
          f"token clock {args.token_clock}")
    rows = []
    checkout = os.environ.get("IXHPC_INFERENCEX")
    for conc in args.concurrency:
        run = asyncio.run if args.asyncio else eventloop.run
        waves = max(args.waves, -(-args.min_requests // conc))
        rows.append(run_point(conc, args.isl, args.osl, args.server_tokens_per_s, waves, args.token_clock, run))
        if checkout:
            rows[-1]["ix_tok_per_cpu_s"] = inferencex_cost(checkout, conc, args.isl, args.osl, waves,
                                                           args.server_tokens_per_s)
        print(f"  conc {conc} done", flush=True)
    print_tables(rows)
    if checkout:
        print_ratio(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
