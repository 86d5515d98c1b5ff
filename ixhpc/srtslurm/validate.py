"""srtctl's load-time validation (SPEC.md 5.1), located, all problems at once.

``check(variant)`` builds the typed ``Recipe`` (unknown keys and types, schema.py) and then
applies the cross-key rules of 5.1. ``preflight(recipe)`` holds the topology part of 5.2 that
needs no cluster (srtctl runs it at submission unless ``--no-preflight``).

Rules from the late stages (5.3: unknown ``frontend.type`` / ``benchmark.type``, sa-bench
without isl/osl/concurrencies) are *not* load errors in srtctl; ``late_problems`` lists them so
that ixhpc can refuse them before an allocation is spent (SPEC 17.17).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ixhpc.srtslurm.load import Variant
from ixhpc.srtslurm.schema import (
    BACKENDS,
    PROFILING_TYPES,
    Recipe,
    SGLangBackend,
    VllmBackend,
)
from ixhpc.yamlmodel import Located, found, located_errors

FRONTEND_TYPES = ("dynamo", "sglang", "trtllm_serve", "vllm")
BENCHMARK_TYPES = ("sa-bench", "custom", "sglang-bench", "router", "mooncake-router", "trace-replay",
                   "mmlu", "gpqa", "gsm8k", "longbenchv2", "lm-eval", "manual")
REQUEST_PLANES = ("nats", "tcp", "http")
EVENT_PLANES = ("nats", "zmq")
CLIENT_PLACEMENTS = ("head", "last_decode", "first_decode")
ORCHESTRATOR_PLACEMENTS = ("head", "first_decode", "last_decode")

_SPAN_ENV = {"DYN_LOGGING_SPAN_EVENTS": "true", "DYN_LOGGING_JSONL": "true", "DYN_LOG": "debug"}
_TRACE_ENV = {"DYN_REQUEST_TRACE": "1", "DYN_REQUEST_TRACE_FILE_PATH": "/logs/dynamo-request-trace"}


def expand_observability(data: dict[Any, Any]) -> None:
    """SPEC 9.5: ``observability.enabled: true`` adds, where the recipe does not set them, the
    span env to every role map and the frontend env, the request trace env to the frontend, and
    for trtllm ``publish_events_and_metrics`` plus per-engine perf stats."""
    obs = data.get("observability")
    if not (isinstance(obs, dict) and obs.get("enabled") is True):
        return
    backend = data.setdefault("backend", {})
    frontend = data.setdefault("frontend", {})
    if not (isinstance(backend, dict) and isinstance(frontend, dict)):
        return
    for role in ("prefill", "decode", "aggregated"):
        env = backend.setdefault(f"{role}_environment", {})
        if isinstance(env, dict):
            for k, v in _SPAN_ENV.items():
                env.setdefault(k, v)
    fenv = frontend.setdefault("env", {})
    if isinstance(fenv, dict):
        for k, v in {**_SPAN_ENV, **_TRACE_ENV}.items():
            fenv.setdefault(k, v)
    if backend.get("type") == "trtllm":
        backend.setdefault("publish_events_and_metrics", True)
        cfg = backend.get("trtllm_config")
        for role_cfg in (cfg.values() if isinstance(cfg, dict) else ()):
            if isinstance(role_cfg, dict):
                role_cfg.setdefault("enable_iter_perf_stats", True)
                role_cfg.setdefault("return_perf_metrics", True)


def check(variant: Variant) -> tuple[Recipe | None, list[str]]:
    """The typed recipe of a variant, or None, and every located problem (5.1)."""
    doc = variant.doc
    data = doc.data
    if not isinstance(data, dict):
        return None, [doc.error(variant.origin, f"expected a recipe mapping, found {found(data)}")]
    data = dict(data)
    expand_observability(data)
    errors: list[str] = []
    raw_backend = data.pop("backend", None)
    backend: Any = None
    if raw_backend is not None:
        btype = raw_backend.get("type", "sglang") if isinstance(raw_backend, dict) else None
        if not isinstance(raw_backend, dict):
            errors.append(doc.error(("backend",), f"expected a mapping, found {found(raw_backend)}"))
        elif btype not in BACKENDS:
            errors.append(doc.error(("backend", "type"), f"expected one of {', '.join(BACKENDS)}, "
                                    f"found {found(btype)}"))
        else:
            cls = BACKENDS[btype]
            try:
                backend = cls.model_validate(raw_backend)
            except ValidationError as exc:
                errors.extend(located_errors(doc, ("backend",), exc, cls))
    if backend is not None:
        data["backend"] = backend
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        errors.extend(located_errors(doc, (), exc, Recipe))
        return None, errors
    if errors:
        return None, errors
    errors = rules(recipe, doc)
    return (None if errors else recipe), errors


def rules(r: Recipe, doc: Located) -> list[str]:
    """SPEC 5.1's cross-key rules."""
    out: list[str] = []

    def err(path: tuple[str, ...], message: str) -> None:
        out.append(doc.error(path, message))

    res, fe, be, dyn, bench = r.resources, r.frontend, r.backend, r.dynamo, r.benchmark
    disagg = res.disaggregated

    # dynamo
    sources = [k for k, on in (("hash", dyn.hash is not None), ("top_of_tree", dyn.top_of_tree),
                               ("wheel", dyn.wheel is not None)) if on]
    if len(sources) > 1:
        err(("dynamo", sources[1]), f"expected at most one of hash, top_of_tree, wheel, found "
            f"{' and '.join(sources)}")
    if dyn.wheel is not None and (not dyn.wheel.strip() or "/" in dyn.wheel
                                  or dyn.wheel.endswith(".whl")):
        err(("dynamo", "wheel"), f"expected a bare package version such as '1.2.0.dev20260426', "
            f"found {found(dyn.wheel)}")
    if dyn.cargo_patches and dyn.hash is None:
        err(("dynamo", "cargo_patches"), "expected dynamo.hash with cargo_patches (a source "
            "build), found no hash")
    if dyn.request_plane not in REQUEST_PLANES:
        err(("dynamo", "request_plane"), f"expected one of {', '.join(REQUEST_PLANES)}, found "
            f"{found(dyn.request_plane)}")
    if dyn.event_plane is not None and dyn.event_plane not in EVENT_PLANES:
        err(("dynamo", "event_plane"), f"expected one of {', '.join(EVENT_PLANES)}, found "
            f"{found(dyn.event_plane)}")

    # frontend types that need a matching backend and layout
    if fe.type == "trtllm_serve":
        if be.type != "trtllm":
            err(("frontend", "type"), f"expected backend.type trtllm with frontend.type "
                f"trtllm_serve, found {be.type}")
        if fe.enable_multiple_frontends:
            err(("frontend", "enable_multiple_frontends"), "expected false with frontend.type "
                "trtllm_serve, found true (the default)")
        if not disagg and (res.agg_workers or 0) != 1:
            err(("resources", "agg_workers"), f"expected exactly 1 aggregated worker with "
                f"frontend.type trtllm_serve, found {res.agg_workers or 0}")
    if fe.type == "vllm":
        if be.type != "vllm":
            err(("frontend", "type"), f"expected backend.type vllm with frontend.type vllm, "
                f"found {be.type}")
        if fe.enable_multiple_frontends:
            err(("frontend", "enable_multiple_frontends"), "expected false with frontend.type "
                "vllm, found true (the default)")
        if disagg:
            err(("resources",), "expected an aggregated layout (agg_nodes/agg_workers) with "
                "frontend.type vllm, found prefill/decode nodes")
        elif res.agg_workers != 1:
            err(("resources", "agg_workers"), f"expected agg_workers: 1 with frontend.type vllm, "
                f"found {res.agg_workers}")

    # heterogeneous jobs
    if res.het_jobs:
        if not (disagg and (res.prefill_nodes or 0) >= 1 and (res.decode_nodes or 0) >= 1):
            err(("resources", "het_jobs"), "expected a disaggregated layout with >= 1 prefill and "
                ">= 1 decode node for het_jobs: true")
        if be.type != "sglang":
            err(("resources", "het_jobs"), f"expected backend.type sglang for het_jobs: true, "
                f"found {be.type}")
        if fe.dedicated_node or bench.client_dedicated_node:
            err(("resources", "het_jobs"), "expected no dedicated frontend or client node with "
                "het_jobs: true")

    # dedicated nodes
    if fe.dedicated_node and fe.orchestrator_placement != "head":
        err(("frontend", "orchestrator_placement"), f"expected head with frontend.dedicated_node, "
            f"found {found(fe.orchestrator_placement)}")
    if bench.client_dedicated_node and bench.client_placement != "head":
        err(("benchmark", "client_placement"), f"expected head with benchmark.client_dedicated_node, "
            f"found {found(bench.client_placement)}")

    # Mooncake KV store needs the matching transfer backend in disaggregated jobs
    if disagg and isinstance(be, SGLangBackend) and be.mooncake_kv_store is not None:
        cfg = be.sglang_config
        roles = [cfg.prefill, cfg.decode] if cfg else []
        if not any(_get(m, "disaggregation-transfer-backend") == "mooncake" for m in roles if m):
            err(("backend", "mooncake_kv_store"), "expected disaggregation-transfer-backend: "
                "mooncake in sglang_config.prefill or .decode with mooncake_kv_store")
    if disagg and isinstance(be, VllmBackend) and be.mooncake_kv_store is not None:
        cfg = be.vllm_config
        roles = [cfg.prefill, cfg.decode] if cfg else []
        if not any("mooncake" in str(_get(m, "kv-transfer-config") or "").lower()
                   for m in roles if m):
            err(("backend", "mooncake_kv_store"), "expected a kv-transfer-config mentioning "
                "mooncake in vllm_config.prefill or .decode with mooncake_kv_store")

    # profiling
    prof = r.profiling
    if prof.type not in PROFILING_TYPES:
        err(("profiling", "type"), f"expected one of {', '.join(PROFILING_TYPES)}, found "
            f"{found(prof.type)}")
    elif prof.type != "none":
        if prof.type != "nsys-time":
            if disagg and (prof.prefill is None or prof.decode is None or prof.aggregated is not None):
                err(("profiling",), "expected profiling.prefill and profiling.decode (and no "
                    "aggregated) for a disaggregated job")
            if not disagg and prof.aggregated is None:
                err(("profiling",), "expected profiling.aggregated for an aggregated job")
        if prof.type == "torch" and be.type == "trtllm":
            err(("profiling", "type"), "expected nsys or none with backend trtllm, found torch")
        if prof.type == "nsys-time" and (prof.delay_secs is None or prof.duration_secs is None):
            err(("profiling",), "expected delay_secs and duration_secs with type nsys-time")
        if prof.type in ("nsys", "nsys-time") and isinstance(be, VllmBackend) and be.vllm_config:
            for role in ("prefill", "decode", "aggregated"):
                m = getattr(be.vllm_config, role) or {}
                for key in m:
                    if str(key).replace("_", "-").startswith("profiler-config"):
                        err(("backend", "vllm_config", role, key), "expected no profiler-config "
                            "with nsys profiling (srtctl sets it)")

    # vLLM data parallelism, per-node launch
    if isinstance(be, VllmBackend) and be.dp_launch_mode == "per_node" and be.vllm_config \
            and fe.type != "vllm":
        for role in ("prefill", "decode", "aggregated"):
            m = getattr(be.vllm_config, role) or {}
            if _get(m, "data-parallel-size") is not None and _get(m, "headless") is not None:
                err(("backend", "vllm_config", role, "headless" if "headless" in m else role),
                    "expected no headless with data-parallel-size and dp_launch_mode per_node "
                    "(srtctl places the ranks)")

    # Tachometer / power telemetry consistency
    tach = r.observability.tachometer
    if tach.enabled and not r.observability.enabled:
        err(("observability", "tachometer", "enabled"), "expected observability.enabled: true "
            "with tachometer.enabled: true")
    tel = r.telemetry
    if tel.enabled:
        if bench.type != "sa-bench":
            err(("telemetry", "enabled"), f"expected benchmark.type sa-bench with power "
                f"telemetry, found {found(bench.type)}")
        if bench.client_placement != "head":
            err(("benchmark", "client_placement"), "expected head with power telemetry")
        if r.infra.etcd_nats_dedicated_node:
            err(("infra", "etcd_nats_dedicated_node"), "expected no dedicated infra node with "
                "power telemetry")
        try:
            concs = bench.concurrency_list()
        except ValueError:
            concs = []
        if not concs or len(set(concs)) != len(concs) or min(concs) <= 0:
            err(("benchmark", "concurrencies"), f"expected unique positive concurrencies with "
                f"power telemetry, found {found(concs)}")
        if tel.dcgm_exporter is None:
            err(("telemetry",), "expected telemetry.dcgm_exporter with telemetry.enabled")
        timeouts = (tel.default_frequency, tel.startup_timeout_seconds, tel.request_timeout_seconds)
        if min(timeouts) <= 0:
            err(("telemetry",), "expected positive interval and timeouts")
    return out


