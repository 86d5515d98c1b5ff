"""From run points to job plans: which roles run where, with which command lines.

A job is one allocation. Single-node points that differ only in concurrency share one job
(the engine starts once, the client runs each concurrency in turn); a multi-node point is
one job carrying its whole concurrency list. Node placement, ports and GPU counts are
computed here once, from the point's topology, and rendered into the script as they are.

Layout (relative node index within the allocation; nodes per role by ixhpc.topology):
    single-node and multi-node aggregated: the one engine (server) from node 0 on, its head
    and the benchmark client on node 0;
    disaggregated: prefill workers first, then the decode workers; the router (frontend)
    and the benchmark client run on node 0 beside prefill worker 0.

A disaggregated point whose prefill and decode pools name different ``hardware`` (the current
format) is ONE Slurm heterogeneous job: component 0 holds the prefill workers (the router and
the client beside prefill worker 0), on the partition serving the prefill hardware;
component 1 the decode workers, on the decode hardware's partition. Its script has one
``#SBATCH`` block per component, separated by ``#SBATCH hetjob``; every ``srun`` names its
``--het-group`` and a node relative to that group; node indices count group 0's nodes, then
group 1's (``SLURM_JOB_NODELIST_HET_GROUP_<N>``). Slurm's submitit cannot submit one, so
``ixhpc.submission`` hands it to ``sbatch`` itself.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ixhpc import __version__, containers, engines, names, shell
from ixhpc.bench.validity import stall_timeout
from ixhpc.engine_config import PointValues, Resolved, config_flags, depends_on_conc, resolve
from ixhpc.errors import ConfigError, PlanError
from ixhpc.point_metadata import PointKind
from ixhpc.profiles import ClusterProfile
from ixhpc.recipe import BenchmarkSettings, IxhpcBlock
from ixhpc.rundir import Layout, ScriptPaths
from ixhpc.sweep import AgenticRun, DisaggPoint, MultiAggPoint, RunPoint, SinglePoint
from ixhpc.topology import Slot, Topology

if TYPE_CHECKING:
    from ixhpc.evals.plan import EvalPlan

MAX_ROLES = 20      # role i: PORT_BASE + i (HTTP) and PORT_BASE + MAX_ROLES + i (KV side channel)
# A job's block of 2 * MAX_ROLES ports: PORT_FIRST + (job id mod PORT_BLOCKS) * block. All
# blocks lie below Linux's ephemeral range (32768-60999 by default), so the local port of an
# outgoing connection (health checks, the client, metric scrapes) never takes a role's port.
PORT_FIRST = 20000
PORT_BLOCKS = 300
PORT_BASE_RULE = f"{PORT_FIRST} + (SLURM_JOB_ID % {PORT_BLOCKS}) * {2 * MAX_ROLES}"
# Names passed from the submitting shell into containers, never written anywhere.
SECRET_PASSTHROUGH = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
# The job script's own variables: its values section (the run directory's paths, then these),
# then what its library, node lookup and benchmark loop set. A recipe's env never enters the
# script's shell (see with_env) and may use none of these names (ixhpc.recipe refuses them).
SCRIPT_VARIABLES = ("IXHPC_PYTHON", "NUM_NODES", "HEALTH_TIMEOUT", "NUM_PROMPTS_FACTOR",
                    "NUM_WARMUPS_FIXED")
JOB_VARIABLES = (*Layout.VARIABLES, *SCRIPT_VARIABLES, "CONCURRENCIES", "NODES", "ADDR", "PORT_BASE",
                 "CONC", "NUM_PROMPTS", "NUM_WARMUPS", "ROLE_PIDS", "ROLE_NAMES", "ROLE_LOGS",
                 "FAILED_CONCS", "SAMPLER_PIDS", "PS1", "ECONC", "ECONCS", "EVAL_AFTER",
                 "EVAL_PYTHON", "RUN_EVAL", "EVAL_ONLY", "EVAL_ARGS")
# Each role's address, <var>_HOST, <var>_PORT and <var>_KV_PORT (Role.var: SERVER, PREFILL_0, ...).
# Profiles with engine-standins (the local cluster): the engines' commands run ixhpc.standins.
STANDINS_LINE = (f"{ScriptPaths.standins_line()}  # engine stand-ins (local profile only): the engine "
                 f"commands below run ixhpc's simulated engine")
ROLE_VARIABLE = re.compile(r"(SERVER|ROUTER|ETCD|NATS|(PREFILL|DECODE)_[0-9]+)_(HOST|PORT|KV_PORT)")


def job_variable(name: str) -> bool:
    """Whether the job script defines ``name`` itself."""
    return name in JOB_VARIABLES or ROLE_VARIABLE.fullmatch(name) is not None


@dataclasses.dataclass
class Role:
    name: str              # prefill-0, decode-1, router, server
    var: str               # shell variable prefix: PREFILL_0 -> PREFILL_0_HOST / _PORT
    node_index: int        # first node, relative to the allocation
    nnodes: int
    port_index: int        # port = PORT_BASE + port_index
    gpus: int              # GPUs per node for this role's step (0: none)
    argv: list[str]
    health_path: str | None
    comment: str
    tasks_per_node: int = 1
    kv_port: bool = False  # also gets <var>_KV_PORT: its KV-transfer side channel
    command: str = ""      # the rendered srun line
    here: str = ""         # inside the point's container on its node: the program alone
    het_group: int | None = None   # a heterogeneous job: its component
    group_first_node: int = 0      # the first node of its component (srun --relative counts from it)
    first_gpu: int = 0             # its engine's first GPU on each of its nodes (power sampling)
    used_gpus: int = 0             # GPUs its engine uses on each of its nodes

    @property
    def kv_port_index(self) -> int:
        return MAX_ROLES + self.port_index

    @property
    def url(self) -> str:
        """Its HTTP address in the job script (its host and port variables)."""
        return f"http://{shell.var(self.var + '_HOST')}:{shell.var(self.var + '_PORT')}"


@dataclasses.dataclass
class JobPlan:
    key: str
    kind: PointKind                    # its points' shape
    points: list[RunPoint]             # one per concurrency (single) or one (multi-node)
    concs: list[int]
    sbatch: dict[str, str | bool]      # option -> value (True: a flag)
    variables: list[tuple[str, str]]
    step_env: list[tuple[str, str]]   # the recipe's env: on each role's and bench step's command
    roles: list[Role]
    prepare_command: str               # "" or the image import to run before any role
    bench_argv: list[str]              # the client's program (the plan as data shows it)
    bench_command: str
    header: list[str]
    placement: list[str]
    runtime: containers.Runtime
    container: containers.ContainerSpec
    version: str = __version__
    standins: str = ""                 # the script's one line putting the engine stand-ins first
    # a heterogeneous job: the options of components 1.. (``sbatch`` is component 0's) and
    # each component's (partition, nodes)
    het_sbatch: list[dict[str, str | bool]] = dataclasses.field(default_factory=list)
    het_groups: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    script: ScriptStep | None = None   # script mode: InferenceX's own script (plan_script_job)
    power_samplers: list[PowerSampler] = dataclasses.field(default_factory=list)  # one per node
    ingest_args: str = ""              # the ingest step's power options (expected GPUs, strictness)
    evals: EvalPlan | None = None      # accuracy evals after the benchmarks (ixhpc.evals.plan)
    slo: str = ""                      # an SLO search over the concurrencies (ixhpc.slo); "": run each
    # a custom benchmark's command (srt-slurm ``benchmark.type: custom``): one step runs it, the
    # point records its exit status, log and wall time (no throughput metrics); "": the client
    custom_bench: str = ""
    # variables the recipe sets beyond its ixhpc env (an srt-slurm recipe's maps): the plan as data
    # marks them "recipe"
    recipe_env: list[str] = dataclasses.field(default_factory=list)

    @property
    def script_name(self) -> str:
        return Layout.SCRIPT.format(job=self.key)

    @property
    def script_rel(self) -> str:
        return Layout.script_rel(self.key)

    @property
    def directives(self) -> list[str]:
        """#SBATCH option strings; a heterogeneous job's components separated by ``hetjob``."""
        out = directives(self.sbatch)
        for opts in self.het_sbatch:
            out += ["hetjob", *directives(opts)]
        return out

    def point_for(self, conc: int) -> RunPoint:
        return next(p for p in self.points if conc in p.conc)

    def metadata(self, conc: int) -> dict[str, str | int | float | bool]:
        """The flat record render writes beside the job (ixhpc.point_metadata)."""
        return self.point_for(conc).metadata(conc).record()

    def result_key(self, conc: int) -> str:
        """Names the HDF5 file of one benchmark: a multi-node point runs several."""
        point = self.point_for(conc)
        return point.key if len(point.conc) == 1 else f"{point.key}.c{conc}"


