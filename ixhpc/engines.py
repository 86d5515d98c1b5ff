"""Engine command builders: the launch line of one role (server, prefill/decode worker,
router/frontend) for each InferenceX framework, as an argv list plus the env it needs.

InferenceX ``framework:`` values map to engine families (``ixhpc.frameworks``): sglang and
sglang-disagg -> SGLang (router: sglang_router); vllm -> vLLM; trt -> TensorRT-LLM's
``trtllm-serve``; dynamo-sglang / dynamo-trt / dynamo-vllm -> NVIDIA Dynamo (a frontend plus
``dynamo.<backend>`` workers); atom -> AMD's ATOM; sim -> ixhpc's simulated engine.
``engine(framework)`` gives the family's ``Engine``: what placement needs (KV side-channel
port per role, router bootstrap ports, Dynamo's control plane, health path, program), so
placement never matches framework names.

``launch(spec)`` returns a ``Launch`` (argv, env, config files, MPI tasks per node);
``build(spec)`` folds env and files into one self-contained argv (``env K=V``, a fixed
``sh -c`` that writes each file from its arguments) for callers that take a bare argv.
Values are only ever argv elements: no shell string is built from a recipe value.

Parallelism beyond tp/ep (the current InferenceX format's ``pp``, ``dcp-size``, ``pcp-size``)
is spelled as each engine spells it (the flag data of ``ixhpc.engine_flags``): SGLang (and
dynamo.sglang) ``--pp-size``, ``--dcp-size``, ``--enable-prefill-context-parallel
--attn-cp-size`` (its ``--tp-size`` then counts the attention CP ranks too); vLLM (and
dynamo.vllm) ``--pipeline-parallel-size``, ``--decode-context-parallel-size``,
``--prefill-context-parallel-size``; TensorRT-LLM ``--pp_size`` (dynamo.trtllm:
``pipeline_parallel_size``). A value an engine has no setting for (context parallelism on
TensorRT-LLM, anything but tp/ep on ATOM and the simulated engine) is a ConfigError, never
dropped; a flag the image's engine version lacks is ``ixhpc.engine_check``'s located error.

Recipe ``additional-settings`` (``KEY=VALUE``, as InferenceX passes them to its launch
scripts) are exported as environment variables; the tuning keys in ``TUNING`` (optionally
prefixed ``PREFILL_``/``DECODE_`` for that role) also become engine flags. The recipe's engine
configuration as data (``ixhpc.engine_config``) arrives resolved: flags in ``extra_args``, or
``engine_config`` merged into TensorRT-LLM's option files (``config_in_file``), the role's
``engine_env`` and its ``transfer_backend``. ``nginx`` is the public endpoint in front of several
frontends (srt-slurm's and ixhpc's multiple frontends).
"""

# No `from __future__ import annotations` here: pydantic would compile and evaluate every field's
# annotation string when the module is imported (models are defined at import).

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ixhpc.errors import ConfigError
from ixhpc.frameworks import FRAMEWORKS

Role = Literal["server", "prefill", "decode", "router", "frontend"]
Port = int | str   # a number, or a script variable placeholder (ixhpc.shell.var)

# additional-settings key -> engine flag, per family (the trt names are InferenceX's own).
TUNING: dict[str, dict[str, str]] = {
    "sglang": {"MAX_BATCH_SIZE": "--max-running-requests", "MAX_NUM_TOKENS": "--max-prefill-tokens",
               "GPU_MEM_FRACTION": "--mem-fraction-static"},
    "vllm": {"MAX_BATCH_SIZE": "--max-num-seqs", "MAX_NUM_TOKENS": "--max-num-batched-tokens",
             "GPU_MEM_FRACTION": "--gpu-memory-utilization"},
    "trt": {"MAX_BATCH_SIZE": "--max_batch_size", "MAX_NUM_TOKENS": "--max_num_tokens",
            "GPU_MEM_FRACTION": "--kv_cache_free_gpu_memory_fraction"},
    "atom": {"MAX_BATCH_SIZE": "--max-num-seqs", "MAX_NUM_TOKENS": "--max-num-batched-tokens",
             "GPU_MEM_FRACTION": "--gpu-memory-utilization"},
}
KvPortField = Literal["bootstrap_port", "nixl_port"]
FAMILY_NAMES = {"sglang": "SGLang", "vllm": "vLLM", "trt": "TensorRT-LLM", "dynamo-sglang": "Dynamo (SGLang)",
                "dynamo-vllm": "Dynamo (vLLM)", "dynamo-trt": "Dynamo (TensorRT-LLM)", "atom": "ATOM",
                "sim": "the simulated engine"}
_PARALLEL_WHAT = {"pp": "pipeline-parallel", "dcp-size": "decode-context-parallel",
                  "pcp-size": "prefill-context-parallel"}


@dataclass(frozen=True)
class Engine:
    """What placement needs to know about an engine family (it never matches framework names)."""

    family: str
    program: str                                  # what its workers run (module or executable)
    kv_ports: tuple[tuple[str, KvPortField], ...] = ()  # role -> LaunchSpec field of the KV
    #                                               side-channel port that role binds
    router_bootstrap_ports: bool = False          # its router is given each prefill KV port
    control_plane: bool = False                   # Dynamo: etcd and NATS beside the frontend
    multinode: bool = True                        # one engine can span several nodes

    def kv_port(self, role: str) -> KvPortField | None:
        return dict(self.kv_ports).get(role)

    def health_path(self, role: str = "server") -> str | None:
        """The HTTP path that answers 200 once a role is ready (Dynamo workers: their system
        status server, see ``_dynamo_env``); None: the role has none."""
        if self.control_plane and role == "server":
            return None
        return "/health"  # sglang, sglang_router, vllm, trtllm-serve, dynamo.frontend/workers, atom, sim


