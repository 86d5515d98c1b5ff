"""The run-point metadata record (docs/contracts.md "Run point metadata"), one model for all:
``sweep`` builds it (``RunPoint.metadata(conc)``), render writes it beside the job, the job adds
its own fields and results ingest validates the whole record against it again.

Three shapes, told apart by (multinode, disagg) as the flat record spells them: single-node
(tp/ep/dp_attn), multi-node aggregated (the InferenceX worker blocks, no per-role totals) and
disaggregated (worker blocks and per-role nodes/GPUs). Strict and closed: a string is not a
number, 1 is not a bool and an unknown key is an error. ``record()`` is the flat dict (no None).

Points of a current-format recipe (``scenarios:``) add ``recipe_format: "current"`` and their
parallelism beyond tp/ep (``pp``, ``dcp_size``, ``pcp_size``; per worker for multi-node points,
with the worker's ``hardware`` when set), the ``router_name``/``router_version`` and
``kv_p2p_transfer`` when set; agentic-coding points (issue 19) have no isl/osl/max_model_len
and add ``scenario_type``, ``duration``, ``agentic_traces`` and the KV-offload keys. A
March-format record has none of them (absent = not applicable).
"""

# No `from __future__ import annotations` here: pydantic would compile and evaluate every field's
# annotation string when the module is imported (models are defined at import).

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    Tag,
    TypeAdapter,
    model_validator,
)

Pos = Annotated[StrictInt, Field(gt=0)]
NonNeg = Annotated[StrictInt, Field(ge=0)]
# The three point shapes (a run point's `kind`, a record's shape), named once.
PointKind = Literal["single", "multi-agg", "disagg"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)

    point_key: StrictStr
    config_key: StrictStr
    image: StrictStr
    model: StrictStr
    model_prefix: StrictStr
    precision: StrictStr
    framework: StrictStr
    runner: StrictStr
    cluster: StrictStr
    isl: Pos | None = None          # fixed-seq-len points (required there); absent: agentic
    osl: Pos | None = None
    max_model_len: Pos | None = None
    exp_name: StrictStr
    spec_decoding: StrictStr
    run_eval: StrictBool
    nodes: Pos                      # the whole allocation
    gpus: Pos
    conc: Pos                       # this one benchmark's concurrency
    recipe_fingerprint: StrictStr
    # InferenceX's recipe-fingerprint of the point's matrix row (ixhpc.results.export); absent
    # in records written before it was kept
    inferencex_fingerprint: StrictStr | None = None
    # current-format points only (absent: a March-format point, or not set)
    recipe_format: Literal["current"] | None = None
    router_name: StrictStr | None = None
    router_version: StrictStr | None = None
    kv_p2p_transfer: StrictStr | None = None
    kv_offloading: Literal["none", "dram"] | None = None
    kv_offload_backend_name: StrictStr | None = None
    kv_offload_backend_version: StrictStr | None = None
    total_cpu_dram_gb: NonNeg | None = None
    # agentic-coding points (issue 19): no isl/osl/max_model_len
    scenario_type: Literal["agentic-coding"] | None = None
    duration: Pos | None = None     # the replay's profiling seconds
    agentic_traces: StrictStr | None = None  # the corpus: a path, or synthetic:seed=...
    # added by the job
    job_id: StrictStr | None = None
    node_list: StrictStr | None = None
    start_time: StrictStr | None = None
    end_time: StrictStr | None = None
    ixhpc_version: StrictStr | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_null(cls, data: Any) -> Any:
        # The record has no None (absent = not applicable): a null is a writer's mistake.
        if isinstance(data, dict):
            null = [k for k, v in data.items() if v is None]
            if null:
                raise ValueError(f"{null[0]} is null; expected a string, number or boolean")
        return data

    @model_validator(mode="after")
    def _lengths(self) -> "_Record":
        if self.scenario_type is None:
            missing = [k for k in ("isl", "osl", "max_model_len") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"{missing[0]}: required for a fixed-seq-len point")
        elif self.duration is None or self.agentic_traces is None or self.kv_offloading is None:
            raise ValueError("an agentic-coding point needs duration, agentic_traces and kv_offloading")
        return self

    def record(self) -> dict[str, str | int | float | bool]:
        return self.model_dump(exclude_none=True)