@dataclasses.dataclass
class PowerSampler:
    """The GPU power sampler step of one node (``ixhpc.job.power``)."""

    node: int
    command: str           # the rendered srun line


@dataclasses.dataclass
class ScriptStep:
    """Script mode (ixhpc.inferencex_scripts): one step per concurrency runs InferenceX's script."""

    checkout: str          # the InferenceX checkout on the submitting host
    script: str            # the chosen script, relative to the checkout
    workspace: str         # the job's copy of the checkout (mounted at /workspace)
    result_filename: str   # RESULT_FILENAME, over the script's ${CONC}
    command: str           # the rendered srun line (per ${CONC})
    copy_command: str      # fills the workspace from the checkout
    evals: tuple[Any, ...] = ()  # per concurrency: RUN_EVAL, EVAL_ONLY, ingest options (ix.ScriptEval)


def directives(opts: dict[str, str | bool]) -> list[str]:
    """#SBATCH lines' texts, each checked to be safe there (values quoted where needed)."""
    return [shell.directive(f"--{k}" if v is True else f"--{k}={v}") for k, v in opts.items()]


def option_words(opts: dict[str, str | bool]) -> list[str]:
    """The same options as argv words (``salloc``), held to what an #SBATCH line can say."""
    return [shell.option_word(f"--{k}" if v is True else f"--{k}={v}") for k, v in opts.items()]


# ---------------------------------------------------------------- grouping


def group_points(points: Sequence[RunPoint]) -> list[list[RunPoint]]:
    """Single-node points equal but for concurrency share a job; multi-node points don't.
    Points whose engine settings depend on the concurrency (``engine_config.depends_on_conc``)
    get a job, and so an engine start, per concurrency."""
    groups: dict[str, list[RunPoint]] = {}
    for p in points:
        if depends_on_conc(p.ixhpc):
            for one in engine_starts(p):
                groups[one.key] = [one]
            continue
        if not isinstance(p, SinglePoint) or p.agentic is not None:  # agentic: a cold prefix cache each
            groups[p.key] = [p]
            continue
        row = p.to_inferencex_row()
        row.pop("conc")
        row.pop("run-eval")
        ident = json.dumps([row, p.config_key, p.ixhpc.model_dump(mode="json")], sort_keys=True)
        groups.setdefault(ident, []).append(p)
    return list(groups.values())


def engine_starts(p: RunPoint) -> list[RunPoint]:
    """The point as its engines start: once for all its concurrencies, or, where its engine
    settings depend on the concurrency (``engine_config.depends_on_conc``), one point per
    concurrency (its key naming the one)."""
    if len(p.conc) == 1 or not depends_on_conc(p.ixhpc):
        return [p]
    return [p.model_copy(update={"conc": [c], "key": names.with_concs(p.key, [c])}) for c in p.conc]


def job_key(group: Sequence[RunPoint]) -> str:
    if len(group) == 1:
        return group[0].key
    return names.with_concs(group[0].key, [p.conc[0] for p in group])


# ---------------------------------------------------------------- planning


