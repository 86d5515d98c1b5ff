"""ixhpc.engine_flags: the committed flag data (no network) and the regeneration code on a
tiny synthetic release built here (never a download)."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from ixhpc import engine_flags as ef

KNOWN = {
    ("sglang", "sglang.launch_server"): ["--model-path", "--tp-size", "--dp-size", "--ep-size", "--enable-dp-attention",
                                         "--disaggregation-mode", "--disaggregation-bootstrap-port",
                                         "--mem-fraction-static", "--served-model-name", "--trust-remote-code"],
    ("vllm", "vllm serve"): ["--tensor-parallel-size", "--max-model-len", "--kv-transfer-config",
                             "--data-parallel-size",
                             "--enable-expert-parallel", "--served-model-name", "--trust-remote-code",
                             "--max-num-batched-tokens", "--max-num-seqs", "--gpu-memory-utilization",
                             "--no-enable-prefix-caching", "--host", "--port", "-tp"],
    ("sglang_router", "sglang_router.launch_router"): ["--pd-disaggregation", "--prefill", "--decode", "--host",
                                                       "--port", "--policy"],
    ("dynamo", "dynamo.frontend"): ["--http-host", "--http-port"],
    ("dynamo", "dynamo.sglang"): ["--model-path", "--tp-size", "--disaggregation-mode", "--migration-limit"],
    ("dynamo", "dynamo.vllm"): ["--model", "--tensor-parallel-size", "--is-prefill-worker"],
    ("dynamo", "dynamo.trtllm"): ["--model-path", "--extra-engine-args", "--disaggregation-mode"],
    ("trt", "trtllm-serve serve"): ["--tp_size", "--ep_size", "--backend", "--extra_llm_api_options"],
    ("trt", "trtllm-serve disaggregated"): ["-c"],
    ("atom", "atom.entrypoints.openai_server"): ["--model", "--server-port", "--kv_cache_dtype"],
}
# Flags a release dropped on purpose: dynamo 1.x moved request migration to the frontend.
GONE = {("dynamo", "1.1.0", "dynamo.sglang"): {"--migration-limit"}}
ABSENT = {"sglang": "--tp-sizee", "vllm": "--tensor-paralel-size", "sglang_router": "--pd-disagregation",
          "dynamo": "--http-prot", "trt": "--tp-size", "atom": "--sever-port"}


def test_families_and_versions_sorted() -> None:
    assert set(ef.families()) >= {"sglang", "vllm", "trt", "dynamo", "sglang_router", "atom"}
    for family in ef.families():
        vs = ef.versions(family)
        assert vs and vs == sorted(vs, key=ef.version_key)
    assert ef.version_key("1.2.0rc6") < ef.version_key("1.2.0rc6.post3") < ef.version_key("1.2.0")
    assert ef.version_key("0.5.9") < ef.version_key("0.5.10.post1") < ef.version_key("0.5.16")


@pytest.mark.parametrize(("family", "command"), sorted(KNOWN))
def test_known_flags_present_in_every_version(family: str, command: str) -> None:
    for version in ef.versions(family):
        table = ef.flags(family, version, command)
        missing = [f for f in KNOWN[family, command] if f not in table
                   and f not in GONE.get((family, version, command), set())]
        assert not missing, (family, version, command, missing)
        assert ef.source(family, version)


@pytest.mark.parametrize("family", sorted(ABSENT))
def test_absent_flag_reported_with_nearest(family: str) -> None:
    version = ef.versions(family)[-1]
    command = next(c for f, c in KNOWN if f == family)
    problems = ef.check(family, version, command, [ABSENT[family], "1"])
    assert len(problems) == 1 and problems[0].index == 0
    assert f"unknown flag '{ABSENT[family]}'" in problems[0].message and "did you mean" in problems[0].message


def test_check_choices_values_positionals() -> None:
    v = ef.versions("sglang")[0]
    args = ["--model-path", "m", "--disaggregation-mode", "prefil", "--tp-size=8", "--enable-dp-attention",
            "--port", "${PORT}", "--mem-fraction-static", "lots", "stray"]
    msgs = [(p.index, p.message) for p in ef.check("sglang", v, "sglang.launch_server", args)]
    assert msgs[0][0] == 3 and "expects one of decode, null, prefill; found 'prefil'" in msgs[0][1]
    assert msgs[1][0] == 9 and "expects a number" in msgs[1][1]
    assert msgs[2][0] == 10 and "unexpected argument 'stray'" in msgs[2][1]
    assert len(msgs) == 3
    # argparse accepts a unique prefix (sglang's --tp); a bool flag with a value is refused
    assert ef.check("sglang", v, "sglang.launch_server", ["--tp", "4"]) == []
    assert ef.check("sglang", v, "sglang.launch_server", ["--enable-dp-attention=1"])
    vv = ef.versions("vllm")[-1]
    ok = ["/models/x", "--max_model_len", "32k", "-O3", "--compilation-config.cudagraph_mode", "FULL",
          "--kv-transfer-config", '{"kv_connector": "NixlConnector"}', "--served-model-name", "a", "b",
          "--no-enable-prefix-caching"]
    assert ef.check("vllm", vv, "vllm serve", ok) == []
    assert ef.check("vllm", vv, "vllm serve", ["m", "n"])[0].index == 1
    router = ef.versions("sglang_router")[-1]
    assert ef.check("sglang_router", router, "sglang_router.launch_router",
                    ["--pd-disaggregation", "--prefill", "http://a:1", "9000", "--decode", "http://b:2"]) == []


def test_check_options() -> None:
    v = ef.versions("trt")[-1]
    problems = ef.check_options("trt", v, ["enable_attention_dp", "cache_transceiver_config", "speculative_confg"])
    assert [p.index for p in problems] == [2] and "did you mean 'speculative_config'" in problems[0].message


def test_dynamo_wraps_its_pinned_engine() -> None:
    v = ef.versions("dynamo")[-1]
    assert "--enable-dp-attention" in ef.flags("dynamo", v, "dynamo.sglang")
    assert "--kv-transfer-config" in ef.flags("dynamo", v, "dynamo.vllm")


@pytest.mark.parametrize(("family", "image", "want"), [
    ("sglang", "lmsysorg/sglang:v0.5.6.post2-rocm700-mi35x", "0.5.6.post2"),
    ("sglang", "lmsysorg/sglang:v0.5.14-cu130@sha256:5027e95bf6ec", "0.5.14"),
    ("sglang", "rocm/sgl-dev:sglang-0.5.9-rocm720-mi35x-mori-0227-2", "0.5.9"),
    ("sglang", "lmsysorg/sglang-rocm:v0.5.10rc0-rocm720-mi35x-20260415", "0.5.10rc0"),
    ("sglang", "lmsysorg/sglang:nightly-dev-cu13-20260805-211ee642", None),
    ("sglang", "nvcr.io/nvidia/ai-dynamo/sglang-runtime:0.8.1", None),
    ("vllm", "vllm/vllm-openai:v0.11.0", "0.11.0"),
    ("vllm", "vllm/vllm-openai:nightly-dev-arm64-cu13.0.1-75c2eef", None),
    ("vllm", "vllm/vllm-openai:vllm-x86_64-cu13-0.25.1-7a33ba9", "0.25.1"),
    ("trt", "nvcr.io/nvidia/tensorrt-llm/release:1.2.0rc2", "1.2.0rc2"),
    ("trt", "nvcr.io#nvidia/tensorrt-llm/release:1.2.0rc6.post3", "1.2.0rc6.post3"),
    ("dynamo", "nvcr.io/nvidia/ai-dynamo/sglang-runtime:0.8.1", "0.8.1"),
    ("dynamo", "nvcr.io#nvidia/ai-dynamo/tensorrtllm-runtime:1.3.0-deepseek-v4-dev.1", "1.3.0"),
    ("dynamo", "lmsysorg/sglang:v0.5.6-cu129-arm64", None),
    ("atom", "rocm/atom:rocm7.1.1-ubuntu24.04-pytorch2.9-atom0.1.1-MI350x", "0.1.1"),
    ("atom", "rocm/atom:rocm7.2.2_ubuntu24.04_py3.12_pytorch_release_2.10.0_atom0.1.2.post", "0.1.2"),
    ("atom", "rocm/atom:rocm7.2.3_ubuntu24.04_py3.12_pytorch_release_2.10.0_atom20260511", None),
    ("sglang", "localhost:5000/sglang", None),
])
def test_version_from_image(family: str, image: str, want: str | None) -> None:
    assert ef.version_from_image(family, image) == want


def test_resolve_nearest_rule() -> None:
    known = ef.versions("sglang")
    assert ef.resolve("sglang", known[0]) == (known[0], None)
    use, warning = ef.resolve("sglang", "0.5.999")
    assert use == known[-1] and warning and known[-1] in warning
    use, warning = ef.resolve("sglang", "0.0.1")
    assert use == known[0] and warning and "oldest" in warning
    use, warning = ef.resolve("sglang", None)
    assert use == known[-1] and warning
    with pytest.raises(ef.EngineFlagsError):
        ef.flags("sglang", "0.0.1", "sglang.launch_server")


FAKE_SERVER_ARGS = '''
import argparse
MODES = ["null", "prefill", "decode"]
class DeprecatedAction(argparse.Action):
    def __init__(self, option_strings, dest, nargs=0, **kwargs):
        super().__init__(option_strings, dest, nargs=nargs, **kwargs)
class ServerArgs:
    @staticmethod
    def add_cli_args(parser):
        parser.add_argument("--model-path", "--model", type=str, required=True)
        parser.add_argument("--tp-size", "--tensor-parallel-size", type=int, default=1)
        parser.add_argument("--disaggregation-mode", type=str, choices=MODES)
        parser.add_argument("--enable-dp-attention", action="store_true")
        parser.add_argument("--old-flag", action=DeprecatedAction)
        parser.add_argument("--cuda-graph-bs", type=int, nargs="+")
        parser.add_argument("--json-cfg", type=json.loads)
def elsewhere(parser):
    parser.add_argument("--not-a-server-flag")
'''


def _wheel(tmp_path: Path) -> Path:
    path = tmp_path / "sglang-9.9.9-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("sglang/srt/server_args.py", FAKE_SERVER_ARGS)
        z.writestr("sglang-9.9.9.dist-info/METADATA", "Name: sglang\nVersion: 9.9.9\n")
    return path


def test_regenerate_from_synthetic_wheel_and_sdist(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path)
    sdist = tmp_path / "sglang-9.9.8.tar.gz"
    with tarfile.open(sdist, "w:gz") as t:
        data = FAKE_SERVER_ARGS.replace('"--old-flag"', '"--older-flag"').encode()
        info = tarfile.TarInfo("sglang-9.9.8/python/sglang/srt/server_args.py")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    archives = {"9.9.9": wheel, "9.9.8": sdist}

    def fetch(release: ef.Release, into: Path) -> Path:
        if release.version not in archives:
            raise LookupError(f"pip download sglang=={release.version} failed: no such version")
        return archives[release.version]

    spec = ef.FamilySpec("sglang", (ef.Release("sglang", "9.9.8"), ef.Release("sglang", "9.9.9"),
                                    ef.Release("sglang", "1.0")), ef.extract_sglang)
    doc = ef.regenerate_family(spec, tmp_path / "work", fetch=fetch)
    assert doc["unavailable"] == {"1.0": "pip download sglang==1.0 failed: no such version"}
    table = doc["versions"]["9.9.9"]["commands"]["sglang.launch_server"]
    assert sorted(table) == ["--cuda-graph-bs", "--disaggregation-mode", "--enable-dp-attention", "--json-cfg",
                             "--model-path", "--old-flag", "--tp-size"]
    assert table["--tp-size"] == {"aliases": ["--tensor-parallel-size"], "choices": None, "takes_value": True,
                                  "type": "int"}
    assert table["--disaggregation-mode"]["choices"] == ["decode", "null", "prefill"]
    assert table["--old-flag"]["takes_value"] is False and table["--enable-dp-attention"]["type"] == "bool"
    assert table["--cuda-graph-bs"]["type"] == "list" and table["--json-cfg"]["type"] == "json"
    assert "--older-flag" in doc["versions"]["9.9.8"]["commands"]["sglang.launch_server"]
    assert ef.dumps(doc) == ef.dumps(ef.regenerate_family(spec, tmp_path / "again", fetch=fetch))  # deterministic


def test_vllm_rule_on_synthetic_source() -> None:
    config = '''
from dataclasses import dataclass
from typing import Literal
Backend = Literal["mp", "ray"]
@dataclass
class KVTransferConfig:
    kv_role: str = "kv_both"
@dataclass
class ParallelConfig:
    tensor_parallel_size: int = 1
    enable_expert_parallel: bool = False
    distributed_executor_backend: Backend | None = None
    kv_transfer_config: KVTransferConfig | None = None
    sizes: list[int] | None = None
'''
    arg_utils = '''
class EngineArgs:
    @staticmethod
    def add_cli_args(parser):
        parallel_kwargs = get_kwargs(ParallelConfig)
        g = parser.add_argument_group("ParallelConfig")
        g.add_argument("--tensor-parallel-size", "-tp", **parallel_kwargs["tensor_parallel_size"])
        g.add_argument("--enable-expert-parallel", **{**parallel_kwargs["enable_expert_parallel"], "default": None})
        g.add_argument("--distributed-executor-backend", **parallel_kwargs["distributed_executor_backend"])
        g.add_argument("--kv-transfer-config", **parallel_kwargs["kv_transfer_config"])
        g.add_argument("--sizes", **parallel_kwargs["sizes"])
        return parser
'''
    src = ef.Sources("vllm test", {"vllm/config/parallel.py": config, "vllm/engine/arg_utils.py": arg_utils})
    table = ef.vllm_flags(src)
    assert table["--tensor-parallel-size"]["type"] == "int" and table["--tensor-parallel-size"]["aliases"] == ["-tp"]
    assert table["--enable-expert-parallel"]["aliases"] == ["--no-enable-expert-parallel"]
    assert table["--distributed-executor-backend"]["choices"] == ["None", "mp", "ray"]
    assert table["--kv-transfer-config"]["type"] == "json" and table["--sizes"]["type"] == "list"


# ---------------------------------------------------------------------------- newer declaration styles

SGLANG_ARG_UTILS = """
from typing import Annotated
A = Annotated
class Arg:
    pass
