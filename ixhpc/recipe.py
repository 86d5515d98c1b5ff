"""Recipe files: what to benchmark, as typed models with errors located to FILE:LINE.

A recipe file is a mapping of config keys to entries. The entry schema is InferenceX's
master-config schema (``image``, ``model``, ``model-prefix``, ``precision``, ``framework``,
``runner``, ``multinode``, ``disagg``, ``seq-len-configs`` -> ``isl``/``osl``/
``search-space``), so an InferenceX master file is a valid recipe file as it stands.
ixhpc's own additions live under ONE optional key per entry, ``ixhpc:`` (see
``IxhpcBlock``), validated just as strictly.

Both of InferenceX's formats are recipes: an entry with ``seq-len-configs`` is the March 2026
format (``SingleNodeEntry``, ``MultiNodeEntry``, ``MultiAggEntry``); any other entry is read in
the current one (``scenarios:`` with ``fixed-seq-len`` and ``agentic-coding`` items, router,
kv-p2p-transfer, pp/dcp-size/pcp-size, per-worker hardware, KV offloading: ``Current*Entry``,
the rules of ../shared/reference/inferencex-2026-08/SPEC.md sections 2-3, stricter where
InferenceX is lax). ``load_runners`` reads runners.yaml in both forms (flat labels, or
``labels:`` + ``hardware:``).

Every problem is reported as ``FILE:LINE: key.path: expected X, found Y``, all of them at
once: the YAML is composed into nodes (which carry line numbers) and built into plain
Python values with a ``path -> line`` map beside them; pydantic's error locations (which use
the kebab-case aliases) are then looked up in that map.
"""

# No `from __future__ import annotations` here: pydantic would compile and evaluate every field's
# annotation string when the module is imported (models are defined at import).

import difflib
import functools
import hashlib
import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ixhpc.frameworks import FRAMEWORKS
from ixhpc.yamlmodel import (
    COUNT_MAX,
    GPUS_MAX,
    NESTED_IN_SEVERAL,
    OWN_VALIDATOR,
    ConfigError,
    Count,
    EnvName,
    GpuCount,
    Located,
    Minutes,
    Mount,
    NonNegCount,
    NonNegGpuCount,
    NonNegTokens,
    Seconds,
    Str,
    StrictModel,
    Text,
    Tokens,
    found,
    kebab,
    load_yaml,
    located_errors,
    printable,
)

SpecDecoding = Literal["none", "mtp", "draft_model"]
SimGpu = Literal["B200", "GB200", "MI355X", "H100", "H200"]
# A name whose last part says it holds a secret (HF_TOKEN, AWS_SECRET_ACCESS_KEY, DB_PASSWORD),
# but not tuning knobs such as ..._MAX_DISPATCH_TOKENS_PER_RANK.
SECRET_NAME = re.compile(r"(^|_)(TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?|API_KEY|ACCESS_KEY|"
                         r"PRIVATE_KEY)$", re.I)


def _not_secret(name: str) -> str:
    if SECRET_NAME.search(name):
        raise ValueError("looks like a secret; expected it in the environment of `ixhpc submit` "
                         "(it is passed to the job and its containers by name, never written down)")
    return name


# Names a step's environment keeps as the job, Slurm and the container runtime set them: each
# changes which code a step runs (the loader, Python, shells) or how the job itself works.
_STEP_ENV_RULES = (
    (re.compile(r"PATH|HOME|SHELL"), "it decides which programs and files a step finds"),
    (re.compile(r"LD_[A-Z0-9_]*"), "the dynamic loader reads it to load code into every program"),
    (re.compile(r"PYTHON(PATH|HOME|STARTUP|USERBASE)"), "Python reads it to find code to run"),
    (re.compile(r"BASH_ENV|ENV|IFS|SHELLOPTS|BASHOPTS|PS4|CDPATH|GLOBIGNORE|PROMPT_COMMAND"),
     "shells read it when they start"),
    (re.compile(r"(SLURM|SRUN|SBATCH|SALLOC|ENROOT|PYXIS)_[A-Za-z0-9_]*"),
     "Slurm and the container runtime set and read these"),
    (re.compile(r"IXHPC_[A-Za-z0-9_]*"), "ixhpc's own variables"),
)


def _not_the_jobs(name: str) -> str:
    # The planner names the job script's variables; it imports this module, so not at the top.
    from ixhpc.placement import job_variable

    reason = next((why for rule, why in _STEP_ENV_RULES if rule.fullmatch(name)), None)
    if reason is None and job_variable(name):
        reason = "a variable of the job script"
    if reason:
        raise ValueError(f"expected a name the job does not use itself ({reason}), found {name!r}")
    return name


# Recipes are written down (the run directory keeps a copy): no secret values in them. The
# values reach each role's and benchmark step's environment only (ixhpc.placement.with_env).
RecipeEnvName = Annotated[EnvName, AfterValidator(_not_secret), AfterValidator(_not_the_jobs)]

# --------------------------------------------------------------------------------------
# ixhpc's additions (the `ixhpc:` block of an entry).