def plan_job(group: Sequence[RunPoint], profile: ClusterProfile, run_dir: Path, run_id: str,
             slo: str = "") -> JobPlan:
    """``slo`` (``ixhpc.slo``'s canonical spelling): the job searches its concurrencies for the
    highest meeting it instead of running each one."""
    from ixhpc.evals import plan as evals  # it builds on this module

    group = [evals.narrowed(p) for p in group]  # an eval-only multi-node point: its eval's concurrency
    first = group[0]
    topo = first.topology
    if topo is None:
        raise PlanError(f"{first.config_key}: no partition of cluster '{profile.name}' serves "
                        f"runner '{first.runner}'")
    key = job_key(group)
    concs = sorted({c for p in group for c in p.conc})
    model = _model_path(first, profile)
    _check_pools(first, profile)
    try:
        served = evals.engine_point(first)  # an eval-only engine serves the eval's context
        roles = (disagg_roles(served, topo, profile, model) if isinstance(served, DisaggPoint)
                 else aggregated_roles(served, topo, model))
    except ConfigError as exc:  # what an engine cannot run, said at the recipe entry
        raise ConfigError([f"{first.source}: {first.config_key}: {e}" for e in exc.errors]) from None
    if len(roles) > MAX_ROLES:
        raise PlanError(f"{first.config_key}: {len(roles)} roles in one job; expected at most "
                        f"{MAX_ROLES} (each job has a block of {2 * MAX_ROLES} ports)")
    runtime = containers.runtime(profile.container_runtime, squash_cache=expand_path(profile.squash_cache),
                                 arch=profile.arch)
    spec = container_spec(first, profile, run_dir)
    env = _step_env(first)
    for role in roles:
        role.argv = with_env(env, role.argv)
        role.command = srun_line(role, runtime, spec, profile)
        if runtime.name != "none":
            role.here = shell.command(python_argv(role.argv, runtime))
    prepare = runtime.prepare(spec)
    bench = _bench_argv(first, roles, first.ixhpc.time_limit or profile.time_limit)
    if slo:
        bench += ["--slo", slo]
    components = _components(first, topo, profile, run_dir, run_id, key)
    plan = JobPlan(
        key=key, kind=first.kind, points=list(group), concs=concs,
        sbatch=components[0],
        het_sbatch=components[1:],
        het_groups=([(str(o["partition"]), int(o["nodes"])) for o in components]
                    if len(components) > 1 else []),
        variables=_variables(first, run_dir, key),
        step_env=env,
        roles=roles,
        prepare_command=shell.command(_host_python(prepare)) if prepare else "",
        bench_argv=bench,
        bench_command=bench_line(first, bench, runtime, spec, env, topo.heterogeneous),
        header=_header(first, key, concs),
        placement=[f"node {r.node_index}{'-' + str(r.node_index + r.nnodes - 1) if r.nnodes > 1 else ''}: "
                   f"{r.name} ({r.comment})" for r in roles],
        runtime=runtime, container=spec,
        standins=STANDINS_LINE if profile.engine_standins else "",
        slo=slo,
    )
    if profile.power_source != "none":
        plan.power_samplers, expect = _power_samplers(roles, profile.power_source, first.framework)
        plan.ingest_args = shell.command([*(f"--power-expect={k}={n}" for k, n in sorted(expect.items())),
                                          *(["--require-power"] if first.ixhpc.benchmark.require_power else [])])
    plan.evals = evals.plan(group, roles, profile, runtime, spec, plan.ingest_args, topo.heterogeneous)
    return plan


def _check_pools(p: RunPoint, profile: ClusterProfile) -> None:
    """A point whose pools name different hardware runs each pool where that hardware is."""
    if isinstance(p, DisaggPoint) and p.heterogeneous and p.pools is None:
        known = ", ".join(f"{x.name} ({', '.join(x.runners) or 'no runner labels'})" for x in profile.partitions)
        raise PlanError(f"{p.source}: {p.config_key}: prefill hardware '{p.prefill.hardware}' and decode "
                        f"hardware '{p.decode.hardware}' differ, and cluster '{profile.name}' has no "
                        f"partition serving each (a partition serves a hardware named as one of its "
                        f"runner labels or as its name); partitions: {known}")


def _components(p: RunPoint, topo: Topology, profile: ClusterProfile, run_dir: Path, run_id: str,
                key: str) -> list[dict[str, str | bool]]:
    """The job's sbatch options; a heterogeneous job's per component (component 0 first: the
    job-wide options -- name, output, requeue -- only there)."""
    if not (isinstance(p, DisaggPoint) and p.pools is not None):
        return [_sbatch(p, topo, profile, run_dir, run_id, key)]
    out = []
    for i, (site, role) in enumerate(zip(p.pools, topo.roles)):
        opts = _sbatch(p, topo, profile, run_dir, run_id, key, partition=site.partition,
                       nodes=role.nodes, gpn=site.gpus_per_node)
        if i:
            for name in ("job-name", "output", "no-requeue"):
                opts.pop(name, None)
        out.append(opts)
    return out


def expand_path(path: str | None) -> str | None:
    # A quoted "~" would reach the job literally: resolve it for the submitting user now.
    return str(Path(path).expanduser()) if path else None


def _more(p: RunPoint, w: Any, hardware: bool = True) -> str:
    """A current-format engine's pp/dcp-size/pcp-size (always, as the point carries them) and
    hardware (when set); "" for a March-format point."""
    if not p.current:
        return ""
    hw = f" on {w.hardware}" if hardware and getattr(w, "hardware", None) else ""
    return f" pp{w.pp} dcp{w.dcp_size} pcp{w.pcp_size}{hw}"


def _shape(p: RunPoint) -> str:
    if isinstance(p, SinglePoint):
        return f"tp{p.tp} ep{p.ep}{_more(p, p)} dp-attn {p.dp_attn}"
    if isinstance(p, MultiAggPoint):
        w = p.prefill
        return f"one aggregated engine tp{w.tp} ep{w.ep}{_more(p, w)} dp-attn {w.dp_attn}"
    return (f"prefill {p.prefill.num_worker}x(tp{p.prefill.tp} ep{p.prefill.ep}{_more(p, p.prefill)}) / decode "
            f"{p.decode.num_worker}x(tp{p.decode.tp} ep{p.decode.ep}{_more(p, p.decode)})")