def add_cli_args_from_dataclass(parser, cls, *, fields=None):
    pass
"""
SGLANG_ACTIONS = """
import argparse
class DeprecatedStoreTrueAction(argparse.Action):
    def __init__(self, option_strings, dest, new_flag=None, nargs=0, **kwargs):
        super().__init__(option_strings, dest, nargs=nargs, **kwargs)
class LoRAPathAction(argparse.Action):
    pass
"""
SGLANG_CONSTS = """
class Backend:
    FULL = "full"
    DISABLED = "disabled"
    ALL = (FULL, DISABLED)
LOAD_FORMAT_CHOICES = ["auto", "pt"] + ["safetensors"]
"""
# sglang 0.5.14+: ServerArgs fields carry their CLI metadata; add_cli_args derives the flags
SGLANG_DATACLASS = """
from __future__ import annotations
import argparse
import dataclasses
from typing import List, Literal, Optional, Union
from sglang.srt.arg_groups.arg_utils import A, Arg, add_cli_args_from_dataclass
from sglang.srt.arg_groups.argparse_actions import DeprecatedStoreTrueAction, LoRAPathAction
from sglang.srt.consts import LOAD_FORMAT_CHOICES as LF, Backend
MODES = ["null", "prefill", "decode"]

@dataclasses.dataclass
class ServerArgs:
    model_path: A[str, Arg(help="weights", aliases=["--model"])]
    tp_size: A[int, Arg(help="tp", cli_name="--tp-size", aliases=["--tensor-parallel-size"])] = 1
    disaggregation_mode: A[Literal["null", "prefill", "decode"], "PD role"] = "null"
    ratio: A[Optional[float], "a ratio"] = None
    load_format: A[str, Arg(help="fmt", choices=LF)] = "auto"
    backend_decode: A[Optional[Literal["full", "disabled"]], Arg(help="x", choices=Backend.ALL)] = None
    enable_dp_attention: A[bool, "DP attention"] = False
    cuda_graph_bs: A[Optional[List[int]], "sizes"] = None
    prefixes: A[List[str], Arg(help="p", nargs="*")] = dataclasses.field(default_factory=list)
    sidecar: A[Optional[List[str]], Arg(help="json", type_parser=json_list_type)] = None
    strict: A[bool, Arg(help="s", action=argparse.BooleanOptionalAction)] = False
    lora_paths: A[Optional[Union[List[str], dict]], Arg(help="l", action=LoRAPathAction,
                                                        action_kwargs={"type": str, "nargs": "*"})] = None
    internal: A[bool, Arg(no_cli=True)] = False
    plain: Optional[str] = None
    level: A[Literal[1, 2, 3], "lvl"] = 1

    @staticmethod
    def add_cli_args(parser):
        add_cli_args_from_dataclass(parser, ServerArgs)
        parser.add_argument("--stream-output", action=DeprecatedStoreTrueAction, help=argparse.SUPPRESS)
        parser.add_argument("--config", type=str)
