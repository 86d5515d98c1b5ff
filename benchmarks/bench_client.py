"""Is the load generator ever the bottleneck, and how far off are its timings?

Runs the simulated engine in its own process on 127.0.0.1 and the ixhpc.bench client in this
one, at 64, 512 and 4096 concurrent streams, and prints:

* streamed tokens per client CPU-second (this process's user+system CPU time during the run);
* client-measured minus server-recorded TTFT and ITL (median and p99 of the differences), where
  the server records each token's write time with the same CLOCK_MONOTONIC clock;
* send: server arrival (handler start) minus client send time, i.e. the part of the TTFT
  difference spent before the server saw the request (sending, accept, HTTP parse); and
  clisend: the client's own part of it, request start -> headers written to the socket;
* token delivery lag: client receipt time minus server write time of the same token, and the
  client's received token rate against the server's emitted rate (keeping up = equal rates and
  a lag that stays in milliseconds).

The engine's ``--time-scale`` is chosen so the *server* emits about ``--server-tokens-per-s``
(a one-core Python server cannot emit the 100k+ tokens/s a real GB200 does at 4096 streams).

    python benchmarks/bench_client.py [--concurrency 64 512 4096]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import subprocess
import sys
import time
import urllib.request

import aiohttp
import numpy as np

from ixhpc.bench import client, dataset
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


def server_records(url: str) -> dict[str, dict]:
    with urllib.request.urlopen(url + "/sim/timings?clear=1", timeout=120) as resp:
        return {r["id"]: r for r in json.load(resp)["records"]}


def pick_time_scale(conc: int, isl: int, osl: int, target_tps: float) -> float:
    cfg = model.SimConfig(max_batch=conc)
    step = model.decode_step_time(cfg, conc, conc * (isl + osl // 2))
    return max(1.0, conc / (target_tps * step))


def run_point(conc: int, isl: int, osl: int, target_tps: float, waves: int) -> dict[str, float]:
    scale = pick_time_scale(conc, isl, osl, target_tps)
    proc, url = start_server(conc, scale)
    try:
        cfg = client.ClientConfig(base_url=url, model="sim-model", ignore_eos=True, max_concurrency=conc)
        prompts = dataset.random_prompts(conc * waves, isl, osl, 1.0, seed=0)
        warmups = dataset.random_prompts(conc, isl, 1, 1.0, seed=1)  # opens every connection first

        sent: list[float] = []  # when each request's headers left the client
        trace = aiohttp.TraceConfig()

        async def on_sent(session: object, ctx: object, params: object) -> None:
            sent.append(time.perf_counter())

        trace.on_request_headers_sent.append(on_sent)

        async def measured() -> tuple[list[client.RequestResult], float, float, float]:
            async with client.open_session(cfg, [trace]) as session:
                await client.run_requests(session, cfg, warmups)
                server_records(url)  # drop the warm-ups' records
                sent.clear()
                cpu0 = _cpu()
                t0 = time.perf_counter()
                results = await client.run_requests(session, cfg, prompts)
                return results, time.perf_counter() - t0, _cpu() - cpu0, t0

        results, wall, cpu, _ = asyncio.run(measured())
        records = server_records(url)
    finally:
        proc.terminate()
        proc.wait(30)
    out = summarize(conc, scale, results, records, wall, cpu)
    # client-side send overhead: request start -> headers written (matched in start order)
    starts = np.sort([r.start for r in results])
    overhead = (np.sort(sent)[: len(starts)] - starts[: len(sent)]) * 1e3
    out["cli_send_med"], out["cli_send_p99"] = float(np.median(overhead)), float(np.percentile(overhead, 99))
    return out


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def summarize(conc: int, scale: float, results: list[client.RequestResult], records: dict[str, dict],
              wall: float, cpu: float) -> dict[str, float]:
    ttft_diff, itl_diff, lag, send_to_arrival = [], [], [], []
    tokens = 0
    first_server, last_server = np.inf, -np.inf
    for r in results:
        rec = records.get(r.response_id)
        if not r.success or rec is None:
            continue
        c = np.frombuffer(r.token_times, dtype=np.float64)
        s = np.asarray(rec["token_times"])
        n = min(len(c), len(s))
        tokens += len(c)
        ttft_diff.append((c[0] - r.start) - (s[0] - rec["arrival"]))
        send_to_arrival.append(rec["arrival"] - r.start)
        itl_diff.extend(np.diff(c[:n]) - np.diff(s[:n]))
        lag.extend(c[:n] - s[:n])
        first_server, last_server = min(first_server, s[0]), max(last_server, s[-1])
    ms = lambda xs, q: float(np.percentile(np.asarray(xs) * 1e3, q))  # noqa: E731
    failed = sum(not r.success for r in results)
    return {
        "conc": conc, "time_scale": scale, "failed": failed, "tokens": tokens,
        "tok_per_cpu_s": tokens / cpu if cpu else float("nan"),
        "client_cpu_share": cpu / wall,
        "client_tok_s": tokens / wall,
        "server_tok_s": tokens / (last_server - first_server),
        "ttft_med": ms(ttft_diff, 50), "ttft_p99": ms(ttft_diff, 99),
        "itl_med": ms(itl_diff, 50), "itl_p99": ms(itl_diff, 99),
        "lag_med": ms(lag, 50), "lag_p99": ms(lag, 99),
        "send_med": ms(send_to_arrival, 50), "send_p99": ms(send_to_arrival, 99),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concurrency", type=int, nargs="+", default=[64, 512, 4096])
    p.add_argument("--isl", type=int, default=128)
    p.add_argument("--osl", type=int, default=64)
    p.add_argument("--server-tokens-per-s", type=float, default=8000.0)
    p.add_argument("--waves", type=int, default=2, help="requests = waves x concurrency (later waves arrive "
                   "one by one as earlier requests finish, as in a steady benchmark)")
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"client (ixhpc.bench) vs simulated engine on 127.0.0.1, isl={args.isl} osl={args.osl}; "
          "diffs are client minus server, ms")
    header = (f"{'conc':>5} {'scale':>6} {'fail':>4} {'tokens':>7} {'tok/cpu-s':>9} {'cli cpu':>7} "
              f"{'cli tok/s':>9} {'srv tok/s':>9} {'ttft med':>8} {'ttft p99':>8} {'itl med':>8} {'itl p99':>8} "
              f"{'lag med':>8} {'lag p99':>8} {'send med':>8} {'send p99':>8} {'clisend med':>11} {'clisend p99':>11}")
    print(header)
    for conc in args.concurrency:
        r = run_point(conc, args.isl, args.osl, args.server_tokens_per_s, args.waves)
        print(f"{r['conc']:>5} {r['time_scale']:>6.2f} {r['failed']:>4} {r['tokens']:>7} {r['tok_per_cpu_s']:>9.0f} "
              f"{r['client_cpu_share']:>7.0%} {r['client_tok_s']:>9.0f} {r['server_tok_s']:>9.0f} "
              f"{r['ttft_med']:>8.3f} {r['ttft_p99']:>8.3f} {r['itl_med']:>8.3f} {r['itl_p99']:>8.3f} "
              f"{r['lag_med']:>8.3f} {r['lag_p99']:>8.3f} {r['send_med']:>8.3f} {r['send_p99']:>8.3f} "
              f"{r['cli_send_med']:>11.3f} {r['cli_send_p99']:>11.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