def _header(p: RunPoint, key: str, concs: list[int]) -> list[str]:
    shape = _shape(p)
    where = f"on partition {p.partition} of cluster {p.cluster}"
    if isinstance(p, DisaggPoint) and p.pools is not None and p.topology is not None:
        pre, dec = p.topology.roles
        where = (f"as a heterogeneous job of cluster {p.cluster}: prefill {pre.nodes} node(s) on "
                 f"partition {p.pools[0].partition}, decode {dec.nodes} node(s) on partition "
                 f"{p.pools[1].partition}")
    lines = [
        f"ixhpc job {key}",
        f"recipe entry {p.config_key} ({p.source})",
        f"{p.model} {p.precision} on {p.runner} with {p.framework}; image {p.image}",
        (_agentic_line(p.agentic) + f"; {shape}" if p.agentic else
         f"isl {p.isl} osl {p.osl} max-model-len {p.max_model_len}; {shape}") + f"; spec-decoding {p.spec_decoding}",
    ]
    if p.current:
        router = f"{p.router.name} {p.router.version}" if p.router else "not set"
        transfer = p.kv_p2p_transfer if not isinstance(p, SinglePoint) and p.kv_p2p_transfer else "not set"
        lines.append(f"current InferenceX format; router {router}; kv-p2p-transfer {transfer}")
    lines.append(f"{p.nodes} node(s), {p.gpus} GPU(s) {where}; concurrencies {' '.join(map(str, concs))}")
    return [comment_text(x) for x in lines]


def _agentic_line(a: AgenticRun) -> str:
    backend = f" ({a.kv_offload_backend.name})" if a.kv_offload_backend else ""
    corpus = f"traces {a.traces}" if a.traces else (f"a synthetic corpus generated at render "
                                                    f"({a.traces_label}, {Layout.TRACES} in the point directory)")
    return (f"agentic-coding replay of {corpus}, {a.duration} s, warm-up {a.warmup_requests_per_lane} "
            f"per lane; kv-offloading {a.kv_offloading}{backend}, {a.total_cpu_dram_gb} GB CPU DRAM; "
            f"no context cap")


def comment_text(text: str) -> str:
    # A comment line must stay one line: a newline in a recipe value would end it.
    return re.sub(r"[\x00-\x1f\x7f]", "?", text)


def _sbatch(p: RunPoint, topo: Topology, profile: ClusterProfile, run_dir: Path, run_id: str,
            key: str, partition: str | None = None, nodes: int | None = None,
            gpn: int | None = None) -> dict[str, str | bool]:
    """The job's options (partition, nodes, gpn: one component of a heterogeneous job's)."""
    minutes = p.ixhpc.time_limit or profile.time_limit
    nodes = topo.nodes if nodes is None else nodes
    opts: dict[str, str | bool] = {
        "job-name": f"ixhpc-{run_id}-{key}"[:200],
        "partition": partition or str(p.partition),
        "nodes": str(nodes),
        "ntasks-per-node": "1",
        "time": f"{minutes // 60:02d}:{minutes % 60:02d}:00",
        "output": str(Layout.of(run_dir).job_log_pattern(key)),
    }
    opts.update(profile_sbatch(profile, nodes, gpn or p.gpus_per_node or profile.gpus_per_node))
    try:
        directives(opts)
    except ValueError as exc:
        raise ConfigError(f"cluster '{profile.name}' / recipe {p.config_key}: {exc}") from None
    return opts


def profile_sbatch(profile: ClusterProfile, nodes: int, gpn: int,
                   account: str | None = None) -> dict[str, str | bool]:
    """The options a cluster profile gives every job of ``nodes`` nodes with ``gpn`` GPUs each
    (``account``: a recipe's own, else the profile's)."""
    opts: dict[str, str | bool] = {}
    if profile.use_gpus_per_node:
        opts["gpus-per-node"] = str(gpn)
    else:
        opts["gres"] = f"gpu:{gpn}"
    # A node failure ends the job (and `resume` reruns what is missing) instead of a silent
    # requeue under the same job id.
    opts["no-requeue"] = True
    if profile.use_exclusive:
        opts["exclusive"] = True
    if profile.use_segment and profile.nvlink_domain_nodes and nodes <= profile.nvlink_domain_nodes:
        opts["segment"] = str(nodes)
    for name, value in (("account", account or profile.account), ("qos", profile.qos),
                        ("reservation", profile.reservation)):
        if value:
            opts[name] = str(value)
    if profile.exclude:
        opts["exclude"] = ",".join(profile.exclude)
    for k, v in profile.extra_sbatch.items():
        opts[k] = v if v != "" else True
    return opts


def script_variables(run_dir: Path, key: str, nodes: int | None, extras: IxhpcBlock) -> list[tuple[str, str]]:
    """The job script's values: the run layout's paths, then ``SCRIPT_VARIABLES``."""
    bench = extras.benchmark
    values = (sys.executable, str(nodes), str(extras.health_timeout), str(bench.num_prompts_factor),
              "" if bench.num_warmups is None else str(bench.num_warmups))
    return [*Layout.of(run_dir).variables(key), *zip(SCRIPT_VARIABLES, values, strict=True)]


def _variables(p: RunPoint, run_dir: Path, key: str) -> list[tuple[str, str]]:
    return script_variables(run_dir, key, p.nodes, p.ixhpc)


def _step_env(p: RunPoint) -> list[tuple[str, str]]:
    # Secret-looking names and names the job uses itself: refused by the recipe model.
    return sorted(p.ixhpc.env.items())