def _get(m: dict[str, Any], flag: str) -> Any:
    """A config value under its dash or underscore spelling."""
    return m.get(flag, m.get(flag.replace("-", "_")))


def preflight(r: Recipe, doc: Located) -> list[str]:
    """SPEC 5.2's topology checks (srtctl: at submission, unless --no-preflight)."""
    res = r.resources
    out = []
    has_pd = any(v is not None for v in (res.prefill_nodes, res.decode_nodes, res.prefill_workers,
                                         res.decode_workers))
    has_agg = res.agg_nodes is not None or res.agg_workers is not None
    if has_pd and has_agg:
        out.append(doc.error(("resources",), "expected either prefill_*/decode_* or agg_* keys, "
                             "found both"))
    elif not has_pd and not has_agg:
        out.append(doc.error(("resources",), "expected workers (prefill_*/decode_* or agg_*), "
                             "found none"))
    elif has_pd:
        for role in ("prefill", "decode"):
            if not getattr(res, f"{role}_workers"):
                out.append(doc.error(("resources", f"{role}_workers"), f"expected at least one "
                                     f"{role} worker in a disaggregated job (use agg_* otherwise)"))
    else:
        for key in ("agg_workers", "agg_nodes"):
            if getattr(res, key) == 0:
                out.append(doc.error(("resources", key), "expected at least 1, found 0"))
    return out


def late_problems(r: Recipe, doc: Located) -> list[str]:
    """SPEC 5.3 problems srtctl finds only after the workers are up (not load errors there)."""
    out = []
    if r.frontend.type not in FRONTEND_TYPES:
        out.append(doc.error(("frontend", "type"), f"expected one of {', '.join(FRONTEND_TYPES)}, "
                             f"found {found(r.frontend.type)}"))
    b = r.benchmark
    if b.type not in BENCHMARK_TYPES:
        out.append(doc.error(("benchmark", "type"), f"expected one of {', '.join(BENCHMARK_TYPES)}, "
                             f"found {found(b.type)}"))
    if b.type == "sa-bench":
        need = ["isl", "osl"] if b.dataset_name != "custom" else []
        for key in [*need, "concurrencies"]:
            if getattr(b, key) is None:
                out.append(doc.error(("benchmark",), f"expected benchmark.{key} for sa-bench, "
                                     f"found it missing"))
    return out
