"""The flag tables the stand-ins parse with: ``ixhpc.engine_flags``'s lists, as plain JSON.

At render time (``ixhpc.standins.files``) each job's families are resolved to one release
(the version the image tag implies, else the nearest known one) and their commands' tables are
written into the job's stand-in config; in the job, a stand-in reads only that file (the bundle
carries no data files). Where ``ixhpc.engine_flags`` is not installed, ``FALLBACK`` stands in:
the flags ixhpc's own builders emit plus the few the stand-ins map, marked as such.

A table maps every spelling to one ``Flag`` (the contract of ``ixhpc.engine_flags``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

TYPES = ("str", "int", "float", "bool", "json", "path", "list", "unknown")


@dataclasses.dataclass(frozen=True)
class Flag:
    name: str
    aliases: tuple[str, ...] = ()
    type: str = "str"
    choices: tuple[str, ...] | None = None
    takes_value: bool = True
    optional_value: bool = False   # argparse nargs="?": a value may follow, or not

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "aliases": list(self.aliases), "type": self.type,
                "choices": None if self.choices is None else list(self.choices),
                "takes_value": self.takes_value, "optional_value": self.optional_value}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Flag:
        choices = d.get("choices")
        return cls(name=str(d["name"]), aliases=tuple(d.get("aliases") or ()), type=str(d.get("type", "str")),
                   choices=None if choices is None else tuple(str(c) for c in choices),
                   takes_value=bool(d.get("takes_value", True)), optional_value=bool(d.get("optional_value", False)))


Table = dict[str, Flag]   # every spelling -> its flag


def load_engine_flags() -> Any:
    """``ixhpc.engine_flags``, or None where it is not installed (imported by name: the bundle
    carries no flag data, so it must not pull the module in)."""
    import importlib

    try:
        return importlib.import_module("ixhpc.engine_flags")
    except ImportError:
        return None


def from_engine_flags(flags: Mapping[str, Any]) -> Table:
    """A table from ``ixhpc.engine_flags.flags(...)``'s answer."""
    return {spelling: Flag(f.name, tuple(f.aliases), f.type, None if f.choices is None else tuple(f.choices),
                           bool(f.takes_value), bool(getattr(f, "optional_value", False)))
            for spelling, f in flags.items()}


def unique(table: Table) -> list[Flag]:
    """Each flag once, in table order."""
    seen: dict[str, Flag] = {}
    for flag in table.values():
        seen.setdefault(flag.name, flag)
    return list(seen.values())


def to_json(table: Table) -> list[dict[str, Any]]:
    return [f.to_json() for f in unique(table)]


def from_json(flags: list[dict[str, Any]]) -> Table:
    table: Table = {}
    for d in flags:
        flag = Flag.from_json(d)
        for spelling in (flag.name, *flag.aliases):
            table[spelling] = flag
    return table


def _spec(text: str) -> Flag:
    """``--name/--alias:type`` (``bool``: takes no value) or ``--name:choice|choice``."""
    names, _, kind = text.partition(":")
    name, *aliases = names.split("/")
    if "|" in kind:
        return Flag(name, tuple(aliases), "str", tuple(kind.split("|")))
    kind = kind or "str"
    return Flag(name, tuple(aliases), kind, None, kind != "bool")


def _table(*specs: str) -> Table:
    return from_json([_spec(s).to_json() for s in specs])


