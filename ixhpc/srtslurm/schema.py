"""The srt-slurm recipe schema (srtctl v1.0.68; SPEC.md section 4) as strict pydantic models.

Keys are snake_case as written (``SnakeStrictModel``: no alias generator). Unknown keys are
errors in every typed section; the free-form maps of SPEC 5.1 (``environment``,
``*_environment``, ``<engine>_config.<role>``, ``frontend.args``/``env``, ``benchmark.env``,
``aiperf_args``, ``srun_options``, ``sbatch_directives``, ``container_mounts``, Mooncake
``env``/``store_config``, ``kv_events_config``, ``ctx_router``/``gen_router``/
``server_config_extra``, ``identity.frameworks``) accept any string key.

Scalars are converted the way srtctl's marshmallow fields do, not the way pydantic would:

* int: an integer, a numeric string (``"8"``) or a float (truncated); never a boolean;
* float: a number or a numeric string; never a boolean;
* bool: ``true``/``false`` and marshmallow's truthy/falsy spellings (``"true"``, ``"yes"``,
  ``"1"``, ``1``, ...);
* str: a YAML string only (``time_limit: 4:00:00`` is the integer 14400 and is refused);
* ``map[str,str]``: string values only (quote ``1`` and ``true``).

A key whose default is "none" in SPEC.md accepts ``null``; the others refuse it, as srtctl does.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, PlainValidator

from ixhpc.yamlmodel import GPUS_MAX, SnakeStrictModel, found

# --------------------------------------------------------------------------------------
# Scalars with marshmallow's conversions.

_NUL = re.compile(r"[\x00\ud800-\udfff]")
_INT_TEXT = re.compile(r"\s*[+-]?\d+\s*")


def _text(value: Any) -> str:
    """A YAML string (multi-line commands allowed; NUL and lone surrogates cannot be written)."""
    if not isinstance(value, str):
        raise ValueError(f"expected a string, found {found(value)}")
    if _NUL.search(value):
        raise ValueError(f"expected text without NUL or lone surrogates, found {found(value)}")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, found {found(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)  # marshmallow truncates
    if isinstance(value, str) and _INT_TEXT.fullmatch(value):
        return int(value)
    raise ValueError(f"expected an integer, found {found(value)}")


def _float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, found {found(value)}")
    if isinstance(value, (int, float)):
        out = float(value)
    else:
        try:
            out = float(value) if isinstance(value, str) else math.nan
        except ValueError:
            out = math.nan
    if not math.isfinite(out):
        raise ValueError(f"expected a finite number, found {found(value)}")
    return out


_TRUTHY = {"t", "true", "on", "y", "yes", "1"}
_FALSY = {"f", "false", "off", "n", "no", "0"}


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in _TRUTHY | _FALSY:
        # marshmallow lists the spellings in three cases (true, True, TRUE); any case is close
        # enough for a recipe and changes no decision
        return value.lower() in _TRUTHY
    raise ValueError(f"expected true or false, found {found(value)}")


def _bounded(low: int, high: int) -> Any:
    def check(value: Any) -> int:
        n = _int(value)
        if not low <= n <= high:
            raise ValueError(f"expected an integer from {low} to {high}, found {found(value)}")
        return n
    return check


SStr = Annotated[str, PlainValidator(_text)]
SInt = Annotated[int, PlainValidator(_int)]
SFloat = Annotated[float, PlainValidator(_float)]
SBool = Annotated[bool, PlainValidator(_bool)]
# Node, worker and GPU counts: srtctl takes any integer; ixhpc refuses negative and absurd
# ones at once (they would otherwise fail in the allocator or in job-script arithmetic).
Count = Annotated[int, PlainValidator(_bounded(0, GPUS_MAX))]
Port = Annotated[int, PlainValidator(_bounded(1, 65535))]



def _string_keys(value: Any) -> Any:
    """A map's keys must be strings; YAML 1.1 reads `on`/`off`/`yes`/`no` (and numbers) as
    other types, which srtctl refuses (SPEC 5.1). Reported at the map, naming the key."""
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise ValueError(f"expected string keys (quote them), found {found(bad[0])} as a key"
                             + (" (YAML 1.1 reads on/off/yes/no as booleans)"
                                if isinstance(bad[0], bool) else ""))
    return value


StrMap = Annotated[dict[SStr, SStr], BeforeValidator(_string_keys)]
AnyMap = Annotated[dict[SStr, Any], BeforeValidator(_string_keys)]


def _concurrencies(value: Any) -> list[int] | str:
    """``[4, 8]`` (items converted like ints) or ``"4x8"``; a bare integer is refused (SPEC 5)."""
    if isinstance(value, list):
        return [_int(v) for v in value]
    if isinstance(value, str):
        return _text(value)
    raise ValueError(f"expected a list of integers or a string such as \"4x8x16\", "
                     f"found {found(value)}")


def _req_rate(value: Any) -> str | int:
    if isinstance(value, str):
        return _text(value)
    try:
        return _int(value)
    except ValueError:
        raise ValueError(f"expected a string (\"inf\") or an integer, found {found(value)}") from None


def _bool_or_map(value: Any) -> bool | dict[str, Any]:
    if isinstance(value, dict):
        for key in value:
            _text(key)
        return value
    try:
        return _bool(value)
    except ValueError:
        raise ValueError(f"expected true, false or a mapping, found {found(value)}") from None


def _float_list_or_str(value: Any) -> list[float] | str:
    if isinstance(value, list):
        return [_float(v) for v in value]
    if isinstance(value, str):
        return _text(value)
    raise ValueError(f"expected a list of numbers or a string, found {found(value)}")


Concurrencies = Annotated[list[int] | str, PlainValidator(_concurrencies)]
ReqRate = Annotated[str | int, PlainValidator(_req_rate)]
BoolOrMap = Annotated[bool | dict[str, Any], PlainValidator(_bool_or_map)]
FloatsOrStr = Annotated[list[float] | str, PlainValidator(_float_list_or_str)]

Model = SnakeStrictModel


# --------------------------------------------------------------------------------------
# Sections (SPEC.md 4.2 - 4.8 and the sections it names without detail).


class ModelSection(Model):
    path: SStr
    container: SStr
    precision: SStr
    stage_dir: SStr | None = None


class Resources(Model):
    gpu_type: SStr
    gpus_per_node: Count = 4
    prefill_nodes: Count | None = None
    decode_nodes: Count | None = None
    prefill_workers: Count | None = None
    decode_workers: Count | None = None
    agg_nodes: Count | None = None
    agg_workers: Count | None = None
    gpus_per_prefill: Count | None = None
    gpus_per_decode: Count | None = None
    gpus_per_agg: Count | None = None
    spread_workers: SBool = False
    het_jobs: SBool | None = None

    @property
    def disaggregated(self) -> bool:
        """SPEC 6.1: either `*_nodes` key present, even 0."""
        return self.prefill_nodes is not None or self.decode_nodes is not None


class Slurm(Model):
    account: SStr | None = None
    partition: SStr | None = None
    time_limit: SStr | None = None


class Frontend(Model):
    type: SStr = "dynamo"
    enable_multiple_frontends: SBool = True
    num_additional_frontends: Count = 9
    args: AnyMap | None = None
    env: StrMap | None = None
    nginx_container: SStr = "nginx:1.27.4"
    nginx_raise_ulimit: SBool = False
    nginx_session_affinity: SBool = False
    nginx_session_affinity_header: SStr = "X-Dynamo-Session-ID"
    nginx_keepalive_timeout: SStr = "600s"
    ctx_router: AnyMap | None = None
    gen_router: AnyMap | None = None
    server_config_extra: AnyMap | None = None
    orchestrator_placement: SStr = "head"
    dedicated_node: SBool = False


class EngineConfig(Model):
    """``sglang_config`` / ``vllm_config`` / ``trtllm_config``: one free-form map per role."""

    prefill: AnyMap | None = None
    decode: AnyMap | None = None
    aggregated: AnyMap | None = None


class MooncakeKVStore(Model):
    container: SStr | None = None
    env: StrMap | None = None
    master_extra_args: list[SStr] | None = None


class VllmMooncakeKVStore(MooncakeKVStore):
    store_config: AnyMap | None = None


class _BackendCommon(Model):
    prefill_environment: StrMap = Field(default_factory=dict)
    decode_environment: StrMap = Field(default_factory=dict)
    aggregated_environment: StrMap = Field(default_factory=dict)

    def engine_config(self) -> EngineConfig | None:
        return None


class SGLangBackend(_BackendCommon):
    type: Literal["sglang"] = "sglang"
    sglang_config: EngineConfig | None = None
    kv_events_config: BoolOrMap | None = None
    mooncake_kv_store: MooncakeKVStore | None = None
    gpu_type: SStr | None = None

    def engine_config(self) -> EngineConfig | None:
        return self.sglang_config


class TrtllmBackend(_BackendCommon):
    type: Literal["trtllm"]
    trtllm_config: EngineConfig | None = None
    publish_events_and_metrics: SBool = False
    sequential_node_start: Count = 0
    numa_memory_bind: SBool | None = None

    def engine_config(self) -> EngineConfig | None:
        return self.trtllm_config


class VllmBackend(_BackendCommon):
    type: Literal["vllm"]
    vllm_config: EngineConfig | None = None
    connector: SStr | None = "nixl"
    set_cuda_visible_devices: SBool = False
    dp_launch_mode: Literal["per_node", "per_gpu"] = "per_node"
    kv_events_config: BoolOrMap | None = None
    mooncake_kv_store: VllmMooncakeKVStore | None = None
    allow_prefill_decode_colocation: SBool = False
    allow_prefill_decode_colocation_across_nodes: SBool = False

    def engine_config(self) -> EngineConfig | None:
        return self.vllm_config


class MockerBackend(_BackendCommon):
    """Dynamo's simulator (not covered by SPEC.md): accepted with the common keys only."""

    type: Literal["mocker"]