PER_CONC_MAX = 1024   # prompts per concurrency, load-generator processes
MARCH_MARGIN = 200    # InferenceX's max-model-len margin in the March format
CURRENT_MARGIN = 256  # ... and since 2026-04-20 (the current format)
# Model sizes in billions of parameters (the simulated engine's): finite, at most 100T.
ParamsB = Annotated[float, Field(gt=0, le=100_000, allow_inf_nan=False)]


class EngineArgs(StrictModel):
    """Extra engine command-line arguments per role (each a list of separate arguments)."""

    prefill: list[Str] = []
    decode: list[Str] = []
    server: list[Str] = []   # the single engine of a single-node point
    router: list[Str] = []


class BenchmarkSettings(StrictModel):
    """Load-generator settings. Defaults are InferenceX's: its benchmark workflow passes
    ``--random-range-ratio 0.8`` (workflow input default), ``--num-prompts CONC*10``,
    ``--num-warmups 2*CONC``, ``--request-rate inf`` and ``--ignore-eos``."""

    random_range_ratio: float = Field(0.8, ge=0, le=1)
    num_prompts_factor: Annotated[int, Field(gt=0, le=PER_CONC_MAX)] = 10
    num_warmups: NonNegCount | None = None   # None: 2 x concurrency, as InferenceX
    ignore_eos: bool = True
    request_rate: float = Field(math.inf, gt=0)  # requests/s: finite up to COUNT_MAX, or inf
    client_workers: Annotated[int, Field(gt=0, le=PER_CONC_MAX)] = 1  # ixhpc.bench --workers (InferenceX: 1)
    temperature: float = Field(0.0, ge=0, le=100)  # 0: greedy, as InferenceX and srt-slurm send
    chat_template: bool = False  # prompts as chat messages: the server applies its model's template
    # a point whose GPU power is not valid (ixhpc.results.power) is invalid (InferenceX's REQUIRE_POWER)
    require_power: bool = False
    # seconds a request may receive nothing; None: from the time limit (validity.stall_timeout)
    stall_timeout: float | None = Field(None, gt=0, le=86400)

    @field_validator("request_rate", mode="before")
    @classmethod
    def _inf_word(cls, v: Any) -> Any:
        # YAML spells infinity `.inf`; people also write `inf`.
        return math.inf if isinstance(v, str) and v.strip().lower() in ("inf", "infinity") else v

    @field_validator("request_rate")
    @classmethod
    def _rate_bound(cls, v: float) -> float:
        if v != math.inf and v > COUNT_MAX:
            raise ValueError(f"expected a value <= {COUNT_MAX} or inf, found {found(v)}")
        return v

    def warmups(self, conc: int) -> int:
        return 2 * conc if self.num_warmups is None else self.num_warmups


class SimSettings(StrictModel):
    """Parameters of the simulated engine (framework `sim`); unset = the engine's default."""

    gpu: SimGpu | None = None
    model_params_b: ParamsB | None = None
    active_params_b: ParamsB | None = None
    max_batch: Count | None = None

    @model_validator(mode="after")
    def _active_le_total(self) -> "SimSettings":
        if self.model_params_b and self.active_params_b and self.active_params_b > self.model_params_b:
            raise ValueError(f"expected active-params-b <= model-params-b, found "
                             f"{self.active_params_b} > {self.model_params_b}")
        return self


class AgenticSettings(StrictModel):
    """Agentic-coding points (issue 19, docs/agentic.md "Running agentic points"): the trace
    corpus and the replay's settings. Without ``traces`` the job replays a synthetic corpus
    generated from ``seed`` (ixhpc.bench.agentic.traces.generate)."""

    traces: Text | None = None               # a local JSONL corpus (SPEC §1 format)
    duration: Seconds | None = None          # profiling seconds; None: the point's (3600)
    seed: NonNegCount = 42                   # replay start points and the synthetic corpus
    synthetic_traces: Count = 64             # sessions in the synthetic corpus
    synthetic_max_context: Count = 32768     # its largest request (in + out tokens)
    warmup_requests_per_lane: NonNegCount = 10


Score = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class EvalThresholds(StrictModel):
    """Minimum scores in InferenceX's shape (utils/evals/thresholds.yaml): per task, with
    overrides per model prefix (``models.<prefix>.<task>`` wins over ``default.<task>``)."""

    default: dict[Text, Score] = {}
    models: dict[Text, dict[Text, Score]] = {}