def with_env(env: list[tuple[str, str]], argv: list[str]) -> list[str]:
    """A step's program with the recipe's env: ``env NAME=VALUE ... PROGRAM``.

    The recipe's env is a prefix of each role's and the benchmark client's command, run by the
    step itself (inside its container, after pyxis/enroot set up the image's environment), never
    a variable of the job script's shell: the job's own variables stay out of a recipe's reach,
    and every value is one quoted word on the visible ``srun`` line. It merges into an ``env``
    prefix the command already has, before its pairs (which win on a repeated name).
    """
    if not env:
        return argv
    pairs = [f"{k}={v}" for k, v in env]
    return ["env", *pairs, *argv[1:]] if argv[:1] == ["env"] else ["env", *pairs, *argv]


# ---------------------------------------------------------------- roles


def _model_path(p: RunPoint, profile: ClusterProfile) -> str:
    """The recipe's model-path, else <profile model-dir>/<model>, else the model name."""
    if p.ixhpc.model_path:
        return p.ixhpc.model_path
    return f"{expand_path(profile.model_dir)}/{p.model}" if profile.model_dir else p.model


def _parallel(p: RunPoint, w: Any) -> dict[str, Any]:
    """An engine's parallelism beyond tp/ep (``w``: the point or its worker block) and the GPU
    rule of the point's recipe format."""
    return {"pp": w.pp, "dcp_size": w.dcp_size, "pcp_size": w.pcp_size, "gpu_rule": p.recipe_format}


def _launch(p: RunPoint, model: str, role: engines.Role, tp: int, ep: int, dp_attn: bool, var: str,
            extra: list[str], settings: list[str] | None = None, **more: Any) -> engines.LaunchSpec:
    sim, a = p.ixhpc.sim, p.agentic
    conf = _engine_config(p, role, tp, ep, dp_attn)
    if engines.config_in_file(p.framework, role):
        more["engine_config"] = conf.config
    else:
        extra = [*config_flags(conf.config), *extra]   # engine-args last: they win
    more.update(engine_env=conf.env, transfer_backend=conf.transfer_backend)
    if a is not None:  # agentx SPEC §4: the KV-offload settings reach every engine
        more.update(kv_offloading=a.kv_offloading, total_cpu_dram_gb=a.total_cpu_dram_gb,
                    kv_offload_backend=a.kv_offload_backend.name if a.kv_offload_backend else None,
                    kv_offload_version=a.kv_offload_backend.version if a.kv_offload_backend else None)
    return engines.LaunchSpec(
        framework=p.framework, role=role, model=model,
        served_model_name=p.model, tp=tp, ep=ep, dp_attn=dp_attn,
        max_model_len=p.max_model_len or None, precision=p.precision, spec_decoding=p.spec_decoding,
        host=shell.var(f"{var}_HOST"), port=shell.var(f"{var}_PORT"),
        extra_args=list(extra), additional_settings=list(settings or []),
        sim_gpu=sim.gpu if sim else None,
        sim_model_params_b=sim.model_params_b if sim else None,
        sim_active_params_b=sim.active_params_b if sim else None,
        sim_max_batch=sim.max_batch if sim else None,
        **more,
    )


def _engine_config(p: RunPoint, role: engines.Role, tp: int, ep: int, dp_attn: bool) -> Resolved:
    """The recipe's engine config, environment and transfer backend for one role of a point
    (``ixhpc.engine_config``)."""
    values = PointValues(tp, ep, dp_attn, tuple(p.conc), getattr(p, "isl", 0), getattr(p, "osl", 0),
                         p.max_model_len or 0, p.spec_decoding)
    return resolve(p.ixhpc, "router" if role == "frontend" else role, values)


def aggregated_roles(p: SinglePoint | MultiAggPoint, topo: Topology, model: str) -> list[Role]:
    """One engine serving both phases (single-node, or multi-node aggregated): the server,
    from node 0 on over as many nodes as it needs, its head (rank 0) on node 0."""
    w: Any = p if isinstance(p, SinglePoint) else p.prefill
    tp, ep, dp_attn = w.tp, w.ep, w.dp_attn
    settings = None if isinstance(p, SinglePoint) else p.prefill.additional_settings
    (slot,) = topo.role("server").slots
    span = {"nnodes": slot.nnodes, "head_host": shell.var("SERVER_HOST")} if slot.nnodes > 1 else {}
    spec = _launch(p, model, "server", tp, ep, dp_attn, "SERVER", p.ixhpc.engine_args.server,
                   settings, **span, **_parallel(p, w))
    comment = f"{p.framework} engine, tp {tp}"
    if slot.nnodes > 1:
        comment += f" ep {ep}, {topo.gpus} GPU(s) on {slot.nnodes} node(s)"
    return [Role("server", "SERVER", 0, slot.nnodes, 0, slot.gpus, engines.build(spec),
                 engines.engine(p.framework).health_path(), comment,
                 engines.launch(spec).tasks_per_node, first_gpu=slot.first_gpu, used_gpus=slot.gpus)]


