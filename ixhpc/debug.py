"""`ixhpc debug`: one point's exact resources from ``salloc``, and a ready shell on its first node.

``salloc`` (asked with the job's own #SBATCH options) runs ``ixhpc-debug.sh`` on the login
node; that script resolves the allocation's nodes and ports exactly as the job does, then
opens an interactive ``srun --pty`` step on node 0 (inside the point's container when the
profile has one) whose bash reads ``ixhpc-roles.sh``: the job's values, addresses and role
commands as shell functions to run one by one. Leaving the shell ends the step, the script
and so the allocation. A heterogeneous job is one ``salloc`` of all its components
(``salloc OPTS-0 : OPTS-1``); the shell step and every role's ``srun`` name their ``--het-group``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ixhpc import render, shell
from ixhpc.errors import ConfigError
from ixhpc.placement import JobPlan, option_words
from ixhpc.rundir import Layout

LAUNCHER, ROLES = Layout.DEBUG_LAUNCHER, Layout.DEBUG_ROLES
# Options that make sense for a batch job only.
BATCH_ONLY = ("job-name", "output", "no-requeue")


@dataclasses.dataclass
class DebugSession:
    plan: JobPlan
    run_dir: Path
    in_container: bool
    salloc: list[str]
    shell_step: str                   # the srun line that opens the shell on node 0

    @property
    def nodes_file(self) -> Path:
        return Layout.of(self.run_dir).debug_file(Layout.DEBUG_NODES)


def select_job(plans: list[JobPlan], point: str | None) -> JobPlan:
    """The job holding ``point`` (a job, point or result key); the first job without one."""
    if point is None:
        return plans[0]
    for p in plans:
        keys = {p.key, *(q.key for q in p.points), *(p.result_key(c) for c in p.concs)}
        if point in keys:
            return p
    known = ", ".join(p.key for p in plans[:5]) + (" ..." if len(plans) > 5 else "")
    raise ConfigError(f"--point {point}: no such point in this recipe; expected one of {known} "
                    f"(see `ixhpc sweep RECIPE --format table`)")


def session(plan: JobPlan, run_dir: Path, host: bool) -> DebugSession:
    run = run_dir.resolve()
    in_container = plan.runtime.name != "none" and not host
    return DebugSession(plan, run, in_container, salloc_argv(plan, run),
                        shell.command(_shell_argv(plan, run, in_container)))


def salloc_argv(plan: JobPlan, run: Path) -> list[str]:
    """``salloc`` with the job's own options; a heterogeneous job's components separated by
    ``:`` (salloc's heterogeneous allocation), the job name on the first only."""
    components: list[dict[str, str | bool]] = [plan.sbatch, *plan.het_sbatch]
    words: list[str] = []
    for i, component in enumerate(components):
        opts = {k: v for k, v in component.items() if k not in BATCH_ONLY}
        if i == 0:
            opts["job-name"] = f"ixhpc-debug-{plan.key}"[:200]
        words += [*([":"] if i else []), *option_words(opts)]
    return ["salloc", *words, "bash", str(run / LAUNCHER)]


def _shell_argv(plan: JobPlan, run: Path, in_container: bool) -> list[str]:
    gpus = plan.sbatch.get("gpus-per-node")
    # node 0 is component 0's first node: a heterogeneous job's step names its component
    het = ["--het-group=0"] if plan.het_groups else []
    flags = ["srun", "--pty", "--overlap", *het, "--nodes=1", "--ntasks=1", "--relative=0",
             "--job-name=debug-shell"]
    if gpus:
        flags.append(f"--gpus-per-node={gpus}")
    elif plan.sbatch.get("gres"):
        flags.append(f"--gres={plan.sbatch['gres']}")
    bash = ["bash", "--rcfile", str(run / ROLES), "-i"]
    if not in_container:
        return [*flags, *bash]
    spec = plan.container  # its working directory is the run directory
    return [*flags, *plan.runtime.srun_args(spec), *plan.runtime.wrap(spec, bash)]


def write(s: DebugSession) -> None:
    from ixhpc import atomic

    for name, template in ((LAUNCHER, "debug_launch.sh.j2"), (ROLES, "debug_roles.sh.j2")):
        atomic.write_text(s.run_dir / name, render.render_template(template, plan=s.plan, debug=s),
                          mode=0o755 & ~atomic.umask())


def printed(s: DebugSession) -> str:
    """What `--print` shows: the allocation, the shell step and each role's command."""
    p = s.plan
    lines = [f"# ixhpc debug for job {p.key}: the allocation (runs {LAUNCHER} on this host)",
             shell.command(s.salloc),
             "# on node 0, the shell step:", s.shell_step]
    for role in p.roles:
        lines += [f"# {role.name} on node {role.node_index}: {role.comment}", role.command]
    for sampler in p.power_samplers:
        lines += [f"# GPU power sampler of node {sampler.node}, beside the benchmarks", sampler.command]
    lines += [f"# benchmark client, for CONC in {' '.join(map(str, p.concs))}", p.bench_command]
    if p.evals is not None:  # ixhpc_eval CONC (ixhpc.evals)
        if p.evals.install:
            lines += ["# eval client install (once), from the profile's wheelhouse", p.evals.install]
        for e in p.evals.points:
            lines.append(f"# lm-eval of CONC={e.conc}, for ECONC in {' '.join(map(str, e.eval_concs))}")
        lines.append(p.evals.command)
    return "\n".join(lines) + "\n"
