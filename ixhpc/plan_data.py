"""The plan as data: every process of every job, for people and diffs (`render --plan-json`).

One JSON document per run: its jobs, and in each job every role's program (without the
``srun`` line and container wrapper), the environment it gets with where each variable comes
from, its GPUs, ports, node placement, the config files written for it, and the benchmark
steps. Values the job only knows when it runs (hosts, ports) appear as ``${NAME}``: the job
script's variables, whose rule the document states. docs/contracts.md describes the format.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

from ixhpc import engines
from ixhpc.bench.agentic.report import MIN_CANONICAL_DURATION
from ixhpc.engine_config import depends_on_conc
from ixhpc.placement import PORT_BASE_RULE, JobPlan, Role
from ixhpc.rundir import ScriptPaths

FORMAT = "ixhpc-plan"
VERSION = 1
Origin = Literal["recipe", "ixhpc", "engine"]
_MARK = re.compile("\x00([A-Za-z_][A-Za-z0-9_]*)\x00")
_WORKER = re.compile(r"(prefill|decode)-(\d+)\Z")
# What the job script computes at run time, for readers of the ${NAME} placeholders.
PORT_RULE = (f"PORT_BASE = {PORT_BASE_RULE}; a role's port is "
             f"PORT_BASE + port_offset, its KV side channel PORT_BASE + kv_port_offset")


def document(run_id: str, cluster: str, plans: Sequence[JobPlan],
             recipe_env: Sequence[str] = (), visibility_env: Sequence[str] = ()) -> dict[str, Any]:
    """The whole run's plan; ``recipe_env``/``visibility_env`` name the variables that come
    from the recipe's ``ixhpc.env`` and from ixhpc's GPU slicing (the rest: the engine's)."""
    return {"format": FORMAT, "version": VERSION, "run_id": run_id, "cluster": cluster,
            "port_rule": PORT_RULE,
            "jobs": [_job(p, set(recipe_env), set(visibility_env)) for p in plans]}


def _job(plan: JobPlan, recipe_env: set[str], visibility_env: set[str]) -> dict[str, Any]:
    return {
        "key": plan.key, "kind": plan.kind, "concurrencies": plan.concs,
        # the engine settings depend on the concurrency: this job (an engine start) per concurrency;
        # false: one engine start serves the whole list
        "engine_per_concurrency": depends_on_conc(plan.points[0].ixhpc),
        "sbatch": plan.sbatch,
        "result_keys": {str(c): plan.result_key(c) for c in plan.concs},
        "components": _components(plan),
        "processes": [{**_process(r, recipe_env, visibility_env), **_placed(plan, r)} for r in plan.roles],
        "benchmark": _benchmark(plan),
        **_agentic(plan),
        **_evals(plan),
        # a custom benchmark (srt-slurm): one step runs this command; the point records its exit
        # status, log and wall time, no throughput
        **({"custom_benchmark": plan.custom_bench} if plan.custom_bench else {}),
    }


def _evals(plan: JobPlan) -> dict[str, Any]:
    """The job's accuracy evals (ixhpc.evals.plan): which benchmarks carry one, at which eval
    concurrencies, and the lm-eval step (shell text over ``${CONC}`` and ``${ECONC}``)."""
    if plan.evals is None:
        return {}
    return {"evals": {"points": [{"conc": e.conc, "result_key": plan.result_key(e.conc),
                                  "eval_concs": list(e.eval_concs), "eval_only": e.only}
                                 for e in plan.evals.points],
                      "command": plan.evals.command}}


def _agentic(plan: JobPlan) -> dict[str, Any]:
    """An agentic job's replay settings: the corpus (a file, or the synthetic one render wrote
    from its seed) and the KV-offload settings its engines get (docs/agentic.md)."""
    a = plan.points[0].agentic
    if a is None:
        return {}
    corpus = ({"source": "file", "path": a.traces} if a.traces else
              {"source": "synthetic", "path": shown(ScriptPaths.traces_text()), "seed": a.seed,
               "traces": a.synthetic_traces, "max_context": a.synthetic_max_context})
    return {"agentic": {"traces": corpus, "duration": a.duration, "seed": a.seed,
                        "warmup_requests_per_lane": a.warmup_requests_per_lane,
                        "session_header": a.session_header, "kv_offloading": a.kv_offloading,
                        "kv_offload_backend": (a.kv_offload_backend.model_dump(exclude_none=True)
                                               if a.kv_offload_backend else None),
                        "total_cpu_dram_gb": a.total_cpu_dram_gb,
                        "canonical": a.duration >= MIN_CANONICAL_DURATION}}


def _components(plan: JobPlan) -> list[dict[str, Any]]:
    """The job's allocation: one component, or a heterogeneous job's each (its ``het_group``,
    partition, node count, the first node's index in the job's node list, its #SBATCH options)."""
    if not plan.het_groups:
        return [{"het_group": None, "partition": plan.sbatch.get("partition"), "nodes": int(plan.sbatch["nodes"]),
                 "first_node": 0, "sbatch": plan.sbatch}]
    firsts = [sum(n for _, n in plan.het_groups[:i]) for i in range(len(plan.het_groups))]
    return [{"het_group": i, "partition": part, "nodes": n, "first_node": first, "sbatch": opts}
            for i, ((part, n), first, opts) in enumerate(zip(plan.het_groups, firsts,
                                                             [plan.sbatch, *plan.het_sbatch]))]


def _placed(plan: JobPlan, role: Role) -> dict[str, Any]:
    """Where a role runs: its component (heterogeneous jobs), partition and node within it."""
    group = role.het_group if plan.het_groups else None
    partition = plan.het_groups[group][0] if group is not None else plan.sbatch.get("partition")
    return {"het_group": group, "partition": partition,
            "group_node_index": role.node_index - role.group_first_node if group is not None else role.node_index}


def _process(role: Role, recipe_env: set[str], visibility_env: set[str]) -> dict[str, Any]:
    built = engines.unbuild(role.argv)
    worker = _WORKER.match(role.name)
    return {
        "role": role.name,
        "worker": int(worker.group(2)) if worker else None,
        "node_index": role.node_index, "nodes": role.nnodes, "tasks_per_node": role.tasks_per_node,
        "gpus_per_node": role.gpus,
        "port_offset": role.port_index,
        "kv_port_offset": role.kv_port_index if role.kv_port else None,
        "health_path": role.health_path,
        "argv": [shown(a) for a in built.program],
        "env": [{"name": k, "value": shown(v), "origin": _origin(k, recipe_env, visibility_env)}
                for k, v in built.env],
        "files": [{"path": shown(path), "content": shown(content)} for path, content in built.files],
    }


def _origin(name: str, recipe_env: set[str], visibility_env: set[str]) -> Origin:
    if name in recipe_env:
        return "recipe"
    return "ixhpc" if name in visibility_env else "engine"


def _benchmark(plan: JobPlan) -> list[dict[str, Any]]:
    """One client run per concurrency, with the script's per-concurrency values filled in."""
    bench = plan.points[0].ixhpc.benchmark
    steps = []
    for conc in plan.concs:
        values = {"CONC": str(conc), "NUM_PROMPTS": str(conc * bench.num_prompts_factor),
                  "NUM_WARMUPS": str(bench.warmups(conc))}
        argv = [shown(a, values) for a in plan.bench_argv]
        steps.append({"conc": conc, "result_key": plan.result_key(conc), "argv": argv})
    return steps


def shown(value: str, values: dict[str, str] | None = None) -> str:
    """A planned word with the script's variables as ``${NAME}`` (or their known value)."""
    known = values or {}
    return _MARK.sub(lambda m: known.get(m.group(1), "${" + m.group(1) + "}"), value)