def disagg_roles(p: DisaggPoint, topo: Topology, profile: ClusterProfile, model: str) -> list[Role]:
    engine = engines.engine(p.framework)
    roles = _services(engine)
    # Dynamo's frontend and workers meet through etcd and NATS beside the frontend on node 0.
    control: dict[str, Any] = {"control_host": shell.var("ROUTER_HOST"), "etcd_port": shell.var("ETCD_PORT"),
                               "nats_port": shell.var("NATS_PORT")} if roles else {}
    args = p.ixhpc.engine_args
    for placed, w, extra in zip(topo.roles, p.workers(), (args.prefill, args.decode)):
        kind: engines.Role = "prefill" if placed.name == "prefill" else "decode"
        kv = engine.kv_port(kind)   # side channel besides HTTP: per worker, so packed ones never collide
        gpn = placed.gpus_per_node or topo.gpus_per_node
        # a heterogeneous job: the role's own component, nodes counted from its first
        het: dict[str, Any] = ({"het_group": placed.het_group, "group_first_node": placed.first_node}
               if placed.het_group is not None else {})
        where = f" on {w.hardware}" if het and w.hardware else ""
        for i, slot in enumerate(placed.slots):
            var = f"{kind.upper()}_{i}"
            kv_arg: dict[str, Any] = {kv: shell.var(f"{var}_KV_PORT")} if kv else {}
            spec = _launch(p, model, kind, w.tp, w.ep, w.dp_attn, var, extra, w.additional_settings,
                           nnodes=slot.nnodes, head_host=shell.var(f"{var}_HOST"), **control, **kv_arg,
                           **_parallel(p, w))
            argv = _visible_gpus(profile.gpu_visibility_env, gpn, slot, engines.build(spec))
            roles.append(Role(f"{kind}-{i}", var, placed.first_node + slot.node, slot.nnodes, len(roles),
                              gpn if slot.gpus < gpn else slot.gpus, argv, engine.health_path(kind),
                              f"{kind} worker {i}: tp {w.tp} ep {w.ep}{_more(p, w, hardware=False)}, "
                              f"{placed.worker_gpus} GPU(s) on {slot.nnodes} node(s){where}",
                              engines.launch(spec).tasks_per_node, kv_port=kv is not None,
                              first_gpu=slot.first_gpu, used_gpus=slot.gpus, **het))
    urls = {k: [r.url for r in roles if r.name.startswith(k)] for k in ("prefill", "decode")}
    bootstrap = [shell.var(r.var + "_KV_PORT") for r in roles if r.name.startswith("prefill")
                 and r.kv_port and engine.router_bootstrap_ports]
    router: dict[str, Any] = dict(prefill_urls=urls["prefill"], decode_urls=urls["decode"],
                                  prefill_bootstrap_ports=bootstrap, **control)
    count = p.ixhpc.frontend.count
    if count == 1:
        spec = _launch(p, model, "router", 1, 1, False, "ROUTER", args.router, **router)
        roles.append(Role("router", "ROUTER", 0, 1, len(roles), 0, engines.build(spec),
                          engine.health_path("router"),
                          "router: sends each request to a prefill worker, then to a decode worker"))
    else:
        roles += _frontends(p, topo, model, count, args.router, router, len(roles), engine)
    if topo.heterogeneous:  # the router (and Dynamo's etcd and NATS) beside prefill worker 0
        for role in roles:
            if role.het_group is None:
                role.het_group = 0
    return roles


def _frontends(p: DisaggPoint, topo: Topology, model: str, count: int, extra: list[str],
               router: dict[str, Any], first_port: int, engine: engines.Engine) -> list[Role]:
    """``count`` routers/frontends, one per node from node 1 on (wrapping; all on node 0 in a
    heterogeneous job), behind nginx on node 0, which is the ``router`` role the client and
    the health check address (srt-slurm's multiple frontends, SPEC 11.1)."""
    fronts = []
    for i in range(count):
        var = f"FRONTEND_{i}"
        spec = _launch(p, model, "router", 1, 1, False, var, extra, **router)
        node = 0 if topo.heterogeneous else (i + 1) % topo.nodes
        fronts.append(Role(f"frontend-{i}", var, node, 1, first_port + i, 0, engines.build(spec),
                           engine.health_path("router"), f"router {i} of {count}, behind nginx"))
    upstreams = [f"{shell.var(f.var + '_HOST')}:{shell.var(f.var + '_PORT')}" for f in fronts]
    web = engines.nginx(upstreams, shell.var("ROUTER_PORT"), f"/tmp/ixhpc-nginx-{shell.var('ROUTER_PORT')}.conf")
    return [*fronts, Role("router", "ROUTER", 0, 1, first_port + count, 0, engines.self_contained(web), "/health",
                          f"nginx: round robin over the {count} routers (the public endpoint)")]


def _services(engine: engines.Engine) -> list[Role]:
    if not engine.control_plane:
        return []
    names = ("etcd", "nats")
    return [Role(n, n.upper(), 0, 1, i, 0, svc.argv, None, f"dynamo {n} (control plane)")
            for i, (n, svc) in enumerate(zip(names, engines.dynamo_services(
                shell.var("ROUTER_HOST"), shell.var("ETCD_PORT"), shell.var("NATS_PORT"))))]


def _visible_gpus(names: list[str], gpn: int, slot: Slot, argv: list[str]) -> list[str]:
    """Workers smaller than a node share it: each step sees the node's GPUs and its engine
    is limited to its own slice (``first_gpu`` on), through the profile's visibility vars."""
    if slot.gpus >= gpn:
        return argv
    ids = ",".join(str(g) for g in range(slot.first_gpu, slot.first_gpu + slot.gpus))
    return with_env([(n, ids) for n in names], argv)


# ---------------------------------------------------------------- commands


def container_spec(p: RunPoint, profile: ClusterProfile, run_dir: Path) -> containers.ContainerSpec:
    # The run directory at its own path: the client writes its result there, roles their logs,
    # and ixhpc's own programs run from its bundle (ixhpc.bundle); it is the working directory.
    run = str(run_dir.resolve())
    if any(c in run for c in ":,"):
        raise PlanError(f"run directory {run}: a path with ':' or ',' cannot be mounted into a "
                        f"container; expected --results elsewhere")
    mounts = [*profile.default_mounts, *p.ixhpc.container_mounts, f"{run}:{run}"]
    if profile.model_dir and not p.ixhpc.model_path:  # weights at the same path inside
        mounts.append(f"{expand_path(profile.model_dir)}:{expand_path(profile.model_dir)}:ro")
    return containers.ContainerSpec(
        image=p.image, mounts=mounts, env_names=list(SECRET_PASSTHROUGH),  # recipe env: with_env
        workdir=run, name=None)


def srun_line(role: Role, runtime: containers.Runtime, spec: containers.ContainerSpec,
          profile: ClusterProfile) -> str:
    het = [f"--het-group={role.het_group}"] if role.het_group is not None else []
    flags = ["srun", "--overlap", *het, f"--nodes={role.nnodes}",
             f"--ntasks={role.nnodes * role.tasks_per_node}",
             f"--ntasks-per-node={role.tasks_per_node}", f"--relative={role.node_index - role.group_first_node}",
             f"--job-name={role.name}"]
    if role.gpus:
        flags.append(f"--gpus-per-node={role.gpus}" if profile.use_gpus_per_node
                     else f"--gres=gpu:{role.gpus}")
    return shell.command([*flags, *runtime.srun_args(spec), *runtime.wrap(spec, python_argv(role.argv, runtime))])


