"""`validate` (and render/submit/debug) check engine flags: ixhpc.engine_check (issue 14, part 2).

Most tests run against a small fake flag list (``fake_flags``: the ``ixhpc.engine_flags`` API
monkeypatched), so they do not depend on the real data's contents; the last ones check the
example recipes and the InferenceX reference files against the real data.
"""

from __future__ import annotations

import argparse
import difflib
import re
import textwrap
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from ixhpc import cli, engine_check, engine_flags, engines, runs
from ixhpc.commands import validate
from ixhpc.errors import ConfigError
from ixhpc.frameworks import FRAMEWORKS
from ixhpc.profiles import get_profile
from ixhpc.sweep import Filters

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "recipes/examples").glob("*.yaml"))
SGLANG_EXAMPLE = REPO / "recipes/examples/mi355x-dsr1-sglang.yaml"

# ---------------------------------------------------------------------------- a fake flag list

V = None   # a flag that takes a value, any value
N = ()     # a flag that takes no value
SGLANG = {
    **dict.fromkeys(["--model-path", "--served-model-name", "--tp-size", "--ep-size", "--dp-size",
                     "--pp-size", "--context-length", "--disaggregation-bootstrap-port", "--host", "--port",
                     "--mem-fraction-static", "--attention-backend", "--chunked-prefill-size",
                     "--cuda-graph-max-bs", "--dist-init-addr", "--nnodes", "--speculative-num-steps",
                     "--speculative-eagle-topk", "--speculative-num-draft-tokens", "--max-running-requests",
                     "--max-prefill-tokens"], V),
    "--speculative-algorithm": ("EAGLE", "NEXTN"),
    "--trust-remote-code": N, "--enable-dp-attention": N,
    "--disaggregation-mode": ("null", "prefill", "decode"),
}
DATA: dict[str, dict[str, dict[str, dict[str, tuple[str, ...] | None]]]] = {
    "sglang": {"0.5.6": {"sglang.launch_server": SGLANG}, "0.5.8": {"sglang.launch_server": SGLANG}},
    "sglang_router": {"0.5.6": {"sglang_router.launch_router": {
        "--pd-disaggregation": N, "--host": V, "--port": V, "--prefill": V, "--decode": V,
        "--policy": ("random", "round_robin", "cache_aware")}}},
    "dynamo": {"0.8.1": {"dynamo.frontend": {"--http-host": V, "--http-port": V},
                         "dynamo.sglang": SGLANG}},
    "trt": {"1.2.0": {
        "trtllm-serve serve": dict.fromkeys(
            ["--host", "--port", "--backend", "--tp_size", "--ep_size", "--pp_size", "--max_seq_len",
             "--extra_llm_api_options", "--max_batch_size"], V) | {"--trust_remote_code": N},
        "trtllm-serve disaggregated": {"-c": V},
        "llm_api_options": {"enable_attention_dp": V, "cache_transceiver_config": V}}},
}


@dataclass(frozen=True)
class FakeFlag:
    name: str
    choices: tuple[str, ...] | None
    takes_value: bool


