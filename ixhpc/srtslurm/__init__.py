"""NVIDIA srt-slurm (srtctl v1.0.68) recipes as ixhpc recipes: read, expand, validate.

``load_recipe(path)`` reads one recipe file (``file.yaml`` or ``file.yaml:selector``), expands
it into concrete deployments (plain, override and ``sweep:`` forms; SPEC.md 3), validates each
as srtctl does at load (SPEC.md 4, 5.1) plus the topology preflight of 5.2 and the late
checks of 5.3 (which srtctl finds only at submission or once workers are up), and returns
them, or raises ``ConfigError`` with every located problem of every variant at once.
``is_srt_recipe(doc)`` is the one place that tells an srt-slurm recipe from an
InferenceX/ixhpc one (by its top-level keys).

A ``Deployment`` carries what launching needs (name, model/container, nodes, GPUs per node,
workers per role with their GPUs, engine config and environment per role, frontend,
benchmark), the raw validated ``Recipe`` (``.recipe``) and the merged data with its source
lines (``.doc``) for located errors of later steps. Placement on nodes (SPEC 6.3), ports,
command lines and environments are the next step's business (see docs).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from ixhpc.srtslurm.load import Variant, read_variants, split_selector
from ixhpc.srtslurm.schema import Benchmark, Frontend, Recipe, VllmBackend
from ixhpc.srtslurm.validate import check, late_problems, preflight
from ixhpc.yamlmodel import ConfigError, Located, load_yaml

Role = Literal["prefill", "decode", "aggregated"]
ROLES: tuple[Role, ...] = ("prefill", "decode", "aggregated")

# Top-level keys only an srt-slurm recipe has (an InferenceX/ixhpc recipe maps config keys,
# named after model/hardware/framework, to entries).
_SRT_SECTIONS = ("name", "model", "resources", "backend", "frontend", "benchmark", "dynamo", "slurm",
                 "health_check", "infra")


def is_srt_recipe(doc: Located) -> bool:
    """True for an srt-slurm recipe file: an override file (`base:` mapping) or a mapping with
    at least two of srt-slurm's top-level sections (`name`, `model`, `resources`, ...)."""
    data = doc.data
    if not isinstance(data, dict):
        return False
    if isinstance(data.get("base"), dict):
        return True
    return sum(k in data for k in _SRT_SECTIONS) >= 2


@dataclass(frozen=True)
class Worker:
    """One worker (endpoint) of a role: its GPUs and the nodes it spans (SPEC 6.2/6.3)."""

    role: Role
    index: int
    gpus: int        # GPUs the worker asks for (gpus_per_<role>)
    nodes: int       # whole nodes it spans (1 for a partial-node worker)