def python_argv(argv: list[str], runtime: containers.Runtime) -> list[str]:
    """A role's or the client's ``python -m ixhpc.X`` (or ``-c``) runs from the run's bundle,
    with the job's Python on the host and ``python3`` in a container (see ``ixhpc.bundle``).

    The program is the first word after any ``env NAME=VALUE`` prefix.
    """
    i = 0
    if argv[:1] == ["env"]:
        i = 1
        while i < len(argv) and "=" in argv[i] and not argv[i].startswith("-"):
            i += 1
    if argv[i:i + 1] == ["python"]:
        python = shell.var("IXHPC_PYTHON") if runtime.name == "none" else "python3"
        return [*argv[:i], python, ScriptPaths.bundle_text(), *argv[i + 1:]]
    return argv


def _host_python(argv: list[str]) -> list[str]:
    """A host-side step (``python -m ixhpc.containers``): the installed package, no bundle."""
    return [shell.var("IXHPC_PYTHON"), *argv[1:]] if argv[:1] == ["python"] else argv


def _bench_argv(p: RunPoint, roles: list[Role], time_limit_min: int) -> list[str]:
    """The load generator's program, run once per concurrency (CONC, NUM_PROMPTS, NUM_WARMUPS
    are the script's per-concurrency values)."""
    front = next(r for r in roles if r.name in ("router", "server"))
    if p.agentic is not None:
        return agentic_argv(p, p.agentic, front, roles, time_limit_min)
    b = p.ixhpc.benchmark
    argv = ["python", "-m", "ixhpc.bench",
            "--base-url", front.url,
            "--isl", str(p.isl), "--osl", str(p.osl),
            "--random-range-ratio", str(b.random_range_ratio),
            "--num-prompts", shell.var("NUM_PROMPTS"), "--max-concurrency", shell.var("CONC"),
            "--num-warmups", shell.var("NUM_WARMUPS"), "--request-rate", str(b.request_rate),
            "--seed", "0", "--output", ScriptPaths.bench_json_text("CONC")]
    argv += ["--stall-timeout", _stall(b, time_limit_min)]  # well under the job's time limit
    if b.ignore_eos:
        argv.append("--ignore-eos")
    if b.client_workers > 1:
        argv += ["--workers", str(b.client_workers)]
    if b.temperature:
        argv += ["--temperature", str(b.temperature)]
    if b.chat_template:
        argv.append("--use-chat-template")
    argv += [f"--metrics-url={url}" for r in roles if (url := _metrics_url(r, p.framework))]
    return argv


def _stall(b: BenchmarkSettings, time_limit_min: int) -> str:
    """The recipe's ``benchmark.stall-timeout`` or, unset, one from the job's time limit."""
    return stall_timeout(time_limit_min) if b.stall_timeout is None else f"{b.stall_timeout:g}"


def agentic_argv(p: RunPoint, a: AgenticRun, front: Role, roles: list[Role], time_limit_min: int) -> list[str]:
    """The trace replay (``ixhpc.bench --scenario agentic-coding``, docs/agentic.md) at CONC."""
    gpus = p.gpus or 1  # agentx SPEC §3.4: every engine GPU (both pools)
    argv = ["python", "-m", "ixhpc.bench", "--scenario", "agentic-coding",
            "--traces", a.traces or ScriptPaths.traces_text(),
            "--base-url", front.url,
            "--model", p.model, "--concurrency", shell.var("CONC"), "--duration", str(a.duration),
            "--seed", str(a.seed), "--warmup-requests-per-lane", str(a.warmup_requests_per_lane),
            "--session-header", a.session_header, "--num-gpus", str(gpus),
            "--stall-timeout", _stall(p.ixhpc.benchmark, time_limit_min),
            "--output", ScriptPaths.bench_json_text("CONC")]
    if p.ixhpc.benchmark.client_workers > 1:  # lanes split over client processes (docs/agentic.md)
        argv += ["--workers", str(p.ixhpc.benchmark.client_workers)]
    return argv + [f"--metrics-url={url}" for r in roles if (url := _metrics_url(r, p.framework))]


POWER_INTERVAL_S = 1.0  # seconds between GPU power readings


def _metrics_url(role: Role, framework: str) -> str | None:
    """Where a role's Prometheus metrics are (None: it has none: etcd, NATS, the sim router)."""
    family = engines.engine(framework).family
    if role.health_path is None or (family == "sim" and role.name == "router"):
        return None
    path = "/prometheus/metrics" if family == "trt" and role.name != "router" else "/metrics"
    return f"{role.name}={role.url}{path}"


def _power_samplers(roles: list[Role], source: str, framework: str) -> tuple[list[PowerSampler], dict[str, int]]:
    """One sampler step per node of the job, and the GPUs expected per role kind. A node's
    sampler keeps the GPUs of the roles on it; the simulated source reads each engine's own
    gauge from its head node."""
    engines_ = [r for r in roles if r.used_gpus > 0]
    expect: dict[str, int] = {}
    for r in engines_:
        kind = r.name.split("-", 1)[0]
        expect[kind] = expect.get(kind, 0) + r.used_gpus * r.nnodes
    nnodes = max((r.node_index + r.nnodes for r in roles), default=1)
    samplers = []
    for node in range(nnodes):
        here = [r for r in engines_ if r.node_index <= node < r.node_index + r.nnodes]
        argv = [shell.var("IXHPC_PYTHON"), "-m", "ixhpc.job.power", "--source", source, "--node", str(node),
                "--out", ScriptPaths.power_csv_text(node), "--interval", f"{POWER_INTERVAL_S:g}"]
        if source == "sim":
            argv += [f"--sim={r.name}={r.url}/metrics" for r in here if r.node_index == node]
        else:
            argv += [f"--gpu={g}={r.name}" for r in here for g in range(r.first_gpu, r.first_gpu + r.used_gpus)]
        owner = here[0] if here else roles[0]
        het = owner.het_group is not None
        flags = ["srun", "--overlap", *([f"--het-group={owner.het_group}"] if het else []), "--nodes=1",
                 "--ntasks=1", f"--relative={node - (owner.group_first_node if het else 0)}",
                 f"--job-name=power-{node}", f"--output={ScriptPaths.power_log_text(node)}"]
        samplers.append(PowerSampler(node, shell.command([*flags, *argv])))
    return samplers, expect


