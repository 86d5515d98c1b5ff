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

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Union

from pydantic import Field, ValidationError, field_validator, model_validator

from ixhpc.yamlmodel import (ConfigError, EnvName, Located, Mount, NonNegInt, PosFloat, PosInt,
                             StrictModel, Text, found, load_yaml, located_errors)

SpecDecoding = Literal["none", "mtp", "draft_model"]
SimGpu = Literal["B200", "GB200", "MI355X", "H100", "H200"]

# --------------------------------------------------------------------------------------
# ixhpc's additions (the `ixhpc:` block of an entry).


class EngineArgs(StrictModel):
    """Extra engine command-line arguments per role (each a list of separate arguments)."""

    prefill: list[str] = []
    decode: list[str] = []
    server: list[str] = []   # the single engine of a single-node point
    router: list[str] = []


class BenchmarkSettings(StrictModel):
    """Load-generator settings. Defaults are InferenceX's: its benchmark workflow passes
    ``--random-range-ratio 0.8`` (workflow input default), ``--num-prompts CONC*10``,
    ``--num-warmups 2*CONC``, ``--request-rate inf`` and ``--ignore-eos``."""

    random_range_ratio: float = Field(0.8, ge=0, le=1)
    num_prompts_factor: PosInt = 10
    num_warmups: NonNegInt | None = None   # None: 2 x concurrency, as InferenceX
    ignore_eos: bool = True
    request_rate: float = Field(math.inf, gt=0)
    client_workers: PosInt = 1  # load-generator processes (ixhpc.bench --workers); 1 as InferenceX

    @field_validator("request_rate", mode="before")
    @classmethod
    def _inf_word(cls, v: Any) -> Any:
        # YAML spells infinity `.inf`; people also write `inf`.
        return math.inf if isinstance(v, str) and v.strip().lower() in ("inf", "infinity") else v

    def warmups(self, conc: int) -> int:
        return 2 * conc if self.num_warmups is None else self.num_warmups


class SimSettings(StrictModel):
    """Parameters of the simulated engine (framework `sim`); unset = the engine's default."""

    gpu: SimGpu | None = None
    model_params_b: PosFloat | None = None
    active_params_b: PosFloat | None = None
    max_batch: PosInt | None = None

    @model_validator(mode="after")
    def _active_le_total(self) -> SimSettings:
        if self.model_params_b and self.active_params_b and self.active_params_b > self.model_params_b:
            raise ValueError(f"expected active-params-b <= model-params-b, found "
                             f"{self.active_params_b} > {self.model_params_b}")
        return self


class IxhpcBlock(StrictModel):
    engine_args: EngineArgs = EngineArgs()
    env: dict[EnvName, str] = {}
    container_mounts: list[Mount] = []
    model_path: Text | None = None          # where the weights are; default: profile model-dir
    benchmark: BenchmarkSettings = BenchmarkSettings()
    time_limit: PosInt | None = None        # minutes; None: the cluster profile's default
    health_timeout: PosInt = 1800           # seconds to wait for the engines to be ready
    max_model_len_margin: NonNegInt = 200   # max-model-len = isl + osl + margin (InferenceX: 200)
    sim: SimSettings | None = None


# --------------------------------------------------------------------------------------
# InferenceX's master-config schema.


class ConcForms(StrictModel):
    """Either `conc-list` or `conc-start`..`conc-end` (geometric, see ixhpc.sweep)."""

    conc_start: PosInt | None = None
    conc_end: PosInt | None = None
    conc_list: Annotated[list[PosInt], Field(min_length=1)] | None = None

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
    num_worker: PosInt
    tp: PosInt
    ep: PosInt
    dp_attn: bool
    additional_settings: list[str] | None = None


class SingleNodeSearch(ConcForms):
    tp: PosInt
    ep: PosInt | None = None
    dp_attn: bool | None = None
    spec_decoding: SpecDecoding = "none"


class MultiNodeSearch(ConcForms):
    spec_decoding: SpecDecoding = "none"
    prefill: Worker
    decode: Worker


class SingleNodeSeqLen(StrictModel):
    isl: PosInt
    osl: PosInt
    search_space: Annotated[list[SingleNodeSearch], Field(min_length=1)]


class MultiNodeSeqLen(StrictModel):
    isl: PosInt
    osl: PosInt
    search_space: Annotated[list[MultiNodeSearch], Field(min_length=1)]


class EntryBase(StrictModel):
    image: Text
    model: Text
    model_prefix: Text
    precision: Text
    framework: Text
    runner: Text
    disagg: bool = False
    ixhpc: IxhpcBlock | None = None

    @property
    def extras(self) -> IxhpcBlock:
        return self.ixhpc or IxhpcBlock()


class SingleNodeEntry(EntryBase):
    multinode: bool = False   # always False here: entries with `multinode: true` are MultiNodeEntry
    seq_len_configs: Annotated[list[SingleNodeSeqLen], Field(min_length=1)]


class MultiNodeEntry(EntryBase):
    multinode: Literal[True]
    seq_len_configs: Annotated[list[MultiNodeSeqLen], Field(min_length=1)]


Entry = Union[SingleNodeEntry, MultiNodeEntry]

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
    return MultiNodeEntry if isinstance(raw, dict) and raw.get("multinode") is True else SingleNodeEntry


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