"""


def _sglang_sources(server_args: str) -> ef.Sources:
    return ef.Sources("sglang test", {"sglang/srt/server_args.py": server_args,
                                      "sglang/srt/arg_groups/arg_utils.py": SGLANG_ARG_UTILS,
                                      "sglang/srt/arg_groups/argparse_actions.py": SGLANG_ACTIONS,
                                      "sglang/srt/consts.py": SGLANG_CONSTS})


def test_sglang_dataclass_field_metadata_on_synthetic_source() -> None:
    cmds, extra = ef.extract_sglang(_sglang_sources(SGLANG_DATACLASS))
    table = cmds["sglang.launch_server"]
    assert extra == {"abbreviations": ["sglang.launch_server"]}
    assert sorted(table) == ["--backend-decode", "--config", "--cuda-graph-bs", "--disaggregation-mode",
                             "--enable-dp-attention", "--level", "--load-format", "--lora-paths", "--model-path",
                             "--prefixes", "--ratio", "--sidecar", "--stream-output", "--strict", "--tp-size"]
    assert table["--model-path"] == {"aliases": ["--model"], "choices": None, "takes_value": True, "type": "str"}
    assert table["--tp-size"] == {"aliases": ["--tensor-parallel-size"], "choices": None, "takes_value": True,
                                  "type": "int"}
    assert table["--disaggregation-mode"]["choices"] == ["decode", "null", "prefill"]   # from the Literal
    assert table["--level"]["type"] == "int" and table["--level"]["choices"] == ["1", "2", "3"]
    assert table["--ratio"]["type"] == "float"                                          # Optional unwrapped
    assert table["--load-format"]["choices"] == ["auto", "pt", "safetensors"]          # imported, renamed
    assert table["--backend-decode"]["choices"] == ["disabled", "full"]                # imported Class.ALL
    assert table["--enable-dp-attention"] == {"aliases": [], "choices": None, "takes_value": False, "type": "bool"}
    assert table["--cuda-graph-bs"]["type"] == "list" and "optional_value" not in table["--cuda-graph-bs"]
    assert table["--prefixes"]["type"] == "list" and table["--prefixes"]["optional_value"] is True
    assert table["--sidecar"]["type"] == "json"                                  # type_parser: not a list
    assert table["--strict"]["aliases"] == ["--no-strict"] and table["--strict"]["type"] == "bool"
    assert table["--lora-paths"]["type"] == "list"                               # action_kwargs nargs="*"
    assert table["--stream-output"]["takes_value"] is False   # value-less action imported from another module


def test_sglang_dataclass_refuses_what_it_cannot_read() -> None:
    unreadable = SGLANG_DATACLASS.replace('aliases=["--model"]', "aliases=make_aliases()")
    with pytest.raises(LookupError, match="model_path"):
        ef.extract_sglang(_sglang_sources(unreadable))
    elsewhere = SGLANG_DATACLASS.replace("add_cli_args_from_dataclass(parser, ServerArgs)",
                                         "add_cli_args_from_dataclass(parser, OtherArgs)")
    with pytest.raises(LookupError, match="OtherArgs"):
        ef.extract_sglang(_sglang_sources(elsewhere))
    # flags declared in a way nothing reads: refused by the old sanity check, not written half-read
    hidden = SGLANG_DATACLASS.replace("add_cli_args_from_dataclass(parser, ServerArgs)", "register(parser)") \
        + "".join(f'\nHELP_{i} = "--flag-{i}"' for i in range(40))
    with pytest.raises(LookupError, match="the extractor needs updating"):
        ef.extract_sglang(_sglang_sources(hidden))


DYNAMO_UTILS = """
def add_argument(parser, *, flag_name, env_var, default, help, obsolete_flag=None, arg_type=str, **kwargs):
    names = [flag_name] + ([obsolete_flag] if obsolete_flag else [])
    parser.add_argument(*names, **kwargs)