def bench_line(p: RunPoint, argv: list[str], runtime: containers.Runtime,
                   spec: containers.ContainerSpec, env: list[tuple[str, str]], het: bool = False) -> str:
    b = p.ixhpc.benchmark
    flags = ["srun", "--overlap", *(["--het-group=0"] if het else []), "--nodes=1", "--ntasks=1",
             "--relative=0", "--job-name=bench",
             f"--output={ScriptPaths.bench_log_text('CONC')}"]
    if b.client_workers > 1:  # a one-task step is bound to one CPU where Slurm confines steps
        flags.append(f"--cpus-per-task={b.client_workers}")
    return shell.command([*flags, *runtime.srun_args(spec),
                          *runtime.wrap(spec, python_argv(with_env(env, argv), runtime))])


# ---------------------------------------------------------------- script mode


def plan_script_job(group: Sequence[RunPoint], profile: ClusterProfile, run_dir: Path, run_id: str,
                    checkout: Path) -> JobPlan:
    """A single-node group run by InferenceX's own script (docs/inferencex-scripts.md): no
    ixhpc roles; per concurrency one step runs the script inside the point's container, in
    the job's copy of the checkout mounted at /workspace, with InferenceX's environment."""
    from ixhpc import inferencex_scripts as ix

    first = group[0]
    topo = first.topology
    if topo is None or not isinstance(first, SinglePoint):
        raise PlanError(f"{first.config_key}: script mode runs single-node points served by "
                        f"cluster '{profile.name}'")
    key = job_key(group)
    concs = sorted({c for p in group for c in p.conc})
    layout = Layout.of(run_dir)
    checkout = checkout.expanduser().resolve()
    try:
        script = ix.choose(checkout, ix.point_row(first))
    except ConfigError as exc:
        raise ConfigError([f"{first.source}: {first.config_key}: {e}" for e in exc.errors]) from None
    runtime = containers.runtime(profile.container_runtime, squash_cache=expand_path(profile.squash_cache),
                                 arch=profile.arch)
    in_container = runtime.name != "none"
    workspace = str(layout.workspace(key))
    where = ix.WORKSPACE if in_container else workspace
    base = container_spec(first, profile, run_dir)
    amd = ix.writable_root(first.runner)
    spec = base.model_copy(update={
        "mounts": [*base.mounts, f"{workspace}:{ix.WORKSPACE}"], "workdir": ix.WORKSPACE,
        "env_names": list(ix.SECRET_NAMES), "entrypoint": False,
        "writable": amd, "remap_root": amd})
    model = _model_path(first, profile)
    hf_cache = (expand_path(profile.model_dir) or "") if model != first.model and not first.ixhpc.model_path else ""
    site = ix.Site(model=model, hf_hub_cache=hf_cache,
                   port=shell.var("PORT_BASE"), runner_name=f"{profile.name}_{run_id}",
                   random_range_ratio=str(first.ixhpc.benchmark.random_range_ratio), conc=shell.var("CONC"),
                   run_eval=shell.var("RUN_EVAL"), eval_only=shell.var("EVAL_ONLY"), eval_limit=ix.eval_limit(group))
    env = [(k, v) for k, v in ix.environment(ix.point_row(first), site) if v != "" or k != "HF_HUB_CACHE"]
    if not in_container:  # on the host the workspace is where it is
        env = [(k, v.replace(ix.WORKSPACE, where, 1) if k in ("INFMAX_CONTAINER_WORKSPACE", "RESULT_DIR") else v)
               for k, v in env]
    argv = with_env(_step_env(first), ["env", *(f"{k}={v}" for k, v in env), "bash", script])
    flags = ["srun", "--overlap", "--nodes=1", "--ntasks=1", "--relative=0", "--job-name=inferencex",
             f"--output={ScriptPaths.script_log_text('CONC')}"]
    gpus = first.gpus or 0
    if gpus:
        flags.append(f"--gpus-per-node={gpus}" if profile.use_gpus_per_node else f"--gres=gpu:{gpus}")
    if not in_container:
        flags.append(f"--chdir={workspace}")
    command = shell.command([*flags, *runtime.srun_args(spec), *runtime.wrap(spec, argv)])
    copy = ["python", "-m", "ixhpc.results.serving", "workspace", "--checkout", str(checkout), "--to", workspace]
    prepare = runtime.prepare(spec)
    components = _components(first, topo, profile, run_dir, run_id, key)
    return JobPlan(
        key=key, kind=first.kind, points=list(group), concs=concs, sbatch=components[0],
        variables=_variables(first, run_dir, key), step_env=_step_env(first), roles=[],
        prepare_command=shell.command(_host_python(prepare)) if prepare else "",
        bench_argv=["bash", script], bench_command=command,
        header=[*_header(first, key, concs), comment_text(f"script mode: InferenceX's {script} from {checkout}")],
        placement=[f"node 0: InferenceX's {script}, one step per concurrency"],
        runtime=runtime, container=spec, standins=STANDINS_LINE if profile.engine_standins else "",
        script=ScriptStep(checkout=str(checkout), script=script, workspace=workspace,
                          result_filename=shell.word(ix.result_filename(ix.point_row(first), site.runner_name,
                                                                        shell.var("CONC"))),
                          command=command, copy_command=shell.command(_host_python(copy)),
                          evals=ix.script_evals(group)))
