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

Topology is computed once per point from the cluster profile. An engine (worker) spans
max(tp, ep) * pp GPUs (pp is 1: the schema has no pipeline parallelism; ep counts because
`tp: 1, ep: 16` with dp-attn is a 16-GPU DEP worker). Nodes per worker =
ceil(gpus / gpus-per-node); workers smaller than a node are packed onto shared nodes. A
point's prefill/decode nodes and GPUs are per-role totals, and its nodes/gpus their sum
(single-node: one engine). These numbers were checked against the PREFILL_NODES /
DECODE_NODES that InferenceX's own multi-node entries state.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
from collections import defaultdict
from typing import Any, Iterator, NamedTuple, Sequence

from pydantic import BaseModel, ConfigDict, Field

from ixhpc.errors import UserError
from ixhpc.profiles import ClusterProfile, profile_for_runner
from ixhpc.recipe import IxhpcBlock, LoadedEntry, MultiNodeEntry, Recipes, Worker

SEQ_LEN_NAMES = {"1k1k": (1024, 1024), "1k8k": (1024, 8192), "8k1k": (8192, 1024)}
_SEQ_LEN_OF = {v: k for k, v in SEQ_LEN_NAMES.items()}
EVAL_SEQ_LEN = SEQ_LEN_NAMES["1k8k"]


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


