"""Each engine command's stand-in: which flag table parses it, and what its flags mean.

``COMMANDS`` names every command line ixhpc launches (the names ``ixhpc.engine_flags`` uses);
``plan(command, args, env)`` parses ``args`` like that engine and returns a ``Serve``: what the
stand-in runs (a simulated engine, a router, Dynamo's frontend, etcd, NATS, or nothing on a
non-head rank) and with which settings. Parse errors raise ``parsing.UsageError`` with the
engine's own message; a config file the engine would refuse raises ``ConfigFileError``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ixhpc.standins import parsing
from ixhpc.standins.flagtable import Table

ARGPARSE, CLICK, GO = "argparse", "click", "go"


@dataclass(frozen=True)
class Command:
    family: str          # ixhpc.engine_flags family ("" for etcd/nats: a fixed table here)
    style: str           # ARGPARSE | CLICK | GO
    prog: str            # how the engine names itself in its messages
    positionals: tuple[str, ...] = ()
    underscores: bool = False


COMMANDS: dict[str, Command] = {
    "sglang.launch_server": Command("sglang", ARGPARSE, "launch_server.py"),
    "sglang_router.launch_router": Command("sglang_router", ARGPARSE, "launch_router.py"),
    "vllm serve": Command("vllm", ARGPARSE, "vllm serve", ("model_tag",), underscores=True),
    "trtllm-serve serve": Command("trt", CLICK, "trtllm-serve serve", ("model",)),
    "trtllm-serve disaggregated": Command("trt", CLICK, "trtllm-serve disaggregated"),
    "dynamo.frontend": Command("dynamo", ARGPARSE, "__main__.py"),
    "dynamo.sglang": Command("dynamo", ARGPARSE, "__main__.py"),
    "dynamo.vllm": Command("dynamo", ARGPARSE, "__main__.py", underscores=True),
    "dynamo.trtllm": Command("dynamo", ARGPARSE, "__main__.py"),
    "atom.entrypoints.openai_server": Command("atom", ARGPARSE, "openai_server.py"),
    "etcd": Command("", GO, "etcd"),
    "nats-server": Command("", GO, "nats-server"),
    "mooncake_master": Command("", GO, "mooncake_master"),
}
# etcd and nats-server are Go programs: their few flags ixhpc uses, fixed here.
GO_FLAGS: dict[str, dict[str, bool]] = {   # flag -> takes a value
    "etcd": {"--name": True, "--data-dir": True, "--listen-client-urls": True,
             "--advertise-client-urls": True, "--listen-peer-urls": True, "--initial-advertise-peer-urls": True,
             "--initial-cluster": True, "--log-level": True},
    "nats-server": {"-js": False, "--jetstream": False, "-p": True, "--port": True, "-a": True, "--addr": True,
                    "-sd": True, "--store_dir": True, "-m": True, "--http_port": True},
    # Mooncake's master (gflags, ``--name=value``): srtctl's flags and the recipes' extra ones
    "mooncake_master": dict.fromkeys(
        ["--port", "--rpc_address", "--enable_http_metadata_server", "--http_metadata_server_port",
         "--http_metadata_server_host", "--eviction_high_watermark_ratio", "--eviction_ratio",
         "--default_kv_lease_ttl", "--rpc_thread_num", "--enable_metric_reporting", "--metrics_port",
         "--enable_gc", "--cluster_id", "--v"], True),
}


class ConfigFileError(Exception):
    """A config file the engine refuses (message as the engine words it), exit status 1."""


class StartupError(ConfigFileError):
    """Settings the engine refuses when it starts (parallel sizes that do not divide, fewer
    GPUs visible than its ranks need), exit status 1."""


@dataclass
class Serve:
    kind: str                        # engine | router | frontend | etcd | nats | mooncake | idle
    host: str = "0.0.0.0"
    port: int = 8000
    model: str = "model"
    role: str = "both"               # engine: both | prefill | decode
    tp: int = 1
    ep: int = 1
    dp: int = 1
    pp: int = 1
    dcp: int = 1                     # decode context parallel: splits the TP ranks' KV cache
    cp: int = 1                      # prefill/attention context parallel (sglang: within tp)
    gpus: int = 1                    # the GPUs one engine replica's ranks use (the sim's size)
    max_model_len: int | None = None
    spec_tokens: int = 0
    stream_interval: int = 1
    max_batch: int | None = None
    max_prefill_tokens: int | None = None
    metrics: list[str] = field(default_factory=list)
    metrics_path: str = "/metrics"
    bootstrap_port: int | None = None          # sglang prefill: its bootstrap server
    prefill: list[str] = field(default_factory=list)       # routers
    decode: list[str] = field(default_factory=list)
    bootstrap_ports: list[str | None] = field(default_factory=list)
    etcd: str | None = None                    # Dynamo: ETCD_ENDPOINTS (workers register, frontend reads)
    register_as: str | None = None             # Dynamo worker: its component name
    why_idle: str = ""
    # engine: its KV-offload (DRAM) tier from the engine's own knobs (ixhpc.standins.serve.cache_config)
    kv_tokens: int = 0                         # its GPU KV pool (sglang --max-total-tokens); 0: the sim's
    dram_bytes: float = 0.0                    # over all the replica's ranks
    dram_ratio: float = 0.0                    # sglang --hicache-ratio: a multiple of the GPU KV pool


def parse(command: str, table: Table, args: list[str]) -> parsing.Parsed:
    c = COMMANDS[command]
    if c.style == CLICK:
        return parsing.click_style(c.prog, table, args, c.positionals)
    return parsing.argparse_style(c.prog, table, args, positionals=len(c.positionals),
                                  underscores=c.underscores)


def parse_go(command: str, args: list[str]) -> dict[str, str]:
    """Go's flag package: ``-x``/``--x``, ``--x=v`` or ``--x v``; unknown: status 2."""
    known = GO_FLAGS[command]
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        name, eq, value = args[i].partition("=")
        if name not in known:
            bare = name.lstrip("-")
            raise parsing.UsageError(f"flag provided but not defined: -{bare}\nUsage of {command}:")
        if known[name] and not eq:
            i += 1
            value = args[i] if i < len(args) else ""
        out[name.lstrip("-")] = value if known[name] else "true"
        i += 1
    return out