_SGLANG_KV: tuple[tuple[str, KvPortField], ...] = (("prefill", "bootstrap_port"),)
_VLLM_KV: tuple[tuple[str, KvPortField], ...] = (("prefill", "nixl_port"), ("decode", "nixl_port"))
ENGINES: dict[str, Engine] = {e.family: e for e in (
    Engine("sglang", "sglang.launch_server", _SGLANG_KV, router_bootstrap_ports=True),
    Engine("vllm", "vllm serve", _VLLM_KV),
    Engine("trt", "trtllm-serve"),
    Engine("dynamo-sglang", "dynamo.sglang", _SGLANG_KV, control_plane=True),
    Engine("dynamo-vllm", "dynamo.vllm", _VLLM_KV, control_plane=True),
    Engine("dynamo-trt", "dynamo.trtllm", control_plane=True),
    Engine("atom", "atom.entrypoints.openai_server", multinode=False),
    Engine("sim", "ixhpc.sim"),
)}


def engine(framework: str) -> Engine:
    family = FRAMEWORKS.get(framework)
    if family is None:
        raise ConfigError(f"unknown framework {framework!r} (known: {', '.join(sorted(FRAMEWORKS))})")
    return ENGINES[family]


_SETTING = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)\Z", re.S)


class LaunchSpec(BaseModel):
    """What a role needs to start, independent of the engine."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    framework: str
    role: Role
    model: str                                  # weights path or hub name
    served_model_name: str | None = None        # the name clients send (default: model)
    tp: int = Field(1, gt=0)
    ep: int = Field(1, gt=0)
    dp_attn: bool = False
    pp: int = Field(1, gt=0)
    dcp_size: int = Field(1, gt=0)              # decode context parallel (splits tp's GPUs)
    pcp_size: int = Field(1, gt=0)              # prefill context parallel (adds GPUs)
    gpu_rule: Literal["march", "current"] = "march"  # the recipe format's GPU count (world)
    max_model_len: int | None = Field(None, gt=0)
    host: str = "0.0.0.0"
    port: Port = 8000
    precision: str | None = None
    spec_decoding: str = "none"                 # none | mtp | draft_model
    extra_args: list[str] = []                  # recipe's engine args, appended last (they win)
    additional_settings: list[str] = []         # KEY=VALUE
    # multi-node workers: one srun task per node; the rank comes from SLURM_NODEID unless set
    nnodes: int = Field(1, gt=0)
    node_rank: int | str | None = None
    head_host: str | None = None
    dist_port: Port = 29500                     # rendezvous port on the head node
    bootstrap_port: Port | None = None          # sglang disaggregation bootstrap (prefill)
    nixl_port: Port | None = None               # vLLM NIXL side channel (prefill and decode)
    # routers / frontends
    prefill_urls: list[str] = []
    decode_urls: list[str] = []
    prefill_bootstrap_ports: list[Port] = []    # sglang router: one per prefill URL
    control_host: str | None = None             # dynamo: where etcd and NATS run
    etcd_port: Port = 2379                      # dynamo: their client ports (a job gives them
    nats_port: Port = 4222                      # ports of its own block: jobs share nodes)
    config_dir: str = "/tmp"                    # where generated engine config files go
    # engine configuration as data (ixhpc.engine_config, resolved for this role and point):
    # TensorRT-LLM's is merged into its option file, the others' come as flags in extra_args
    engine_config: dict[str, Any] = {}
    engine_env: dict[str, str] = {}             # the role's environment from the recipe
    transfer_backend: str | None = None         # KV transfer between prefill and decode
    # agentic points (agentx SPEC §4): the KV-offload tier, its backend and the DRAM budget in
    # decimal GB of one replica; None: not an agentic point (no KV_OFFLOADING environment)
    kv_offloading: Literal["none", "dram"] | None = None
    kv_offload_backend: str | None = None
    kv_offload_version: str | None = None
    total_cpu_dram_gb: int = Field(0, ge=0)
    # sim only
    sim_gpu: str | None = None
    sim_model_params_b: float | None = None
    sim_active_params_b: float | None = None
    sim_max_batch: int | None = None

    @field_validator("framework")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in FRAMEWORKS:
            raise ValueError(f"unknown framework {v!r} (known: {', '.join(sorted(FRAMEWORKS))})")
        return v

    @field_validator("additional_settings")
    @classmethod
    def _settings(cls, v: list[str]) -> list[str]:
        for s in v:
            if not _SETTING.match(s):
                raise ValueError(f"expected additional-settings entries KEY=VALUE, found {s!r}")
        return v

    @model_validator(mode="after")
    def _topology(self) -> "LaunchSpec":
        if self.nnodes > 1 and self.head_host is None:
            raise ValueError(f"a worker on {self.nnodes} nodes needs head_host (its rank-0 node)")
        return self

    @property
    def family(self) -> str:
        return FRAMEWORKS[self.framework]

    @property
    def name(self) -> str:
        return self.served_model_name or self.model

    @property
    def settings(self) -> dict[str, str]:
        # Each one matched _SETTING when validated: the key is everything before the first '='.
        return {key: value for key, _, value in (s.partition("=") for s in self.additional_settings)}

    @property
    def world(self) -> int:
        """GPUs of one engine per pipeline stage, as topology counts them. March format:
        max(tp, ep) (an InferenceX `tp: 1, ep: 16, dp-attn` item is a 16-GPU engine, which
        engines spell as tensor-parallel size 16, not 1); current format: tp x pcp-size."""
        if self.gpu_rule == "current":
            return self.tp * self.pcp_size
        return max(self.tp, self.ep)

    def expressible(self, pp: bool = False, dcp: bool = False, pcp: bool = False) -> None:
        """Refuse the parallelism settings (other than 1) this engine has no setting for."""
        for ok, name, value in ((pp, "pp", self.pp), (dcp, "dcp-size", self.dcp_size),
                                (pcp, "pcp-size", self.pcp_size)):
            if value != 1 and not ok:
                raise ConfigError(f"framework {self.framework}, role {self.role}: {name} {value} "
                                  f"cannot be expressed: {FAMILY_NAMES[self.family]} has no "
                                  f"{_PARALLEL_WHAT[name]} setting ixhpc can pass; expected {name}: 1")

    @property
    def uses_mtp(self) -> bool:
        """Speculative decoding runs where tokens are decoded: a server or a decode worker,
        never a prefill worker (as srt-slurm's disaggregated recipes launch them)."""
        return self.spec_decoding == "mtp" and self.role != "prefill"

    def setting(self, key: str) -> str | None:
        """``PREFILL_KEY`` / ``DECODE_KEY`` for that role, else plain ``KEY``."""
        s = self.settings
        return s.get(f"{self.role.upper()}_{key}", s.get(key))


class Launch(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    argv: list[str]
    env: dict[str, str] = {}
    files: dict[str, str] = {}    # path -> content, written before argv runs
    tasks_per_node: int = 1       # MPI ranks per node (multi-node TensorRT-LLM: one per GPU)


# ---------------------------------------------------------------------------- public API


def launch(spec: LaunchSpec) -> Launch:
    role = "frontend" if spec.role == "router" and spec.family.startswith("dynamo") else spec.role
    builder = _BUILDERS[spec.family]
    out = builder(spec, role)
    if spec.family != "sim":  # InferenceX's launch scripts read additional-settings as env
        out.env = {**spec.settings, **_kv_offload_env(spec), **spec.engine_env, **out.env}
    return out


def _kv_offload_env(spec: LaunchSpec) -> dict[str, str]:
    """What InferenceX hands every agentic launcher (agentx SPEC §4.2)."""
    if spec.kv_offloading is None or spec.role in ("router", "frontend"):
        return {}
    meta = {"name": spec.kv_offload_backend, **({"version": spec.kv_offload_version}
                                                 if spec.kv_offload_version else {})}
    return {"KV_OFFLOADING": spec.kv_offloading, "KV_OFFLOAD_BACKEND": spec.kv_offload_backend or "",
            "KV_OFFLOAD_BACKEND_METADATA": json.dumps(meta) if spec.kv_offload_backend else "",
            "TOTAL_CPU_DRAM_GB": str(spec.total_cpu_dram_gb)}


def _ranks(spec: LaunchSpec) -> int:
    """Ranks of one replica: what a per-rank DRAM budget divides by."""
    return max(1, spec.world * spec.pp)


def _kv_offload_args(spec: LaunchSpec) -> list[str]:
    """The engine flags of a DRAM KV tier (agentx SPEC §4.3), sized from the replica's budget
    per rank where the engine's knob is per rank; decode workers do not offload (§4.2).
    TensorRT-LLM's ``native`` tier is its option file's ``kv_cache_config`` (``_trt_llm_api``),
    ATOM's ``lmcache`` its LMCACHE_* environment (``_atom``); Mooncake and LMCache servers for
    vLLM get the environment of ``_kv_offload_env`` only."""
    if spec.kv_offloading != "dram" or spec.role in ("decode", "router", "frontend"):
        return []
    backend, ranks = spec.kv_offload_backend, _ranks(spec)
    if spec.framework.endswith("sglang") and backend == "hicache":
        return ["--enable-hierarchical-cache", "--hicache-size", str(max(1, spec.total_cpu_dram_gb // ranks)),
                "--hicache-write-policy", "write_through"]
    if spec.framework.endswith("vllm") and spec.role == "server" and backend == "vllm-simple":
        extra = {"cpu_bytes_to_use": spec.total_cpu_dram_gb * 10**9 // ranks, "lazy_offload": not spec.dp_attn}
        return ["--kv-transfer-config", json.dumps({"kv_connector": "SimpleCPUOffloadConnector",
                                                    "kv_role": "kv_both", "kv_connector_extra_config": extra})]
    if spec.framework.endswith("vllm") and backend == "native":
        return ["--kv-offloading-backend", "native", "--kv-offloading-size", str(spec.total_cpu_dram_gb)]
    if spec.family == "sim":  # its DRAM tier, whatever backend the point names (docs/agentic.md)
        return ["--kv-offloading", "dram", "--total-cpu-dram-gb", str(spec.total_cpu_dram_gb)]
    return []


# Writes one config file, then runs the rest: ``sh -c SCRIPT NAME CONTENT PATH ARGV...``.
_WRITER = ["sh", "-c", 'printf "%s\\n" "$1" > "$2" && shift 2 && exec "$@"', "ixhpc-write-config"]


def build(spec: LaunchSpec) -> list[str]:
    """One self-contained argv: ``env K=V ...``, then a writer per config file, then argv."""
    return self_contained(launch(spec))


def self_contained(out: Launch) -> list[str]:
    """A launch as one argv: ``env K=V ...``, then a writer per config file, then its argv."""
    argv = list(out.argv)
    for path, content in reversed(out.files.items()):
        argv = [*_WRITER, content, path, *argv]
    if out.env:
        argv = ["env", *(f"{k}={v}" for k, v in out.env.items()), *argv]
    return argv


def nginx(upstreams: Sequence[str], listen: Port, conf_path: str, *, keepalive_timeout: str = "600s",
          affinity_header: str | None = None, raise_ulimit: bool = False) -> Launch:
    """nginx as the public endpoint in front of several frontends (srt-slurm SPEC 11.3: round robin,
    or a consistent hash on a session header falling back to the request id; upstream keepalive
    512, 24 h timeouts, no buffering), started in the foreground from ``conf_path``."""
    affinity: list[str] = []
    header_map: list[str] = []
    if affinity_header:
        header = "$http_" + affinity_header.lower().replace("-", "_")
        header_map = [f"  map {header} $ixhpc_affinity {{", '    "" $request_id;', f"    default {header};", "  }"]
        affinity = ["    hash $ixhpc_affinity consistent;"]
    conf = "\n".join([
        "worker_processes auto;",
        *(["worker_rlimit_nofile 1048576;"] if raise_ulimit else []),
        "events {", "  worker_connections 65535;", "  multi_accept on;", "  use epoll;", "}",
        "http {", "  client_max_body_size 45m;", "  access_log off;",
        f"  keepalive_timeout {keepalive_timeout};",
        *header_map,
        "  upstream frontends {", *affinity, *(f"    server {u};" for u in upstreams), "    keepalive 512;", "  }",
        "  server {", f"    listen {listen};", "    location / {",
        "      proxy_pass http://frontends;", "      proxy_http_version 1.1;",
        "      proxy_set_header Connection \"\";", "      proxy_buffering off;",
        "      proxy_read_timeout 24h;", "      proxy_send_timeout 24h;", "    }", "  }", "}"])
    command = f"nginx -c {conf_path} -g 'daemon off;'"
    if raise_ulimit:
        command = "ulimit -n 1048576 && " + command
    return Launch(argv=["bash", "-c", command], files={conf_path: conf})


@dataclass(frozen=True)
class Built:
    """A ``build`` argv taken apart again (for the plan as data)."""

    env: tuple[tuple[str, str], ...]
    files: tuple[tuple[str, str], ...]      # (path, content), in writing order
    program: tuple[str, ...]


def unbuild(argv: Sequence[str]) -> Built:
    """The inverse of ``build``, also with the ``env`` prefix placement merges into it."""
    rest = list(argv)
    env: list[tuple[str, str]] = []
    if rest[:1] == ["env"]:
        rest = rest[1:]
        while rest and "=" in rest[0] and not rest[0].startswith("-"):
            name, _, value = rest.pop(0).partition("=")
            env.append((name, value))
    files: list[tuple[str, str]] = []
    while rest[:len(_WRITER)] == _WRITER and len(rest) >= len(_WRITER) + 2:
        content, path = rest[len(_WRITER)], rest[len(_WRITER) + 1]
        files.append((path, content))
        rest = rest[len(_WRITER) + 2:]
    return Built(tuple(env), tuple(files), tuple(rest))


def config_in_file(framework: str, role: str) -> bool:
    """Whether a role's engine config (``LaunchSpec.engine_config``) goes into the option file
    it is started with (TensorRT-LLM's engines and disaggregated orchestrator) rather than on
    its command line as flags (``ixhpc.engine_config.config_flags``)."""
    family = engine(framework).family
    return family == "trt" or (family == "dynamo-trt" and role != "router")


def health_path(framework: str, role: str = "server") -> str | None:
    """The HTTP path that answers 200 once a role is ready (Dynamo workers: their system
    status server, see ``_dynamo_env``); None: the role has none."""
    return engine(framework).health_path(role)


def dynamo_services(host: str, etcd_port: str = "2379", nats_port: str = "4222",
                    data_dir: str = "/tmp/ixhpc-etcd") -> list[Launch]:
    """etcd and NATS (JetStream), which a Dynamo frontend and its workers meet through."""
    return [
        Launch(argv=["etcd", "--listen-client-urls", f"http://0.0.0.0:{etcd_port}",
                     "--advertise-client-urls", f"http://{host}:{etcd_port}",
                     "--data-dir", f"{data_dir}-{etcd_port}"]),
        Launch(argv=["nats-server", "-js", "-p", nats_port]),
    ]


# ---------------------------------------------------------------------------- helpers


def _need(spec: LaunchSpec, ok: bool, what: str) -> None:
    if not ok:
        raise ConfigError(f"framework {spec.framework}, role {spec.role}: {what}")


def _tuning(spec: LaunchSpec, family: str) -> list[str]:
    args: list[str] = []
    for key, flag in TUNING[family].items():
        value = spec.setting(key)
        if value is not None:
            args += [flag, value]
    return args


def _number(spec: LaunchSpec, key: str, kind: type[int] | type[float]) -> int | float:
    value = spec.setting(key)
    try:
        return kind(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"additional setting {key}: expected {'an integer' if kind is int else 'a number'}, "
                        f"found {value!r}") from None


def _mtp_steps(spec: LaunchSpec) -> int | None:
    """The recipe's MTP depth (``MTP_SIZE``); None: the engine's own default, never a guess."""
    return int(_number(spec, "MTP_SIZE", int)) if spec.setting("MTP_SIZE") is not None else None


def _spec_decoding(spec: LaunchSpec, supported: tuple[str, ...] = ("none", "mtp")) -> None:
    _need(spec, spec.spec_decoding in supported,
          f"spec-decoding {spec.spec_decoding!r} is not supported (supported: {', '.join(supported)})")


def _ranked(spec: LaunchSpec, argv: list[str], rank_flag: str | None = "--node-rank",
            not_head: str = "") -> list[str]:
    """A multi-node worker runs one srun task per node with the same argv; each learns its
    rank from Slurm on its node (SLURM_NODEID counts from 0 within the step). ``not_head``
    is a fixed shell fragment (never a recipe value) adding flags on ranks > 0."""
    if spec.nnodes == 1:
        return argv
    script = 'r="${SLURM_NODEID:?not in a Slurm step}"; '
    if not_head:
        script += f'[ "$r" = 0 ] || set -- "$@" {not_head}; '
    script += f'exec "$@" {rank_flag} "$r"' if rank_flag else 'exec "$@"'
    return ["bash", "-c", script, "ixhpc-node-rank", *argv]


def _yaml(data: dict[str, Any]) -> str:
    # Script-variable placeholders (NUL-delimited, see ixhpc.shell) must survive the dump;
    # YAML would escape NUL, so carry them as a private-use character through it.
    def swap(v: object) -> object:
        if isinstance(v, str):
            return v.replace("\x00", "\ue000")
        if isinstance(v, dict):
            return {k: swap(x) for k, x in v.items()}
        if isinstance(v, list):
            return [swap(x) for x in v]
        return v
    text = yaml.safe_dump(swap(data), sort_keys=False, allow_unicode=True, width=1000)
    return text.rstrip("\n").replace("\ue000", "\x00")


def _config_path(spec: LaunchSpec, what: str) -> str:
    return f"{spec.config_dir}/ixhpc-{spec.framework}-{spec.role}-{spec.port}-{what}.yaml"


def _hostport(url: str) -> str:
    return re.sub(r"^https?://", "", url).rstrip("/")


# ---------------------------------------------------------------------------- SGLang


def _sglang_engine_args(spec: LaunchSpec, role: str) -> list[str]:
    """Engine flags shared by ``sglang.launch_server`` and ``dynamo.sglang``."""
    _spec_decoding(spec)
    spec.expressible(pp=True, dcp=True, pcp=True)
    args = ["--model-path", spec.model, "--served-model-name", spec.name,
            "--tp-size", str(spec.world), "--trust-remote-code"]
    if spec.ep > 1:
        args += ["--ep-size", str(spec.ep)]
    if spec.dp_attn:
        args += ["--enable-dp-attention", "--dp-size", str(spec.world)]
    if spec.pp > 1:
        args += ["--pp-size", str(spec.pp)]
    if spec.dcp_size > 1:
        args += ["--dcp-size", str(spec.dcp_size)]
    if spec.pcp_size > 1:
        args += ["--enable-prefill-context-parallel", "--attn-cp-size", str(spec.pcp_size)]
    if spec.max_model_len:
        args += ["--context-length", str(spec.max_model_len)]
    if role in ("prefill", "decode"):
        args += ["--disaggregation-mode", role]
        if spec.bootstrap_port is not None:
            args += ["--disaggregation-bootstrap-port", str(spec.bootstrap_port)]
        if spec.transfer_backend is not None:
            _need(spec, spec.transfer_backend in ("mooncake", "nixl"),
                  f"transfer-backend {spec.transfer_backend}: SGLang's are mooncake and nixl")
            args += ["--disaggregation-transfer-backend", spec.transfer_backend]
    if spec.uses_mtp:
        args += ["--speculative-algorithm", "EAGLE"]
        steps = _mtp_steps(spec)
        if steps is not None:
            args += ["--speculative-num-steps", str(steps), "--speculative-eagle-topk", "1",
                     "--speculative-num-draft-tokens", str(steps + 1)]
    if spec.nnodes > 1:
        args += ["--dist-init-addr", f"{spec.head_host}:{spec.dist_port}", "--nnodes", str(spec.nnodes)]
    return [*args, *_kv_offload_args(spec), *_tuning(spec, "sglang")]


def _sglang(spec: LaunchSpec, role: str) -> Launch:
    if role == "router":
        _need(spec, bool(spec.prefill_urls and spec.decode_urls), "needs prefill and decode URLs")
        _need(spec, len(spec.prefill_bootstrap_ports) in (0, len(spec.prefill_urls)),
              "needs one bootstrap port per prefill URL, or none")
        argv = ["python3", "-m", "sglang_router.launch_router", "--pd-disaggregation",
                "--host", spec.host, "--port", str(spec.port)]
        for i, url in enumerate(spec.prefill_urls):
            argv += ["--prefill", url, *([str(spec.prefill_bootstrap_ports[i])]
                                         if spec.prefill_bootstrap_ports else [])]
        for url in spec.decode_urls:
            argv += ["--decode", url]
        return Launch(argv=[*argv, *spec.extra_args])
    _need(spec, role != "frontend", "SGLang has no frontend role (use router)")
    argv = ["python3", "-m", "sglang.launch_server", *_sglang_engine_args(spec, role),
            "--host", spec.host, "--port", str(spec.port), *spec.extra_args]
    return Launch(argv=_ranked(spec, argv))


# ---------------------------------------------------------------------------- vLLM


def _vllm_engine_args(spec: LaunchSpec, role: str) -> list[str]:
    _spec_decoding(spec)
    spec.expressible(pp=True, dcp=True, pcp=True)
    # vLLM's data-parallel attention: each DP rank holds whole attention heads (TP 1) and the
    # MoE layers spread over all ranks with expert parallelism. Its prefill context parallel
    # ranks multiply the world like pp (not part of --tensor-parallel-size).
    base = spec.world // spec.pcp_size
    tp, dp = (1, base) if spec.dp_attn else (base, 1)
    args = ["--served-model-name", spec.name, "--tensor-parallel-size", str(tp), "--trust-remote-code"]
    if dp > 1:
        args += ["--data-parallel-size", str(dp)]
    if spec.ep > 1 or spec.dp_attn:
        args.append("--enable-expert-parallel")
    if spec.pp > 1:
        args += ["--pipeline-parallel-size", str(spec.pp)]
    if spec.dcp_size > 1:
        args += ["--decode-context-parallel-size", str(spec.dcp_size)]
    if spec.pcp_size > 1:
        args += ["--prefill-context-parallel-size", str(spec.pcp_size)]
    if spec.max_model_len:
        args += ["--max-model-len", str(spec.max_model_len)]
    if spec.uses_mtp:
        steps = _mtp_steps(spec)
        tokens = "" if steps is None else f', "num_speculative_tokens": {steps}'
        args += ["--speculative-config", f'{{"method": "mtp"{tokens}}}']
    if role in ("prefill", "decode") and (spec.family == "vllm" or spec.transfer_backend is not None):
        args += ["--kv-transfer-config", _vllm_connector(spec)]
    if spec.nnodes > 1 and dp > 1:
        _need(spec, dp % spec.nnodes == 0, f"{dp} data-parallel ranks do not split over {spec.nnodes} nodes")
        args += ["--data-parallel-size-local", str(dp // spec.nnodes),
                 "--data-parallel-address", str(spec.head_host),
                 "--data-parallel-rpc-port", str(spec.dist_port)]
    elif spec.nnodes > 1:
        args += ["--distributed-executor-backend", "mp", "--nnodes", str(spec.nnodes),
                 "--master-addr", str(spec.head_host), "--master-port", str(spec.dist_port)]
    return [*args, *_kv_offload_args(spec), *_tuning(spec, "vllm")]


_VLLM_CONNECTORS = {"nixl": "NixlConnector", "mooncake": "MooncakeConnector", "lmcache": "LMCacheConnectorV1"}


def _vllm_connector(spec: LaunchSpec) -> str:
    backend = spec.transfer_backend or "nixl"
    _need(spec, backend in _VLLM_CONNECTORS,
          f"transfer-backend {backend}: vLLM's are {', '.join(_VLLM_CONNECTORS)}")
    return json.dumps({"kv_connector": _VLLM_CONNECTORS[backend], "kv_role": "kv_both"})


def _vllm_ranked(spec: LaunchSpec, argv: list[str]) -> list[str]:
    """Multi-node vLLM: rank 0 serves the API, the other nodes run --headless. With data
    parallelism each node starts at its first DP rank; otherwise it gets --node-rank."""
    if spec.dp_attn and spec.world > 1:
        local = spec.world // spec.nnodes
        return _ranked(spec, argv, None, f'--headless --data-parallel-start-rank "$((r * {local}))"')
    return _ranked(spec, argv, not_head="--headless")


def _vllm(spec: LaunchSpec, role: str) -> Launch:
    _need(spec, role not in ("router", "frontend"),
          "vLLM has no disaggregated router here; use framework dynamo-vllm for prefill/decode")
    argv = ["vllm", "serve", spec.model, *_vllm_engine_args(spec, role),
            "--host", spec.host, "--port", str(spec.port), *spec.extra_args]
    return Launch(argv=_vllm_ranked(spec, argv), env=_nixl_env(spec, role))


def _nixl_env(spec: LaunchSpec, role: str) -> dict[str, str]:
    # Workers sharing a node must not share NIXL's side-channel port (default 5600).
    if role in ("prefill", "decode") and spec.nixl_port is not None:
        return {"VLLM_NIXL_SIDE_CHANNEL_PORT": str(spec.nixl_port)}
    return {}


# ---------------------------------------------------------------------------- TensorRT-LLM


def _trt_llm_api(spec: LaunchSpec, role: str) -> dict[str, Any]:
    """LLM-API options with no trtllm-serve flag (passed as --extra_llm_api_options YAML)."""
    _spec_decoding(spec)
    spec.expressible(pp=True)
    opts: dict[str, Any] = {"enable_attention_dp": spec.dp_attn}
    if role in ("prefill", "decode"):
        backend = (spec.transfer_backend or "default").upper()
        _need(spec, backend in ("DEFAULT", "UCX", "NIXL", "MPI"),
              f"transfer-backend {spec.transfer_backend}: TensorRT-LLM's are default, ucx, nixl and mpi")
        opts["cache_transceiver_config"] = {"backend": backend}
    if spec.uses_mtp:
        steps = _mtp_steps(spec)
        opts["speculative_config"] = {"decoding_type": "MTP",
                                      **({} if steps is None else {"num_nextn_predict_layers": steps})}
    if spec.kv_offloading == "dram" and spec.kv_offload_backend == "native" and role != "decode":
        # agentx SPEC §4.3: block reuse on and a host cache of the replica's budget per rank
        opts["kv_cache_config"] = {"enable_block_reuse": True,
                                   "host_cache_size": spec.total_cpu_dram_gb * 10**9 // _ranks(spec)}
    return opts


def _trt_mpi(spec: LaunchSpec, argv: list[str]) -> tuple[list[str], int]:
    """Across nodes TensorRT-LLM runs one MPI rank per GPU under srun; trtllm-llmapi-launch
    makes rank 0 the server and the other ranks its workers."""
    if spec.nnodes == 1:
        return argv, 1
    gpus = spec.world * spec.pp
    _need(spec, gpus % spec.nnodes == 0, f"tp x pp = {gpus} GPUs do not split over {spec.nnodes} nodes")
    return ["trtllm-llmapi-launch", *argv], gpus // spec.nnodes


def _trt(spec: LaunchSpec, role: str) -> Launch:
    if role == "router":
        _need(spec, bool(spec.prefill_urls and spec.decode_urls), "needs prefill and decode URLs")
        path = _config_path(spec, "disagg")
        config = {"hostname": spec.host, "port": spec.port, "backend": "pytorch",
                  "context_servers": {"num_instances": len(spec.prefill_urls),
                                      "urls": [_hostport(u) for u in spec.prefill_urls]},
                  "generation_servers": {"num_instances": len(spec.decode_urls),
                                         "urls": [_hostport(u) for u in spec.decode_urls]}}
        return Launch(argv=["trtllm-serve", "disaggregated", "-c", path, *spec.extra_args],
                      files={path: _yaml(_with_config(spec, config))})
    _need(spec, role != "frontend", "TensorRT-LLM has no frontend role (use router)")
    path = _config_path(spec, "llm-api")
    argv = ["trtllm-serve", "serve", spec.model, "--host", spec.host, "--port", str(spec.port),
            "--backend", "pytorch", "--tp_size", str(spec.world), "--ep_size", str(spec.ep),
            "--pp_size", str(spec.pp), "--trust_remote_code"]
    if spec.max_model_len:
        argv += ["--max_seq_len", str(spec.max_model_len)]
    argv += [*_tuning(spec, "trt"), "--extra_llm_api_options", path, *spec.extra_args]
    argv, tasks = _trt_mpi(spec, argv)
    return Launch(argv=argv, files={path: _yaml(_with_config(spec, _trt_llm_api(spec, role)))},
                  tasks_per_node=tasks)


def _with_config(spec: LaunchSpec, generated: dict[str, Any]) -> dict[str, Any]:
    """A generated option file with the recipe's engine config merged over it (maps
    recursively, ``null`` deletes: srt-slurm's override rule)."""
    if not spec.engine_config:
        return generated
    from ixhpc.srtslurm.load import merge

    merged: dict[str, Any] = merge(generated, spec.engine_config)
    return merged


# ---------------------------------------------------------------------------- Dynamo


def _dynamo_env(spec: LaunchSpec, role: str) -> dict[str, str]:
    env: dict[str, str] = {}
    if role in ("prefill", "decode"):
        # A worker serves no HTTP itself: its system status server, on the worker's port,
        # answers /health with 200 only once its generate endpoint serves.
        env = {"DYN_SYSTEM_PORT": str(spec.port), "DYN_SYSTEM_USE_ENDPOINT_HEALTH_STATUS": '["generate"]'}
    control = spec.control_host or (spec.host if role == "frontend" else None)
    if control is None:
        return env  # then ETCD_ENDPOINTS / NATS_SERVER must come from the job environment
    return {**env, "ETCD_ENDPOINTS": f"http://{control}:{spec.etcd_port}",
            "NATS_SERVER": f"nats://{control}:{spec.nats_port}"}


def _dynamo(spec: LaunchSpec, role: str) -> Launch:
    env = _dynamo_env(spec, role)
    if role == "frontend":
        argv = ["python3", "-m", "dynamo.frontend", "--http-host", spec.host,
                "--http-port", str(spec.port), *spec.extra_args]
        return Launch(argv=argv, env=env)
    backend = spec.family.removeprefix("dynamo-")
    if backend == "sglang":
        argv = ["python3", "-m", "dynamo.sglang", *_sglang_engine_args(spec, role), *spec.extra_args]
        return Launch(argv=_ranked(spec, argv), env=env)
    if backend == "vllm":
        argv = ["python3", "-m", "dynamo.vllm", "--model", spec.model, *_vllm_engine_args(spec, role),
                *(["--is-prefill-worker"] if role == "prefill" else []), *spec.extra_args]
        return Launch(argv=_vllm_ranked(spec, argv), env={**env, **_nixl_env(spec, role)})
    # dynamo-trt: the engine options live in the --extra-engine-args YAML
    path = _config_path(spec, "engine")
    engine = {"backend": "pytorch", "tensor_parallel_size": spec.world, "moe_expert_parallel_size": spec.ep,
              "pipeline_parallel_size": spec.pp, "trust_remote_code": True,
              **({"max_seq_len": spec.max_model_len} if spec.max_model_len else {}),
              **_trt_llm_api(spec, role)}
    for key, field in (("MAX_BATCH_SIZE", "max_batch_size"), ("MAX_NUM_TOKENS", "max_num_tokens")):
        if spec.setting(key) is not None:
            engine[field] = _number(spec, key, int)
    if spec.setting("GPU_MEM_FRACTION") is not None:
        engine["kv_cache_config"] = {"free_gpu_memory_fraction": _number(spec, "GPU_MEM_FRACTION", float)}
    argv = ["python3", "-m", "dynamo.trtllm", "--model-path", spec.model,
            "--served-model-name", spec.name, "--extra-engine-args", path]
    if role in ("prefill", "decode"):
        argv += ["--disaggregation-mode", role]
    argv, tasks = _trt_mpi(spec, [*argv, *spec.extra_args])
    return Launch(argv=argv, env=env, files={path: _yaml(_with_config(spec, engine))}, tasks_per_node=tasks)


# ---------------------------------------------------------------------------- ATOM


def _atom(spec: LaunchSpec, role: str) -> Launch:
    _need(spec, role == "server", "ATOM serves single-node aggregated points only")
    _need(spec, spec.nnodes == 1, "ATOM runs on one node")
    _spec_decoding(spec)
    spec.expressible()
    # ATOM's HTTP port is --server-port (its --port is an internal engine port) and it serves
    # the model under its path, so clients must send `model` = the path.
    argv = ["python3", "-m", "atom.entrypoints.openai_server", "--model", spec.model,
            "--host", spec.host, "--server-port", str(spec.port),
            "--tensor-parallel-size", str(spec.world)]
    if spec.ep > 1:
        argv.append("--enable-expert-parallel")
    if spec.dp_attn:
        argv.append("--enable-dp-attention")
    if spec.max_model_len:
        argv += ["--max-model-len", str(spec.max_model_len)]
    if spec.precision in ("fp8", "fp4"):
        argv += ["--kv_cache_dtype", "fp8"]
    if spec.uses_mtp:
        steps = _mtp_steps(spec)
        argv += ["--method", "mtp", *([] if steps is None else ["--num-speculative-tokens", str(steps)])]
    lmcache = ({"LMCACHE_LOCAL_CPU": "True", "LMCACHE_MAX_LOCAL_CPU_SIZE": str(spec.total_cpu_dram_gb),
                "LMCACHE_CHUNK_SIZE": "256", "OFFLOAD_MIN_LOAD_TOKENS": "8192"}  # agentx SPEC §4.3
               if spec.kv_offloading == "dram" and spec.kv_offload_backend == "lmcache" else {})
    return Launch(argv=[*argv, *_tuning(spec, "atom"), *spec.extra_args], env=lmcache)


# ---------------------------------------------------------------------------- sim


def _sim(spec: LaunchSpec, role: str) -> Launch:
    if role == "router":
        _need(spec, bool(spec.prefill_urls and spec.decode_urls), "needs prefill and decode URLs")
        return Launch(argv=["python", "-m", "ixhpc.sim", "router", "--host", spec.host,
                            "--port", str(spec.port), "--prefill", *spec.prefill_urls,
                            "--decode", *spec.decode_urls, *spec.extra_args])
    _need(spec, role != "frontend", "the simulated engine has no frontend role (use router)")
    spec.expressible()   # it models tp and ep only
    from ixhpc.sim.model import BYTES_PER_PARAM

    _need(spec, spec.precision in (None, *BYTES_PER_PARAM),
          f"the simulated engine models precision {', '.join(BYTES_PER_PARAM)}, not {spec.precision!r}")
    argv = ["python", "-m", "ixhpc.sim", "serve", "--role", "both" if role == "server" else role,
            "--host", spec.host, "--port", str(spec.port), "--model", spec.name,
            "--tp", str(spec.tp), "--ep", str(spec.ep)]
    if spec.precision:
        argv += ["--precision", spec.precision]
    for flag, value in (("--gpu", spec.sim_gpu), ("--model-params-b", spec.sim_model_params_b),
                        ("--active-params-b", spec.sim_active_params_b),
                        ("--max-batch", spec.sim_max_batch)):
        if value is not None:
            argv += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    argv += [*_kv_offload_args(spec), *spec.extra_args]
    if spec.nnodes > 1:
        # One simulated server stands for the whole multi-node worker: rank 0 serves, the
        # other ranks idle like a real engine's worker ranks (and die with the step). Still
        # `python ...` first, so the job can substitute its own interpreter.
        argv = ["python", "-c", _SIM_RANK_0_ONLY, *argv[3:]]
    return Launch(argv=argv)


_SIM_RANK_0_ONLY = ("import os, runpy; os.environ.get('SLURM_NODEID', '0') == '0' or "
                    "os.execvp('sleep', ['sleep', 'infinity']); "
                    "runpy.run_module('ixhpc.sim', run_name='__main__', alter_sys=True)")


_BUILDERS = {
    "sglang": _sglang, "vllm": _vllm, "trt": _trt, "atom": _atom, "sim": _sim,
    "dynamo-sglang": _dynamo, "dynamo-trt": _dynamo, "dynamo-vllm": _dynamo,
}
