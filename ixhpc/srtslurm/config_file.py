"""InferenceX's ``CONFIG_FILE=...`` additional setting: the srt-slurm recipe a multi-node entry runs.

An InferenceX multi-node entry names its real deployment in a worker's ``additional-settings``
(``CONFIG_FILE=recipes/trtllm/b200-fp4/8k1k/mtp/ctx1_gen1_dep8.yaml``, optionally with a
``:selector``). ixhpc looks the file up in the recipe directories (the cluster profile's
``srt-recipes`` list, then each ``--srt-recipes DIR``), in order; the value may be spelled

* ``recipes/REST`` (the srt-slurm checkout's ``recipes/`` folder, where InferenceX copies its
  vendored recipes): ``DIR/REST``;
* ``benchmarks/multi_node/srt-slurm-recipes/REST`` (InferenceX's own path for that folder):
  ``DIR/REST``;
* a bare file name ``NAME.yaml``: ``DIR/NAME.yaml``;
* an absolute path: as it is.

The recipe is loaded and validated as srtctl does (``ixhpc.srtslurm.load_recipe``); it must
name exactly one deployment and agree with the entry's topology as the entry states it: worker
count per role (aggregated entries: the prefill block's ``num-worker`` is the recipe's
``agg_workers``), GPUs per worker (``tp``, or ``ep`` where ``dp-attn`` spreads attention over the
expert-parallel GPUs), TP and EP. Anything else (not found, invalid, a different topology) is a
located error pointing at the additional-settings item. The entry's concurrency list and
sequence lengths replace the recipe's ``benchmark`` section when the point runs
(``ixhpc.srtslurm.plan.plan_config_file``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ixhpc.errors import ConfigError
from ixhpc.srtslurm import Deployment, Role, load_recipe
from ixhpc.yamlmodel import Located, format_path, load_yaml

if TYPE_CHECKING:
    from ixhpc.placement import JobPlan
    from ixhpc.profiles import ClusterProfile

KEY = "CONFIG_FILE"
# InferenceX's agentic entries name the deployment of their accuracy eval beside it: resolved and
# checked like CONFIG_FILE; ixhpc does not run that eval deployment (docs/srt-slurm.md).
EVAL_KEY = "EVAL_CONFIG_FILE"
PROFILE_FIELD = "srt-recipes"
FLAG = "--srt-recipes"
PREFIXES = ("recipes/", "benchmarks/multi_node/srt-slurm-recipes/")
Spelling = Literal["recipes", "benchmarks", "bare", "absolute", "other"]
Path_ = tuple[str | int, ...]


@dataclasses.dataclass(frozen=True)
class RoleShape:
    """A worker block as the entry states it."""

    num_worker: int
    tp: int
    ep: int
    dp_attn: bool
    pp: int = 1
    pcp: int = 1

    @property
    def gpus(self) -> int:
        """GPUs per worker as InferenceX reads the block: ``ep`` with dp-attention and tp 1
        (data-parallel attention over the expert-parallel GPUs), else ``tp``; times ``pp`` and
        ``pcp-size`` (the current format's pipeline and context parallelism)."""
        return (self.ep if self.dp_attn and self.tp == 1 else self.tp) * self.pp * self.pcp


@dataclasses.dataclass(frozen=True)
class EntryTopology:
    disagg: bool
    prefill: RoleShape
    decode: RoleShape


@dataclasses.dataclass(frozen=True)
class Reference:
    """One ``CONFIG_FILE=`` item of a master config, where it is and what its entry states."""

    value: str                  # after ``CONFIG_FILE=``
    file: str                   # the master config
    line: int
    path: Path_                 # to the additional-settings item
    topology: EntryTopology | None  # None: the search-space item states no usable topology

    def error(self, message: str) -> str:
        return f"{self.file}:{self.line}: {format_path(self.path)}: {message}"


# ---------------------------------------------------------------- values


def config_file_value(settings: Sequence[str] | None, name: str = KEY) -> str | None:
    """The ``CONFIG_FILE`` (or ``name``) value of a worker's additional-settings (None: no such item)."""
    for s in settings or ():
        k, sep, v = s.partition("=")
        if sep and k.strip() == name:
            return v.strip()
    return None


def spelling(value: str) -> Spelling:
    file, _ = _split(value)
    if file.startswith(PREFIXES[0]):
        return "recipes"
    if file.startswith(PREFIXES[1]):
        return "benchmarks"
    if file.startswith("/"):
        return "absolute"
    return "bare" if "/" not in file else "other"


def _split(value: str) -> tuple[str, str | None]:
    """``file.yaml:selector`` -> (file, selector), without looking at the file system."""
    if ":" in value and not value.endswith((".yaml", ".yml")):
        file, _, selector = value.rpartition(":")
        return file, selector
    return value, None


def relative(value: str) -> str:
    """The file part of the value relative to a recipe directory."""
    file, _ = _split(value)
    for prefix in PREFIXES:
        if file.startswith(prefix):
            return file[len(prefix):]
    return file


def resolve(value: str, dirs: Sequence[str | Path]) -> str | None:
    """``DIR/REST[:selector]`` for the first recipe directory holding the file; None if none does."""
    file, selector = _split(value)
    suffix = f":{selector}" if selector is not None else ""
    if file.startswith("/"):
        return value if Path(file).is_file() else None
    rel = relative(value)
    if not rel or ".." in Path(rel).parts:
        return None
    for d in dirs:
        candidate = Path(d).expanduser() / rel
        if candidate.is_file():
            return f"{candidate}{suffix}"
    return None


# ---------------------------------------------------------------- the entry side


def _shape(raw: Any) -> RoleShape | None:
    if not isinstance(raw, dict):
        return None
    nums = [n for n in (raw.get(k) for k in ("num-worker", "tp", "ep"))
            if isinstance(n, int) and not isinstance(n, bool)]
    if len(nums) != 3:
        return None
    extra = [raw.get(k, 1) for k in ("pp", "pcp-size")]
    pp, pcp = (n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1 for n in extra)
    return RoleShape(nums[0], nums[1], nums[2], raw.get("dp-attn") is True, pp, pcp)


def _topology(entry: Any, item: Any) -> EntryTopology | None:
    p, d = _shape(item.get("prefill")), _shape(item.get("decode"))
    if p is None or d is None:
        return None
    disagg = entry.get("disagg") is True and d.num_worker > 0
    return EntryTopology(disagg, p, d)


def _walk(node: Any, path: Path_) -> Iterator[tuple[Path_, dict[str, Any]]]:
    """Every mapping with a ``prefill`` mapping (a multi-node search-space item), with its path."""
    if isinstance(node, dict):
        if isinstance(node.get("prefill"), dict):
            yield path, node
        for k, v in node.items():
            yield from _walk(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, (*path, i))


def references(doc: Located, name: str = KEY) -> list[Reference]:
    """Every ``CONFIG_FILE=`` (or ``name=``) item of a master config's multi-node entries."""
    out = []
    for key, entry in doc.data.items() if isinstance(doc.data, dict) else ():
        if not isinstance(entry, dict) or entry.get("multinode") is not True:
            continue
        for path, item in _walk(entry, (key,)):
            topo = _topology(entry, item)
            for role in ("prefill", "decode"):
                settings = item[role].get("additional-settings") if isinstance(item.get(role), dict) else None
                for i, s in enumerate(settings if isinstance(settings, list) else ()):
                    if not isinstance(s, str):
                        continue
                    k, sep, v = s.partition("=")
                    if sep and k.strip() == name:
                        where = (*path, role, "additional-settings", i)
                        out.append(Reference(v.strip(), doc.file, doc.line(where), where, topo))
    return out


def file_references(path: str | Path, name: str = KEY) -> list[Reference]:
    """``references`` of a master config file (none if it cannot be read: validate says why)."""
    try:
        return references(load_yaml(path), name)
    except ConfigError:
        return []


# ---------------------------------------------------------------- the recipe side


def _recipe_parallel(dep: Deployment, role: Role) -> tuple[int, int, int]:
    """(TP, DP, EP) of a role's engine config: TP as the planner reads it (GPUs per worker when
    unset); DP from ``data_parallel_size``/``dp_size``; EP from the engines' EP sizes, or TP x DP
    where vLLM's ``enable_expert_parallel`` is set."""
    from ixhpc.srtslurm.plan import tp_ep

    gpus = dep.gpus_per_worker(role)
    tp, ep, _ = tp_ep(dep, role, gpus)
    norm = {str(k).replace("-", "_"): v for k, v in dep.engine_config(role).items()}
    dp = next((int(norm[k]) for k in ("data_parallel_size", "dp_size", "dp")
               if isinstance(norm.get(k), int) and not isinstance(norm.get(k), bool) and norm[k] > 0), 1)
    if norm.get("enable_expert_parallel") is True and ep == 1:
        ep = tp * dp
    return tp, dp, ep


def topology_problems(topo: EntryTopology, dep: Deployment) -> list[str]:
    """How the deployment differs from the entry's topology (empty: they agree). Per role:
    the worker count (a vLLM data-parallel worker may be written as one worker per DP rank),
    the role's GPUs (entry: num-worker x GPUs per worker), EP, and TP unless dp-attn (then the
    entry's tp is the attention TP)."""
    if topo.disagg != dep.disaggregated:
        return [f"the entry is {'disaggregated' if topo.disagg else 'aggregated'}, the recipe "
                f"{'disaggregated' if dep.disaggregated else 'aggregated'}"]
    pairs: list[tuple[str, RoleShape, Role]] = (
        [("prefill", topo.prefill, "prefill"), ("decode", topo.decode, "decode")] if topo.disagg
        else [("prefill", topo.prefill, "aggregated")])
    problems = []
    for name, shape, role in pairs:
        workers, gpus = dep.worker_count(role), dep.gpus_per_worker(role)
        tp, dp, ep = _recipe_parallel(dep, role)
        diff = []
        if shape.num_worker not in (workers, workers * dp):
            diff.append(f"num-worker {shape.num_worker} vs {workers} worker(s)")
        if shape.num_worker * shape.gpus != workers * gpus:
            diff.append(f"{shape.num_worker} x {shape.gpus} GPUs vs {workers} x {gpus}")
        if shape.ep != ep:
            diff.append(f"ep {shape.ep} vs {ep}")
        if not shape.dp_attn and shape.pcp == 1 and shape.tp != tp:
            diff.append(f"tp {shape.tp} vs {tp}")
        if diff:
            problems.append(f"{name}: {', '.join(diff)} (entry vs recipe {role} workers)")
    return problems


def deployment(value: str, dirs: Sequence[str | Path], topo: EntryTopology | None) -> Deployment:
    """The one deployment a CONFIG_FILE value names, checked against the entry's topology;
    ConfigError with unlocated messages otherwise (the caller adds where)."""
    found = resolve(value, dirs)
    if found is None:
        rel = relative(value)
        raise ConfigError(f"{KEY}={value}: not found ({rel} is in none of the recipe directories "
                          f"{', '.join(str(d) for d in dirs)})")
    try:
        deployments = load_recipe(found)
    except ConfigError as exc:
        raise ConfigError([f"{KEY}={value}: recipe {found} is invalid: {e}" for e in exc.errors]) from None
    if len(deployments) > 1:  # a sweep/override file without a selector: the one variant that fits
        fits = [d for d in deployments if topo is not None and not topology_problems(topo, d)]
        if len(fits) != 1:
            raise ConfigError(f"{KEY}={value}: recipe {found} has {len(deployments)} deployments and "
                              f"{len(fits)} of them match the entry's topology; expected one (name a "
                              f"variant with FILE.yaml:SELECTOR)")
        return fits[0]
    dep = deployments[0]
    problems = topology_problems(topo, dep) if topo is not None else []
    if problems:
        raise ConfigError(f"{KEY}={value}: recipe {found} disagrees with the entry's topology: "
                          f"{'; '.join(problems)}")
    return dep


def check_file(path: str | Path, dirs: Sequence[str | Path]) -> list[str]:
    """``validate``: every CONFIG_FILE and EVAL_CONFIG_FILE item of a master config, resolved and
    checked; the located problems (empty: all resolve and agree)."""
    errors: list[str] = []
    for ref in [*file_references(path), *file_references(path, EVAL_KEY)]:
        try:
            deployment(ref.value, dirs, ref.topology)
        except ConfigError as exc:
            errors += [ref.error(e) for e in exc.errors]
    return errors


# ---------------------------------------------------------------- run points (render / submit)


def point_value(point: Any, name: str = KEY) -> str | None:
    """The CONFIG_FILE (or ``name``) a multi-node run point's worker blocks name (None: none, or
    not multi-node)."""
    from ixhpc.sweep import DisaggPoint, MultiAggPoint

    if not isinstance(point, (DisaggPoint, MultiAggPoint)):
        return None
    return config_file_value(point.prefill.additional_settings, name) or config_file_value(
        point.decode.additional_settings, name)


def point_topology(point: Any) -> EntryTopology:
    from ixhpc.sweep import DisaggPoint

    def shape(w: Any) -> RoleShape:
        return RoleShape(w.num_worker, w.tp, w.ep, w.dp_attn, w.pp, w.pcp_size)
    return EntryTopology(isinstance(point, DisaggPoint), shape(point.prefill), shape(point.decode))


def plan_point(point: Any, dirs: Sequence[str | Path], profile: ClusterProfile, run_dir: Path,
               run_id: str, engine_check: Callable[[str], None] | None = None) -> JobPlan:
    """The job of a point whose CONFIG_FILE names a recipe: the recipe's deployment through the
    srt-slurm planner, with the point's concurrencies, ISL/OSL and key. An eval-marked point runs
    ixhpc's eval step (``ixhpc.evals``) against it; an eval-only one whose entry names an
    EVAL_CONFIG_FILE runs that deployment instead (InferenceX's agentic evals). ``engine_check``:
    check its engine flags (``plan.check_engines``), warnings to this function; None: not checked."""
    from ixhpc.errors import PlanError
    from ixhpc.evals import plan as evals
    from ixhpc.placement import comment_text
    from ixhpc.srtslurm.plan import check_engines, plan_config_file

    value = point_value(point)
    assert value is not None
    where = f"{point.source}: {point.config_key}: point {point.key}"
    marked = evals.wanted(point)
    eval_value = point_value(point, EVAL_KEY) if marked else None
    if eval_value is not None:
        if not evals.eval_only(point):
            raise PlanError(f"{where}: {EVAL_KEY}={eval_value}: its eval runs on that deployment, not on "
                            f"{KEY}'s; expected an eval-only point (--evals-only) or no eval marking")
        value = eval_value
        point = evals.narrowed(point)
    if not dirs:
        raise PlanError(f"{where}: {KEY}={value} names an srt-slurm recipe and no recipe directory is "
                        f"set; expected {FLAG} DIR or `{PROFILE_FIELD}:` in cluster profile '{profile.name}'")
    try:
        dep = deployment(value, dirs, point_topology(point))
    except ConfigError as exc:
        raise ConfigError([f"{where}: {e}" for e in exc.errors]) from None
    if marked and eval_value is None:
        point = evals.narrowed(point)
    plan = plan_config_file(dep, profile, run_dir, run_id, concs=point.conc, isl=point.isl, osl=point.osl,
                            key=point.key, entry=f"{point.config_key} ({point.key})", agentic=point.agentic,
                            eval_point=point if marked else None)
    if eval_value is not None:
        plan.header.insert(3, comment_text(f"eval-only: {EVAL_KEY}={eval_value} is the deployment; "
                                           f"ixhpc's lm-eval step runs against it, no throughput benchmark"))
    if engine_check is not None:
        check_engines([(dep, plan)], engine_check)
    return plan


def recipe_dirs(profile_dirs: Sequence[str] = (), flag_dirs: Sequence[str | Path] | None = None) -> list[Path]:
    """The recipe directories in lookup order: the profile's, then the flag's."""
    return [Path(d).expanduser() for d in (*profile_dirs, *(flag_dirs or ()))]


__all__ = ["EVAL_KEY", "FLAG", "KEY", "PROFILE_FIELD", "EntryTopology", "Reference", "RoleShape", "check_file",
           "config_file_value", "deployment", "file_references", "plan_point", "point_topology",
           "point_value", "recipe_dirs", "references", "relative", "resolve", "spelling",
           "topology_problems"]
