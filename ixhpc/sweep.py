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

Current-format files (``scenarios:``, InferenceX since 2026-05; rules of
../shared/reference/inferencex-2026-08/SPEC.md sections 4-7) expand with the current rules:
``max-model-len = isl + osl + 256``; exp-name ``1k1k``/``8k1k`` else ``<isl>_<osl>`` (no more
``1k8k``); rows carry pp/dcp-size/pcp-size, router, kv-p2p-transfer; fixed-seq-len points come
before agentic-coding ones per key. Agentic points (``AgenticSinglePoint``: one per
concurrency; ``AgenticMultiPoint``: one per concurrency, workers as written) have no isl/osl,
a ``duration`` of 3600 s and ``total-cpu-dram-gb`` (Decimal, as InferenceX: capped CPU DRAM
x utilization x the GPUs of one replica / GPUs per node); ``--seq-lens``, ``--max-tp``,
``--max-ep`` do not apply to them and ``--max-conc`` only filters. Eval marking is on by
default (``--no-evals`` turns it off): 8k1k single-node points at the max and upper-median
concurrency >= 16 of their group, the best multi-node point per group (``eval-conc``);
``--evals-only`` / ``--all-evals`` also mark agentic points and keep only the marked ones.
``test-config`` (``--config-keys`` globs, ``--conc``) takes no full-sweep filters and steps
ranges by 2. ``--runner-node-filter`` emits a row per matching node of the runner label.
A call takes one format; flags of the other format are refused. ``expand_all`` returns every
point (``sweep`` lists them); ``expand`` (render, submit) turns agentic points into run points
of their shape carrying ``AgenticRun`` (issue 19) and refuses frameworks ixhpc has no engine for.

A point is one of three shapes (``kind``): ``single`` (one engine per concurrency),
``multi-agg`` (``multinode: true, disagg: false``: ONE engine, the prefill block's tp/ep,
spanning ceil(GPUs / GPUs-per-node) nodes and serving both phases; the decode block has
``num-worker: 0`` as InferenceX writes it) and ``disagg`` (prefill and decode workers behind
a router). Its topology (nodes, GPUs, per-role totals) follows from its shape and the node
size of the site that serves its runner, by the one packing rule of ``ixhpc.topology``.
These numbers were checked against the PREFILL_NODES / DECODE_NODES that InferenceX's own
multi-node entries state.
"""

# No `from __future__ import annotations` here: pydantic would compile and evaluate every field's
# annotation string when the module is imported (models are defined at import).

import argparse
import fnmatch
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, cast, get_args

from pydantic import BaseModel, ConfigDict, Field, computed_field
from pydantic.config import JsonDict
from pydantic.fields import FieldInfo

from ixhpc import names
from ixhpc.errors import PlanError
from ixhpc.recipe import (
    CURRENT_WORKER_KEYS,
    AgenticItem,
    AgenticSearch,
    AggEngine,
    ComponentMetadata,
    CurrentWorker,
    FixedDisaggSearch,
    FixedSingleSearch,
    IxhpcBlock,
    KvOffloading,
    LoadedEntry,
    MultiAggSearch,
    OffloadBackend,
    Recipes,
    RunnersFile,
    ScenarioType,
    SingleNodeSearch,
    UnusedWorker,
    Worker,
    is_current,
    no_ixhpc_block,
)
from ixhpc.topology import Topology, layout, worker_gpus
from ixhpc.yamlmodel import OWN_VALIDATOR, ConfigError, format_path

if TYPE_CHECKING:  # imported where used: `sweep --format inferencex` needs neither records nor profiles
    from ixhpc.point_metadata import PointRecord
    from ixhpc.profiles import ClusterProfile

SEQ_LEN_NAMES = {"1k1k": (1024, 1024), "1k8k": (1024, 8192), "8k1k": (8192, 1024)}
_SEQ_LEN_OF = {v: k for k, v in SEQ_LEN_NAMES.items()}
_CURRENT_SEQ_LEN_OF = {v: k for k, v in SEQ_LEN_NAMES.items() if k != "1k8k"}  # 1k8k gone 2026-03-27
EVAL_SEQ_LEN = SEQ_LEN_NAMES["1k8k"]            # March: evals on 1k8k
CURRENT_EVAL_SEQ_LEN = SEQ_LEN_NAMES["8k1k"]    # current: evals on 8k1k
MIN_EVAL_CONC = 16                              # current: lowest concurrency eval marking picks
AGENTIC_DURATION = 3600                         # seconds; not a recipe field (InferenceX's default)
DRAM_MIB_CAP = 2_861_022                        # InferenceX's "3 TB decimal" cap on CPU DRAM


def seq_len_name(isl: int, osl: int, current: bool = False) -> str:
    return (_CURRENT_SEQ_LEN_OF if current else _SEQ_LEN_OF).get((isl, osl), f"{isl}_{osl}")


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


_FULL_SWEEP_ONLY = ("--model-prefix", "--precision", "--framework", "--runner-type", "--step-size",
                    "--min-conc", "--max-conc", "--max-tp", "--max-ep", "--single-node", "--multi-node")


class Filters(BaseModel):
    """InferenceX's `full-sweep` selection; its flags are generated from these fields."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

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
    run_evals: bool = Field(default=False, description="March-format files only: mark the eval subset "
                            "(run-eval: true) among all points (current-format files mark it by default)",
                            json_schema_extra=_flag(exclusive="evals"))
    evals_only: bool = Field(default=False, description="keep only the eval subset (current format: also "
                             "marks agentic rows and adds eval-only: true)",
                             json_schema_extra=_flag(exclusive="evals"))
    no_evals: bool = Field(default=False, description="current-format files only: do not mark evals "
                           "(they are marked by default)", json_schema_extra=_flag(exclusive="evals"))
    all_evals: bool = Field(default=False, description="current-format files only: mark every 8k1k and "
                            "agentic row for evals (multi-node rows merged) and keep only those",
                            json_schema_extra=_flag())
    scenario_type: tuple[ScenarioType, ...] = Field(
        default=(), description="current-format files only: keep these scenario kinds",
        json_schema_extra=_flag("TYPE"))
    runner_node_filter: str | None = Field(
        default=None, description="one row per node of the runner label whose name contains S "
        "(needs --runner-config; full-sweep skips labels without one)", json_schema_extra=_flag("S"))
    config_keys: tuple[str, ...] = Field(
        default=(), description="test-config, current-format files only: these config keys (* and ? "
        "glob); no full-sweep filters, ranges in steps of 2", json_schema_extra=_flag("KEY"))
    conc: tuple[Annotated[int, Field(gt=0)], ...] = Field(
        default=(), description="test-config only: keep these concurrencies", json_schema_extra=_flag("N"))

    @property
    def test_config(self) -> bool:
        return bool(self.config_keys)

    def given(self) -> list[str]:
        """The flags (as --names) that differ from their defaults."""
        return ["--" + n.replace("_", "-") for n, fi in Filters.model_fields.items()
                if getattr(self, n) != fi.default]

    def check(self, current: bool) -> None:
        """The flags' combinations and the format they apply to (ConfigError, one line each)."""
        errors: list[str] = []
        if self.all_evals and self.no_evals:
            errors.append("--all-evals and --no-evals exclude each other")
        only = ("--run-evals",) if current else ("--no-evals", "--all-evals", "--scenario-type",
                                                  "--config-keys", "--conc")
        bad = [flag for flag in self.given() if flag in only]
        if bad:
            errors.append(f"{', '.join(bad)}: only for {'March' if current else 'current'}-format "
                          f"files (`{'seq-len-configs' if current else 'scenarios'}:`), and these files "
                          f"are in the {'current' if current else 'March'} format")
        if current and SEQ_LEN_NAMES["1k8k"] in self.seq_lens:
            errors.append("--seq-lens 1k8k: not a choice for current-format files (1k1k, 8k1k; "
                          "InferenceX removed 1k8k)")
        if self.test_config:
            full = [f for f in self.given() if f in _FULL_SWEEP_ONLY]
            if full:
                errors.append(f"{', '.join(full)}: full-sweep flags; test-config takes --config-keys, "
                              f"--conc, --seq-lens and the eval/scenario/runner flags")
        elif self.conc:
            errors.append("--conc: only with test-config (--config-keys)")
        if errors:
            raise ConfigError(errors)

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
        elif field.annotation == tuple[ScenarioType, ...]:
            kw.update(nargs="+", default=[], choices=get_args(ScenarioType))
        elif name == "conc":
            kw.update(nargs="+", default=[], type=_int_at_least(1))
        elif field.annotation == str | None:
            kw.update(default=None)
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

    model_config = ConfigDict(extra="forbid", frozen=True)  # built at import: every point has one

    cluster: str
    partition: str
    gpus_per_node: int
    arch: str


