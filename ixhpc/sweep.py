"""Sweep expansion: recipes x filters x cluster profile -> typed run points.

The rules are InferenceX's (utils/matrix_logic/generate_sweep_configs.py, `full-sweep`), so
``RunPoint.to_inferencex_row()`` reproduces its matrix rows:

* Concurrency ranges are geometric: start, start*step, ... with the last value clamped to
  ``conc-end`` (4..48 step 2 -> 4 8 16 32 48). ``conc-list`` is taken as written.
* ``max-model-len = isl + osl + margin`` (margin 200 unless ``ixhpc.max-model-len-margin``).
* ``exp-name = <model-prefix>_<1k1k|1k8k|8k1k>`` or ``<model-prefix>_<isl>_<osl>``.
* Single-node entries give one point per concurrency (``ep`` defaults to 1, ``dp-attn`` to
  false); multi-node entries give one point per search-space item, carrying the whole
  concurrency list (one allocation runs them in turn).
* Filters: ``--model-prefix`` matches the START OF THE CONFIG KEY (not the model-prefix
  field); ``--precision``/``--framework``/``--runner-type`` match exactly; ``--seq-lens``
  picks (isl, osl) pairs. ``--max-tp`` drops single-node items with a larger tp and
  ``--max-ep`` clamps a single-node ep to it (both single-node only, as InferenceX).
  ``--min-conc``: a single-node range starts at max(conc-start, min-conc) and is dropped
  when conc-end is below it; a list (and a multi-node range, expanded first) keeps the
  values >= it (dropped if none). ``--max-conc``: a single-node range ends at
  min(conc-end, max-conc), and becomes just [max-conc] when conc-start exceeds it; a list
  (and a multi-node range) keeps the values <= it, or becomes [max-conc] if none is.

Eval marking (``--run-evals`` / ``--evals-only``), inferred from the March 2026 reference
matrices (full-evals.json vs full-all.json) and matching InferenceX at that commit:
only single-node points with isl=1024, osl=8192 are candidates. They are grouped by
(model, runner, framework, precision, isl, osl, spec-decoding, dp-attn); in each group the
points with the highest tp AND the highest concurrency among that tp are marked, and so are
the points with the lowest tp and the highest concurrency among that tp. Multi-node points
are never marked. ``--evals-only`` keeps only the marked points.

A point is one of three shapes (``kind``): ``single`` (one engine per concurrency),
``multi-agg`` (``multinode: true, disagg: false``: ONE engine, the prefill block's tp/ep,
spanning ceil(GPUs / GPUs-per-node) nodes and serving both phases; the decode block has
``num-worker: 0`` as InferenceX writes it) and ``disagg`` (prefill and decode workers behind
a router). Its topology (nodes, GPUs, per-role totals) follows from its shape and the node
size of the site that serves its runner, by the one packing rule of ``ixhpc.topology``.
These numbers were checked against the PREFILL_NODES / DECODE_NODES that InferenceX's own
multi-node entries state.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field
from pydantic.config import JsonDict
from pydantic.fields import FieldInfo

from ixhpc import names
from ixhpc.errors import PlanError
from ixhpc.point_metadata import DisaggRecord, MultiAggRecord, SingleRecord
from ixhpc.profiles import ClusterProfile, profile_for_runner
from ixhpc.recipe import (
    AggEngine,
    IxhpcBlock,
    LoadedEntry,
    MultiAggSearch,
    Recipes,
    SingleNodeSearch,
    UnusedWorker,
    Worker,
)
from ixhpc.topology import Topology, layout, worker_gpus

SEQ_LEN_NAMES = {"1k1k": (1024, 1024), "1k8k": (1024, 8192), "8k1k": (8192, 1024)}
_SEQ_LEN_OF = {v: k for k, v in SEQ_LEN_NAMES.items()}
EVAL_SEQ_LEN = SEQ_LEN_NAMES["1k8k"]
PointRecord = SingleRecord | MultiAggRecord | DisaggRecord


def seq_len_name(isl: int, osl: int) -> str:
    return _SEQ_LEN_OF.get((isl, osl), f"{isl}_{osl}")


def conc_range(start: int, end: int, step: int) -> list[int]:
    """start, start*step, ... < end, then end itself (the last value is clamped)."""
    out = [start]
    while out[-1] < end:
        out.append(min(out[-1] * step, end))
    return out


# --------------------------------------------------------------------------------------
# Filters (shared by sweep, render and submit).


def _flag(metavar: str | None = None, exclusive: str | None = None, only: bool = False) -> JsonDict:
    """A Filters field's command-line flag (its ``json_schema_extra``; the help is its
    ``description``): its metavar and the flags it excludes (``exclusive`` group; ``only``:
    the flag keeps only its kind, the group's other fields become False)."""
    return {"metavar": metavar, "exclusive": exclusive, "only": only}


class Filters(BaseModel):
    """InferenceX's `full-sweep` selection; its flags are generated from these fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_prefix: tuple[str, ...] = Field(default=(), description="keep config keys starting with any PREFIX",
                                          json_schema_extra=_flag("PREFIX"))
    precision: tuple[str, ...] = Field(default=(), description="keep these precisions", json_schema_extra=_flag())
    framework: tuple[str, ...] = Field(default=(), description="keep these frameworks", json_schema_extra=_flag())
    runner_type: tuple[str, ...] = Field(default=(), description="keep entries whose runner label is one of these",
                                         json_schema_extra=_flag("RUNNER"))
    seq_lens: tuple[tuple[int, int], ...] = Field(
        default=(), description="keep these sequence lengths: 1k1k, 1k8k, 8k1k or ISLxOSL",
        json_schema_extra=_flag("SEQ"))
    step_size: int = Field(default=2, ge=2, description="geometric step of conc-start..conc-end ranges (default 2)",
                           json_schema_extra=_flag())
    min_conc: int | None = Field(default=None, gt=0, description="drop concurrencies below this",
                                 json_schema_extra=_flag())
    max_conc: int | None = Field(default=None, gt=0, description="drop concurrencies above this",
                                 json_schema_extra=_flag())
    max_tp: int | None = Field(default=None, gt=0, description="drop single-node points with a larger tp",
                               json_schema_extra=_flag())
    max_ep: int | None = Field(default=None, gt=0, description="clamp single-node ep to this",
                               json_schema_extra=_flag())
    single_node: bool = Field(default=True, description="only single-node entries",
                              json_schema_extra=_flag(exclusive="nodes", only=True))
    multi_node: bool = Field(default=True, description="only multi-node entries",
                             json_schema_extra=_flag(exclusive="nodes", only=True))
    run_evals: bool = Field(default=False, description="mark the eval subset (run-eval: true) among all points",
                            json_schema_extra=_flag(exclusive="evals"))
    evals_only: bool = Field(default=False, description="keep only the eval subset",
                             json_schema_extra=_flag(exclusive="evals"))

    def keeps_entry(self, key: str, e: LoadedEntry) -> bool:
        s = e.spec
        return ((not self.model_prefix or any(key.startswith(p) for p in self.model_prefix))
                and (not self.precision or s.precision in self.precision)
                and (not self.framework or s.framework in self.framework)
                and (not self.runner_type or s.runner in self.runner_type)
                and (self.multi_node if s.multinode else self.single_node))


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, found {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, found {value}")
        return value
    return parse


def _seq_len(text: str) -> tuple[int, int]:
    if text in SEQ_LEN_NAMES:
        return SEQ_LEN_NAMES[text]
    m = re.fullmatch(r"(\d+)[x_](\d+)", text)
    if not m or not all(int(g) > 0 for g in m.groups()):
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(SEQ_LEN_NAMES)} or ISLxOSL, found {text!r}")
    return int(m.group(1)), int(m.group(2))


def _minimum(field: FieldInfo) -> int:
    for m in field.metadata:
        if hasattr(m, "ge"):
            return int(m.ge)
        if hasattr(m, "gt"):
            return int(m.gt) + 1
    return 0


def _flag_extra(field: FieldInfo) -> dict[str, Any]:
    extra = field.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def add_filter_args(parser: argparse.ArgumentParser) -> None:
    """One flag per ``Filters`` field (``--model-prefix``, ``--single-node``, ...)."""
    g = parser.add_argument_group("selection (InferenceX full-sweep flags)")
    exclusive: dict[str, Any] = {}
    for name, field in Filters.model_fields.items():
        extra = _flag_extra(field)
        target = g
        if extra.get("exclusive"):
            if extra["exclusive"] not in exclusive:
                exclusive[extra["exclusive"]] = g.add_mutually_exclusive_group()
            target = exclusive[extra["exclusive"]]
        kw: dict[str, Any] = {"dest": name, "help": field.description}
        if extra.get("metavar"):
            kw["metavar"] = extra["metavar"]
        if field.annotation is bool:
            kw.update(action="store_true", default=False)
        elif name == "seq_lens":
            kw.update(nargs="+", default=[], type=_seq_len)
        elif field.annotation == tuple[str, ...]:
            kw.update(nargs="+", default=[])
        else:
            kw.update(type=_int_at_least(_minimum(field)), default=field.default)
        target.add_argument("--" + name.replace("_", "-"), **kw)


def filters_from_args(args: argparse.Namespace) -> Filters:
    """The CLI's ``Filters``: an ``only`` flag given turns its group's other kinds off."""
    values = {name: getattr(args, name) for name in Filters.model_fields}
    only: dict[str, list[str]] = {}
    for name, field in Filters.model_fields.items():
        if _flag_extra(field).get("only"):
            only.setdefault(_flag_extra(field)["exclusive"], []).append(name)
    for group in only.values():
        if not any(values[n] for n in group):
            for n in group:
                values.pop(n)  # none given: the fields' defaults keep every kind
    given: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return Filters(**given)


# --------------------------------------------------------------------------------------
# Run points: one type per shape, told apart by `kind`.


class Site(BaseModel):
    """Where a point runs: the cluster profile and partition that serve its runner."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cluster: str
    partition: str
    gpus_per_node: int
    arch: str


class _Point(BaseModel):
    """What every point has. A shape adds its parallelism and says which roles it runs
    (``engine_roles``); its topology follows from those and the site's node size."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    multinode: ClassVar[bool]
    disagg: ClassVar[bool]

    key: str
    config_key: str
    source: str                       # recipe file
    recipe_fingerprint: str
    image: str
    model: str
    model_prefix: str
    precision: str
    framework: str
    runner: str
    isl: int
    osl: int
    max_model_len: int
    exp_name: str
    spec_decoding: str
    conc: list[int]
    run_eval: bool = False
    site: Site | None = None          # None: no profile serves the runner (matrix output only)
    ixhpc: IxhpcBlock = IxhpcBlock()

    def engine_roles(self) -> tuple[tuple[str, int, int], ...]:
        """(role, number of workers, GPUs per worker), in job order."""
        raise NotImplementedError

    @computed_field  # type: ignore[prop-decorator]
    @property
    def topology(self) -> Topology | None:
        return layout(self.engine_roles(), self.site.gpus_per_node) if self.site else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def nodes(self) -> int | None:
        return self.topology.nodes if self.topology else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def gpus(self) -> int | None:
        return self.topology.gpus if self.topology else None

    @property
    def resolved(self) -> bool:
        return self.site is not None

    @property
    def cluster(self) -> str | None:
        return self.site.cluster if self.site else None

    @property
    def partition(self) -> str | None:
        return self.site.partition if self.site else None

    @property
    def gpus_per_node(self) -> int | None:
        return self.site.gpus_per_node if self.site else None

    @property
    def arch(self) -> str | None:
        return self.site.arch if self.site else None

    def to_inferencex_row(self) -> dict[str, Any]:
        """The point as one InferenceX matrix row (single-node: conc is one int)."""
        return {
            "image": self.image, "model": self.model, "model-prefix": self.model_prefix,
            "precision": self.precision, "framework": self.framework, "runner": self.runner,
            "isl": self.isl, "osl": self.osl, "spec-decoding": self.spec_decoding,
            "max-model-len": self.max_model_len, "exp-name": self.exp_name,
            "disagg": self.disagg, "run-eval": self.run_eval, **self._row_shape(),
        }

    def _row_shape(self) -> dict[str, Any]:
        raise NotImplementedError

    def metadata(self, conc: int) -> PointRecord:
        """The record of docs/contracts.md ("Run point metadata") for one benchmark."""
        topo, site = self.topology, self.site
        if topo is None or site is None:
            raise PlanError(f"{self.config_key}: no cluster profile serves runner '{self.runner}'")
        if conc not in self.conc:
            raise ValueError(f"{self.key}: concurrency {conc} is not one of {self.conc}")
        common: dict[str, Any] = {
            "point_key": self.key, "config_key": self.config_key, "image": self.image,
            "model": self.model, "model_prefix": self.model_prefix, "precision": self.precision,
            "framework": self.framework, "runner": self.runner, "cluster": site.cluster,
            "isl": self.isl, "osl": self.osl, "max_model_len": self.max_model_len,
            "exp_name": self.exp_name, "spec_decoding": self.spec_decoding,
            "run_eval": self.run_eval, "nodes": topo.nodes, "gpus": topo.gpus, "conc": conc,
            "recipe_fingerprint": self.recipe_fingerprint,
        }
        return self._record(common, topo)

    def _record(self, common: dict[str, Any], topo: Topology) -> PointRecord:
        raise NotImplementedError


class SinglePoint(_Point):
    """A single-node point: one engine at one concurrency."""

    kind: Literal["single"] = "single"
    multinode: ClassVar[bool] = False
    disagg: ClassVar[bool] = False
    tp: int
    ep: int
    dp_attn: bool

    def engine_roles(self) -> tuple[tuple[str, int, int], ...]:
        return (("server", 1, worker_gpus(self.tp, self.ep)),)

    def _row_shape(self) -> dict[str, Any]:
        return {"tp": self.tp, "ep": self.ep, "dp-attn": self.dp_attn, "conc": self.conc[0]}

    def _record(self, common: dict[str, Any], topo: Topology) -> PointRecord:
        return SingleRecord(**common, tp=self.tp, ep=self.ep, dp_attn=self.dp_attn)


class _MultiNode(_Point):
    """Multi-node points carry their whole concurrency list and the worker blocks as
    written (they are InferenceX's row)."""

    multinode: ClassVar[bool] = True

    def _row_shape(self) -> dict[str, Any]:
        return {"prefill": self.workers()[0].model_dump(by_alias=True, exclude_none=True),
                "decode": self.workers()[1].model_dump(by_alias=True, exclude_none=True),
                "conc": list(self.conc)}

    def workers(self) -> tuple[Worker, Worker]:
        raise NotImplementedError

    def _worker_fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for role, w in zip(("prefill", "decode"), self.workers()):
            out.update({f"{role}_num_worker": w.num_worker, f"{role}_tp": w.tp,
                        f"{role}_ep": w.ep, f"{role}_dp_attn": w.dp_attn})
        return out


class MultiAggPoint(_MultiNode):
    """A multi-node aggregated point: ONE engine, the prefill block's tp/ep, spanning
    ceil(GPUs / GPUs-per-node) nodes and serving both phases (the decode block has
    num-worker 0, as InferenceX writes it)."""

    kind: Literal["multi-agg"] = "multi-agg"
    disagg: ClassVar[bool] = False
    prefill: AggEngine
    decode: UnusedWorker

    def workers(self) -> tuple[Worker, Worker]:
        return self.prefill, self.decode

    def engine_roles(self) -> tuple[tuple[str, int, int], ...]:
        return (("server", 1, worker_gpus(self.prefill.tp, self.prefill.ep)),)

    def _record(self, common: dict[str, Any], topo: Topology) -> PointRecord:
        return MultiAggRecord(**common, **self._worker_fields())


class DisaggPoint(_MultiNode):
    """A disaggregated point: prefill workers, decode workers and a router."""

    kind: Literal["disagg"] = "disagg"
    disagg: ClassVar[bool] = True
    prefill: Worker
    decode: Worker

    def workers(self) -> tuple[Worker, Worker]:
        return self.prefill, self.decode

    def engine_roles(self) -> tuple[tuple[str, int, int], ...]:
        return tuple((role, w.num_worker, worker_gpus(w.tp, w.ep))
                     for role, w in (("prefill", self.prefill), ("decode", self.decode)))

    def _role_total(self, role: str, what: str) -> int | None:
        return getattr(self.topology.role(role), what) if self.topology else None

    @property
    def prefill_nodes(self) -> int | None:
        return self._role_total("prefill", "nodes")

    @property
    def decode_nodes(self) -> int | None:
        return self._role_total("decode", "nodes")

    @property
    def prefill_gpus(self) -> int | None:
        return self._role_total("prefill", "gpus")

    @property
    def decode_gpus(self) -> int | None:
        return self._role_total("decode", "gpus")

    def _record(self, common: dict[str, Any], topo: Topology) -> PointRecord:
        p, d = topo.role("prefill"), topo.role("decode")
        return DisaggRecord(**common, **self._worker_fields(), prefill_nodes=p.nodes,
                            decode_nodes=d.nodes, prefill_gpus=p.gpus, decode_gpus=d.gpus)


RunPoint = Annotated[SinglePoint | MultiAggPoint | DisaggPoint, Field(discriminator="kind")]
PointKind = Literal["single", "multi-agg", "disagg"]


# --------------------------------------------------------------------------------------
# Expansion.


def expand(recipes: Recipes, filters: Filters | None = None,
           cluster: ClusterProfile | None = None,
           profiles: dict[str, ClusterProfile] | None = None) -> list[RunPoint]:
    """All run points of the recipes, in file order, with eval marking applied.

    With ``cluster`` every kept entry's runner must be served by it (else UserError, since
    such a point could not run there). Without it, each runner is resolved through the
    first profile that serves it (``profiles``, default: built-ins + user file); runners
    no profile serves leave the point unresolved (enough for matrix output).
    """
    filters = filters or Filters()
    if cluster is None and profiles is None:
        from ixhpc.profiles import load_profiles
        profiles = load_profiles()
    points: list[RunPoint] = []
    unserved: list[str] = []
    for key, entry in recipes.entries.items():
        if not filters.keeps_entry(key, entry):
            continue
        prof = cluster or profile_for_runner(entry.spec.runner, profiles=profiles)
        if cluster is not None and cluster.partition_for(entry.spec.runner) is None:
            unserved.append(f"{entry.file}:{entry.line}: {key}: cluster '{cluster.name}' serves "
                            f"no runner '{entry.spec.runner}' (it serves: "
                            f"{', '.join(cluster.runners) or 'none'})")
            continue
        points.extend(_entry_points(key, entry, filters, prof))
    if unserved:
        from ixhpc.yamlmodel import ConfigError
        raise ConfigError(unserved)
    points = _unique_keys(points)
    if filters.run_evals or filters.evals_only:
        points = mark_evals(points)
        if filters.evals_only:
            points = [p for p in points if p.run_eval]
    return points


def _entry_points(key: str, entry: LoadedEntry, f: Filters,
                  prof: ClusterProfile | None) -> Iterator[RunPoint]:
    spec = entry.spec
    extras = spec.extras
    site = _site(spec.runner, prof)
    for slc in spec.seq_len_configs:
        if f.seq_lens and (slc.isl, slc.osl) not in f.seq_lens:
            continue
        common: dict[str, Any] = dict(
            config_key=key, source=entry.file, recipe_fingerprint=entry.fingerprint,
            image=spec.image, model=spec.model, model_prefix=spec.model_prefix,
            precision=spec.precision, framework=spec.framework, runner=spec.runner,
            isl=slc.isl, osl=slc.osl, max_model_len=slc.isl + slc.osl + extras.max_model_len_margin,
            exp_name=f"{spec.model_prefix}_{seq_len_name(slc.isl, slc.osl)}", ixhpc=extras,
            site=site,
        )
        for item in slc.search_space:
            if isinstance(item, SingleNodeSearch):
                yield from _single_points(key, slc, item, f, common)
                continue
            concs = _select_concs(item, f, multinode=True)
            if not concs:
                continue
            if isinstance(item, MultiAggSearch):
                w = item.prefill
                shape = "agg-" + _shape_single(w.tp, w.ep, w.dp_attn, item.spec_decoding)
                yield MultiAggPoint(key=_point_key(key, slc, shape, concs), spec_decoding=item.spec_decoding,
                                    conc=concs, prefill=item.prefill, decode=item.decode, **common)
            else:
                yield DisaggPoint(key=_point_key(key, slc, _shape_multi(item), concs),
                                  spec_decoding=item.spec_decoding, conc=concs,
                                  prefill=item.prefill, decode=item.decode, **common)


def _single_points(key: str, slc: Any, item: SingleNodeSearch, f: Filters,
                   common: dict[str, Any]) -> Iterator[SinglePoint]:
    if f.max_tp is not None and item.tp > f.max_tp:
        return
    ep = item.ep if item.ep is not None else 1
    if f.max_ep is not None:
        ep = min(ep, f.max_ep)
    dp_attn = bool(item.dp_attn)
    shape = _shape_single(item.tp, ep, dp_attn, item.spec_decoding)
    for c in _select_concs(item, f):
        yield SinglePoint(key=_point_key(key, slc, shape, [c]), spec_decoding=item.spec_decoding,
                          conc=[c], tp=item.tp, ep=ep, dp_attn=dp_attn, **common)


def _select_concs(item: Any, f: Filters, multinode: bool = False) -> list[int]:
    """The item's concurrencies after --min-conc/--max-conc (rules in the module doc).
    As in InferenceX, a multi-node range is expanded first and then filtered like a list,
    while a single-node range has its ends moved."""
    if item.conc_list is not None or multinode:
        concs = list(item.conc_list or conc_range(item.conc_start, item.conc_end, f.step_size))
        if f.min_conc is not None:
            concs = [c for c in concs if c >= f.min_conc]
            if not concs:
                return []
        if f.max_conc is not None:
            concs = [c for c in concs if c <= f.max_conc] or [f.max_conc]
        return concs
    start, end = item.conc_start, item.conc_end
    if f.min_conc is not None:
        if end < f.min_conc:
            return []
        start = max(start, f.min_conc)
    if f.max_conc is not None:
        if start > f.max_conc:
            start = end = f.max_conc
        else:
            end = min(end, f.max_conc)
    return conc_range(start, end, f.step_size)


def _site(runner: str, prof: ClusterProfile | None) -> Site | None:
    part = prof.partition_for(runner) if prof else None
    if prof is None or part is None:
        return None
    return Site(cluster=prof.name, partition=part.name, gpus_per_node=prof.gpus_on(part), arch=prof.arch)


# --------------------------------------------------------------------------------------
# Point keys: <config-key>_<isl>x<osl>_<shape>_c<concs>, filename-safe.


def _shape_single(tp: int, ep: int, dp_attn: bool, spec: str) -> str:
    return f"tp{tp}-ep{ep}" + ("-dpa" if dp_attn else "") + ("" if spec == "none" else f"-{spec}")


def _worker_shape(w: Worker) -> str:
    return f"{w.num_worker}x-tp{w.tp}-ep{w.ep}" + ("-dpa" if w.dp_attn else "")


def _shape_multi(item: Any) -> str:
    spec = "" if item.spec_decoding == "none" else f"-{item.spec_decoding}"
    return f"p{_worker_shape(item.prefill)}-d{_worker_shape(item.decode)}{spec}"


def _point_key(key: str, slc: Any, shape: str, concs: Sequence[int]) -> str:
    return names.key(f"{key}_{slc.isl}x{slc.osl}_{shape}_c{names.concs(concs)}")


def _unique_keys(points: list[RunPoint]) -> list[RunPoint]:
    """Points whose keys collide (same shape, different additional-settings...) get a short
    hash of their full definition appended: deterministic for the same recipe."""
    counts: dict[str, int] = defaultdict(int)
    for p in points:
        counts[p.key] += 1
    out = []
    for p in points:
        if counts[p.key] > 1:
            digest = hashlib.sha256(json.dumps(p.to_inferencex_row(), sort_keys=True).encode())
            p = p.model_copy(update={"key": names.key(f"{p.key}_{digest.hexdigest()[:8]}")})
        out.append(p)
    return out


# --------------------------------------------------------------------------------------
# Eval marking (rule in the module doc).


def mark_evals(points: list[RunPoint]) -> list[RunPoint]:
    groups: dict[tuple[Any, ...], list[SinglePoint]] = defaultdict(list)
    for p in points:
        if isinstance(p, SinglePoint) and (p.isl, p.osl) == EVAL_SEQ_LEN:
            groups[(p.model, p.runner, p.framework, p.precision, p.isl, p.osl,
                    p.spec_decoding, p.dp_attn)].append(p)
    marked: set[str] = set()   # point keys (unique by now)
    for members in groups.values():
        tps = {m.tp for m in members}
        for tp in {min(tps), max(tps)}:
            at_tp = [m for m in members if m.tp == tp]
            top = max(m.conc[0] for m in at_tp)
            marked.update(m.key for m in at_tp if m.conc[0] == top)
    return [p.model_copy(update={"run_eval": p.key in marked}) for p in points]
    return [p.model_copy(update={"run_eval": i in marked}) for i, p in enumerate(points)]