Backend = SGLangBackend | TrtllmBackend | VllmBackend | MockerBackend
BACKENDS: dict[str, type[_BackendCommon]] = {
    "sglang": SGLangBackend, "trtllm": TrtllmBackend, "vllm": VllmBackend, "mocker": MockerBackend}
ENGINE_CONFIG_KEY = {"sglang": "sglang_config", "trtllm": "trtllm_config", "vllm": "vllm_config"}


class Dynamo(Model):
    install: SBool = True
    version: SStr | None = "0.8.0"
    hash: SStr | None = None
    top_of_tree: SBool = False
    wheel: SStr | None = None
    cargo_patches: list[SStr] | None = None
    request_plane: SStr = "tcp"
    event_plane: SStr | None = None

    @property
    def effective_version(self) -> str | None:
        """SPEC 4.6: `hash`, `top_of_tree` or `wheel` silently clears `version`."""
        return None if (self.hash is not None or self.top_of_tree or self.wheel is not None) \
            else self.version


class Benchmark(Model):
    type: SStr = "manual"
    isl: SInt | None = None
    osl: SInt | None = None
    concurrencies: Concurrencies | None = None
    req_rate: ReqRate | None = "inf"
    random_range_ratio: SFloat | None = None
    num_prompts_mult: SInt | None = None
    num_warmup_mult: SInt | None = None
    use_chat_template: SBool = True
    custom_tokenizer: SStr | None = None
    dataset_name: SStr | None = None
    dataset_path: SStr | None = None
    reuse_http_connections: SBool = False
    slow_down_sleep_time: SFloat | None = None
    slow_down_wait_time: SFloat | None = None
    client_placement: SStr = "head"
    client_dedicated_node: SBool = False
    colocate_with_frontend: SBool = True
    command: SStr | None = None
    container_image: SStr | None = None
    env: StrMap = Field(default_factory=dict)
    aiperf_package: SStr | None = None
    aiperf_args: AnyMap = Field(default_factory=dict)
    num_examples: SInt | None = None
    max_tokens: SInt | None = None
    repeat: SInt | None = None
    num_threads: SInt | None = None
    max_context_length: SInt | None = None
    categories: list[SStr] | None = None
    num_shots: SInt | None = None
    temperature: SFloat | None = None
    top_p: SFloat | None = None
    top_k: SInt | None = None
    num_requests: SInt | None = None
    concurrency: SInt | None = None
    prefix_ratios: FloatsOrStr | None = None
    mooncake_workload: SStr | None = None
    ttft_threshold_ms: SInt | None = None
    itl_threshold_ms: SInt | None = None
    trace_file: SStr | None = None
    export_node_metrics: SBool = False
    sweep: AnyMap | None = None

    def concurrency_list(self) -> list[int]:
        """``"4x8x16"`` or ``[4, 8, 16]`` as integers (a non-numeric part raises ValueError)."""
        if self.concurrencies is None:
            return []
        if isinstance(self.concurrencies, str):
            return [int(x) for x in self.concurrencies.split("x")]
        return list(self.concurrencies)