class EvalSettings(StrictModel):
    """Accuracy evals (lm-eval against the point's engine, after its benchmark; docs/evals.md).
    A point marked ``run-eval`` runs them with these settings (defaults without the block)."""

    run: bool = False                        # every point of the entry, not only run-eval ones
    only: bool = False                       # eval-only: no throughput benchmark
    tasks: Annotated[list[Text], Field(min_length=1)] = ["gsm8k"]
    task_dir: Text | None = None             # lm-eval --include_path: a directory of your task files
    limit: Count | None = None               # problems per task (None: all)
    concurrencies: list[Count] | None = None  # None: the point's eval-conc, else its concurrency
    thresholds: EvalThresholds | None = None  # inline; neither this nor a file: InferenceX's floors
    thresholds_file: Text | None = None       # a file of that shape (relative to the recipe)
    max_tokens: Tokens = 8192                # generated tokens per answer (lm-eval max_gen_toks)
    num_fewshot: NonNegCount | None = None   # None: the task's own (gsm8k: 5)
    context_length: Tokens | None = None     # eval-only engines; None: as InferenceX computes it
    request_timeout: Seconds = 3600

    @model_validator(mode="after")
    def _one_thresholds(self) -> "EvalSettings":
        if self.thresholds is not None and self.thresholds_file is not None:
            raise ValueError("expected thresholds or thresholds-file, found both")
        return self


# Engine configuration as data (docs/engine-config.md; resolved per point and role by
# ixhpc.engine_config): string values may name the point's values as placeholders.
CONFIG_PLACEHOLDERS = ("conc", "tp", "ep", "isl", "osl", "max-model-len")
_PLACEHOLDER_WORD = re.compile(r"\{([a-z][a-z0-9_-]*)\}")
TransferBackend = Literal["nixl", "mooncake", "lmcache", "ucx", "mpi", "default"]


def _placeholders_known(value: Any) -> Any:
    """Every ``{name}`` in a string (at any depth) is a known placeholder (JSON text such as
    '{"method":"mtp"}' has no bare word in braces, so it is left alone)."""
    from ixhpc.engine_config import strings_in  # only recipes with engine settings get here

    for text in strings_in(value):
        for name in _PLACEHOLDER_WORD.findall(text):
            if name not in CONFIG_PLACEHOLDERS:
                raise ValueError(f"expected a placeholder among {{{'}, {'.join(CONFIG_PLACEHOLDERS)}}}, "
                                 f"found {{{name}}}")
    return value


EngineMap = dict[Str, Annotated[Any, AfterValidator(_placeholders_known)]]
RoleEnvMap = dict[RecipeEnvName, Annotated[Str, AfterValidator(_placeholders_known)]]


class RoleConfigs(StrictModel):
    """Engine settings per role, as a mapping: each key becomes a flag as srt-slurm's
    ``sglang_config`` does (keys sorted, ``_`` -> ``-``, ``true`` bare, ``false``/``null``
    left out, a list as several words, a map as JSON); TensorRT-LLM's go into its option file."""

    prefill: EngineMap = {}
    decode: EngineMap = {}
    server: EngineMap = {}
    router: EngineMap = {}


class RoleEnv(StrictModel):
    """Environment per role (on top of ``env``, which every step gets)."""

    prefill: RoleEnvMap = {}
    decode: RoleEnvMap = {}
    server: RoleEnvMap = {}
    router: RoleEnvMap = {}


def _one_or_list(v: Any) -> Any:
    return v if isinstance(v, list) else [v]


Match = Annotated[list[Count], BeforeValidator(_one_or_list)]


class PointMatch(StrictModel):
    """Which roles of which points an override applies to: every key given must match (a
    list: any of its values); tp/ep/dp-attn are the role's own."""

    tp: Match | None = None
    ep: Match | None = None
    dp_attn: bool | None = None
    conc: Match | None = None
    isl: Match | None = None
    osl: Match | None = None
    spec_decoding: SpecDecoding | None = None


class EngineOverride(StrictModel):
    """Merged over the block's engine-config/role-env where ``when`` matches (srt-slurm's
    override merge: maps recursively, a list or scalar replaces, ``null`` deletes)."""

    when: PointMatch
    engine_config: RoleConfigs = RoleConfigs()
    role_env: RoleEnv = RoleEnv()
    transfer_backend: TransferBackend | None = None


class FrontendSettings(StrictModel):
    """A disaggregated point's public endpoint: its router/frontend, or nginx in front of
    ``count`` of them (srt-slurm's multiple frontends; docs/engine-config.md)."""

    count: Annotated[int, Field(gt=0, le=16)] = 1


class IxhpcBlock(StrictModel):
    engine_args: EngineArgs = EngineArgs()
    env: dict[RecipeEnvName, Str] = {}
    container_mounts: list[Mount] = []
    model_path: Text | None = None          # where the weights are; default: profile model-dir
    benchmark: BenchmarkSettings = BenchmarkSettings()
    time_limit: Minutes | None = None       # None: the cluster profile's default
    health_timeout: Seconds = 1800          # to wait for the engines to be ready
    # max-model-len = isl + osl + margin; None: InferenceX's for the file's format (March 200,
    # current 256)
    max_model_len_margin: NonNegTokens | None = None
    sim: SimSettings | None = None
    engine_config: RoleConfigs = RoleConfigs()   # engine settings per role (docs/engine-config.md)
    role_env: RoleEnv = RoleEnv()
    transfer_backend: TransferBackend | None = None   # KV transfer between prefill and decode
    overrides: list[EngineOverride] = []         # per point/role changes of the three above
    frontend: FrontendSettings = FrontendSettings()   # disaggregated: routers behind nginx
    eval: EvalSettings | None = None         # accuracy evals (docs/evals.md)
    agentic: AgenticSettings = AgenticSettings()

    def env_names(self) -> set[str]:
        """The variables the recipe sets: ``env`` and every role's ``role-env``."""
        maps = [self.role_env, *(o.role_env for o in self.overrides)]
        return {*self.env, *(name for m in maps for env in m.model_dump().values() for name in env)}

    def margin(self, current: bool) -> int:
        if self.max_model_len_margin is not None:
            return self.max_model_len_margin
        return CURRENT_MARGIN if current else MARCH_MARGIN


