"""srt-slurm deployments -> ixhpc job plans: the processes srtctl v1.0.68 starts (SPEC.md 6-14).

``plan_target`` is what ``runs.plan`` calls for an srt-slurm recipe file: every deployment of the
file (``ixhpc.srtslurm.load_recipe``) becomes one ``placement.JobPlan`` (one sbatch), so the job
templates, ``render --plan-json``, submit, status, logs, resume and debug work unchanged.

What is the same as srtctl (SPEC section in brackets):

* nodes: the sbatch node count, reserved nodes, head/infra node, and worker placement with
  srtctl's cursor rule (6.3, 6.4); GPUs per worker (6.2); one process per node of an sglang/vLLM
  endpoint, one MPI step (one task per GPU) per TensorRT-LLM endpoint around
  ``trtllm-llmapi-launch`` (10.4);
* engine command lines: srtctl's own flags in its order, then the role's config map rendered by
  10.1 (keys sorted, ``_`` -> ``-``, ``true`` bare, ``false``/``null`` omitted, lists as several
  words); TensorRT-LLM's map as a sorted YAML file ``/logs/trtllm_config_<mode>.yaml``;
* worker environment with srtctl's precedence (9.1): Dynamo basics < role map < global
  ``environment:`` < GPU visibility < per-process backend values;
* the frontend topology (11): nginx on the head + Dynamo frontends (or sglang routers) on the
  other worker nodes, or one frontend / router on the placement node, trtllm-serve's
  disaggregated orchestrator with its ``/logs/ser.yaml``, direct ``vllm serve``; etcd and NATS on
  the infra node unless the frontend is trtllm-serve or vLLM (12.1);
* sa-bench's settings (13.2): per concurrency C a warm-up of 2C prompts (``num_warmup_mult``),
  then C x ``num_prompts_mult`` prompts at ``req_rate``, ISL/OSL, range ratio, chat template,
  temperature, ``--ignore-eos``, the served model name; run by ixhpc's own client. A ``custom``
  benchmark (13.4): one step ``bash -lc COMMAND`` with 13.1's environment, recorded as its exit
  status, log and wall time. An InferenceX agentic entry's CONFIG_FILE recipe runs ixhpc's trace
  replay instead of its benchmark; an eval-marked entry's gets ixhpc's lm-eval step.
* vLLM ``per_gpu`` DP (10.3): one process per GPU with its DP rank.

Deliberate differences (docs/srt-slurm.md lists them with reasons):

* Ports that the job itself addresses come from the job's port block (``PORT_BASE``): every
  public/frontend HTTP port, ``DYN_SYSTEM_PORT`` (health-checked), the prefill bootstrap port,
  etcd and NATS; so jobs sharing nodes never collide. Node-internal ports keep srtctl's numbers
  (NCCL 17500+i, dist-init 8300, worker ``--port`` 6100+32k under Dynamo, vLLM 5200/5400/20000).
* Hosts are node addresses (``${X_HOST}``), not node names; etcd/NATS executables come from the
  image's PATH (srtctl runs them from its checkout's ``/configs``).
* Port offsets are per node on real clusters (processes on different nodes may share one), per
  process on the local profile (all its nodes are one host); a follower rank shares its leader's.
* SPEC 17 fixes: map-valued flags as JSON (17.1); a recipe flag srtctl also sets is passed once,
  with the value the engine would read (the recipe's, last on srtctl's line), except the ports
  and hosts ixhpc allocates (17.2); follower ranks get a real ``--port`` (17.3);
  ``--dump-config-to`` and every generated file under the container's ``/logs`` (17.4); one
  served name everywhere (17.5); ``DYN_REQUEST_PLANE`` for TensorRT-LLM workers too, and
  ``--request-plane`` follows a role's ``DYN_REQUEST_PLANE`` (17.6); no ``ETCD_*``/``NATS_*``
  variables when no etcd/NATS runs (17.18); no GPU overlap of a whole-node worker with a
  partly used node (17.10: an error instead); the client talks to the public endpoint's
  address, wherever it runs (17.11); per-GPU vLLM DP processes each with their own log, config
  dump and health check (17.14).
* ``setup_script`` runs before workers and Dynamo frontends as srtctl runs it (9.3), from the
  container's ``/configs`` (mount your srt-slurm ``configs`` there), warning when it is absent.
* Dynamo's ``version`` install (9.3 step 2) in worker and frontend containers (not on the local
  profile); not performed: ``hash``/``wheel``/``top_of_tree`` builds, the fingerprint probe (the
  image must carry that Dynamo); the Mooncake master (12.2) with its ports from the job's block;
  heterogeneous jobs (6.5); refused with a located error: profiling, telemetry/exporters, model
  staging/download, benchmark types other than sa-bench.

Metadata: each deployment is one run point (``SrtDisaggPoint`` / ``SrtAggPoint``, the sweep's
point shapes with srtctl's GPUs per worker and worker nodes), so each benchmark's record is the
existing ``DisaggRecord`` / ``MultiAggRecord`` (mapping: docs/srt-slurm.md "Metadata").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ixhpc import containers, engines, names, render, shell
from ixhpc.engine_config import config_flags, flag_of, json_value
from ixhpc.errors import ConfigError, PlanError
from ixhpc.placement import (
    MAX_ROLES,
    STANDINS_LINE,
    JobPlan,
    Role,
    agentic_argv,
    bench_line,
    comment_text,
    container_spec,
    directives,
    expand_path,
    profile_sbatch,
    python_argv,
    script_variables,
    srun_line,
)
from ixhpc.profiles import ClusterProfile
from ixhpc.recipe import BenchmarkSettings, IxhpcBlock, Worker
from ixhpc.rundir import Layout, ScriptPaths
from ixhpc.srtslurm import ROLES, Deployment, load_recipe
from ixhpc.srtslurm import Role as SrtRole
from ixhpc.srtslurm.load import split_selector
from ixhpc.srtslurm.schema import SGLangBackend, TrtllmBackend, VllmBackend
from ixhpc.sweep import AgenticRun, DisaggPoint, MultiAggPoint, RunPoint, Site, seq_len_name
from ixhpc.topology import Topology
from ixhpc.yamlmodel import load_yaml

if TYPE_CHECKING:
    from ixhpc.point_metadata import PointRecord
    from ixhpc.runs import RunTarget

# srtctl's fixed port numbers for what stays node-internal (SPEC 7).
WORKER_HTTP_BASE = 6100     # + 32 k: k earlier endpoint leaders on the node (Dynamo workers)
NCCL_BASE = 17500           # + i: i the global worker-process counter
DIST_INIT_PORT = 8300       # sglang multi-node rendezvous, on the endpoint leader
KV_EVENTS_BASE = 5200       # + j
NIXL_BASE = 5400            # + j
VLLM_DP_RPC_BASE = 8400     # + k per leader node
VLLM_PORT_BASE = 20000      # + 50 i
SRT_TIME_LIMIT = "01:00:00"  # srtctl's default --time (the profile's time-limit is ixhpc's own default)
DYN_LOG = "info,dynamo_runtime::pipeline::network::ingress::push_handler=warn"
# A container path for the job's log directory and the weights (pyxis/enroot); without a
# container runtime the host paths themselves.
LOGS, MODEL = "/logs", "/model"
_MODE = {"prefill": "prefill", "decode": "decode", "aggregated": "agg"}
_SHORT = {"prefill": "PREFILL", "decode": "DECODE", "aggregated": "AGG"}
_TIME = re.compile(r"(\d+-)?\d+(:\d{2}){0,2}\Z")
# #SBATCH options that name one job or shape the allocation ixhpc computes: a recipe may not set them.
_OWN_SBATCH = ("job-name", "output", "error", "array", "nodes", "ntasks", "ntasks-per-node", "partition")


# ---------------------------------------------------------------- run points


class SrtDisaggPoint(DisaggPoint):
    """A disaggregated srt-slurm deployment as a run point: InferenceX's worker blocks (tp/ep
    from the engine config), GPUs per worker and worker nodes as srtctl places them."""

    srt_gpus: tuple[int, int]     # GPUs per prefill / decode worker (SPEC 6.2)
    srt_nodes: tuple[int, int]    # nodes hosting prefill / the other worker nodes

    def engine_roles(self) -> tuple[tuple[str, int, int], ...]:
        return (("prefill", self.prefill.num_worker, self.srt_gpus[0]),
                ("decode", self.decode.num_worker, self.srt_gpus[1]))

    def _record(self, common: dict[str, Any], topo: Topology) -> PointRecord:
        from ixhpc.point_metadata import DisaggRecord

        p, d = self.srt_nodes
        return DisaggRecord(**{**common, "nodes": p + d}, **self._worker_fields(), prefill_nodes=p,
                            decode_nodes=d, prefill_gpus=topo.role("prefill").gpus,
                            decode_gpus=topo.role("decode").gpus)


class SrtAggPoint(MultiAggPoint):
    """An aggregated srt-slurm deployment: ``agg_workers`` engines (the prefill block)."""

    prefill: Worker  # type: ignore[assignment]  # several aggregated workers are allowed here
    srt_gpus: int
    srt_nodes: int

    def engine_roles(self) -> tuple[tuple[str, int, int], ...]:
        return (("server", self.prefill.num_worker, self.srt_gpus),)

    def _record(self, common: dict[str, Any], topo: Topology) -> PointRecord:
        from ixhpc.point_metadata import MultiAggRecord

        return MultiAggRecord(**{**common, "nodes": self.srt_nodes}, **self._worker_fields())


# ---------------------------------------------------------------- entry points


def is_srt_file(path: str | Path) -> bool:
    """Whether ``path`` (``file.yaml`` or ``file.yaml:selector``) is an srt-slurm recipe."""
    from ixhpc.srtslurm import is_srt_recipe

    file, _ = split_selector(path)
    try:
        return is_srt_recipe(load_yaml(file, "a recipe mapping", duplicates="last"))
    except ConfigError:
        return False


def plan_target(target: RunTarget, run_dir: Path, run_id: str,
                warn: Callable[[str], None] | None = None) -> list[JobPlan]:
    """``runs.plan`` for an srt-slurm recipe: every deployment of the file, one job each."""
    given = target.filters.given()
    if given:
        raise ConfigError(f"{target.recipe}: an srt-slurm recipe runs its own deployment(s); "
                          f"the filters {' '.join(given)} do not apply (pick variants with "
                          f"FILE.yaml:SELECTOR)")
    deps = load_recipe(target.recipe)
    plans = [plan_deployment(d, target.profile, run_dir, run_id) for d in deps]
    if target.engine_check:
        check_engines(zip(deps, plans, strict=True), warn)
    keys = [p.key for p in plans]
    if len(set(keys)) != len(keys):
        raise PlanError(f"{target.recipe}: two deployments have the same name; expected one name each")
    for p in plans:
        render.render(p)  # a template error must surface before the directory exists
    return plans


def _as_slurm_reads(value: str) -> str:
    """An ``sbatch_directives`` value as Slurm reads it: srtctl writes it verbatim on its #SBATCH
    line, where sbatch strips one pair of enclosing quotes (recipes quote JSON comments so)."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"" and value[0] not in value[1:-1]:
        return value[1:-1]
    return value