class HealthCheck(Model):
    max_attempts: SInt = 180
    interval_seconds: SInt = 10


class Infra(Model):
    etcd_nats_dedicated_node: SBool = False
    nats_max_payload_mb: SInt | None = None


class ProfilingPhase(Model):
    start_step: SInt | None = None
    stop_step: SInt | None = None


PROFILING_TYPES = ("none", "nsys", "nsys-time", "torch")


class Profiling(Model):
    type: SStr = "none"
    extra_nsys_args: list[SStr] | None = None
    prefill: ProfilingPhase | None = None
    decode: ProfilingPhase | None = None
    aggregated: ProfilingPhase | None = None
    delay_secs: SInt | None = None
    duration_secs: SInt | None = None
    benchmark_duration_secs: SInt = 300


class Exporter(Model):
    container_image: SStr
    port: Port
    command: SStr | None = None


class Tachometer(Model):
    enabled: SBool | None = None
    binary_path: SStr = "tachometer-scraper"
    default_frequency: SFloat = 1.0
    sync_interval_secs: SInt = 120
    compaction_threads: SInt = 4
    storage_subdir: SStr = "tachometer"
    extra_metadata: StrMap = Field(default_factory=dict)
    dcgm_exporter: Exporter | None = None
    node_exporter: Exporter | None = None