class SingleRecord(_Record):
    multinode: Literal[False] = False
    disagg: Literal[False] = False
    tp: Pos
    ep: Pos
    dp_attn: StrictBool
    pp: Pos | None = None           # current format (pp, dcp_size, pcp_size: all or none)
    dcp_size: Pos | None = None
    pcp_size: Pos | None = None


class _Workers(_Record):
    prefill_num_worker: Pos
    prefill_tp: Pos
    prefill_ep: Pos
    prefill_dp_attn: StrictBool
    decode_num_worker: NonNeg       # 0 for an aggregated point (InferenceX's convention)
    decode_tp: Pos
    decode_ep: Pos
    decode_dp_attn: StrictBool
    # current format: each worker's pp/dcp-size/pcp-size, and its hardware when set
    prefill_pp: Pos | None = None
    prefill_dcp_size: Pos | None = None
    prefill_pcp_size: Pos | None = None
    prefill_hardware: StrictStr | None = None
    decode_pp: Pos | None = None
    decode_dcp_size: Pos | None = None
    decode_pcp_size: Pos | None = None
    decode_hardware: StrictStr | None = None


class MultiAggRecord(_Workers):
    multinode: Literal[True] = True
    disagg: Literal[False] = False


class DisaggRecord(_Workers):
    multinode: Literal[True] = True
    disagg: Literal[True] = True
    prefill_nodes: Pos
    decode_nodes: Pos
    prefill_gpus: Pos
    decode_gpus: Pos
    # a heterogeneous job (prefill and decode hardware differ): each pool's partition
    prefill_partition: StrictStr | None = None
    decode_partition: StrictStr | None = None

    @model_validator(mode="after")
    def _totals(self) -> "DisaggRecord":
        if self.nodes != self.prefill_nodes + self.decode_nodes:
            raise ValueError(f"nodes {self.nodes} is not prefill_nodes + decode_nodes "
                             f"({self.prefill_nodes} + {self.decode_nodes})")
        if self.gpus != self.prefill_gpus + self.decode_gpus:
            raise ValueError(f"gpus {self.gpus} is not prefill_gpus + decode_gpus "
                             f"({self.prefill_gpus} + {self.decode_gpus})")
        return self


def shape_of(data: Any) -> PointKind | None:
    """The record's shape from its (multinode, disagg) booleans; None: neither is a bool pair
    that names a shape (then validation says which key is wrong)."""
    if isinstance(data, dict):
        multinode, disagg = data.get("multinode"), data.get("disagg")
    else:
        multinode, disagg = getattr(data, "multinode", None), getattr(data, "disagg", None)
    if type(multinode) is not bool or type(disagg) is not bool:
        return None
    if not multinode:
        return None if disagg else "single"
    return "disagg" if disagg else "multi-agg"


PointMetadata = Annotated[
    Annotated[SingleRecord, Tag("single")]
    | Annotated[MultiAggRecord, Tag("multi-agg")]
    | Annotated[DisaggRecord, Tag("disagg")],
    Discriminator(shape_of, custom_error_type="shape",
                  custom_error_message="expected boolean multinode and disagg naming a point "
                                       "shape (single-node, multi-node aggregated or "
                                       "disaggregated)"),
]
PointRecord = SingleRecord | MultiAggRecord | DisaggRecord
# Built on first use: a job step imports this module, not always to validate a record.
ADAPTER: TypeAdapter[PointRecord] = TypeAdapter(PointMetadata, config=ConfigDict(defer_build=True))