# --------------------------------------------------------------------------------------
# InferenceX's master-config schema.


@functools.cache
def no_ixhpc_block() -> IxhpcBlock:
    """The block of an entry (or a point) without one: every default (one shared instance:
    models are frozen, and building the defaults' nested models per entry is most of expanding
    a large file)."""
    return IxhpcBlock()


class ConcForms(StrictModel):
    """Either `conc-list` or `conc-start`..`conc-end` (geometric, see ixhpc.sweep)."""

    conc_start: Count | None = None
    conc_end: Count | None = None
    conc_list: Annotated[list[Count], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> "ConcForms":
        has_start, has_end = self.conc_start is not None, self.conc_end is not None
        if self.conc_list is not None and (has_start or has_end):
            raise ValueError("expected either conc-list or conc-start/conc-end, found both")
        if self.conc_list is None:
            if not (has_start and has_end):
                missing = "conc-end" if has_start else "conc-start" if has_end else "conc-list"
                raise ValueError(f"expected conc-list or conc-start and conc-end, found no {missing}")
            if self.conc_start > self.conc_end:  # type: ignore[operator]
                raise ValueError(f"expected conc-start <= conc-end, found conc-start "
                                 f"{self.conc_start} > conc-end {self.conc_end}")
        return self


# Parallelism the current format added (pp, dcp-size, pcp-size): strict ints > 0, default 1.
Parallel = Annotated[int, Field(gt=0, le=GPUS_MAX)]
# Keys of a worker / search-space entry that only the current format has.
CURRENT_WORKER_KEYS = ("pp", "dcp_size", "pcp_size", "hardware")


def _dcp_divides(tp: int | None, dcp: int) -> None:
    if tp is not None and tp % dcp:
        raise ValueError(f"expected 'tp' ({tp}) divisible by 'dcp-size' ({dcp}), found a remainder "
                         f"of {tp % dcp}")


class Worker(StrictModel):
    model_config = NESTED_IN_SEVERAL

    num_worker: GpuCount
    tp: GpuCount
    ep: GpuCount
    dp_attn: bool
    additional_settings: list[Str] | None = None
    # current format only (a March entry refuses them, see _march_workers)
    pp: Parallel = 1
    dcp_size: Parallel = 1
    pcp_size: Parallel = 1
    hardware: Text | None = None   # the GPU model this pool runs on (both pools or neither)

    @model_validator(mode="after")
    def _dcp(self) -> "Worker":
        _dcp_divides(self.tp, self.dcp_size)
        return self


def _march_workers(prefill: Worker, decode: Worker) -> None:
    for role, w in (("prefill", prefill), ("decode", decode)):
        new = [kebab(k) for k in CURRENT_WORKER_KEYS if k in w.model_fields_set]
        if new:
            raise ValueError(f"{role}.{new[0]}: expected a March-format worker key (pp, dcp-size, "
                             f"pcp-size and hardware belong to the current format: an entry with "
                             f"`scenarios:` instead of `seq-len-configs:`), found {', '.join(new)}")


def _hardware_pair(prefill: Worker, decode: Worker) -> None:
    if bool(prefill.hardware) != bool(decode.hardware):
        set_, unset = ("prefill", "decode") if prefill.hardware else ("decode", "prefill")
        raise ValueError(f"expected 'hardware' on both workers or on neither, found it on {set_} "
                         f"only (add {unset}.hardware or remove {set_}.hardware)")


class SingleNodeSearch(ConcForms):
    tp: GpuCount
    ep: GpuCount | None = None
    dp_attn: bool | None = None
    spec_decoding: SpecDecoding = "none"


class MultiNodeSearch(ConcForms):
    spec_decoding: SpecDecoding = "none"
    prefill: Worker
    decode: Worker

    @model_validator(mode="after")
    def _march(self) -> "MultiNodeSearch":
        if not isinstance(self, _CurrentMulti):
            _march_workers(self.prefill, self.decode)
        return self


class AggEngine(Worker):
    """The engine of a multi-node aggregated entry (InferenceX writes it as the `prefill`
    block): one engine serving both phases across ceil(GPUs / GPUs-per-node) nodes."""

    @field_validator("num_worker")
    @classmethod
    def _one(cls, v: int) -> int:
        if v != 1:
            raise ValueError(f"expected 1 (a multi-node aggregated point, disagg: false, runs "
                             f"one engine; several engines need one entry each), found {v}")
        return v


class UnusedWorker(Worker):
    """The `decode` block of a multi-node aggregated entry: InferenceX writes `num-worker: 0`,
    since the one engine (the prefill block) also decodes."""

    num_worker: NonNegGpuCount

    @field_validator("num_worker")
    @classmethod
    def _none(cls, v: int) -> int:
        if v != 0:
            raise ValueError(f"expected 0 (with disagg: false the prefill block's engine also "
                             f"decodes; decode workers need disagg: true), found {v}")
        return v


class MultiAggSearch(ConcForms):
    spec_decoding: SpecDecoding = "none"
    prefill: AggEngine
    decode: UnusedWorker

    @model_validator(mode="after")
    def _march(self) -> "MultiAggSearch":
        if not isinstance(self, _CurrentMulti):
            _march_workers(self.prefill, self.decode)
        return self


class SingleNodeSeqLen(StrictModel):
    isl: Tokens
    osl: Tokens
    search_space: Annotated[list[SingleNodeSearch], Field(min_length=1)]


class MultiNodeSeqLen(StrictModel):
    isl: Tokens
    osl: Tokens
    search_space: Annotated[list[MultiNodeSearch], Field(min_length=1)]


class MultiAggSeqLen(StrictModel):
    isl: Tokens
    osl: Tokens
    search_space: Annotated[list[MultiAggSearch], Field(min_length=1)]


class EntryBase(StrictModel):
    image: Text
    model: Text
    model_prefix: Text
    precision: Text
    framework: Text
    runner: Text
    disagg: bool = False
    ixhpc: Annotated[IxhpcBlock, OWN_VALIDATOR] | None = None

    @field_validator("framework")
    @classmethod
    def _known_framework(cls, v: str) -> str:
        if v not in FRAMEWORKS:  # else render, not validate, would be the first to notice
            close = difflib.get_close_matches(v, FRAMEWORKS, n=1)
            hint = f"did you mean '{close[0]}'?" if close else ", ".join(sorted(FRAMEWORKS))
            raise ValueError(f"expected a known framework ({hint}), found {found(v)}")
        return v

    @property
    def extras(self) -> IxhpcBlock:
        return self.ixhpc or no_ixhpc_block()


def _single_aggregated(v: bool) -> bool:
    if v:
        raise ValueError("expected false (a single-node entry runs one engine; prefill/decode "
                         "disaggregation needs multinode: true), found true")
    return v


class SingleNodeEntry(EntryBase):
    multinode: bool = False   # always False here: entries with `multinode: true` are multi-node
    seq_len_configs: Annotated[list[SingleNodeSeqLen], Field(min_length=1)]

    @field_validator("disagg")
    @classmethod
    def _aggregated(cls, v: bool) -> bool:
        return _single_aggregated(v)


class MultiNodeEntry(EntryBase):
    """A disaggregated entry (multinode: true, disagg: true)."""

    multinode: Literal[True]
    disagg: Literal[True]
    seq_len_configs: Annotated[list[MultiNodeSeqLen], Field(min_length=1)]


class MultiAggEntry(EntryBase):
    """A multi-node aggregated entry (multinode: true, disagg: false): one engine on several
    nodes, no prefill/decode split."""

    multinode: Literal[True]
    seq_len_configs: Annotated[list[MultiAggSeqLen], Field(min_length=1)]


# --------------------------------------------------------------------------------------
# The current InferenceX format (since 2026-05): `scenarios:` instead of `seq-len-configs:`,
# with `fixed-seq-len` and `agentic-coding` items, router / kv-p2p-transfer, pp / dcp-size /
# pcp-size, per-worker hardware and KV offloading. The rules are those of InferenceX's
# validation.py at 843c6254f (../shared/reference/inferencex-2026-08/SPEC.md sections 2-3),
# stricter where InferenceX is lax (ints are ints, counts are > 0 except num-worker).

ScenarioType = Literal["fixed-seq-len", "agentic-coding"]
SCENARIO_TYPES: tuple[ScenarioType, ...] = ("fixed-seq-len", "agentic-coding")


def _no_image_ref(v: str | None) -> str | None:
    if v is not None and v.startswith("image:"):
        raise ValueError(f"expected a version (not an image reference), found {found(v)}")
    return v


class ComponentMetadata(StrictModel):
    """A component (the router) by name and version."""

    model_config = NESTED_IN_SEVERAL

    name: Text
    version: Annotated[Text, AfterValidator(_no_image_ref)]


class OffloadBackend(StrictModel):
    """The KV-offload backend (hicache, lmcache, mooncake...); version optional."""

    model_config = NESTED_IN_SEVERAL

    name: Text
    version: Annotated[Text, AfterValidator(_no_image_ref)] | None = None


class _CurrentMulti:
    """Marker: a current-format multi-node search-space entry (pp/dcp/pcp/hardware allowed)."""


class FixedSingleSearch(SingleNodeSearch):
    pp: Parallel = 1
    dcp_size: Parallel = 1
    pcp_size: Parallel = 1
    router: ComponentMetadata | None = None

    @model_validator(mode="after")
    def _dcp(self) -> "FixedSingleSearch":
        _dcp_divides(self.tp, self.dcp_size)
        return self


class FixedDisaggSearch(MultiNodeSearch, _CurrentMulti):
    decode: "CurrentWorker"   # num-worker 0: an aggregated arm (one engine, the prefill block)
    router: ComponentMetadata | None = None
    kv_p2p_transfer: Text | None = None

    @model_validator(mode="after")
    def _pair(self) -> "FixedDisaggSearch":
        _hardware_pair(self.prefill, self.decode)
        if self.decode.num_worker == 0 and self.prefill.num_worker != 1:
            raise ValueError(f"expected prefill.num-worker 1 with decode.num-worker 0 (an "
                             f"aggregated arm runs one engine), found {self.prefill.num_worker}")
        return self

    @property
    def aggregated(self) -> bool:
        return self.decode.num_worker == 0


class FixedMultiAggSearch(MultiAggSearch, _CurrentMulti):
    router: ComponentMetadata | None = None
    kv_p2p_transfer: Text | None = None

    @model_validator(mode="after")
    def _pair(self) -> "FixedMultiAggSearch":
        _hardware_pair(self.prefill, self.decode)
        return self


class FixedSingleSeqLen(StrictModel):
    isl: Tokens
    osl: Tokens
    search_space: Annotated[list[FixedSingleSearch], Field(min_length=1)]


class FixedDisaggSeqLen(StrictModel):
    isl: Tokens
    osl: Tokens
    search_space: Annotated[list[FixedDisaggSearch], Field(min_length=1)]


class FixedMultiAggSeqLen(StrictModel):
    isl: Tokens
    osl: Tokens
    search_space: Annotated[list[FixedMultiAggSearch], Field(min_length=1)]


class CurrentWorker(Worker):
    """A worker of a current-format multi-node entry: InferenceX writes `num-worker: 0` for the
    decode block of aggregated points (the prefill block's engine also decodes), also inside
    disagg: true entries (an aggregated arm of a disaggregated sweep)."""

    num_worker: NonNegGpuCount


KvOffloading = Literal["none", "dram"]


class AgenticSearch(ConcForms):
    """One agentic-coding search-space entry: `tp` (single-node entries) or `prefill` and
    `decode` (multi-node entries), never both."""

    tp: GpuCount | None = None
    pp: Parallel = 1
    dcp_size: Parallel = 1
    pcp_size: Parallel = 1
    ep: GpuCount | None = None
    dp_attn: bool | None = None
    spec_decoding: SpecDecoding = "none"
    prefill: CurrentWorker | None = None
    decode: CurrentWorker | None = None
    kv_offloading: KvOffloading | None = None
    kv_offload_backend: OffloadBackend | None = None
    router: ComponentMetadata | None = None
    kv_p2p_transfer: Text | None = None

    @model_validator(mode="after")
    def _form(self) -> "AgenticSearch":
        workers = self.prefill is not None and self.decode is not None
        if (self.tp is None) != workers or (self.tp is not None and (self.prefill or self.decode)):
            raise ValueError("expected either tp (single-node entries) or both prefill and decode "
                             "(multi-node entries), found " + self._found_form())
        if self.tp is not None:
            _dcp_divides(self.tp, self.dcp_size)
            if self.kv_offloading is None:
                raise ValueError("kv-offloading: expected none or dram (required with tp), found "
                                 "it missing")
        else:
            explicit = [kebab(k) for k in ("pp", "dcp_size", "pcp_size") if k in self.model_fields_set]
            if explicit:
                raise ValueError(f"expected {explicit[0]} inside prefill/decode (an entry with "
                                 f"workers takes its parallelism per worker), found it on the entry")
            _hardware_pair(self.prefill, self.decode)  # type: ignore[arg-type]
        kv = self.kv_offloading
        if self.kv_offload_backend is not None and kv != "dram":
            raise ValueError(f"kv-offload-backend: expected it only with kv-offloading: dram, found "
                             f"kv-offloading {'missing' if kv is None else found(kv)}")
        if kv == "dram" and self.kv_offload_backend is None:
            raise ValueError("kv-offload-backend: expected a backend ({name, version}) with "
                             "kv-offloading: dram, found it missing")
        return self

    def _found_form(self) -> str:
        parts = [k for k in ("tp", "prefill", "decode") if getattr(self, k) is not None]
        return " and ".join(parts) if parts else "neither"

    @property
    def offload(self) -> KvOffloading:
        return self.kv_offloading or "none"


class AgenticItem(StrictModel):
    model_config = NESTED_IN_SEVERAL

    search_space: Annotated[list[AgenticSearch], Field(min_length=1)]
    dram_utilization: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] | None = None

    @model_validator(mode="after")
    def _dram(self) -> "AgenticItem":
        if self.dram_utilization is None and any(s.kv_offloading == "dram" for s in self.search_space):
            raise ValueError("dram-utilization: expected a fraction in (0, 1] (kv-offloading: dram "
                             "sizes the CPU DRAM budget with it), found it missing")
        return self


