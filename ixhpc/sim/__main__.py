"""``python -m ixhpc.sim serve|router``: run a simulated engine worker or a disaggregated router."""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import sys
from collections.abc import Callable

from aiohttp import web

from ixhpc.bench import eventloop
from ixhpc.errors import ConfigError, IxhpcError, main_guard
from ixhpc.sim import kvcache, listener, model

DESCRIPTION = (
    "ixhpc SIMULATED inference engine: an OpenAI-compatible HTTP server whose timings come "
    "from a roofline model of the GPU (no model runs, no GPU is used)."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ixhpc.sim", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    d = model.SimConfig()
    serve = sub.add_parser("serve", help="run one simulated engine worker", description=DESCRIPTION)
    _add_listen(serve)
    serve.add_argument("--role", choices=("prefill", "decode", "both"), default="both")
    serve.add_argument("--model", default="sim-model", help="model name served (default %(default)s)")
    serve.add_argument("--name", help="worker name in its records (default: its URL)")
    serve.add_argument("--gpu", choices=sorted(model.GPUS), default=d.gpu)
    serve.add_argument("--tp", type=int, default=d.tp)
    serve.add_argument("--ep", type=int, default=d.ep)
    serve.add_argument("--model-params-b", type=float, default=d.model_params_b, help="total parameters, billions")
    serve.add_argument(
        "--active-params-b", type=float, default=d.active_params_b,
        help="active parameters per token, billions (MoE; equal to --model-params-b for a dense model)",
    )
    serve.add_argument("--precision", choices=sorted(model.BYTES_PER_PARAM), default=d.precision)
    serve.add_argument("--kv-bytes-per-token", type=float, default=d.kv_bytes_per_token)
    serve.add_argument("--max-batch", type=int, default=d.max_batch, help="max running sequences")
    serve.add_argument("--fault", metavar="KIND", help="break this worker on purpose (tests): "
                       "stop-after=N, zero-tokens or stall-after=N tokens per request (ixhpc.sim.faults)")
    serve.add_argument("--max-prefill-tokens", type=int, default=d.max_prefill_tokens, help="prefill chunk size")
    serve.add_argument(
        "--time-scale", type=float, default=1.0,
        help="multiply every simulated duration by this (0.1 runs ten times faster than real time)",
    )
    cache = serve.add_argument_group("prefix cache (docs/agentic.md)")
    cache.add_argument("--no-prefix-caching", dest="prefix_caching", action="store_false",
                       help="no prefix cache: every prompt is prefilled whole")
    cache.add_argument("--kv-capacity-tokens", type=int, default=0,
                       help="GPU KV pool in tokens (default: what fits beside the weights in 90%% of HBM)")
    cache.add_argument("--kv-offloading", choices=("none", "dram"), default="none",
                       help="a DRAM tier behind the GPU prefix cache (the point's kv-offloading)")
    cache.add_argument("--total-cpu-dram-gb", type=float, default=0.0,
                       help="the DRAM tier's size, decimal GB (the point's total-cpu-dram-gb)")
    router = sub.add_parser("router", help="run a simulated disaggregated router", description=DESCRIPTION)
    _add_listen(router)
    router.add_argument("--prefill", nargs="+", required=True, metavar="URL", help="prefill worker URLs")
    router.add_argument("--decode", nargs="+", required=True, metavar="URL", help="decode worker URLs")
    router.add_argument("--policy", choices=("round-robin", "least-loaded"), default="round-robin")
    return parser


MIN_TIME_SCALE, MAX_TIME_SCALE = 1e-9, 1e6  # past these, times vanish or nothing ever finishes


def _add_listen(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True, help="0 picks a free port (printed in the ready line)")


def _config(args: argparse.Namespace) -> model.SimConfig:
    cfg = model.SimConfig(
        gpu=args.gpu, tp=args.tp, ep=args.ep, model_params_b=args.model_params_b,
        active_params_b=args.active_params_b, precision=args.precision,
        kv_bytes_per_token=args.kv_bytes_per_token, max_batch=args.max_batch,
        max_prefill_tokens=args.max_prefill_tokens,
    )
    model.validate(cfg)
    model.check_number("time_scale", args.time_scale, MIN_TIME_SCALE, MAX_TIME_SCALE)
    return cfg


MAX_DRAM_GB = 1e6  # a petabyte of host memory per engine is a typo


def cache_config(args: argparse.Namespace, cfg: model.SimConfig) -> kvcache.CacheConfig:
    """ValueError for a DRAM tier without a size, a size without the tier, or a bad capacity."""
    if args.kv_capacity_tokens:
        model.check_number("kv_capacity_tokens", args.kv_capacity_tokens, 1, 1e12)
    model.check_number("total_cpu_dram_gb", args.total_cpu_dram_gb, 0, MAX_DRAM_GB)
    dram = args.kv_offloading == "dram"
    if dram != (args.total_cpu_dram_gb > 0):
        raise ValueError("--kv-offloading dram needs --total-cpu-dram-gb > 0, and only it takes one")
    if dram and not args.prefix_caching:
        raise ValueError("--kv-offloading dram needs the prefix cache (drop --no-prefix-caching)")
    return kvcache.CacheConfig(enabled=args.prefix_caching, gpu_tokens=args.kv_capacity_tokens,
                               dram_tokens=kvcache.dram_tokens(args.total_cpu_dram_gb, cfg.kv_bytes_per_token))


async def _serve(
    app: web.Application, host: str, port: int, describe: str, on_bound: Callable[[str], None] | None = None
) -> None:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        listening = await listener.listen(runner, host, port)
    except OSError as exc:
        await runner.cleanup()
        raise IxhpcError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    url_host = f"[{host}]" if ":" in host else host
    url = f"http://{url_host}:{listening.sockets[0].getsockname()[1]}"
    if on_bound is not None:
        on_bound(url)
    print(f"ixhpc.sim: simulated {describe} ready on {url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    try:
        print("ixhpc.sim: simulated server shutting down", flush=True)
    except BrokenPipeError:  # whoever read our output is gone: send the rest to /dev/null
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    listening.close()
    await runner.cleanup()


def _raise_fd_limit() -> None:
    """Thousands of concurrent streams need thousands of sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@main_guard("ixhpc.sim")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _raise_fd_limit()
    if args.command == "router":
        from ixhpc.sim import router

        bad = [u for u in args.prefill + args.decode if not u.startswith(("http://", "https://"))]
        if bad:
            raise ConfigError(f"worker URLs must start with http:// or https://: {bad[0]}")
        app = router.make_app(args.prefill, args.decode, args.policy)
        describe = (
            f"router (policy={args.policy}, {len(args.prefill)} prefill, {len(args.decode)} decode workers)"
        )
        eventloop.run(_serve(app, args.host, args.port, describe))
        return 0
    from ixhpc.sim import faults, server

    try:
        cfg = _config(args)
        cache = cache_config(args, cfg)
        fault = faults.parse(args.fault) if args.fault else None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None

    async def serve() -> None:
        engine = server.Engine(cfg, args.role, args.name or "", args.time_scale, cache=cache)
        app = server.make_app(engine, args.model, fault=fault)

        def name_engine(url: str) -> None:  # the real port is known only once bound
            engine.name = engine.name or url
        describe = (
            f"engine (role={args.role}, model={args.model}, {cfg.gpu} tp={cfg.tp} ep={cfg.ep} "
            f"{cfg.precision}, max-batch={cfg.max_batch}, time-scale={args.time_scale:g}, "
            f"kv={engine.kv_capacity} tokens, prefix-cache={'on' if cache.enabled else 'off'}"
            + (f", dram={cache.dram_tokens} tokens" if cache.dram_tokens else "") + ")"
        )
        await _serve(app, args.host, args.port, describe, name_engine)

    eventloop.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