class FakeFlags:
    """The ``ixhpc.engine_flags`` API over ``DATA``; records what it was asked to check."""

    def __init__(self) -> None:
        self.checked: list[tuple[str, str, str, tuple[str, ...]]] = []

    @staticmethod
    def version_from_image(family: str, image: str) -> str | None:
        m = re.search(r":v?(\d+\.\d+\.\d+)", image)
        return m[1] if m else None

    @staticmethod
    def resolve(family: str, version: str | None) -> tuple[str, str | None]:
        if family not in DATA:
            raise engine_flags.EngineFlagsError(f"no flag data for engine family {family!r}")
        known = sorted(DATA[family])
        if version in known:
            return version, None
        return known[0], f"{family} {version}: no flag list for this version; checking against {known[0]}"

    @staticmethod
    def flags(family: str, version: str, command: str) -> dict[str, FakeFlag]:
        table = DATA[family][version][command]   # KeyError: no such command
        return {k: FakeFlag(k, v or None, v != ()) for k, v in table.items()}

    def check(self, family: str, version: str, command: str, args: Sequence[str]) -> list[engine_flags.Problem]:
        self.checked.append((family, version, command, tuple(args)))
        table = self.flags(family, version, command)
        out, i = [], 0
        while i < len(args):
            word = args[i]
            name, eq, value = word.partition("=")
            if not word.startswith("-"):
                i += 1   # a positional (the model of trtllm-serve serve) or a --prefill's port
                continue
            flag = table.get(name)
            if flag is None:
                close = difflib.get_close_matches(name, table, n=1)
                out.append(engine_flags.Problem(i, f"unknown flag '{name}' for {family} {version} {command}"
                                                   + (f"; did you mean '{close[0]}'?" if close else "")))
                i += 1
                continue
            at = i
            if flag.takes_value and not eq:
                i, at, value = i + 1, i + 1, args[i + 1] if i + 1 < len(args) else ""
            if flag.choices and value not in flag.choices:
                out.append(engine_flags.Problem(at, f"'{name}' expects one of {', '.join(flag.choices)}; "
                                                    f"found '{value}'"))
            i += 1
        return out

    def check_options(self, family: str, version: str, keys: Iterable[str]) -> list[engine_flags.Problem]:
        table = self.flags(family, version, "llm_api_options")
        self.checked.append((family, version, "llm_api_options", tuple(keys)))
        return [engine_flags.Problem(i, f"unknown option '{k}' for {family} {version}")
                for i, k in enumerate(keys) if k not in table]


@pytest.fixture
def fake_flags(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeFlags]:
    fake = FakeFlags()
    for name in ("version_from_image", "resolve", "flags", "check", "check_options"):
        monkeypatch.setattr(engine_flags, name, getattr(fake, name))
    engine_check.clear_caches()
    yield fake
    engine_check.clear_caches()


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def line_of(path: Path, needle: str) -> int:
    return next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if needle in ln)