def changelog_fingerprint(row: dict[str, Any]) -> str:
    """InferenceX's recipe-fingerprint of a matrix row (``ixhpc.changelog.fingerprint``)."""
    from ixhpc.changelog import fingerprint  # changelog builds on this module

    return fingerprint(row)


class _Sited:
    """Where a point runs, read from its ``site`` (None: no profile serves its runner)."""

    site: Site | None

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


class AgenticRun(BaseModel):
    """What makes a run point an agentic-coding one (issue 19; docs/agentic.md "Running agentic
    points"): the replay's duration and trace corpus (a local file, else a synthetic corpus
    from ``seed``), the KV-offload settings of agentx SPEC §4 and the fingerprint of the
    InferenceX row it came from. Such a point has no isl/osl and no context cap (§4.4)."""

    model_config = ConfigDict(extra="forbid", frozen=True)  # built at import: nested in every point model

    duration: int
    kv_offloading: KvOffloading
    kv_offload_backend: OffloadBackend | None = None
    total_cpu_dram_gb: int
    traces: str | None = None          # a local corpus; None: synthetic (the knobs below)
    seed: int = 42
    synthetic_traces: int = 64
    synthetic_max_context: int = 32768
    warmup_requests_per_lane: int = 10
    session_header: str = "none"       # ixhpc.bench.agentic.cli.SESSION_HEADERS key
    inferencex_fingerprint: str = ""

    @property
    def traces_label(self) -> str:
        """The corpus as the metadata names it (InferenceX keys agentic rows by it)."""
        return self.traces or (f"synthetic:seed={self.seed},traces={self.synthetic_traces},"
                               f"max-context={self.synthetic_max_context}")

    def record(self) -> dict[str, Any]:
        """Its metadata keys (docs/contracts.md, agentic points)."""
        out: dict[str, Any] = {"scenario_type": "agentic-coding", "duration": self.duration,
                               "kv_offloading": self.kv_offloading, "total_cpu_dram_gb": self.total_cpu_dram_gb,
                               "agentic_traces": self.traces_label}
        if self.kv_offload_backend is not None:
            out["kv_offload_backend_name"] = self.kv_offload_backend.name
            if self.kv_offload_backend.version is not None:
                out["kv_offload_backend_version"] = self.kv_offload_backend.version
        return out


class _Point(_Sited, BaseModel):
    """What every point has. A shape adds its parallelism and says which roles it runs
    (``engine_roles``); its topology follows from those and the site's node size."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
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
    ixhpc: Annotated[IxhpcBlock, OWN_VALIDATOR] = Field(default_factory=no_ixhpc_block)
    # the current format's (defaults: what a March-format point means)
    recipe_format: Literal["march", "current"] = "march"
    scenario_type: Literal["fixed-seq-len"] = "fixed-seq-len"
    router: ComponentMetadata | None = None
    kv_p2p_transfer: str | None = None
    entry_disagg: bool | None = None  # the entry's disagg, where the shape's differs (aggregated arm)
    eval_conc: int | None = None      # multi-node: the concurrency the eval runs at
    eval_all_concs: bool = False      # multi-node --all-evals: evals at every concurrency
    eval_only: bool = False           # --evals-only / --all-evals output
    agentic: AgenticRun | None = None  # an agentic-coding point (isl, osl, max-model-len: 0)

    def engine_roles(self) -> tuple[tuple[str, int, int], ...]:
        """(role, number of workers, GPUs per worker), in job order."""
        raise NotImplementedError

    def _worker_gpus(self, w: Any) -> int:
        """GPUs of one engine of this shape (``w``: the point or a worker block), by the rule
        of the point's recipe format (ixhpc.topology)."""
        return worker_gpus(w.tp, w.ep, w.pp, w.pcp_size, self.current)

    # Serialized by inspection (the same nested dicts): typed, every point model would build
    # the topology dataclasses' schema again, most of its own schema's cost.
    @computed_field(return_type=Any)  # type: ignore[prop-decorator]
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
    def current(self) -> bool:
        return self.recipe_format == "current"

    def to_inferencex_row(self) -> dict[str, Any]:
        """The point as one InferenceX matrix row (single-node: conc is one int), in the layout
        of the generator of its recipe format."""
        row = {
            "image": self.image, "model": self.model, "model-prefix": self.model_prefix,
            "precision": self.precision, "framework": self.framework, "runner": self.runner,
            "isl": self.isl, "osl": self.osl, "spec-decoding": self.spec_decoding,
            "max-model-len": self.max_model_len, "exp-name": self.exp_name,
            "disagg": self.disagg if self.entry_disagg is None else self.entry_disagg,
            "run-eval": self.run_eval, **self._row_shape(),
        }
        if self.current:
            row.update(_optional_row_keys(self))
        return row

    def _row_shape(self) -> dict[str, Any]:
        raise NotImplementedError

    def metadata(self, conc: int) -> "PointRecord":
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
        if self.agentic is not None:  # no isl/osl/context cap; its fingerprint is its agentic row's
            for k in ("isl", "osl", "max_model_len"):
                del common[k]
            common.update(self.agentic.record(), inferencex_fingerprint=self.agentic.inferencex_fingerprint)
        else:
            common["inferencex_fingerprint"] = changelog_fingerprint(self.to_inferencex_row())
        if self.current:  # the current format's keys (absent: a March-format point)
            common["recipe_format"] = self.recipe_format
            if self.router is not None:
                common.update(router_name=self.router.name, router_version=self.router.version)
            if self.kv_p2p_transfer is not None:
                common["kv_p2p_transfer"] = self.kv_p2p_transfer
        return self._record(common, topo)

    def _record(self, common: dict[str, Any], topo: Topology) -> "PointRecord":
        raise NotImplementedError


