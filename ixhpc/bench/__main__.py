"""``python -m ixhpc.bench``: run one benchmark point against an OpenAI-compatible server.

Exit status: 0 when the point passed, 1 when it failed (more than 5% of the requests failed,
or no output tokens came back; the result file is still written and states why) or the
server could not be reached, 2 for bad arguments (``ixhpc.errors``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
from typing import Any

from ixhpc import atomic
from ixhpc.bench import client, dataset, eventloop, metrics, servermetrics, validity, workers
from ixhpc.bench import goodput as slo
from ixhpc.errors import ConfigError, IxhpcError, main_guard

RESULT_FORMATS = ("ixhpc", "benchmark_serving")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ixhpc.bench",
        description="Benchmark an OpenAI-compatible streaming server with random prompts.",
    )
    p.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:8000")
    p.add_argument("--model", help="model name (default: the first one the server lists)")
    p.add_argument("--endpoint", default="/v1/completions", choices=("/v1/completions", "/v1/chat/completions"))
    p.add_argument("--use-chat-template", action="store_true",
                   help="apply the model's chat template to each prompt: sent as a user message to "
                        "/v1/chat/completions, where the server applies the template its model ships "
                        "(this client has no tokenizer); same as --endpoint /v1/chat/completions")
    p.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (default 0: greedy)")
    p.add_argument("--isl", type=int, required=True, help="input sequence length (tokens)")
    p.add_argument("--osl", type=int, required=True, help="output sequence length (tokens)")
    p.add_argument("--random-range-ratio", type=float, default=1.0, help="lengths uniform in [ratio*len, len]")
    p.add_argument("--num-prompts", type=int, help="default: max-concurrency x 10")
    p.add_argument("--max-concurrency", type=int, required=True)
    p.add_argument("--request-rate", type=float, default=math.inf,
                   help="requests/s, Poisson arrivals unless --burstiness (default inf: all at once)")
    p.add_argument("--burstiness", type=float, default=1.0,
                   help="gamma shape of the gaps between arrivals at a finite rate, as vLLM's: 1 = Poisson, "
                        "< 1 burstier, > 1 more even (default %(default)g)")
    p.add_argument("--slo", metavar="SPEC",
                   help="latency objectives for goodput, e.g. ttft=2s,tpot=50ms[,e2el=..][,attainment=0.9] "
                        "(ixhpc.slo): the summary gains good_requests, request_goodput, goodput_fraction")
    p.add_argument("--goodput", nargs="+", metavar="KEY:MS",
                   help="vLLM's spelling of --slo: ttft:2000 tpot:50 (ms)")
    p.add_argument("--num-warmups", type=int, default=0, help="requests sent first and not counted")
    p.add_argument("--ignore-eos", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prompt-format", choices=("text", "token-ids"), default="text")
    p.add_argument("--request-timeout", type=float, default=6 * 3600.0, help="seconds per request")
    p.add_argument("--stall-timeout", type=float, default=300.0, metavar="SECONDS",
                   help="fail a request that receives nothing for this long, its first token included "
                        "(default %(default)g; inf: never)")
    p.add_argument("--max-line-bytes", type=int, default=1 << 20, metavar="BYTES",
                   help="fail a request whose stream sends a longer SSE line (default %(default)d)")
    p.add_argument("--token-clock", choices=client.TOKEN_CLOCKS, default="kernel_receive",
                   help="token times: when the kernel received the bytes (default) or when they were read")
    p.add_argument("--workers", type=int, default=1,
                   help="client processes sharing the concurrency, at most one per stream (raise it "
                        "when the printed client read lag approaches the inter-token latency)")
    p.add_argument("--metrics-url", action="append", default=[], metavar="ROLE=URL",
                   help="scrape this Prometheus /metrics (an engine's or router's) during the "
                        "benchmark; repeatable (ixhpc.bench.servermetrics)")
    p.add_argument("--metrics-interval", type=float, default=servermetrics.DEFAULT_INTERVAL, metavar="SECONDS",
                   help="seconds between scrapes (default %(default)g)")
    p.add_argument("--output", help="result JSON file (written atomically)")
    p.add_argument("--result-format", choices=RESULT_FORMATS, default="ixhpc",
                   help="format of --output: ixhpc's (docs/contracts.md) or InferenceX's "
                        "benchmark_serving result, which InferenceX's tools read (default %(default)s)")
    p.add_argument("--serving-output", metavar="FILE",
                   help="also write the result in benchmark_serving's format to FILE")
    return p


def _check(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.isl < 1 or args.osl < 1:
        p.error("--isl and --osl must be >= 1")
    if not 0.0 <= args.random_range_ratio <= 1.0:
        p.error("--random-range-ratio must be in [0, 1]")
    if args.max_concurrency < 1:
        p.error("--max-concurrency must be >= 1")
    if args.workers < 1:
        p.error("--workers must be >= 1")
    if args.num_prompts is not None and args.num_prompts < 1:
        p.error("--num-prompts must be >= 1")
    if not args.request_rate > 0:
        p.error("--request-rate must be > 0 (inf for all at once)")
    if not 0 < args.burstiness < math.inf:
        p.error("--burstiness must be > 0")
    if args.slo and args.goodput:
        p.error("--slo and --goodput are two spellings of one setting: give one")
    spec = args.slo or (" ".join(args.goodput) if args.goodput else None)
    try:
        args.objectives = slo.parse(spec) if spec else None
    except ConfigError as exc:
        p.error("; ".join(exc.errors))
    if args.num_warmups < 0 or args.request_timeout <= 0:
        p.error("--num-warmups must be >= 0 and --request-timeout > 0")
    if not args.stall_timeout > 0:
        p.error("--stall-timeout must be > 0 (inf for no limit)")
    if args.max_line_bytes < 64:
        p.error("--max-line-bytes must be >= 64")
    for flag, path in (("--output", args.output), ("--serving-output", args.serving_output)):
        if path and os.path.exists(path):
            p.error(f"{flag} {path} exists; results are never overwritten")
    if not args.base_url.startswith(("http://", "https://")):
        p.error("--base-url must start with http:// or https://")
    if not 0.1 <= args.metrics_interval <= 600:
        p.error("--metrics-interval must be in [0.1, 600] seconds")
    try:
        args.metrics_targets = [servermetrics.parse_target(s) for s in args.metrics_url]
    except ValueError as exc:
        p.error(str(exc))


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _print_summary(summary: dict[str, Any], failure: str | None) -> None:
    print("=========== ixhpc.bench result ===========")
    for key in ("completed", "failed", "duration", "total_input_tokens", "total_output_tokens",
                "request_throughput", "output_throughput", "total_token_throughput"):
        print(f"{key:<32}{summary[key]:>12.2f}" if isinstance(summary[key], float) else f"{key:<32}{summary[key]:>12}")
    for name in ("ttft", "tpot", "itl", "e2el"):
        print(f"-- {name} (ms): " + "  ".join(
            f"{stat}={summary[f'{stat}_{name}_ms']:.2f}" for stat in ("mean", "median", "p99", "p99.9")
        ))
    print(f"point: {'FAILED: ' + failure if failure else 'ok'}", flush=True)


@main_guard("ixhpc.bench")
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a == "--scenario" or a.startswith("--scenario=") for a in argv):  # agentic-coding replay
        from ixhpc.bench.agentic import cli as agentic_cli
        return agentic_cli.main(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    _check(parser, args)
    num_prompts = args.num_prompts or args.max_concurrency * 10
    _raise_fd_limit()
    model = args.model
    if model is None:
        try:
            model = eventloop.run(client.first_model(args.base_url))
        except Exception as exc:  # noqa: BLE001 - any reason the listing failed is one line
            raise IxhpcError(f"cannot list models at {args.base_url}/v1/models ({exc}); "
                             "pass --model") from None
    token_ids = args.prompt_format == "token-ids"
    prompts = dataset.random_prompts(num_prompts, args.isl, args.osl, args.random_range_ratio, args.seed, token_ids)
    warmups = dataset.random_prompts(args.num_warmups, args.isl, args.osl, args.random_range_ratio,
                                     args.seed + 1, token_ids)
    n_workers = min(args.workers, args.max_concurrency)
    cfg = client.ClientConfig(
        base_url=args.base_url, model=model, ignore_eos=args.ignore_eos, temperature=args.temperature,
        endpoint="/v1/chat/completions" if args.use_chat_template else args.endpoint,
        max_concurrency=args.max_concurrency, request_rate=args.request_rate, burstiness=args.burstiness,
        request_timeout=args.request_timeout, seed=args.seed,
        token_clock=args.token_clock, stall_timeout=args.stall_timeout, max_line_bytes=args.max_line_bytes,
    )
    scraper = servermetrics.Scraper(args.metrics_targets, args.metrics_interval).start()
    try:
        results, start, duration = workers.benchmark(cfg, prompts, warmups, n_workers)
    except ValueError as exc:  # a setting the HTTP client refuses (the URL, a header)
        raise ConfigError(str(exc)) from None
    except RuntimeError as exc:  # a client worker process failed
        raise IxhpcError(str(exc)) from None
    finally:
        scraper.stop()
    unix_minus_perf = time.time() - time.perf_counter()
    clock = {"start_perf_counter": start, "start_unix": start + unix_minus_perf,
             "end_unix": start + duration + unix_minus_perf}  # the benchmark's own window
    server_metrics = scraper.document(start, duration) if scraper.targets else None
    if server_metrics:
        print("server metrics: " + "  ".join(f"{k[4:]}={v:.4g}" for k, v in server_metrics["summary"].items()))
    summary = metrics.summarize(results, duration, args.max_concurrency, args.request_rate, args.objectives)
    failure = metrics.point_failure(summary)
    evidence = metrics.validity_evidence(results, summary, args.ignore_eos, cfg.stall_timeout)
    verdict = {**validity.judge(evidence), "evidence": evidence}
    _print_summary(summary, failure)
    print(f"validity: {validity.line(verdict)}")
    if args.objectives is not None:
        print(f"goodput ({args.objectives.text()}): {summary['good_requests']} good requests, "
              f"{summary['request_goodput']:.2f} req/s, fraction {summary['goodput_fraction']:.3f}")
    if cfg.token_clock == "kernel_receive" and results:
        lag = max(r.read_lag for r in results) * 1e3
        print(f"client read lag (ms): max={lag:.2f} (how late this client read arrived bytes; "
              "token times are when they arrived)")
    created = metrics.created_ttft(results)
    if created:
        print("ttft from request creation (InferenceX's timer) (ms): " + "  ".join(
            f"{k}={v:.3f}" for k, v in created.items()))
    if args.output:
        arrays = metrics.request_arrays(results, start)
        document = {
            "summary": summary,
            "requests": arrays,
            "config": {
                "base_url": args.base_url, "model": model, "isl": args.isl, "osl": args.osl,
                "random_range_ratio": args.random_range_ratio, "num_prompts": num_prompts,
                "max_concurrency": args.max_concurrency, "request_rate": args.request_rate,
                "burstiness": args.burstiness, **({"slo": args.objectives.text()} if args.objectives else {}),
                "num_warmups": args.num_warmups, "ignore_eos": args.ignore_eos, "seed": args.seed,
                "timer_start": client.TIMER_START, "token_clock": cfg.token_clock,
                "endpoint": cfg.endpoint, "temperature": cfg.temperature,
                "stall_timeout": cfg.stall_timeout, "max_line_bytes": cfg.max_line_bytes,
                "workers": n_workers,
            },
            "failure": failure,
            "validity": verdict,
            "clock": clock,
            **({"server_metrics": server_metrics} if server_metrics else {}),
        }
        serving = metrics.serving_document(summary, arrays,
                                           {"model": model, "burstiness": args.burstiness}, clock["start_unix"],
                                           time.strftime("%Y%m%d-%H%M%S"))
        atomic.write_text(args.output, json.dumps(serving if args.result_format == "benchmark_serving"
                                                  else document))
        print(f"wrote {args.output}")
        if args.serving_output:
            atomic.write_text(args.serving_output, json.dumps(serving))
            print(f"wrote {args.serving_output}")
    return 1 if failure else 0


if __name__ == "__main__":
    raise SystemExit(main())