_SGLANG = (
    "--model-path/--model", "--served-model-name", "--tokenizer-path", "--tp-size/--tp:int",
    "--ep-size/--ep:int", "--dp-size/--dp:int", "--pp-size:int", "--trust-remote-code:bool",
    "--enable-dp-attention:bool", "--context-length:int", "--disaggregation-mode:null|prefill|decode",
    "--disaggregation-bootstrap-port:int", "--disaggregation-transfer-backend", "--disaggregation-ib-device",
    "--speculative-algorithm", "--speculative-num-steps:int", "--speculative-eagle-topk:int",
    "--speculative-num-draft-tokens:int", "--dist-init-addr", "--nnodes:int", "--node-rank:int",
    "--max-running-requests:int", "--max-prefill-tokens:int", "--chunked-prefill-size:int",
    "--mem-fraction-static:float", "--host", "--port:int", "--stream-interval:int", "--kv-cache-dtype",
    "--quantization", "--attention-backend", "--cuda-graph-max-bs:int", "--disable-radix-cache:bool",
    "--log-level", "--moe-a2a-backend", "--enable-metrics:bool",
)
_VLLM = (
    "--model", "--served-model-name:list", "--tensor-parallel-size/-tp:int", "--data-parallel-size/-dp:int",
    "--pipeline-parallel-size/-pp:int", "--enable-expert-parallel:bool", "--trust-remote-code:bool",
    "--max-model-len:int", "--speculative-config:json", "--kv-transfer-config:json",
    "--data-parallel-size-local:int", "--data-parallel-address", "--data-parallel-rpc-port:int",
    "--data-parallel-start-rank:int", "--data-parallel-rank/-dpr:int", "--headless:bool",
    "--distributed-executor-backend",
    "--nnodes:int", "--node-rank:int", "--master-addr", "--master-port:int", "--max-num-seqs:int",
    "--max-num-batched-tokens:int", "--gpu-memory-utilization:float", "--host", "--port:int",
    "--stream-interval:int", "--kv-cache-dtype", "--quantization", "--block-size:int",
    "--compilation-config:json", "--no-enable-prefix-caching:bool", "--enable-prefix-caching:bool",
)
_TRT_SERVE = (
    "--host", "--port:int", "--backend:pytorch|tensorrt|_autodeploy", "--tp_size:int", "--ep_size:int",
    "--pp_size:int", "--cluster_size:int", "--gpus_per_node:int", "--max_seq_len:int",
    "--max_batch_size:int", "--max_num_tokens:int", "--max_beam_width:int",
    "--kv_cache_free_gpu_memory_fraction:float", "--trust_remote_code:bool", "--extra_llm_api_options",
    "--tokenizer", "--log_level", "--num_postprocess_workers:int", "--reasoning_parser",
    "--server_role", "--metadata_server_config_file",
)
_TRT_LLM_API = (
    "enable_attention_dp", "cache_transceiver_config", "speculative_config", "stream_interval",
    "backend", "tensor_parallel_size", "moe_expert_parallel_size", "pipeline_parallel_size",
    "trust_remote_code", "max_seq_len", "max_batch_size", "max_num_tokens", "kv_cache_config",
    "cuda_graph_config", "moe_config", "print_iter_log", "disable_overlap_scheduler",
)
_DYNAMO = ("--endpoint", "--migration-limit:int", "--dyn-tool-call-parser", "--dyn-reasoning-parser")

FALLBACK_SOURCE = ("ixhpc.standins built-in table: the flags ixhpc's builders emit (ixhpc.engine_flags "
                   "is not installed); not a release's list")
FALLBACK: dict[str, dict[str, Table]] = {
    "sglang": {"sglang.launch_server": _table(*_SGLANG)},
    "sglang_router": {"sglang_router.launch_router": _table(
        "--pd-disaggregation:bool", "--host", "--port:int", "--prefill:list", "--decode:list",
        "--policy:random|round_robin|cache_aware|power_of_two", "--prefill-policy", "--decode-policy",
        "--worker-urls:list", "--log-level", "--prometheus-port:int", "--prometheus-host")},
    "vllm": {"vllm serve": _table(*_VLLM)},
    "trt": {"trtllm-serve serve": _table(*_TRT_SERVE),
            "trtllm-serve disaggregated": _table("--config_file/-c", "--metadata_server_config_file/-m",
                                                 "--server_start_timeout:int", "--request_timeout:int",
                                                 "--log_level"),
            "llm_api_options": _table(*(f"{k}:json" for k in _TRT_LLM_API))},
    "dynamo": {"dynamo.frontend": _table("--http-host", "--http-port:int", "--router-mode:round-robin|random|kv",
                                         "--kv-cache-block-size:int", "--namespace"),
               "dynamo.sglang": _table(*_SGLANG, *_DYNAMO),
               "dynamo.vllm": _table(*_VLLM, "--is-prefill-worker:bool", *_DYNAMO),
               "dynamo.trtllm": _table("--model-path", "--served-model-name", "--extra-engine-args",
                                       "--disaggregation-mode:prefill|decode|prefill_and_decode",
                                       "--disaggregation-strategy", "--publish-events-and-metrics:bool",
                                       *_DYNAMO)},
    "atom": {"atom.entrypoints.openai_server": _table(
        "--model", "--host", "--server-port:int", "--port:int", "--tensor-parallel-size/-tp:int",
        "--enable-expert-parallel:bool", "--enable-dp-attention:bool", "--max-model-len:int",
        "--kv_cache_dtype", "--method", "--num-speculative-tokens:int", "--max-num-seqs:int",
        "--max-num-batched-tokens:int", "--gpu-memory-utilization:float", "--trust-remote-code:bool")},
}