class SinglePoint(_Point):
    """A single-node point: one engine at one concurrency."""

    kind: Literal["single"] = "single"
    multinode: ClassVar[bool] = False
    disagg: ClassVar[bool] = False
    tp: int
    ep: int
    dp_attn: bool
    pp: int = 1
    dcp_size: int = 1
    pcp_size: int = 1

    def engine_roles(self) -> tuple[tuple[str, int, int], ...]:
        return (("server", 1, self._worker_gpus(self)),)

    def _row_shape(self) -> dict[str, Any]:
        shape = {"tp": self.tp, "ep": self.ep, "dp-attn": self.dp_attn, "conc": self.conc[0]}
        if self.current:
            shape.update({"pp": self.pp, "dcp-size": self.dcp_size, "pcp-size": self.pcp_size})
        return shape

    def _record(self, common: dict[str, Any], topo: Topology) -> "PointRecord":
        more: dict[str, Any] = ({"pp": self.pp, "dcp_size": self.dcp_size, "pcp_size": self.pcp_size}
                                if self.current else {})
        from ixhpc.point_metadata import SingleRecord
        return SingleRecord(**common, tp=self.tp, ep=self.ep, dp_attn=self.dp_attn, **more)


class _MultiNode(_Point):
    """Multi-node points carry their whole concurrency list and the worker blocks as
    written (they are InferenceX's row)."""

    multinode: ClassVar[bool] = True

    def _row_shape(self) -> dict[str, Any]:
        prefill, decode = self.workers()
        return {"prefill": worker_row(prefill, self.current), "decode": worker_row(decode, self.current),
                "conc": list(self.conc)}

    def workers(self) -> tuple[Worker, Worker]:
        raise NotImplementedError

    def _worker_fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for role, w in zip(("prefill", "decode"), self.workers()):
            out.update({f"{role}_num_worker": w.num_worker, f"{role}_tp": w.tp,
                        f"{role}_ep": w.ep, f"{role}_dp_attn": w.dp_attn})
            if self.current:
                out.update({f"{role}_pp": w.pp, f"{role}_dcp_size": w.dcp_size,
                            f"{role}_pcp_size": w.pcp_size})
                if w.hardware is not None:
                    out[f"{role}_hardware"] = w.hardware
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
        return (("server", 1, self._worker_gpus(self.prefill)),)

    def _record(self, common: dict[str, Any], topo: Topology) -> "PointRecord":
        from ixhpc.point_metadata import MultiAggRecord
        return MultiAggRecord(**common, **self._worker_fields())


class DisaggPoint(_MultiNode):
    """A disaggregated point: prefill workers, decode workers and a router."""

    kind: Literal["disagg"] = "disagg"
    disagg: ClassVar[bool] = True
    prefill: Worker
    decode: Worker
    # Prefill and decode `hardware` differ: the partition serving each pool's hardware (the
    # point runs as one Slurm heterogeneous job: prefill group 0, decode group 1).
    pools: tuple[Site, Site] | None = None

    def workers(self) -> tuple[Worker, Worker]:
        return self.prefill, self.decode

    @property
    def heterogeneous(self) -> bool:
        """Its pools name different hardware (then ``pools`` says where each runs, if a
        partition of the profile serves each)."""
        return bool(self.prefill.hardware and self.decode.hardware
                    and self.prefill.hardware != self.decode.hardware)

    @property
    def partition(self) -> str | None:
        """The runner's partition; a heterogeneous job's: each pool's, ``prefill+decode``."""
        if self.pools is not None:
            return "+".join(x.partition for x in self.pools)
        return self.site.partition if self.site else None

    def engine_roles(self) -> tuple[tuple[str, int, int], ...]:
        return tuple((role, w.num_worker, self._worker_gpus(w))
                     for role, w in (("prefill", self.prefill), ("decode", self.decode)))

    @computed_field(return_type=Any)  # type: ignore[prop-decorator]
    @property
    def topology(self) -> Topology | None:
        if self.pools is not None:
            return layout(self.engine_roles(), self.pools[0].gpus_per_node,
                          [s.gpus_per_node for s in self.pools])
        return layout(self.engine_roles(), self.site.gpus_per_node) if self.site else None

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

    def _record(self, common: dict[str, Any], topo: Topology) -> "PointRecord":
        p, d = topo.role("prefill"), topo.role("decode")
        pools: dict[str, Any] = {}
        if self.pools:
            pools = {"prefill_partition": self.pools[0].partition, "decode_partition": self.pools[1].partition}
        from ixhpc.point_metadata import DisaggRecord
        return DisaggRecord(**common, **self._worker_fields(), prefill_nodes=p.nodes,
                            decode_nodes=d.nodes, prefill_gpus=p.gpus, decode_gpus=d.gpus, **pools)


RunPoint = Annotated[SinglePoint | MultiAggPoint | DisaggPoint, Field(discriminator="kind")]