class Observability(Model):
    enabled: SBool = False
    enable_otel: SBool = False
    otel_endpoint: SStr | None = None
    host_sampler_all_nodes: SBool = True
    tachometer: Tachometer = Field(default_factory=Tachometer)


class Telemetry(Model):
    """DCGM power telemetry. v1.0.68 has no ``provider`` key (older releases did, SPEC 5.1)."""

    enabled: SBool = False
    dcgm_exporter: Exporter | None = None
    default_frequency: SFloat = 1.0
    storage_subdir: SStr = "power"
    required: SBool = False
    startup_timeout_seconds: SFloat = 30.0
    request_timeout_seconds: SFloat = 2.0
    collector_join_timeout_seconds: SFloat | None = None


class IdentityModel(Model):
    repo: SStr | None = None
    revision: SStr | None = None


class IdentityContainer(Model):
    image: SStr | None = None


class Identity(Model):
    model: IdentityModel = Field(default_factory=IdentityModel)
    container: IdentityContainer = Field(default_factory=IdentityContainer)
    frameworks: StrMap = Field(default_factory=dict)


class ReportingStatus(Model):
    endpoint: SStr | None = None
    endpoints: list[SStr] | None = None


class AIAnalysis(Model):
    enabled: SBool = False
    openrouter_api_key: SStr | None = None
    gh_token: SStr | None = None
    repos_to_search: list[SStr] | None = None
    pr_search_days: SInt = 14
    prompt: SStr | None = None


class S3(Model):
    bucket: SStr
    prefix: SStr | None = None
    region: SStr | None = None
    endpoint_url: SStr | None = None
    access_key_id: SStr | None = None
    secret_access_key: SStr | None = None


class Reporting(Model):
    status: ReportingStatus | None = None
    ai_analysis: AIAnalysis | None = None
    s3: S3 | None = None


class Output(Model):
    log_dir: SStr | None = None  # accepted, ignored (SPEC 2)


class Recipe(Model):
    """One concrete srt-slurm deployment (a plain recipe, or one expanded variant)."""

    name: SStr
    model: ModelSection
    resources: Resources
    slurm: Slurm = Field(default_factory=Slurm)
    backend: Backend = Field(default_factory=SGLangBackend)
    frontend: Frontend = Field(default_factory=Frontend)
    dynamo: Dynamo = Field(default_factory=Dynamo)
    benchmark: Benchmark = Field(default_factory=Benchmark)
    health_check: HealthCheck = Field(default_factory=HealthCheck)
    infra: Infra = Field(default_factory=Infra)
    profiling: Profiling = Field(default_factory=Profiling)
    observability: Observability = Field(default_factory=Observability)
    telemetry: Telemetry = Field(default_factory=Telemetry)
    environment: StrMap = Field(default_factory=dict)
    container_mounts: StrMap = Field(default_factory=dict)
    extra_mount: list[SStr] | None = None
    srun_options: StrMap = Field(default_factory=dict)
    sbatch_directives: StrMap = Field(default_factory=dict)
    setup_script: SStr | None = None
    enable_config_dump: SBool = True
    identity: Identity = Field(default_factory=Identity)
    reporting: Reporting | None = None
    output: Output = Field(default_factory=Output)