def run_validate(capsys: pytest.CaptureFixture[str], *files: Path, check: bool = True) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    validate.configure(parser)
    argv = [str(f) for f in files] + ([] if check else ["--no-engine-check"])
    rc = validate.run(parser.parse_args(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


SINGLE = """\
    sg-single:
      image: lmsysorg/sglang:v0.5.6-rocm700-mi35x
      model: deepseek-ai/DeepSeek-R1
      model-prefix: dsr1
      precision: fp8
      framework: sglang
      runner: mi355x
      seq-len-configs:
      - isl: 1024
        osl: 1024
        search-space:
        - { tp: 8, conc-start: 4, conc-end: 16 }
      ixhpc:
        engine-args:
          server: @ARGS@
    """

DISAGG = """\
    sg-disagg:
      image: lmsysorg/sglang:v0.5.6-cu129
      model: deepseek-ai/DeepSeek-R1
      model-prefix: dsr1
      precision: fp8
      framework: sglang
      runner: mi355x-disagg
      multinode: true
      disagg: true
      seq-len-configs:
      - isl: 1024
        osl: 1024
        search-space:
        - conc-list: [64, 128]
          prefill: { num-worker: 2, tp: 8, ep: 1, dp-attn: false }
          decode: { num-worker: 1, tp: 8, ep: 1, dp-attn: false }
      ixhpc:
        engine-args:
          prefill:
          - --mem-fraction-static
          - "0.8"
          - --disaggregation-mode
          - @MODE@
          router: [--policy, @POLICY@]
    """

TRT = """\
    trt-single:
      image: nvcr.io/nvidia/tensorrt-llm/release:1.2.0
      model: openai/gpt-oss-120b
      model-prefix: gptoss
      precision: fp4
      framework: trt
      runner: gb200
      seq-len-configs:
      - isl: 1024
        osl: 1024
        search-space:
        - { tp: 4, conc-start: 4, conc-end: 8 }
    """


# ---------------------------------------------------------------------------- argv -> command


def _spec(framework: str, role: str, **more: object) -> engines.LaunchSpec:
    urls = {"prefill_urls": ["http://p:1"], "decode_urls": ["http://d:2"]} if role == "router" else {}
    return engines.LaunchSpec.model_validate({"framework": framework, "role": role, "model": "m", **urls, **more})


@pytest.mark.parametrize("framework,role,family,command", [
    ("sglang", "server", "sglang", "sglang.launch_server"),
    ("sglang", "prefill", "sglang", "sglang.launch_server"),
    ("sglang", "router", "sglang_router", "sglang_router.launch_router"),
    ("vllm", "server", "vllm", "vllm serve"),
    ("trt", "server", "trt", "trtllm-serve serve"),
    ("trt", "router", "trt", "trtllm-serve disaggregated"),
    ("dynamo-sglang", "decode", "dynamo", "dynamo.sglang"),
    ("dynamo-vllm", "prefill", "dynamo", "dynamo.vllm"),
    ("dynamo-trt", "prefill", "dynamo", "dynamo.trtllm"),
    ("dynamo-trt", "router", "dynamo", "dynamo.frontend"),
    ("atom", "server", "atom", "atom.entrypoints.openai_server"),
])
def test_each_engine_role_argv_maps_to_its_command(framework, role, family, command):
    extra = ["--some-flag", "1"]
    for more in ({}, {"nnodes": 2, "head_host": "h", "tp": 8}):   # multi-node: rank wrappers, llmapi-launch
        if role == "router" and more or framework == "atom" and more:
            continue
        spec = _spec(framework, role, extra_args=extra, additional_settings=["CONFIG_FILE=x"], **more)
        inv = engine_check.invocation(engines.build(spec))
        assert inv is not None and (inv.family, inv.command) == (family, command)
        assert inv.args[-2:] == tuple(extra)   # the words after the command, engine-args last
        assert "CONFIG_FILE=x" not in inv.args
        launch = engines.launch(spec)
        # the config files ixhpc writes, read back (paths as the job script spells them)
    assert dict(inv.files) == {engine_check._script_words([p])[0]: c for p, c in launch.files.items()}


def test_sim_and_services_have_no_command_to_check():
    assert engine_check.invocation(engines.build(_spec("sim", "server"))) is None
    assert engine_check.invocation(engines.dynamo_services("h")[0].argv) is None
    assert not engine_check.has_flag_list("sim")
    assert all(engine_check.has_flag_list(f) for f in FRAMEWORKS if FRAMEWORKS[f] != "sim")


def test_wrappers_and_placeholders():
    argv = ["env", "A=1", "CUDA_VISIBLE_DEVICES=0,1", "mpirun", "-np", "8", "--bind-to", "none",
            "trtllm-llmapi-launch", "/usr/bin/trtllm-serve", "serve", "m", "--port", "\x00PREFILL_0_PORT\x00"]
    inv = engine_check.invocation(argv)
    assert inv == engine_check.Invocation("trt", "trtllm-serve serve", ("m", "--port", "${PREFILL_0_PORT}"))
    inv = engine_check.invocation(["/opt/venv/bin/python3", "-m", "sglang.launch_server", "--tp-size", "2"])
    assert inv is not None and inv.args == ("--tp-size", "2")


# ---------------------------------------------------------------------------- validate


def test_typo_in_engine_args_is_located_at_the_item(tmp_path, capsys, fake_flags):
    path = write(tmp_path, SINGLE.replace("@ARGS@", '[--mem-fraction-static, "0.8", --tp-sizee, "2"]'))
    rc, out, err = run_validate(capsys, path)
    assert rc == ConfigError.exit_code
    line = line_of(path, "server:")
    assert err.strip() == (f"{path}:{line}: sg-single.ixhpc.engine-args.server[2]: server: unknown flag "
                           f"'--tp-sizee' for sglang 0.5.6 sglang.launch_server; did you mean '--tp-size'?")
    assert "OK" not in out


def test_engine_args_items_on_their_own_lines(tmp_path, capsys, fake_flags):
    text = DISAGG.replace("@MODE@", "prefil").replace("@POLICY@", "round_robbin")
    path = write(tmp_path, text)
    rc, _, err = run_validate(capsys, path)
    assert rc == ConfigError.exit_code
    lines = err.strip().splitlines()
    assert (f"{path}:{line_of(path, '- prefil')}: sg-disagg.ixhpc.engine-args.prefill[3]: prefill-0: "
            "'--disaggregation-mode' expects one of null, prefill, decode; found 'prefil'; "
            "did you mean 'prefill'?") in lines
    assert any(ln.startswith(f"{path}:{line_of(path, 'router:')}: sg-disagg.ixhpc.engine-args.router[1]: router: "
                             "'--policy' expects one of") and ln.endswith("did you mean 'round_robin'?")
               for ln in lines), err
    assert len(lines) == 2, err   # once each, though two prefill workers and two concurrencies run it


def test_a_flag_ixhpc_builds_is_located_at_the_entry(tmp_path, capsys, fake_flags, monkeypatch):
    monkeypatch.setitem(DATA["sglang"]["0.5.6"], "sglang.launch_server",
                        {k: v for k, v in SGLANG.items() if k != "--trust-remote-code"})
    path = write(tmp_path, SINGLE.replace("@ARGS@", "[]"))
    rc, _, err = run_validate(capsys, path)
    assert rc == ConfigError.exit_code
    assert err.startswith(f"{path}:1: sg-single: server: unknown flag '--trust-remote-code'"), err


def test_unknown_version_is_a_warning_naming_the_version_used(tmp_path, capsys, fake_flags):
    path = write(tmp_path, SINGLE.replace("@ARGS@", "[]").replace("v0.5.6-rocm", "v0.5.7-rocm"))
    rc, out, err = run_validate(capsys, path)
    assert rc == 0 and out == f"{path}: OK\n"
    assert err.strip() == (f"{path}:1: sg-single: warning: image lmsysorg/sglang:v0.5.7-rocm700-mi35x: "
                           f"sglang 0.5.7: no flag list for this version; checking against 0.5.6")
    assert {c[:3] for c in fake_flags.checked} == {("sglang", "0.5.6", "sglang.launch_server")}


def test_a_family_without_data_is_a_warning(tmp_path, capsys, fake_flags):
    path = write(tmp_path, SINGLE.replace("@ARGS@", "[]").replace("framework: sglang", "framework: vllm"))
    rc, _, err = run_validate(capsys, path)
    assert rc == 0
    assert "warning: vllm serve not checked: no flag data for engine family 'vllm'" in err


def test_trt_option_file_keys_are_checked(tmp_path, capsys, fake_flags, monkeypatch):
    path = write(tmp_path, TRT)
    assert run_validate(capsys, path)[0] == 0
    assert {("trt", "1.2.0", "trtllm-serve serve"), ("trt", "1.2.0", "llm_api_options")} <= \
        {c[:3] for c in fake_flags.checked}
    monkeypatch.setitem(DATA["trt"]["1.2.0"], "llm_api_options", {"cache_transceiver_config": V})
    engine_check.clear_caches()
    rc, _, err = run_validate(capsys, path)
    assert rc == ConfigError.exit_code
    assert re.fullmatch(rf"{re.escape(str(path))}:1: trt-single: server: --extra_llm_api_options file "
                        r"\(\S+llm-api.yaml\): unknown option 'enable_attention_dp' for trt 1.2.0\n", err), err


def test_sim_is_not_checked(capsys, fake_flags, monkeypatch):
    def refuse(*_: object) -> None:
        raise AssertionError("sim has no flag list")
    monkeypatch.setattr(engine_flags, "check", refuse)
    monkeypatch.setattr(engine_flags, "resolve", refuse)
    sims = [f for f in EXAMPLES if f.name.startswith("sim-")]
    rc, out, err = run_validate(capsys, *sims)
    assert rc == 0 and err == "" and out.count("OK") == len(sims)


def test_no_engine_check_turns_it_off(tmp_path, capsys, fake_flags):
    path = write(tmp_path, SINGLE.replace("@ARGS@", "[--tp-sizee, '2']"))
    assert run_validate(capsys, path, check=False) == (0, f"{path}: OK\n", "")
    assert fake_flags.checked == []
    assert cli.main(["validate", "--no-engine-check", str(path)]) == 0
    assert cli.main(["validate", str(path)]) == ConfigError.exit_code


# ---------------------------------------------------------------------------- render / submit / debug


@pytest.mark.parametrize("command", ["render", "submit", "debug"])
def test_run_commands_take_no_engine_check(command, tmp_path):
    parser = cli.build_parser(command)
    extra = ["-o", str(tmp_path / "out")] if command == "render" else []
    for flags, expected in (([], True), (["--no-engine-check"], False)):
        args = parser.parse_args([command, str(SGLANG_EXAMPLE), "--cluster", "mi355x", *extra, *flags])
        assert runs.target_from_args(args).engine_check is expected


def test_plan_checks_before_anything_is_written(tmp_path, fake_flags):
    doc = yaml.safe_load(SGLANG_EXAMPLE.read_text())
    (key,) = doc
    doc[key]["image"] = "lmsysorg/sglang:v0.5.6-rocm700-mi35x"
    doc[key]["ixhpc"]["engine-args"]["server"] += ["--tp-sizee", "2"]
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = tmp_path / "run"
    target = runs.RunTarget(recipe, get_profile("mi355x"), Filters())
    with pytest.raises(ConfigError) as exc:
        runs.plan(target, out, "run")
    (error,) = exc.value.errors
    assert re.match(rf"{re.escape(str(recipe))}:\d+: {key}\.ixhpc\.engine-args\.server\[6\]: server: "
                    r"unknown flag '--tp-sizee'.*did you mean '--tp-size'\?$", error), error
    assert not out.exists()
    unchecked = runs.RunTarget(recipe, get_profile("mi355x"), Filters(), engine_check=False)
    assert runs.plan(unchecked, out, "run") and not out.exists()


def test_plan_warnings_go_to_warn(tmp_path, fake_flags):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(SGLANG_EXAMPLE.read_text().replace("v0.5.6.post2-rocm", "v0.5.7-rocm"))
    warned: list[str] = []
    target = runs.RunTarget(recipe, get_profile("mi355x"), Filters())
    runs.plan(target, tmp_path / "run", "run", warn=warned.append)
    assert warned == [f"{recipe}:3: dsr1-fp8-mi355x-sglang-tuned: warning: image "
                      "lmsysorg/sglang:v0.5.7-rocm700-mi35x: sglang 0.5.7: no flag list for this version; "
                      "checking against 0.5.6"]


# ---------------------------------------------------------------------------- the real flag data


def _real_data(family: str) -> None:
    engine_check.clear_caches()
    if family not in engine_flags.families():
        pytest.skip(f"no flag data for {family} yet")


def test_examples_and_reference_files_have_no_unknown_flags(inferencex, capsys):
    """Examples and the March/April InferenceX master files (the August format does not
    validate yet: its new keys are issue work of their own)."""
    _real_data("sglang")
    april = inferencex.parent / "inferencex-2026-04"
    # One validate per snapshot: the files of one snapshot are one set (a config key once).
    for files in (EXAMPLES, sorted(inferencex.glob("*-master.yaml")), sorted(april.glob("*-master.yaml"))):
        rc, out, err = run_validate(capsys, *files)
        problems = [ln for ln in err.splitlines() if ": warning: " not in ln]
        assert rc == 0 and problems == [], "\n".join(problems[:20])
        assert out.count(": OK") == len(files)


def test_seeded_typos_are_caught_with_the_nearest_flag(tmp_path, capsys):
    _real_data("sglang")
    single = write(tmp_path, SINGLE.replace("@ARGS@", "[--tp-sizee, '2']"), "single.yaml")
    disagg = write(tmp_path, DISAGG.replace("@MODE@", "prefil").replace("@POLICY@", "round_robin"), "disagg.yaml")
    rc, _, err = run_validate(capsys, single)
    assert rc == ConfigError.exit_code
    assert f"{single}:{line_of(single, 'server:')}: sg-single.ixhpc.engine-args.server[0]: server: unknown flag " \
           "'--tp-sizee'" in err and "did you mean '--tp-size'?" in err
    rc, _, err = run_validate(capsys, disagg)
    assert rc == ConfigError.exit_code
    (error,) = [ln for ln in err.splitlines() if ": warning: " not in ln]
    assert error.startswith(f"{disagg}:{line_of(disagg, '- prefil')}: sg-disagg.ixhpc.engine-args.prefill[3]: "
                            "prefill-0: '--disaggregation-mode' expects one of")
    assert "found 'prefil'" in error and error.endswith("did you mean 'prefill'?")