def worker_row(w: Worker, current: bool) -> dict[str, Any]:
    """A worker block as the generator writes it: as written, plus (current format) pp,
    dcp-size and pcp-size with their defaults."""
    row = w.model_dump(by_alias=True, exclude_none=True,
                       exclude=None if current else set(CURRENT_WORKER_KEYS))
    return row


def _optional_row_keys(p: "_Point | _AgenticPoint") -> dict[str, Any]:
    """The current format's optional row keys, present only when set."""
    out: dict[str, Any] = {}
    if p.router is not None:
        out["router"] = p.router.model_dump()
    if isinstance(p, (_MultiNode, AgenticMultiPoint)):
        if p.kv_p2p_transfer is not None:
            out["kv-p2p-transfer"] = p.kv_p2p_transfer
        if p.eval_conc is not None:
            out["eval-conc"] = p.eval_conc
        if p.eval_all_concs:
            out["eval-all-concs"] = True
    if p.eval_only:
        out["eval-only"] = True
    return out


# An agentic point offloading KV to DRAM without runners.yaml to size it (total-cpu-dram-gb: None).
NEEDS_RUNNER_HARDWARE = ("kv-offloading: dram sizes total-cpu-dram-gb from the runner's hardware: give "
                         "--runner-config (runners.yaml with `hardware:`)")