def add_negatable_bool_argument(parser, *, flag_name, env_var, default, help, dest=None, obsolete_flag=None):
    add_argument(parser, flag_name=flag_name, env_var=env_var, default=default, help=help, dest=dest,
                 obsolete_flag=obsolete_flag, arg_type=None, action=argparse.BooleanOptionalAction)
"""
DYNAMO_RUNTIME = """
from dynamo.common.configuration.utils import add_argument, add_negatable_bool_argument
class DynamoRuntimeArgGroup(ArgGroup):
    def add_arguments(self, parser):
        g = parser.add_argument_group("Dynamo Runtime Options")
        add_argument(g, flag_name="--namespace", env_var="DYN_NAMESPACE", default="dynamo", help="ns")
        add_argument(g, flag_name="--endpoint", env_var="DYN_ENDPOINT", default=None, help="ep")
        add_argument(g, flag_name="--request-plane", env_var="X", default="tcp", help="rp",
                     choices=["tcp", "nats", "http"])
        add_argument(g, flag_name="--connector", env_var="X", default=[], help="c", nargs="*")
        add_negatable_bool_argument(g, flag_name="--durable-kv-events", env_var="X", default=False, help="d")
class UnusedArgGroup(ArgGroup):
    def add_arguments(self, parser):
        add_argument(parser, flag_name="--never-used", env_var="X", default=None, help="u")