def _one_scenario(fixed: list[Any] | None, agentic: list[Any] | None) -> None:
    if not fixed and not agentic:
        raise ValueError("expected at least one non-empty scenario list (fixed-seq-len or "
                         "agentic-coding), found none")


class _Scenarios(StrictModel):
    """An entry's scenario lists (each shape narrows ``fixed-seq-len``): one at least, not empty."""

    fixed_seq_len: list[Any] | None = None
    agentic_coding: list[AgenticItem] | None = None

    @model_validator(mode="after")
    def _one(self) -> "_Scenarios":
        _one_scenario(self.fixed_seq_len, self.agentic_coding)
        return self


class SingleScenarios(_Scenarios):
    fixed_seq_len: list[FixedSingleSeqLen] | None = None


class DisaggScenarios(_Scenarios):
    fixed_seq_len: list[FixedDisaggSeqLen] | None = None


class MultiAggScenarios(_Scenarios):
    fixed_seq_len: list[FixedMultiAggSeqLen] | None = None


class _CurrentEntry(EntryBase):
    """What every current-format entry has (rules of SPEC.md section 2.7 in ``_cross``)."""

    router: ComponentMetadata | None = None

    @field_validator("framework")
    @classmethod
    def _known_framework(cls, v: str) -> str:
        # InferenceX adds frameworks faster than ixhpc engines: such entries expand and are
        # listed by `sweep`; render/submit refuse them (sweep.expand), validate warns.
        return v

    @property
    def scenario_lists(self) -> tuple[list[Any], list[AgenticItem]]:
        sc = self.scenarios  # type: ignore[attr-defined]
        return list(sc.fixed_seq_len or ()), list(sc.agentic_coding or ())

    def search_entries(self) -> Iterator[Any]:
        fixed, agentic = self.scenario_lists
        for item in [*fixed, *agentic]:
            yield from item.search_space

    @model_validator(mode="after")
    def _cross(self) -> "_CurrentEntry":
        fixed, agentic = self.scenario_lists
        if agentic and not self.runner.startswith("cluster:"):
            raise ValueError(f"runner: expected a 'cluster:' runner for an entry with agentic-coding "
                             f"scenarios, found {found(self.runner)}")
        multinode = bool(getattr(self, "multinode", False))
        for item in agentic:
            for s in item.search_space:
                if multinode and s.tp is not None:
                    raise ValueError("agentic-coding: expected prefill and decode in the search-space "
                                     "entries of a multinode entry, found tp")
                if not multinode and s.tp is None:
                    raise ValueError("agentic-coding: expected tp in the search-space entries of a "
                                     "single-node entry, found prefill/decode (multi-node entries "
                                     "need multinode: true)")
                if not multinode and s.kv_p2p_transfer is not None:
                    raise ValueError("agentic-coding: kv-p2p-transfer is only valid when "
                                     "multinode=true")
        entries = list(self.search_entries())
        for name in ("router", "kv_p2p_transfer"):
            top = getattr(self, name, None)
            if top is not None and any(getattr(s, name, None) is not None for s in entries):
                raise ValueError(f"{kebab(name)}: expected it either at the top level or in "
                                 f"search-space entries, found both")
        if self.disagg and getattr(self, "kv_p2p_transfer", None) is None and (
                not entries or any(getattr(s, "kv_p2p_transfer", None) is None for s in entries)):
            raise ValueError("kv-p2p-transfer: expected a KV transfer engine for disagg: true, at the "
                             "top level or in every search-space entry, found it missing")
        return self