class _AgenticPoint(_Sited, BaseModel):
    """An agentic-coding point (current format): a multi-turn coding trace replayed at a
    concurrency for ``duration`` seconds, no isl/osl. Listed by ``sweep``; ``expand`` runs it
    as ``runnable_agentic`` makes it (placement never sees this type)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    multinode: ClassVar[bool]

    key: str
    config_key: str
    source: str
    recipe_fingerprint: str
    image: str
    model: str
    model_prefix: str
    precision: str
    framework: str
    runner: str
    exp_name: str
    spec_decoding: str
    conc: list[int]
    kv_offloading: KvOffloading
    kv_offload_backend: OffloadBackend | None = None
    total_cpu_dram_gb: int | None       # None: no runner config to size it with (kv-offloading dram)
    duration: int = AGENTIC_DURATION
    router: ComponentMetadata | None = None
    run_eval: bool | None = None        # None: eval marking did not run (--no-evals)
    eval_conc: int | None = None
    eval_all_concs: bool = False
    eval_only: bool = False
    site: Site | None = None
    ixhpc: Annotated[IxhpcBlock, OWN_VALIDATOR] = Field(default_factory=no_ixhpc_block)
    recipe_format: Literal["current"] = "current"
    scenario_type: Literal["agentic-coding"] = "agentic-coding"


    @property
    def nodes(self) -> int | None:
        return None

    @property
    def gpus(self) -> int | None:
        return None

    def to_inferencex_row(self) -> dict[str, Any]:
        if self.total_cpu_dram_gb is None:
            raise ConfigError(f"{self.config_key}: {NEEDS_RUNNER_HARDWARE}")
        row: dict[str, Any] = {
            "image": self.image, "model": self.model, "model-prefix": self.model_prefix,
            "precision": self.precision, "framework": self.framework, "runner": self.runner,
            "spec-decoding": self.spec_decoding, **self._row_shape(),
            "kv-offloading": self.kv_offloading, "total-cpu-dram-gb": self.total_cpu_dram_gb,
            "duration": self.duration, "exp-name": self.exp_name, "scenario-type": self.scenario_type,
        }
        if self.kv_offload_backend is not None:
            row["kv-offload-backend"] = self.kv_offload_backend.model_dump(exclude_none=True)
        if self.run_eval is not None:
            row["run-eval"] = self.run_eval
        row.update(_optional_row_keys(self))
        return row

    def _row_shape(self) -> dict[str, Any]:
        raise NotImplementedError


class AgenticSinglePoint(_AgenticPoint):
    kind: Literal["agentic-single"] = "agentic-single"
    multinode: ClassVar[bool] = False
    tp: int
    pp: int = 1
    dcp_size: int = 1
    pcp_size: int = 1
    ep: int = 1
    dp_attn: bool = False

    def _row_shape(self) -> dict[str, Any]:
        return {"tp": self.tp, "pp": self.pp, "dcp-size": self.dcp_size, "pcp-size": self.pcp_size,
                "ep": self.ep, "dp-attn": self.dp_attn, "conc": self.conc[0]}


class AgenticMultiPoint(_AgenticPoint):
    kind: Literal["agentic-multi"] = "agentic-multi"
    multinode: ClassVar[bool] = True
    disagg: bool
    prefill: CurrentWorker
    decode: CurrentWorker
    kv_p2p_transfer: str | None = None

    def _row_shape(self) -> dict[str, Any]:
        return {"prefill": worker_row(self.prefill, True), "decode": worker_row(self.decode, True),
                "conc": list(self.conc), "disagg": self.disagg}


AgenticPoint = AgenticSinglePoint | AgenticMultiPoint
# Every point `sweep` lists (RunPoint: the ones placement can run).
AnyPoint = Annotated[SinglePoint | MultiAggPoint | DisaggPoint | AgenticSinglePoint | AgenticMultiPoint,
                     Field(discriminator="kind")]


# --------------------------------------------------------------------------------------
# Expansion.


def expand(recipes: Recipes, filters: Filters | None = None,
           cluster: "ClusterProfile | None" = None,
           profiles: "dict[str, ClusterProfile] | None" = None,
           runners: RunnersFile | None = None) -> list[RunPoint]:
    """The run points that can run (render, submit): ``expand_all``, agentic points as run
    points of their shape (``runnable_agentic``); frameworks ixhpc has no engine for are a
    PlanError naming them."""
    from ixhpc.frameworks import FRAMEWORKS

    points = _expand(recipes, filters, cluster, profiles, runners, runnable=True)
    points = [runnable_agentic(p, cluster) if isinstance(p, _AgenticPoint) else p for p in points]
    unknown = sorted({p.framework for p in points if p.framework not in FRAMEWORKS})
    if unknown:
        raise PlanError(f"framework(s) {', '.join(unknown)}: ixhpc has no engine for them yet "
                        f"(`sweep` lists their points; --framework selects others)")
    return cast(list[RunPoint], points)


def expand_all(recipes: Recipes, filters: Filters | None = None,
               cluster: "ClusterProfile | None" = None,
               profiles: "dict[str, ClusterProfile] | None" = None,
               runners: RunnersFile | None = None) -> list[AnyPoint]:
    """All points of the recipes (agentic ones too), in generation order, with eval marking
    applied: InferenceX's rules for the recipes' format (a call takes one format).

    With ``cluster`` every kept entry's runner must be served by it (else ConfigError, since
    such a point could not run there). Without it, each runner is resolved through the
    first profile that serves it (``profiles``, default: built-ins + user file); runners
    no profile serves leave the point unresolved (enough for matrix output). ``runners``
    (runners.yaml) gives --runner-node-filter its nodes and KV offloading its DRAM budget.
    """
    return _expand(recipes, filters, cluster, profiles, runners, runnable=False)


def recipe_format(recipes: Recipes) -> bool:
    """Whether the recipes are in the current format (ConfigError if they mix formats)."""
    first: dict[bool, LoadedEntry] = {}
    for e in recipes.entries.values():
        first.setdefault(is_current(e.spec), e)
    if len(first) > 1:
        m, c = first[False], first[True]
        raise ConfigError(f"one call takes one recipe format: {m.file}:{m.line}: {m.key} is in the "
                          f"March format (seq-len-configs), {c.file}:{c.line}: {c.key} in the current "
                          f"one (scenarios); run them separately")
    return True in first


def _expand(recipes: Recipes, filters: Filters | None, cluster: "ClusterProfile | None",
            profiles: "dict[str, ClusterProfile] | None", runners: RunnersFile | None,
            runnable: bool) -> list[AnyPoint]:
    filters = filters or Filters()
    current = recipe_format(recipes)
    filters.check(current)
    if filters.runner_node_filter is not None and runners is None:
        raise ConfigError("--runner-node-filter needs --runner-config (the nodes of each runner label)")
    if cluster is None and profiles is None:
        from ixhpc.profiles import load_profiles
        profiles = load_profiles()
    points: list[AnyPoint] = []
    unserved: list[str] = []
    for key in _selected_keys(recipes, filters):
        entry = recipes.entries[key]
        if not filters.keeps_entry(key, entry):
            continue
        runner_values = _runner_values(entry.spec.runner, filters, runners)
        if not runner_values:
            continue
        prof = cluster or _serving(entry.spec.runner, profiles)
        if current:
            made = list(_current_points(key, entry, filters, prof, runner_values, runners))
        else:
            made = [q for p in _entry_points(key, entry, filters, prof) for q in _per_runner([p], runner_values)]
        if made and cluster is not None and cluster.partition_for(entry.spec.runner) is None:
            unserved.append(f"{entry.file}:{entry.line}: {key}: cluster '{cluster.name}' serves "
                            f"no runner '{entry.spec.runner}' (it serves: "
                            f"{', '.join(cluster.runners) or 'none'})")
            if not runnable:
                continue
        points.extend(made)
    if unserved:
        raise ConfigError(unserved)
    points = _unique_keys(points)
    if not current:
        if filters.run_evals or filters.evals_only:
            points = cast(list[AnyPoint], mark_evals(cast(list[RunPoint], points)))
            if filters.evals_only:
                points = [p for p in points if p.run_eval]
        return points
    if not filters.no_evals:
        points = mark_current_evals(points, include_agentic=filters.evals_only or filters.all_evals)
        if filters.all_evals:
            points = mark_all_evals(points)
    if filters.evals_only or filters.all_evals:
        points = [p.model_copy(update={"eval_only": True}) for p in points if p.run_eval]
    return points


def _serving(runner: str, profiles: "dict[str, ClusterProfile] | None") -> "ClusterProfile | None":
    """The first profile serving ``runner``; none when no profile was read (InferenceX rows)."""
    if not profiles:
        return None
    from ixhpc.profiles import profile_for_runner
    return profile_for_runner(runner, profiles=profiles)


def _selected_keys(recipes: Recipes, f: Filters) -> list[str]:
    """Every key in file order, or (test-config) the --config-keys matches: globs (* ?) in
    mapping order, first occurrence wins; a key or glob that matches nothing is an error."""
    if not f.test_config:
        return list(recipes.entries)
    out: dict[str, None] = {}
    missing = []
    for pattern in f.config_keys:
        if "*" in pattern or "?" in pattern:
            found = [k for k in recipes.entries if fnmatch.fnmatch(k, pattern)]
        else:
            found = [pattern] if pattern in recipes.entries else []
        if not found:
            missing.append(pattern)
        out.update(dict.fromkeys(found))
    if missing:
        raise ConfigError(f"--config-keys: no config key matches {', '.join(map(repr, missing))} "
                          f"(in {', '.join(recipes.files)})")
    return list(out)


def _runner_values(label: str, f: Filters, runners: RunnersFile | None) -> list[str]:
    """The runner each row names: the label, or (--runner-node-filter S) its nodes whose name
    contains S -- test-config also the label itself if it contains S, without repeats."""
    wanted = f.runner_node_filter
    if wanted is None or runners is None:
        return [label]
    nodes = runners.labels.get(label, [])
    if f.test_config:
        return [n for n in dict.fromkeys([label, *nodes]) if wanted in n]
    return [n for n in nodes if wanted in n]


def _per_runner(points: list[Any], runner_values: list[str]) -> list[Any]:
    """Each point once per runner value (the label itself: the points as they are)."""
    if len(runner_values) == 1 and runner_values[0] == points[0].runner:
        return points
    return [p.model_copy(update={"runner": r}) for p in points for r in runner_values]


def _entry_points(key: str, entry: LoadedEntry, f: Filters,
                  prof: "ClusterProfile | None") -> Iterator[RunPoint]:
    """A March-format entry's points."""
    spec = entry.spec
    extras = spec.extras
    site = _site(spec.runner, prof)
    for slc in spec.seq_len_configs:  # type: ignore[union-attr]
        if f.seq_lens and (slc.isl, slc.osl) not in f.seq_lens:
            continue
        common: dict[str, Any] = dict(
            config_key=key, source=entry.file, recipe_fingerprint=entry.fingerprint,
            image=spec.image, model=spec.model, model_prefix=spec.model_prefix,
            precision=spec.precision, framework=spec.framework, runner=spec.runner,
            isl=slc.isl, osl=slc.osl, max_model_len=slc.isl + slc.osl + extras.margin(False),
            exp_name=f"{spec.model_prefix}_{seq_len_name(slc.isl, slc.osl)}", ixhpc=extras,
            site=site,
        )
        for item in slc.search_space:
            if isinstance(item, SingleNodeSearch):
                yield from _single_points(key, slc, item, f, common)
                continue
            yield from _multi_points(key, slc, item, f, common)