"""
DYNAMO_KV_ROUTER = """
from dynamo.common.configuration.utils import add_argument
class KvRouterArgGroup(ArgGroup):
    def add_arguments(self, parser):
        add_argument(parser, flag_name="--router-temperature", env_var="X", default=0.0, help="t", arg_type=float)
"""
DYNAMO_FRONTEND = """
import argparse
from dynamo.common.configuration.utils import add_argument, add_negatable_bool_argument
from dynamo.common.configuration.groups.kv_router_args import KvRouterArgGroup
class FrontendArgGroup(ArgGroup):
    def add_arguments(self, parser):
        parser.add_argument("--version", action="version", version="1")
        g = parser.add_argument_group("Dynamo Frontend Options")
        g.add_argument("-i", "--interactive", action=argparse.BooleanOptionalAction, default=False)
        add_argument(g, flag_name="--http-host", env_var="DYN_HTTP_HOST", default="0.0.0.0", help="h")
        add_argument(g, flag_name="--http-port", env_var="DYN_HTTP_PORT", default=8000, help="p", arg_type=int)
        add_argument(g, flag_name="--router-mode", env_var="X", default="round-robin", help="m",
                     choices=["round-robin", "random", "kv"])
        add_argument(g, flag_name="--tls-cert-path", env_var="X", default=None, help="c", arg_type=pathlib.Path)
        add_negatable_bool_argument(g, flag_name="--enforce-disagg", env_var="X", default=False, help="e",
                                    obsolete_flag="--enforce-disaggregation")
        KvRouterArgGroup().add_arguments(parser)