def check_engines(jobs: Iterable[tuple[Deployment, JobPlan]], warn: Callable[[str], None] | None) -> None:
    """Every engine flag and TensorRT-LLM option key of the jobs' roles against the flag list
    of the engine release the image implies (``ixhpc.engine_check``): ConfigError with every
    located problem; warnings (no exact list for the release) to ``warn``."""
    from ixhpc import engine_check

    errors: list[str] = []
    warnings: dict[str, None] = {}  # each once: a recipe's variants share its image and lines
    for dep, plan in jobs:
        report = engine_check.check_srt(dep, plan)
        errors += [e for e in report.errors if e not in errors]
        warnings.update(dict.fromkeys(report.warnings))
    if warn is not None:
        for line in warnings:
            warn(line)
    if errors:
        raise ConfigError(errors)


def validation_profile(dep: Deployment) -> ClusterProfile:
    """A cluster for ``validate`` (no profile given): the recipe's own GPUs per node, pyxis
    (so paths read /logs and /model), aliases under /models."""
    return ClusterProfile.model_validate({
        "name": "validate", "partitions": [{"name": "any"}], "gpus-per-node": dep.gpus_per_node,
        "arch": "x86_64", "container-runtime": "pyxis", "model-dir": "/models"})


def with_entry_benchmark(dep: Deployment, concs: Sequence[int], isl: int, osl: int) -> Deployment:
    """The deployment with an InferenceX entry's benchmark: its concurrency list and sequence
    lengths replace the recipe's (sa-bench, the recipe's other benchmark settings kept)."""
    b = dep.recipe.benchmark.model_copy(update={"type": "sa-bench", "isl": isl, "osl": osl,
                                                "concurrencies": sorted(set(concs))})
    return dataclasses.replace(dep, recipe=dep.recipe.model_copy(update={"benchmark": b}))


def plan_config_file(dep: Deployment, profile: ClusterProfile, run_dir: Path, run_id: str, *,
                     concs: Sequence[int], isl: int, osl: int, key: str, entry: str,
                     agentic: AgenticRun | None = None, eval_point: RunPoint | None = None) -> JobPlan:
    """An InferenceX point whose ``CONFIG_FILE`` names ``dep`` (ixhpc.srtslurm.config_file): the
    recipe's deployment with the entry's concurrencies and ISL/OSL, as job ``key``; the plan
    header says so. An agentic entry (``agentic``) runs ixhpc's trace replay against the
    deployment, in place of the recipe's benchmark (InferenceX's: a custom ``agentic_srt.sh``)."""
    plan = plan_deployment(with_entry_benchmark(dep, concs, isl, osl), profile, run_dir, run_id, key=key,
                           agentic=agentic, eval_point=eval_point)
    was = dep.recipe.benchmark
    replaced = f"{was.type} benchmark" + (f" ({was.command})" if was.type == "custom" and was.command else "")
    plan.header.insert(2, comment_text(
        f"CONFIG_FILE of InferenceX agentic point {entry}: ixhpc's agentic-coding trace replay at "
        f"concurrencies {' '.join(map(str, plan.concs))} replaces the recipe's {replaced}"
        if agentic is not None else
        f"CONFIG_FILE of InferenceX point {entry}: its concurrencies "
        f"{' '.join(map(str, plan.concs))} and isl {isl} osl {osl} override the recipe's benchmark section"))
    return plan


# ---------------------------------------------------------------- placement (SPEC 6)


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """One worker: its role, index, GPUs asked for, and per node (allocation index) the GPU
    ids it uses there."""

    role: SrtRole
    index: int
    gpus: int
    nodes: tuple[int, ...]
    gpu_ids: tuple[tuple[int, ...], ...]   # per node of ``nodes``

    @property
    def leader(self) -> int:
        return self.nodes[0]


@dataclasses.dataclass(frozen=True)
class Allocation:
    nodes: int                  # the sbatch node count
    workers: tuple[int, ...]    # the worker node list (allocation indices), in order
    head: int
    infra: int
    bench: int
    endpoints: tuple[Endpoint, ...]
    components: tuple[int, ...] = ()   # a heterogeneous job (6.5): nodes of component 0, 1

    def het_group(self, node: int) -> tuple[int, int] | None:
        """(component, its first node) of an allocation node; None: not a heterogeneous job."""
        if not self.components:
            return None
        return (0, 0) if node < self.components[0] else (1, self.components[0])


def allocate(dep: Deployment) -> Allocation:
    """Reserved nodes (6.4) and srtctl's cursor placement of workers (6.3)."""
    r = dep.recipe
    total = dep.nodes
    wanted = [name for name, on in (("infra", r.infra.etcd_nats_dedicated_node),
                                    ("frontend", r.frontend.dedicated_node),
                                    ("client", r.benchmark.client_dedicated_node)) if on]
    reserved: dict[str, int] = {}
    if wanted and r.benchmark.colocate_with_frontend:
        shared = total - 1 if "client" in wanted else 0
        reserved = dict.fromkeys(wanted, shared)
    else:
        front = [n for n in wanted if n != "client"]
        reserved = {n: i for i, n in enumerate(front)}
        if "client" in wanted:
            reserved["client"] = total - 1
    workers = tuple(i for i in range(total) if i not in reserved.values())
    if not workers:
        raise PlanError(f"{dep.source}: no worker node is left after the reserved nodes")
    head = reserved.get("frontend", workers[0])
    if r.resources.het_jobs:
        # SPEC 6.5: component 0 = the prefill nodes (after a dedicated infra node), component 1 =
        # the decode nodes; each role placed over its own component's nodes
        first = (r.resources.prefill_nodes or 0) + len(reserved)
        endpoints = (_place(dep, tuple(n for n in workers if n < first), ("prefill",))
                     + _place(dep, tuple(n for n in workers if n >= first), ("decode",)))
        return Allocation(total, workers, head, reserved.get("infra", head), head, endpoints,
                          (first, total - first))
    endpoints = _place(dep, workers)
    return Allocation(total, workers, head, reserved.get("infra", head), reserved.get("client", head),
                      endpoints)