def _multi_points(key: str, slc: Any, item: Any, f: Filters, common: dict[str, Any]) -> Iterator[RunPoint]:
    concs = _select_concs(item, f, multinode=True)
    if not concs:
        return
    if isinstance(item, MultiAggSearch) or (isinstance(item, FixedDisaggSearch) and item.aggregated):
        w = item.prefill
        shape = "agg-" + _shape_single(w.tp, w.ep, w.dp_attn, item.spec_decoding) + _parallel(w)
        yield MultiAggPoint(key=_point_key(key, slc, shape, concs), spec_decoding=item.spec_decoding,
                            conc=concs, prefill=AggEngine.model_validate(item.prefill.model_dump()),
                            decode=UnusedWorker.model_validate(item.decode.model_dump()), **common)
    else:
        shape = _shape_multi(item) + _parallel(item.prefill, "p") + _parallel(item.decode, "d")
        yield DisaggPoint(key=_point_key(key, slc, shape, concs), spec_decoding=item.spec_decoding,
                          conc=concs, prefill=item.prefill, decode=item.decode, **common)


def _parallel(x: Any, prefix: str = "") -> str:
    """The key part of the current format's parallelism beyond tp/ep (empty at the defaults)."""
    return "".join(f"-{prefix}{name}{getattr(x, attr)}" for name, attr in
                   (("pp", "pp"), ("dcp", "dcp_size"), ("pcp", "pcp_size")) if getattr(x, attr, 1) != 1)


def _single_points(key: str, slc: Any, item: SingleNodeSearch, f: Filters,
                   common: dict[str, Any]) -> Iterator[SinglePoint]:
    if f.max_tp is not None and item.tp > f.max_tp:
        return
    ep = item.ep if item.ep is not None else 1
    if f.max_ep is not None:
        ep = min(ep, f.max_ep)
    dp_attn = bool(item.dp_attn)
    shape = _shape_single(item.tp, ep, dp_attn, item.spec_decoding) + _parallel(item)
    extra: dict[str, Any] = {}
    if isinstance(item, FixedSingleSearch):
        extra = {"pp": item.pp, "dcp_size": item.dcp_size, "pcp_size": item.pcp_size}
    for c in _select_concs(item, f):
        yield SinglePoint(key=_point_key(key, slc, shape, [c]), spec_decoding=item.spec_decoding,
                          conc=[c], tp=item.tp, ep=ep, dp_attn=dp_attn, **extra, **common)


def _current_points(key: str, entry: LoadedEntry, f: Filters, prof: "ClusterProfile | None",
                    runner_values: list[str], runners: RunnersFile | None) -> Iterator[AnyPoint]:
    """A current-format entry's points: fixed-seq-len first, then agentic-coding (SPEC.md 5)."""
    spec = entry.spec
    extras = spec.extras
    fixed, agentic = spec.scenario_lists  # type: ignore[union-attr]
    top_router = getattr(spec, "router", None)
    top_transfer = getattr(spec, "kv_p2p_transfer", None)
    base: dict[str, Any] = dict(
        config_key=key, source=entry.file, recipe_fingerprint=entry.fingerprint, image=spec.image,
        model=spec.model, model_prefix=spec.model_prefix, precision=spec.precision,
        framework=spec.framework, runner=spec.runner, ixhpc=extras, site=_site(spec.runner, prof),
        recipe_format="current")
    if not f.scenario_type or "fixed-seq-len" in f.scenario_type:
        for slc in fixed:
            if f.seq_lens and (slc.isl, slc.osl) not in f.seq_lens:
                continue
            common = dict(base, isl=slc.isl, osl=slc.osl,
                          max_model_len=slc.isl + slc.osl + extras.margin(True),
                          exp_name=f"{spec.model_prefix}_{seq_len_name(slc.isl, slc.osl, True)}")
            for item in slc.search_space:
                common["router"] = item.router or top_router
                if isinstance(item, SingleNodeSearch):
                    for point in _single_points(key, slc, item, f, common):
                        yield from _per_runner([point], runner_values)
                    continue
                common["entry_disagg"] = spec.disagg
                for multi in _multi_points(key, slc, item, f,
                                           dict(common, kv_p2p_transfer=item.kv_p2p_transfer or top_transfer)):
                    yield from _per_runner([_with_pools(multi, prof)], runner_values)
    if f.scenario_type and "agentic-coding" not in f.scenario_type:
        return
    for n, item in enumerate(agentic):
        for i, s in enumerate(item.search_space):
            concs = _agentic_concs(s, f)
            if not concs:
                continue
            dram = _dram_gb(entry, (key, "scenarios", "agentic-coding", n, "search-space", i), item, s,
                            runners)  # once per entry, with the label's hardware
            common = dict(base, spec_decoding=s.spec_decoding, kv_offloading=s.offload,
                          kv_offload_backend=s.kv_offload_backend, total_cpu_dram_gb=dram,
                          router=s.router or top_router,
                          run_eval=None if f.no_evals else False)  # unmarked until marking runs
            kv = "" if s.offload == "none" else f"kv{s.offload}-{s.kv_offload_backend.name}"
            if s.tp is not None:
                spec_part = "" if s.spec_decoding == "none" else f"_spec-{s.spec_decoding}"
                shape = dict(tp=s.tp, pp=s.pp, dcp_size=s.dcp_size, pcp_size=s.pcp_size,
                             ep=s.ep if s.ep is not None else 1, dp_attn=bool(s.dp_attn))
                for c in concs:
                    single = AgenticSinglePoint(
                        key=_agentic_key(key, n, i, c), conc=[c], **shape, **common,
                        exp_name=f"{spec.model_prefix}_tp{s.tp}_conc{c}_{kv or 'kvnone'}{spec_part}")
                    yield from _per_runner([single], runner_values)
                continue
            assert s.prefill is not None and s.decode is not None
            name = f"{spec.model_prefix}_{_tag(s.prefill, 'p')}_{_tag(s.decode, 'd')}"
            for runner in runner_values:
                for c in concs:   # one concurrency per allocation (InferenceX: at most 1)
                    yield AgenticMultiPoint(
                        key=_agentic_key(key, n, i, c), conc=[c], disagg=spec.disagg,
                        prefill=s.prefill, decode=s.decode,
                        kv_p2p_transfer=s.kv_p2p_transfer or top_transfer,
                        exp_name=f"{name}_conc{c}" + (f"_{kv}" if kv else ""),
                        **dict(common, runner=runner))