def plan(command: str, table: Table, args: list[str], env: Mapping[str, str],
         options: Table | None = None) -> Serve:
    """What the stand-in of ``command`` serves, from its arguments (and env, as the engine reads it).

    ``options``: trt's ``llm_api_options`` table (the keys its YAML option files may hold)."""
    c = COMMANDS[command]
    if c.style == GO:
        flags = parse_go(command, args)
        return _etcd(flags) if command == "etcd" else _nats(flags) if command == "nats-server" else _mooncake(flags)
    p = parse(command, table, args)
    if command in ("sglang.launch_server", "dynamo.sglang"):
        return _sglang(p, command, env)
    if command == "sglang_router.launch_router":
        return _sglang_router(p)
    if command in ("vllm serve", "dynamo.vllm"):
        return _vllm(p, command, env)
    if command == "trtllm-serve serve":
        return _trt_serve(p, options)
    if command == "trtllm-serve disaggregated":
        return _trt_disagg(p)
    if command == "dynamo.trtllm":
        return _dynamo_trt(p, env, options)
    if command == "dynamo.frontend":
        return Serve("frontend", host=p.text("--http-host") or "0.0.0.0",
                     port=p.integer("--http-port", int(env.get("DYN_HTTP_PORT", "8000"))),
                     metrics=["dynamo_frontend"], etcd=_etcd_endpoint(env))
    return _atom(p)


# ------------------------------------------------------------------------------- engines


def _idle(p: parsing.Parsed, flag: str) -> Serve | None:
    if flag == "--headless" and p.get(flag):
        return Serve("idle", why_idle="--headless: a worker rank of a multi-node engine, serves no API")
    if flag == "--node-rank" and p.integer(flag, 0) > 0:
        return Serve("idle", why_idle=f"--node-rank {p.get(flag)}: a worker rank of a multi-node engine")
    return None


def _dynamo_worker(s: Serve, env: Mapping[str, str], component: str) -> Serve:
    """A Dynamo worker serves no API of its own: its system server (DYN_SYSTEM_PORT) answers
    /health and /metrics, and it registers in etcd for the frontend to route to."""
    s.host = env.get("DYN_SYSTEM_HOST", "0.0.0.0")
    s.port = int(env.get("DYN_SYSTEM_PORT", "8081"))
    s.etcd = _etcd_endpoint(env)
    s.register_as = component
    s.metrics = ["dynamo_component", *s.metrics]
    return s