@dataclass(frozen=True)
class Deployment:
    """One concrete srt-slurm deployment (one Slurm job in srtctl)."""

    name: str
    file: str
    selector: str    # "" for a plain recipe; "override_x", "zip_override_g[2]", "+sweep(...)"
    line: int        # where the variant is defined in the file
    recipe: Recipe   # the raw validated model
    doc: Located     # the merged data, with the file line of every key
    warnings: tuple[str, ...] = ()  # located, not errors (duplicate keys: the last one is used)

    @property
    def source(self) -> str:
        return f"{self.file}:{self.selector}" if self.selector else self.file

    # --- model and container
    @property
    def model_path(self) -> str:
        return self.recipe.model.path

    @property
    def container(self) -> str:
        return self.recipe.model.container

    @property
    def backend_type(self) -> str:
        return self.recipe.backend.type

    # --- resources (SPEC 6)
    @property
    def gpus_per_node(self) -> int:
        return self.recipe.resources.gpus_per_node

    @property
    def disaggregated(self) -> bool:
        return self.recipe.resources.disaggregated

    def worker_count(self, role: Role) -> int:
        res = self.recipe.resources
        n = {"prefill": res.prefill_workers, "decode": res.decode_workers,
             "aggregated": res.agg_workers}[role]
        return n or 0

    def gpus_per_worker(self, role: Role) -> int:
        """SPEC 6.2: explicit, else role nodes x GPUs per node // workers, else GPUs per node
        (decode with ``decode_nodes: 0`` inherits prefill's)."""
        res, gpn = self.recipe.resources, self.recipe.resources.gpus_per_node
        explicit, nodes, workers = {
            "prefill": (res.gpus_per_prefill, res.prefill_nodes, res.prefill_workers),
            "decode": (res.gpus_per_decode, res.decode_nodes, res.decode_workers),
            "aggregated": (res.gpus_per_agg, res.agg_nodes, res.agg_workers)}[role]
        if explicit is not None:
            return explicit
        if nodes and workers:
            return nodes * gpn // workers
        if role == "decode" and nodes == 0 and workers:
            return self.gpus_per_worker("prefill")
        return gpn

    @property
    def workers(self) -> tuple[Worker, ...]:
        """All workers in srtctl's launch order: prefill, decode, aggregated."""
        gpn = self.gpus_per_node
        out = []
        for role in ROLES:
            g = self.gpus_per_worker(role)
            span = -(-g // gpn) if g >= gpn else 1
            out += [Worker(role, i, g, span) for i in range(self.worker_count(role))]
        return tuple(out)

    @property
    def reserved_nodes(self) -> int:
        """Nodes reserved for infra / frontend / benchmark client (SPEC 6.4)."""
        r = self.recipe
        roles = [r.infra.etcd_nats_dedicated_node, r.frontend.dedicated_node,
                 r.benchmark.client_dedicated_node]
        n = sum(roles)
        return min(n, 1) if r.benchmark.colocate_with_frontend else n

    @property
    def nodes(self) -> int:
        """The sbatch node count (SPEC 6.6): role nodes (or agg_nodes, default 1) plus reserved
        nodes, or the vLLM colocation count."""
        res, be = self.recipe.resources, self.recipe.backend
        if res.disaggregated:
            t = (res.prefill_nodes or 0) + (res.decode_nodes or 0)
        else:
            t = res.agg_nodes if res.agg_nodes is not None else 1
        if isinstance(be, VllmBackend) and be.allow_prefill_decode_colocation:
            total = sum(w.gpus for w in self.workers)
            if total <= self.gpus_per_node or be.allow_prefill_decode_colocation_across_nodes:
                t = -(-total // self.gpus_per_node)
        return t + self.reserved_nodes

    # --- per role
    def engine_config(self, role: Role) -> Mapping[str, Any]:
        """The role's ``<engine>_config`` map (empty when absent), read-only."""
        cfg = self.recipe.backend.engine_config()
        m = getattr(cfg, role) if cfg is not None else None
        return MappingProxyType(m or {})

    def environment(self, role: Role) -> Mapping[str, str]:
        """The role's own map (``<role>_environment``); the global ``environment`` is separate
        (it overrides the role map, SPEC 9.1)."""
        return MappingProxyType(dict(getattr(self.recipe.backend, f"{role}_environment")))

    @property
    def global_environment(self) -> Mapping[str, str]:
        return MappingProxyType(dict(self.recipe.environment))

    @property
    def frontend(self) -> Frontend:
        return self.recipe.frontend

    @property
    def benchmark(self) -> Benchmark:
        return self.recipe.benchmark


def load_recipe(path: str | Path) -> list[Deployment]:
    """Every deployment of one recipe file (``file.yaml`` or ``file.yaml:selector``), or
    ConfigError with every located problem of every variant."""
    doc, variants, errors = read_variants(path)
    problems: dict[str, list[str]] = {}   # problem -> variants that have it
    deployments = []
    for v in variants:
        recipe, errs = check(v)
        if recipe is not None:  # ixhpc refuses these before submitting (srtctl: 5.2 at submit, 5.3 late)
            errs = preflight(recipe, v.doc) + late_problems(recipe, v.doc)
        for e in errs:
            problems.setdefault(e, []).append(v.selector)
        if recipe is not None and not errs:
            deployments.append(Deployment(recipe.name, doc.file, v.selector, doc.line(v.origin),
                                          recipe, v.doc, tuple(doc.warnings)))
    for text, where in problems.items():
        if len(variants) > 1 and len(where) < len(variants):
            text += f" (in {', '.join(where)})"
        errors.append(text)
    if not variants and not errors:
        errors.append(doc.error((), "expected at least one variant (`override_*` or "
                                "`zip_override_*` next to `base`), found none"))
    if errors:
        raise ConfigError(errors)
    return deployments


def file_errors(path: str, engine_check: bool = True) -> list[str] | None:
    """For ``ixhpc validate``: None if the file is not an srt-slurm recipe (or not readable
    YAML, which the InferenceX reader reports), else its problems (empty: valid). With
    ``engine_check`` each deployment is planned (on a cluster of the recipe's own shape) and its
    engine flags checked (``ixhpc.engine_check``; warnings to stderr)."""
    file, selector = split_selector(path)
    try:
        doc = load_yaml(file, "a recipe mapping", duplicates="last")
    except ConfigError:
        return None if selector is None else [f"{file}:1: cannot read file"]
    if not is_srt_recipe(doc):
        return None
    try:
        deployments = load_recipe(path)
    except ConfigError as exc:
        return exc.errors
    for warning in deployments[0].warnings if deployments else ():
        print(f"warning: {warning}", file=sys.stderr)
    return _engine_errors(deployments) if engine_check else []


def _engine_errors(deployments: list[Deployment]) -> list[str]:
    import tempfile

    from ixhpc.errors import PlanError
    from ixhpc.srtslurm import plan

    where = Path(tempfile.gettempdir()) / "ixhpc-validate"   # named in the plans only: nothing is written
    jobs = []
    for dep in deployments:
        try:
            jobs.append((dep, plan.plan_deployment(dep, plan.validation_profile(dep), where, "validate")))
        except (ConfigError, PlanError):
            continue   # valid for srtctl, not launchable by ixhpc: render/submit say why
    try:
        plan.check_engines(jobs, lambda line: print(line, file=sys.stderr))
    except ConfigError as exc:
        return list(dict.fromkeys(exc.errors))
    return []


__all__ = ["Deployment", "Role", "ROLES", "Variant", "Worker", "file_errors", "is_srt_recipe",
           "load_recipe"]