def runnable_agentic(p: AgenticPoint, prof: "ClusterProfile | None" = None) -> RunPoint:
    """An agentic point as the run point of its shape (single-node, multi-node aggregated or
    disaggregated) carrying ``AgenticRun``: placement, render, the job and resume then treat
    it as any other point; only its engine flags (KV offload, no context cap) and its
    benchmark step (the trace replay) differ. The recipe's ``ixhpc.agentic`` gives the corpus
    and may shorten the duration."""
    if p.total_cpu_dram_gb is None:
        raise PlanError(f"{p.config_key}: {NEEDS_RUNNER_HARDWARE}")
    a = p.ixhpc.agentic
    header = ("x-dynamo-session-id" if p.framework.startswith("dynamo")
              else "x-session-id" if isinstance(p, AgenticMultiPoint) and p.disagg else "none")
    run = AgenticRun(duration=a.duration or p.duration, kv_offloading=p.kv_offloading,
                     kv_offload_backend=p.kv_offload_backend, total_cpu_dram_gb=p.total_cpu_dram_gb,
                     traces=a.traces, seed=a.seed, synthetic_traces=a.synthetic_traces,
                     synthetic_max_context=a.synthetic_max_context,
                     warmup_requests_per_lane=a.warmup_requests_per_lane, session_header=header,
                     inferencex_fingerprint=changelog_fingerprint(p.to_inferencex_row()))
    common: dict[str, Any] = dict(
        key=p.key, config_key=p.config_key, source=p.source, recipe_fingerprint=p.recipe_fingerprint,
        image=p.image, model=p.model, model_prefix=p.model_prefix, precision=p.precision,
        framework=p.framework, runner=p.runner, isl=0, osl=0, max_model_len=0, exp_name=p.exp_name,
        spec_decoding=p.spec_decoding, conc=list(p.conc), run_eval=bool(p.run_eval), site=p.site,
        ixhpc=p.ixhpc, recipe_format="current", router=p.router, eval_only=p.eval_only, agentic=run)
    if isinstance(p, AgenticSinglePoint):
        return SinglePoint(tp=p.tp, ep=p.ep, dp_attn=p.dp_attn, pp=p.pp, dcp_size=p.dcp_size,
                           pcp_size=p.pcp_size, **common)
    common.update(kv_p2p_transfer=p.kv_p2p_transfer, entry_disagg=p.disagg)
    if p.disagg:
        return _with_pools(DisaggPoint(prefill=p.prefill, decode=p.decode, **common), prof)
    if p.prefill.num_worker != 1 or p.decode.num_worker != 0:
        raise PlanError(f"{p.config_key}: an aggregated multi-node agentic entry with {p.prefill.num_worker} "
                        f"prefill and {p.decode.num_worker} decode worker(s): ixhpc runs one aggregated "
                        f"engine per multi-node point (prefill num-worker 1, decode 0)")
    return MultiAggPoint(prefill=AggEngine.model_validate(p.prefill.model_dump()),
                         decode=UnusedWorker.model_validate(p.decode.model_dump()), **common)


def _with_pools(p: RunPoint, prof: "ClusterProfile | None") -> RunPoint:
    """A disaggregated point whose pools name different hardware, with the partition that
    serves each pool's hardware (as a runner label, or by partition name); as it is when the
    profile has no such partition (placement then refuses it, naming the hardware)."""
    if not isinstance(p, DisaggPoint) or not p.heterogeneous or prof is None:
        return p
    sites = [_hardware_site(str(w.hardware), prof) for w in p.workers()]
    if sites[0] is None or sites[1] is None:
        return p
    return p.model_copy(update={"pools": (sites[0], sites[1])})


def _hardware_site(hardware: str, prof: "ClusterProfile") -> Site | None:
    part = prof.partition_for(hardware) or next((x for x in prof.partitions if x.name == hardware), None)
    if part is None:
        return None
    return Site(cluster=prof.name, partition=part.name, gpus_per_node=prof.gpus_on(part), arch=prof.arch)


def _tag(w: Worker, role: str) -> str:
    return f"{role}{w.num_worker}x{w.tp}" + (f"ep{w.ep}" if w.ep != 1 else "") + ("dpa" if w.dp_attn else "")


def _agentic_key(key: str, item: int, entry: int, conc: int) -> str:
    return names.point_key(f"{key}_agentic{item}-{entry}", [conc])


def _agentic_concs(s: AgenticSearch, f: Filters) -> list[int]:
    """An agentic entry's concurrencies: --min-conc/--max-conc only filter (no fallback)."""
    concs = list(s.conc_list) if s.conc_list else conc_range(s.conc_start, s.conc_end, f.step_size)  # type: ignore[arg-type]
    if f.min_conc is not None:
        concs = [c for c in concs if c >= f.min_conc]
    if f.max_conc is not None:
        concs = [c for c in concs if c <= f.max_conc]
    if f.conc:
        concs = [c for c in concs if c in f.conc]
    return concs


def _dram_gb(entry: LoadedEntry, path: tuple[str | int, ...], item: AgenticItem, s: AgenticSearch,
             runners: RunnersFile | None) -> int | None:
    """total-cpu-dram-gb (SPEC.md 5.6): the CPU DRAM one engine replica's GPUs may offload KV
    to, in decimal GB, exactly as InferenceX computes it (Decimal, truncated); 0 without dram
    offloading, None without a runner config."""
    if s.offload != "dram":
        return 0
    if runners is None:
        return None
    runner = entry.spec.runner
    where = f"{entry.file}:{entry.line}: {format_path(path)}"
    hw = runners.hardware.get(runner)
    if hw is None:
        raise ConfigError(f"{where}: runner '{runner}' requires 'available-cpu-dram-mib' and "
                          f"'gpus-per-node' in the runner config's hardware (kv-offloading: dram); "
                          f"hardware keys: {', '.join(runners.hardware) or 'none'}")
    gpn = hw.gpus_per_node
    if s.tp is not None:
        g = s.tp * s.pp * s.pcp_size
        if g > gpn:
            raise ConfigError(f"{where}: tp*pp*pcp-size {g} exceeds gpus-per-node {gpn} of '{runner}'")
    else:
        w = s.prefill
        assert w is not None
        r = w.tp * w.pp * w.pcp_size
        if (r > gpn and r % gpn) or (r <= gpn and gpn % r):
            raise ConfigError(f"{where}: a prefill replica of {r} GPUs does not tile the "
                              f"{gpn}-GPU nodes of '{runner}'")
        g = gpn if r > gpn else r
    mib = min(hw.available_cpu_dram_mib, DRAM_MIB_CAP)
    u = Decimal(str(item.dram_utilization))
    return int(Decimal(mib) * 1048576 * u * g / gpn / 1_000_000_000)