class CurrentSingleEntry(_CurrentEntry):
    multinode: bool = False   # always False here
    scenarios: SingleScenarios

    @field_validator("disagg")
    @classmethod
    def _aggregated(cls, v: bool) -> bool:
        return _single_aggregated(v)


class CurrentDisaggEntry(_CurrentEntry):
    multinode: Literal[True]
    disagg: Literal[True]
    kv_p2p_transfer: Text | None = None
    scenarios: DisaggScenarios


class CurrentMultiAggEntry(_CurrentEntry):
    multinode: Literal[True]
    kv_p2p_transfer: Text | None = None
    scenarios: MultiAggScenarios


MarchEntry = SingleNodeEntry | MultiNodeEntry | MultiAggEntry
CurrentEntry = CurrentSingleEntry | CurrentDisaggEntry | CurrentMultiAggEntry
Entry = MarchEntry | CurrentEntry
CURRENT_ENTRIES = (CurrentSingleEntry, CurrentDisaggEntry, CurrentMultiAggEntry)


def is_current(spec: EntryBase) -> bool:
    """Whether an entry is in the current format (`scenarios:`), not the March one."""
    return isinstance(spec, _CurrentEntry)

# --------------------------------------------------------------------------------------
# Loaded recipes.


@dataclass(frozen=True)
class LoadedEntry:
    key: str
    file: str
    line: int
    spec: Entry
    fingerprint: str   # sha256 of the entry as written (canonical JSON)