def _place(dep: Deployment, nodes: tuple[int, ...], roles: Sequence[SrtRole] = ROLES) -> tuple[Endpoint, ...]:
    gpn = dep.gpus_per_node
    spread = dep.recipe.resources.spread_workers
    be = dep.recipe.backend
    colocate = isinstance(be, VllmBackend) and be.allow_prefill_decode_colocation and (
        sum(w.gpus for w in dep.workers) <= gpn or be.allow_prefill_decode_colocation_across_nodes)
    cursor, offset = 0, 0
    out: list[Endpoint] = []

    def need(n: int) -> None:
        if n > len(nodes):
            raise PlanError(f"{dep.source}: the workers need more than the job's {len(nodes)} worker "
                            f"node(s) (resources: nodes, workers and gpus_per_* disagree)")

    for role in roles:
        count, g = dep.worker_count(role), dep.gpus_per_worker(role)
        if role == "decode" and count and offset and cursor + 1 < len(nodes) and not colocate:
            cursor, offset = cursor + 1, 0   # decode starts on a fresh node
        for i in range(count):
            if g >= gpn:
                if offset:  # SPEC 17.10: srtctl would reuse the GPUs in use there; ixhpc moves on
                    cursor, offset = cursor + 1, 0
                span = -(-g // gpn)
                need(cursor + span)
                out.append(Endpoint(role, i, g, nodes[cursor:cursor + span],
                                    tuple(tuple(range(gpn)) for _ in range(span))))
                cursor += span
                continue
            if offset + g > gpn:
                cursor, offset = cursor + 1, 0
            need(cursor + 1)
            out.append(Endpoint(role, i, g, (nodes[cursor],), (tuple(range(offset, offset + g)),)))
            offset += g
            if offset >= gpn or spread:
                cursor, offset = cursor + 1, 0
    return tuple(out)


# ---------------------------------------------------------------- flags (SPEC 10.1, 11.1)


def args_flags(args: Mapping[str, Any] | None) -> list[str]:
    """``frontend.args`` (11.1): map order, keys verbatim, maps and lists as JSON (17.1)."""
    out: list[str] = []
    for key, v in (args or {}).items():
        if v is True:
            out.append(f"--{key}")
        elif v is not None and v is not False:
            out += [f"--{key}", json_value(v)]
    return out


def _merge_flags(own: list[str], cfg: Mapping[str, Any]) -> list[str]:
    """srtctl's own flags, then the config's, each flag once (SPEC 17.2: srtctl passes both and
    the engine's parser keeps the last, the recipe's). So the recipe's value wins, except for
    the ports and hosts ixhpc allocates (values with a job-script variable): the job addresses
    those, so its own value stays and the recipe's is dropped."""
    flags = {flag_of(k): k for k, v in cfg.items() if v is not None and v is not False}
    out: list[str] = []
    kept = dict(cfg)
    i = 0
    while i < len(own):
        word = own[i]
        value = own[i + 1] if i + 1 < len(own) and not own[i + 1].startswith("--") else None
        step = 2 if value is not None else 1
        if word.startswith("--") and word in flags:
            if value is not None and "\x00" in value:   # ixhpc's port/host: the job's value
                kept.pop(flags[word])
            else:                                         # the recipe's value, as the engine reads it
                i += step
                continue
        out += own[i:i + step]
        i += step
    return [*out, *config_flags(kept)]


# ---------------------------------------------------------------- the planner


@dataclasses.dataclass
class _Ctx:
    dep: Deployment
    profile: ClusterProfile
    alloc: Allocation
    model: str            # --model-path / --model / tokenizer (the container's /model, or the HF id)
    served: str           # S (10.2)
    logs: str             # where /logs is for the processes
    roles: list[Role]
    head_var: str = ""
    infra: bool = True


def plan_deployment(dep: Deployment, profile: ClusterProfile, run_dir: Path, run_id: str,
                    key: str | None = None, agentic: AgenticRun | None = None,
                    eval_point: RunPoint | None = None) -> JobPlan:
    """One deployment's job: its roles with their srun lines, benchmark and sbatch options
    (``key``: the job's key, by default from the deployment's name). ``agentic``: an InferenceX
    agentic entry's replay (its CONFIG_FILE named ``dep``): ixhpc's trace replay is the benchmark,
    against the deployment's public endpoint, whatever the recipe's benchmark section says.
    ``eval_point``: an eval-marked InferenceX point: ixhpc's lm-eval step (``ixhpc.evals.plan``)
    against the public endpoint, with that point's eval settings."""
    _refuse_unsupported(dep)
    r = dep.recipe
    partition = _partition(dep, profile)
    if dep.gpus_per_node > profile.gpus_on(partition):
        raise PlanError(f"{dep.source}: resources.gpus_per_node {dep.gpus_per_node} exceeds the "
                        f"{profile.gpus_on(partition)} GPUs per node of partition {partition.name} "
                        f"(cluster {profile.name})")
    alloc = allocate(dep)
    key = key or names.key(dep.name if not dep.selector else f"{dep.name}_{dep.selector}")
    runtime = containers.runtime(profile.container_runtime, squash_cache=expand_path(profile.squash_cache),
                                 arch=profile.arch)
    contained = runtime.name != "none"
    host_model = _host_model(dep, profile)
    log_dir = str(Layout.of(run_dir).log_dir(key).resolve())
    model = (MODEL if contained else host_model) if host_model else dep.model_path.removeprefix("hf:")
    ctx = _Ctx(dep, profile, alloc, model, _served_name(dep, host_model), LOGS if contained else log_dir, [])
    ctx.infra = r.frontend.type not in ("trtllm_serve", "vllm")
    point = _point(dep, profile, partition.name, key, alloc)
    if agentic is not None:
        point = point.model_copy(update={"agentic": agentic})
    mounts = [f"{log_dir}:{LOGS}"] if contained else []
    if host_model and contained:
        mounts.append(f"{host_model}:{MODEL}")
    mounts += _recipe_mounts(dep)
    point = point.model_copy(update={"ixhpc": point.ixhpc.model_copy(update={"container_mounts": mounts})})
    spec = container_spec(point, profile, run_dir)

    if ctx.infra:
        _infra_roles(ctx)
    _mooncake_role(ctx)
    _worker_roles(ctx)
    public = _frontend_roles(ctx)
    ports = 1 + max(ro.port_index for ro in ctx.roles)
    if ports > MAX_ROLES:
        raise PlanError(f"{dep.source}: {ports} port offsets in one job; expected at most {MAX_ROLES} "
                        f"(each job has a block of {2 * MAX_ROLES} ports; offsets are per node, or per "
                        f"process where all nodes are one host); lower frontend.num_additional_frontends "
                        f"or the worker count")
    nginx = spec.model_copy(update={"image": r.frontend.nginx_container, "remap_root": True})
    store = getattr(r.backend, "mooncake_kv_store", None)
    mooncake = spec.model_copy(update={"image": store.container}) if store and store.container else spec
    root = spec.model_copy(update={"remap_root": True})   # pip installs Dynamo as root (srtctl: ENROOT_REMAP_ROOT)
    for role in ctx.roles:
        het = alloc.het_group(role.node_index)
        if het is not None:
            role.het_group, role.group_first_node = het
        image = (nginx if role.name == "nginx" else mooncake if role.name == "mooncake"
                 else root if "ixhpc-dynamo-install" in role.argv else spec)
        role.command = _srun_line(role, runtime, image, profile, dep)
        if contained:
            role.here = shell.command(python_argv(role.argv, runtime))
    custom = r.benchmark.type == "custom" and agentic is None
    bench = (["bash", "-lc", r.benchmark.command or ""] if custom
             else agentic_argv(point, agentic, public, ctx.roles, _limit_minutes(r.slurm.time_limit))
             if agentic is not None else _bench_argv(ctx, public))
    components = [_sbatch(dep, profile, partition.name, run_dir, run_id, key, n, i)
                  for i, n in enumerate(alloc.components or (alloc.nodes,))]
    bench_env = [("SRTCTL_FRONTEND_TYPE", r.frontend.type),
                 ("SRT_FRONTEND_HOST", shell.var(public.var + "_HOST")),
                 ("SRT_FRONTEND_PORT", shell.var(public.var + "_PORT")),
                 *r.environment.items()]
    bench_spec = spec
    if custom:   # SPEC 13.1 and 13.4: the workers' addresses, metrics URLs, then benchmark.env
        bench_env = [*_custom_env(ctx), *bench_env, *(r.benchmark.env or {}).items()]
        if r.benchmark.container_image:
            bench_spec = spec.model_copy(update={"image": r.benchmark.container_image})
    concs = _concs(dep)
    plan = JobPlan(
        key=key, kind=point.kind, points=[point], concs=concs,
        sbatch=components[0], het_sbatch=components[1:],
        het_groups=[(partition.name, n) for n in alloc.components],
        variables=_variables(dep, point, run_dir, key, alloc),
        step_env=[],   # each process carries its own environment (SPEC 9.1)
        roles=ctx.roles,
        prepare_command=_prepare(runtime, [spec, nginx] if public.name == "nginx" else [spec]),
        bench_argv=bench,
        bench_command=bench_line(point, bench, runtime, bench_spec, bench_env, bool(alloc.components)),
        custom_bench=(r.benchmark.command or "") if custom else "",
        header=_header(dep, key, alloc, concs, dynamo_install(dep, profile), agentic is not None),
        placement=[f"node {r_.node_index}{'-' + str(r_.node_index + r_.nnodes - 1) if r_.nnodes > 1 else ''}: "
                   f"{r_.name} ({r_.comment})" for r_ in ctx.roles],
        runtime=runtime, container=spec,
        standins=STANDINS_LINE if profile.engine_standins else "",
        recipe_env=_recipe_env(dep),
    )
    if eval_point is not None:   # the eval asks for the name the deployment serves
        from ixhpc.evals import plan as evals

        front = dataclasses.replace(public, name="server")   # evals.plan's name for the public endpoint
        plan.evals = evals.plan([eval_point.model_copy(update={"model": point.model})], [front], profile,
                                runtime, spec, plan.ingest_args, bool(alloc.components))
    return plan


def _recipe_env(dep: Deployment) -> list[str]:
    """The variables the recipe's maps set: role maps, ``environment:``, ``frontend.env``."""
    maps = [dep.environment(role) for role in ROLES] + [dep.global_environment, dep.frontend.env or {}]
    return sorted({name for m in maps for name in m})


def _refuse_unsupported(dep: Deployment) -> None:
    """What srtctl accepts and ixhpc cannot launch, located at the recipe key (all at once)."""
    r, be = dep.recipe, dep.recipe.backend
    problems: list[tuple[tuple[str, ...], str]] = []
    if r.benchmark.type not in ("sa-bench", "custom"):
        problems.append((("benchmark", "type"), f"{r.benchmark.type!r}: ixhpc runs sa-bench (its own load "
                         f"generator, results in HDF5) and custom benchmarks; expected sa-bench or custom"))
    elif r.benchmark.type == "custom" and not (r.benchmark.command or "").strip():
        problems.append((("benchmark", "command"), "missing: a custom benchmark runs `bash -lc COMMAND`"))
    if be.type == "mocker":
        problems.append((("backend", "type"), "mocker: no engine to launch; expected sglang, vllm or trtllm"))
    if r.profiling.type != "none":
        problems.append((("profiling", "type"), f"{r.profiling.type!r}: not supported; expected none"))
    if r.model.stage_dir:
        problems.append((("model", "stage_dir"), "model staging is not supported; expected the model on "
                         "shared storage"))
    if r.telemetry.enabled:
        problems.append((("telemetry", "enabled"), "telemetry exporters are not started by ixhpc"))
    if r.observability.tachometer.enabled:
        problems.append((("observability", "tachometer"), "Tachometer is not started by ixhpc"))
    variant = f" (variant {dep.selector})" if dep.selector else ""
    if problems:
        raise ConfigError([dep.doc.error(path, message + variant) for path, message in problems])


def _partition(dep: Deployment, profile: ClusterProfile) -> Any:
    wanted = dep.recipe.slurm.partition
    by_name = next((p for p in profile.partitions if p.name == wanted), None)
    return by_name or profile.partition_for(dep.recipe.resources.gpu_type) or profile.partitions[0]


def _host_model(dep: Deployment, profile: ClusterProfile) -> str | None:
    """The weights' directory on the cluster (None for an ``hf:`` model): an absolute
    ``model.path`` as it is, else ``<profile model-dir>/<path>`` (srtslurm.yaml's aliases)."""
    path = dep.model_path
    if path.startswith("hf:"):
        return None
    if path.startswith("/"):
        return path
    if not profile.model_dir:
        raise PlanError(f"{dep.source}: model.path {path!r} is an alias; expected an absolute path, "
                        f"an hf: id, or a model-dir in cluster profile '{profile.name}'")
    return f"{expand_path(profile.model_dir)}/{path}"


def _served_name(dep: Deployment, host_model: str | None) -> str:
    """S (10.2): the first configured served-model-name (prefill, aggregated, decode), else the
    model directory's name; the same for workers and client (17.5). TensorRT-LLM: never from the
    config."""
    if not isinstance(dep.recipe.backend, TrtllmBackend):
        for role in ("prefill", "aggregated", "decode"):
            cfg = dep.engine_config(role)
            for k in ("served-model-name", "served_model_name"):
                if cfg.get(k):
                    return str(cfg[k])
    if host_model is None:
        return dep.model_path.rsplit("/", 1)[-1]
    p = Path(host_model)
    return (p.resolve().name if p.exists() else p.name) or p.name


def _recipe_mounts(dep: Deployment) -> list[str]:
    r = dep.recipe
    out = list(r.extra_mount or [])
    for host, inside in r.container_mounts.items():
        if "{" in host or "{" in inside:
            raise PlanError(f"{dep.source}: container_mounts {host}: placeholders are not supported; "
                            f"expected literal paths")
        out.append(f"{host}:{inside}")
    return out


def tp_ep(dep: Deployment, role: SrtRole, gpus: int) -> tuple[int, int, bool]:
    cfg = dict(dep.engine_config(role))
    norm = {str(k).replace("-", "_"): v for k, v in cfg.items()}

    def num(*keys: str) -> int | None:
        for k in keys:
            if isinstance(norm.get(k), int) and not isinstance(norm.get(k), bool) and norm[k] > 0:
                return int(norm[k])
        return None
    tp = num("tensor_parallel_size", "tp_size", "tp") or gpus
    ep = num("expert_parallel_size", "ep_size", "ep", "moe_expert_parallel_size") or 1
    dp_attn = bool(norm.get("enable_dp_attention") or norm.get("enable_attention_dp"))
    return tp, ep, dp_attn


def _framework(dep: Deployment) -> str:
    be, fe = dep.backend_type, dep.recipe.frontend.type
    if be == "sglang":
        return "sglang" if fe == "sglang" else "dynamo-sglang"
    if be == "vllm":
        return "vllm" if fe == "vllm" else "dynamo-vllm"
    return "trt" if fe == "trtllm_serve" else "dynamo-trt"


def _point(dep: Deployment, profile: ClusterProfile, partition: str, key: str,
           alloc: Allocation) -> SrtDisaggPoint | SrtAggPoint:
    """The run point of the deployment (metadata: docs/srt-slurm.md "Metadata")."""
    r, b = dep.recipe, dep.recipe.benchmark
    isl, osl = b.isl or 0, b.osl or 0
    spec = any(str(k).replace("-", "_").startswith(("speculative", "spec_"))
               for role in ROLES for k in dep.engine_config(role))
    warmup_mult = _warmup_mult(dep)
    concs = _concs(dep)
    if warmup_mult not in (0, 1, 2) and len(set(concs)) > 1:
        raise PlanError(f"{dep.source}: benchmark.num_warmup_mult {warmup_mult} with several "
                        f"concurrencies: ixhpc supports 0, 1, 2, or any value with one concurrency")
    bench = BenchmarkSettings(
        random_range_ratio=0.8 if b.random_range_ratio is None else b.random_range_ratio,
        num_prompts_factor=b.num_prompts_mult or 10,
        # 1: the client's --num-warmups is ${CONC} itself (_bench_argv); 2 is the job's default
        num_warmups=None if warmup_mult in (1, 2) else warmup_mult * concs[0],
        request_rate=_rate(b.req_rate),
        temperature=b.temperature or 0.0, chat_template=b.use_chat_template)
    block = IxhpcBlock(benchmark=bench, health_timeout=r.health_check.max_attempts * r.health_check.interval_seconds)
    digest = hashlib.sha256(json.dumps(dep.doc.data, sort_keys=True, default=str).encode()).hexdigest()[:16]
    common: dict[str, Any] = dict(
        key=key, config_key=dep.source, source=dep.file, recipe_fingerprint=digest,
        image=dep.container, model=_served_name(dep, None if dep.model_path.startswith("hf:") else dep.model_path),
        model_prefix=dep.name, precision=r.model.precision, framework=_framework(dep),
        runner=r.resources.gpu_type, isl=max(isl, 1), osl=max(osl, 1), max_model_len=max(isl + osl, 1),
        exp_name=f"{dep.name}_{seq_len_name(isl, osl, current=True)}",
        spec_decoding="mtp" if spec else "none", conc=concs,
        site=Site(cluster=profile.name, partition=partition, gpus_per_node=dep.gpus_per_node,
                  arch=profile.arch),
        ixhpc=block, recipe_format="current")
    by_role: dict[str, set[int]] = {}
    for e in alloc.endpoints:
        by_role.setdefault(e.role, set()).update(e.nodes)

    def worker(role: SrtRole) -> Worker:
        g = dep.gpus_per_worker(role)
        tp, ep, dp_attn = tp_ep(dep, role, g)
        return Worker(num_worker=dep.worker_count(role), tp=tp, ep=ep, dp_attn=dp_attn)
    if dep.disaggregated:
        p_nodes = len(by_role.get("prefill", set()))
        d_nodes = len(by_role.get("decode", set()) - by_role.get("prefill", set()))
        return SrtDisaggPoint(**common, prefill=worker("prefill"), decode=worker("decode"),
                              srt_gpus=(dep.gpus_per_worker("prefill"), dep.gpus_per_worker("decode")),
                              srt_nodes=(p_nodes, d_nodes))
    from ixhpc.recipe import UnusedWorker

    agg = worker("aggregated")
    return SrtAggPoint(**common, prefill=agg,
                       decode=UnusedWorker(num_worker=0, tp=agg.tp, ep=agg.ep, dp_attn=agg.dp_attn),
                       srt_gpus=dep.gpus_per_worker("aggregated"),
                       srt_nodes=len(by_role.get("aggregated", set())))


# ---------------------------------------------------------------- roles


def _role(ctx: _Ctx, name: str, var: str, node: int, argv: list[str], health: str | None, comment: str,
          env: Sequence[tuple[str, str]] = (), nnodes: int = 1, gpus: int = 0, tasks: int = 1,
          kv: bool = False, port_index: int | None = None) -> Role:
    """A role; its port offset is the next one, or ``port_index`` (a follower rank shares its
    leader's: it serves nothing the job addresses, and runs on another node)."""
    full = ["env", *(f"{k}={v}" for k, v in env), *argv] if env else argv
    index = port_index if port_index is not None else _free_port(ctx, range(node, node + nnodes))
    role = Role(name, var, node, nnodes, index, gpus, full, health, comment, tasks, kv_port=kv)
    ctx.roles.append(role)
    return role


def _free_port(ctx: _Ctx, nodes: range) -> int:
    """The next port offset: per node on real clusters (processes on different nodes may share
    one), distinct in the whole job where all nodes are one host (the local profile)."""
    taken = {r.port_index for r in ctx.roles
             if ctx.profile.engine_standins or set(nodes) & set(range(r.node_index, r.node_index + r.nnodes))}
    return next(i for i in range(len(ctx.roles) + 1) if i not in taken)


def _host(var: str) -> str:
    return shell.var(var + "_HOST")


def _port(var: str) -> str:
    return shell.var(var + "_PORT")


def _infra_roles(ctx: _Ctx) -> None:
    """etcd and NATS on the infra node (12.1), each its own step (srtctl: one container running
    both through its setup_head.py)."""
    etcd, nats = engines.dynamo_services(_host("ETCD"), _port("ETCD"), _port("NATS"))
    node = ctx.alloc.infra
    _role(ctx, "etcd", "ETCD", node, list(etcd.argv), None, "etcd (Dynamo discovery)")
    nats_argv = list(nats.argv)
    payload = ctx.dep.recipe.infra.nats_max_payload_mb
    if payload:
        conf = f"{ctx.logs}/nats.conf"
        text = f"max_payload: {payload * 1048576}\njetstream {{ store_dir: \"/tmp/nats-{ctx.dep.name}\" }}"
        nats_argv = [*engines._WRITER, text, conf, "nats-server", "-c", conf, "-p", _port("NATS")]
    _role(ctx, "nats", "NATS", node, nats_argv, None, "NATS (Dynamo events)")


def _mooncake_role(ctx: _Ctx) -> None:
    """The Mooncake master on the infra node (12.2), when the recipe has ``mooncake_kv_store``
    (started even without etcd/NATS); vLLM's store config written first. Its RPC port and
    HTTP metadata port are the role's two ports of the job's block (srtctl: 8700, 8701); its
    metrics reporting (srtctl: 8702, read by nothing in the job) is off."""
    store = getattr(ctx.dep.recipe.backend, "mooncake_kv_store", None)
    if store is None:
        return
    argv = ["mooncake_master", f"--port={_port('MOONCAKE')}", "--enable_http_metadata_server=true",
            f"--http_metadata_server_port={shell.var('MOONCAKE_KV_PORT')}", "--eviction_high_watermark_ratio=0.9",
            "--default_kv_lease_ttl=10000", "--rpc_thread_num=16", "--enable_metric_reporting=false",
            *(store.master_extra_args or [])]
    if isinstance(ctx.dep.recipe.backend, VllmBackend):
        config = {**(getattr(store, "store_config", None) or {}),
                  "master_server_address": f"{_host('MOONCAKE')}:{_port('MOONCAKE')}"}
        argv = [*engines._WRITER, json.dumps(config, indent=2), _mooncake_config(ctx), *argv]
    _role(ctx, "mooncake", "MOONCAKE", ctx.alloc.infra, argv, None, "Mooncake master (KV store)", kv=True)


def _mooncake_config(ctx: _Ctx) -> str:
    return f"{ctx.logs}/mooncake_store_config.json"


def _mooncake_env(ctx: _Ctx, host: str) -> list[tuple[str, str]]:
    """Row 15 of SPEC 9.1 (sglang and vLLM workers)."""
    store = getattr(ctx.dep.recipe.backend, "mooncake_kv_store", None)
    if store is None:
        return []
    env = [("MOONCAKE_LOCAL_HOSTNAME", host), *(store.env or {}).items(),
           ("MOONCAKE_MASTER", f"{_host('MOONCAKE')}:{_port('MOONCAKE')}"),
           ("MOONCAKE_TE_META_DATA_SERVER", f"http://{_host('MOONCAKE')}:{shell.var('MOONCAKE_KV_PORT')}/metadata")]
    if isinstance(ctx.dep.recipe.backend, VllmBackend):
        env.append(("MOONCAKE_CONFIG_PATH", _mooncake_config(ctx)))
    return env


def _dynamo_env(ctx: _Ctx, var: str) -> list[tuple[str, str]]:
    """Rows 1-9 of SPEC 9.1."""
    r = ctx.dep.recipe
    env = [("HEAD_NODE_IP", _host(ctx.head_var))]
    if ctx.infra:  # SPEC 17.18: no etcd/NATS addresses where none runs
        env += [("ETCD_ENDPOINTS", f"http://{_host('ETCD')}:{_port('ETCD')}"),
                ("NATS_SERVER", f"nats://{_host('NATS')}:{_port('NATS')}")]
    env.append(("DYN_SYSTEM_PORT", _port(var)))
    env.append(("DYN_REQUEST_PLANE", r.dynamo.request_plane))  # trtllm too (SPEC 17.6)
    env.append(("DYN_SKIP_SGLANG_LOG_FORMATTING", "1"))
    if r.dynamo.event_plane:
        env.append(("DYN_EVENT_PLANE", r.dynamo.event_plane))
    env += _otel(ctx, "dynamo-worker")
    env.append(("DYN_LOG", DYN_LOG))
    return env


def _otel(ctx: _Ctx, service: str) -> list[tuple[str, str]]:
    o = ctx.dep.recipe.observability
    if not (o.enable_otel and o.otel_endpoint):
        return []
    return [("DYN_LOGGING_JSONL", "1"), ("OTEL_EXPORT_ENABLED", "1"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", o.otel_endpoint), ("OTEL_SERVICE_NAME", service)]


def _merged(base: list[tuple[str, str]],
            *layers: Mapping[str, str] | Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Later layers win; a name keeps its first position (srtctl's dict updates)."""
    out = dict(base)
    for layer in layers:
        out.update(layer.items() if isinstance(layer, Mapping) else layer)
    return list(out.items())


def _templated(env: Mapping[str, str], node_id: int, host: str) -> dict[str, str]:
    # sglang/vLLM workers: {node} -> the node (its address here), {node_id} -> its worker-node index.
    return {k: v.replace("{node_id}", str(node_id)).replace("{node}", host) for k, v in env.items()}


def _wheel_env(ctx: _Ctx) -> dict[str, str]:
    w = ctx.dep.recipe.dynamo.wheel
    return {"DYNAMO_WHEEL_NAME": f"ai_dynamo-{w}-py3-none-any.whl", "DYNAMO_VERSION": w} if w else {}


def _worker_roles(ctx: _Ctx) -> None:
    dep, alloc = ctx.dep, ctx.alloc
    be = dep.recipe.backend
    # the head's address: the first process on the head node (etcd, else the first worker there)
    leaders_on: dict[int, int] = {}        # node -> endpoint leaders so far (HTTP port k)
    prefill_on: dict[int, int] = {}        # node -> prefill endpoints so far (bootstrap k)
    counters = {"proc": 0, "kv": 0, "nixl": 0, "rpc": 0}
    on_head = [e for e in alloc.endpoints if alloc.head in e.nodes] or list(alloc.endpoints)
    ctx.head_var = ("ETCD" if ctx.infra and alloc.infra == alloc.head
                    else _var(on_head[0], on_head[0].nodes.index(alloc.head) if alloc.head in on_head[0].nodes else 0))
    for ep in alloc.endpoints:
        if isinstance(be, TrtllmBackend):
            _trtllm_worker(ctx, ep, counters)
        else:
            _per_node_worker(ctx, ep, counters, leaders_on, prefill_on)
        leaders_on[ep.leader] = leaders_on.get(ep.leader, 0) + 1
        if ep.role == "prefill":
            prefill_on[ep.leader] = prefill_on.get(ep.leader, 0) + 1


def _var(ep: Endpoint, rank: int = 0) -> str:
    base = f"{_SHORT[ep.role]}_{ep.index}"
    return base if rank == 0 else f"{base}_R{rank}"


def _name(ep: Endpoint, rank: int = 0) -> str:
    base = f"{ep.role}-{ep.index}"
    return base if rank == 0 else f"{base}-rank{rank}"


def _visible(ctx: _Ctx, gpu_ids: tuple[int, ...]) -> list[tuple[str, str]]:
    if len(gpu_ids) >= ctx.dep.gpus_per_node:
        return []
    ids = ",".join(map(str, gpu_ids))
    return [(n, ids) for n in ctx.profile.gpu_visibility_env]


def _kv_events(ctx: _Ctx, role: SrtRole, port: int, vllm: bool) -> list[str]:
    be = ctx.dep.recipe.backend
    cfg = getattr(be, "kv_events_config", None)
    if cfg is None or cfg is False:
        return []
    if isinstance(cfg, dict):
        mine = cfg.get(role)
        if mine is None or mine is False:
            return []
        payload: dict[str, Any] = {"publisher": "zmq", "topic": "kv-events"}
        if isinstance(mine, dict):
            payload.update(mine)
    else:
        if role == "aggregated":
            return []
        payload = {"publisher": "zmq", "topic": "kv-events"}
    payload["endpoint"] = f"tcp://*:{port}"
    if vllm:
        payload["enable_kv_cache_events"] = True
    return ["--kv-events-config", json.dumps(payload)]


def _per_node_worker(ctx: _Ctx, ep: Endpoint, counters: dict[str, int], leaders_on: dict[int, int],
                     prefill_on: dict[int, int]) -> None:
    """sglang and vLLM: one process per node of the endpoint (10.2, 10.3)."""
    dep = ctx.dep
    r, be = dep.recipe, dep.recipe.backend
    fe = r.frontend.type
    cfg = dict(dep.engine_config(ep.role))
    k_nodes = len(ep.nodes)
    leader_var = _var(ep)
    disagg_mode = ["--disaggregation-mode", ep.role] if ep.role != "aggregated" else []
    vllm = isinstance(be, VllmBackend)
    # vLLM data parallelism (per_node)
    dp = cfg.get("data-parallel-size", cfg.get("data_parallel_size")) if vllm else None
    tp = int(cfg.get("tensor-parallel-size", cfg.get("tensor_parallel_size", 1)) or 1)
    pp = int(cfg.get("pipeline-parallel-size", cfg.get("pipeline_parallel_size", 1)) or 1)
    nixl_base = counters["nixl"]
    if vllm and dp:
        counters["nixl"] += int(dp)
    rpc_port = VLLM_DP_RPC_BASE + counters["rpc"]
    if vllm and dp:
        counters["rpc"] += 1
    leader_port = 0
    # vLLM per_gpu DP (10.3): one process per GPU of the endpoint, DP rank = its index
    per_gpu = bool(vllm and dp and isinstance(be, VllmBackend) and be.dp_launch_mode == "per_gpu"
                   and fe != "vllm")
    slots = ([(node, (g,)) for node, ids in zip(ep.nodes, ep.gpu_ids, strict=True) for g in ids] if per_gpu
             else list(zip(ep.nodes, ep.gpu_ids, strict=True)))
    for rank, (node, gpu_ids) in enumerate(slots):
        i = counters["proc"]
        counters["proc"] += 1
        var = _var(ep, rank)
        host = _host(var)
        node_id = ctx.alloc.workers.index(node)
        role_env = dict(dep.environment(ep.role))
        glob = {**_wheel_env(ctx), **dep.global_environment}
        env = _merged(_dynamo_env(ctx, var), _templated(role_env, node_id, host), _templated(glob, node_id, host))
        set_cvd = not vllm or (isinstance(be, VllmBackend) and be.set_cuda_visible_devices)
        if set_cvd:
            env = _merged(env, _visible(ctx, gpu_ids))
        if fe not in ("sglang",) and not (vllm and fe == "vllm"):
            env = _merged(env, [("DYN_SYSTEM_USE_ENDPOINT_HEALTH_STATUS", '["generate"]')])
        plane = dict(env).get("DYN_REQUEST_PLANE", r.dynamo.request_plane)   # SPEC 17.6
        kv_port = KV_EVENTS_BASE + counters["kv"]
        dump = f"{ctx.logs}/{_name(ep, rank)}_config.json"   # SPEC 17.4: the container's /logs
        if isinstance(be, SGLangBackend):
            counters["kv"] += 1
            launch_server = fe == "sglang"
            # SPEC 17.3: srtctl passes --port 0 on follower ranks; they get their node's port too
            http = _port(var) if launch_server else str(WORKER_HTTP_BASE + 32 * leaders_on.get(node, 0))
            own = ["--model-path", ctx.model, "--served-model-name", ctx.served, "--host", "0.0.0.0",
                   "--port", http, "--nccl-port", str(NCCL_BASE + i), *disagg_mode]
            if ep.role == "prefill":
                own += ["--disaggregation-bootstrap-port", shell.var(leader_var + "_KV_PORT")]
            if k_nodes > 1:
                own += ["--dist-init-addr", f"{_host(leader_var)}:{DIST_INIT_PORT}", "--nnodes", str(k_nodes),
                        "--node-rank", str(rank)]
            if not launch_server:
                own += ["--dump-config-to", dump]
            own += _kv_events(ctx, ep.role, kv_port, vllm=False)
            if not launch_server:
                own += ["--request-plane", plane]
            drop = ("model-path", "model_path", "served-model-name", "served_model_name", "nccl-port", "nccl_port")
            cfg_ = {k: v for k, v in cfg.items() if k not in drop}
            module = "sglang.launch_server" if launch_server else "dynamo.sglang"
            argv = ["python3", "-m", module, *_merge_flags(own, cfg_)]
            health = "/health" if rank == 0 else None
        else:
            assert isinstance(be, VllmBackend)
            local_dp = 1
            if dp and tp * pp <= dep.gpus_per_node:
                local_dp = max(1, len(gpu_ids) // (tp * pp))
            kv_port = KV_EVENTS_BASE + counters["kv"]
            counters["kv"] += local_dp if dp else 1
            nixl = NIXL_BASE + (nixl_base if dp else counters["nixl"])
            if not dp:
                counters["nixl"] += 1
            env = _merged(env, [("DYN_VLLM_KV_EVENT_PORT", str(kv_port)),
                                ("VLLM_NIXL_SIDE_CHANNEL_PORT", str(nixl)),
                                ("VLLM_NIXL_SIDE_CHANNEL_HOST", host)])
            if k_nodes == 1:   # srtctl sets it and unsets it again for multi-node endpoints
                env = _merged(env, [("VLLM_PORT", str(VLLM_PORT_BASE + 50 * i))])
            argv, health = _vllm_argv(ctx, ep, rank, cfg, gpu_ids, dp, tp, pp, local_dp, rpc_port,
                                      dump, plane, kv_port, var, per_gpu)
        env = _merged(env, _mooncake_env(ctx, host))
        _role(ctx, _name(ep, rank), var, node, _setup(ctx, _install(ctx, argv)), health,
              f"{ep.role} worker {ep.index}" + (f" DP rank {rank}/{len(slots)}" if per_gpu
                                                else f" rank {rank}/{k_nodes}" if k_nodes > 1 else "")
              + f": GPUs {','.join(map(str, gpu_ids))}", env=env, gpus=ctx.dep.gpus_per_node,
              kv=rank == 0 and ep.role == "prefill" and isinstance(be, SGLangBackend),
              port_index=None if rank == 0 or per_gpu else leader_port)
        if rank == 0:
            leader_port = ctx.roles[-1].port_index


def _connector(be: VllmBackend, cfg: Mapping[str, Any]) -> str | None:
    value = cfg.get("connector", be.connector)
    if value is None or str(value).lower() in ("none", "null"):
        return None
    presets = {
        "nixl": {"kv_connector": "NixlConnector", "kv_role": "kv_both"},
        "lmcache": {"kv_connector": "LMCacheConnectorV1", "kv_role": "kv_both"},
        "kvbm": {"kv_connector": "DynamoConnector", "kv_role": "kv_both",
                 "kv_connector_module_path": "kvbm.vllm_integration.connector"},
    }
    return json.dumps(presets[value]) if value in presets else str(value)


def _vllm_argv(ctx: _Ctx, ep: Endpoint, rank: int, cfg: dict[str, Any], gpu_ids: tuple[int, ...],
               dp: Any, tp: int, pp: int, local_dp: int, rpc_port: int, dump: str, plane: str,
               kv_port: int, var: str, per_gpu: bool = False) -> tuple[list[str], str | None]:
    dep = ctx.dep
    be = dep.recipe.backend
    assert isinstance(be, VllmBackend)
    k_nodes = len(ep.nodes)
    leader = _host(_var(ep))
    devices = [] if be.set_cuda_visible_devices else ["--device-ids", ",".join(map(str, gpu_ids))]
    drop = {"connector"}
    if dep.recipe.frontend.type == "vllm":   # direct `vllm serve` (10.3)
        drop |= {"headless", "host", "port", "master-addr", "master_addr", "nnodes", "node-rank", "node_rank"}
        cfg_ = {k: v for k, v in cfg.items() if k not in drop}
        if rank > 0:
            cfg_ = {k: v for k, v in cfg_.items() if k not in ("api-server-count", "api_server_count")}
        cfg_.setdefault("served-model-name", ctx.served)
        own = ["vllm", "serve", ctx.model]
        if rank == 0:
            own += ["--host", "0.0.0.0", "--port", _port(var)]
        if k_nodes > 1:
            own += ["--master-addr", leader, "--nnodes", str(k_nodes), "--node-rank", str(rank)]
        if rank > 0:
            own.append("--headless")
        own += devices
        return own[:2] + _merge_flags(own[2:], cfg_), "/health" if rank == 0 else None
    if dp and not per_gpu:   # srtctl drops them in per_node mode only
        drop |= {"data-parallel-rpc-port", "data-parallel-size-local", "data-parallel-start-rank",
                 "data-parallel-hybrid-lb", "headless", "data_parallel_rpc_port", "data_parallel_size_local",
                 "data_parallel_start_rank", "data_parallel_hybrid_lb"}
    cfg_ = {k: v for k, v in cfg.items() if k not in drop}
    own = ["--model", ctx.model, "--served-model-name", ctx.served]
    if ep.role != "aggregated":
        own += ["--disaggregation-mode", ep.role]
    conn = _connector(be, cfg)
    if conn:
        own += ["--kv-transfer-config", conn]
    own += devices
    if per_gpu:   # the process's own GPU (devices) and DP rank; the size is the config's
        own += ["--data-parallel-rank", str(rank), "--data-parallel-address", leader,
                "--data-parallel-rpc-port", str(rpc_port)]
    elif dp and tp * pp <= dep.gpus_per_node:
        own += ["--data-parallel-size-local", str(local_dp), "--data-parallel-start-rank", str(local_dp * rank),
                "--data-parallel-address", leader, "--data-parallel-rpc-port", str(rpc_port),
                "--data-parallel-hybrid-lb"]
    elif k_nodes > 1:
        own += ["--master-addr", leader, "--nnodes", str(k_nodes), "--node-rank", str(rank)]
        if dp:
            own += ["--data-parallel-address", leader, "--data-parallel-rpc-port", str(rpc_port)]
        if rank > 0:
            own.append("--headless")
    own += ["--request-plane", plane, "--dump-config-to", dump]
    own += _kv_events(ctx, ep.role, kv_port, vllm=True)
    argv = ["python3", "-m", "dynamo.vllm", *_merge_flags(own, cfg_)]
    return argv, "/health" if rank == 0 or dp else None


def _trtllm_worker(ctx: _Ctx, ep: Endpoint, counters: dict[str, int]) -> None:
    """One MPI step per endpoint (10.4): one task per GPU, ``trtllm-llmapi-launch``."""
    dep = ctx.dep
    r, be = dep.recipe, dep.recipe.backend
    assert isinstance(be, TrtllmBackend)
    counters["proc"] += 1
    var = _var(ep)
    mode = _MODE[ep.role]
    path = f"{ctx.logs}/trtllm_config_{mode}.yaml"
    cfg = dict(dep.engine_config(ep.role))
    text = yaml.safe_dump(cfg, sort_keys=True, default_flow_style=False, width=1000).rstrip("\n")
    seed = f"{dep.source}|{ep.role}|{ep.index}"
    shm = "moe_shared_" + hashlib.sha256(seed.encode()).hexdigest()[:32]
    role_env = {**dep.environment(ep.role), "TRTLLM_EPLB_SHM_NAME": shm}
    env = _merged(_dynamo_env(ctx, var), role_env, {**_wheel_env(ctx), **dep.global_environment},
                  _visible(ctx, ep.gpu_ids[0]))
    serve = r.frontend.type == "trtllm_serve"
    if not serve:
        env = _merged(env, [("DYN_SYSTEM_USE_ENDPOINT_HEALTH_STATUS", '["generate"]')])
    plane = dict(env).get("DYN_REQUEST_PLANE", r.dynamo.request_plane)
    numa = be.numa_memory_bind if be.numa_memory_bind is not None else (
        r.resources.gpu_type.lower() in ("gb200", "gb300") and ep.role != "aggregated")
    prefix = (["numactl", "-m", "0,1"] if numa else []) + ["trtllm-llmapi-launch"]
    if serve:
        sizes = []
        for key, flag in (("tensor_parallel_size", "--tensor_parallel_size"),
                          ("moe_expert_parallel_size", "--moe_expert_parallel_size"),
                          ("pipeline_parallel_size", "--pipeline_parallel_size")):
            if cfg.get(key) is not None:
                sizes += [flag, str(cfg[key])]
        program = ["trtllm-serve", ctx.model, "--host", "0.0.0.0", "--port", _port(var), *sizes,
                   "--config", path]
    else:
        program = ["python3", "-m", "dynamo.trtllm", "--model-path", ctx.model, "--served-model-name", ctx.served]
        if ep.role != "aggregated":
            program += ["--disaggregation-mode", ep.role]
        program += ["--extra-engine-args", path, "--request-plane", plane]
        if be.publish_events_and_metrics:
            program.append("--publish-events-and-metrics")
    argv = [*engines._WRITER, text, path, *_setup(ctx, _install(ctx, [*prefix, *program]))]
    per_node = len(ep.gpu_ids[0])
    _role(ctx, _name(ep), var, ep.leader, argv, "/health",
          f"{ep.role} worker {ep.index}: {ep.gpus} GPU(s) on {len(ep.nodes)} node(s), one MPI rank per GPU",
          env=env, nnodes=len(ep.nodes), gpus=dep.gpus_per_node, tasks=per_node)


# srtctl's preamble step 1 (SPEC 9.3): /configs/NAME, else /configs/patches/NAME, else a warning.
_SETUP = ('n=$1; shift; if [ -f "/configs/$n" ]; then bash "/configs/$n" || exit; '
          'elif [ -f "/configs/patches/$n" ]; then bash "/configs/patches/$n" || exit; '
          'else echo "warning: setup_script $n: not in /configs or /configs/patches; continuing" >&2; fi; '
          'exec "$@"')


def _setup(ctx: _Ctx, argv: list[str]) -> list[str]:
    """The recipe's ``setup_script`` before a worker's or Dynamo frontend's program."""
    name = ctx.dep.recipe.setup_script
    return ["bash", "-c", _SETUP, "ixhpc-setup-script", name, *argv] if name else argv


# srtctl's preamble step 2 (SPEC 9.3), its `version` form: Dynamo from PyPI (+ pypi.nvidia.com),
# serialized per container environment by a lock file and skipped when that version is there.
_DYNAMO_INSTALL = (
    'v=$1; shift; exec 9>/tmp/ixhpc-dynamo-install.lock; '
    '{ ! command -v flock >/dev/null || flock 9 || exit; }; '
    'if [ "$(python3 -c \'import importlib.metadata as m; print(m.version("ai-dynamo"))\' 2>/dev/null)" != "$v" ]; '
    'then python3 -m pip install --quiet --extra-index-url https://pypi.nvidia.com '
    '"ai-dynamo-runtime==$v" "ai-dynamo==$v" || exit; fi; exec 9>&-; exec "$@"')


def dynamo_install(dep: Deployment, profile: ClusterProfile) -> str | None:
    """The Dynamo version the job installs in worker and frontend containers, or None: srtctl
    installs with the Dynamo frontend and ``dynamo.install``; ixhpc does its ``version`` form,
    not ``hash``/``wheel``/``top_of_tree`` builds (the image must carry that Dynamo), and not on
    the local profile, whose engine stand-ins are not Dynamo."""
    d = dep.recipe.dynamo
    if dep.recipe.frontend.type != "dynamo" or not d.install or profile.engine_standins:
        return None
    return d.effective_version


def _install(ctx: _Ctx, argv: list[str]) -> list[str]:
    version = dynamo_install(ctx.dep, ctx.profile)
    return ["bash", "-c", _DYNAMO_INSTALL, "ixhpc-dynamo-install", version, *argv] if version else argv


def _frontend_roles(ctx: _Ctx) -> Role:
    """The frontend layer (11); returns the role serving the public endpoint."""
    dep, alloc = ctx.dep, ctx.alloc
    r = dep.recipe
    fe = r.frontend
    workers = {_var(e): e for e in alloc.endpoints}
    by_var = {ro.var: ro for ro in ctx.roles}
    if fe.type == "vllm" or (fe.type == "trtllm_serve" and not dep.disaggregated):
        return by_var[_var(alloc.endpoints[0])]
    multi = len(alloc.workers) >= 2 and fe.enable_multiple_frontends and fe.type in ("dynamo", "sglang")
    decodes = [e for e in alloc.endpoints if e.role == "decode"]
    place = {"first_decode": decodes[0].leader if decodes else alloc.head,
             "last_decode": decodes[-1].leader if decodes else alloc.head}.get(fe.orchestrator_placement, alloc.head)
    if fe.type == "trtllm_serve":
        return _trtllm_orchestrator(ctx, place, workers)
    nodes = [n for n in alloc.workers if n != alloc.head][:fe.num_additional_frontends + 1] if multi else [place]
    fronts: list[Role] = []
    nginx = None
    if multi:
        nginx = _role(ctx, "nginx", "NGINX", alloc.head, [], "/health", "nginx: the public endpoint, "
                      "round robin over the frontends")
    for i, node in enumerate(nodes):
        var = f"FRONTEND_{i}"
        if fe.type == "dynamo":
            env = _merged([], [("ETCD_ENDPOINTS", f"http://{_host('ETCD')}:{_port('ETCD')}"),
                               ("NATS_SERVER", f"nats://{_host('NATS')}:{_port('NATS')}"),
                               ("DYN_REQUEST_PLANE", r.dynamo.request_plane),
                               ("DYN_SKIP_SGLANG_LOG_FORMATTING", "1")],
                          [("DYN_EVENT_PLANE", r.dynamo.event_plane)] if r.dynamo.event_plane else [],
                          _otel(ctx, "dynamo-frontend"), {**_wheel_env(ctx), **r.environment}, fe.env or {})
            argv = ["python3", "-m", "dynamo.frontend", f"--http-port={_port(var)}", *args_flags(fe.args)]
            fronts.append(_role(ctx, f"frontend-{i}", var, node, _setup(ctx, _install(ctx, argv)), "/health",
                                f"Dynamo frontend {i}", env=env))
        elif fe.type == "sglang":
            fronts.append(_role(ctx, f"router-{i}", var, node, _router_argv(ctx, var, workers), "/health",
                                f"sglang router {i}", env=list((fe.env or {}).items())))
        else:
            raise PlanError(f"{dep.source}: frontend.type {fe.type!r}: expected dynamo, sglang, "
                            f"trtllm_serve or vllm")
    if nginx is None:
        return fronts[0]
    nginx.argv = _nginx_argv(ctx, fronts)
    return nginx


def _router_argv(ctx: _Ctx, var: str, workers: Mapping[str, Endpoint]) -> list[str]:
    def url(e: Endpoint) -> str:
        grpc = ctx.dep.engine_config(e.role).get("grpc-mode") is True
        return f"{'grpc' if grpc else 'http'}://{_host(_var(e))}:{_port(_var(e))}"
    argv = ["python3", "-m", "sglang_router.launch_router"]
    if ctx.dep.disaggregated:
        argv.append("--pd-disaggregation")
        for e in workers.values():
            if e.role == "prefill":
                argv += ["--prefill", url(e), shell.var(_var(e) + "_KV_PORT")]
        for e in workers.values():
            if e.role == "decode":
                argv += ["--decode", url(e)]
    else:
        argv += ["--worker-urls", *(url(e) for e in workers.values())]
    return [*argv, "--host", "0.0.0.0", "--port", _port(var), *args_flags(ctx.dep.frontend.args)]


def _nginx_argv(ctx: _Ctx, fronts: Sequence[Role]) -> list[str]:
    fe = ctx.dep.frontend
    return engines.self_contained(engines.nginx(
        [f"{_host(f.var)}:{_port(f.var)}" for f in fronts], _port("NGINX"), f"{ctx.logs}/nginx.conf",
        keepalive_timeout=fe.nginx_keepalive_timeout,
        affinity_header=fe.nginx_session_affinity_header if fe.nginx_session_affinity else None,
        raise_ulimit=fe.nginx_raise_ulimit))


def _trtllm_orchestrator(ctx: _Ctx, node: int, workers: Mapping[str, Endpoint]) -> Role:
    fe = ctx.dep.frontend
    var = "FRONTEND_0"

    def servers(role: str, router: Mapping[str, Any] | None) -> dict[str, Any]:
        urls = [f"{_host(v)}:{_port(v)}" for v, e in workers.items() if e.role == role]
        out: dict[str, Any] = {"num_instances": len(urls), "urls": urls}
        if router is not None:
            out["router"] = dict(router)
        return out
    ser: dict[str, Any] = {"context_servers": servers("prefill", fe.ctx_router),
                           "generation_servers": servers("decode", fe.gen_router),
                           "hostname": "0.0.0.0", "port": _port(var), **(fe.server_config_extra or {})}
    path = f"{ctx.logs}/ser.yaml"
    argv = [*engines._WRITER, engines._yaml(ser), path, "trtllm-serve", "disaggregated", "--config", path,
            *args_flags(fe.args)]
    return _role(ctx, "frontend-0", var, node, argv, "/health", "trtllm-serve disaggregated orchestrator",
                 env=list((fe.env or {}).items()))


def _prepare(runtime: containers.Runtime, specs: Sequence[containers.ContainerSpec]) -> str:
    """The image imports before any role (enroot/pyxis squash cache): the model container's
    and nginx's; one bash group so the script's ``if ! ...`` covers both."""
    steps = [p for p in (runtime.prepare(s) for s in specs) if p]
    lines = [shell.command([shell.var("IXHPC_PYTHON"), *p[1:]]) for p in steps]
    return lines[0] if len(lines) == 1 else "{ " + " && ".join(lines) + "; }" if lines else ""


def _srun_line(role: Role, runtime: containers.Runtime, spec: containers.ContainerSpec,
               profile: ClusterProfile, dep: Deployment) -> str:
    """placement's srun line, plus srtctl's per-process srun flags (8.2): MPI for TensorRT-LLM
    workers and the trtllm-serve orchestrator (not on the local profile, which has no PMIx)
    and the recipe's ``srun_options`` on sglang/vLLM workers."""
    line = srun_line(role, runtime, spec, profile)
    extra: list[str] = []
    trt_worker = dep.backend_type == "trtllm" and role.var.startswith(("PREFILL_", "DECODE_", "AGG_"))
    if (trt_worker or (role.name == "frontend-0" and dep.frontend.type == "trtllm_serve")) \
            and not profile.engine_standins:
        extra += ["--mpi=pmix", "--oversubscribe"] if trt_worker else ["--mpi=pmix"]
    if trt_worker:   # one rank that dies ends the step, so the role fails at once (fail-fast)
        extra.append("--kill-on-bad-exit=1")
    if dep.backend_type != "trtllm" and role.var.startswith(("PREFILL_", "DECODE_", "AGG_")):
        extra += [f"--{k}={v}" if v != "" else f"--{k}" for k, v in dep.recipe.srun_options.items()]
    if not extra:
        return line
    prefix = "srun --overlap "
    assert line.startswith(prefix), line
    return prefix + " ".join(shell.word(x) for x in extra) + " " + line[len(prefix):]


# ---------------------------------------------------------------- benchmark, sbatch, header


def _rate(value: str | int | None) -> float:
    text = str(value).strip().lower() if value is not None else ""
    return math.inf if text in ("", "inf", "infinity") else float(text)


def _limit_minutes(limit: str | None) -> int:
    """Slurm's time forms ([D-]H:M:S, [D-]H:M, D-H, M:S, M) in whole minutes, at least 1."""
    text = limit or SRT_TIME_LIMIT
    days, _, rest = text.rpartition("-")
    parts = [int(x) for x in rest.split(":")]
    if days:                 # D-H, D-H:M, D-H:M:S
        h, m, sec = (parts + [0, 0])[:3]
    elif len(parts) == 3:    # H:M:S
        h, m, sec = parts
    else:                    # M, M:S
        h, m, sec = 0, parts[0], parts[1] if len(parts) == 2 else 0
    return max(1, (int(days or 0) * 24 + h) * 60 + m + (1 if sec else 0))


def _concs(dep: Deployment) -> list[int]:
    """The job's concurrencies. A custom benchmark runs once: at its first concurrency, else
    its ``env`` ``CONC`` (InferenceX's agentic recipes), else 1 (the point's record needs one)."""
    b = dep.recipe.benchmark
    concs = sorted(set(b.concurrency_list()))
    if b.type != "custom":
        return concs
    conc = str((b.env or {}).get("CONC", ""))
    return concs[:1] or [int(conc) if conc.isdigit() and int(conc) > 0 else 1]


def _custom_env(ctx: _Ctx) -> list[tuple[str, str]]:
    """SPEC 13.1 for ``custom``: ``SRT_<MODE>_IPS`` / ``_ENDPOINTS`` (one entry per logical worker
    leader, comma-separated; the port the job health-checks: Dynamo's system port, else the
    worker's HTTP port) and ``AIPERF_SERVER_METRICS_URLS`` (each leader's ``/metrics``)."""
    out: list[tuple[str, str]] = []
    urls: list[str] = []
    for role in ("prefill", "decode", "aggregated"):
        leaders = [_var(e) for e in ctx.alloc.endpoints if e.role == role]
        if not leaders:
            continue
        out += [(f"SRT_{_SHORT[role]}_IPS", ",".join(_host(v) for v in leaders)),
                (f"SRT_{_SHORT[role]}_ENDPOINTS", ",".join(f"{_host(v)}:{_port(v)}" for v in leaders))]
        urls += [f"http://{_host(v)}:{_port(v)}/metrics" for v in leaders]
    return [*out, ("AIPERF_SERVER_METRICS_URLS", ",".join(urls))]


def _warmup_mult(dep: Deployment) -> int:
    b = dep.recipe.benchmark
    return 2 if b.num_warmup_mult is None else b.num_warmup_mult


def _bench_argv(ctx: _Ctx, public: Role) -> list[str]:
    """sa-bench's settings (13.2) for ixhpc's client: per concurrency the warm-up
    (NUM_WARMUPS = warmup mult x C; with mult 1 simply C) and C x prompts mult prompts at req_rate. It talks to the
    public endpoint's address (SPEC 17.11: sa-bench always uses localhost:8000)."""
    b = ctx.dep.benchmark
    rate = "inf" if _rate(b.req_rate) == math.inf else str(b.req_rate)
    argv = ["python", "-m", "ixhpc.bench",
            "--base-url", f"http://{_host(public.var)}:{_port(public.var)}",
            "--model", ctx.served, "--isl", str(b.isl), "--osl", str(b.osl),
            "--random-range-ratio", str(0.8 if b.random_range_ratio is None else b.random_range_ratio),
            "--num-prompts", shell.var("NUM_PROMPTS"), "--max-concurrency", shell.var("CONC"),
            "--num-warmups", shell.var("CONC" if _warmup_mult(ctx.dep) == 1 else "NUM_WARMUPS"),
            "--request-rate", rate,
            "--seed", "0", "--output", ScriptPaths.bench_json_text("CONC"), "--ignore-eos"]
    if b.temperature:
        argv += ["--temperature", str(b.temperature)]
    if b.use_chat_template:
        argv.append("--use-chat-template")
    return argv


def _sbatch(dep: Deployment, profile: ClusterProfile, partition: str, run_dir: Path, run_id: str,
            key: str, nodes: int, component: int = 0) -> dict[str, str | bool]:
    """The #SBATCH options of the job, or of one component of a heterogeneous job (the
    job-wide ones -- name, output, requeue -- on component 0 only)."""
    r = dep.recipe
    gpn = dep.gpus_per_node
    limit = r.slurm.time_limit
    if limit is not None and not _TIME.match(limit):
        raise PlanError(f"{dep.source}: slurm.time_limit {limit!r}: expected [D-]HH:MM:SS, HH:MM or minutes")
    opts: dict[str, str | bool] = {
        "job-name": f"ixhpc-{run_id}-{key}"[:200], "partition": partition, "nodes": str(nodes),
        "ntasks-per-node": str(gpn) if dep.backend_type == "trtllm" else "1",
        "time": limit or SRT_TIME_LIMIT,
        "output": str(Layout.of(run_dir).job_log_pattern(key)),
    }
    opts.update(profile_sbatch(profile, nodes, gpn, r.slurm.account))
    for k, v in r.sbatch_directives.items():
        if k in _OWN_SBATCH:
            raise PlanError(f"{dep.source}: sbatch_directives {k}: ixhpc sets it itself; expected no {k}")
        opts[k] = _as_slurm_reads(v) if v != "" else True
    if component:
        for name in ("job-name", "output", "no-requeue"):
            opts.pop(name, None)
    try:
        directives(opts)
    except ValueError as exc:
        raise ConfigError(f"cluster '{profile.name}' / recipe {dep.source}: {exc}") from None
    return opts


def _variables(dep: Deployment, point: SrtDisaggPoint | SrtAggPoint, run_dir: Path, key: str,
               alloc: Allocation) -> list[tuple[str, str]]:
    return script_variables(run_dir, key, alloc.nodes, point.ixhpc)


def _header(dep: Deployment, key: str, alloc: Allocation, concs: list[int], installs: str | None,
            replay: bool = False) -> list[str]:
    r = dep.recipe
    d = r.dynamo
    asked = (f"hash {d.hash}" if d.hash else f"wheel {d.wheel}" if d.wheel
             else "top of tree" if d.top_of_tree else f"version {d.version}")
    dynamo = (f"{installs} installed from PyPI in each worker and frontend container" if installs else
              "not installed by the job (the image must carry it)" + (
                  f"; the recipe asks for {asked}" if d.install and r.frontend.type == "dynamo" else ""))
    shape = ", ".join(f"{dep.worker_count(role)} {role} x {dep.gpus_per_worker(role)} GPU(s)"
                      for role in ROLES if dep.worker_count(role))
    return [comment_text(x) for x in (
        f"ixhpc job {key}",
        f"srt-slurm recipe {dep.source} (deployment {dep.name}), as srtctl v1.0.68 launches it",
        f"model {dep.model_path} ({r.model.precision}); image {dep.container}; backend {dep.backend_type}, "
        f"frontend {r.frontend.type}",
        f"{alloc.nodes} node(s) of {dep.gpus_per_node} GPU(s); {shape}; head node {alloc.head}",
        f"agentic-coding trace replay (ixhpc.bench); concurrencies {' '.join(map(str, concs))}" if replay else
        f"sa-bench isl {r.benchmark.isl} osl {r.benchmark.osl}; concurrencies {' '.join(map(str, concs))}"
        if r.benchmark.type != "custom" else
        f"custom benchmark (bash -lc, once, recorded as concurrency {concs[0]}): the point records its exit "
        f"status, log and wall time, no throughput metrics",
        f"Dynamo: {dynamo}" + (f"; setup_script {r.setup_script} runs from /configs first" if r.setup_script else ""),
    )]
