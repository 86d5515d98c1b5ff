"""Recipe files: what to benchmark, as typed models with errors located to FILE:LINE.

A recipe file is a mapping of config keys to entries. The entry schema is InferenceX's
master-config schema (``image``, ``model``, ``model-prefix``, ``precision``, ``framework``,
``runner``, ``multinode``, ``disagg``, ``seq-len-configs`` -> ``isl``/``osl``/
``search-space``), so an InferenceX master file is a valid recipe file as it stands.
ixhpc's own additions live under ONE optional key per entry, ``ixhpc:`` (see
``IxhpcBlock``), validated just as strictly.

Every problem is reported as ``FILE:LINE: key.path: expected X, found Y``, all of them at
once: the YAML is composed into nodes (which carry line numbers) and built into plain
Python values with a ``path -> line`` map beside them; pydantic's error locations (which use
the kebab-case aliases) are then looked up in that map.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator

from ixhpc.engines import FRAMEWORKS
from ixhpc.yamlmodel import (
    COUNT_MAX,
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
# values reach each role's and benchmark step's environment only (ixhpc.placement._with_env).
RecipeEnvName = Annotated[EnvName, AfterValidator(_not_secret), AfterValidator(_not_the_jobs)]

# --------------------------------------------------------------------------------------
# ixhpc's additions (the `ixhpc:` block of an entry).

PER_CONC_MAX = 1024   # prompts per concurrency, load-generator processes
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
    def _active_le_total(self) -> SimSettings:
        if self.model_params_b and self.active_params_b and self.active_params_b > self.model_params_b:
            raise ValueError(f"expected active-params-b <= model-params-b, found "
                             f"{self.active_params_b} > {self.model_params_b}")
        return self


class IxhpcBlock(StrictModel):
    engine_args: EngineArgs = EngineArgs()
    env: dict[RecipeEnvName, Str] = {}
    container_mounts: list[Mount] = []
    model_path: Text | None = None          # where the weights are; default: profile model-dir
    benchmark: BenchmarkSettings = BenchmarkSettings()
    time_limit: Minutes | None = None       # None: the cluster profile's default
    health_timeout: Seconds = 1800          # to wait for the engines to be ready
    max_model_len_margin: NonNegTokens = 200  # max-model-len = isl + osl + margin (InferenceX: 200)
    sim: SimSettings | None = None


# --------------------------------------------------------------------------------------
# InferenceX's master-config schema.


class ConcForms(StrictModel):
    """Either `conc-list` or `conc-start`..`conc-end` (geometric, see ixhpc.sweep)."""

    conc_start: Count | None = None
    conc_end: Count | None = None
    conc_list: Annotated[list[Count], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> ConcForms:
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


class Worker(StrictModel):
    num_worker: GpuCount
    tp: GpuCount
    ep: GpuCount
    dp_attn: bool
    additional_settings: list[Str] | None = None


class SingleNodeSearch(ConcForms):
    tp: GpuCount
    ep: GpuCount | None = None
    dp_attn: bool | None = None
    spec_decoding: SpecDecoding = "none"


class MultiNodeSearch(ConcForms):
    spec_decoding: SpecDecoding = "none"
    prefill: Worker
    decode: Worker


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
    ixhpc: IxhpcBlock | None = None

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
        return self.ixhpc or IxhpcBlock()


class SingleNodeEntry(EntryBase):
    multinode: bool = False   # always False here: entries with `multinode: true` are multi-node
    seq_len_configs: Annotated[list[SingleNodeSeqLen], Field(min_length=1)]

    @field_validator("disagg")
    @classmethod
    def _aggregated(cls, v: bool) -> bool:
        if v:
            raise ValueError("expected false (a single-node entry runs one engine; prefill/decode "
                             "disaggregation needs multinode: true), found true")
        return v


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


Entry = SingleNodeEntry | MultiNodeEntry | MultiAggEntry

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
    if not isinstance(raw, dict) or raw.get("multinode") is not True:
        return SingleNodeEntry
    return MultiNodeEntry if raw.get("disagg") is True else MultiAggEntry


def fingerprint(raw: Any) -> str:
    return hashlib.sha256(json.dumps(raw, sort_keys=True, separators=(",", ":"),
                                     default=str).encode()).hexdigest()


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