def _select_concs(item: Any, f: Filters, multinode: bool = False) -> list[int]:
    """The item's concurrencies after --min-conc/--max-conc (rules in the module doc).
    As in InferenceX, a multi-node range is expanded first and then filtered like a list,
    while a single-node range has its ends moved. test-config's --conc keeps its values."""
    concs = _min_max_concs(item, f, multinode)
    if f.conc:
        concs = [c for c in concs if c in f.conc]
    return concs


def _min_max_concs(item: Any, f: Filters, multinode: bool) -> list[int]:
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


def _site(runner: str, prof: "ClusterProfile | None") -> Site | None:
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
    return names.point_key(f"{key}_{slc.isl}x{slc.osl}_{shape}", concs)


def _unique_keys(points: list[AnyPoint]) -> list[AnyPoint]:
    """Points whose keys collide (same shape, different additional-settings, one per node...)
    get a short hash of their full definition appended: deterministic for the same recipe;
    identical points (a concurrency written twice) then a counter."""
    counts: dict[str, int] = defaultdict(int)
    for p in points:
        counts[p.key] += 1
    if len(counts) == len(points):
        return points
    out: list[AnyPoint] = []
    seen: dict[str, int] = defaultdict(int)
    for p in points:
        if counts[p.key] > 1:
            definition = json.dumps(_row_or_dump(p), sort_keys=True)
            hashed = names.unique(p.key, definition)
            seen[hashed] += 1
            p = p.model_copy(update={"key": names.unique(p.key, definition, seen[hashed])})
        out.append(p)
    return out


def _row_or_dump(p: AnyPoint) -> Any:
    return p.model_dump(mode="json", exclude={"key"}) if isinstance(p, _AgenticPoint) else p.to_inferencex_row()


# --------------------------------------------------------------------------------------
# Eval marking, March format (rule in the module doc).


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
    return [p.model_copy(update={"run_eval": True}) if p.key in marked else p for p in points]


# --------------------------------------------------------------------------------------
# Eval marking, current format (SPEC.md 7.2-7.3; InferenceX's mark_eval_entries and
# mark_all_eval_entries). Ties go to the first point in generation order.

_EVAL_IGNORED = frozenset(("conc", "run-eval", "eval-only", "eval-conc", "eval-all-concs", "exp-name"))
_GROUP_KEY = json.JSONEncoder(sort_keys=True, check_circular=False).encode  # rows are fresh trees


def _eval_group(p: AnyPoint) -> str:
    """A multi-node point's eval group: its whole row but the concurrency-specific keys."""
    row = p.to_inferencex_row()
    return _GROUP_KEY({k: v for k, v in row.items() if k not in _EVAL_IGNORED})


def _fixed_8k1k(p: AnyPoint) -> bool:
    return isinstance(p, _Point) and (p.isl, p.osl) == CURRENT_EVAL_SEQ_LEN


def mark_current_evals(points: list[AnyPoint], include_agentic: bool) -> list[AnyPoint]:
    """Single-node 8k1k points at the max and upper-median concurrency >= 16 of their group;
    per multi-node group the point with the highest eligible concurrency (eval-conc); with
    ``include_agentic`` also the single-node agentic point of highest concurrency per (model,
    runner, framework, precision) and multi-node agentic points like multi-node ones."""
    singles: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    multi: dict[str, tuple[int, int]] = {}
    agentic: dict[tuple[str, ...], int] = {}
    for i, p in enumerate(points):
        if isinstance(p, SinglePoint):
            if _fixed_8k1k(p) and p.conc[0] >= MIN_EVAL_CONC:
                singles[(p.model, p.runner, p.framework, p.precision, p.isl, p.osl,
                         p.spec_decoding, p.dp_attn)].append(i)
        elif _fixed_8k1k(p) or (include_agentic and isinstance(p, AgenticMultiPoint)):
            eligible = [c for c in p.conc if c >= MIN_EVAL_CONC]
            if eligible:
                group, top = _eval_group(p), max(eligible)
                if group not in multi or top > multi[group][0]:
                    multi[group] = (top, i)
        elif include_agentic and isinstance(p, AgenticSinglePoint):
            group4 = (p.model, p.runner, p.framework, p.precision)
            if group4 not in agentic or p.conc[0] > points[agentic[group4]].conc[0]:
                agentic[group4] = i
    marked: set[int] = set(agentic.values())
    for members in singles.values():
        concs = sorted({points[i].conc[0] for i in members})
        chosen = {concs[-1], concs[len(concs) // 2]}
        marked.update(i for i in members if points[i].conc[0] in chosen)
    eval_conc = {i: top for top, i in multi.values()}
    marked.update(eval_conc)
    return [p if p.run_eval is False and i not in marked else  # as it is (most points)
            p.model_copy(update={"run_eval": i in marked, **({"eval_conc": eval_conc[i]} if i in eval_conc else {})})
            for i, p in enumerate(points)]


def mark_all_evals(points: list[AnyPoint]) -> list[AnyPoint]:
    """--all-evals: every 8k1k single-node and single-node agentic point is marked; 8k1k
    multi-node points and multi-node agentic points are merged per eval group into the
    group's first point (its concurrencies the sorted union)."""
    out: list[AnyPoint] = []
    first: dict[str, int] = {}
    for p in points:
        if isinstance(p, (SinglePoint, AgenticSinglePoint)):
            out.append(p.model_copy(update={"run_eval": True}) if _fixed_8k1k(p) or
                       isinstance(p, AgenticSinglePoint) else p)
            continue
        if not (_fixed_8k1k(p) or isinstance(p, AgenticMultiPoint)):
            out.append(p)
            continue
        group = _eval_group(p)
        at = first.setdefault(group, len(out))
        concs = sorted(set(p.conc) | (set(out[at].conc) if at < len(out) else set()))
        base = p if at == len(out) else out[at]
        update: dict[str, Any] = {"conc": concs, "run_eval": True}
        if isinstance(p, AgenticMultiPoint):
            update["eval_conc"] = concs[-1]
        else:
            update.update(eval_all_concs=True, eval_conc=None)
        merged = base.model_copy(update=update)
        if at == len(out):
            out.append(merged)
        else:
            out[at] = merged
    return out
