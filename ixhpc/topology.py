"""Topology: how many GPUs an engine uses and how engines are packed onto nodes.

The one node-packing rule of ixhpc (sweep counts nodes with it, placement puts roles where it
says). How many GPUs an engine (worker) spans depends on the recipe's format, which the point
knows: a March-format point counts ``max(tp, ep)`` (``tp: 1, ep: 16`` with dp-attn is a 16-GPU
DEP worker: InferenceX's MI355X disagg entries, whose PREFILL_NODES/DECODE_NODES confirm it);
a current-format point counts ``tp * pp * pcp-size`` as InferenceX's ``effective_gpu_count``
does (SPEC.md section 10 item 18: ``ep`` is not counted, ``dcp-size`` splits ``tp``'s GPUs).

A worker of at least a node's GPUs gets ``ceil(gpus / gpus-per-node)`` whole nodes of its own;
smaller workers are packed ``gpus-per-node // gpus`` to a node, each on its own GPU slice.
A job's roles follow each other: prefill workers first, then decode workers (a single or
multi-node aggregated point has one role, its engine). A heterogeneous layout (a disaggregated
point whose prefill and decode pools run on different hardware, one Slurm heterogeneous job)
packs each role on its own node size and gives it its own het group; node indices still count
on through the whole job (group 0's nodes, then group 1's).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def worker_gpus(tp: int, ep: int = 1, pp: int = 1, pcp: int = 1, current: bool = False) -> int:
    """GPUs of one engine instance: its world size, by the rule of the recipe's format."""
    if current:
        return tp * pp * pcp
    return max(tp, ep) * pp


@dataclass(frozen=True)
class Slot:
    """Where one worker goes, relative to its role's first node."""

    node: int        # first node index within the role
    nnodes: int
    gpus: int        # GPUs it uses on each of its nodes
    first_gpu: int   # first GPU index on its node (packed workers share a node)


def pack(num_worker: int, gpus: int, gpus_per_node: int) -> tuple[Slot, ...]:
    """Slots of ``num_worker`` workers of ``gpus`` GPUs each (the rule in the module doc)."""
    if gpus >= gpus_per_node:
        per = math.ceil(gpus / gpus_per_node)
        return tuple(Slot(i * per, per, gpus_per_node, 0) for i in range(num_worker))
    per_node = gpus_per_node // gpus
    return tuple(Slot(i // per_node, 1, gpus, (i % per_node) * gpus) for i in range(num_worker))


@dataclass(frozen=True)
class RoleTopology:
    """``num_worker`` workers of one shape, packed from node ``first_node`` of the job on."""

    name: str              # "server", "prefill" or "decode"
    num_worker: int
    worker_gpus: int       # GPUs of one worker
    first_node: int
    slots: tuple[Slot, ...]
    gpus_per_node: int = 0          # of its nodes (0: the topology's)
    het_group: int | None = None    # its component of a heterogeneous job (None: not one)

    @property
    def nodes(self) -> int:
        return max((s.node + s.nnodes for s in self.slots), default=0)

    @property
    def gpus(self) -> int:
        return self.num_worker * self.worker_gpus


@dataclass(frozen=True)
class Topology:
    """A job's roles on ``gpus_per_node``-GPU nodes, one after the other."""

    gpus_per_node: int
    roles: tuple[RoleTopology, ...]

    @property
    def nodes(self) -> int:
        return sum(r.nodes for r in self.roles)

    @property
    def gpus(self) -> int:
        return sum(r.gpus for r in self.roles)

    def role(self, name: str) -> RoleTopology:
        return next(r for r in self.roles if r.name == name)

    @property
    def heterogeneous(self) -> bool:
        return any(r.het_group is not None for r in self.roles)


def layout(roles: Sequence[tuple[str, int, int]], gpus_per_node: int,
           pools: Sequence[int] | None = None) -> Topology:
    """The topology of roles given as (name, num_worker, GPUs per worker), in job order.
    ``pools``: a heterogeneous job, each role's node size (role i is het group i)."""
    placed: list[RoleTopology] = []
    first = 0
    for i, (name, num_worker, gpus) in enumerate(roles):
        gpn = pools[i] if pools is not None else gpus_per_node
        role = RoleTopology(name, num_worker, gpus, first, pack(num_worker, gpus, gpn), gpn,
                            i if pools is not None else None)
        placed.append(role)
        first += role.nodes
    return Topology(gpus_per_node, tuple(placed))