"""


def _dynamo_worker(component: str, flag: str) -> str:
    return f"""
from dynamo.common.configuration.groups.runtime_args import DynamoRuntimeArgGroup
from dynamo.common.configuration.utils import add_argument
class Dynamo{component}ArgGroup(ArgGroup):
    def add_arguments(self, parser):
        add_argument(parser, flag_name="{flag}", env_var="X", default=None, help="x")
def parse_args(argv):
    parser = argparse.ArgumentParser()
    DynamoRuntimeArgGroup().add_arguments(parser)
    Dynamo{component}ArgGroup().add_arguments(parser)
"""


def _dynamo_sources(utils: str = DYNAMO_UTILS) -> ef.Sources:
    return ef.Sources("ai_dynamo test", {
        "dynamo/common/configuration/utils.py": utils,
        "dynamo/common/configuration/groups/runtime_args.py": DYNAMO_RUNTIME,
        "dynamo/common/configuration/groups/kv_router_args.py": DYNAMO_KV_ROUTER,
        "dynamo/frontend/frontend_args.py": DYNAMO_FRONTEND,
        "dynamo/frontend/main.py": "def main():\n    FrontendArgGroup().add_arguments(parser)\n",
        "dynamo/sglang/args.py": _dynamo_worker("SGLang", "--use-sglang-tokenizer"),
        "dynamo/vllm/args.py": _dynamo_worker("Vllm", "--is-prefill-worker"),
        "dynamo/trtllm/args.py": _dynamo_worker("Trtllm", "--extra-engine-args"),
        "dynamo/trtllm/dynamic_flags.py": 'DYNAMIC_FLAG_PREFIX = "--trtllm."\n',
        "ai_dynamo-9.0.0.dist-info/METADATA": "Name: ai-dynamo\nRequires-Dist: sglang==0.5.10.post1; "
                                              "extra == 'sglang'\n"})


def test_dynamo_arg_groups_and_helpers_on_synthetic_source() -> None:
    cmds, extra = ef.extract_dynamo(_dynamo_sources())
    front = cmds["dynamo.frontend"]
    assert sorted(front) == ["--enforce-disagg", "--http-host", "--http-port", "--interactive", "--router-mode",
                             "--router-temperature", "--tls-cert-path", "--version"]   # no runtime group here
    assert front["--http-port"] == {"aliases": [], "choices": None, "takes_value": True, "type": "int"}
    assert front["--router-mode"]["choices"] == ["kv", "random", "round-robin"]
    assert front["--router-temperature"]["type"] == "float" and front["--tls-cert-path"]["type"] == "path"
    assert front["--enforce-disagg"] == {"aliases": ["--enforce-disaggregation", "--no-enforce-disagg",
                                                     "--no-enforce-disaggregation"],
                                         "choices": None, "takes_value": False, "type": "bool"}
    assert front["--interactive"]["aliases"] == ["--no-interactive", "-i"]
    worker = cmds["dynamo.sglang"]
    assert sorted(worker) == ["--connector", "--durable-kv-events", "--endpoint", "--namespace", "--request-plane",
                              "--use-sglang-tokenizer"]
    assert worker["--connector"]["type"] == "list" and worker["--request-plane"]["choices"] == ["http", "nats", "tcp"]
    assert "--never-used" not in cmds["dynamo.vllm"]
    assert cmds["dynamo.trtllm"]["--trtllm"]["type"] == "json" and "dynamo.trtllm" in extra["dotted_json"]
    assert extra["wraps"] == {"dynamo.sglang": {"family": "sglang", "version": "0.5.10.post1",
                                                "command": "sglang.launch_server"}}


def test_dynamo_refuses_unknown_helpers() -> None:
    changed = DYNAMO_UTILS.replace("obsolete_flag=None, arg_type=str", "alias=None, value_type=str")
    with pytest.raises(LookupError, match="argument helpers"):
        ef.extract_dynamo(_dynamo_sources(changed))


# ---------------------------------------------------------------------------- the newer releases' data

@pytest.mark.parametrize("version", ["0.5.12", "0.5.14", "0.5.16"])
def test_newer_sglang_releases_read_completely(version: str) -> None:
    table = ef.flags("sglang", version, "sglang.launch_server")
    assert len({f.name for f in table.values()}) > 380
    assert table["--tp-size"] is table["--tensor-parallel-size"] and table["--tp-size"].type == "int"
    assert table["--disaggregation-mode"].choices == ("decode", "null", "prefill")
    assert table["--enable-dp-attention"].type == "bool" and not table["--enable-dp-attention"].takes_value
    assert table["--model"] is table["--model-path"]
    assert table["--ep"] is table["--ep-size"] is table["--expert-parallel-size"]
    assert "fp8_e4m3" in (table["--kv-cache-dtype"].choices or ())
    assert "--disable-radix-cache" in table and "--cuda-graph-max-bs" in table
    assert ef.check("sglang", version, "sglang.launch_server",
                    ["--model-path", "m", "--tp", "8", "--disaggregation-mode", "prefill",
                     "--enable-dp-attention", "--mem-fraction-static", "0.8", "--trust-remote-code"]) == []
    assert ef.check("sglang", version, "sglang.launch_server", ["--disaggregation-mode", "prefil"])


def test_dynamo_1_1_data() -> None:
    assert ef.flags("dynamo", "1.1.0", "dynamo.frontend")["--http-port"].type == "int"
    assert ef.check("dynamo", "1.1.0", "dynamo.frontend",
                    ["--http-port", "8000", "--router-mode", "kv", "--namespace", "dynamo"]) == []
    assert ef.check("dynamo", "1.1.0", "dynamo.frontend", ["--router-mode", "kvv"])
    # dynamo.sglang: Dynamo's own flags plus those of the sglang release it pins
    assert ef.check("dynamo", "1.1.0", "dynamo.sglang",
                    ["--model-path", "m", "--tp-size", "4", "--endpoint", "dyn://a.b.c", "--disaggregation-mode",
                     "decode"]) == []
    assert ef.check("dynamo", "1.1.0", "dynamo.trtllm",
                    ["--model-path", "m", "--trtllm.kv_cache_config.free_gpu_memory_fraction", "0.7"]) == []


@pytest.mark.parametrize("tag", ["0.5.6", "0.5.7", "0.5.8", "0.5.8.post1", "0.5.9", "0.5.10", "0.5.10.post1",
                                 "0.5.12", "0.5.12.post1", "0.5.14", "0.5.15", "0.5.15.post1", "0.5.16", "0.5.17"])
def test_reference_sglang_versions_covered_within_a_patch(tag: str) -> None:
    """The sglang versions the reference InferenceX configs' images pin each resolve to a
    recorded release at most one patch release away."""
    use, _ = ef.resolve("sglang", tag)
    want, got = ef.version_key(tag)[0], ef.version_key(use)[0]
    assert want[:2] == got[:2] and abs(want[2] - got[2]) <= 1, (tag, use)