def _etcd_endpoint(env: Mapping[str, str]) -> str:
    return env.get("ETCD_ENDPOINTS", "http://localhost:2379").split(",")[0].rstrip("/")


# Draft tokens per step when MTP is on and its depth is not given: each engine's own default
# for DeepSeek-style models (sglang's auto-chosen EAGLE steps 3; vLLM, TensorRT-LLM and ATOM
# take the model's one next-token layer).
DEFAULT_MTP = {"sglang": 3, "vllm": 1, "trt": 1, "atom": 1}


def _sglang(p: parsing.Parsed, command: str, env: Mapping[str, str]) -> Serve:
    idle = _idle(p, "--node-rank")
    if idle:
        return idle
    mode = p.text("--disaggregation-mode") or "null"
    role = "both" if mode == "null" else mode
    steps = p.integer("--speculative-num-draft-tokens", 0) - 1 if p.get("--speculative-num-draft-tokens") \
        else p.integer("--speculative-num-steps", DEFAULT_MTP["sglang"] if p.get("--speculative-algorithm") else 0)
    tp, dp = p.integer("--tp-size", 1), p.integer("--dp-size", 1)
    par = _sglang_gpus(p, tp, dp, env)
    s = Serve("engine", host=p.text("--host") or "127.0.0.1", port=p.integer("--port", 30000),
              model=p.text("--served-model-name") or p.text("--model-path") or "default",
              role=role, tp=tp, ep=p.integer("--ep-size", 1), dp=dp,
              pp=par.pp, cp=par.cp, dcp=par.dcp, gpus=par.gpus,
              max_model_len=_opt_int(p, "--context-length"), spec_tokens=max(0, steps),
              stream_interval=p.integer("--stream-interval", 1),
              max_batch=_opt_int(p, "--max-running-requests"),
              max_prefill_tokens=_opt_int(p, "--max-prefill-tokens"), metrics=["sglang"])
    if role == "prefill":
        s.bootstrap_port = p.integer("--disaggregation-bootstrap-port", 8998)
    s.kv_tokens = p.integer("--max-total-tokens", 0)
    if p.get("--enable-hierarchical-cache"):
        _hicache(s, p)
    if command == "dynamo.sglang":
        return _dynamo_worker(s, env, "prefill" if role == "prefill" else "backend")
    return s


SGLANG_HICACHE_RATIO = 2.0  # sglang's --hicache-ratio default: host pool = 2 x the device pool


def _hicache(s: Serve, p: parsing.Parsed) -> None:
    """SGLang's HiCache host pool: ``--hicache-size`` GB (decimal) per rank, each tensor/pipeline
    rank holding its own; without it ``--hicache-ratio`` times the device KV pool."""
    size = p.integer("--hicache-size", 0)
    if size > 0:
        s.dram_bytes = size * 1e9 * s.gpus
    else:
        s.dram_ratio = float(p.get("--hicache-ratio") or SGLANG_HICACHE_RATIO)


@dataclass(frozen=True)
class Parallel:
    pp: int
    cp: int
    dcp: int
    gpus: int          # one replica's


def _sglang_gpus(p: parsing.Parsed, tp: int, dp: int, env: Mapping[str, str]) -> Parallel:
    """sglang's arithmetic: --attn-cp-size and --dcp-size split the --tp-size ranks (tp counts
    the attention CP ranks too), --pp-size stages multiply them, and without DP attention each
    of --dp-size replicas has its own tp x pp GPUs, --nnodes sharing them out."""
    pp, cp, dcp = p.integer("--pp-size", 1), p.integer("--attn-cp-size", 1), p.integer("--dcp-size", 1)
    for flag, size in (("--attn-cp-size", cp), ("--dcp-size", dcp)):
        if tp % size:
            raise StartupError(f"launch_server.py: --tp-size {tp} is not a multiple of {flag} {size}: "
                               f"sglang splits its tensor-parallel ranks into groups of that size")
    replicas = 1 if p.get("--enable-dp-attention") else dp
    _visible(tp * pp * replicas, p.integer("--nnodes", 1), env, "launch_server.py")
    return Parallel(pp, cp, dcp, tp * pp)