@dataclass
class Recipes:
    entries: dict[str, LoadedEntry] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.entries)


# --------------------------------------------------------------------------------------
# Recipe files.


def _entry_model(raw: Any) -> type[EntryBase]:
    """The model for an entry as written: `seq-len-configs` (or a near spelling of it) is the
    March format, anything else the current one (`scenarios:`)."""
    march = isinstance(raw, dict) and "scenarios" not in raw and any(
        isinstance(k, str) and k.startswith("seq-len") for k in raw)
    if not isinstance(raw, dict) or raw.get("multinode") is not True:
        return SingleNodeEntry if march else CurrentSingleEntry
    if raw.get("disagg") is True:
        return MultiNodeEntry if march else CurrentDisaggEntry
    return MultiAggEntry if march else CurrentMultiAggEntry


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode


def fingerprint(raw: Any) -> str:
    return hashlib.sha256(_CANONICAL(raw).encode()).hexdigest()


def parse_recipe(doc: Located) -> tuple[dict[str, LoadedEntry], list[str]]:
    """Validate every entry of one loaded file; return the good ones and all error lines."""
    entries: dict[str, LoadedEntry] = {}
    errors: list[str] = []
    for key, raw in doc.data.items():
        if not isinstance(key, str):
            errors.append(doc.error((key,), f"expected a config key (string), found {found(key)}"))
            continue
        try:
            printable(key)  # it names files and HDF5 attributes
        except ValueError as exc:
            errors.append(doc.error((key,), str(exc)))
            continue
        model = _entry_model(raw)
        try:
            spec = model.model_validate(raw)
        except ValidationError as exc:
            errors.extend(located_errors(doc, (key,), exc, model))
            continue
        entries[key] = LoadedEntry(key, doc.file, doc.line((key,)), spec, fingerprint(raw))  # type: ignore[arg-type]
    return entries, errors