class Filters(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model_prefix: tuple[str, ...] = ()
    precision: tuple[str, ...] = ()
    framework: tuple[str, ...] = ()
    runner_type: tuple[str, ...] = ()
    seq_lens: tuple[tuple[int, int], ...] = ()
    step_size: int = Field(2, ge=2)
    min_conc: int | None = Field(None, gt=0)
    max_conc: int | None = Field(None, gt=0)
    max_tp: int | None = Field(None, gt=0)
    max_ep: int | None = Field(None, gt=0)
    single_node: bool = True
    multi_node: bool = True
    run_evals: bool = False
    evals_only: bool = False

    def keeps_entry(self, key: str, e: LoadedEntry) -> bool:
        s = e.spec
        return ((not self.model_prefix or any(key.startswith(p) for p in self.model_prefix))
                and (not self.precision or s.precision in self.precision)
                and (not self.framework or s.framework in self.framework)
                and (not self.runner_type or s.runner in self.runner_type)
                and (self.multi_node if s.multinode else self.single_node))


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, found {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, found {value}")
    return value


def _step(text: str) -> int:
    value = _positive(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected a step of at least 2, found {value}")
    return value


def _seq_len(text: str) -> tuple[int, int]:
    if text in SEQ_LEN_NAMES:
        return SEQ_LEN_NAMES[text]
    m = re.fullmatch(r"(\d+)[x_](\d+)", text)
    if not m or not all(int(g) > 0 for g in m.groups()):
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(SEQ_LEN_NAMES)} or ISLxOSL, found {text!r}")
    return int(m.group(1)), int(m.group(2))


def add_filter_args(parser: argparse.ArgumentParser) -> None:
    """InferenceX's `full-sweep` selection flags."""
    g = parser.add_argument_group("selection (InferenceX full-sweep flags)")
    g.add_argument("--model-prefix", nargs="+", default=[], metavar="PREFIX",
                   help="keep config keys starting with any PREFIX")
    g.add_argument("--precision", nargs="+", default=[], help="keep these precisions")
    g.add_argument("--framework", nargs="+", default=[], help="keep these frameworks")
    g.add_argument("--runner-type", nargs="+", default=[], metavar="RUNNER",
                   help="keep entries whose runner label is one of these")
    g.add_argument("--seq-lens", nargs="+", default=[], type=_seq_len, metavar="SEQ",
                   help="keep these sequence lengths: 1k1k, 1k8k, 8k1k or ISLxOSL")
    g.add_argument("--step-size", type=_step, default=2,
                   help="geometric step of conc-start..conc-end ranges (default 2)")
    g.add_argument("--min-conc", type=_positive, help="drop concurrencies below this")
    g.add_argument("--max-conc", type=_positive, help="drop concurrencies above this")
    g.add_argument("--max-tp", type=_positive, help="drop single-node points with a larger tp")
    g.add_argument("--max-ep", type=_positive, help="clamp single-node ep to this")
    nodes = g.add_mutually_exclusive_group()
    nodes.add_argument("--single-node", action="store_true", help="only single-node entries")
    nodes.add_argument("--multi-node", action="store_true", help="only multi-node entries")
    evals = g.add_mutually_exclusive_group()
    evals.add_argument("--run-evals", action="store_true",
                       help="mark the eval subset (run-eval: true) among all points")
    evals.add_argument("--evals-only", action="store_true", help="keep only the eval subset")


def filters_from_args(args: argparse.Namespace) -> Filters:
    neither = not args.single_node and not args.multi_node
    return Filters(
        model_prefix=tuple(args.model_prefix), precision=tuple(args.precision),
        framework=tuple(args.framework), runner_type=tuple(args.runner_type),
        seq_lens=tuple(args.seq_lens), step_size=args.step_size, min_conc=args.min_conc,
        max_conc=args.max_conc, max_tp=args.max_tp, max_ep=args.max_ep,
        single_node=args.single_node or neither, multi_node=args.multi_node or neither,
        run_evals=args.run_evals, evals_only=args.evals_only,
    )


# --------------------------------------------------------------------------------------
# Run points.


class RunPoint(BaseModel):
    """One benchmark configuration on one allocation: a single-node engine at one
    concurrency, or a multi-node deployment with its whole concurrency list."""

    model_config = ConfigDict(extra="forbid", frozen=True)

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
    multinode: bool
    disagg: bool
    isl: int
    osl: int
    max_model_len: int
    exp_name: str
    spec_decoding: str
    conc: list[int]
    run_eval: bool = False
    # single-node
    tp: int | None = None
    ep: int | None = None
    dp_attn: bool | None = None
    # multi-node
    prefill: Worker | None = None
    decode: Worker | None = None
    # cluster (None: no profile serves this runner; fine for matrix output, not for running)
    cluster: str | None = None
    partition: str | None = None
    gpus_per_node: int | None = None
    arch: str | None = None
    nodes: int | None = None
    gpus: int | None = None
    prefill_nodes: int | None = None
    decode_nodes: int | None = None
    prefill_gpus: int | None = None
    decode_gpus: int | None = None
    ixhpc: IxhpcBlock = IxhpcBlock()

    @property
    def resolved(self) -> bool:
        return self.cluster is not None

    def to_inferencex_row(self) -> dict[str, Any]:
        """The point as one InferenceX matrix row (single-node: conc is one int)."""
        row: dict[str, Any] = {
            "image": self.image, "model": self.model, "model-prefix": self.model_prefix,
            "precision": self.precision, "framework": self.framework, "runner": self.runner,
            "isl": self.isl, "osl": self.osl, "spec-decoding": self.spec_decoding,
            "max-model-len": self.max_model_len, "exp-name": self.exp_name,
            "disagg": self.disagg, "run-eval": self.run_eval,
        }
        if self.multinode:
            assert self.prefill and self.decode
            row["prefill"] = self.prefill.model_dump(by_alias=True, exclude_none=True)
            row["decode"] = self.decode.model_dump(by_alias=True, exclude_none=True)
            row["conc"] = list(self.conc)
        else:
            row.update({"tp": self.tp, "ep": self.ep, "dp-attn": self.dp_attn, "conc": self.conc[0]})
        return row

    def metadata(self, conc: int) -> dict[str, str | int | float | bool]:
        """The flat record of docs/contracts.md for one benchmark of this point."""
        if not self.resolved:
            raise UserError(f"{self.config_key}: no cluster profile serves runner '{self.runner}'")
        if conc not in self.conc:
            raise ValueError(f"{self.key}: concurrency {conc} is not one of {self.conc}")
        meta: dict[str, Any] = {
            "point_key": self.key, "config_key": self.config_key, "image": self.image,
            "model": self.model, "model_prefix": self.model_prefix, "precision": self.precision,
            "framework": self.framework, "runner": self.runner, "cluster": self.cluster,
            "isl": self.isl, "osl": self.osl, "max_model_len": self.max_model_len,
            "exp_name": self.exp_name, "spec_decoding": self.spec_decoding,
            "disagg": self.disagg, "multinode": self.multinode, "run_eval": self.run_eval,
            "nodes": self.nodes, "gpus": self.gpus, "conc": conc,
            "recipe_fingerprint": self.recipe_fingerprint,
        }
        if self.multinode:
            for role, w in (("prefill", self.prefill), ("decode", self.decode)):
                assert w is not None
                meta.update({f"{role}_num_worker": w.num_worker, f"{role}_tp": w.tp,
                             f"{role}_ep": w.ep, f"{role}_dp_attn": w.dp_attn})
        else:
            meta.update({"tp": self.tp, "ep": self.ep, "dp_attn": self.dp_attn})
        if self.disagg:
            meta.update({"prefill_nodes": self.prefill_nodes, "decode_nodes": self.decode_nodes,
                         "prefill_gpus": self.prefill_gpus, "decode_gpus": self.decode_gpus})
        return {k: v for k, v in meta.items() if v is not None}


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
    placement = _placement(spec.runner, prof)
    for slc in spec.seq_len_configs:
        if f.seq_lens and (slc.isl, slc.osl) not in f.seq_lens:
            continue
        common = dict(
            config_key=key, source=entry.file, recipe_fingerprint=entry.fingerprint,
            image=spec.image, model=spec.model, model_prefix=spec.model_prefix,
            precision=spec.precision, framework=spec.framework, runner=spec.runner,
            multinode=spec.multinode, disagg=spec.disagg, isl=slc.isl, osl=slc.osl,
            max_model_len=slc.isl + slc.osl + extras.max_model_len_margin,
            exp_name=f"{spec.model_prefix}_{seq_len_name(slc.isl, slc.osl)}", ixhpc=extras,
            **placement,
        )
        for item in slc.search_space:
            if isinstance(spec, MultiNodeEntry):
                concs = _select_concs(item, f, multinode=True)
                if concs:
                    topo = _multi_topology(item.prefill, item.decode, placement.get("gpus_per_node"))
                    yield RunPoint(key=_point_key(key, slc, _shape_multi(item), concs),
                                   spec_decoding=item.spec_decoding, conc=concs,
                                   prefill=item.prefill, decode=item.decode, **topo, **common)
                continue
            if f.max_tp is not None and item.tp > f.max_tp:
                continue
            ep = item.ep if item.ep is not None else 1
            if f.max_ep is not None:
                ep = min(ep, f.max_ep)
            dp_attn = bool(item.dp_attn)
            topo = _single_topology(item.tp, ep, placement.get("gpus_per_node"))
            shape = _shape_single(item.tp, ep, dp_attn, item.spec_decoding)
            for c in _select_concs(item, f):
                yield RunPoint(key=_point_key(key, slc, shape, [c]), spec_decoding=item.spec_decoding,
                               conc=[c], tp=item.tp, ep=ep, dp_attn=dp_attn, **topo, **common)


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


def _placement(runner: str, prof: ClusterProfile | None) -> dict[str, Any]:
    part = prof.partition_for(runner) if prof else None
    if prof is None or part is None:
        return {}
    return {"cluster": prof.name, "partition": part.name, "gpus_per_node": prof.gpus_on(part),
            "arch": prof.arch}


def worker_gpus(tp: int, ep: int = 1, pp: int = 1) -> int:
    """GPUs of one engine instance: its world size. Expert parallelism can exceed tp: with
    attention data-parallelism a `tp: 1, ep: 16` worker spans 16 GPUs (InferenceX's MI355X
    disagg entries, whose PREFILL_NODES/DECODE_NODES settings confirm it)."""
    return max(tp, ep) * pp


def role_nodes(num_worker: int, gpus: int, gpus_per_node: int) -> int:
    """Nodes for `num_worker` engines of `gpus` GPUs each: ceil(gpus / gpus-per-node) per
    worker; workers smaller than a node share nodes (4 x TP2 on 4-GPU nodes = 2 nodes)."""
    if gpus >= gpus_per_node:
        return num_worker * math.ceil(gpus / gpus_per_node)
    return math.ceil(num_worker / (gpus_per_node // gpus))


class WorkerSlot(NamedTuple):
    """Where one engine of a role goes, relative to the role's first node."""

    node: int        # first node index within the role
    nnodes: int
    gpus: int        # GPUs it uses on each of its nodes
    first_gpu: int   # first GPU index on its node (packed workers share a node)


def worker_slots(num_worker: int, gpus: int, gpus_per_node: int) -> list[WorkerSlot]:
    """The placement `role_nodes` counts: whole nodes per worker, or packed sub-node workers."""
    if gpus >= gpus_per_node:
        per = math.ceil(gpus / gpus_per_node)
        return [WorkerSlot(i * per, per, gpus_per_node, 0) for i in range(num_worker)]
    per_node = gpus_per_node // gpus
    return [WorkerSlot(i // per_node, 1, gpus, (i % per_node) * gpus) for i in range(num_worker)]


def _single_topology(tp: int, ep: int, gpn: int | None) -> dict[str, int]:
    if gpn is None:
        return {}
    gpus = worker_gpus(tp, ep)
    return {"nodes": role_nodes(1, gpus, gpn), "gpus": gpus}


def _multi_topology(prefill: Worker, decode: Worker, gpn: int | None) -> dict[str, int]:
    if gpn is None:
        return {}
    topo = {}
    for role, w in (("prefill", prefill), ("decode", decode)):
        gpus = worker_gpus(w.tp, w.ep)
        topo[f"{role}_nodes"] = role_nodes(w.num_worker, gpus, gpn)
        topo[f"{role}_gpus"] = w.num_worker * gpus
    topo["nodes"] = topo["prefill_nodes"] + topo["decode_nodes"]
    topo["gpus"] = topo["prefill_gpus"] + topo["decode_gpus"]
    return topo


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
    c = "-".join(map(str, concs)) if len(concs) <= 4 else f"{concs[0]}-{concs[-1]}n{len(concs)}"
    return re.sub(r"[^A-Za-z0-9._-]", "-", f"{key}_{slc.isl}x{slc.osl}_{shape}_c{c}")


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
            p = p.model_copy(update={"key": f"{p.key}_{digest.hexdigest()[:8]}"})
        out.append(p)
    return out


# --------------------------------------------------------------------------------------
# Eval marking (rule in the module doc).


def mark_evals(points: list[RunPoint]) -> list[RunPoint]:
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, p in enumerate(points):
        if not p.multinode and (p.isl, p.osl) == EVAL_SEQ_LEN:
            groups[(p.model, p.runner, p.framework, p.precision, p.isl, p.osl,
                    p.spec_decoding, p.dp_attn)].append(i)
    marked: set[int] = set()
    for members in groups.values():
        tps = {points[i].tp for i in members}
        for tp in {min(tps), max(tps)}:  # type: ignore[type-var]
            at_tp = [i for i in members if points[i].tp == tp]
            top = max(points[i].conc[0] for i in at_tp)
            marked.update(i for i in at_tp if points[i].conc[0] == top)
    return [p.model_copy(update={"run_eval": i in marked}) for i, p in enumerate(points)]