def _visible(ranks: int, nnodes: int, env: Mapping[str, str], prog: str) -> None:
    """An engine needs a GPU per rank on its node: fewer visible ones (Slurm's
    CUDA_VISIBLE_DEVICES for the step) and it fails at start, as the real one does."""
    visible = env.get("CUDA_VISIBLE_DEVICES")
    need = -(-ranks // max(1, nnodes))
    if visible and len(visible.split(",")) < need:
        raise StartupError(f"{prog}: {ranks} rank(s) over {nnodes} node(s) need {need} GPU(s) on this node, "
                           f"{len(visible.split(','))} visible (CUDA_VISIBLE_DEVICES={visible})")


def _sglang_router(p: parsing.Parsed) -> Serve:
    prefill: list[str] = []
    ports: list[str | None] = []
    for words in p.all("--prefill"):
        words = words if isinstance(words, list) else [words]
        if not words:
            raise parsing.UsageError("launch_router.py: error: argument --prefill: expected at least one argument")
        prefill.append(str(words[0]))
        ports.append(str(words[1]) if len(words) > 1 else None)
    decode = [str(w[0] if isinstance(w, list) else w) for w in p.all("--decode") if w]
    if not (p.get("--pd-disaggregation") and prefill and decode):
        raise parsing.UsageError("launch_router.py: error: the stand-in routes --pd-disaggregation with "
                                 "--prefill and --decode workers only")
    return Serve("router", host=p.text("--host") or "127.0.0.1", port=p.integer("--port", 30000),
                 prefill=prefill, decode=decode, bootstrap_ports=ports)


def _vllm(p: parsing.Parsed, command: str, env: Mapping[str, str]) -> Serve:
    idle = _idle(p, "--headless") or _idle(p, "--node-rank")
    if idle:
        return idle
    model = p.positionals[0] if p.positionals else p.text("--model") or "facebook/opt-125m"
    spec = _json(p, "--speculative-config")
    par = _vllm_gpus(p, env)
    s = Serve("engine", host=p.text("--host") or "0.0.0.0", port=p.integer("--port", 8000),
              model=p.text("--served-model-name") or model, pp=par.pp, cp=par.cp, dcp=par.dcp, gpus=par.gpus,
              tp=p.integer("--tensor-parallel-size", 1), dp=p.integer("--data-parallel-size", 1),
              ep=p.integer("--tensor-parallel-size", 1) * p.integer("--data-parallel-size", 1)
              if p.get("--enable-expert-parallel") else 1,
              max_model_len=_opt_int(p, "--max-model-len"),
              spec_tokens=int(spec.get("num_speculative_tokens", DEFAULT_MTP["vllm"] if spec else 0) or 0),
              stream_interval=p.integer("--stream-interval", 1), max_batch=_opt_int(p, "--max-num-seqs"),
              max_prefill_tokens=_opt_int(p, "--max-num-batched-tokens"), metrics=["vllm"])
    s.dram_bytes = _vllm_offload_bytes(p, s.gpus)
    if command == "dynamo.vllm":
        s.role = "prefill" if p.get("--is-prefill-worker") else "both"
        return _dynamo_worker(s, env, "prefill" if s.role == "prefill" else "backend")
    return s


VLLM_CPU_CONNECTORS = ("OffloadingConnector", "SimpleCPUOffloadConnector")


def _vllm_offload_bytes(p: parsing.Parsed, ranks: int) -> float:
    """vLLM's CPU KV tier: ``--kv-offloading-size`` GiB (the total over the TP ranks, vLLM's
    definition) with a ``--kv-offloading-backend``, or a ``--kv-transfer-config`` naming a CPU
    offloading connector with ``cpu_bytes_to_use`` (per rank; or ``cpu_bytes_to_use_per_rank``).
    Bytes over all the replica's ranks; 0: no tier (a ``num_cpu_blocks`` budget is not read)."""
    size = p.get("--kv-offloading-size")
    if size is not None and str(p.get("--kv-offloading-backend") or "None") != "None":
        return float(size) * 2**30
    cfg = _json(p, "--kv-transfer-config")
    if cfg.get("kv_connector") not in VLLM_CPU_CONNECTORS:
        return 0.0
    extra = cfg.get("kv_connector_extra_config") or {}
    per_rank = extra.get("cpu_bytes_to_use", extra.get("cpu_bytes_to_use_per_rank"))
    if per_rank is not None:
        return float(per_rank) * ranks
    return 0.0


def _vllm_gpus(p: parsing.Parsed, env: Mapping[str, str]) -> Parallel:
    """vLLM's arithmetic: a replica's world is tp x pp x prefill-context-parallel (its
    --decode-context-parallel-size splits the TP ranks); --data-parallel-size replicas
    (--data-parallel-size-local of them on this node, or one with --data-parallel-rank), or
    --nnodes sharing one out."""
    tp, pp = p.integer("--tensor-parallel-size", 1), p.integer("--pipeline-parallel-size", 1)
    dcp, pcp = p.integer("--decode-context-parallel-size", 1), p.integer("--prefill-context-parallel-size", 1)
    if tp % dcp:
        raise StartupError(f"vllm serve: --tensor-parallel-size {tp} is not a multiple of "
                           f"--decode-context-parallel-size {dcp}: vLLM splits its TP ranks into DCP groups")
    world = tp * pp * pcp
    local = p.get("--data-parallel-size-local")
    if p.get("--data-parallel-rank") is not None:   # external DP (srtctl per_gpu): one rank here
        _visible(world, 1, env, "vllm serve")
        if p.get("--enable-expert-parallel"):   # experts spread over the DP group: simulated as one replica
            return Parallel(pp, pcp, dcp, world * p.integer("--data-parallel-size", 1))
    elif local is not None:
        _visible(world * int(local), 1, env, "vllm serve")
    else:
        _visible(world * p.integer("--data-parallel-size", 1), p.integer("--nnodes", 1), env, "vllm serve")
    return Parallel(pp, pcp, dcp, world)


def _trt_options(path: str | None, options: Table | None) -> dict[str, Any]:
    """An ``--extra_llm_api_options`` / ``--extra-engine-args`` YAML file, its keys checked."""
    if not path:
        return {}
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except OSError as exc:
        raise ConfigFileError(f"FileNotFoundError: {exc.strerror}: {path!r}") from None
    if not isinstance(data, dict):
        raise ConfigFileError(f"ValueError: {path}: expected a mapping of LLM API options")
    unknown = [k for k in data if options is not None and k not in options]
    if unknown:
        lines = [f"pydantic_core._pydantic_core.ValidationError: {len(unknown)} validation error(s) for TorchLlmArgs"]
        lines += [f"{k}\n  Extra inputs are not permitted [type=extra_forbidden]" for k in unknown]
        raise ConfigFileError("\n".join(lines))
    return data


def _trt_spec(opts: dict[str, Any]) -> int:
    spec = opts.get("speculative_config") or {}
    if not isinstance(spec, dict):
        return 0
    default = DEFAULT_MTP["trt"] if spec else 0
    return int(spec.get("num_nextn_predict_layers") or spec.get("max_draft_len") or default)


def _trt_host_cache(opts: dict[str, Any], ranks: int) -> float:
    """TensorRT-LLM's secondary (host) KV pool: ``kv_cache_config.host_cache_size`` bytes per rank."""
    kv = opts.get("kv_cache_config") or {}
    return float(kv.get("host_cache_size") or 0) * ranks if isinstance(kv, dict) else 0.0


def _trt_serve(p: parsing.Parsed, options: Table | None) -> Serve:
    opts = _trt_options(p.text("--extra_llm_api_options"), options)
    tp = int(opts.get("tensor_parallel_size", p.integer("--tp_size", 1)))
    pp = int(opts.get("pipeline_parallel_size", p.integer("--pp_size", 1)))
    return Serve("engine", dram_bytes=_trt_host_cache(opts, tp * pp),
                 host=p.text("--host") or "localhost", port=p.integer("--port", 8000),
                 model=p.positionals[0], tp=tp, ep=p.integer("--ep_size", 1),
                 dp=tp if opts.get("enable_attention_dp") else 1,
                 max_model_len=_opt_int(p, "--max_seq_len"), spec_tokens=_trt_spec(opts),
                 stream_interval=int(opts.get("stream_interval", 1) or 1),
                 max_batch=_opt_int(p, "--max_batch_size"), max_prefill_tokens=_opt_int(p, "--max_num_tokens"),
                 metrics=["trtllm"], metrics_path="/prometheus/metrics")


def _trt_disagg(p: parsing.Parsed) -> Serve:
    path = p.text("--config_file")
    if not path:
        raise parsing.UsageError("Usage: trtllm-serve disaggregated [OPTIONS]\nTry 'trtllm-serve disaggregated "
                                 "--help' for help.\n\nError: Missing option '-c' / '--config_file'.")
    cfg = _trt_options(path, None)

    def urls(section: str) -> list[str]:
        servers = cfg.get(section) or {}
        return [u if u.startswith("http") else f"http://{u}" for u in (servers.get("urls") or [])]
    return Serve("router", host=str(cfg.get("hostname", "localhost")), port=int(cfg.get("port", 8000)),
                 prefill=urls("context_servers"), decode=urls("generation_servers"))


def _dynamo_trt(p: parsing.Parsed, env: Mapping[str, str], options: Table | None) -> Serve:
    opts = _trt_options(p.text("--extra-engine-args"), options)
    mode = p.text("--disaggregation-mode") or "prefill_and_decode"
    role = mode if mode in ("prefill", "decode") else "both"
    tp = int(opts.get("tensor_parallel_size", 1))
    pp = int(opts.get("pipeline_parallel_size", 1))
    s = Serve("engine", dram_bytes=_trt_host_cache(opts, tp * pp),
              model=p.text("--served-model-name") or p.text("--model-path") or "model", role=role,
              tp=tp, ep=int(opts.get("moe_expert_parallel_size", 1)), dp=tp if opts.get("enable_attention_dp") else 1,
              max_model_len=opts.get("max_seq_len"), spec_tokens=_trt_spec(opts),
              stream_interval=int(opts.get("stream_interval", 1) or 1), max_batch=opts.get("max_batch_size"),
              max_prefill_tokens=opts.get("max_num_tokens"), metrics=["trtllm"])
    return _dynamo_worker(s, env, "prefill" if role == "prefill" else "tensorrt_llm")


def _atom(p: parsing.Parsed) -> Serve:
    model = p.text("--model") or "model"
    return Serve("engine", host=p.text("--host") or "0.0.0.0", port=p.integer("--server-port", 8000),
                 model=model, tp=p.integer("--tensor-parallel-size", 1),
                 ep=p.integer("--tensor-parallel-size", 1) if p.get("--enable-expert-parallel") else 1,
                 max_model_len=_opt_int(p, "--max-model-len"),
                 spec_tokens=p.integer("--num-speculative-tokens", DEFAULT_MTP["atom"]) if p.text("--method") else 0,
                 max_batch=_opt_int(p, "--max-num-seqs"), max_prefill_tokens=_opt_int(p, "--max-num-batched-tokens"),
                 metrics=["atom"])


def _etcd(flags: dict[str, str]) -> Serve:
    url = flags.get("listen-client-urls", "http://localhost:2379").split(",")[0]
    m = re.match(r"https?://(\[[^]]+\]|[^:/]+)(?::(\d+))?", url)
    if not m:
        raise parsing.UsageError(f"etcd: --listen-client-urls: invalid URL {url!r}")
    return Serve("etcd", host=m.group(1).strip("[]"), port=int(m.group(2) or 2379))


def _mooncake(flags: dict[str, str]) -> Serve:
    """mooncake_master: its RPC port (held open) and its HTTP metadata server."""
    metadata = flags.get("enable_http_metadata_server", "false").lower() in ("true", "1")
    return Serve("mooncake", host=flags.get("rpc_address") or "0.0.0.0", port=int(flags.get("port") or 50051),
                 bootstrap_port=int(flags.get("http_metadata_server_port") or 8080) if metadata else None)


def _nats(flags: dict[str, str]) -> Serve:
    return Serve("nats", host=flags.get("a") or flags.get("addr") or "0.0.0.0",
                 port=int(flags.get("p") or flags.get("port") or 4222))


def _opt_int(p: parsing.Parsed, name: str) -> int | None:
    value = p.get(name)
    return None if value is None else int(value)


def _json(p: parsing.Parsed, name: str) -> dict[str, Any]:
    text = p.text(name)
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise parsing.UsageError(f"error: argument {name}: invalid loads value: {text!r} ({exc})") from None
    return value if isinstance(value, dict) else {}


def rank(env: Mapping[str, str] = os.environ) -> int:
    """This task's rank within its srun step (0 when run by hand)."""
    return int(env.get("SLURM_PROCID", "0") or 0)