def load_recipe_files(paths: Iterable[str | Path]) -> Recipes:
    """Load and validate recipe files; raise ConfigError listing every problem of every file.
    A config key may appear in only one file (InferenceX rejects that too)."""
    recipes = Recipes()
    errors: list[str] = []
    for path in paths:
        try:
            doc = load_yaml(path)
        except ConfigError as exc:
            errors.extend(exc.errors)
            continue
        entries, errs = parse_recipe(doc)
        errors.extend(errs)
        for key, entry in entries.items():
            if key in recipes.entries:
                first = recipes.entries[key]
                errors.append(f"{entry.file}:{entry.line}: {key}: expected a config key used once "
                              f"across files, found it also at {first.file}:{first.line}")
                continue
            recipes.entries[key] = entry
        recipes.files.append(str(path))
    if errors:
        raise ConfigError(errors)
    return recipes


def validate_file(path: str | Path) -> list[str]:
    """Every located error of one file (empty list: the file is valid)."""
    try:
        doc = load_yaml(path)
    except ConfigError as exc:
        return exc.errors
    return parse_recipe(doc)[1]



# --------------------------------------------------------------------------------------
# runners.yaml: the March form (flat `label: [node, ...]`) and the current one (`labels:` the
# same mapping, `hardware:` per-label CPU DRAM and GPUs per node, read for KV offloading).


class RunnerHardware(StrictModel):
    available_cpu_dram_mib: Annotated[int, Field(gt=0, le=2**40)]
    gpus_per_node: GpuCount


class RunnersFile(StrictModel):
    labels: dict[Text, Annotated[list[Text], Field(min_length=1)]]
    hardware: dict[Text, RunnerHardware] = {}


def load_runners(path: str | Path) -> RunnersFile:
    """Read runners.yaml in either form; ConfigError with every located problem."""
    doc = load_yaml(path, "a mapping of runner labels to node names (or `labels:` and `hardware:`)")
    data = doc.data
    current = "labels" in data and not isinstance(data["labels"], list)
    labels, prefix = (data["labels"], ("labels",)) if current else (data, ())
    if not isinstance(labels, dict):
        raise ConfigError([doc.error(prefix, f"expected a mapping of runner labels to node names, "
                                             f"found {found(labels)}")])
    bad = [doc.error(prefix + (label,), f"expected a runner label (a string), found {found(label)}")
           for label in labels if not isinstance(label, str)]
    bad += [doc.error(prefix + (label,), "expected a non-empty list of runner names, found "
                      + (found(names) if not isinstance(names, list) else "an empty or mixed list"))
            for label, names in labels.items() if isinstance(label, str) and (
                not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names))]
    try:
        runners = RunnersFile.model_validate({**data, "labels": {}} if bad and current else
                                             data if current else {"labels": {} if bad else data})
    except ValidationError as exc:
        bad += located_errors(doc, (), exc, RunnersFile, strip=0 if current else 1)
    if bad:
        raise ConfigError(bad)
    return runners
